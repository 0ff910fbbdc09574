use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{License, LicenseStatus};
use crate::error::Result;

/// Column positions of `SELECT *` / `l.*` (the table's order in schema.sql; migrations only
/// append). Read by position: looking names up costs a scan of all columns per field, on the
/// validation hot path. `tests::positions_match_the_schema` guards the order.
pub const COLUMNS: [&str; 23] = [
    "id",
    "tenant_id",
    "product_id",
    "license_key",
    "license_type",
    "tier",
    "status",
    "max_activations",
    "max_sessions",
    "valid_until",
    "plan",
    "plan_days",
    "customer_email",
    "customer_name",
    "order_id",
    "metadata",
    "note",
    "revoked_reason",
    "current_nonce",
    "hwid_reset_at",
    "created_at",
    "updated_at",
    "entitlements",
];

fn from_row(r: &Row<'_>) -> rusqlite::Result<License> {
    Ok(License {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        product_id: r.get(2)?,
        key: r.get(3)?,
        license_type: r.get(4)?,
        tier: r.get(5)?,
        status: r.get(6)?,
        max_activations: r.get(7)?,
        max_sessions: r.get(8)?,
        valid_until: r.get(9)?,
        plan: r.get(10)?,
        plan_days: r.get(11)?,
        customer_email: r.get(12)?,
        customer_name: r.get(13)?,
        order_id: r.get(14)?,
        metadata: r.get(15)?,
        note: r.get(16)?,
        revoked_reason: r.get(17)?,
        hwid_reset_at: r.get(19)?,
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
        entitlements: crate::domain::entitlements::from_column(&r.get::<_, String>(22)?),
    })
}

pub fn insert(conn: &Connection, l: &License) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier, status,
            max_activations, max_sessions, valid_until, plan, plan_days, customer_email,
            customer_name, order_id, metadata, note, revoked_reason, created_at, updated_at,
            entitlements)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21)",
    )?
    .execute(params![
        l.id,
        l.tenant_id,
        l.product_id,
        l.key,
        l.license_type,
        l.tier,
        l.status,
        l.max_activations,
        l.max_sessions,
        l.valid_until,
        l.plan,
        l.plan_days,
        l.customer_email,
        l.customer_name,
        l.order_id,
        l.metadata,
        l.note,
        l.revoked_reason,
        l.created_at,
        l.updated_at,
        crate::domain::entitlements::to_column(&l.entitlements),
    ])?;
    Ok(())
}

pub fn find(conn: &Connection, tenant_id: &str, id: &str) -> Result<Option<License>> {
    Ok(conn
        .prepare_cached("SELECT * FROM licenses WHERE tenant_id = ?1 AND id = ?2")?
        .query_row([tenant_id, id], from_row)
        .optional()?)
}

/// `key` must already be normalized (see [`super::normalize_key`]).
pub fn find_by_key(conn: &Connection, tenant_id: &str, key: &str) -> Result<Option<License>> {
    Ok(conn
        .prepare_cached("SELECT * FROM licenses WHERE license_key = ?1 AND tenant_id = ?2")?
        .query_row([key, tenant_id], from_row)
        .optional()?)
}

