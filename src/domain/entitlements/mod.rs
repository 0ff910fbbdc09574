//! Entitlements: feature codes (`PRO_EXPORT`, `CLOUD_SYNC`, …) a product declares and each of
//! its licenses carries some of. Both sets are stored as one compact text column (codes joined
//! by `,`, in the order given): the license row the validation hot path already reads brings
//! its entitlements along, with no join and no second query.

pub mod repo;

use crate::error::{Error, Result};

/// At most this many codes per product (and so per license).
pub const MAX_CODES: usize = 64;

/// At most this many characters per code.
pub const MAX_CODE_LEN: usize = 64;

/// `^[A-Z][A-Z0-9_]{0,63}$`
pub fn valid_code(code: &str) -> bool {
    let mut chars = code.chars();
    code.len() <= MAX_CODE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Checks a set of codes given for `field`: each well-formed, none twice, at most
/// [`MAX_CODES`]. Returns them in the order given.
pub fn parse_set(field: &str, codes: &[String]) -> Result<Vec<String>> {
    if codes.len() > MAX_CODES {
        return Err(Error::Invalid(format!(
            "{field} may hold at most {MAX_CODES} codes ({} given)",
            codes.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for code in codes {
        if !valid_code(code) {
            return Err(Error::Invalid(format!(
                "{field}: {code:?} is not a valid entitlement code (A-Z first, then A-Z, 0-9 \
                 or _, at most {MAX_CODE_LEN} characters)"
            )));
        }
        if out.contains(code) {
            return Err(Error::Invalid(format!("{field}: {code} is given twice")));
        }
        out.push(code.clone());
    }
    Ok(out)
}

/// A license's set for a product: valid codes, each one of the product's.
pub fn parse_for_product(
    field: &str,
    codes: &[String],
    product_codes: &[String],
) -> Result<Vec<String>> {
    let set = parse_set(field, codes)?;
    let unknown: Vec<&str> = set
        .iter()
        .filter(|c| !product_codes.contains(c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Invalid(format!(
            "{field}: {} {} not an entitlement of this product (its entitlements: {})",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" },
            if product_codes.is_empty() {
                "none".to_owned()
            } else {
                product_codes.join(", ")
            }
        )));
    }
    Ok(set)
}

/// The codes of `required` that `carried` lacks.
pub fn missing(required: &[String], carried: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|c| !carried.contains(c))
        .cloned()
        .collect()
}

/// The stored form: codes joined by `,` (codes never contain one).
pub fn to_column(codes: &[String]) -> String {
    codes.join(",")
}

/// The codes of a stored column ('' is none).
pub fn from_column(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_format() {
        for (code, ok) in [
            ("PRO_EXPORT", true),
            ("A", true),
            ("A1_2", true),
            (&"A".repeat(64), true),
            (&"A".repeat(65), false),
            ("", false),
            ("1A", false),
            ("_A", false),
            ("pro", false),
            ("PRO-EXPORT", false),
            ("PRO,EXPORT", false),
            ("PRÖ", false),
        ] {
            assert_eq!(valid_code(code), ok, "{code:?}");
        }
    }

    #[test]
    fn sets_round_trip_and_name_what_is_wrong() {
        let product = vec!["A".to_owned(), "B".to_owned()];
        assert_eq!(from_column(&to_column(&product)), product);
        assert!(from_column("").is_empty());
        let err = parse_for_product("entitlements", &["A".into(), "C".into()], &product)
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("C is not"), "{err}");
        assert!(parse_set("e", &["A".into(), "A".into()]).is_err());
        assert_eq!(missing(&["A".into(), "C".into()], &product), vec!["C"]);
    }
}
