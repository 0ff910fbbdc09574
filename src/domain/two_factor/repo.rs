use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Totp;
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Totp> {
    Ok(Totp {
        operator_id: r.get("operator_id")?,
        secret_sealed: r.get("secret_sealed")?,
        enabled_at: r.get("enabled_at")?,
        last_step: r.get("last_step")?,
        created_at: r.get("created_at")?,
    })
}

pub fn find(conn: &Connection, operator_id: &str) -> Result<Option<Totp>> {
    Ok(conn
        .prepare_cached("SELECT * FROM operator_totp WHERE operator_id = ?1")?
        .query_row([operator_id], from_row)
        .optional()?)
}

/// True when the operator signs in with a second factor.
pub fn is_enabled(conn: &Connection, operator_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM operator_totp WHERE operator_id = ?1 AND enabled_at IS NOT NULL",
        )?
        .query_row([operator_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Starts (or restarts) an enrolment with a new secret, not yet enabled.
pub fn start(conn: &Connection, operator_id: &str, secret_sealed: &[u8], now: i64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO operator_totp
            (operator_id, secret_sealed, enabled_at, last_step, created_at)
         VALUES (?1, ?2, NULL, 0, ?3)",
        params![operator_id, secret_sealed, now],
    )?;
    Ok(())
}

pub fn enable(conn: &Connection, operator_id: &str, step: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE operator_totp SET enabled_at = ?2, last_step = ?3 WHERE operator_id = ?1",
        params![operator_id, now, step],
    )?;
    Ok(())
}

/// Remembers the step a code was accepted for; false when a code of this step or a later one
/// was accepted meanwhile (the code is then spent).
pub fn advance_step(conn: &Connection, operator_id: &str, step: i64) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE operator_totp SET last_step = ?2 WHERE operator_id = ?1 AND last_step < ?2",
        params![operator_id, step],
    )? > 0)
}

/// Turns two-factor login off: the secret and the recovery codes go.
pub fn delete(conn: &Connection, operator_id: &str) -> Result<bool> {
    conn.execute(
        "DELETE FROM operator_recovery_codes WHERE operator_id = ?1",
        [operator_id],
    )?;
    Ok(conn.execute(
        "DELETE FROM operator_totp WHERE operator_id = ?1",
        [operator_id],
    )? > 0)
}

/// Replaces every recovery code of the operator (the old ones stop working).
pub fn replace_recovery_codes(
    conn: &Connection,
    operator_id: &str,
    hashes: &[[u8; 32]],
    now: i64,
) -> Result<()> {
    conn.execute(
        "DELETE FROM operator_recovery_codes WHERE operator_id = ?1",
        [operator_id],
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO operator_recovery_codes (operator_id, code_sha256, used_at, created_at)
         VALUES (?1, ?2, NULL, ?3)",
    )?;
    for hash in hashes {
        insert.execute(params![operator_id, hash.as_slice(), now])?;
    }
    Ok(())
}

/// Spends an unused recovery code; false when it is not one (or was used).
pub fn use_recovery_code(
    conn: &Connection,
    operator_id: &str,
    hash: &[u8; 32],
    now: i64,
) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE operator_recovery_codes SET used_at = ?3
         WHERE operator_id = ?1 AND code_sha256 = ?2 AND used_at IS NULL",
        params![operator_id, hash.as_slice(), now],
    )? > 0)
}

pub fn recovery_codes_left(conn: &Connection, operator_id: &str) -> Result<u32> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM operator_recovery_codes
             WHERE operator_id = ?1 AND used_at IS NULL",
        )?
        .query_row([operator_id], |r| r.get::<_, i64>(0))? as u32)
}

/// Whether the workspace requires two-factor login of its operators.
pub fn is_required(conn: &Connection, tenant_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT required FROM tenant_two_factor_policy WHERE tenant_id = ?1")?
        .query_row([tenant_id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

pub fn set_required(conn: &Connection, tenant_id: &str, required: bool, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO tenant_two_factor_policy (tenant_id, required, updated_at)
         VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant_id) DO UPDATE SET required = ?2, updated_at = ?3",
        params![tenant_id, required, now],
    )?;
    Ok(())
}
