//! Reading a provider's event: its id, its type, and what it means for licenses ([`Effect`]),
//! in one shape for every provider. Only the fields used are read, so a provider adding fields
//! (or changing API versions, within reason) changes nothing.
//!
//! Refs are the payment's ids, prefixed by their kind (`order:`, `subscription:`,
//! `payment:`, `invoice:`, `charge:`, `transaction:`): a purchase links them to the licenses it
//! creates, and a later event finds its licenses by any of its own.

use serde_json::Value;

use super::{Effect, Provider};
use crate::domain::DAY_MS;
use crate::error::{Error, Result};

/// One bought line: the ids a mapping may name (most specific first) and its quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub refs: Vec<String>,
    pub quantity: u32,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentEvent {
    pub id: String,
    pub event_type: String,
    pub effect: Effect,
    pub items: Vec<Item>,
    pub refs: Vec<String>,
    pub customer_id: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    /// The order id the licenses carry (`orderId`).
    pub order_id: Option<String>,
    /// The end of the paid period, or when a cancelled subscription ends (ms).
    pub period_end: Option<i64>,
    /// Why an event that looks actionable is not (a partial refund…).
    pub ignore_reason: Option<String>,
}

/// Reads `body` as `provider`'s event. Malformed JSON, or an event without its id or type, is
/// `Invalid`.
pub fn parse(provider: Provider, body: &[u8]) -> Result<PaymentEvent> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("the body is not a JSON event: {e}")))?;
    if !v.is_object() {
        return Err(Error::Invalid("the body must be a JSON object".into()));
    }
    let mut event = match provider {
        Provider::Stripe => stripe(&v)?,
        Provider::Paddle => paddle(&v)?,
        Provider::LemonSqueezy => lemon_squeezy(&v, body)?,
    };
    event.refs.sort();
    event.refs.dedup();
    if event.id.is_empty() || event.id.len() > 200 {
        return Err(Error::Invalid(
            "the event id must be 1-200 characters".into(),
        ));
    }
    if event.event_type.is_empty() || event.event_type.len() > 100 {
        return Err(Error::Invalid(
            "the event type must be 1-100 characters".into(),
        ));
    }
    if let Some(email) = &event.customer_email
        && crate::domain::licenses::validate_email(email).is_err()
    {
        event.customer_email = None;
    }
    Ok(event)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(v: &Value, what: &str) -> Result<String> {
    text(v).ok_or_else(|| Error::Invalid(format!("the event has no {what}")))
}

fn secs_to_ms(v: &Value) -> Option<i64> {
    v.as_i64().map(|s| s.saturating_mul(1000))
}

/// An RFC 3339 time (Paddle, Lemon Squeezy) in ms.
fn time_ms(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(crate::domain::datetime_to_ms)
}

fn push_ref(refs: &mut Vec<String>, kind: &str, v: &Value) {
    // Stripe sends expanded objects in some API versions: their id names them.
    let id = text(v).or_else(|| text(&v["id"]));
    if let Some(id) = id {
        refs.push(format!("{kind}:{id}"));
    }
}

fn quantity(v: &Value) -> u32 {
    v.as_u64()
        .map_or(1, |q| q.clamp(1, super::QUANTITY_MAX as u64) as u32)
}

// ---- Stripe -------------------------------------------------------------------------------

