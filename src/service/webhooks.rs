//! Webhook endpoints and their deliveries, as the admin API and panel manage them, and the
//! outcome of each delivery attempt, as the delivery worker records it. An endpoint belongs to a
//! tenant and, optionally, to one product: a caller restricted to a product reaches only that
//! product's endpoints; a tenant-wide endpoint is reached by callers that reach every product.

use rusqlite::Connection;
use serde_json::json;

use super::Ctx;
use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::webhooks::{self, Delivery, DeliveryStatus, Endpoint, repo};
use crate::domain::{ProductId, now_ms, products};
use crate::error::Error;
use crate::outgoing::client::{check_url, refuse_internal_literal};
use crate::state::AppState;

/// A new endpoint, as the caller asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub description: Option<String>,
    /// None: every product of the tenant (a product-restricted caller gets its product).
    pub product_id: Option<ProductId>,
    /// None or empty: `*`.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Changes to an endpoint; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    /// `Some(true)` also clears the flag of an endpoint the server disabled.
    pub enabled: Option<bool>,
    pub rotate_secret: bool,
}

/// An endpoint, with its secret when this answer generated it (shown once).
#[derive(Debug, Clone)]
pub struct EndpointWithSecret {
    pub endpoint: Endpoint,
    pub secret: Option<String>,
}

fn reaches(ctx: &Ctx, e: &Endpoint) -> bool {
    match &e.product_id {
        Some(p) => ctx.reaches(&e.tenant_id, p),
        None => ctx.reaches_tenant(&e.tenant_id) && !ctx.product_restricted(),
    }
}

fn reachable(c: &Connection, ctx: &Ctx, id: &str) -> Result<Endpoint, Error> {
    repo::find_endpoint_in(c, ctx.tenants.filter(), id)?
        .filter(|e| reaches(ctx, e))
        .ok_or(Error::NotFound("webhook endpoint"))
}

fn check_endpoint_url(url: &str, allow_private: bool) -> Result<String, Error> {
    let url = url.trim();
    check_url(url).map_err(|why| Error::Invalid(format!("url {why}")))?;
    refuse_internal_literal(url, allow_private)
        .map_err(|why| Error::Invalid(format!("url {why}")))?;
    Ok(url.to_owned())
}

fn check_description(text: Option<String>) -> Result<Option<String>, Error> {
    let text = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > webhooks::MAX_DESCRIPTION)
    {
        return Err(Error::Invalid(format!(
            "description must be at most {} characters",
            webhooks::MAX_DESCRIPTION
        )));
    }
    Ok(text)
}

fn endpoint_event(ctx: &Ctx, e: &Endpoint, action: AuditAction) -> AuditEvent {
    let mut event = ctx.event(&e.tenant_id, action);
    event.product_id = e.product_id.clone();
    event
}

/// Creates an endpoint with a fresh secret (shown once). Audited.
pub async fn create_endpoint(
    state: &AppState,
    ctx: &Ctx,
    new: NewEndpoint,
) -> Result<EndpointWithSecret, Error> {
    let url = check_endpoint_url(&new.url, state.config.webhook_allow_private)?;
    let description = check_description(new.description)?;
    let event_types = webhooks::parse_event_types(new.event_types.as_deref().unwrap_or(&[]))?;
    let ctx = ctx.clone();
    let master = state.master.clone();
    state
        .db
        .write(move |c| {
            let asked = new
                .product_id
                .map(|p| p.0)
                .or_else(|| ctx.products.filter().map(str::to_owned));
            let (tenant_id, product_id) = match asked {
                Some(p) => {
                    let product = products::repo::find_in(c, ctx.tenants.filter(), &p)?
                        .filter(|p| ctx.products.reaches(&p.id))
                        .ok_or(Error::NotFound("project"))?;
                    (product.tenant_id, Some(product.id))
                }
                None => (ctx.tenant.to_string(), None),
            };
            let now = now_ms();
            let endpoint = Endpoint {
                id: crate::crypto::new_id("whep"),
                tenant_id,
                product_id,
                url,
                description,
                event_types,
                enabled: new.enabled.unwrap_or(true),
                failing_since: None,
                disabled_at: None,
                disabled_reason: None,
                created_at: now,
                updated_at: now,
            };
            let secret = webhooks::new_secret();
            repo::insert_endpoint(c, &endpoint, &master.seal(secret.as_bytes())?)?;
            audit::repo::insert(
                c,
                &endpoint_event(&ctx, &endpoint, AuditAction::WebhookEndpointCreate)
                    .detail(json!({"endpointId": endpoint.id, "url": endpoint.url,
                           "eventTypes": endpoint.event_types})),
            )?;
            Ok(EndpointWithSecret {
                endpoint,
                secret: Some(secret),
            })
        })
        .await
}

