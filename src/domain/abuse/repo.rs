use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{AbuseKind, Flag, FlagState, IpBlock};
use crate::error::Result;

fn flag_from_row(r: &Row<'_>) -> rusqlite::Result<Flag> {
    Ok(Flag {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        product_id: r.get("product_id")?,
        kind: r.get("kind")?,
        subject_type: r.get("subject_type")?,
        subject: r.get("subject")?,
        license_id: r.get("license_id")?,
        state: r.get("state")?,
        evidence: r.get("evidence")?,
        actions: r.get("actions")?,
        occurrences: r.get::<_, i64>("occurrences")? as u64,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        resolved_at: r.get("resolved_at")?,
        resolved_by: r.get("resolved_by")?,
    })
}

pub fn find_open(
    conn: &Connection,
    tenant_id: &str,
    kind: AbuseKind,
    subject: &str,
) -> Result<Option<Flag>> {
    Ok(conn
        .prepare_cached(
            "SELECT * FROM abuse_flags
             WHERE tenant_id = ?1 AND kind = ?2 AND subject = ?3 AND state = 'OPEN'",
        )?
        .query_row(params![tenant_id, kind, subject], flag_from_row)
        .optional()?)
}

/// One more occurrence of an OPEN flag, with the latest evidence.
pub fn touch_open(conn: &Connection, id: &str, evidence: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE abuse_flags SET occurrences = occurrences + 1, evidence = ?2, updated_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![id, evidence, now])?;
    Ok(())
}

pub fn insert_flag(conn: &Connection, f: &Flag) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO abuse_flags (id, tenant_id, product_id, kind, subject_type, subject,
            license_id, state, evidence, actions, occurrences, created_at, updated_at,
            resolved_at, resolved_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        f.id,
        f.tenant_id,
        f.product_id,
        f.kind,
        f.subject_type,
        f.subject,
        f.license_id,
        f.state,
        f.evidence,
        f.actions,
        f.occurrences as i64,
        f.created_at,
        f.updated_at,
        f.resolved_at,
        f.resolved_by,
    ])?;
    Ok(())
}

pub fn set_actions(conn: &Connection, id: &str, actions: &str) -> Result<()> {
    conn.execute(
        "UPDATE abuse_flags SET actions = ?2 WHERE id = ?1",
        params![id, actions],
    )?;
    Ok(())
}

pub fn set_state(
    conn: &Connection,
    id: &str,
    state: FlagState,
    resolved_at: Option<i64>,
    resolved_by: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE abuse_flags SET state = ?2, resolved_at = ?3, resolved_by = ?4, updated_at = ?5
         WHERE id = ?1",
        params![id, state, resolved_at, resolved_by, now],
    )?;
    Ok(())
}

/// A flag within `tenant_scope` (None: any tenant).
pub fn find_flag_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id: &str,
) -> Result<Option<Flag>> {
    Ok(conn
        .prepare_cached(
            "SELECT * FROM abuse_flags WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
        )?
        .query_row(params![id, tenant_scope], flag_from_row)
        .optional()?)
}

#[derive(Debug, Default, Clone)]
pub struct FlagFilter<'a> {
    pub tenant_scope: Option<&'a str>,
    pub product_id: Option<&'a str>,
    pub kind: Option<AbuseKind>,
    pub state: Option<FlagState>,
}

/// One page of flags, most recently updated first, and the total.
pub fn list_flags(
    conn: &Connection,
    f: &FlagFilter<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Flag>, u64)> {
    let filter = "(?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
        AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR state = ?4)";
    let args = params![f.tenant_scope, f.product_id, f.kind, f.state];
    let total = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM abuse_flags WHERE {filter}"))?
        .query_row(args, |r| r.get::<_, i64>(0))? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM abuse_flags WHERE {filter}
         ORDER BY updated_at DESC, id LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            f.tenant_scope,
            f.product_id,
            f.kind,
            f.state,
            limit,
            offset as i64
        ],
        flag_from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// OPEN flags within the scope (for the dashboard badge).
pub fn count_open(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM abuse_flags WHERE state = 'OPEN'
             AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)",
        )?
        .query_row(params![tenant_scope, product_id], |r| r.get::<_, i64>(0))? as u64)
}

