//! Offline licenses: Keygen-compatible license and machine files. A file is a signed (and by
//! default encrypted) JSON:API document about a license, which an app can check without the
//! server:
//!
//! ```text
//! -----BEGIN LICENSE FILE-----
//! base64({"enc": …, "sig": …, "alg": …, "kid": …}) in 60-character lines
//! -----END LICENSE FILE-----
//! ```
//!
//! - `alg` is `aes-256-gcm+ed25519` (`enc` = `base64(ciphertext).base64(iv).base64(tag)`, AES
//!   key SHA-256 of the license key, or of the license key followed by the machine's
//!   fingerprint for a machine file; no associated data) or `base64+ed25519` (`enc` = base64 of
//!   the payload).
//! - `sig` is base64 of the Ed25519 signature, by the product's key, over the ASCII bytes
//!   `license/` + `enc` (`machine/` + `enc` for a machine file).
//! - `kid` names the product key that signed ([`kid`]); Keygen's readers ignore it.
//!
//! Nothing here reads the database: the service gathers the license, its product and the
//! machine, and signs with the product's key. [`decode`] is the reader: it verifies and opens
//! any such file, Keygen's own included.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::activations::Activation;
use super::licenses::License;
use super::products::Product;
use crate::crypto;
use crate::error::{Error, Result};

/// A file's lifetime when the caller names none: 30 days.
pub const DEFAULT_TTL_SECS: i64 = 2_592_000;
/// The shortest lifetime a caller may ask for: an hour.
pub const MIN_TTL_SECS: i64 = 3_600;
/// The longest lifetime a caller may ask for: 365 days.
pub const MAX_TTL_SECS: i64 = 31_536_000;

/// The encrypted scheme (the default).
pub const ALG_ENCRYPTED: &str = "aes-256-gcm+ed25519";
/// The plain scheme (`encrypt: false`).
pub const ALG_PLAIN: &str = "base64+ed25519";

/// What a file is about: the license alone, or the license on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    License,
    Machine,
}

impl FileKind {
    /// The signature's prefix, `license` or `machine`.
    pub fn prefix(self) -> &'static str {
        match self {
            FileKind::License => "license",
            FileKind::Machine => "machine",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FileKind::License => "LICENSE FILE",
            FileKind::Machine => "MACHINE FILE",
        }
    }
}

/// The lifetime a caller asked for: `None` (absent) is the default, `Some(None)` (null) a
/// file that never expires, else 3600..=31536000 seconds.
pub fn ttl(requested: Option<Option<i64>>) -> Result<Option<i64>> {
    match requested {
        None => Ok(Some(DEFAULT_TTL_SECS)),
        Some(None) => Ok(None),
        Some(Some(secs)) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&secs) => Ok(Some(secs)),
        Some(Some(secs)) => Err(Error::Invalid(format!(
            "field `ttl`: must be {MIN_TTL_SECS}..={MAX_TTL_SECS} seconds or null for no expiry, got {secs}"
        ))),
    }
}

/// The id of a product's signing key as files name it (`kid`): the first 16 hex characters
/// of SHA-256 of the Ed25519 public key. The one place it is computed.
pub fn kid(public_key: &[u8]) -> String {
    let mut id = hex::encode(crypto::sha256(public_key));
    id.truncate(16);
    id
}

/// The AES-256 key of a file: SHA-256 of the license key, followed by the machine's
/// fingerprint for a machine file.
pub fn file_key(license_key: &str, fingerprint: Option<&str>) -> [u8; 32] {
    let mut secret = license_key.as_bytes().to_vec();
    if let Some(fp) = fingerprint {
        secret.extend_from_slice(fp.as_bytes());
    }
    crypto::sha256(&secret)
}

/// ISO 8601 with milliseconds, as Keygen writes times.
pub fn iso(ms: i64) -> String {
    super::ms_to_datetime(ms)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn iso_opt(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(iso(m)))
}

/// What goes into a file.
pub struct Contents<'a> {
    pub license: &'a License,
    pub product: &'a Product,
    /// The machine of a machine file.
    pub machine: Option<&'a Activation>,
    /// When the file is issued (ms).
    pub issued: i64,
    /// Its lifetime in seconds; `None` never expires.
    pub ttl: Option<i64>,
    /// The id of the key that signs it: the product's current key when it is issued.
    pub kid: &'a str,
}