fn stripe(v: &Value) -> Result<PaymentEvent> {
    let mut e = PaymentEvent {
        id: required(&v["id"], "id")?,
        event_type: required(&v["type"], "type")?,
        ..Default::default()
    };
    let o = &v["data"]["object"];
    if !o.is_object() {
        return Err(Error::Invalid("the event has no data.object".into()));
    }
    e.customer_id = text(&o["customer"]).or_else(|| text(&o["customer"]["id"]));
    match e.event_type.as_str() {
        "checkout.session.completed" => {
            e.effect = Effect::Purchase;
            if o["payment_status"].as_str() == Some("unpaid") {
                e.effect = Effect::None;
                e.ignore_reason = Some("the session is not paid yet (asynchronous payment)".into());
            }
            push_ref(&mut e.refs, "order", &o["id"]);
            push_ref(&mut e.refs, "payment", &o["payment_intent"]);
            push_ref(&mut e.refs, "subscription", &o["subscription"]);
            push_ref(&mut e.refs, "invoice", &o["invoice"]);
            e.order_id = text(&o["id"]);
            e.customer_email = text(&o["customer_details"]["email"]).or(text(&o["customer_email"]));
            e.customer_name = text(&o["customer_details"]["name"]);
            // Stripe leaves line items out of this event; a session (or payment link) made
            // with `metadata.keyward_price` names its price, and an expanded `line_items`
            // (forwarded events) is read as well.
            if let Some(lines) = o["line_items"]["data"].as_array() {
                for line in lines {
                    let mut refs = Vec::new();
                    refs.extend(text(&line["price"]["id"]));
                    refs.extend(text(&line["price"]["product"]));
                    e.items.push(Item {
                        refs,
                        quantity: quantity(&line["quantity"]),
                    });
                }
            }
            if e.items.is_empty() {
                let mut refs = Vec::new();
                refs.extend(text(&o["metadata"]["keyward_price"]));
                refs.extend(text(&o["payment_link"]));
                let q = o["metadata"]["keyward_quantity"]
                    .as_str()
                    .and_then(|q| q.parse::<u64>().ok())
                    .map(Value::from)
                    .unwrap_or(Value::Null);
                e.items.push(Item {
                    refs,
                    quantity: quantity(&q),
                });
            }
        }
        "invoice.paid" | "invoice.payment_succeeded" => {
            e.effect = Effect::Renewal;
            push_ref(&mut e.refs, "invoice", &o["id"]);
            push_ref(&mut e.refs, "payment", &o["payment_intent"]);
            push_ref(&mut e.refs, "charge", &o["charge"]);
            push_ref(&mut e.refs, "subscription", &o["subscription"]);
            // Newer API versions moved the subscription under `parent`.
            push_ref(
                &mut e.refs,
                "subscription",
                &o["parent"]["subscription_details"]["subscription"],
            );
            e.customer_email = text(&o["customer_email"]);
            e.period_end = o["lines"]["data"].as_array().and_then(|lines| {
                lines
                    .iter()
                    .filter_map(|l| secs_to_ms(&l["period"]["end"]))
                    .max()
            });
            if !e.refs.iter().any(|r| r.starts_with("subscription:")) {
                e.effect = Effect::None;
                e.ignore_reason = Some("the invoice belongs to no subscription".into());
            }
        }
        "customer.subscription.updated" => {
            push_ref(&mut e.refs, "subscription", &o["id"]);
            let period_end = secs_to_ms(&o["current_period_end"]).or_else(|| {
                o["items"]["data"].as_array().and_then(|i| {
                    i.iter()
                        .filter_map(|i| secs_to_ms(&i["current_period_end"]))
                        .max()
                })
            });
            if o["cancel_at_period_end"].as_bool() == Some(true) || o["cancel_at"].is_number() {
                e.effect = Effect::Cancellation;
                e.period_end = secs_to_ms(&o["cancel_at"]).or(period_end);
            } else {
                e.ignore_reason =
                    Some("renewals are applied from invoice.paid; nothing is cancelled".into());
            }
        }
        "customer.subscription.deleted" => {
            e.effect = Effect::Cancellation;
            push_ref(&mut e.refs, "subscription", &o["id"]);
            e.period_end = secs_to_ms(&o["ended_at"])
                .or_else(|| secs_to_ms(&o["canceled_at"]))
                .or_else(|| secs_to_ms(&v["created"]));
        }
        "charge.refunded" => {
            e.effect = Effect::Refund;
            push_ref(&mut e.refs, "charge", &o["id"]);
            push_ref(&mut e.refs, "payment", &o["payment_intent"]);
            push_ref(&mut e.refs, "invoice", &o["invoice"]);
            if o["refunded"].as_bool() != Some(true) {
                e.effect = Effect::None;
                e.ignore_reason = Some("a partial refund keeps the license".into());
            }
        }
        "charge.dispute.created" | "charge.dispute.closed" => {
            push_ref(&mut e.refs, "charge", &o["charge"]);
            push_ref(&mut e.refs, "payment", &o["payment_intent"]);
            e.effect = match (e.event_type.as_str(), o["status"].as_str()) {
                ("charge.dispute.created", _) => Effect::DisputeOpened,
                (_, Some("won")) => Effect::DisputeWon,
                (_, Some("lost")) => Effect::DisputeLost,
                _ => {
                    e.ignore_reason = Some("the dispute closed neither won nor lost".into());
                    Effect::None
                }
            };
        }
        _ => {}
    }
    Ok(e)
}