/// OPEN flags per kind across every tenant (the server's metrics).
pub fn open_by_kind(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, COUNT(*) FROM abuse_flags WHERE state = 'OPEN' GROUP BY kind ORDER BY kind",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- IP blocks --------------------------------------------------------------------------

fn block_from_row(r: &Row<'_>) -> rusqlite::Result<IpBlock> {
    let ip: String = r.get("ip")?;
    Ok(IpBlock {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        product_id: r.get("product_id")?,
        flag_id: r.get("flag_id")?,
        // Stored from a parsed address; an unreadable one (a manual edit) blocks nothing.
        ip: ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        prefix_len: r.get("prefix_len")?,
        reason: r.get("reason")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        lifted_at: r.get("lifted_at")?,
        lifted_by: r.get("lifted_by")?,
    })
}

pub fn insert_block(conn: &Connection, b: &IpBlock) -> Result<()> {
    conn.execute(
        "INSERT INTO ip_blocks (id, tenant_id, product_id, flag_id, ip, prefix_len, reason,
            created_at, expires_at, lifted_at, lifted_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            b.id,
            b.tenant_id,
            b.product_id,
            b.flag_id,
            b.ip.to_string(),
            b.prefix_len,
            b.reason,
            b.created_at,
            b.expires_at,
            b.lifted_at,
            b.lifted_by,
        ],
    )?;
    Ok(())
}

pub fn lift_block(conn: &Connection, id: &str, actor: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE ip_blocks SET lifted_at = ?2, lifted_by = ?3 WHERE id = ?1 AND lifted_at IS NULL",
        params![id, now, actor],
    )?;
    Ok(())
}

/// Lifts the blocks a flag put in place; returns how many were in force.
pub fn lift_blocks_of_flag(
    conn: &Connection,
    flag_id: &str,
    actor: &str,
    now: i64,
) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE ip_blocks SET lifted_at = ?2, lifted_by = ?3
         WHERE flag_id = ?1 AND lifted_at IS NULL AND expires_at > ?2",
        params![flag_id, now, actor],
    )?)
}

pub fn find_block_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id: &str,
) -> Result<Option<IpBlock>> {
    Ok(conn
        .prepare_cached("SELECT * FROM ip_blocks WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)")?
        .query_row(params![id, tenant_scope], block_from_row)
        .optional()?)
}

/// One page of blocks, newest first (optionally only those in force at `now`), and the total.
pub fn list_blocks(
    conn: &Connection,
    tenant_scope: Option<&str>,
    active_at: Option<i64>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<IpBlock>, u64)> {
    let filter = "(?1 IS NULL OR tenant_id = ?1)
        AND (?2 IS NULL OR (lifted_at IS NULL AND expires_at > ?2))";
    let total =
        conn.prepare_cached(&format!("SELECT COUNT(*) FROM ip_blocks WHERE {filter}"))?
            .query_row(params![tenant_scope, active_at], |r| r.get::<_, i64>(0))? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM ip_blocks WHERE {filter} ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt.query_map(
        params![tenant_scope, active_at, limit, offset as i64],
        block_from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// How many blocks are in force at `now` (the server's metrics).
pub fn active_block_count(conn: &Connection, now: i64) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM ip_blocks WHERE lifted_at IS NULL AND expires_at > ?1",
        )?
        .query_row([now], |r| r.get::<_, i64>(0))? as u64)
}

/// Every block in force at `now` (loaded into memory at start and after a lift).
pub fn active_blocks(conn: &Connection, now: i64) -> Result<Vec<IpBlock>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM ip_blocks WHERE lifted_at IS NULL AND expires_at > ?1")?;
    let rows = stmt.query_map([now], block_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- policy -----------------------------------------------------------------------------

/// The product's tenant and stored policy JSON, if the product exists.
pub fn policy_of(conn: &Connection, product_id: &str) -> Result<Option<(String, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT tenant_id, abuse_policy FROM products WHERE id = ?1")?
        .query_row([product_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn set_policy(conn: &Connection, product_id: &str, json: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE products SET abuse_policy = ?2, updated_at = ?3 WHERE id = ?1",
        params![product_id, json, now],
    )?;
    Ok(())
}

pub fn webhook_secret_sealed(conn: &Connection, product_id: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT abuse_webhook_secret_sealed FROM products WHERE id = ?1")?
        .query_row([product_id], |r| r.get::<_, Option<Vec<u8>>>(0))
        .optional()?
        .flatten())
}

pub fn set_webhook_secret(
    conn: &Connection,
    product_id: &str,
    sealed: Option<&[u8]>,
) -> Result<()> {
    conn.execute(
        "UPDATE products SET abuse_webhook_secret_sealed = ?2 WHERE id = ?1",
        params![product_id, sealed],
    )?;
    Ok(())
}

/// The product whose kv_ secret hashes to `sha256`: its id and tenant.
pub fn product_by_client_secret(
    conn: &Connection,
    sha256: &[u8],
) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT id, tenant_id FROM products WHERE client_secret_sha256 = ?1")?
        .query_row([sha256], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}
