//! `audit_daily`: every audit event counted by tenant, product, UTC day, action, outcome code
//! and HWID binding as it is written. The dashboard's figures read these counts alone, so they
//! cost the same at any size of the trail and outlive the raw rows, which are pruned after
//! their kind's retention.

use rusqlite::{Connection, params};

use super::AuditEvent;
use crate::domain::Filter;
use crate::error::Result;

/// One row of `audit_daily`: what the dashboard's figures are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DailyKey {
    tenant_id: String,
    /// '' when the event named no product.
    product_id: String,
    /// Midnight UTC of the event's day, in ms.
    day: i64,
    action: String,
    /// The detail's `code` ('' when it has none).
    code: String,
    /// The detail's `hwidBound` is true.
    hwid_bound: bool,
}

impl DailyKey {
    /// The event's row; it takes the event, whose strings become the key's.
    fn of(e: AuditEvent) -> Self {
        #[derive(serde::Deserialize)]
        struct Detail {
            code: Option<serde_json::Value>,
            #[serde(rename = "hwidBound")]
            hwid_bound: Option<serde_json::Value>,
        }
        let detail = e
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<Detail>(d).ok());
        let (code, hwid_bound) = detail.map_or((String::new(), false), |d| {
            (
                match d.code {
                    Some(serde_json::Value::String(code)) => code,
                    _ => String::new(),
                },
                matches!(d.hwid_bound, Some(serde_json::Value::Bool(true))),
            )
        });
        Self {
            tenant_id: e.tenant_id,
            product_id: e.product_id.unwrap_or_default(),
            day: e.at.div_euclid(crate::domain::DAY_MS) * crate::domain::DAY_MS,
            action: e.action,
            code,
            hwid_bound,
        }
    }
}

/// Events counted per `audit_daily` row, to be added in one statement per row. Every event is
/// counted when it is written, so the dashboard reads these counts alone and pruning raw rows
/// leaves its figures as they were. Counting a batch of a hundred validations costs one or two
/// upserts rather than one per row (a trigger per row added 4–5 µs to each validation).
#[derive(Debug, Default)]
pub struct DailyCounts(std::collections::HashMap<DailyKey, i64>);

impl DailyCounts {
    pub fn add(&mut self, e: AuditEvent) {
        *self.0.entry(DailyKey::of(e)).or_default() += 1;
    }

    pub fn write(self, conn: &Connection) -> Result<()> {
        for (key, n) in self.0 {
            upsert(conn, &key, n)?;
        }
        Ok(())
    }
}

/// Counts one event written on its own (an admin action, an activation).
pub fn count_one(conn: &Connection, e: &AuditEvent) -> Result<()> {
    upsert(conn, &DailyKey::of(e.clone()), 1)
}

fn upsert(conn: &Connection, k: &DailyKey, n: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_daily (tenant_id, product_id, day, action, code, hwid_bound, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (day, tenant_id, product_id, action, code, hwid_bound)
         DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![
        k.tenant_id,
        k.product_id,
        k.day,
        k.action,
        k.code,
        k.hwid_bound,
        n
    ])?;
    Ok(())
}

/// The `audit_daily` rows since `since` of a tenant scope and a product.
fn daily_filter(tenant_scope: Option<&str>, product_id: Option<&str>, since: i64) -> Filter {
    let mut filter = Filter::default();
    filter.and_some("day >= ?", Some(since));
    filter.and_some("tenant_id = ?", tenant_scope.map(str::to_owned));
    filter.and_some("product_id = ?", product_id.map(str::to_owned));
    filter
}

/// Per UTC day since `since` (a midnight UTC): (day start ms, validations, activations).
/// Read from `audit_daily`, where every row is counted as it is written: the figures do not
/// change when raw rows are pruned, and cost a few hundred aggregate rows rather than every
/// validation of the last 30 days.
pub fn daily_activity(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(i64, u64, u64)>> {
    let filter = daily_filter(tenant_scope, product_id, since);
    let (filter, args) = (filter.sql(), filter.args);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT day,
                SUM(CASE WHEN action IN ('license.validate', 'key.validate')
                         THEN count ELSE 0 END),
                SUM(CASE WHEN action = 'license.activate' OR
                              (action = 'key.validate' AND hwid_bound = 1)
                         THEN count ELSE 0 END)
         FROM audit_daily
         WHERE {filter} AND action IN ('license.validate', 'key.validate', 'license.activate')
         GROUP BY day ORDER BY day"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Refused validations and activations since `since` (a midnight UTC), by reason code, from
/// `audit_daily` (see [`daily_activity`]).
pub fn failures_by_reason(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
    since: i64,
) -> Result<Vec<(String, u64)>> {
    let filter = daily_filter(tenant_scope, product_id, since);
    let (filter, args) = (filter.sql(), filter.args);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT COALESCE(NULLIF(code, ''), 'UNKNOWN') AS reason, SUM(count) AS total
         FROM audit_daily
         WHERE {filter}
           AND (action IN ('key.validate.refused', 'license.activate.refused')
                OR (action = 'license.validate' AND code NOT IN ('', 'VALID')))
         GROUP BY reason ORDER BY total DESC, reason"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