// ---- Paddle Billing -------------------------------------------------------------------------

fn paddle(v: &Value) -> Result<PaymentEvent> {
    let mut e = PaymentEvent {
        id: required(&v["event_id"], "event_id")?,
        event_type: required(&v["event_type"], "event_type")?,
        ..Default::default()
    };
    let d = &v["data"];
    if !d.is_object() {
        return Err(Error::Invalid("the event has no data".into()));
    }
    e.customer_id = text(&d["customer_id"]);
    // Paddle's events name the customer by id only; a checkout that passes
    // `customData.email` (or an event with the customer included) gives the address.
    e.customer_email = text(&d["custom_data"]["email"]).or(text(&d["customer"]["email"]));
    e.customer_name = text(&d["customer"]["name"]);
    match e.event_type.as_str() {
        "transaction.completed" => {
            push_ref(&mut e.refs, "transaction", &d["id"]);
            push_ref(&mut e.refs, "subscription", &d["subscription_id"]);
            e.order_id = text(&d["id"]);
            e.period_end = time_ms(&d["billing_period"]["ends_at"]);
            if d["origin"].as_str() == Some("subscription_recurring") {
                e.effect = Effect::Renewal;
            } else {
                e.effect = Effect::Purchase;
                for item in d["items"].as_array().into_iter().flatten() {
                    let mut refs = Vec::new();
                    refs.extend(text(&item["price"]["id"]).or(text(&item["price_id"])));
                    refs.extend(text(&item["price"]["product_id"]));
                    e.items.push(Item {
                        refs,
                        quantity: quantity(&item["quantity"]),
                    });
                }
            }
        }
        "subscription.updated" | "subscription.activated" | "subscription.resumed" => {
            push_ref(&mut e.refs, "subscription", &d["id"]);
            if d["scheduled_change"]["action"].as_str() == Some("cancel") {
                e.effect = Effect::Cancellation;
                e.period_end = time_ms(&d["scheduled_change"]["effective_at"]);
            } else if d["status"].as_str() == Some("active") {
                e.effect = Effect::Renewal;
                e.period_end = time_ms(&d["current_billing_period"]["ends_at"]);
            }
        }
        "subscription.canceled" => {
            e.effect = Effect::Cancellation;
            push_ref(&mut e.refs, "subscription", &d["id"]);
            e.period_end = time_ms(&d["canceled_at"])
                .or_else(|| time_ms(&d["current_billing_period"]["ends_at"]))
                .or_else(|| time_ms(&v["occurred_at"]));
        }
        "adjustment.created" | "adjustment.updated" => {
            push_ref(&mut e.refs, "transaction", &d["transaction_id"]);
            push_ref(&mut e.refs, "subscription", &d["subscription_id"]);
            let approved = d["status"].as_str() == Some("approved");
            e.effect = match d["action"].as_str() {
                Some("refund") if approved => Effect::Refund,
                Some("refund") => {
                    e.ignore_reason = Some("the refund is not approved (yet)".into());
                    Effect::None
                }
                Some("chargeback" | "chargeback_warning") => Effect::DisputeOpened,
                Some("chargeback_reverse") => Effect::DisputeWon,
                _ => Effect::None,
            };
        }
        _ => {}
    }
    Ok(e)
}

