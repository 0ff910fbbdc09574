use rusqlite::{Connection, OptionalExtension, params};

use super::{AuditEvent, RetentionClass};
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

/// Per UTC day since `since` (a midnight UTC): (day start ms, validations, activations). Counts
/// the raw rows still kept and the daily aggregates of the rows already pruned; a row is in one
/// or the other, never both (pruning moves it in one transaction).
pub fn daily_activity(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(i64, u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, SUM(validations), SUM(activations) FROM (
            SELECT (at / 86400000) * 86400000 AS day,
                   SUM(action IN ('license.validate', 'key.validate')) AS validations,
                   SUM(action = 'license.activate' OR
                       (action = 'key.validate' AND json_extract(detail, '$.hwidBound') = 1))
                       AS activations
            FROM audit_events
            WHERE at >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
              AND action IN ('license.validate', 'key.validate', 'license.activate')
            GROUP BY day
            UNION ALL
            SELECT day,
                   SUM(CASE WHEN action IN ('license.validate', 'key.validate')
                            THEN count ELSE 0 END),
                   SUM(CASE WHEN action = 'license.activate' OR
                                 (action = 'key.validate' AND hwid_bound = 1)
                            THEN count ELSE 0 END)
            FROM audit_daily
            WHERE day >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
              AND action IN ('license.validate', 'key.validate', 'license.activate')
            GROUP BY day
         )
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

/// Refused validations and activations since `since` (a midnight UTC), by reason code: the raw
/// rows still kept and the daily aggregates of those pruned.
pub fn failures_by_reason(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT code, SUM(n) AS total FROM (
            SELECT COALESCE(json_extract(detail, '$.code'), 'UNKNOWN') AS code, COUNT(*) AS n
            FROM audit_events
            WHERE at >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
              AND (action IN ('key.validate.refused', 'license.activate.refused')
                   OR (action = 'license.validate' AND json_extract(detail, '$.code') != 'VALID'))
            GROUP BY 1
            UNION ALL
            SELECT COALESCE(NULLIF(code, ''), 'UNKNOWN'), SUM(count)
            FROM audit_daily
            WHERE day >= ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
              AND (action IN ('key.validate.refused', 'license.activate.refused')
                   OR (action = 'license.validate' AND code NOT IN ('', 'VALID')))
            GROUP BY 1
         )
         GROUP BY code ORDER BY total DESC, code",
    )?;
    let rows = stmt.query_map(params![tenant_scope, product_id, since], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Where pruning stands in one tenant's events, in `(at, id)` order (the order of the
/// `audit_tenant_time` index): every row up to it has been looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCursor {
    pub at: i64,
    pub id: i64,
}

impl PruneCursor {
    /// Before every row.
    pub const START: PruneCursor = PruneCursor {
        at: i64::MIN,
        id: i64::MIN,
    };
}

/// What one pruning batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBatch {
    /// Rows counted in `audit_daily` and deleted.
    pub pruned: u64,
    /// The last row looked at (pruned, or kept because of another class).
    pub next: PruneCursor,
    /// False when no row older than the cutoff is left after `next`.
    pub more: bool,
}

/// The tenant after `after` (the first with `None`) that has audit rows: one index seek.
pub fn next_tenant(conn: &Connection, after: Option<&str>) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT tenant_id FROM audit_events WHERE tenant_id > ?1 ORDER BY tenant_id LIMIT 1",
        )?
        .query_row(params![after.unwrap_or("")], |r| r.get(0))
        .optional()?)
}

/// The SQL condition selecting the rows of `class`.
fn class_condition(class: RetentionClass) -> String {
    let quoted = |names: Vec<&str>| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match class.actions() {
        Some(names) => format!("action IN ({})", quoted(names)),
        None => {
            let others: Vec<&str> = RetentionClass::ALL
                .iter()
                .filter_map(|c| c.actions())
                .flatten()
                .collect();
            format!("action NOT IN ({})", quoted(others))
        }
    }
}

/// Prunes, in one tenant, the rows of `class` recorded before `before` (ms), looking at no more
/// than `limit` rows after `after`: each is first counted into `audit_daily` (tenant, product,
/// UTC day, action, outcome code, HWID binding), then deleted. Rows of other classes in the
/// range are stepped over (their own retention applies). Meant to run as one short writer job.
pub fn prune_batch(
    conn: &Connection,
    tenant_id: &str,
    class: RetentionClass,
    before: i64,
    after: PruneCursor,
    limit: u32,
) -> Result<PruneBatch> {
    let mut last = None;
    let mut seen = 0u32;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT at, id FROM audit_events
             WHERE tenant_id = ?1 AND at < ?2 AND (at, id) > (?3, ?4)
             ORDER BY at, id LIMIT ?5",
        )?;
        let mut rows = stmt.query(params![tenant_id, before, after.at, after.id, limit])?;
        while let Some(r) = rows.next()? {
            last = Some(PruneCursor {
                at: r.get(0)?,
                id: r.get(1)?,
            });
            seen += 1;
        }
    }
    let Some(last) = last else {
        return Ok(PruneBatch {
            pruned: 0,
            next: after,
            more: false,
        });
    };
    let range = format!(
        "tenant_id = ?1 AND (at, id) > (?2, ?3) AND (at, id) <= (?4, ?5) AND {}",
        class_condition(class)
    );
    let args = params![tenant_id, after.at, after.id, last.at, last.id];
    conn.prepare_cached(&format!(
        "INSERT INTO audit_daily (tenant_id, product_id, day, action, code, hwid_bound, count)
         SELECT tenant_id, COALESCE(product_id, ''), (at / 86400000) * 86400000, action,
                COALESCE(CASE WHEN json_valid(detail) THEN json_extract(detail, '$.code') END, ''),
                COALESCE(CASE WHEN json_valid(detail)
                              THEN json_extract(detail, '$.hwidBound') = 1 END, 0),
                COUNT(*)
         FROM audit_events WHERE {range}
         GROUP BY 1, 2, 3, 4, 5, 6
         ON CONFLICT (day, tenant_id, product_id, action, code, hwid_bound)
         DO UPDATE SET count = count + excluded.count"
    ))?
    .execute(args)?;
    let pruned = conn
        .prepare_cached(&format!("DELETE FROM audit_events WHERE {range}"))?
        .execute(args)?;
    Ok(PruneBatch {
        pruned: pruned as u64,
        next: last,
        more: seen == limit,
    })
}