impl Contents<'_> {
    pub fn kind(&self) -> FileKind {
        if self.machine.is_some() {
            FileKind::Machine
        } else {
            FileKind::License
        }
    }

    /// When the file expires (ms), if it does.
    pub fn expiry(&self) -> Option<i64> {
        self.ttl
            .map(|t| self.issued.saturating_add(t.saturating_mul(1000)))
    }

    /// The JSON:API document, as Keygen's files hold it.
    pub fn payload(&self) -> Value {
        let l = self.license;
        let p = self.product;
        let metadata = l
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let name = l.customer_name.clone().or_else(|| l.customer_email.clone());
        let mut included = vec![json!({
            "type": "products",
            "id": p.id,
            "attributes": {
                "name": p.name,
                "slug": p.slug,
                "created": iso(p.created_at),
                "updated": iso(p.updated_at),
            },
        })];
        // Keyward's entitlements are codes without ids of their own: the code is the id, so a
        // reader that follows Keygen's relationships finds each one in `included`.
        for code in &l.entitlements {
            included.push(json!({
                "type": "entitlements",
                "id": code,
                "attributes": {"name": code, "code": code, "metadata": {}},
            }));
        }
        let entitlement_refs: Vec<Value> = l
            .entitlements
            .iter()
            .map(|code| json!({"type": "entitlements", "id": code}))
            .collect();
        let mut relationships = json!({
            "product": {"data": {"type": "products", "id": p.id}},
            "entitlements": {"data": entitlement_refs},
        });
        if let Some(m) = self.machine {
            included.push(json!({
                "type": "machines",
                "id": m.id,
                "attributes": {
                    "fingerprint": m.machine_id,
                    "name": m.machine_name,
                    "platform": m.os_name,
                    "created": iso(m.activated_at),
                    "updated": iso(m.last_seen_at),
                },
                "relationships": {
                    "license": {"data": {"type": "licenses", "id": l.id}},
                    "product": {"data": {"type": "products", "id": p.id}},
                },
            }));
            relationships["machines"] = json!({"data": [{"type": "machines", "id": m.id}]});
        }
        json!({
            "meta": {
                "issued": iso(self.issued),
                "expiry": iso_opt(self.expiry()),
                "ttl": self.ttl,
                "kid": self.kid,
            },
            "data": {
                "type": "licenses",
                "id": l.id,
                "attributes": {
                    "name": name,
                    "key": l.key,
                    "expiry": iso_opt(l.valid_until),
                    "status": l.effective_status(self.issued).as_str(),
                    "maxMachines": l.max_activations,
                    "maxSessions": l.max_sessions,
                    "metadata": metadata,
                    "created": iso(l.created_at),
                    "updated": iso(l.updated_at),
                },
                "relationships": relationships,
            },
            "included": included,
        })
    }
}

/// Writes a file of `kind` holding `payload`: encrypted under `key` when given, else plain;
/// `sign` signs the bytes `prefix/enc` (base64 signature), `kid` names its key.
pub fn encode(
    kind: FileKind,
    payload: &Value,
    key: Option<&[u8; 32]>,
    kid: &str,
    sign: impl FnOnce(&[u8]) -> String,
) -> Result<String> {
    let plaintext = serde_json::to_vec(payload)
        .map_err(|e| Error::Storage(format!("cannot serialize a license file: {e}")))?;
    let (enc, alg) = match key {
        None => (crypto::base64(&plaintext), ALG_PLAIN),
        Some(key) => {
            let cipher = Aes256Gcm::new_from_slice(key)
                .map_err(|_| Error::Storage("a license file key is not 32 bytes".into()))?;
            let iv = crypto::random_bytes::<12>();
            let sealed = cipher
                .encrypt(Nonce::from_slice(&iv), plaintext.as_slice())
                .map_err(|_| Error::Storage("cannot encrypt a license file".into()))?;
            let (ct, tag) = sealed.split_at(sealed.len().saturating_sub(16));
            (
                format!(
                    "{}.{}.{}",
                    crypto::base64(ct),
                    crypto::base64(&iv),
                    crypto::base64(tag)
                ),
                ALG_ENCRYPTED,
            )
        }
    };
    let sig = sign(format!("{}/{enc}", kind.prefix()).as_bytes());
    let outer = json!({"enc": enc, "sig": sig, "alg": alg, "kid": kid});
    let body = crypto::base64(outer.to_string().as_bytes());
    let mut out = format!("-----BEGIN {}-----\n", kind.label());
    for (i, chunk) in body.as_bytes().chunks(60).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&String::from_utf8_lossy(chunk));
    }
    out.push_str(&format!("\n-----END {}-----\n", kind.label()));
    Ok(out)
}

