use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Deletes the license's sessions last seen before `dead_before`.
pub fn drop_dead(conn: &Connection, license_id: &str, dead_before: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE license_id = ?1 AND last_seen_at < ?2")?
        .execute(params![license_id, dead_before])?)
}

pub fn count(conn: &Connection, license_id: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM sessions WHERE license_id = ?1")?
        .query_row([license_id], |r| r.get::<_, i64>(0))? as u64)
}

/// True if the session exists for this license on this machine (and was refreshed). A
/// session id presented from another machine refreshes nothing.
pub fn refresh(
    conn: &Connection,
    license_id: &str,
    id: &str,
    machine_id: &str,
    now: i64,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE sessions SET last_seen_at = ?3
             WHERE id = ?2 AND license_id = ?1 AND machine_id = ?4",
        )?
        .execute(params![license_id, id, now, machine_id])?
        > 0)
}

#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &Connection,
    id: &str,
    tenant_id: &str,
    license_id: &str,
    machine_id: &str,
    ip: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, tenant_id, license_id, machine_id, ip, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![id, tenant_id, license_id, machine_id, ip, now])?;
    Ok(())
}

pub fn delete_for_license(conn: &Connection, license_id: &str) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE license_id = ?1", [license_id])?)
}

/// Sessions of a license, most recently seen first (dead ones are dropped lazily).
pub fn for_license(conn: &Connection, license_id: &str) -> Result<Vec<super::Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, machine_id, ip, created_at, last_seen_at FROM sessions
         WHERE license_id = ?1 ORDER BY last_seen_at DESC",
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

pub fn set_nonce(conn: &Connection, license_id: &str, nonce: &str) -> Result<()> {
    conn.prepare_cached("UPDATE licenses SET current_nonce = ?2 WHERE id = ?1")?
        .execute(params![license_id, nonce])?;
    Ok(())
}

pub fn current_nonce(conn: &Connection, license_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT current_nonce FROM licenses WHERE id = ?1")?
        .query_row([license_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The longest-lived session of a license on one machine.
pub fn oldest_on_machine(
    conn: &Connection,
    license_id: &str,
    machine_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM sessions WHERE license_id = ?1 AND machine_id = ?2
             ORDER BY created_at LIMIT 1",
        )?
        .query_row([license_id, machine_id], |r| r.get(0))
        .optional()?)
}
