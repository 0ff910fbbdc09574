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
    let rows = stmt.query_map(params![tenant_id, license_id, limit], |r| {
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
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
