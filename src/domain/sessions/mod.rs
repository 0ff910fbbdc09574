//! Sessions and validation rules of the key/HWID face: HWID binding, concurrent-session
//! limits, and the per-session nonce chain that makes replayed requests fail.

pub mod repo;

use rusqlite::Connection;

use super::activations::{self, MachineInfo};
use super::licenses::License;
use super::products::Product;
use super::{DAY_MS, text_enum};
use crate::crypto;
use crate::error::{Error, LicenseProblem, Result};

text_enum! {
    /// What a validation that would open a session gets when every session its key allows is
    /// live (a project setting).
    #[derive(Default)]
    pub enum SessionLimit {
        /// 403 `MAX_SESSIONS` until a session ends or times out.
        RefuseNew => "REFUSE_NEW",
        /// The newcomer gets a session; the oldest session ends, and its next refresh gets
        /// 403 `SESSION_ENDED`. The default: an app that crashed and restarted is never locked
        /// out.
        #[default]
        EndOldest => "END_OLDEST",
    }
}

text_enum! {
    /// Why a session ended before timing out.
    pub enum EndReason {
        /// A newer session took its place (`END_OLDEST`).
        Replaced => "REPLACED",
        /// The app ended it (end-session).
        EndedByApp => "ENDED_BY_APP",
        /// The key's `maxSessions` was lowered below the sessions running (`REFUSE_NEW` ends
        /// the newest).
        OverLimit => "OVER_LIMIT",
    }
}

impl EndReason {
    pub fn problem(self) -> LicenseProblem {
        match self {
            Self::Replaced => LicenseProblem::SessionReplaced,
            Self::EndedByApp => LicenseProblem::SessionEndedByApp,
            Self::OverLimit => LicenseProblem::SessionOverLimit,
        }
    }
}

/// How long an ended session is remembered, so its next refresh is told why it ended.
pub const ENDED_KEPT_MS: i64 = DAY_MS;
/// At most this many ended sessions are remembered per key (the newest).
pub const ENDED_KEPT_PER_KEY: u32 = 100;

/// A running instance of an app on an activated machine.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub machine_id: String,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// A session as validation sees it: live (not ended, not timed out) or ended.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub machine_id: String,
    /// The nonce this session's last validation handed out.
    pub nonce: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ended: Option<EndReason>,
}

impl SessionRow {
    fn nonce_is(&self, sent: &str) -> bool {
        self.nonce
            .as_deref()
            .is_some_and(|n| crypto::constant_time_eq(n.as_bytes(), sent.as_bytes()))
    }

    /// Sessions are ordered by start (the id breaks ties).
    fn age_key(&self) -> (i64, &str) {
        (self.created_at, &self.id)
    }
}

/// What an app presents when it validates a key.
#[derive(Debug, Clone, Default)]
pub struct KeyCheck {
    pub hwid: String,
    /// The nonce the previous validation of this session handed out, if the client takes
    /// part in rotation.
    pub nonce: Option<String>,
    /// A session to refresh instead of opening a new one.
    pub session_id: Option<String>,
    pub ip: Option<String>,
    /// True when the app itself validates. A third party checking the key for it (a Telegram
    /// bot) neither moves a session's nonce nor refreshes it, and never ends an app's session:
    /// it reads the machine's running session, or opens one only if there is room.
    pub rotates_nonce: bool,
}

pub struct KeyValidated {
    pub license: License,
    /// The nonce to present next time (this session's).
    pub nonce: String,
    pub session_id: String,
    /// True when this call bound the HWID (and started a plan's clock).
    pub bound_now: bool,
    /// Sessions this call ended to make room (`END_OLDEST`).
    pub ended: Vec<String>,
}

/// Validates `license` for the machine `check.hwid`: refuses unusable keys, finds the session
/// the request continues and checks its nonce, binds the HWID on first use (a different HWID
/// on a locked key is refused), refreshes that session or opens one within `maxSessions` by
/// the project's [`SessionLimit`], and rotates the session's nonce (see
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
    let ttl_ms = product.settings.session_ttl_secs as i64 * 1000;
    repo::purge(conn, &license.id, now - ttl_ms, now - ENDED_KEPT_MS)?;
    let rows = repo::relevant(
        conn,
        &license.id,
        check.session_id.as_deref(),
        check.nonce.is_some().then_some(check.hwid.as_str()),
    )?;
    let continued = continued_session(&rows, check)?;
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
    let max = license.max_sessions.unwrap_or(1).max(1) as usize;
    let live: Vec<&SessionRow> = rows.iter().filter(|r| r.ended.is_none()).collect();
    let strategy = product.settings.session_limit;
    let mut ended = Vec::new();
    let (session_id, nonce) = match continued {
        Some(s) => {
            if let Some(reason) = beyond_limit(&live, s, max, strategy) {
                return Err(Error::License(reason.problem()));
            }
            let nonce = if check.rotates_nonce {
                let nonce = new_nonce();
                repo::refresh(conn, &s.id, check.ip.as_deref(), &nonce, now)?;
                nonce
            } else if let Some(nonce) = &s.nonce {
                nonce.clone()
            } else {
                // A session from before chains were per session: start its chain.
                let nonce = new_nonce();
                repo::set_nonce(conn, &s.id, &nonce)?;
                nonce
            };
            (s.id.clone(), nonce)
        }
        None => {
            if live.len() >= max {
                if strategy == SessionLimit::RefuseNew || !check.rotates_nonce {
                    return Err(Error::License(LicenseProblem::SessionLimitReached));
                }
                let mut oldest = live.clone();
                oldest.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
                ended = oldest
                    .iter()
                    .take(live.len() + 1 - max)
                    .map(|s| s.id.clone())
                    .collect();
                repo::end(conn, &license.id, &ended, EndReason::Replaced, now)?;
            }
            // A v4 UUID from the thread CSPRNG (uuid's own v4 asks the OS for every id).
            let id = uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string();
            let nonce = new_nonce();
            repo::insert(
                conn,
                &repo::NewSession {
                    id: &id,
                    tenant_id: &license.tenant_id,
                    license_id: &license.id,
                    machine_id: &check.hwid,
                    ip: check.ip.as_deref(),
                    nonce: &nonce,
                },
                now,
            )?;
            (id, nonce)
        }
    };
    Ok(KeyValidated {
        license: activated.license,
        nonce,
        session_id,
        bound_now: activated.new,
        ended,
    })
}