/// One page of the endpoints the caller reaches, newest first, and the total.
pub async fn list_endpoints(
    state: &AppState,
    ctx: &Ctx,
    project: Option<ProductId>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Endpoint>, u64), Error> {
    if project.as_ref().is_some_and(|p| p.len() > 64) {
        return Err(Error::Invalid(
            "projectId must be at most 64 characters".into(),
        ));
    }
    let product = match (ctx.products.filter(), project) {
        (Some(own), Some(asked)) if own != asked.as_str() => return Ok((Vec::new(), 0)),
        (Some(own), _) => Some(own.to_owned()),
        (None, asked) => asked.map(|p| p.0),
    };
    let tenants = ctx.tenants.filter().map(str::to_owned);
    state
        .db
        .read_blocking(move |c| {
            repo::list_endpoints(c, tenants.as_deref(), product.as_deref(), limit, offset)
        })
        .await
}

pub fn get_endpoint(state: &AppState, ctx: &Ctx, id: &str) -> Result<Endpoint, Error> {
    state.db.read(|c| reachable(c, ctx, id))
}

/// Changes an endpoint. Enabling it clears the server's "disabled for failing" flag and lets
/// its pending deliveries go out again; `rotate_secret` generates a new secret (shown once).
/// Audited.
pub async fn update_endpoint(
    state: &AppState,
    ctx: &Ctx,
    id: String,
    changes: EndpointChanges,
) -> Result<EndpointWithSecret, Error> {
    let url = changes
        .url
        .as_deref()
        .map(|u| check_endpoint_url(u, state.config.webhook_allow_private))
        .transpose()?;
    let description = changes.description.map(check_description).transpose()?;
    let event_types = changes
        .event_types
        .as_deref()
        .map(webhooks::parse_event_types)
        .transpose()?;
    let ctx = ctx.clone();
    let master = state.master.clone();
    let enabled = changes.enabled;
    let rotate = changes.rotate_secret;
    let answer = state
        .db
        .write(move |c| {
            let mut e = reachable(c, &ctx, &id)?;
            let mut changed = serde_json::Map::new();
            if let Some(url) = url {
                changed.insert("url".into(), json!(url));
                e.url = url;
            }
            if let Some(d) = description {
                changed.insert("description".into(), json!(d.is_some()));
                e.description = d;
            }
            if let Some(types) = event_types {
                changed.insert("eventTypes".into(), json!(types));
                e.event_types = types;
            }
            if let Some(on) = enabled {
                changed.insert("enabled".into(), json!(on));
                if on {
                    e.failing_since = None;
                    e.disabled_at = None;
                    e.disabled_reason = None;
                }
                e.enabled = on;
            }
            e.updated_at = now_ms();
            repo::update_endpoint(c, &e)?;
            let mut secret = None;
            if rotate {
                let s = webhooks::new_secret();
                repo::set_endpoint_secret(c, &e.id, &master.seal(s.as_bytes())?, e.updated_at)?;
                secret = Some(s);
                changed.insert("secretRotated".into(), json!(true));
            }
            changed.insert("endpointId".into(), json!(e.id));
            audit::repo::insert(
                c,
                &endpoint_event(&ctx, &e, AuditAction::WebhookEndpointUpdate)
                    .detail(serde_json::Value::Object(changed)),
            )?;
            Ok(EndpointWithSecret {
                endpoint: e,
                secret,
            })
        })
        .await?;
    state.webhooks.wake();
    Ok(answer)
}

/// Deletes an endpoint and its deliveries. Audited.
pub async fn delete_endpoint(state: &AppState, ctx: &Ctx, id: String) -> Result<(), Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let e = reachable(c, &ctx, &id)?;
            repo::delete_endpoint(c, &e.id)?;
            audit::repo::insert(
                c,
                &endpoint_event(&ctx, &e, AuditAction::WebhookEndpointDelete)
                    .detail(json!({"endpointId": e.id, "url": e.url})),
            )
        })
        .await
}

/// One page of an endpoint's deliveries, newest first, and the total.
pub async fn list_deliveries(
    state: &AppState,
    ctx: &Ctx,
    endpoint_id: String,
    status: Option<DeliveryStatus>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Delivery>, u64), Error> {
    let ctx = ctx.clone();
    state
        .db
        .read_blocking(move |c| {
            let e = reachable(c, &ctx, &endpoint_id)?;
            repo::list_deliveries(c, &e.id, status, limit, offset)
        })
        .await
}

fn delivery_of(c: &Connection, ctx: &Ctx, id: &str) -> Result<Delivery, Error> {
    let d =
        repo::find_delivery_in(c, ctx.tenants.filter(), id)?.ok_or(Error::NotFound("delivery"))?;
    let endpoint = d.endpoint_id.as_deref().unwrap_or_default();
    reachable(c, ctx, endpoint).map_err(|_| Error::NotFound("delivery"))?;
    Ok(d)
}