/// Only for the uniqueness check of a freshly generated key.
pub fn find_by_key_any_tenant(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM licenses WHERE license_key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn list_by_order(
    conn: &Connection,
    tenant_id: &str,
    order_id: &str,
    only_product: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<License>, u64)> {
    let filter = "tenant_id = ?1 AND order_id = ?2 AND (?3 IS NULL OR product_id = ?3)";
    let total: u64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM licenses WHERE {filter}"))?
        .query_row(params![tenant_id, order_id, only_product], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM licenses WHERE {filter} ORDER BY created_at, rowid LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt.query_map(
        params![tenant_id, order_id, only_product, limit, offset as i64],
        from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// A customer's licenses (by e-mail, ignoring case), oldest first, and the total.
pub fn list_by_email(
    conn: &Connection,
    tenant_id: &str,
    email: &str,
    only_product: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<License>, u64)> {
    let filter = "tenant_id = ?1 AND lower(customer_email) = lower(?2)
                  AND customer_email IS NOT NULL AND (?3 IS NULL OR product_id = ?3)";
    let total: u64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM licenses WHERE {filter}"))?
        .query_row(params![tenant_id, email, only_product], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM licenses WHERE {filter} ORDER BY created_at, rowid LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt.query_map(
        params![tenant_id, email, only_product, limit, offset as i64],
        from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

// Every write of a status below ends with `revocations::follow`, so the product's revocation
// list changes (and its version grows) in the same transaction as the status. (`insert` writes
// ACTIVE, `expire_overdue` turns ACTIVE into EXPIRED: neither is ever listed.)

/// Brings the revocation list in step with the status a write just gave the license (the
/// product it names; nothing when no license was written).
fn follow(
    conn: &Connection,
    id: &str,
    product_id: Option<String>,
    status: LicenseStatus,
    now: i64,
) -> Result<()> {
    match product_id {
        Some(product_id) => crate::domain::revocations::follow(conn, &product_id, id, status, now),
        None => Ok(()),
    }
}

pub fn set_revoked(conn: &Connection, id: &str, reason: Option<&str>, now: i64) -> Result<()> {
    let product_id = conn
        .prepare_cached(
            "UPDATE licenses SET status = 'REVOKED', revoked_reason = ?2, updated_at = ?3
             WHERE id = ?1 RETURNING product_id",
        )?
        .query_row(params![id, reason, now], |r| r.get(0))
        .optional()?;
    follow(conn, id, product_id, LicenseStatus::Revoked, now)
}

pub fn set_valid_until(
    conn: &Connection,
    id: &str,
    valid_until: i64,
    status: LicenseStatus,
    now: i64,
) -> Result<()> {
    let product_id = conn
        .prepare_cached(
            "UPDATE licenses SET valid_until = ?2, status = ?3, updated_at = ?4 WHERE id = ?1
             RETURNING product_id",
        )?
        .query_row(params![id, valid_until, status, now], |r| r.get(0))
        .optional()?;
    follow(conn, id, product_id, status, now)
}

/// Rewrites ACTIVE licenses whose expiry has passed to EXPIRED; returns
/// `(tenant_id, product_id, license_id)` of each, for the audit trail.
pub fn expire_overdue(conn: &Connection, now: i64) -> Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE licenses SET status = 'EXPIRED', updated_at = ?1
         WHERE status = 'ACTIVE' AND valid_until IS NOT NULL AND valid_until <= ?1
         RETURNING tenant_id, product_id, id",
    )?;
    let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find_idempotency(
    conn: &Connection,
    tenant_id: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT request_sha256, license_id FROM idempotency_keys
             WHERE tenant_id = ?1 AND idem_key = ?2",
        )?
        .query_row([tenant_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn insert_idempotency(
    conn: &Connection,
    tenant_id: &str,
    key: &str,
    request_sha256: &[u8],
    license_id: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO idempotency_keys (tenant_id, idem_key, request_sha256, license_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tenant_id,
            key,
            request_sha256,
            license_id,
            crate::domain::now_ms()
        ],
    )?;
    Ok(())
}

/// A license within `tenant_scope` (None: any tenant, for ADMIN operators).
pub fn find_in(conn: &Connection, tenant_scope: Option<&str>, id: &str) -> Result<Option<License>> {
    Ok(conn
        .prepare_cached("SELECT * FROM licenses WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)")?
        .query_row(params![id, tenant_scope], from_row)
        .optional()?)
}

/// A license as the admin key list shows it.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub license: License,
    pub activation_count: u64,
    /// The first bound machine (HWID), if any.
    pub first_machine: Option<String>,
}

/// Filters of the admin key list. Text search matches the start of a key or of a bound
/// HWID (index range scans), or any part of the note, of the customer's e-mail or name, or of
/// the order id.
#[derive(Debug, Default, Clone)]
pub struct Search<'a> {
    pub tenant_scope: Option<&'a str>,
    pub product_id: Option<&'a str>,
    pub status: Option<LicenseStatus>,
    pub plan: Option<super::Plan>,
    pub text: Option<&'a str>,
}

/// A note text matched by more keys than this is searched by walking the keys newest first
/// and testing each (a page fills after a short walk); a rarer one by collecting its matches
/// from the trigram index first (a walk would cross most of the table to fill a page).
const NOTE_WALK_THRESHOLD: i64 = 5_000;

/// One page of matching licenses, newest first (ties in creation order), each with its
/// activation count and first bound machine; and the total.
pub fn search(
    conn: &Connection,
    s: &Search<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<KeyRow>, crate::domain::Counted)> {
    search_with(conn, s, limit, offset, NOTE_WALK_THRESHOLD)
}

/// [`search`] with the note-walk threshold as a parameter, so tests can hold both plans to
/// the same answers.
fn search_with(
    conn: &Connection,
    s: &Search<'_>,
    limit: u32,
    offset: u64,
    note_walk_threshold: i64,
) -> Result<(Vec<KeyRow>, crate::domain::Counted)> {
    // Only the filters in use appear in the SQL, so SQLite can pick an index for them (an
    // `?1 IS NULL OR …` condition defeats the planner); the statement cache keeps one plan
    // per combination.
    let mut conditions: Vec<&str> = Vec::new();
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(t) = s.tenant_scope {
        conditions.push("l.tenant_id = ?");
        args.push(Box::new(t.to_owned()));
    }
    if let Some(p) = s.product_id {
        conditions.push("l.product_id = ?");
        args.push(Box::new(p.to_owned()));
    }
    if let Some(status) = s.status {
        // Statuses as of now: an ACTIVE key past its expiry is EXPIRED before the sweep.
        conditions.push(
            "(CASE WHEN l.status = 'ACTIVE' AND l.valid_until <= ? THEN 'EXPIRED' ELSE l.status END) = ?",
        );
        args.push(Box::new(crate::domain::now_ms()));
        args.push(Box::new(status));
    }
    if let Some(plan) = s.plan {
        conditions.push("l.plan = ?");
        args.push(Box::new(plan));
    }
    // Text matches the start of the key, the start of a bound HWID, or any part of the note
    // or of the customer (e-mail, name, order id).
    let mut walk_text = false;
    if let Some(text) = s.text {
        let key = super::normalize_key(text);
        // Too short for trigrams: every note would be scanned either way, so walk.
        let rare_notes = if text.chars().count() >= 3 {
            rare_note_matches(conn, text, note_walk_threshold)?
        } else {
            None
        };
        walk_text = rare_notes.is_none();
        args.push(Box::new(key.clone()));
        args.push(Box::new(format!("{key}\u{10FFFF}")));
        args.push(Box::new(text.to_owned()));
        args.push(Box::new(format!("{text}\u{10FFFF}")));
        match rare_notes {
            Some(ids) => {
                // Each alternative on its own index, joined by UNION: key range, HWID range
                // and the (few) licenses whose notes or customers matched, found once above.
                conditions.push(
                    "l.id IN (SELECT id FROM licenses WHERE license_key >= ? AND license_key < ?
                              UNION SELECT license_id FROM activations
                                    WHERE machine_id >= ? AND machine_id < ?
                              UNION SELECT value FROM json_each(?))",
                );
                args.push(Box::new(serde_json::Value::from(ids).to_string()));
            }
            None => {
                conditions.push(
                    "(l.license_key >= ? AND l.license_key < ?
                      OR l.id IN (SELECT license_id FROM activations
                                  WHERE machine_id >= ? AND machine_id < ?)
                      OR l.note LIKE ? ESCAPE '\\'
                      OR l.customer_email LIKE ? ESCAPE '\\'
                      OR l.customer_name LIKE ? ESCAPE '\\'
                      OR l.order_id LIKE ? ESCAPE '\\')",
                );
                let pattern = format!(
                    "%{}%",
                    text.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                // Note, customer e-mail, customer name, order id.
                for _ in 0..4 {
                    args.push(Box::new(pattern.clone()));
                }
            }
        }
    }
    let filter = if conditions.is_empty() {
        "1".to_owned()
    } else {
        conditions.join(" AND ")
    };
    // Pages are walked newest first along the creation-time index and filtered on the way:
    // most filters match often, so a page fills after a short walk, where sorting every
    // match would cost a scan of the table. Rare note texts are the exception (above).
    let walk = match (s.tenant_scope, s.text.is_some() && !walk_text) {
        (_, true) => "",
        (Some(_), false) => "INDEXED BY licenses_tenant_created",
        (None, false) => "INDEXED BY licenses_created",
    };
    // Counting every match over a million keys costs more than the page; the count stops a
    // good way past the page asked for, and says so. A common note text is not counted at
    // all: the page is asked for one row more, which tells whether another page follows.
    let cap = crate::domain::COUNT_CAP.max(offset + 10 * limit as u64);
    let count = |args: &mut Vec<Box<dyn rusqlite::ToSql>>| -> Result<crate::domain::Counted> {
        args.push(Box::new(cap as i64 + 1));
        let counted = conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM licenses l WHERE {filter} LIMIT ?)"
            ))?
            .query_row(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, i64>(0)
            })? as u64;
        args.pop();
        Ok(crate::domain::Counted {
            total: counted.min(cap),
            capped: counted > cap,
        })
    };
    let counted = if walk_text {
        None
    } else {
        Some(count(&mut args)?)
    };
    // The page's rows are found on the index alone, and only they are read whole: an
    // offset walked with whole rows (and their activation subqueries) costs a read per
    // skipped row.
    let fetch = if walk_text { limit + 1 } else { limit };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT l.*,
            (SELECT COUNT(*) FROM activations a WHERE a.license_id = l.id) AS activation_count,
            (SELECT machine_id FROM activations a WHERE a.license_id = l.id
             ORDER BY activated_at LIMIT 1) AS first_machine
         FROM licenses l
         WHERE l.rowid IN (SELECT l.rowid FROM licenses l {walk} WHERE {filter}
                           ORDER BY l.created_at DESC, l.rowid DESC LIMIT ? OFFSET ?)
         ORDER BY l.created_at DESC, l.rowid DESC"
    ))?;
    args.push(Box::new(fetch as i64));
    args.push(Box::new(offset as i64));
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(KeyRow {
            license: from_row(r)?,
            activation_count: r.get::<_, i64>("activation_count")? as u64,
            first_machine: r.get("first_machine")?,
        })
    })?;
    let mut rows: Vec<KeyRow> = rows.collect::<rusqlite::Result<_>>()?;
    drop(stmt);
    let total = match counted {
        Some(counted) => counted,
        // Past the last page the walk saw nothing to count from: count (rarely asked).
        None if rows.is_empty() && offset > 0 => {
            args.truncate(args.len() - 2);
            count(&mut args)?
        }
        None => {
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            crate::domain::Counted {
                total: offset + rows.len() as u64 + u64::from(more),
                capped: more,
            }
        }
    };
    Ok((rows, total))
}

