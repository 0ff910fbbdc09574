use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Operator;
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Operator> {
    Ok(Operator {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        email: r.get("email")?,
        password_hash: r.get("password_hash")?,
        role: r.get("role")?,
        disabled_at: r.get("disabled_at")?,
        sessions_valid_after: r.get("sessions_valid_after")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

pub fn insert(conn: &Connection, o: &Operator) -> Result<()> {
    conn.execute(
        "INSERT INTO operators (id, tenant_id, email, password_hash, role, disabled_at,
            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            o.id,
            o.tenant_id,
            o.email,
            o.password_hash,
            o.role,
            o.disabled_at,
            o.created_at,
            o.updated_at
        ],
    )?;
    Ok(())
}

pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM operators", [], |r| r.get::<_, i64>(0))? as u64)
}

pub fn find(conn: &Connection, id: &str) -> Result<Option<Operator>> {
    Ok(conn
        .prepare_cached("SELECT * FROM operators WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?)
}

pub fn find_by_email(conn: &Connection, email: &str) -> Result<Option<Operator>> {
    Ok(conn
        .prepare_cached("SELECT * FROM operators WHERE email = ?1")?
        .query_row([email], from_row)
        .optional()?)
}

/// Operators of one tenant, or of all tenants when `tenant_id` is None.
pub fn list(
    conn: &Connection,
    tenant_id: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Operator>, u64)> {
    let total = conn
        .prepare_cached("SELECT COUNT(*) FROM operators WHERE ?1 IS NULL OR tenant_id = ?1")?
        .query_row([tenant_id], |r| r.get::<_, i64>(0))? as u64;
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM operators WHERE ?1 IS NULL OR tenant_id = ?1
         ORDER BY created_at, id LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt.query_map(params![tenant_id, limit, offset as i64], from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

pub fn set_disabled(conn: &Connection, id: &str, disabled_at: Option<i64>, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE operators SET disabled_at = ?2, updated_at = ?3,
            sessions_valid_after = MAX(sessions_valid_after, ?3) WHERE id = ?1",
        params![id, disabled_at, now],
    )?;
    Ok(())
}

pub fn set_password_hash(conn: &Connection, id: &str, hash: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE operators SET password_hash = ?2, updated_at = ?3, sessions_valid_after = ?3
         WHERE id = ?1",
        params![id, hash, now],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM operators WHERE id = ?1", [id])? > 0)
}

pub fn revoke_token(conn: &Connection, jti: &str, expires_at: i64) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
        params![jti, expires_at],
    )?;
    Ok(())
}

pub fn is_token_revoked(conn: &Connection, jti: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM revoked_tokens WHERE jti = ?1")?
        .query_row([jti], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Forgets revocations of tokens that have expired anyway.
pub fn purge_expired_revocations(conn: &Connection, now: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])?)
}

/// Stores a new setup token's hash, replacing (so invalidating) any earlier one.
pub fn replace_setup_token(
    conn: &Connection,
    sha256: &[u8; 32],
    expires_at: i64,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO setup_token (id, token_sha256, expires_at, created_at)
         VALUES (1, ?1, ?2, ?3)",
        params![sha256.as_slice(), expires_at, now],
    )?;
    Ok(())
}

/// The current setup token's SHA-256 and expiry, if one was issued and not used.
pub fn setup_token(conn: &Connection) -> Result<Option<(Vec<u8>, i64)>> {
    Ok(conn
        .prepare_cached("SELECT token_sha256, expires_at FROM setup_token WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Forgets the setup token (it is single-use: the first operator exists now).
pub fn delete_setup_token(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM setup_token", [])?;
    Ok(())
}
