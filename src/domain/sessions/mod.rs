//! Sessions and validation rules of the key/HWID face: HWID binding, concurrent-session
//! limits, and the per-key nonce that makes replayed requests fail.

pub mod repo;

use rusqlite::Connection;

use super::activations::{self, MachineInfo};
use super::licenses::License;
use super::products::Product;
use crate::crypto;
use crate::error::{Error, LicenseProblem, Result};

/// A running instance of an app on an activated machine.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub machine_id: String,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// What an app presents when it validates a key.
#[derive(Debug, Clone, Default)]
pub struct KeyCheck {
    pub hwid: String,
    /// The nonce the previous validation handed out, if the client takes part in rotation.
    pub nonce: Option<String>,
    /// A session to refresh instead of opening a new one.
    pub session_id: Option<String>,
    pub ip: Option<String>,
    /// True when the app itself validates. A third party checking the key for it (a Telegram
    /// bot) leaves the nonce as it is: the nonce is the app's anti-replay chain, and a read by
    /// someone else must not make the app's next request a replay.
    pub rotates_nonce: bool,
}

pub struct KeyValidated {
    pub license: License,
    /// The nonce to present next time.
    pub nonce: String,
    pub session_id: String,
    /// True when this call bound the HWID (and started a plan's clock).
    pub bound_now: bool,
}

/// Validates `license` for the machine `check.hwid`: refuses unusable keys, checks the nonce,
/// binds the HWID on first use (a different HWID on a locked key is refused), opens or
/// refreshes a session within `maxSessions`, and rotates the nonce (see
/// [`KeyCheck::rotates_nonce`]). Must run in a writer job.
pub fn validate_key(
    conn: &Connection,
    license: &License,
    product: &Product,
    check: &KeyCheck,
    now: i64,
) -> Result<KeyValidated> {
    if let Some(problem) = license.problem(now) {
        return Err(Error::License(problem));
    }
    if let Some(sent) = &check.nonce {
        let current = repo::current_nonce(conn, &license.id)?;
        let matches = current
            .as_deref()
            .is_some_and(|c| crypto::constant_time_eq(c.as_bytes(), sent.as_bytes()));
        if !matches {
            return Err(Error::License(LicenseProblem::NonceMismatch));
        }
    }
    let machine = MachineInfo {
        machine_id: check.hwid.clone(),
        ip: check.ip.clone(),
        ..MachineInfo::default()
    };
    let activated = match activations::activate_machine(conn, license, &machine, now) {
        Ok(a) => a,
        Err(Error::License(LicenseProblem::ActivationLimitReached)) => {
            return Err(Error::License(LicenseProblem::HwidMismatch));
        }
        Err(e) => return Err(e),
    };
    let session_id = open_or_refresh_session(conn, license, product, check, now)?;
    let current = if check.rotates_nonce {
        None
    } else {
        repo::current_nonce(conn, &license.id)?
    };
    let nonce = match current {
        Some(nonce) => nonce,
        // A key no app has validated yet has no chain to break: start one.
        None => {
            let nonce = crypto::random_secret(32);
            repo::set_nonce(conn, &license.id, &nonce)?;
            nonce
        }
    };
    Ok(KeyValidated {
        license: activated.license,
        nonce,
        session_id,
        bound_now: activated.new,
    })
}

/// The session this validation runs in: the presented live one (if it is this machine's), a
/// new one within `maxSessions`, or, at the limit, the oldest session of the same machine (an
/// app restarted on the same machine has lost its sessionId and must not lock itself out).
/// Another machine at the limit is refused, even presenting another machine's sessionId.
fn open_or_refresh_session(
    conn: &Connection,
    license: &License,
    product: &Product,
    check: &KeyCheck,
    now: i64,
) -> Result<String> {
    let ttl_ms = product.settings.session_ttl_secs as i64 * 1000;
    repo::drop_dead(conn, &license.id, now - ttl_ms)?;
    if let Some(id) = &check.session_id
        && repo::refresh(conn, &license.id, id, &check.hwid, now)?
    {
        return Ok(id.clone());
    }
    let max = license.max_sessions.unwrap_or(1) as u64;
    if repo::count(conn, &license.id)? >= max {
        let id = repo::oldest_on_machine(conn, &license.id, &check.hwid)?
            .ok_or(Error::License(LicenseProblem::SessionLimitReached))?;
        repo::refresh(conn, &license.id, &id, &check.hwid, now)?;
        return Ok(id);
    }
    // A v4 UUID from the thread CSPRNG (uuid's own v4 asks the OS for every id).
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string();
    repo::insert(
        conn,
        &id,
        &license.tenant_id,
        &license.id,
        &check.hwid,
        check.ip.as_deref(),
        now,
    )?;
    Ok(id)
}