/// The licenses whose notes or customer (e-mail, name, order id) contain `text` (3 characters
/// or more), unless there are more than `threshold` (None; the search walks instead).
///
/// A phrase of many trigrams costs FTS5 the doclists of all of them, and the common ones (the
/// `example.com` of every e-mail) run to a row per license: 75 ms for a name at a million keys.
/// So the index is asked for the rarest short window of the text only, each window counted no
/// further than the threshold (a millisecond each), and that window's few rows are checked for
/// the whole text here.
fn rare_note_matches(conn: &Connection, text: &str, threshold: i64) -> Result<Option<Vec<String>>> {
    let needle = text.to_lowercase();
    let windows = search_windows(text);
    let mut ids: Vec<String> = Vec::new();
    for (count_sql, rows_sql) in [
        (
            "SELECT COUNT(*) FROM (SELECT rowid FROM license_notes
                                   WHERE license_notes MATCH ?1 LIMIT ?2)",
            "SELECT license_id, note FROM license_notes WHERE license_notes MATCH ?1 LIMIT ?2",
        ),
        (
            "SELECT COUNT(*) FROM (SELECT rowid FROM license_customers
                                   WHERE license_customers MATCH ?1 LIMIT ?2)",
            "SELECT license_id, customer FROM license_customers
             WHERE license_customers MATCH ?1 LIMIT ?2",
        ),
    ] {
        let cap = threshold.saturating_add(1).max(0);
        let mut rarest: Option<(i64, &str)> = None;
        let mut counter = conn.prepare_cached(count_sql)?;
        for window in &windows {
            let n: i64 = counter.query_row(params![window, cap], |r| r.get(0))?;
            if rarest.is_none_or(|(best, _)| n < best) {
                rarest = Some((n, window.as_str()));
            }
            if n == 0 {
                break;
            }
        }
        let Some((n, window)) = rarest else {
            continue;
        };
        if n > threshold {
            return Ok(None);
        }
        if n == 0 {
            continue;
        }
        let mut rows = conn.prepare_cached(rows_sql)?;
        let found = rows.query_map(params![window, cap], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in found {
            let (id, haystack) = row?;
            if haystack.to_lowercase().contains(&needle) {
                ids.push(id);
            }
        }
        if ids.len() as i64 > threshold {
            return Ok(None);
        }
    }
    Ok(Some(ids))
}

