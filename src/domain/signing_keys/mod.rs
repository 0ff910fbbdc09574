//! A product's signing keys. One key is current: it signs every answer, license file and
//! bundle of the product. A rotation makes a new current key and has the key current before
//! it endorse it (sign its public key), so an app that pinned any earlier key can follow the
//! chain to the new one without trusting the network. Older keys still verify until they are
//! retired; a retired key never signs again, and retiring is final.
//!
//! `products.signing_public_key` / `signing_secret_sealed` mirror the current key (written in
//! the same transaction as a rotation), so the signing path keeps reading the product row alone.

pub mod repo;

use ed25519_dalek::SigningKey;
use rusqlite::Connection;

use super::products::Product;
use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};

/// What an endorsement signs, before the new key's base64 public key. Changing it breaks
/// every client that verifies a rotation.
pub const ENDORSEMENT_PREFIX: &str = "keyward-key-endorsement/";

/// The bytes an endorsement signs: the prefix and the new key's public key, base64 exactly as
/// listed.
pub fn endorsement_message(public_key_b64: &str) -> Vec<u8> {
    [ENDORSEMENT_PREFIX.as_bytes(), public_key_b64.as_bytes()].concat()
}

/// A key's id: the first 16 hex characters of SHA-256 of its raw public key.
pub fn kid(public_key: &[u8]) -> String {
    super::license_files::kid(public_key)
}

/// A kid as a caller typed it, checked and lower-cased; anything else is bad input, not a
/// missing key.
pub fn parse_kid(text: &str) -> Result<String> {
    if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(
            "kid must be 16 hexadecimal characters (as GET /api/projects/{id}/signing-keys lists \
             it)"
            .into(),
        ))
    }
}

/// The key that endorsed a later one, and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsement {
    pub kid: String,
    /// Ed25519 over [`endorsement_message`] of the endorsed key, base64.
    pub signature: String,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub product_id: String,
    /// 1 for the product's first key, one more per rotation.
    pub serial: i64,
    pub kid: String,
    pub public_key: Vec<u8>,
    pub secret_sealed: Vec<u8>,
    pub current: bool,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// `None` for a product's first key.
    pub endorsement: Option<Endorsement>,
}

impl SigningKeyRecord {
    /// A product's first key: current, endorsed by nobody.
    pub fn first(product_id: &str, public_key: &[u8], secret_sealed: Vec<u8>, now: i64) -> Self {
        Self {
            product_id: product_id.to_owned(),
            serial: 1,
            kid: kid(public_key),
            public_key: public_key.to_vec(),
            secret_sealed,
            current: true,
            created_at: now,
            retired_at: None,
            endorsement: None,
        }
    }

    pub fn public_key_b64(&self) -> String {
        crypto::base64(&self.public_key)
    }
}

/// What a rotation made: the new current key's record, and the key itself, open, so the
/// caller can start signing with it at once.
pub struct Rotated {
    pub key: SigningKeyRecord,
    pub open: SigningKey,
}

/// Makes a new current key for `product`, endorsed by the current one, and mirrors it into the
/// product row. The previous key stays listed and keeps verifying.
pub fn rotate(
    conn: &Connection,
    master: &MasterKey,
    product: &Product,
    now: i64,
) -> Result<Rotated> {
    let previous = repo::current(conn, &product.id)?.ok_or_else(|| {
        Error::Storage(format!("product {} has no current signing key", product.id))
    })?;
    let endorser = crypto::signing_key_from_seed(&master.open(&previous.secret_sealed)?)?;
    let (public, secret) = crypto::generate_signing_key();
    let public_b64 = crypto::base64(&public);
    let signature = crypto::sign(&endorser, &endorsement_message(&public_b64));
    let key = SigningKeyRecord {
        product_id: product.id.clone(),
        serial: previous.serial + 1,
        kid: kid(&public),
        public_key: public.to_vec(),
        secret_sealed: master.seal(&secret)?,
        current: true,
        created_at: now,
        retired_at: None,
        endorsement: Some(Endorsement {
            kid: previous.kid,
            signature,
        }),
    };
    repo::make_current(conn, &key)?;
    super::products::repo::set_signing_key(
        conn,
        &product.id,
        &key.public_key,
        &key.secret_sealed,
        now,
    )?;
    Ok(Rotated {
        open: crypto::signing_key_from_seed(&secret)?,
        key,
    })
}

/// Retires the key `kid` of a product: it stays listed (as retired, so clients drop it) and
/// never signs again. The current key cannot be retired (rotate first); retiring a retired key
/// changes nothing. Answers the key and whether this call retired it.
pub fn retire(
    conn: &Connection,
    product_id: &str,
    kid: &str,
    now: i64,
) -> Result<(SigningKeyRecord, bool)> {
    let mut key = repo::find(conn, product_id, kid)?.ok_or(Error::NotFound("signing key"))?;
    if key.current {
        return Err(Error::Conflict(format!(
            "signing key {kid} is the current key and cannot be retired: rotate to a new key first"
        )));
    }
    if key.retired_at.is_some() {
        return Ok((key, false));
    }
    repo::retire(conn, product_id, kid, now)?;
    key.retired_at = Some(now);
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_sixteen_hex_characters() {
        assert_eq!(
            parse_kid("0123456789ABCDEF").ok().as_deref(),
            Some("0123456789abcdef")
        );
        for bad in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "../../etc/passwd",
        ] {
            assert!(parse_kid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_endorsement_signs_the_prefix_and_the_listed_text() {
        assert_eq!(
            endorsement_message("QUJD"),
            b"keyward-key-endorsement/QUJD".to_vec()
        );
    }
}
