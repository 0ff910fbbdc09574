use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Endpoint, EndpointSummary, Mapping, StoredEvent};
use crate::domain::entitlements;
use crate::error::Result;

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        provider: r.get("provider")?,
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

pub fn insert_endpoint(conn: &Connection, e: &Endpoint, secret_sealed: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO payment_endpoints (id, tenant_id, provider, name, secret_sealed,
            created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.id,
            e.tenant_id,
            e.provider,
            e.name,
            secret_sealed,
            e.created_at,
            e.updated_at
        ],
    )?;
    Ok(())
}

/// The endpoint with its sealed secret, in any tenant (the receivers know only its id).
pub fn find_with_secret(conn: &Connection, id: &str) -> Result<Option<(Endpoint, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM payment_endpoints WHERE id = ?1")?;
    Ok(stmt
        .query_row([id], |r| {
            Ok((endpoint_from_row(r)?, r.get("secret_sealed")?))
        })
        .optional()?)
}

pub fn find_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id: &str,
) -> Result<Option<Endpoint>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM payment_endpoints WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
    )?;
    Ok(stmt
        .query_row(params![id, tenant_scope], endpoint_from_row)
        .optional()?)
}

/// The endpoints in reach, newest first, with their counts.
pub fn list(conn: &Connection, tenant_scope: Option<&str>) -> Result<Vec<EndpointSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.*,
            (SELECT COUNT(*) FROM payment_mappings m WHERE m.endpoint_id = e.id) AS n_mappings,
            (SELECT COUNT(*) FROM payment_events v WHERE v.endpoint_id = e.id) AS n_events,
            (SELECT COUNT(*) FROM payment_events v WHERE v.endpoint_id = e.id
                AND v.outcome NOT IN ('APPLIED', 'IGNORED')) AS n_flagged
         FROM payment_endpoints e
         WHERE ?1 IS NULL OR e.tenant_id = ?1
         ORDER BY e.created_at DESC, e.id",
    )?;
    let rows = stmt.query_map([tenant_scope], |r| {
        Ok(EndpointSummary {
            endpoint: endpoint_from_row(r)?,
            mappings: r.get::<_, i64>("n_mappings")? as u64,
            events: r.get::<_, i64>("n_events")? as u64,
            flagged: r.get::<_, i64>("n_flagged")? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn update_endpoint(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    secret_sealed: Option<&[u8]>,
    now: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE payment_endpoints SET name = COALESCE(?2, name),
            secret_sealed = COALESCE(?3, secret_sealed), updated_at = ?4 WHERE id = ?1",
        params![id, name, secret_sealed, now],
    )?;
    Ok(())
}

pub fn delete_endpoint(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM payment_endpoints WHERE id = ?1", [id])?;
    Ok(())
}

fn mapping_from_row(r: &Row<'_>) -> rusqlite::Result<Mapping> {
    let entitlements: String = r.get("entitlements")?;
    Ok(Mapping {
        endpoint_id: r.get("endpoint_id")?,
        provider_ref: r.get("provider_ref")?,
        product_id: r.get("product_id")?,
        license_type: r.get("license_type")?,
        tier: r.get("tier")?,
        plan: r.get("plan")?,
        max_activations: r.get("max_activations")?,
        entitlements: entitlements::from_column(&entitlements),
        created_at: r.get("created_at")?,
    })
}

/// Creates or replaces the mapping of `m.provider_ref`.
pub fn upsert_mapping(conn: &Connection, m: &Mapping) -> Result<()> {
    conn.execute(
        "INSERT INTO payment_mappings (endpoint_id, provider_ref, product_id, license_type, tier,
            plan, max_activations, entitlements, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (endpoint_id, provider_ref) DO UPDATE SET product_id = excluded.product_id,
            license_type = excluded.license_type, tier = excluded.tier, plan = excluded.plan,
            max_activations = excluded.max_activations, entitlements = excluded.entitlements",
        params![
            m.endpoint_id,
            m.provider_ref,
            m.product_id,
            m.license_type,
            m.tier,
            m.plan,
            m.max_activations,
            entitlements::to_column(&m.entitlements),
            m.created_at
        ],
    )?;
    Ok(())
}

/// Returns whether a mapping was there.
pub fn delete_mapping(conn: &Connection, endpoint_id: &str, provider_ref: &str) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM payment_mappings WHERE endpoint_id = ?1 AND provider_ref = ?2",
        [endpoint_id, provider_ref],
    )?;
    Ok(n > 0)
}

pub fn mappings(conn: &Connection, endpoint_id: &str) -> Result<Vec<Mapping>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM payment_mappings WHERE endpoint_id = ?1 ORDER BY provider_ref",
    )?;
    let rows = stmt.query_map([endpoint_id], mapping_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find_mapping(
    conn: &Connection,
    endpoint_id: &str,
    provider_ref: &str,
) -> Result<Option<Mapping>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM payment_mappings WHERE endpoint_id = ?1 AND provider_ref = ?2",
    )?;
    Ok(stmt
        .query_row([endpoint_id, provider_ref], mapping_from_row)
        .optional()?)
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let refs: String = r.get("refs")?;
    let licenses: Option<String> = r.get("license_ids")?;
    Ok(StoredEvent {
        endpoint_id: r.get("endpoint_id")?,
        event_id: r.get("event_id")?,
        tenant_id: r.get("tenant_id")?,
        event_type: r.get("event_type")?,
        received_at: r.get("received_at")?,
        effect: r.get("effect")?,
        outcome: r.get("outcome")?,
        message: r.get("message")?,
        customer_id: r.get("customer_id")?,
        customer_email: r.get("customer_email")?,
        refs: refs
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        period_end: r.get("period_end")?,
        license_ids: licenses
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

const EVENT_COLUMNS: &str = "v.endpoint_id, v.event_id, v.tenant_id, v.event_type, v.received_at,
    v.effect, v.outcome, v.message, v.customer_id, v.customer_email, v.refs, v.period_end,
    (SELECT GROUP_CONCAT(l.license_id) FROM payment_event_licenses l
        WHERE l.endpoint_id = v.endpoint_id AND l.event_id = v.event_id) AS license_ids";

/// Stores a newly received event; `false` when the endpoint has it already (a redelivery).
pub fn insert_event(conn: &Connection, e: &StoredEvent, payload: &str) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO payment_events (endpoint_id, event_id, tenant_id, event_type,
            received_at, effect, outcome, message, customer_id, customer_email, refs, period_end,
            payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            e.endpoint_id,
            e.event_id,
            e.tenant_id,
            e.event_type,
            e.received_at,
            e.effect,
            e.outcome,
            e.message,
            e.customer_id,
            e.customer_email,
            e.refs.join(" "),
            e.period_end,
            payload
        ],
    )?;
    Ok(n > 0)
}

