//! Operators: the people who log into the admin panel. ADMINs act in every tenant; USERs in
//! their own workspace. Passwords are argon2id hashes (OWASP parameters).

pub mod repo;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::text_enum;
use crate::error::{Error, Result};

text_enum! {
    pub enum Role {
        Admin => "ADMIN",
        User => "USER",
    }
}

#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled_at: Option<i64>,
    /// Session tokens issued before this instant (ms) no longer work.
    pub sessions_valid_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn validate_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(Error::Invalid("password must be 8-128 characters".into()));
    }
    Ok(())
}

pub fn validate_email(email: &str) -> Result<()> {
    super::licenses::validate_email(email)
        .map_err(|_| Error::Invalid(format!("email {email:?} is not a valid e-mail address")))
}

/// Slow on purpose (tens of milliseconds): call it off the async runtime.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Storage(format!("cannot hash a password: {e}")))
}

/// Constant-time by construction (argon2 compares its output in constant time).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody has, verified when the e-mail is unknown so that an unknown
/// account costs the same time as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy-password-nobody-has").unwrap_or_default())
}
