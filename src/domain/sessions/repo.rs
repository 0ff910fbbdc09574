use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{ENDED_KEPT_PER_KEY, EndReason, SessionRow};
use crate::error::Result;

/// Deletes the license's sessions that timed out (live ones last seen before `timed_out_before`)
/// and the ended ones remembered since before `ended_before`.
pub fn purge(
    conn: &Connection,
    license_id: &str,
    timed_out_before: i64,
    ended_before: i64,
) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM sessions WHERE license_id = ?1
             AND ((ended_at IS NULL AND last_seen_at < ?2) OR ended_at < ?3)",
        )?
        .execute(params![license_id, timed_out_before, ended_before])?)
}

/// Ended sessions remembered since before `ended_before`, of every license (maintenance).
pub fn purge_ended(conn: &Connection, ended_before: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE ended_at < ?1")?
        .execute([ended_before])?)
}

fn row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let reason: Option<String> = r.get(5)?;
    Ok(SessionRow {
        id: r.get(0)?,
        machine_id: r.get(1)?,
        nonce: r.get(2)?,
        created_at: r.get(3)?,
        last_seen_at: r.get(4)?,
        // An ended row always has a reason; an unknown one reads as replaced.
        ended: match (r.get::<_, Option<i64>>(6)?, reason) {
            (None, _) => None,
            (Some(_), reason) => Some(
                reason
                    .as_deref()
                    .and_then(EndReason::parse)
                    .unwrap_or(EndReason::Replaced),
            ),
        },
    })
}

const ROW: &str = "id, machine_id, nonce, created_at, last_seen_at, end_reason, ended_at";

/// What a validation needs (after [`purge`]): every live session of the license, the one
/// `session_id` names, and with `machine` the ended sessions of that machine (a nonce may name
/// one).
pub fn relevant(
    conn: &Connection,
    license_id: &str,
    session_id: Option<&str>,
    machine: Option<&str>,
) -> Result<Vec<SessionRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW} FROM sessions WHERE license_id = ?1
         AND (ended_at IS NULL OR id = ?2 OR machine_id = ?3)"
    ))?;
    let rows = stmt.query_map(params![license_id, session_id, machine], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find(conn: &Connection, license_id: &str, id: &str) -> Result<Option<SessionRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ROW} FROM sessions WHERE license_id = ?1 AND id = ?2"
        ))?
        .query_row([license_id, id], row)
        .optional()?)
}

/// Marks the session seen now from `ip` and gives it its next nonce.
pub fn refresh(conn: &Connection, id: &str, ip: Option<&str>, nonce: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET last_seen_at = ?2, nonce = ?3, ip = COALESCE(?4, ip) WHERE id = ?1",
    )?
    .execute(params![id, now, nonce, ip])?;
    Ok(())
}

pub fn set_nonce(conn: &Connection, id: &str, nonce: &str) -> Result<()> {
    conn.prepare_cached("UPDATE sessions SET nonce = ?2 WHERE id = ?1")?
        .execute(params![id, nonce])?;
    Ok(())
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub license_id: &'a str,
    pub machine_id: &'a str,
    pub ip: Option<&'a str>,
    pub nonce: &'a str,
}

pub fn insert(conn: &Connection, s: &NewSession<'_>, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions
            (id, tenant_id, license_id, machine_id, ip, created_at, last_seen_at, nonce)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![
        s.id,
        s.tenant_id,
        s.license_id,
        s.machine_id,
        s.ip,
        now,
        s.nonce
    ])?;
    Ok(())
}

/// Ends the sessions `ids` of the license for `reason`; they are remembered (at most
/// [`ENDED_KEPT_PER_KEY`] per license, the newest) so their next refresh learns why.
pub fn end(
    conn: &Connection,
    license_id: &str,
    ids: &[String],
    reason: EndReason,
    now: i64,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "UPDATE sessions SET ended_at = ?3, end_reason = ?4
         WHERE license_id = ?1 AND id = ?2 AND ended_at IS NULL",
    )?;
    for id in ids {
        stmt.execute(params![license_id, id, now, reason])?;
    }
    conn.prepare_cached(
        "DELETE FROM sessions WHERE license_id = ?1 AND ended_at IS NOT NULL AND id NOT IN
            (SELECT id FROM sessions WHERE license_id = ?1 AND ended_at IS NOT NULL
             ORDER BY ended_at DESC LIMIT ?2)",
    )?
    .execute(params![license_id, ENDED_KEPT_PER_KEY])?;
    Ok(())
}

pub fn delete_for_license(conn: &Connection, license_id: &str) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE license_id = ?1", [license_id])?)
}

/// The running (not ended) sessions of a license, most recently seen first (timed-out ones
/// are dropped lazily).
pub fn for_license(conn: &Connection, license_id: &str) -> Result<Vec<super::Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, machine_id, ip, created_at, last_seen_at FROM sessions
         WHERE license_id = ?1 AND ended_at IS NULL ORDER BY last_seen_at DESC",
    )?;
    let rows = stmt.query_map([license_id], |r| {
        Ok(super::Session {
            id: r.get(0)?,
            machine_id: r.get(1)?,
            ip: r.get(2)?,
            created_at: r.get(3)?,
            last_seen_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records an envelope's request id; false if it was already seen (a replay).
pub fn remember_request(
    conn: &Connection,
    product_id: &str,
    request_id: &str,
    expires_at: i64,
) -> Result<bool> {
    let seen = conn
        .prepare_cached("SELECT 1 FROM seen_requests WHERE product_id = ?1 AND request_id = ?2")?
        .query_row([product_id, request_id], |_| Ok(()))
        .optional()?
        .is_some();
    if seen {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO seen_requests (product_id, request_id, expires_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![product_id, request_id, expires_at])?;
    Ok(true)
}

pub fn purge_seen_requests(conn: &Connection, now: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM seen_requests WHERE expires_at < ?1", [now])?)
}