pub fn set_outcome(
    conn: &Connection,
    endpoint_id: &str,
    event_id: &str,
    outcome: super::Outcome,
    message: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE payment_events SET outcome = ?3, message = ?4
         WHERE endpoint_id = ?1 AND event_id = ?2",
        params![endpoint_id, event_id, outcome, message],
    )?;
    Ok(())
}

pub fn find_event(
    conn: &Connection,
    endpoint_id: &str,
    event_id: &str,
) -> Result<Option<StoredEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM payment_events v WHERE v.endpoint_id = ?1 AND v.event_id = ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_row([endpoint_id, event_id], event_from_row)
        .optional()?)
}

/// The raw body an event arrived with, as stored (to read it again with today's mappings).
pub fn event_payload(
    conn: &Connection,
    endpoint_id: &str,
    event_id: &str,
) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT payload FROM payment_events WHERE endpoint_id = ?1 AND event_id = ?2",
    )?;
    Ok(stmt
        .query_row([endpoint_id, event_id], |r| r.get(0))
        .optional()?)
}

/// A page of an endpoint's events, newest first, and their total.
pub fn list_events(
    conn: &Connection,
    endpoint_id: &str,
    flagged_only: bool,
    limit: u32,
    offset: u64,
) -> Result<(Vec<StoredEvent>, u64)> {
    let filter = "v.endpoint_id = ?1 AND (?2 = 0 OR v.outcome NOT IN ('APPLIED', 'IGNORED'))";
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM payment_events v WHERE {filter}
         ORDER BY v.received_at DESC, v.event_id LIMIT ?3 OFFSET ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![endpoint_id, flagged_only, limit, offset as i64],
        event_from_row,
    )?;
    let events = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM payment_events v WHERE {filter}"),
        params![endpoint_id, flagged_only],
        |r| r.get(0),
    )?;
    Ok((events, total as u64))
}

