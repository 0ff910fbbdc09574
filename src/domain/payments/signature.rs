//! Each provider's own webhook signature scheme, checked over the raw body:
//! - Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of `t.body`, any
//!   `v1` may match (several during a secret's rotation), 300 s tolerance (Stripe's libraries'
//!   default);
//! - Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`, HMAC-SHA256 of
//!   `ts:body`, 5 s tolerance (the default of Paddle's SDKs, which its docs ask manual
//!   checks to apply too);
//! - Lemon Squeezy: `X-Signature: <hex>`, HMAC-SHA256 of the body (no timestamp is signed).
//!
//! The key is the secret exactly as the provider shows it (`whsec_…`, `pdl_ntfset_…`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Provider;
use crate::error::{Error, Result};

pub const STRIPE_TOLERANCE_SECS: i64 = 300;
pub const PADDLE_TOLERANCE_SECS: i64 = 5;

/// Checks `header` (the provider's signature header, `None` when absent) over `body` at
/// `now_secs`. A missing or wrong signature, or a stale timestamp, is `Unauthorized`; a header
/// that is not in the provider's format is `Invalid`.
pub fn verify(
    provider: Provider,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<()> {
    let name = provider.signature_header();
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Unauthorized(format!("Missing {name} header")))?;
    match provider {
        Provider::Stripe => {
            let (ts, sigs) = parse_pairs(header, ',', "t", "v1", name)?;
            check_age(ts, now_secs, STRIPE_TOLERANCE_SECS, name)?;
            let expected = hmac_hex(secret, &[ts.to_string().as_bytes(), b".", body])?;
            any_matches(&expected, &sigs, name)
        }
        Provider::Paddle => {
            let (ts, sigs) = parse_pairs(header, ';', "ts", "h1", name)?;
            check_age(ts, now_secs, PADDLE_TOLERANCE_SECS, name)?;
            let expected = hmac_hex(secret, &[ts.to_string().as_bytes(), b":", body])?;
            any_matches(&expected, &sigs, name)
        }
        Provider::LemonSqueezy => {
            if header.len() != 64 || !header.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Invalid(format!(
                    "{name} must be 64 hexadecimal characters"
                )));
            }
            let expected = hmac_hex(secret, &[body])?;
            any_matches(&expected, &[header.to_ascii_lowercase()], name)
        }
    }
}

/// `ts_key=<unix>` once and `sig_key=<hex>` one or more times, split by `sep`; other keys
/// (Stripe's `v0`) are ignored.
fn parse_pairs(
    header: &str,
    sep: char,
    ts_key: &str,
    sig_key: &str,
    name: &str,
) -> Result<(i64, Vec<String>)> {
    let mut ts = None;
    let mut sigs = Vec::new();
    for part in header.split(sep) {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(Error::Invalid(format!(
                "{name} must be `{ts_key}=<timestamp>{sep}{sig_key}=<signature>`"
            )));
        };
        if k == ts_key {
            let parsed = v.parse::<i64>().map_err(|_| {
                Error::Invalid(format!("{name}: {ts_key} must be a Unix timestamp"))
            })?;
            ts = Some(parsed);
        } else if k == sig_key {
            sigs.push(v.to_ascii_lowercase());
        }
    }
    match (ts, sigs.is_empty()) {
        (Some(ts), false) => Ok((ts, sigs)),
        _ => Err(Error::Invalid(format!(
            "{name} must carry {ts_key}=<timestamp> and at least one {sig_key}=<signature>"
        ))),
    }
}