/// Ends the app's own session `session_id` on machine `hwid` (its place is free at once). A
/// `nonce`, if sent, must be the session's current one. Works whatever the key's status: it
/// only gives up access. Must run in a writer job.
pub fn end_session(
    conn: &Connection,
    license: &License,
    product: &Product,
    hwid: &str,
    session_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<()> {
    let ttl_ms = product.settings.session_ttl_secs as i64 * 1000;
    repo::purge(conn, &license.id, now - ttl_ms, now - ENDED_KEPT_MS)?;
    let session = repo::find(conn, &license.id, session_id)?
        .filter(|s| s.machine_id == hwid)
        .ok_or(Error::License(LicenseProblem::SessionUnknown))?;
    if let Some(reason) = session.ended {
        return Err(Error::License(reason.problem()));
    }
    if let Some(sent) = nonce
        && !session.nonce_is(sent)
    {
        return Err(Error::License(LicenseProblem::NonceMismatch));
    }
    repo::end(conn, &license.id, &[session.id], EndReason::EndedByApp, now)?;
    Ok(())
}

fn new_nonce() -> String {
    crypto::random_secret(32)
}

/// The session a request continues, if any, from the rows of [`repo::relevant`]:
/// - the session `sessionId` names on this machine: an ended one is refused with its reason,
///   and a sent nonce must be its current one (else `REPLAY`);
/// - else, with a `nonce`, the session of this machine that was handed that nonce (none:
///   `REPLAY`; an ended one: its reason);
/// - else, for a bot, the machine's most recently seen live session;
/// - else none: the request opens a session.
///
/// A `sessionId` that names no session of this machine (timed out, unknown, another
/// machine's) is ignored, as if absent.
fn continued_session<'a>(
    rows: &'a [SessionRow],
    check: &KeyCheck,
) -> Result<Option<&'a SessionRow>> {
    let on_machine = rows.iter().filter(|r| r.machine_id == check.hwid);
    if let Some(id) = &check.session_id
        && let Some(s) = on_machine.clone().find(|r| &r.id == id)
    {
        if let Some(reason) = s.ended {
            return Err(Error::License(reason.problem()));
        }
        if let Some(sent) = &check.nonce
            && !s.nonce_is(sent)
        {
            return Err(Error::License(LicenseProblem::NonceMismatch));
        }
        return Ok(Some(s));
    }
    if let Some(sent) = &check.nonce {
        let s = on_machine
            .filter(|r| r.nonce_is(sent))
            .max_by_key(|r| (r.ended.is_none(), r.last_seen_at))
            .ok_or(Error::License(LicenseProblem::NonceMismatch))?;
        if let Some(reason) = s.ended {
            return Err(Error::License(reason.problem()));
        }
        return Ok(Some(s));
    }
    if !check.rotates_nonce {
        return Ok(on_machine
            .filter(|r| r.ended.is_none())
            .max_by_key(|r| r.last_seen_at));
    }
    Ok(None)
}

/// Whether the live session `s` lies beyond the key's limit (possible only once `maxSessions`
/// was lowered below the sessions running): with `END_OLDEST` the oldest are beyond it, with
/// `REFUSE_NEW` the newest.
fn beyond_limit(
    live: &[&SessionRow],
    s: &SessionRow,
    max: usize,
    strategy: SessionLimit,
) -> Option<EndReason> {
    if live.len() <= max {
        return None;
    }
    let age = s.age_key();
    match strategy {
        SessionLimit::EndOldest => {
            let newer = live.iter().filter(|o| o.age_key() > age).count();
            (newer >= max).then_some(EndReason::Replaced)
        }
        SessionLimit::RefuseNew => {
            let older = live.iter().filter(|o| o.age_key() < age).count();
            (older >= max).then_some(EndReason::OverLimit)
        }
    }
}
