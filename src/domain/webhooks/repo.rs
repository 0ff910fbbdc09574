//! SQL of webhook endpoints, events and deliveries.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Delivery, DeliveryStatus, Endpoint};
use crate::error::Result;

const ENDPOINT_COLUMNS: &str = "id, tenant_id, product_id, url, description, event_types, enabled,
     failing_since, disabled_at, disabled_reason, created_at, updated_at";

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let types: String = r.get(5)?;
    Ok(Endpoint {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        product_id: r.get(2)?,
        url: r.get(3)?,
        description: r.get(4)?,
        event_types: serde_json::from_str(&types).unwrap_or_else(|_| vec!["*".to_owned()]),
        enabled: r.get(6)?,
        failing_since: r.get(7)?,
        disabled_at: r.get(8)?,
        disabled_reason: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

fn types_json(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[\"*\"]".to_owned())
}

pub fn insert_endpoint(conn: &Connection, e: &Endpoint, secret_sealed: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, product_id, url, description, event_types,
             enabled, secret_sealed, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            e.id,
            e.tenant_id,
            e.product_id,
            e.url,
            e.description,
            types_json(&e.event_types),
            e.enabled,
            secret_sealed,
            e.created_at,
        ],
    )?;
    Ok(())
}

/// The endpoint, within `tenant_scope` when one is given.
pub fn find_endpoint_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id: &str,
) -> Result<Option<Endpoint>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                 WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
            ),
            params![id, tenant_scope],
            endpoint_from_row,
        )
        .optional()?)
}

pub fn endpoint_secret(conn: &Connection, id: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT secret_sealed FROM webhook_endpoints WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

/// A page of endpoints, newest first, and the total. `product` keeps only the endpoints
/// restricted to that product (what a product-restricted caller reaches); `project` filters.
pub fn list_endpoints(
    conn: &Connection,
    tenant_scope: Option<&str>,
    product: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Endpoint>, u64)> {
    let filter = "(?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR product_id = ?2)";
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM webhook_endpoints WHERE {filter}"),
        params![tenant_scope, product],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {filter}
         ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(
            params![tenant_scope, product, limit, offset as i64],
            endpoint_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total as u64))
}

/// Writes the endpoint's changeable fields as they are in `e`.
pub fn update_endpoint(conn: &Connection, e: &Endpoint) -> Result<()> {
    conn.execute(
        "UPDATE webhook_endpoints SET url = ?2, description = ?3, event_types = ?4, enabled = ?5,
             failing_since = ?6, disabled_at = ?7, disabled_reason = ?8, updated_at = ?9
         WHERE id = ?1",
        params![
            e.id,
            e.url,
            e.description,
            types_json(&e.event_types),
            e.enabled,
            e.failing_since,
            e.disabled_at,
            e.disabled_reason,
            e.updated_at,
        ],
    )?;
    Ok(())
}

pub fn set_endpoint_secret(conn: &Connection, id: &str, sealed: &[u8], now: i64) -> Result<()> {
    conn.execute(
        "UPDATE webhook_endpoints SET secret_sealed = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, sealed, now],
    )?;
    Ok(())
}

/// Removes the endpoint with its deliveries.
pub fn delete_endpoint(conn: &Connection, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1",
        [id],
    )?;
    conn.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])?;
    Ok(())
}

/// The enabled endpoints of a tenant that may receive an event of `product` (those of the whole
/// tenant, and those restricted to that product).
pub fn endpoints_for_event(
    conn: &Connection,
    tenant_id: &str,
    product_id: Option<&str>,
) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
         WHERE tenant_id = ?1 AND enabled = 1 AND (product_id IS NULL OR product_id = ?2)"
    ))?;
    let rows = stmt
        .query_map(params![tenant_id, product_id], endpoint_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn insert_event(
    conn: &Connection,
    id: &str,
    tenant_id: &str,
    product_id: Option<&str>,
    event_type: &str,
    body: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO webhook_events (id, tenant_id, product_id, type, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, tenant_id, product_id, event_type, body, now],
    )?;
    Ok(())
}

/// Queues a delivery due at once: to an endpoint, or (`endpoint_id` None) to the abuse policy
/// URL `url` of `product_id`.
pub fn insert_delivery(
    conn: &Connection,
    id: &str,
    event_id: &str,
    endpoint_id: Option<&str>,
    product_id: Option<&str>,
    url: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, product_id, url, status,
             next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'PENDING', ?6, ?6)",
        params![id, event_id, endpoint_id, product_id, url, now],
    )?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, d.endpoint_id, d.status, d.attempts,
     d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_response, d.last_error,
     d.delivered_at, d.created_at";

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let code: Option<i64> = r.get(8)?;
    Ok(Delivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        endpoint_id: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_attempt_at: r.get(7)?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_response: r.get(9)?,
        last_error: r.get(10)?,
        delivered_at: r.get(11)?,
        created_at: r.get(12)?,
    })
}

/// A delivery to an endpoint (never an abuse-policy one), within `tenant_scope` if given.
pub fn find_delivery_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    id: &str,
) -> Result<Option<Delivery>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
                 JOIN webhook_events e ON e.id = d.event_id
                 WHERE d.id = ?1 AND d.endpoint_id IS NOT NULL
                   AND (?2 IS NULL OR e.tenant_id = ?2)"
            ),
            params![id, tenant_scope],
            delivery_from_row,
        )
        .optional()?)
}