/// A license's payment events with their provider, oldest first.
pub fn events_for_license(
    conn: &Connection,
    license_id: &str,
) -> Result<Vec<(super::Provider, StoredEvent)>> {
    let sql = format!(
        "SELECT e.provider, {EVENT_COLUMNS} FROM payment_event_licenses x
         JOIN payment_events v ON v.endpoint_id = x.endpoint_id AND v.event_id = x.event_id
         JOIN payment_endpoints e ON e.id = v.endpoint_id
         WHERE x.license_id = ?1 ORDER BY v.received_at, v.event_id LIMIT 500"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([license_id], |r| {
        Ok((r.get("provider")?, event_from_row(r)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The payment events of a customer in `tenant`: those that name `email` and those of its
/// licenses, newest first (at most `limit`).
pub fn events_for_customer(
    conn: &Connection,
    tenant: &str,
    email: &str,
    license_ids: &[String],
    limit: u32,
) -> Result<Vec<(super::Provider, StoredEvent)>> {
    let ids = serde_json::Value::from(license_ids.to_vec()).to_string();
    let sql = format!(
        "SELECT e.provider, {EVENT_COLUMNS} FROM payment_events v
         JOIN payment_endpoints e ON e.id = v.endpoint_id
         WHERE v.tenant_id = ?1 AND (lower(v.customer_email) = lower(?2)
            OR EXISTS (SELECT 1 FROM payment_event_licenses x
                       WHERE x.endpoint_id = v.endpoint_id AND x.event_id = v.event_id
                         AND x.license_id IN (SELECT value FROM json_each(?3))))
         ORDER BY v.received_at DESC, v.event_id LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![tenant, email, ids, limit], |r| {
        Ok((r.get("provider")?, event_from_row(r)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn link_event(
    conn: &Connection,
    endpoint_id: &str,
    event_id: &str,
    license_id: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO payment_event_licenses (license_id, endpoint_id, event_id)
         VALUES (?1, ?2, ?3)",
        [license_id, endpoint_id, event_id],
    )?;
    Ok(())
}

pub fn add_ref(
    conn: &Connection,
    endpoint_id: &str,
    payment_ref: &str,
    license_id: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO payment_refs (endpoint_id, ref, license_id) VALUES (?1, ?2, ?3)",
        [endpoint_id, payment_ref, license_id],
    )?;
    Ok(())
}

/// The licenses any of `refs` names on the endpoint, oldest link first.
pub fn licenses_by_refs(
    conn: &Connection,
    endpoint_id: &str,
    refs: &[String],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT license_id FROM payment_refs WHERE endpoint_id = ?1 AND ref = ?2",
    )?;
    for r in refs {
        let ids = stmt.query_map([endpoint_id, r.as_str()], |row| row.get::<_, String>(0))?;
        for id in ids {
            let id = id?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    Ok(out)
}

/// A renewal that arrived before its purchase: its event id, its payment's ids, its period end.
pub type EarlyRenewal = (String, Vec<String>, Option<i64>);

/// Renewals of this endpoint that arrived before the purchase of their payment (flagged
/// LICENSE_NOT_FOUND) and name one of `refs`.
pub fn early_renewals(
    conn: &Connection,
    endpoint_id: &str,
    refs: &[String],
) -> Result<Vec<EarlyRenewal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, refs, period_end FROM payment_events
         WHERE endpoint_id = ?1 AND outcome = 'LICENSE_NOT_FOUND' AND effect = 'RENEWAL'
         ORDER BY received_at",
    )?;
    let rows = stmt.query_map([endpoint_id], |r| {
        let text: String = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            text.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, theirs, end) = row?;
        if theirs.iter().any(|r| refs.contains(r)) {
            out.push((id, theirs, end));
        }
    }
    Ok(out)
}