/// FTS5 phrases of four characters (two trigrams) that together cover `text`: starting every
/// three characters, and one ending where it ends. Text of four characters or fewer is one.
fn search_windows(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    const WIDTH: usize = 4;
    let phrase = |part: &[char]| {
        let part: String = part.iter().collect();
        format!("\"{}\"", part.replace('"', "\"\""))
    };
    if chars.len() <= WIDTH {
        return vec![phrase(&chars)];
    }
    let mut starts: Vec<usize> = (0..=chars.len() - WIDTH).step_by(3).collect();
    if starts.last() != Some(&(chars.len() - WIDTH)) {
        starts.push(chars.len() - WIDTH);
    }
    starts
        .into_iter()
        .map(|start| phrase(&chars[start..start + WIDTH]))
        .collect()
}

pub fn set_status(conn: &Connection, id: &str, status: LicenseStatus, now: i64) -> Result<()> {
    let product_id = conn
        .prepare_cached(
            "UPDATE licenses SET status = ?2, updated_at = ?3 WHERE id = ?1 RETURNING product_id",
        )?
        .query_row(params![id, status, now], |r| r.get(0))
        .optional()?;
    follow(conn, id, product_id, status, now)
}

pub fn set_max_sessions(conn: &Connection, id: &str, max_sessions: u32, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE licenses SET max_sessions = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, max_sessions, now],
    )?;
    Ok(())
}