/// A page of an endpoint's deliveries, newest first, and the total.
pub fn list_deliveries(
    conn: &Connection,
    endpoint_id: &str,
    status: Option<DeliveryStatus>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Delivery>, u64)> {
    let filter = "d.endpoint_id = ?1 AND (?2 IS NULL OR d.status = ?2)";
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM webhook_deliveries d WHERE {filter}"),
        params![endpoint_id, status],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
         JOIN webhook_events e ON e.id = d.event_id
         WHERE {filter} ORDER BY d.created_at DESC, d.rowid DESC LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(
            params![endpoint_id, status, limit, offset as i64],
            delivery_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total as u64))
}

/// A delivery due now, with what sending it takes.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    pub attempts: u32,
    pub tenant_id: String,
    /// None for an abuse-policy delivery.
    pub endpoint_id: Option<String>,
    pub url: String,
    /// The endpoint's secret, or the product's abuse webhook secret; sealed.
    pub secret_sealed: Option<Vec<u8>>,
}

/// Pending deliveries due at `now` whose endpoint is enabled, oldest first.
pub fn due(conn: &Connection, now: i64, limit: u32) -> Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.event_id, e.type, e.body, d.attempts, e.tenant_id, d.endpoint_id,
                COALESCE(ep.url, d.url), COALESCE(ep.secret_sealed, p.abuse_webhook_secret_sealed)
         FROM webhook_deliveries d
         JOIN webhook_events e ON e.id = d.event_id
         LEFT JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
         LEFT JOIN products p ON d.endpoint_id IS NULL AND p.id = d.product_id
         WHERE d.status = 'PENDING' AND d.next_attempt_at <= ?1
           AND (ep.enabled = 1 OR (d.endpoint_id IS NULL AND d.url IS NOT NULL))
         ORDER BY d.next_attempt_at LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![now, limit], |r| {
            Ok(Due {
                id: r.get(0)?,
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                body: r.get(3)?,
                attempts: r.get(4)?,
                tenant_id: r.get(5)?,
                endpoint_id: r.get(6)?,
                url: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                secret_sealed: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

const PENDING_LIVE: &str = "FROM webhook_deliveries d
     LEFT JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
     WHERE d.status = 'PENDING' AND (ep.enabled = 1 OR d.endpoint_id IS NULL)";

/// When the next delivery falls due, if any is pending for an enabled endpoint.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        &format!("SELECT MIN(d.next_attempt_at) {PENDING_LIVE}"),
        [],
        |r| r.get(0),
    )?)
}

/// Deliveries waiting to be made (the outgoing queue depth of the metrics).
pub fn pending_count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT COUNT(*) {PENDING_LIVE}"), [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Records an attempt. `next` None with `delivered` false: given up.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub status_code: Option<u16>,
    pub response: Option<&'a str>,
    pub error: Option<&'a str>,
    pub delivered: bool,
    pub next: Option<i64>,
    pub at: i64,
}

pub fn record_attempt(conn: &Connection, id: &str, a: &Attempt<'_>) -> Result<()> {
    let status = if a.delivered {
        DeliveryStatus::Succeeded
    } else if a.next.is_some() {
        DeliveryStatus::Pending
    } else {
        DeliveryStatus::Failed
    };
    conn.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?2, next_attempt_at = ?3,
             last_attempt_at = ?4, last_status_code = ?5, last_response = ?6, last_error = ?7,
             delivered_at = CASE WHEN ?8 THEN ?4 ELSE delivered_at END
         WHERE id = ?1",
        params![
            id,
            status,
            a.next,
            a.at,
            a.status_code,
            a.response,
            a.error,
            a.delivered,
        ],
    )?;
    Ok(())
}

/// Forgets deliveries made or given up before `before`, and events left without deliveries
/// (their endpoints deleted, or all their deliveries forgotten). Returns the deliveries removed.
pub fn prune(conn: &Connection, before: i64) -> Result<u64> {
    let removed = conn.execute(
        "DELETE FROM webhook_deliveries WHERE status <> 'PENDING' AND created_at < ?1",
        [before],
    )?;
    conn.execute(
        "DELETE FROM webhook_events WHERE created_at < ?1
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        [before],
    )?;
    Ok(removed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made and given-up deliveries older than the cut go, pending ones stay, and an event
    /// goes with its last delivery.
    #[test]
    fn pruning_keeps_pending_deliveries_and_their_events()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let conn = crate::storage::open_and_migrate(&dir.path().join("k.db"))?;
        let tenant: String = conn.query_row("SELECT id FROM tenants LIMIT 1", [], |r| r.get(0))?;
        for (event, status) in [
            ("msg_old", "SUCCEEDED"),
            ("msg_failed", "FAILED"),
            ("msg_wait", "PENDING"),
        ] {
            insert_event(&conn, event, &tenant, None, "license.created", "{}", 10)?;
            conn.execute(
                "INSERT INTO webhook_deliveries (id, event_id, url, status, created_at)
                 VALUES (?1, ?2, 'https://h.example/', ?3, 10)",
                params![format!("dlv_{event}"), event, status],
            )?;
        }
        insert_event(
            &conn,
            "msg_new",
            &tenant,
            None,
            "license.created",
            "{}",
            1_000,
        )?;
        assert_eq!(prune(&conn, 500)?, 2);
        let left: Vec<String> = conn
            .prepare("SELECT id FROM webhook_events ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        assert_eq!(left, vec!["msg_new".to_owned(), "msg_wait".to_owned()]);
        Ok(())
    }
}
