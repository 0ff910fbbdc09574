use rusqlite::{Connection, OptionalExtension, params};

use super::{AuditEvent, RetentionClass};
use crate::domain::{Counted, Filter};
use crate::error::Result;

/// Writes one event and counts it into `audit_daily` (see `daily::count_one`).
pub fn insert(conn: &Connection, e: &AuditEvent) -> Result<()> {
    insert_row(conn, e)?;
    super::daily::count_one(conn, e)
}

/// Writes one event without counting it: the caller counts it with `daily::DailyCounts` in the
/// same transaction (the writer does, once per batch of queued events).
pub fn insert_row(conn: &Connection, e: &AuditEvent) -> Result<()> {
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

/// One page of events, newest first, and their count (see [`Counted`]).
pub fn search(
    conn: &Connection,
    f: &LogFilter<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<AuditEvent>, Counted)> {
    // Only the filters in use (see `Filter`): with `?1 IS NULL OR …` every page sorted the whole
    // table.
    let mut filter = Filter::default();
    filter.and_some("tenant_id = ?", f.tenant_scope.map(str::to_owned));
    filter.and_some("product_id = ?", f.product_id.map(str::to_owned));
    filter.and_some("license_id = ?", f.license_id.map(str::to_owned));
    match f.action {
        Some(prefix) if prefix.ends_with('.') => filter.and(
            "action >= ? AND action < ?",
            vec![
                Box::new(prefix.to_owned()),
                Box::new(format!("{prefix}\u{10FFFF}")),
            ],
        ),
        action => filter.and_some("action = ?", action.map(str::to_owned)),
    }
    filter.and_some("at >= ?", f.from);
    filter.and_some("at < ?", f.to);
    let (sql, mut args) = (filter.sql(), filter.args);
    // Pages are walked newest first along the narrowest index that keeps time order, and
    // filtered on the way: a page of a common filter fills after a short walk, where
    // sorting every match would read them all.
    let exact_action = f.action.is_some_and(|a| !a.ends_with('.'));
    let walk = match (f.license_id, exact_action, f.tenant_scope) {
        (Some(_), _, _) => "audit_license_time",
        (None, true, _) => "audit_action_time",
        (None, false, Some(_)) => "audit_tenant_time",
        (None, false, None) => "audit_time",
    };
    // Counting a million rows costs more than the page: the count stops a good way past the
    // page asked for, and says so.
    let cap = crate::domain::COUNT_CAP.max(offset + 10 * limit as u64);
    args.push(Box::new(cap as i64 + 1));
    let counted = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM
             (SELECT 1 FROM audit_events INDEXED BY {walk} WHERE {sql} LIMIT ?)"
        ))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| {
            r.get::<_, i64>(0)
        })? as u64;
    args.pop();
    args.push(Box::new(limit as i64));
    args.push(Box::new(offset as i64));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM audit_events INDEXED BY {walk} WHERE {sql}
         ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), from_row)?;
    let rows = rows.collect::<rusqlite::Result<_>>()?;
    Ok((
        rows,
        Counted {
            total: counted.min(cap),
            capped: counted > cap,
        },
    ))
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
    /// Rows deleted.
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
/// than `limit` rows after `after`. They were counted into `audit_daily` when they were written
/// (`daily::DailyCounts`), so deleting them leaves the dashboard's figures as they were.
/// Rows of other classes in the range are stepped over (their own retention applies). Meant to
/// run as one short writer job.
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
    let pruned = conn
        .prepare_cached(&format!("DELETE FROM audit_events WHERE {range}"))?
        .execute(args)?;
    Ok(PruneBatch {
        pruned: pruned as u64,
        next: last,
        more: seen == limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of two tenants, three products, a dozen licenses and several actions, with times
    /// that repeat (ties are broken by insertion order). Each row's detail is its number.
    fn trail(n: i64) -> Result<Connection> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../schema.sql"))?;
        let actions = [
            "license.validate",
            "license.validate",
            "license.activate",
            "key.validate",
            "operator.login",
            "license.revoke",
        ];
        for i in 0..n {
            insert(
                &conn,
                &AuditEvent {
                    tenant_id: if i % 5 == 0 { "ten_b" } else { "ten_a" }.into(),
                    at: 1_000 + (i / 3) * 10,
                    actor: "test".into(),
                    action: actions[(i % 6) as usize].into(),
                    product_id: (i % 4 != 0).then(|| format!("prod_{}", i % 3)),
                    license_id: (i % 7 != 0).then(|| format!("lic_{}", i % 12)),
                    machine_id: None,
                    ip: None,
                    detail: Some(i.to_string()),
                },
            )?;
        }
        Ok(conn)
    }

    /// What `search` must answer: every row, filtered and sorted in Rust.
    fn expected(conn: &Connection, f: &LogFilter<'_>) -> Result<Vec<String>> {
        let mut stmt = conn.prepare("SELECT * FROM audit_events ORDER BY id")?;
        let rows: Vec<AuditEvent> = stmt
            .query_map([], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let mut kept: Vec<(i64, i64, String)> = rows
            .into_iter()
            .filter(|e| f.tenant_scope.is_none_or(|t| e.tenant_id == t))
            .filter(|e| {
                f.product_id
                    .is_none_or(|p| e.product_id.as_deref() == Some(p))
            })
            .filter(|e| {
                f.license_id
                    .is_none_or(|l| e.license_id.as_deref() == Some(l))
            })
            .filter(|e| match f.action {
                Some(a) if a.ends_with('.') => e.action.starts_with(a),
                Some(a) => e.action == a,
                None => true,
            })
            .filter(|e| f.from.is_none_or(|from| e.at >= from))
            .filter(|e| f.to.is_none_or(|to| e.at < to))
            .map(|e| {
                let detail = e.detail.unwrap_or_default();
                (e.at, detail.parse().unwrap_or(-1), detail)
            })
            .collect();
        kept.sort_by_key(|k| std::cmp::Reverse((k.0, k.1)));
        Ok(kept.into_iter().map(|(_, _, d)| d).collect())
    }

    #[test]
    fn every_filter_walks_its_index_to_the_same_answer() -> Result<()> {
        let conn = trail(600)?;
        let filters = [
            ("everything", LogFilter::default()),
            (
                "one tenant",
                LogFilter {
                    tenant_scope: Some("ten_a"),
                    ..LogFilter::default()
                },
            ),
            (
                "one key",
                LogFilter {
                    license_id: Some("lic_5"),
                    ..LogFilter::default()
                },
            ),
            (
                "one key of another tenant",
                LogFilter {
                    tenant_scope: Some("ten_b"),
                    license_id: Some("lic_4"),
                    ..LogFilter::default()
                },
            ),
            (
                "one action",
                LogFilter {
                    action: Some("license.revoke"),
                    ..LogFilter::default()
                },
            ),
            (
                "one action of one tenant and project",
                LogFilter {
                    tenant_scope: Some("ten_a"),
                    product_id: Some("prod_1"),
                    action: Some("license.validate"),
                    ..LogFilter::default()
                },
            ),
            (
                "action prefix",
                LogFilter {
                    action: Some("license."),
                    ..LogFilter::default()
                },
            ),
            (
                "prefix, tenant and time",
                LogFilter {
                    tenant_scope: Some("ten_a"),
                    action: Some("key."),
                    from: Some(1_300),
                    to: Some(2_000),
                    ..LogFilter::default()
                },
            ),
            (
                "time only",
                LogFilter {
                    from: Some(1_500),
                    to: Some(1_510),
                    ..LogFilter::default()
                },
            ),
            (
                "nothing matches",
                LogFilter {
                    license_id: Some("lic_none"),
                    ..LogFilter::default()
                },
            ),
        ];
        for (name, f) in &filters {
            let all = expected(&conn, f)?;
            for (limit, offset) in [(7u32, 0u64), (7, 7), (50, 20), (10, 10_000)] {
                let (page, counted) = search(&conn, f, limit, offset)?;
                let got: Vec<String> = page.into_iter().filter_map(|e| e.detail).collect();
                let want: Vec<String> = all
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{name}: limit {limit}, offset {offset}");
                assert_eq!(
                    counted,
                    Counted {
                        total: all.len() as u64,
                        capped: false
                    },
                    "{name}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_count_stops_past_the_page_and_says_so() -> Result<()> {
        let conn = trail(10_050)?;
        let (page, counted) = search(&conn, &LogFilter::default(), 50, 0)?;
        assert_eq!(page.len(), 50);
        assert_eq!(
            counted,
            Counted {
                total: crate::domain::COUNT_CAP,
                capped: true
            }
        );
        // A page further out is counted to ten pages past it.
        let (_, counted) = search(&conn, &LogFilter::default(), 50, 9_950)?;
        assert_eq!(
            counted,
            Counted {
                total: 10_050,
                capped: false
            }
        );
        Ok(())
    }

    #[test]
    fn every_row_is_counted_once_when_written_and_stays_counted_when_pruned() -> Result<()> {
        let conn = trail(600)?;
        let counted = |c: &Connection| -> Result<i64> {
            Ok(c.query_row("SELECT SUM(count) FROM audit_daily", [], |r| r.get(0))?)
        };
        assert_eq!(counted(&conn)?, 600);
        let before = super::super::daily::daily_activity(&conn, Some("ten_a"), None, 0)?;
        let mut cursor = PruneCursor::START;
        for class in RetentionClass::ALL {
            loop {
                let batch = prune_batch(&conn, "ten_a", class, i64::MAX, cursor, 100)?;
                cursor = batch.next;
                if !batch.more {
                    break;
                }
            }
            cursor = PruneCursor::START;
        }
        let left: i64 = conn.query_row(
            "SELECT COUNT(*) FROM audit_events WHERE tenant_id = 'ten_a'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(left, 0, "every row of the tenant is pruned");
        assert_eq!(counted(&conn)?, 600);
        assert_eq!(
            super::super::daily::daily_activity(&conn, Some("ten_a"), None, 0)?,
            before
        );
        Ok(())
    }
}