// ---- Lemon Squeezy --------------------------------------------------------------------------

fn lemon_squeezy(v: &Value, body: &[u8]) -> Result<PaymentEvent> {
    let event_type = required(&v["meta"]["event_name"], "meta.event_name")?;
    let d = &v["data"];
    let a = &d["attributes"];
    if !a.is_object() {
        return Err(Error::Invalid("the event has no data.attributes".into()));
    }
    // Lemon Squeezy gives an event no id of its own; a redelivery resends the same bytes, so
    // their digest names the event.
    let digest = hex::encode(crate::crypto::sha256(body));
    let mut e = PaymentEvent {
        id: format!("{event_type}:{}", &digest[..32]),
        event_type,
        ..Default::default()
    };
    e.customer_id = text(&a["customer_id"]);
    e.customer_email = text(&a["user_email"]);
    e.customer_name = text(&a["user_name"]);
    let kind = d["type"].as_str().unwrap_or_default();
    match (e.event_type.as_str(), kind) {
        ("order_created", _) => {
            e.effect = Effect::Purchase;
            push_ref(&mut e.refs, "order", &d["id"]);
            e.order_id = text(&a["identifier"]).or(text(&d["id"]));
            let item = &a["first_order_item"];
            let mut refs = Vec::new();
            refs.extend(text(&item["variant_id"]));
            refs.extend(text(&item["product_id"]));
            e.items.push(Item {
                refs,
                quantity: quantity(&item["quantity"]),
            });
            if a["status"].as_str().is_some_and(|s| s != "paid") {
                e.effect = Effect::None;
                e.ignore_reason = Some("the order is not paid".into());
            }
        }
        ("order_refunded", _) => {
            e.effect = Effect::Refund;
            push_ref(&mut e.refs, "order", &d["id"]);
        }
        ("subscription_created" | "subscription_updated" | "subscription_resumed", _) => {
            push_ref(&mut e.refs, "subscription", &d["id"]);
            push_ref(&mut e.refs, "order", &a["order_id"]);
            if a["cancelled"].as_bool() == Some(true) {
                e.effect = Effect::Cancellation;
                e.period_end = time_ms(&a["ends_at"]).or_else(|| time_ms(&a["renews_at"]));
            } else {
                e.effect = Effect::Renewal;
                e.period_end = time_ms(&a["renews_at"]);
            }
        }
        ("subscription_payment_success", _) => {
            e.effect = Effect::Renewal;
            push_ref(&mut e.refs, "subscription", &a["subscription_id"]);
            // Its invoice names no period; the subscription_updated that follows it does.
            e.period_end = time_ms(&a["renews_at"]);
        }
        ("subscription_cancelled" | "subscription_expired", _) => {
            e.effect = Effect::Cancellation;
            push_ref(&mut e.refs, "subscription", &d["id"]);
            e.period_end = time_ms(&a["ends_at"])
                .or_else(|| time_ms(&a["renews_at"]))
                .or_else(|| time_ms(&a["updated_at"]));
        }
        ("subscription_payment_refunded", _) => {
            e.effect = Effect::Refund;
            push_ref(&mut e.refs, "subscription", &a["subscription_id"]);
        }
        _ => {}
    }
    Ok(e)
}

/// A period's end far beyond any billing cycle is a provider's bug or a forgery: refused.
pub fn plausible_period_end(ms: i64, now: i64) -> bool {
    ms > 0 && ms < now + 3700 * DAY_MS
}
