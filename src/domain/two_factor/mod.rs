//! Two-factor login for operators: time-based one-time codes (TOTP, RFC 6238: HMAC-SHA-1,
//! 6 digits, 30-second steps, one step of clock drift either way) and one-time recovery codes.
//! A code is accepted once: the step it matched is remembered, and only later steps pass.

pub mod repo;

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::crypto;
use crate::error::{Error, Result};

/// RFC 6238's default step.
pub const STEP_SECS: i64 = 30;
/// 160 bits, the size RFC 4226 recommends (the HMAC-SHA-1 block it keys).
pub const SECRET_BYTES: usize = 20;
pub const DIGITS: usize = 6;
/// Recovery codes made at once; each works once.
pub const RECOVERY_CODES: usize = 10;
/// 16 symbols of a 32-symbol alphabet: 80 random bits, beyond guessing, so a plain SHA-256 is
/// stored (nothing to brute-force offline).
const RECOVERY_CODE_LEN: usize = 16;
/// Shown in authenticator apps beside the account.
pub const ISSUER: &str = "Keyward";

/// An operator's TOTP enrolment as stored.
#[derive(Debug, Clone)]
pub struct Totp {
    pub operator_id: String,
    pub secret_sealed: Vec<u8>,
    /// None while the enrolment waits for its first code.
    pub enabled_at: Option<i64>,
    /// The last step a code was accepted for.
    pub last_step: i64,
    pub created_at: i64,
}

impl Totp {
    pub fn is_enabled(&self) -> bool {
        self.enabled_at.is_some()
    }
}

/// The second factor a sign-in (or a sensitive change) presents.
#[derive(Debug, Clone)]
pub enum Factor {
    /// A 6-digit code from the authenticator app.
    Code(String),
    /// One of the recovery codes.
    RecoveryCode(String),
}

pub fn new_secret() -> [u8; SECRET_BYTES] {
    crypto::random_bytes()
}

/// The time step of a Unix time in seconds.
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code for `step` (RFC 4226's HOTP with the step as counter).
pub fn code_at(secret: &[u8], step: i64) -> Result<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret)
        .map_err(|e| Error::Storage(format!("TOTP key: {e}")))?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let word = digest
        .get(offset..offset + 4)
        .ok_or_else(|| Error::Storage("TOTP digest too short".into()))?;
    let binary = u32::from_be_bytes([word[0] & 0x7f, word[1], word[2], word[3]]);
    Ok(format!("{:06}", binary % 1_000_000))
}

/// The code as typed, reduced to its digits: authenticator apps show "123 456".
pub fn normalize_code(input: &str) -> Result<String> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "code must be the {DIGITS} digits your authenticator app shows"
        )));
    }
    Ok(digits)
}

/// The step `code` matches at `unix_secs` (allowing one step of drift either way), if it is
/// later than `last_step`: an accepted code cannot be used again, nor an older one.
pub fn matching_step(
    secret: &[u8],
    code: &str,
    unix_secs: i64,
    last_step: i64,
) -> Result<Option<i64>> {
    let now = step_at(unix_secs);
    let mut found = None;
    // Every candidate is computed and compared: the time taken does not tell which matched.
    for step in [now - 1, now, now + 1] {
        let expected = code_at(secret, step)?;
        if crypto::constant_time_eq(expected.as_bytes(), code.as_bytes()) && step > last_step {
            found = Some(step);
        }
    }
    Ok(found)
}

/// The secret as authenticator apps take it typed in: RFC 4648 base32 without padding.
pub fn secret_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The code an authenticator app shows at `unix_secs` for a secret given in base32 (what a
/// script or a test holding the enrolment's `secret` computes).
pub fn code_for_base32(secret_base32: &str, unix_secs: i64) -> Result<String> {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_base32.trim().to_ascii_uppercase().as_bytes())
        .map_err(|e| Error::Invalid(format!("secret is not base32: {e}")))?;
    code_at(&secret, step_at(unix_secs))
}

/// The `otpauth://` URI of Google Authenticator's key-URI format, which every authenticator
/// app reads from a QR code.
pub fn otpauth_uri(account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        issuer = percent_encode(ISSUER),
        account = percent_encode(account),
        secret = secret_base32(secret),
    )
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URI as an SVG QR code, for the panel's enrolment screen.
pub fn qr_svg(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M)
        .map_err(|e| Error::Storage(format!("cannot draw the QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// New recovery codes, formatted for reading aloud: `ABCD-EFGH-JKLM-NPQR`.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = crypto::random_string(crypto::KEY_ALPHABET, RECOVERY_CODE_LEN);
            raw.as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The stored form of a recovery code: its SHA-256, after the same normalisation as typing
/// (case and dashes do not matter).
pub fn recovery_code_hash(code: &str) -> Result<[u8; 32]> {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if normal.len() != RECOVERY_CODE_LEN || !normal.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Invalid(
            "recoveryCode must be one of your recovery codes (16 letters and digits, e.g. ABCD-EFGH-JKLM-NPQR)"
                .into(),
        ));
    }
    Ok(crypto::sha256(normal.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn rfc_6238_test_vectors() -> Result<()> {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(secret, step_at(time))?, code, "at {time}");
        }
        Ok(())
    }

    #[test]
    fn a_code_passes_once_and_within_one_step() -> Result<()> {
        let secret = b"12345678901234567890";
        let now = 1111111111;
        let code = code_at(secret, step_at(now))?;
        assert_eq!(matching_step(secret, &code, now, 0)?, Some(step_at(now)));
        assert_eq!(matching_step(secret, &code, now, step_at(now))?, None);
        assert_eq!(
            matching_step(secret, &code, now + STEP_SECS, 0)?,
            Some(step_at(now))
        );
        assert_eq!(matching_step(secret, &code, now + 2 * STEP_SECS, 0)?, None);
        Ok(())
    }

    #[test]
    fn recovery_codes_ignore_case_and_dashes() -> Result<()> {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let code = &codes[0];
        assert_eq!(code.len(), 19);
        assert_eq!(
            recovery_code_hash(code)?,
            recovery_code_hash(&code.replace('-', "").to_lowercase())?
        );
        assert!(recovery_code_hash("short").is_err());
        Ok(())
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let uri = otpauth_uri("a+b@example.com", b"12345678901234567890");
        assert!(uri.starts_with("otpauth://totp/Keyward:a%2Bb%40example.com?secret="));
        assert!(uri.contains("&issuer=Keyward&"));
    }
}
