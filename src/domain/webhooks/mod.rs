//! Event webhooks, Standard Webhooks style (<https://www.standardwebhooks.com>): a tenant's
//! endpoints, each subscribed to some event types and optionally restricted to one product;
//! events emitted by the services inside their own transactions; deliveries retried with
//! backoff. A delivery carries `webhook-id` (the event's id, the same on every retry),
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(id.timestamp.body)>`
//! keyed with the endpoint's `whsec_<base64>` secret, so any Standard Webhooks library
//! verifies it.

pub mod repo;

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};

/// Most subscribed patterns an endpoint may have.
pub const MAX_EVENT_TYPES: usize = 32;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 500;
/// How long a delivery is kept once made or given up (the delivery log of the admin API).
pub const DELIVERIES_KEPT_MS: i64 = 30 * crate::domain::DAY_MS;
/// Characters of a receiver's answer kept with its delivery.
pub const RESPONSE_EXCERPT: usize = 500;

/// What happened: the known types, and `payment.<name>` for the payment integrations, which
/// name their own effects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    LicenseCreated,
    LicenseRenewed,
    LicenseRevoked,
    LicenseSuspended,
    LicenseReinstated,
    LicenseExpired,
    MachineActivated,
    MachineDeactivated,
    MachineCulled,
    ReleasePublished,
    ReleaseYanked,
    AbuseFlagCreated,
    /// Sent by hand to one endpoint to try it (`POST …/test`); no endpoint subscribes to it.
    Test,
    /// `payment.<name>`: `<name>` is lower-case letters, digits, `_` and `.`.
    Payment(String),
}

impl EventType {
    /// Every type with a fixed name, in the order the README's table lists them.
    pub const FIXED: &'static [EventType] = &[
        EventType::LicenseCreated,
        EventType::LicenseRenewed,
        EventType::LicenseRevoked,
        EventType::LicenseSuspended,
        EventType::LicenseReinstated,
        EventType::LicenseExpired,
        EventType::MachineActivated,
        EventType::MachineDeactivated,
        EventType::MachineCulled,
        EventType::ReleasePublished,
        EventType::ReleaseYanked,
        EventType::AbuseFlagCreated,
        EventType::Test,
    ];

    pub fn as_str(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            EventType::LicenseCreated => "license.created",
            EventType::LicenseRenewed => "license.renewed",
            EventType::LicenseRevoked => "license.revoked",
            EventType::LicenseSuspended => "license.suspended",
            EventType::LicenseReinstated => "license.reinstated",
            EventType::LicenseExpired => "license.expired",
            EventType::MachineActivated => "machine.activated",
            EventType::MachineDeactivated => "machine.deactivated",
            EventType::MachineCulled => "machine.culled",
            EventType::ReleasePublished => "release.published",
            EventType::ReleaseYanked => "release.yanked",
            EventType::AbuseFlagCreated => "abuse.flag.created",
            EventType::Test => "webhook.test",
            EventType::Payment(name) => return Cow::Owned(format!("payment.{name}")),
        })
    }

    pub fn parse(text: &str) -> Option<Self> {
        if let Some(name) = text.strip_prefix("payment.") {
            return valid_payment_name(name).then(|| EventType::Payment(name.to_owned()));
        }
        Self::FIXED.iter().find(|t| t.as_str() == text).cloned()
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

fn valid_payment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// The prefixes a wildcard pattern may name (`license.*` …).
const WILDCARD_PREFIXES: &[&str] = &[
    "license",
    "machine",
    "release",
    "abuse",
    "abuse.flag",
    "payment",
];

/// Checks and normalizes an endpoint's subscriptions: `*` (every event), an event type, or a
/// prefix wildcard such as `license.*`. An empty list means `*`. Duplicates are dropped.
pub fn parse_event_types(patterns: &[String]) -> Result<Vec<String>> {
    if patterns.len() > MAX_EVENT_TYPES {
        return Err(Error::Invalid(format!(
            "eventTypes may list at most {MAX_EVENT_TYPES} patterns"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for p in patterns {
        let p = p.trim();
        let ok = p == "*"
            || (p != "webhook.test" && EventType::parse(p).is_some())
            || p.strip_suffix(".*")
                .is_some_and(|prefix| WILDCARD_PREFIXES.contains(&prefix));
        if !ok {
            return Err(Error::Invalid(format!(
                "eventTypes: {:?} is not an event type or pattern; use \"*\", a prefix such as \
                 \"license.*\", or one of: {}, payment.<name>",
                p.chars().take(80).collect::<String>(),
                EventType::FIXED
                    .iter()
                    .filter(|t| **t != EventType::Test)
                    .map(|t| t.as_str().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !out.iter().any(|o| o == p) {
            out.push(p.to_owned());
        }
    }
    if out.is_empty() {
        out.push("*".into());
    }
    Ok(out)
}

/// True when an endpoint subscribed to `patterns` receives `event_type`.
pub fn subscribed(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == event_type
            || p.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
    })
}

crate::domain::text_enum! {
    /// Where a delivery stands.
    pub enum DeliveryStatus {
        /// Not delivered yet; attempted at `nextAttemptAt`.
        Pending => "PENDING",
        /// A 2xx answer came.
        Succeeded => "SUCCEEDED",
        /// Given up after the last attempt.
        Failed => "FAILED",
    }
}

/// A tenant's receiver of events.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub failing_since: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One event's journey to one receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_status_code: Option<u16>,
    pub last_response: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

/// A fresh endpoint secret: `whsec_` and 24 random bytes in base64, the Standard Webhooks form.
pub fn new_secret() -> String {
    format!("whsec_{}", B64.encode(crate::crypto::random_bytes::<24>()))
}

/// The HMAC key of a secret: the base64 after `whsec_`. A secret that is not base64 (none
/// this server makes) is used as its bytes.
pub fn secret_key(secret: &str) -> Vec<u8> {
    let body = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(body)
        .unwrap_or_else(|_| body.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    match Hmac::<sha2::Sha256>::new_from_slice(&secret_key(secret)) {
        Ok(mut mac) => {
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length: this arm cannot happen.
        Err(_) => String::new(),
    }
}

/// The wait before attempt `attempts + 1`: `base · 2^(attempts-1)`, at most `cap`, with ±20 %
/// jitter so that receivers coming back are not hit by every queued delivery at once.
pub fn backoff_ms(base_ms: i64, attempts: u32, cap_ms: i64, jitter: f64) -> i64 {
    let exp = base_ms.saturating_mul(1_i64 << attempts.saturating_sub(1).min(30));
    let delay = exp.min(cap_ms) as f64;
    (delay * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))).round() as i64
}

/// The first characters of an answer, as text, for the delivery log.
pub fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    Some(text.chars().take(RESPONSE_EXCERPT).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_parse_and_match() {
        assert_eq!(
            EventType::parse("license.created"),
            Some(EventType::LicenseCreated)
        );
        assert_eq!(
            EventType::parse("payment.refund.created"),
            Some(EventType::Payment("refund.created".into()))
        );
        assert_eq!(EventType::parse("payment."), None);
        assert_eq!(EventType::parse("payment.Bad"), None);
        assert_eq!(EventType::parse("license.nope"), None);
        let ok = parse_event_types(&[
            "license.*".into(),
            "machine.culled".into(),
            "license.*".into(),
        ]);
        assert_eq!(
            ok.ok(),
            Some(vec!["license.*".to_owned(), "machine.culled".to_owned()])
        );
        assert_eq!(parse_event_types(&[]).ok(), Some(vec!["*".to_owned()]));
        for bad in ["lic*", "nope.*", "license.nope", "webhook.test", ""] {
            assert!(parse_event_types(&[bad.into()]).is_err(), "{bad}");
        }
        let subs = vec!["license.*".to_owned(), "abuse.flag.created".to_owned()];
        assert!(subscribed(&subs, "license.revoked"));
        assert!(subscribed(&subs, "abuse.flag.created"));
        assert!(!subscribed(&subs, "machine.activated"));
        assert!(subscribed(&["*".to_owned()], "payment.refunded"));
        assert!(subscribed(&["payment.*".to_owned()], "payment.refunded"));
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_follow_standard_webhooks() {
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(new_secret().starts_with("whsec_"));
        assert_eq!(secret_key(&new_secret()).len(), 24);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        assert_eq!(backoff_ms(1000, 1, 60_000, 0.5), 1000);
        assert_eq!(backoff_ms(1000, 3, 60_000, 0.5), 4000);
        assert_eq!(backoff_ms(1000, 30, 60_000, 0.5), 60_000);
        assert_eq!(backoff_ms(1000, 1, 60_000, 0.0), 800);
        assert_eq!(backoff_ms(1000, 1, 60_000, 1.0), 1200);
    }
}
