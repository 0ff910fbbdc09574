//! Operators: the people who log into the admin panel. ADMINs act in every tenant; USERs in
//! their own workspace. Passwords are argon2id hashes (OWASP parameters).

pub mod repo;

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
/// Hashed in the process's pool of argon2 memory (see `crate::passwords`).
pub fn hash_password(password: &str) -> Result<String> {
    crate::passwords::hash(password)
}

/// Constant-time by construction (argon2 compares its output in constant time).
pub fn verify_password(password: &str, hash: &str) -> bool {
    crate::passwords::verify(password, hash)
}

/// A hash of a random password nobody kept, with the parameters of every new hash, verified
/// when the e-mail is unknown so that an unknown account costs the same time as a wrong
/// password. A constant: hashing one at start-up would hold argon2's 19 MiB from the first
/// second (the idle-memory budget), and whether it matches never grants anything.
pub fn decoy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$nBr9S2I+p1JuW9Scb4iK3w$CZ1wJ6MGNIYhmWfMeYdP6OVAmNOIwin8tXjQToBBCPY"
}

/// A setup token is good for a day: long enough to finish an installation, short enough that
/// a URL left in a terminal's scroll-back is soon worthless.
pub const SETUP_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// A new one-time setup token: shown once (printed as the setup URL), only its SHA-256 is
/// stored. ~206 random bits, so a plain hash suffices (nothing to brute-force).
#[derive(Debug, Clone)]
pub struct SetupToken {
    pub token: String,
    pub expires_at: i64,
}

impl SetupToken {
    pub fn generate(now: i64) -> Self {
        Self {
            token: crate::crypto::random_secret(40),
            expires_at: now + SETUP_TOKEN_TTL_MS,
        }
    }

    pub fn sha256(&self) -> [u8; 32] {
        crate::crypto::sha256(self.token.as_bytes())
    }
}

/// Whether `presented` is the stored setup token (its SHA-256 and expiry), compared in
/// constant time so that the answer's timing tells nothing about how close a guess was.
pub fn check_setup_token(
    presented: Option<&str>,
    stored: Option<(Vec<u8>, i64)>,
    now: i64,
) -> Result<()> {
    use crate::error::SetupTokenProblem as P;
    let presented = presented
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Error::SetupToken(P::Missing))?;
    let Some((sha256, expires_at)) = stored else {
        return Err(Error::SetupToken(P::Invalid));
    };
    if !crate::crypto::constant_time_eq(&crate::crypto::sha256(presented.as_bytes()), &sha256) {
        return Err(Error::SetupToken(P::Invalid));
    }
    if now >= expires_at {
        return Err(Error::SetupToken(P::Expired));
    }
    Ok(())
}