/// Why a file was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not a license or machine file: {0}")]
    Malformed(String),
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlg(String),
    #[error("the signature does not verify with this public key")]
    BadSignature,
    #[error("the file does not decrypt with this key")]
    Undecryptable,
}

/// A verified, opened file.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub kind: FileKind,
    pub alg: String,
    /// The key id beside `alg`, when the file names one.
    pub kid: Option<String>,
    /// The JSON:API document.
    pub payload: Value,
}

impl Decoded {
    /// `meta.expiry`, if the file expires.
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        self.payload["meta"]["expiry"]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    }

    /// True when the file's lifetime is over at `now` (a file without expiry never is).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiry().is_some_and(|e| e <= now)
    }
}

/// Reads a file: checks its armour, verifies the signature with `public_key` (before anything
/// is decrypted) and opens it, with `key` (see [`file_key`]) when it is encrypted. The file's
/// TTL is not judged here: see [`Decoded::is_expired`].
pub fn decode(
    text: &str,
    public_key: &[u8; 32],
    key: Option<&[u8; 32]>,
) -> std::result::Result<Decoded, FileError> {
    let malformed = |why: &str| FileError::Malformed(why.to_owned());
    let text = text.trim();
    let (kind, rest) = [FileKind::License, FileKind::Machine]
        .into_iter()
        .find_map(|k| {
            text.strip_prefix(&format!("-----BEGIN {}-----", k.label()))
                .map(|r| (k, r))
        })
        .ok_or_else(|| malformed("no BEGIN LICENSE FILE or BEGIN MACHINE FILE line"))?;
    let body = rest
        .trim_end()
        .strip_suffix(&format!("-----END {}-----", kind.label()))
        .ok_or_else(|| malformed("no matching END line"))?;
    let body: String = body.split_whitespace().collect();
    let outer = crypto::from_base64(&body).ok_or_else(|| malformed("the body is not base64"))?;
    let outer: Value =
        serde_json::from_slice(&outer).map_err(|_| malformed("the body is not JSON"))?;
    let field = |name: &str| {
        outer[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| FileError::Malformed(format!("no `{name}`")))
    };
    let (enc, sig, alg) = (field("enc")?, field("sig")?, field("alg")?);
    if alg != ALG_ENCRYPTED && alg != ALG_PLAIN {
        return Err(FileError::UnsupportedAlg(alg));
    }
    let verifying = VerifyingKey::from_bytes(public_key).map_err(|_| FileError::BadSignature)?;
    let sig = crypto::from_base64(&sig)
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or(FileError::BadSignature)?;
    verifying
        .verify(format!("{}/{enc}", kind.prefix()).as_bytes(), &sig)
        .map_err(|_| FileError::BadSignature)?;
    let plaintext = if alg == ALG_PLAIN {
        crypto::from_base64(&enc).ok_or_else(|| malformed("`enc` is not base64"))?
    } else {
        let key = key.ok_or(FileError::Undecryptable)?;
        let parts: Vec<Vec<u8>> = enc
            .split('.')
            .map(crypto::from_base64)
            .collect::<Option<_>>()
            .ok_or_else(|| malformed("`enc` is not three base64 parts"))?;
        let [ct, iv, tag] = parts.as_slice() else {
            return Err(malformed("`enc` is not ciphertext.iv.tag"));
        };
        if iv.len() != 12 || tag.len() != 16 {
            return Err(malformed("`enc` has a wrong IV or tag length"));
        }
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| FileError::Undecryptable)?;
        let mut sealed = ct.clone();
        sealed.extend_from_slice(tag);
        cipher
            .decrypt(Nonce::from_slice(iv), sealed.as_slice())
            .map_err(|_| FileError::Undecryptable)?
    };
    let payload: Value =
        serde_json::from_slice(&plaintext).map_err(|_| malformed("the payload is not JSON"))?;
    Ok(Decoded {
        kind,
        alg,
        kid: outer["kid"].as_str().map(str::to_owned),
        payload,
    })
}
