//! Sign-in throttling per account, shared by operator and portal logins, after OWASP's
//! "device cookies": an attacker guessing one account's password from many addresses must stay
//! bounded without locking its owner out.
//!
//! - Every account has a budget of failures (`--rate-limit-login` per minute). Only failures
//!   spend it: a unit is reserved before the password check (so concurrent guesses cannot
//!   overdraw it) and given back when the password was right.
//! - A successful sign-in gives the client a device cookie: an HMAC over the account id, a
//!   random nonce and the issue time. A client that presents a genuine device cookie of the
//!   account it signs in to spends that cookie's own budget instead of the account's, so the
//!   owner's browser passes while the account is locked for everyone else.
//! - A device cookie that sees as many failures is locked in turn (a stolen cookie buys no
//!   more guesses than anyone else gets).
//!
//! The per-IP login limit is separate and unchanged (the services check it first).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto;
use crate::domain::now_ms;
use crate::error::Error;
use crate::state::AppState;

/// Device cookies are named `kw_device_<16 hex>`, one per account a browser signed in to.
pub const DEVICE_COOKIE_PREFIX: &str = "kw_device_";
/// How long a device cookie is honoured after its issue (every sign-in issues a new one).
pub const DEVICE_COOKIE_TTL_SECS: i64 = 90 * 24 * 3600;

/// Whose sign-in this is: the account kinds have separate cookies and budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Operator,
    PortalUser,
}

impl AccountKind {
    fn label(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::PortalUser => "portal",
        }
    }
}

/// A device cookie to hand to the client. The face chooses its path and flags (HttpOnly,
/// SameSite=Strict, Secure behind HTTPS).
#[derive(Debug, Clone)]
pub struct DeviceCookie {
    pub name: String,
    pub value: String,
    pub max_age_secs: i64,
}

/// The budget an attempt reserved a unit of.
#[derive(Debug)]
enum Budget {
    Account(String),
    Device(String),
}

/// A sign-in attempt admitted past the lockout, holding one reserved unit of a failure budget.
/// Dropping it (a failure) keeps the unit spent; [`Attempt::succeeded`] gives it back.
#[derive(Debug)]
#[must_use = "a successful sign-in must give its unit back"]
pub struct Attempt {
    budget: Budget,
}

fn mac(state: &AppState, parts: &[&str]) -> Result<Hmac<Sha256>, Error> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.master.derive("login-device-cookies"))
        .map_err(|e| Error::Storage(format!("device cookie key: {e}")))?;
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    Ok(mac)
}

/// The cookie name of `account_id`'s device cookie: keyed, so a name tells nothing about
/// the account to anyone without the server's key.
fn cookie_name(state: &AppState, kind: AccountKind, account_id: &str) -> Result<String, Error> {
    let tag = mac(state, &["name", kind.label(), account_id])?
        .finalize()
        .into_bytes();
    Ok(format!(
        "{DEVICE_COOKIE_PREFIX}{}",
        hex::encode(tag.get(..8).unwrap_or_default())
    ))
}

fn signature(
    state: &AppState,
    kind: AccountKind,
    account_id: &str,
    nonce: &str,
    issued: &str,
) -> Result<String, Error> {
    let tag = mac(state, &["device", kind.label(), account_id, nonce, issued])?.finalize();
    Ok(hex::encode(tag.into_bytes()))
}

/// A new device cookie for `account_id` (after a successful sign-in).
pub fn device_cookie(
    state: &AppState,
    kind: AccountKind,
    account_id: &str,
) -> Result<DeviceCookie, Error> {
    let nonce = crypto::random_secret(24);
    let issued = (now_ms() / 1000).to_string();
    let sig = signature(state, kind, account_id, &nonce, &issued)?;
    Ok(DeviceCookie {
        name: cookie_name(state, kind, account_id)?,
        value: format!("{nonce}.{issued}.{sig}"),
        max_age_secs: DEVICE_COOKIE_TTL_SECS,
    })
}

/// The nonce of a genuine, unexpired device cookie of `account_id` among those presented.
fn trusted_device(
    state: &AppState,
    kind: AccountKind,
    account_id: &str,
    presented: &[(String, String)],
) -> Result<Option<String>, Error> {
    let name = cookie_name(state, kind, account_id)?;
    let Some((_, value)) = presented.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    let mut parts = value.splitn(3, '.');
    let (Some(nonce), Some(issued), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let Ok(issued_secs) = issued.parse::<i64>() else {
        return Ok(None);
    };
    let age = now_ms() / 1000 - issued_secs;
    if !(0..=DEVICE_COOKIE_TTL_SECS).contains(&age) {
        return Ok(None);
    }
    let expected = signature(state, kind, account_id, nonce, issued)?;
    Ok(crypto::constant_time_eq(expected.as_bytes(), sig.as_bytes()).then(|| nonce.to_owned()))
}

/// Admits a sign-in attempt before its password is checked, or refuses it with 429.
///
/// `account_key` names the account as the client typed it (so an unknown account is limited
/// exactly like a real one); `account_id` is the account found by it, if any; `presented` are
/// the client's device cookies (name, value).
pub fn admit(
    state: &AppState,
    kind: AccountKind,
    account_key: &str,
    account_id: Option<&str>,
    presented: &[(String, String)],
) -> Result<Attempt, Error> {
    let device = match account_id {
        Some(id) => trusted_device(state, kind, id, presented)?,
        None => None,
    };
    let budget = match device {
        Some(nonce) => Budget::Device(format!("{}:{nonce}", kind.label())),
        None => Budget::Account(format!("{}:{account_key}", kind.label())),
    };
    match &budget {
        Budget::Device(key) => state.limits.login_per_device.reserve(key)?,
        Budget::Account(key) => state.limits.login_per_account.reserve(key)?,
    }
    Ok(Attempt { budget })
}

impl Attempt {
    /// The password was right: the reserved unit goes back, and the client gets a new device
    /// cookie for this account.
    pub fn succeeded(
        self,
        state: &AppState,
        kind: AccountKind,
        account_id: &str,
    ) -> Result<DeviceCookie, Error> {
        match &self.budget {
            Budget::Device(key) => state.limits.login_per_device.give_back(key),
            Budget::Account(key) => state.limits.login_per_account.give_back(key),
        }
        device_cookie(state, kind, account_id)
    }

    /// The check passed, but it does not end a sign-in (the password step of a two-factor
    /// sign-in, or a re-authentication): the unit goes back and no device cookie is issued,
    /// so knowing the password buys no fresh budget for guessing the second factor.
    pub fn passed(self, state: &AppState) {
        match &self.budget {
            Budget::Device(key) => state.limits.login_per_device.give_back(key),
            Budget::Account(key) => state.limits.login_per_account.give_back(key),
        }
    }

    /// Whether the attempt came with a genuine device cookie (for the audit trail).
    pub fn from_known_device(&self) -> bool {
        matches!(self.budget, Budget::Device(_))
    }
}