pub fn set_note(conn: &Connection, id: &str, note: Option<&str>, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE licenses SET note = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, note, now],
    )?;
    Ok(())
}

pub fn set_hwid_reset_at(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE licenses SET hwid_reset_at = ?2, updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// A key of one product (`key` normalized).
pub fn find_by_key_in_product(
    conn: &Connection,
    product_id: &str,
    key: &str,
) -> Result<Option<License>> {
    Ok(conn
        .prepare_cached("SELECT * FROM licenses WHERE license_key = ?1 AND product_id = ?2")?
        .query_row([key, product_id], from_row)
        .optional()?)
}

/// A key of any product of any tenant: the key/HWID face's `/api/validate` without a project
/// secret searches all keys (keys are globally unique; the key itself is the credential).
pub fn find_by_key_everywhere(conn: &Connection, key: &str) -> Result<Option<License>> {
    Ok(conn
        .prepare_cached("SELECT * FROM licenses WHERE license_key = ?1")?
        .query_row([key], from_row)
        .optional()?)
}

/// Licenses by effective status (an ACTIVE key past its expiry counts as EXPIRED, as
/// everywhere else: see `License::effective_status`) or by plan, in name order (no plan
/// first). Read from `license_counts`, which triggers keep as licenses are written; only the
/// ACTIVE keys already past their expiry (not yet swept) are counted from the licenses, on
/// the `licenses_expiring` index.
pub fn count_by(
    conn: &Connection,
    column: CountColumn,
    tenant_scope: Option<&str>,
    product_id: Option<&str>,
) -> Result<Vec<(Option<String>, u64)>> {
    let mut filter = crate::domain::Filter::default();
    filter.and_some("tenant_id = ?", tenant_scope.map(str::to_owned));
    filter.and_some("product_id = ?", product_id.map(str::to_owned));
    let (filter, mut args) = (filter.sql(), filter.args);
    let grouped = match column {
        CountColumn::Status => "status",
        CountColumn::Plan => "NULLIF(plan, '')",
    };
    let mut counts: Vec<(Option<String>, i64)> = conn
        .prepare_cached(&format!(
            "SELECT {grouped} AS grouped, SUM(count) FROM license_counts WHERE {filter}
             GROUP BY grouped ORDER BY grouped"
        ))?
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if matches!(column, CountColumn::Status) {
        args.push(Box::new(crate::domain::now_ms()));
        let expired: i64 = conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM licenses INDEXED BY licenses_expiring
                 WHERE {filter} AND status = 'ACTIVE' AND valid_until IS NOT NULL
                   AND valid_until <= ?"
            ))?
            .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
        if expired > 0 {
            let mut add = |status: &str, n: i64| match counts
                .iter_mut()
                .find(|(s, _)| s.as_deref() == Some(status))
            {
                Some((_, count)) => *count += n,
                None => counts.push((Some(status.to_owned()), n)),
            };
            add("ACTIVE", -expired);
            add("EXPIRED", expired);
            counts.sort();
        }
    }
    Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| (name, n as u64))
        .collect())
}

