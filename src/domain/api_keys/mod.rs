//! API keys: server-to-server credentials, scoped, optionally restricted to one product.
//! Stored as a readable prefix plus the SHA-256 of the whole key; the key is shown once.

pub mod repo;

use rusqlite::Connection;

use super::{now_ms, text_enum};
use crate::crypto;
use crate::error::{Error, Result};

text_enum! {
    /// Ordered: each scope includes every scope before it.
    pub enum Scope {
        ValidateOnly => "VALIDATE_ONLY",
        CreateLicense => "CREATE_LICENSE",
        ReadOnly => "READ_ONLY",
        FullAdmin => "FULL_ADMIN",
    }
}

impl Scope {
    fn rank(self) -> u8 {
        match self {
            Scope::ValidateOnly => 0,
            Scope::CreateLicense => 1,
            Scope::ReadOnly => 2,
            Scope::FullAdmin => 3,
        }
    }

    pub fn includes(self, needed: Scope) -> bool {
        self.rank() >= needed.rank()
    }
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub secret_sha256: Vec<u8>,
    pub scope: Scope,
    pub product_id: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Keys look like `kw_<8 id symbols>_<32 secret symbols>` (~165 bits of secret).
const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 32;

/// Splits a presented key into its prefix (`kw_xxxxxxxx`), or None if it cannot be one of ours.
pub fn prefix_of(presented: &str) -> Option<&str> {
    let prefix_end = 3 + PREFIX_LEN;
    let well_formed = presented.len() == prefix_end + 1 + SECRET_LEN
        && presented.starts_with("kw_")
        && presented.as_bytes()[prefix_end] == b'_';
    well_formed.then(|| &presented[..prefix_end])
}

/// Creates a key and returns it with its plaintext, which is never stored.
pub fn create(
    conn: &Connection,
    tenant_id: &str,
    name: &str,
    scope: Scope,
    product_id: Option<&str>,
) -> Result<(ApiKey, String)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::Invalid(
            "API key name must be 1-100 characters".into(),
        ));
    }
    let prefix = format!("kw_{}", crypto::random_secret(PREFIX_LEN));
    let plaintext = format!("{prefix}_{}", crypto::random_secret(SECRET_LEN));
    let key = ApiKey {
        id: crypto::new_id("ak"),
        tenant_id: tenant_id.to_owned(),
        name: name.to_owned(),
        prefix,
        secret_sha256: crypto::sha256(plaintext.as_bytes()).to_vec(),
        scope,
        product_id: product_id.map(str::to_owned),
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    repo::insert(conn, &key)?;
    Ok((key, plaintext))
}

/// True when `presented` is this live key (hash compared in constant time).
pub fn matches(key: &ApiKey, presented: &str) -> bool {
    let digest = crypto::sha256(presented.as_bytes());
    crypto::constant_time_eq(&digest, &key.secret_sha256) && key.revoked_at.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered() {
        use Scope::*;
        assert!(FullAdmin.includes(ValidateOnly));
        assert!(ReadOnly.includes(CreateLicense));
        assert!(CreateLicense.includes(CreateLicense));
        assert!(!CreateLicense.includes(ReadOnly));
        assert!(!ValidateOnly.includes(CreateLicense));
        assert!(!ReadOnly.includes(FullAdmin));
    }

    #[test]
    fn only_well_formed_keys_have_a_prefix() {
        let key = format!("kw_abcdefgh_{}", "s".repeat(32));
        assert_eq!(prefix_of(&key), Some("kw_abcdefgh"));
        assert_eq!(prefix_of("kw_abcdefgh"), None);
        assert_eq!(prefix_of(&key.replace("kw_", "xx_")), None);
        assert_eq!(prefix_of(&format!("{key}x")), None);
        assert_eq!(prefix_of(""), None);
    }
}
