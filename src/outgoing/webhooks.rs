//! The delivery worker: sends due webhook deliveries (event endpoints and abuse policy URLs)
//! through the one [`HttpClient`], a few at a time, and records each outcome through
//! `service::webhooks::record_outcome`. Services wake it after committing an event; otherwise it
//! sleeps until the next delivery falls due.

use std::time::Duration;

use hyper::body::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use super::client::{HttpClient, Limits};
use crate::domain::now_ms;
use crate::domain::webhooks::{self, repo};
use crate::service::webhooks::{Outcome, record_outcome};
use crate::state::AppState;

/// Attempts of one delivery before it is given up: with the default 5 s base and the 6 h cap,
/// retries span about three days.
pub const MAX_ATTEMPTS: u32 = 24;
/// Longest wait between two attempts.
pub const MAX_BACKOFF_MS: i64 = 6 * 3_600_000;
/// Deliveries sent at once.
const BATCH: u32 = 16;

/// The handle services share (in `AppState`).
#[derive(Default)]
pub struct Webhooks {
    wake: Notify,
}

impl Webhooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Something was queued: look now rather than at the next due time.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the worker. The client's trust store is built on the worker's own task, so loading
/// the system roots never delays the server's start.
pub fn start(state: &AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(state.clone()))
}

async fn run(state: AppState) {
    let extra = state.config.extra_ca_file.clone();
    let allow_private = state.config.webhook_allow_private;
    let built = tokio::task::spawn_blocking(move || {
        HttpClient::new(extra.as_deref(), allow_private, Limits::default())
    })
    .await;
    let client = match built {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            tracing::error!("webhooks will not be delivered: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("webhooks will not be delivered: {e}");
            return;
        }
    };
    loop {
        let now = now_ms();
        let due = state
            .db
            .read_blocking(move |c| repo::due(c, now, BATCH))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot read webhook deliveries: {e}");
                Vec::new()
            });
        let sent = due.len();
        futures_util::future::join_all(due.into_iter().map(|d| attempt(&state, &client, d))).await;
        if sent as u32 == BATCH {
            continue;
        }
        let next = state.db.read(repo::next_due_at).ok().flatten();
        let wait_ms = next.map_or(60_000, |n| (n - now_ms()).clamp(0, 60_000));
        if wait_ms == 0 {
            continue;
        }
        tokio::select! {
            _ = state.webhooks.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
    }
}

async fn attempt(state: &AppState, client: &HttpClient, d: repo::Due) {
    let secret = d
        .secret_sealed
        .as_deref()
        .and_then(|s| state.master.open(s).ok())
        .map(|s| String::from_utf8_lossy(&s).into_owned());
    let abuse_policy_url = d.endpoint_id.is_none();
    let body = if abuse_policy_url {
        legacy_abuse_body(&d.body)
    } else {
        d.body.clone()
    };
    let timestamp = now_ms() / 1000;
    let mut headers = vec![
        ("webhook-id", d.event_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    if let Some(secret) = &secret {
        headers.push((
            "webhook-signature",
            webhooks::signature(secret, &d.event_id, timestamp, body.as_bytes()),
        ));
    }
    if abuse_policy_url {
        // Deprecated: the abuse webhook's own headers, kept for one version.
        headers.push(("x-keyward-event", d.event_type.clone()));
        headers.push(("x-keyward-delivery", d.id.clone()));
        if let Some(secret) = &secret {
            headers.push((
                "x-keyward-signature",
                crate::domain::abuse::webhook_signature(secret.as_bytes(), body.as_bytes()),
            ));
        }
    }
    let outcome = match client.post(&d.url, &headers, Bytes::from(body)).await {
        Ok(answer) => Outcome {
            status_code: Some(answer.status),
            response: webhooks::excerpt(&answer.body),
            error: (!answer.is_success()).then(|| format!("answered {}", answer.status)),
        },
        Err(why) => Outcome {
            status_code: None,
            response: None,
            error: Some(why),
        },
    };
    let attempts = d.attempts + 1;
    let next = (outcome.error.is_some() && attempts < MAX_ATTEMPTS).then(|| {
        let base = i64::try_from(state.config.webhook_retry_base.as_millis()).unwrap_or(5_000);
        now_ms() + webhooks::backoff_ms(base, attempts, MAX_BACKOFF_MS, rand::random::<f64>())
    });
    if let (Some(why), None) = (&outcome.error, next) {
        tracing::warn!(
            "webhook delivery {} given up after {attempts} attempts: {why}",
            d.id
        );
    }
    let id = d.id.clone();
    if let Err(e) = record_outcome(state, d, outcome, next).await {
        tracing::warn!("cannot record webhook delivery {id}: {e}");
    }
}

/// The body an abuse policy URL receives: the Standard Webhooks body, plus the deprecated
/// top-level `event` and `flag` of the abuse webhook's first version.
fn legacy_abuse_body(body: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let flag = value["data"]["flag"].clone();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("event".into(), Value::from("abuse.flag.created"));
        obj.insert("flag".into(), flag);
    }
    value.to_string()
}