#[derive(Debug, Clone, Copy)]
pub enum CountColumn {
    Status,
    Plan,
}

/// The tenant's license with this (normalized) key, its activation count and `machine_id`'s
/// activation: everything the validation hot path reads, in one statement. One statement is
/// one read transaction; each costs WAL read-lock system calls, which at tens of thousands of
/// validations a second are a visible share of the work.
pub fn find_for_validation(
    conn: &Connection,
    tenant_id: &str,
    key: &str,
    machine_id: &str,
) -> Result<Option<(License, u64, Option<crate::domain::activations::Activation>)>> {
    use crate::domain::activations;
    const USED: usize = COLUMNS.len();
    Ok(conn
        .prepare_cached(
            "SELECT l.*, (SELECT COUNT(*) FROM activations c WHERE c.license_id = l.id) AS used,
                    a.*
             FROM licenses l
             LEFT JOIN activations a ON a.license_id = l.id AND a.machine_id = ?3
             WHERE l.license_key = ?1 AND l.tenant_id = ?2",
        )?
        .query_row([key, tenant_id, machine_id], |r| {
            Ok((
                from_row(r)?,
                r.get::<_, i64>(USED)? as u64,
                activations::repo::from_row_at(r, USED + 1)?,
            ))
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_windows_cover_the_text() {
        assert_eq!(super::search_windows("abc"), ["\"abc\""]);
        assert_eq!(super::search_windows("a\"bc"), ["\"a\"\"bc\""]);
        assert_eq!(
            super::search_windows("customer"),
            ["\"cust\"", "\"tome\"", "\"omer\""]
        );
        assert_eq!(super::search_windows("müller"), ["\"müll\"", "\"ller\""]);
    }

    /// The counts the triggers keep answer what counting every license would, through inserts,
    /// status and plan changes, moves between products and deletions.
    #[test]
    fn kept_counts_match_counting_every_license() -> crate::error::Result<()> {
        use rusqlite::params;
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../schema.sql"))?;
        // Licenses without their tenants and products: only the counts are looked at.
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
        let now = crate::domain::now_ms();
        let statuses = ["ACTIVE", "ACTIVE", "BANNED", "REVOKED", "EXPIRED"];
        let plans = [None, Some("DAILY"), Some("MONTHLY"), Some("LIFETIME")];
        for i in 0..300i64 {
            conn.execute(
                "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier,
                    status, max_activations, valid_until, plan, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?1, 'SUBSCRIPTION', 'PERSONAL', ?4, 1, ?5, ?6, 0, 0)",
                params![
                    format!("lic_{i}"),
                    if i % 4 == 0 { "ten_b" } else { "ten_a" },
                    format!("prod_{}", i % 3),
                    statuses[(i % 5) as usize],
                    // Some ACTIVE keys are past their expiry and not yet swept.
                    match i % 7 {
                        0 => Some(now - 1_000),
                        1 => Some(now + 86_400_000),
                        _ => None,
                    },
                    plans[(i % 4) as usize],
                ],
            )?;
        }
        conn.execute_batch(
            "UPDATE licenses SET status = 'BANNED' WHERE CAST(substr(id, 5) AS INTEGER) % 11 = 0;
             UPDATE licenses SET plan = NULL WHERE CAST(substr(id, 5) AS INTEGER) % 13 = 0;
             UPDATE licenses SET product_id = 'prod_9' WHERE CAST(substr(id, 5) AS INTEGER) % 17 = 0;
             UPDATE licenses SET note = 'untouched counts' WHERE CAST(substr(id, 5) AS INTEGER) % 2 = 0;
             DELETE FROM licenses WHERE CAST(substr(id, 5) AS INTEGER) % 19 = 0;",
        )?;
        let counted_anew = |column: &str, tenant: Option<&str>, product: Option<&str>| {
            let grouped = if column == "status" {
                "CASE WHEN status = 'ACTIVE' AND valid_until <= ?3 THEN 'EXPIRED' ELSE status END"
            } else {
                "plan"
            };
            conn.prepare(&format!(
                "SELECT {grouped} AS grouped, COUNT(*) FROM licenses
                 WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)
                   AND ?3 IS NOT NULL
                 GROUP BY grouped ORDER BY grouped"
            ))?
            .query_map(params![tenant, product, crate::domain::now_ms()], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        };
        for tenant in [None, Some("ten_a"), Some("ten_b")] {
            for product in [None, Some("prod_1"), Some("prod_9"), Some("prod_none")] {
                assert_eq!(
                    super::count_by(&conn, super::CountColumn::Status, tenant, product)?,
                    counted_anew("status", tenant, product)?,
                    "status, {tenant:?} {product:?}"
                );
                assert_eq!(
                    super::count_by(&conn, super::CountColumn::Plan, tenant, product)?,
                    counted_anew("plan", tenant, product)?,
                    "plan, {tenant:?} {product:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn positions_match_the_schema() -> Result<(), rusqlite::Error> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../schema.sql"))?;
        for (table, expected) in [
            ("licenses", &super::COLUMNS[..]),
            (
                "activations",
                &crate::domain::activations::repo::COLUMNS[..],
            ),
        ] {
            let stmt = conn.prepare(&format!("SELECT * FROM {table}"))?;
            assert_eq!(stmt.column_names(), expected, "{table}");
        }
        Ok(())
    }

    /// A common note text is searched by walking the keys, a rare one through the trigram
    /// index: both must give the same pages, and the walk's total must never overstate.
    #[test]
    fn both_note_search_plans_give_the_same_pages() -> Result<(), Box<dyn std::error::Error>> {
        use super::{Search, search_with};
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(include_str!("../../../schema.sql"))?;
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
        for i in 0..240i64 {
            let id = format!("lic_{i:04}");
            // Equal creation times in runs of three: ties are ordered by insertion.
            conn.execute(
                "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type,
                    tier, status, max_activations, max_sessions, plan, note, created_at,
                    updated_at, customer_email, customer_name)
                 VALUES (?1, ?2, 'p1', ?3, 'SUBSCRIPTION', 'PERSONAL', 'ACTIVE', 1, 1,
                    'LIFETIME', ?4, ?5, ?5, ?6, ?7)",
                rusqlite::params![
                    id,
                    if i % 4 == 0 { "t2" } else { "t1" },
                    format!("AB-{i:04}"),
                    format!("order 100% batch_{} of {}", i % 7, i % 3),
                    1_000 + i / 3,
                    format!("buyer{}@Example.com", i % 11),
                    format!("Ana Müller {}", i % 13)
                ],
            )?;
            if i % 5 == 0 {
                conn.execute(
                    "INSERT INTO activations (id, tenant_id, license_id, machine_id,
                        activated_at, last_seen_at) VALUES (?1, 't1', ?2, ?3, 1, 1)",
                    rusqlite::params![format!("act_{i}"), id, format!("hw-{i:04}")],
                )?;
            }
        }
        let page_ids = |rows: &[super::KeyRow]| -> Vec<String> {
            rows.iter().map(|r| r.license.id.clone()).collect()
        };
        // Short and long texts (the index is asked for their rarest window), and texts whose
        // windows all match while the whole does not ("batch_3 of 7").
        for text in [
            "batch_3",
            "0% b",
            "of 2",
            "h_1 of",
            "hw-00",
            "AB-01",
            "ab-0",
            "batch_9",
            "order 100% batch_3 of 0",
            "batch_3 of 7",
            "ana müller 1",
            "Müller 12",
            "BUYER3@example.COM",
        ] {
            for tenant in [None, Some("t1")] {
                let s = Search {
                    tenant_scope: tenant,
                    text: Some(text),
                    ..Search::default()
                };
                for (limit, offset) in [(10, 0), (7, 14), (50, 0), (10, 230)] {
                    let (set, set_total) = search_with(&conn, &s, limit, offset, i64::MAX)?;
                    let (walk, walk_total) = search_with(&conn, &s, limit, offset, -1)?;
                    let case = format!("{text:?} tenant {tenant:?} limit {limit} offset {offset}");
                    assert_eq!(page_ids(&set), page_ids(&walk), "{case}");
                    assert!(!set_total.capped, "{case}");
                    if walk_total.capped {
                        assert!(walk_total.total <= set_total.total, "{case}");
                        assert_eq!(walk_total.total, offset + limit as u64 + 1, "{case}");
                    } else {
                        assert_eq!(walk_total.total, set_total.total, "{case}");
                    }
                }
            }
        }
        // The walk found what the index found: a sanity check that the texts match at all.
        let s = Search {
            text: Some("batch_3"),
            ..Search::default()
        };
        let (_, total) = search_with(&conn, &s, 50, 0, i64::MAX)?;
        assert_eq!(total.total, (0..240).filter(|i| i % 7 == 3).count() as u64);
        let s = Search {
            text: Some("ana müller 12"),
            ..Search::default()
        };
        let (_, total) = search_with(&conn, &s, 50, 0, i64::MAX)?;
        assert_eq!(
            total.total,
            (0..240).filter(|i| i % 13 == 12).count() as u64
        );
        let s = Search {
            text: Some("batch_3 of 7"),
            ..Search::default()
        };
        let (_, total) = search_with(&conn, &s, 50, 0, i64::MAX)?;
        assert_eq!(
            total.total, 0,
            "each window matches, the whole text nowhere"
        );
        Ok(())
    }
}
