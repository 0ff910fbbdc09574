//! Emitting webhook events. Each service calls [`emit`] inside its own writer job, so an event
//! (and its deliveries) exists exactly when the change committed; after the job returns it
//! calls `state.webhooks.wake()` so the delivery worker sends at once.

use rusqlite::Connection;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::domain::activations::Activation;
use crate::domain::licenses::License;
use crate::domain::releases::Release;
use crate::domain::webhooks::{self, Endpoint, EventType, repo};
use crate::domain::{ms_to_datetime, now_ms};
use crate::error::Error;

fn rfc3339(ms: i64) -> String {
    ms_to_datetime(ms).format(&Rfc3339).unwrap_or_default()
}

fn time_or_null(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| json!(rfc3339(ms)))
}

/// The Standard Webhooks body: `{"type", "timestamp", "data"}`.
fn body(event_type: &str, at: i64, data: Value) -> String {
    json!({"type": event_type, "timestamp": rfc3339(at), "data": data}).to_string()
}

/// Emits `event` of `tenant_id` (and of `product_id`, if it concerns one) to every enabled
/// endpoint of the tenant subscribed to it (tenant-wide ones, and those of that product).
/// Returns the number of deliveries queued; with none, nothing is stored.
pub fn emit(
    c: &Connection,
    tenant_id: &str,
    product_id: Option<&str>,
    event: EventType,
    data: Value,
) -> Result<usize, Error> {
    emit_with_abuse_url(c, tenant_id, product_id, event, data, None)
}

/// [`emit`], plus a delivery to a product's abuse policy URL (signed with the product's abuse
/// webhook secret, with the deprecated `X-Keyward-Signature` as well).
pub fn emit_with_abuse_url(
    c: &Connection,
    tenant_id: &str,
    product_id: Option<&str>,
    event: EventType,
    data: Value,
    abuse_url: Option<&str>,
) -> Result<usize, Error> {
    let event_type = event.as_str();
    let endpoints: Vec<Endpoint> = repo::endpoints_for_event(c, tenant_id, product_id)?
        .into_iter()
        .filter(|e| webhooks::subscribed(&e.event_types, &event_type))
        .collect();
    let abuse_url = abuse_url.filter(|_| product_id.is_some());
    if endpoints.is_empty() && abuse_url.is_none() {
        return Ok(0);
    }
    let now = now_ms();
    let event_id = crate::crypto::new_id("msg");
    repo::insert_event(
        c,
        &event_id,
        tenant_id,
        product_id,
        &event_type,
        &body(&event_type, now, data),
        now,
    )?;
    for e in &endpoints {
        repo::insert_delivery(
            c,
            &crate::crypto::new_id("dlv"),
            &event_id,
            Some(&e.id),
            None,
            None,
            now,
        )?;
    }
    if let Some(url) = abuse_url {
        repo::insert_delivery(
            c,
            &crate::crypto::new_id("dlv"),
            &event_id,
            None,
            product_id,
            Some(url),
            now,
        )?;
    }
    Ok(endpoints.len() + usize::from(abuse_url.is_some()))
}

/// A `webhook.test` event to one endpoint, whatever it subscribes to; its delivery's id.
pub fn emit_test(c: &Connection, endpoint: &Endpoint) -> Result<String, Error> {
    let now = now_ms();
    let event_id = crate::crypto::new_id("msg");
    let event_type = EventType::Test.as_str();
    let data = json!({"endpointId": endpoint.id, "message": "A test event sent by hand"});
    repo::insert_event(
        c,
        &event_id,
        &endpoint.tenant_id,
        endpoint.product_id.as_deref(),
        &event_type,
        &body(&event_type, now, data),
        now,
    )?;
    let delivery_id = crate::crypto::new_id("dlv");
    repo::insert_delivery(
        c,
        &delivery_id,
        &event_id,
        Some(&endpoint.id),
        None,
        None,
        now,
    )?;
    Ok(delivery_id)
}

/// What a license event says about the license.
pub fn license_data(l: &License) -> Value {
    json!({"license": {
        "id": l.id,
        "key": l.key,
        "productId": l.product_id,
        "status": l.status.as_str(),
        "type": l.license_type.as_str(),
        "tier": l.tier.as_str(),
        "plan": l.plan.map(|p| p.as_str()),
        "maxActivations": l.max_activations,
        "validUntil": time_or_null(l.valid_until),
        "customerEmail": l.customer_email,
        "customerName": l.customer_name,
        "orderId": l.order_id,
        "entitlements": l.entitlements,
        "createdAt": rfc3339(l.created_at),
    }})
}

/// A machine event: the license (as [`license_data`]) and the machine.
/// `machine.activated` for a machine bound just now; an idempotent repeat is not news.
/// Returns whether it was (the caller wakes the delivery worker after its commit).
pub fn machine_activated(
    c: &Connection,
    activated: &crate::domain::activations::Activated,
) -> Result<bool, Error> {
    if !activated.new {
        return Ok(false);
    }
    let license = &activated.license;
    emit(
        c,
        &license.tenant_id,
        Some(&license.product_id),
        EventType::MachineActivated,
        machine_data(license, &activated.activation, None),
    )?;
    Ok(true)
}

pub fn machine_data(l: &License, m: &Activation, reason: Option<&str>) -> Value {
    let mut data = license_data(l);
    data["machine"] = json!({
        "id": m.id,
        "machineId": m.machine_id,
        "name": m.machine_name,
        "os": m.os_name,
        "appVersion": m.app_version,
        "activatedAt": rfc3339(m.activated_at),
        "lastSeenAt": rfc3339(m.last_seen_at),
    });
    if let Some(reason) = reason {
        data["reason"] = json!(reason);
    }
    data
}

pub fn release_data(r: &Release) -> Value {
    json!({"release": {
        "id": r.id,
        "productId": r.product_id,
        "version": r.version,
        "channel": r.channel.as_str(),
        "status": r.status.as_str(),
        "isCritical": r.is_critical,
        "publishedAt": time_or_null(r.published_at),
        "yankedAt": time_or_null(r.yanked_at),
    }})
}

/// The license event of a status change, if the new status has one.
pub fn status_event(
    from: crate::domain::licenses::LicenseStatus,
    to: crate::domain::licenses::LicenseStatus,
) -> Option<EventType> {
    use crate::domain::licenses::LicenseStatus::*;
    match (from, to) {
        (a, b) if a == b => None,
        (_, Revoked) => Some(EventType::LicenseRevoked),
        (_, Suspended | Banned) => Some(EventType::LicenseSuspended),
        (_, Expired) => Some(EventType::LicenseExpired),
        (Suspended | Banned | Expired, Active) => Some(EventType::LicenseReinstated),
        _ => None,
    }
}

/// Emits a license event with [`license_data`].
pub fn license_event(c: &Connection, l: &License, event: EventType) -> Result<usize, Error> {
    emit(c, &l.tenant_id, Some(&l.product_id), event, license_data(l))
}
