use rusqlite::{Connection, params};

use super::AuditEvent;
use crate::error::Result;

pub fn insert(conn: &Connection, e: &AuditEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (tenant_id, at, actor, action, product_id, license_id,
            machine_id, ip, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        e.tenant_id,
        e.at,
        e.actor,
        e.action,
        e.product_id,
        e.license_id,
        e.machine_id,
        e.ip,
        e.detail
    ])?;
    Ok(())
}

/// The most recent events of a license, newest first.
pub fn for_license(
    conn: &Connection,
    tenant_id: &str,
    license_id: &str,
    limit: u32,
) -> Result<Vec<AuditEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM audit_events WHERE license_id = ?2 AND tenant_id = ?1
         ORDER BY at DESC, id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![tenant_id, license_id, limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        tenant_id: r.get("tenant_id")?,
        at: r.get("at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        product_id: r.get("product_id")?,
        license_id: r.get("license_id")?,
        machine_id: r.get("machine_id")?,
        ip: r.get("ip")?,
        detail: r.get("detail")?,
    })
}

/// Filters of the admin log view.
#[derive(Debug, Default, Clone)]
pub struct LogFilter<'a> {
    pub tenant_scope: Option<&'a str>,
    pub product_id: Option<&'a str>,
    pub license_id: Option<&'a str>,
    /// Exact action, or a prefix ending in '.' (e.g. `license.`).
    pub action: Option<&'a str>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// One page of events, newest first, and the total.
pub fn search(
    conn: &Connection,
    f: &LogFilter<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<AuditEvent>, u64)> {
    let action_prefix = f
        .action
        .filter(|a| a.ends_with('.'))
        .map(|a| format!("{a}\u{10FFFF}"));
    let filter = "(?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
        AND (?3 IS NULL OR license_id = ?3)
        AND (?4 IS NULL OR (?5 IS NULL AND action = ?4) OR (action >= ?4 AND action < ?5))
        AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7)";
    let total = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM audit_events WHERE {filter}"))?
        .query_row(
            params![
                f.tenant_scope,
                f.product_id,
                f.license_id,
                f.action,
                action_prefix,
                f.from,
                f.to
            ],
            |r| r.get::<_, i64>(0),
        )? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM audit_events WHERE {filter} ORDER BY at DESC, id DESC LIMIT ?8 OFFSET ?9"
    ))?;
    let rows = stmt.query_map(
        params![
            f.tenant_scope,
            f.product_id,
            f.license_id,
            f.action,
            action_prefix,
            f.from,
            f.to,
            limit,
            offset as i64
        ],
        from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Per UTC day since `since`: (day start ms, validations, activations).
pub fn daily_activity(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(i64, u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT (at / 86400000) * 86400000 AS day,
                SUM(action IN ('license.validate', 'key.validate')),
                SUM(action = 'license.activate' OR
                    (action = 'key.validate' AND json_extract(detail, '$.hwidBound') = 1))
         FROM audit_events
         WHERE at >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
           AND action IN ('license.validate', 'key.validate', 'license.activate')
         GROUP BY day ORDER BY day",
    )?;
    let rows = stmt.query_map(params![tenant_scope, product_id, since], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Refused validations and activations since `since`, by reason code.
pub fn failures_by_reason(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT json_extract(detail, '$.code') AS code, COUNT(*)
         FROM audit_events
         WHERE at >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
           AND (action IN ('key.validate.refused', 'license.activate.refused')
                OR (action = 'license.validate' AND json_extract(detail, '$.code') != 'VALID'))
         GROUP BY code ORDER BY COUNT(*) DESC",
    )?;
    let rows = stmt.query_map(params![tenant_scope, product_id, since], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?
                .unwrap_or_else(|| "UNKNOWN".into()),
            r.get::<_, i64>(1)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
