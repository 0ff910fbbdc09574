//! Receiving a provider's webhook: the endpoint named in the path, its signature over the raw
//! body, the event stored once per provider event id, and its effect on licenses through the
//! keys service, in one transaction. Every verified event is stored; one Keyward cannot act on
//! is flagged, never dropped. A redelivered event changes nothing and gets the first answer.

use std::net::IpAddr;

use rusqlite::Connection;
use serde_json::json;

use crate::domain::audit::AuditAction;
use crate::domain::licenses::{self, License, LicenseStatus, LicenseType, NewLicense, Plan};
use crate::domain::payments::events::{self, PaymentEvent, plausible_period_end};
use crate::domain::payments::{Effect, Endpoint, Outcome, Provider, StoredEvent, repo, signature};
use crate::domain::webhooks::EventType;
use crate::domain::{PaymentEndpointId, TenantId, audit, now_ms, products};
use crate::error::Error;
use crate::service::{Ctx, keys};
use crate::state::AppState;

/// What became of a received event.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: StoredEvent,
    /// True when the endpoint had received this event before: nothing changed now.
    pub replayed: bool,
}

/// Verifies and applies one webhook of `provider` to endpoint `id`. An unknown endpoint, one of
/// another provider, or a wrong signature each cost the address one unit of its failed-credential
/// allowance, as a wrong API key does.
pub async fn receive(
    state: &AppState,
    ip: Option<IpAddr>,
    provider: Provider,
    id: PaymentEndpointId,
    signature_header: Option<String>,
    body: Vec<u8>,
) -> Result<Received, Error> {
    let refuse = |e: Error| {
        if let Some(ip) = ip {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        Err(e)
    };
    let found = state.db.read(|c| repo::find_with_secret(c, &id))?;
    let Some((endpoint, sealed)) = found.filter(|(e, _)| e.provider == provider) else {
        return refuse(Error::NotFound("payment endpoint"));
    };
    let secret = state.master.open(&sealed)?;
    let now_secs = now_ms() / 1000;
    if let Err(e) = signature::verify(
        provider,
        &secret,
        signature_header.as_deref(),
        &body,
        now_secs,
    ) {
        return refuse(e);
    }
    let event = events::parse(provider, &body)?;
    let payload = String::from_utf8_lossy(&body).into_owned();
    let ctx = Ctx::payment_provider(
        PaymentEndpointId::from(endpoint.id.as_str()),
        TenantId::from(endpoint.tenant_id.as_str()),
        ip,
    );
    state
        .db
        .write(move |c| record(c, &ctx, &endpoint, &event, &payload))
        .await
        // Its payment.* and license.* deliveries go out now, not at the worker's next poll.
        .inspect(|_| state.webhooks.wake())
}

fn record(
    c: &Connection,
    ctx: &Ctx,
    endpoint: &Endpoint,
    event: &PaymentEvent,
    payload: &str,
) -> Result<Received, Error> {
    let mut stored = StoredEvent {
        endpoint_id: endpoint.id.clone(),
        event_id: event.id.clone(),
        tenant_id: endpoint.tenant_id.clone(),
        event_type: event.event_type.clone(),
        received_at: now_ms(),
        effect: event.effect,
        outcome: Outcome::Ignored,
        message: String::new(),
        customer_id: event.customer_id.clone(),
        customer_email: event.customer_email.clone(),
        refs: event.refs.clone(),
        period_end: event.period_end,
        license_ids: Vec::new(),
    };
    if !repo::insert_event(c, &stored, payload)? {
        let first = repo::find_event(c, &endpoint.id, &event.id)?
            .ok_or(Error::NotFound("payment event"))?;
        return Ok(Received {
            event: first,
            replayed: true,
        });
    }
    let (outcome, message, licenses) = settle(c, ctx, endpoint, event)?;
    if outcome.flagged() {
        audit::repo::insert(
            c,
            &ctx.event(&endpoint.tenant_id, AuditAction::PaymentEventFlagged)
                .detail(json!({
                    "provider": endpoint.provider.as_str(),
                    "endpointId": endpoint.id,
                    "eventId": event.id,
                    "eventType": event.event_type,
                    "outcome": outcome.as_str(),
                    "message": message,
                })),
        )?;
    }
    stored.outcome = outcome;
    stored.message = message;
    stored.license_ids = licenses.into_iter().map(|l| l.id).collect();
    Ok(Received {
        event: stored,
        replayed: false,
    })
}

/// Applies the event of a stored row and records on that row what became of it: its outcome,
/// the licenses it touched and, once applied, the side notifications. Receiving an event and
/// applying a flagged one again both come through here, so the two cannot drift apart.
fn settle(
    c: &Connection,
    ctx: &Ctx,
    endpoint: &Endpoint,
    event: &PaymentEvent,
) -> Result<Applied, Error> {
    // An effect a rule refuses (a revoked license cannot be renewed) is undone as a whole and
    // the event kept as FAILED; a storage failure fails the request, so the provider retries.
    c.execute_batch("SAVEPOINT payment_effect")?;
    let (outcome, message, licenses) = match apply(c, ctx, endpoint, event) {
        Ok(done) => {
            c.execute_batch("RELEASE payment_effect")?;
            done
        }
        Err(e @ Error::Storage(_)) => return Err(e),
        Err(e) => {
            c.execute_batch("ROLLBACK TO payment_effect; RELEASE payment_effect")?;
            (Outcome::Failed, e.to_string(), Vec::new())
        }
    };
    repo::set_outcome(c, &endpoint.id, &event.id, outcome, &message)?;
    for license in &licenses {
        repo::link_event(c, &endpoint.id, &event.id, &license.id)?;
    }
    if outcome == Outcome::Applied {
        notify(
            c,
            &AppliedEffect {
                endpoint,
                event,
                licenses: &licenses,
            },
        )?;
    }
    Ok((outcome, message, licenses))
}

/// Applies a flagged event of `endpoint` again, read anew from the body it arrived with, so
/// that the mappings made since count; inside the caller's write transaction. Only a flagged
/// event may be: an APPLIED one has had its effect, and an IGNORED one has none.
pub(super) fn apply_again(
    c: &Connection,
    ctx: &Ctx,
    endpoint: &Endpoint,
    event_id: &str,
) -> Result<StoredEvent, Error> {
    let before =
        repo::find_event(c, &endpoint.id, event_id)?.ok_or(Error::NotFound("payment event"))?;
    if !before.outcome.flagged() {
        return Err(Error::Conflict(format!(
            "payment event {} is {} already: only a flagged event (UNMAPPED, \
             LICENSE_NOT_FOUND, FAILED) can be applied again",
            before.event_id,
            before.outcome.as_str()
        )));
    }
    let payload = repo::event_payload(c, &endpoint.id, &before.event_id)?
        .ok_or(Error::NotFound("payment event"))?;
    // It was read when it arrived; a body that no longer reads is Keyward's change, not the
    // caller's mistake.
    let mut event = events::parse(endpoint.provider, payload.as_bytes()).map_err(|e| {
        Error::Conflict(format!(
            "payment event {} cannot be read again: {e}",
            before.event_id
        ))
    })?;
    // The row is what is applied, whatever id a reading of today derives from its body.
    event.id = before.event_id.clone();
    let (outcome, message, _) = settle(c, ctx, endpoint, &event)?;
    audit::repo::insert(
        c,
        &ctx.event(&endpoint.tenant_id, AuditAction::PaymentEventApply)
            .detail(json!({
                "provider": endpoint.provider.as_str(),
                "endpointId": endpoint.id,
                "eventId": event.id,
                "eventType": event.event_type,
                "previousOutcome": before.outcome.as_str(),
                "outcome": outcome.as_str(),
                "message": message,
            })),
    )?;
    repo::find_event(c, &endpoint.id, &event.id)?.ok_or(Error::NotFound("payment event"))
}

/// An effect that changed licenses, as the side notifications see it.
pub struct AppliedEffect<'a> {
    pub endpoint: &'a Endpoint,
    pub event: &'a PaymentEvent,
    /// The licenses as they are after the effect.
    pub licenses: &'a [License],
}