fn check_age(ts: i64, now: i64, tolerance: i64, name: &str) -> Result<()> {
    if (now - ts).abs() > tolerance {
        return Err(Error::Unauthorized(format!(
            "{name}: the timestamp is more than {tolerance} s from the server's clock (a replayed \
             or delayed event)"
        )));
    }
    Ok(())
}

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| Error::Storage(format!("HMAC key: {e}")))?;
    for p in parts {
        mac.update(p);
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn any_matches(expected: &str, presented: &[String], name: &str) -> Result<()> {
    // Every candidate is compared, in constant time, so timing tells nothing of which matched.
    let matched = presented.iter().fold(false, |found, sig| {
        crate::crypto::constant_time_eq(expected.as_bytes(), sig.as_bytes()) | found
    });
    if matched {
        Ok(())
    } else {
        Err(Error::Unauthorized(format!(
            "{name} does not match the body: wrong signing secret, or the body was changed"
        )))
    }
}

/// The header value a provider would send for `body` at `ts` (tests, and the README's
/// examples, sign with it).
pub fn sign(provider: Provider, secret: &[u8], body: &[u8], ts: i64) -> Result<String> {
    Ok(match provider {
        Provider::Stripe => format!(
            "t={ts},v1={}",
            hmac_hex(secret, &[ts.to_string().as_bytes(), b".", body])?
        ),
        Provider::Paddle => format!(
            "ts={ts};h1={}",
            hmac_hex(secret, &[ts.to_string().as_bytes(), b":", body])?
        ),
        Provider::LemonSqueezy => hmac_hex(secret, &[body])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const SECRET: &[u8] = b"whsec_test_secret";

    #[test]
    fn each_scheme_accepts_its_own_signature_and_nothing_else() -> Result<()> {
        let now = 1_700_000_000;
        for p in Provider::ALL {
            let header = sign(*p, SECRET, BODY, now)?;
            assert!(verify(*p, SECRET, Some(&header), BODY, now).is_ok(), "{p}");
            assert!(matches!(
                verify(*p, b"another secret", Some(&header), BODY, now),
                Err(Error::Unauthorized(_))
            ));
            assert!(matches!(
                verify(*p, SECRET, Some(&header), b"{}", now),
                Err(Error::Unauthorized(_))
            ));
            assert!(matches!(
                verify(*p, SECRET, None, BODY, now),
                Err(Error::Unauthorized(_))
            ));
            assert!(matches!(
                verify(*p, SECRET, Some("garbage"), BODY, now),
                Err(Error::Invalid(_))
            ));
        }
        Ok(())
    }

    #[test]
    fn timestamps_have_each_providers_tolerance() -> Result<()> {
        let now = 1_700_000_000;
        let stripe = sign(Provider::Stripe, SECRET, BODY, now - 299)?;
        assert!(verify(Provider::Stripe, SECRET, Some(&stripe), BODY, now).is_ok());
        let stale = sign(Provider::Stripe, SECRET, BODY, now - 301)?;
        assert!(verify(Provider::Stripe, SECRET, Some(&stale), BODY, now).is_err());
        let paddle = sign(Provider::Paddle, SECRET, BODY, now - 5)?;
        assert!(verify(Provider::Paddle, SECRET, Some(&paddle), BODY, now).is_ok());
        let stale = sign(Provider::Paddle, SECRET, BODY, now - 6)?;
        assert!(verify(Provider::Paddle, SECRET, Some(&stale), BODY, now).is_err());
        Ok(())
    }

    #[test]
    fn any_of_several_signatures_may_match() -> Result<()> {
        let now = 1_700_000_000;
        let good = sign(Provider::Stripe, SECRET, BODY, now)?;
        let v1 = good.split(",v1=").nth(1).unwrap_or_default();
        assert_eq!(v1.len(), 64, "{good}");
        let header = format!("t={now},v1={},v1={v1},v0=abc", "0".repeat(64));
        assert!(verify(Provider::Stripe, SECRET, Some(&header), BODY, now).is_ok());
        let good = sign(Provider::Paddle, SECRET, BODY, now)?;
        let h1 = good.split(";h1=").nth(1).unwrap_or_default();
        assert_eq!(h1.len(), 64, "{good}");
        let header = format!("ts={now};h1={};h1={h1}", "f".repeat(64));
        assert!(verify(Provider::Paddle, SECRET, Some(&header), BODY, now).is_ok());
        Ok(())
    }
}