/// Sends a delivery's event again to its endpoint, as a new delivery (same `webhook-id`, so
/// the receiver can tell it is the same event). Audited.
pub async fn redeliver(state: &AppState, ctx: &Ctx, id: String) -> Result<Delivery, Error> {
    let ctx = ctx.clone();
    let d = state
        .db
        .write(move |c| {
            let old = delivery_of(c, &ctx, &id)?;
            let endpoint_id = old.endpoint_id.clone().unwrap_or_default();
            let e = reachable(c, &ctx, &endpoint_id)?;
            if !e.enabled {
                return Err(Error::Conflict(
                    "the endpoint is disabled; enable it first (PATCH enabled: true)".into(),
                ));
            }
            let new_id = crate::crypto::new_id("dlv");
            repo::insert_delivery(c, &new_id, &old.event_id, Some(&e.id), None, None, now_ms())?;
            audit::repo::insert(
                c,
                &endpoint_event(&ctx, &e, AuditAction::WebhookRedeliver).detail(json!({
                    "endpointId": e.id, "deliveryId": new_id, "of": old.id,
                    "eventId": old.event_id,
                })),
            )?;
            delivery_of(c, &ctx, &new_id)
        })
        .await?;
    state.webhooks.wake();
    Ok(d)
}

/// Queues a `webhook.test` event to one endpoint. Audited.
pub async fn send_test(
    state: &AppState,
    ctx: &Ctx,
    endpoint_id: String,
) -> Result<Delivery, Error> {
    let ctx = ctx.clone();
    let d = state
        .db
        .write(move |c| {
            let e = reachable(c, &ctx, &endpoint_id)?;
            if !e.enabled {
                return Err(Error::Conflict(
                    "the endpoint is disabled; enable it first (PATCH enabled: true)".into(),
                ));
            }
            let id = super::events::emit_test(c, &e)?;
            audit::repo::insert(
                c,
                &endpoint_event(&ctx, &e, AuditAction::WebhookTest)
                    .detail(json!({"endpointId": e.id, "deliveryId": id})),
            )?;
            delivery_of(c, &ctx, &id)
        })
        .await?;
    state.webhooks.wake();
    Ok(d)
}

/// What one attempt of a delivery came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub response: Option<String>,
    /// None: delivered (a 2xx answer).
    pub error: Option<String>,
}

/// Records an attempt of `due` (the delivery worker's only write): delivered, retried at
/// `next`, or given up. An endpoint failing for longer than `disable_after` is disabled and
/// flagged (audited); a success ends its run of failures.
pub async fn record_outcome(
    state: &AppState,
    due: repo::Due,
    outcome: Outcome,
    next: Option<i64>,
) -> Result<(), Error> {
    let disable_after =
        i64::try_from(state.config.webhook_disable_after.as_millis()).unwrap_or(i64::MAX);
    state
        .db
        .write(move |c| {
            let now = now_ms();
            let delivered = outcome.error.is_none();
            repo::record_attempt(
                c,
                &due.id,
                &repo::Attempt {
                    status_code: outcome.status_code,
                    response: outcome.response.as_deref(),
                    error: outcome.error.as_deref(),
                    delivered,
                    next: if delivered { None } else { next },
                    at: now,
                },
            )?;
            let Some(endpoint_id) = &due.endpoint_id else {
                return Ok(());
            };
            let Some(mut e) = repo::find_endpoint_in(c, None, endpoint_id)? else {
                return Ok(());
            };
            if delivered {
                if e.failing_since.is_some() {
                    e.failing_since = None;
                    repo::update_endpoint(c, &e)?;
                }
                return Ok(());
            }
            let since = *e.failing_since.get_or_insert(now);
            if e.enabled && now - since >= disable_after {
                let why = outcome.error.as_deref().unwrap_or("failed");
                e.enabled = false;
                e.disabled_at = Some(now);
                e.disabled_reason = Some(format!(
                    "deliveries failed for {} s in a row (last: {why})",
                    (now - since) / 1000
                ));
                e.updated_at = now;
                let mut event =
                    AuditEvent::new(&e.tenant_id, "system", AuditAction::WebhookEndpointDisable)
                        .detail(json!({"endpointId": e.id, "url": e.url,
                                       "failingSince": since, "reason": e.disabled_reason}));
                event.product_id = e.product_id.clone();
                audit::repo::insert(c, &event)?;
                tracing::warn!("webhook endpoint {} disabled: {why}", e.id);
            }
            repo::update_endpoint(c, &e)
        })
        .await
}