/// Every side notification of a payment effect, inside the effect's transaction, so an outbox
/// row commits with the change it announces, or not at all: the `payment.<effect>` webhook
/// event and, for a purchase, the license-delivered e-mail to each customer with an address.
fn notify(c: &Connection, applied: &AppliedEffect<'_>) -> Result<(), Error> {
    let endpoint = applied.endpoint;
    let event = applied.event;
    // The effects' names (PURCHASE, DISPUTE_OPENED…) are valid payment event names as they are.
    let event_type = EventType::Payment(event.effect.as_str().to_ascii_lowercase());
    let product = applied.licenses.first().map(|l| l.product_id.as_str());
    let licenses: Vec<_> = applied
        .licenses
        .iter()
        .map(crate::service::events::license_data)
        .collect();
    crate::service::events::emit(
        c,
        &endpoint.tenant_id,
        product,
        event_type,
        json!({
            "provider": endpoint.provider.as_str(),
            "endpointId": endpoint.id,
            "eventId": event.id,
            "eventType": event.event_type,
            "licenses": licenses,
        }),
    )?;
    if event.effect == Effect::Purchase {
        for license in applied.licenses {
            if license.customer_email.is_none() {
                continue;
            }
            // An address the mailer cannot write to must not undo the purchase: the license
            // stands, and the operator can correct the address and e-mail it from its page.
            match crate::service::mail::queue_license_delivered(c, &license.tenant_id, &license.id)
            {
                Err(Error::Invalid(why)) => {
                    tracing::warn!("license {} not e-mailed: {why}", license.id)
                }
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

type Applied = (Outcome, String, Vec<License>);

fn apply(
    c: &Connection,
    ctx: &Ctx,
    endpoint: &Endpoint,
    event: &PaymentEvent,
) -> Result<Applied, Error> {
    let detail = json!({"payment": {
        "provider": endpoint.provider.as_str(),
        "endpointId": endpoint.id,
        "eventId": event.id,
        "eventType": event.event_type,
    }});
    let now = now_ms();
    if event.effect == Effect::None {
        let reason = event
            .ignore_reason
            .clone()
            .unwrap_or_else(|| format!("Keyward does not act on {} events", event.event_type));
        return Ok((Outcome::Ignored, reason, Vec::new()));
    }
    if event.effect == Effect::Purchase {
        return purchase(c, ctx, endpoint, event, detail);
    }
    let found = payment_licenses(c, endpoint, event)?;
    if found.is_empty() {
        return Ok((
            Outcome::LicenseNotFound,
            format!(
                "no license of this endpoint belongs to this payment ({})",
                if event.refs.is_empty() {
                    "the event names no payment id".to_owned()
                } else {
                    event.refs.join(", ")
                }
            ),
            Vec::new(),
        ));
    }
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for license in &found {
        let after = match event.effect {
            Effect::Renewal => {
                let Some(end) = event.period_end.filter(|e| plausible_period_end(*e, now)) else {
                    return Ok((
                        Outcome::Ignored,
                        "the event names no period end; the license keeps its expiry".into(),
                        Vec::new(),
                    ));
                };
                if end <= now || license.valid_until.is_some_and(|u| u >= end) {
                    None
                } else {
                    Some(keys::renew_in(c, ctx, license, end, detail.clone())?)
                }
            }
            Effect::Cancellation => {
                let end = event
                    .period_end
                    .filter(|e| plausible_period_end(*e, now))
                    .unwrap_or(now);
                if license.valid_until == Some(end) {
                    None
                } else {
                    Some(keys::expire_at_in(c, ctx, license, end, detail.clone())?)
                }
            }
            Effect::Refund | Effect::DisputeLost => {
                if license.status == LicenseStatus::Revoked {
                    None
                } else {
                    let reason = format!(
                        "{} ({} {})",
                        if event.effect == Effect::Refund {
                            "refunded"
                        } else {
                            "dispute lost"
                        },
                        endpoint.provider.path_segment(),
                        event.id
                    );
                    Some(keys::revoke_in(
                        c,
                        ctx,
                        license,
                        Some(&reason),
                        Some(detail.clone()),
                    )?)
                }
            }
            Effect::DisputeOpened => {
                status_change(c, ctx, license, LicenseStatus::Suspended, &detail)?
            }
            Effect::DisputeWon if license.status == LicenseStatus::Suspended => {
                status_change(c, ctx, license, LicenseStatus::Active, &detail)?
            }
            Effect::DisputeWon | Effect::Purchase | Effect::None => None,
        };
        match after {
            Some(l) => changed.push(l),
            None => unchanged += 1,
        }
    }
    let message = match (changed.len(), unchanged) {
        (0, _) => format!("{} license(s) already as the event asks", unchanged),
        (n, 0) => format!("{n} license(s) changed"),
        (n, u) => format!("{n} license(s) changed, {u} already as the event asks"),
    };
    // The timeline shows the event on every license of the payment, changed or not.
    let mut all = changed;
    for license in found {
        if !all.iter().any(|l| l.id == license.id) {
            all.push(license);
        }
    }
    Ok((Outcome::Applied, message, all))
}

fn status_change(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    status: LicenseStatus,
    detail: &serde_json::Value,
) -> Result<Option<License>, Error> {
    if !keys::set_status_in(c, ctx, license, status, detail.clone())? {
        return Ok(None);
    }
    licenses::repo::find(c, &license.tenant_id, &license.id)
}

/// The licenses the event's payment ids name; the ids it brings are linked to them too (a
/// renewal's invoice and charge, so that a refund of that charge finds them).
fn payment_licenses(
    c: &Connection,
    endpoint: &Endpoint,
    event: &PaymentEvent,
) -> Result<Vec<License>, Error> {
    let ids = repo::licenses_by_refs(c, &endpoint.id, &event.refs)?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(l) = licenses::repo::find(c, &endpoint.tenant_id, &id)? {
            for r in &event.refs {
                repo::add_ref(c, &endpoint.id, r, &l.id)?;
            }
            found.push(l);
        }
    }
    Ok(found)
}

fn purchase(
    c: &Connection,
    ctx: &Ctx,
    endpoint: &Endpoint,
    event: &PaymentEvent,
    detail: serde_json::Value,
) -> Result<Applied, Error> {
    let existing = payment_licenses(c, endpoint, event)?;
    if !existing.is_empty() {
        return Ok((
            Outcome::Ignored,
            "the licenses of this payment exist already (another event of it made them)".into(),
            existing,
        ));
    }
    let now = now_ms();
    // Stripe sends a subscription's first invoice.paid and its checkout.session.completed at
    // once, in either order: a renewal that came first waits, flagged, and is applied here.
    let early = repo::early_renewals(c, &endpoint.id, &event.refs)?;
    let early_end = early.iter().filter_map(|(_, _, end)| *end).max();
    let mut made: Vec<License> = Vec::new();
    let mut unmapped = Vec::new();
    for item in &event.items {
        let mut mapping = None;
        for r in &item.refs {
            if let Some(m) = repo::find_mapping(c, &endpoint.id, r)? {
                mapping = Some(m);
                break;
            }
        }
        let Some(m) = mapping else {
            unmapped.push(if item.refs.is_empty() {
                "a line without a price id".to_owned()
            } else {
                item.refs.join(" / ")
            });
            continue;
        };
        let product = products::repo::find(c, &endpoint.tenant_id, &m.product_id)?
            .ok_or(Error::NotFound("project"))?;
        let valid_until = event
            .period_end
            .or(early_end)
            .filter(|e| *e > now && plausible_period_end(*e, now));
        // A period the provider names wins; without one a plan's clock starts at the first
        // activation, as keys generated in the panel do.
        let (plan, plan_days) = match (m.plan, valid_until) {
            (Some(p), None) => (Some(p), licenses::plan_days(p, None)),
            _ => (None, None),
        };
        let license_type = match (m.license_type, m.plan) {
            (Some(t), _) => t,
            (None, Some(Plan::Lifetime)) => LicenseType::Perpetual,
            (None, Some(_)) => LicenseType::Subscription,
            (None, None) => product.default_license_type,
        };
        let new = NewLicense {
            license_type,
            tier: m.tier,
            max_activations: m.max_activations.unwrap_or(product.default_max_activations),
            max_sessions: None,
            valid_until,
            plan,
            plan_days,
            customer_email: event.customer_email.clone(),
            customer_name: event
                .customer_name
                .as_deref()
                .map(|n| n.chars().take(200).collect()),
            order_id: event.order_id.clone(),
            metadata: None,
            note: None,
            entitlements: m.entitlements.clone(),
        };
        // Each line's quantity is already bounded (`QUANTITY_MAX`); an order of several
        // lines gets every line's licenses.
        for _ in 0..item.quantity {
            made.push(keys::issue_in(c, ctx, &product, &new, detail.clone())?);
        }
    }
    if made.is_empty() {
        return Ok((
            Outcome::Unmapped,
            format!(
                "no mapping of this endpoint names what was bought: {}",
                if unmapped.is_empty() {
                    "the event names no line".to_owned()
                } else {
                    unmapped.join(", ")
                }
            ),
            Vec::new(),
        ));
    }
    for license in &made {
        for r in &event.refs {
            repo::add_ref(c, &endpoint.id, r, &license.id)?;
        }
    }
    for (early_id, early_refs, _) in &early {
        repo::set_outcome(
            c,
            &endpoint.id,
            early_id,
            Outcome::Applied,
            &format!("applied when its purchase arrived ({})", event.id),
        )?;
        for license in &made {
            repo::link_event(c, &endpoint.id, early_id, &license.id)?;
            for r in early_refs {
                repo::add_ref(c, &endpoint.id, r, &license.id)?;
            }
        }
    }
    let mut message = format!("{} license(s) created", made.len());
    if !unmapped.is_empty() {
        message.push_str(&format!("; not mapped: {}", unmapped.join(", ")));
    }
    Ok((Outcome::Applied, message, made))
}
