use rusqlite::{Connection, OptionalExtension, Row, params};

use super::ApiKey;
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        secret_sha256: r.get("secret_sha256")?,
        scope: r.get("scope")?,
        product_id: r.get("product_id")?,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

pub fn insert(conn: &Connection, k: &ApiKey) -> Result<()> {
    conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_sha256, scope, product_id,
            created_at, last_used_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            k.id,
            k.tenant_id,
            k.name,
            k.prefix,
            k.secret_sha256,
            k.scope,
            k.product_id,
            k.created_at,
            k.last_used_at,
            k.revoked_at
        ],
    )?;
    Ok(())
}

pub fn find_by_prefix(conn: &Connection, prefix: &str) -> Result<Option<ApiKey>> {
    Ok(conn
        .prepare_cached("SELECT * FROM api_keys WHERE prefix = ?1")?
        .query_row([prefix], from_row)
        .optional()?)
}

pub fn list(conn: &Connection, tenant_id: &str) -> Result<Vec<ApiKey>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map([tenant_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Revokes a key of the tenant named by id or prefix; true if a live key was revoked.
pub fn revoke(conn: &Connection, tenant_id: &str, id_or_prefix: &str, now: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?3
         WHERE tenant_id = ?1 AND (id = ?2 OR prefix = ?2) AND revoked_at IS NULL",
        params![tenant_id, id_or_prefix, now],
    )?;
    Ok(n > 0)
}

pub fn set_last_used(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// API keys within `tenant_scope` (None: every tenant), newest first.
pub fn list_in(conn: &Connection, tenant_scope: Option<&str>) -> Result<Vec<ApiKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM api_keys WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY created_at DESC, id",
    )?;
    let rows = stmt.query_map([tenant_scope], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find_in(conn: &Connection, tenant_scope: Option<&str>, id: &str) -> Result<Option<ApiKey>> {
    Ok(conn
        .prepare_cached("SELECT * FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)")?
        .query_row(params![id, tenant_scope], from_row)
        .optional()?)
}

/// A key named by id or by prefix (the operator's shell accepts either), within `tenant_scope`.
pub fn find_by_id_or_prefix_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id_or_prefix: &str,
) -> Result<Option<ApiKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT * FROM api_keys WHERE (id = ?1 OR prefix = ?1)
                AND (?2 IS NULL OR tenant_id = ?2)",
        )?
        .query_row(params![id_or_prefix, tenant_scope], from_row)
        .optional()?)
}
