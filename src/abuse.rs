//! Abuse detection at work: request handlers report what they saw through [`Abuse`] without
//! waiting (a bounded channel; `try_send`, so a full queue drops a report rather than slow a
//! validation), one task runs the in-memory [`Detector`] and persists its findings through the
//! writer, the IP block list is checked in memory by the API guard, and a second task
//! delivers the abuse webhooks with retries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::domain::abuse::detector::{Detector, Event, SeatLimit, Seen};
use crate::domain::abuse::{self, AbusePolicy, Finding, Flag, IpBlock, full_prefix, network_of};
use crate::domain::licenses::License;
use crate::domain::{ms_to_datetime, now_ms, tenants};
use crate::state::AppState;

/// Reports queued at most; beyond that, reports are dropped (and counted).
const QUEUE: usize = 65_536;
/// How long a product's policy is trusted before it is read again (changes made through the
/// admin API apply at once; see [`Abuse::policy_changed`]).
const POLICY_TTL: Duration = Duration::from_secs(5);
/// Webhook attempts before a delivery is given up.
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 8;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_MAX_BACKOFF_MS: i64 = 3_600_000;

/// Who a report concerns, as far as the handler knows without extra work.
#[derive(Debug, Clone)]
pub enum Scope {
    /// A product (and so its tenant and policy) is known.
    Product {
        tenant_id: String,
        product_id: String,
    },
    /// Only a product id (the key/HWID face's envelopes).
    ProductId(String),
    /// A tenant, and maybe a product (a vendor API key restricted to one).
    Tenant {
        tenant_id: String,
        product_id: Option<String>,
    },
    /// The SHA-256 of a `kv_` project secret the request carried; resolved off the request path.
    ClientSecret([u8; 32]),
    /// Nothing: the default tenant's and the default policy's.
    Unknown,
}

impl Scope {
    pub fn of_license(license: &License) -> Self {
        Scope::Product {
            tenant_id: license.tenant_id.clone(),
            product_id: license.product_id.clone(),
        }
    }
}

pub struct Report {
    at: i64,
    ip: Option<IpAddr>,
    scope: Scope,
    seen: Seen,
}

enum Msg {
    Report(Report),
    PolicyChanged(String),
    Sweep(i64),
}

/// The handle every request shares (in `AppState`).
pub struct Abuse {
    tx: mpsc::Sender<Msg>,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    enabled: AtomicBool,
    dropped: AtomicU64,
    pub blocks: BlockList,
    webhook_wake: Notify,
}

impl Abuse {
    pub fn new(enabled: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            enabled: AtomicBool::new(enabled),
            dropped: AtomicU64::new(0),
            blocks: BlockList::default(),
            webhook_wake: Notify::new(),
        }
    }

    /// Detection on or off for the whole server (`KEYWARD_ABUSE_DETECTION`; the benchmark
    /// flips it to compare). Blocks already in force stay in force either way.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Reports dropped because the detector fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a report; never waits.
    pub fn report(&self, ip: Option<IpAddr>, scope: Scope, seen: Seen) {
        if !self.enabled() {
            return;
        }
        let report = Report {
            at: now_ms(),
            ip,
            scope,
            seen,
        };
        if self.tx.try_send(Msg::Report(report)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A key that does not exist was presented.
    pub fn unknown_key(&self, ip: Option<IpAddr>, scope: Scope) {
        self.report(ip, scope, Seen::UnknownKey);
    }

    /// A license was presented for a machine (whatever the answer).
    pub fn license_used(
        &self,
        ip: Option<IpAddr>,
        license: &License,
        hwid: Option<&str>,
        machine_name: Option<&str>,
        session_id: Option<&str>,
    ) {
        if !self.enabled() {
            return;
        }
        self.report(
            ip,
            Scope::of_license(license),
            Seen::LicenseUsed {
                license_id: license.id.clone(),
                hwid: hwid.map(str::to_owned),
                machine_name: machine_name.map(str::to_owned),
                session_id: session_id.map(str::to_owned),
            },
        );
    }

    pub fn seat_refused(
        &self,
        ip: Option<IpAddr>,
        license: &License,
        hwid: Option<&str>,
        limit: SeatLimit,
    ) {
        if !self.enabled() {
            return;
        }
        self.report(
            ip,
            Scope::of_license(license),
            Seen::SeatRefused {
                license_id: license.id.clone(),
                hwid: hwid.map(str::to_owned),
                limit,
            },
        );
    }

    /// A 429 answered to `ip` (and, when known, for an API key of a tenant).
    pub fn rate_limited(&self, ip: Option<IpAddr>, api_key: Option<(&str, &str)>) {
        let (scope, api_key_id) = match api_key {
            Some((tenant_id, key_id)) => (
                Scope::Tenant {
                    tenant_id: tenant_id.to_owned(),
                    product_id: None,
                },
                Some(key_id.to_owned()),
            ),
            None => (Scope::Unknown, None),
        };
        self.report(ip, scope, Seen::RateLimited { api_key_id });
    }

    /// Forget the cached policy of a product (its policy was just changed).
    pub fn policy_changed(&self, product_id: &str) {
        let _ = self.tx.try_send(Msg::PolicyChanged(product_id.to_owned()));
    }

    /// Let the detector forget idle windows and the block list expired blocks (maintenance).
    pub fn sweep(&self) {
        let now = now_ms();
        self.blocks.purge_expired(now);
        let _ = self.tx.try_send(Msg::Sweep(now));
    }

    pub fn wake_webhooks(&self) {
        self.webhook_wake.notify_one();
    }
}

/// Blocks in force, checked by the API guard on every licensing request: with none in force
/// the check is one atomic load.
#[derive(Default)]
pub struct BlockList {
    live: AtomicUsize,
    map: RwLock<HashMap<(IpAddr, u8), i64>>,
}

impl BlockList {
    /// When the block on `ip` (or on its /24 or /64 range) ends, if one is in force.
    pub fn blocked_until(&self, ip: IpAddr) -> Option<i64> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = now_ms();
        let map = self.map.read().ok()?;
        [(ip, full_prefix(ip)), network_of(ip)]
            .iter()
            .filter_map(|k| map.get(k).copied())
            .filter(|until| *until > now)
            .max()
    }

    pub fn add(&self, block: &IpBlock) {
        if let Ok(mut map) = self.map.write() {
            let until = map.entry((block.ip, block.prefix_len)).or_insert(0);
            *until = (*until).max(block.expires_at);
            self.live.store(map.len(), Ordering::Relaxed);
        }
    }

    /// Replaces the list with the blocks in force (at start, and after a block is lifted).
    pub fn replace_all(&self, blocks: &[IpBlock]) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
            for b in blocks {
                let until = map.entry((b.ip, b.prefix_len)).or_insert(0);
                *until = (*until).max(b.expires_at);
            }
            self.live.store(map.len(), Ordering::Relaxed);
        }
    }

    fn purge_expired(&self, now: i64) {
        if let Ok(mut map) = self.map.write() {
            map.retain(|_, until| *until > now);
            self.live.store(map.len(), Ordering::Relaxed);
        }
    }
}

/// Reloads the in-memory block list from the database.
pub fn reload_blocks(state: &AppState) -> Result<(), crate::error::Error> {
    let blocks = state.db.read(|c| abuse::repo::active_blocks(c, now_ms()))?;
    state.abuse.blocks.replace_all(&blocks);
    Ok(())
}

/// Starts the detector and webhook tasks (once; later calls do nothing).
pub fn start(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    if let Err(e) = reload_blocks(state) {
        tracing::warn!("cannot load IP blocks: {e}");
    }
    let rx = state.abuse.rx.lock().ok().and_then(|mut rx| rx.take());
    let mut tasks = Vec::new();
    if let Some(rx) = rx {
        tasks.push(tokio::spawn(run_detector(state.clone(), rx)));
        tasks.push(tokio::spawn(deliver_webhooks(state.clone())));
    }
    tasks
}

struct Policies {
    by_product: HashMap<String, (Arc<AbusePolicy>, String, Instant)>,
    by_secret: HashMap<[u8; 32], Option<(String, String)>>,
    default_tenant: Option<String>,
    defaults: Arc<AbusePolicy>,
}

impl Policies {
    /// (tenant, product, policy) of a report; None when no tenant can be named.
    fn resolve(
        &mut self,
        state: &AppState,
        scope: Scope,
    ) -> Option<(String, Option<String>, Arc<AbusePolicy>)> {
        let (tenant, product) = match scope {
            Scope::Product {
                tenant_id,
                product_id,
            } => (Some(tenant_id), Some(product_id)),
            Scope::ProductId(p) => (None, Some(p)),
            Scope::Tenant {
                tenant_id,
                product_id,
            } => (Some(tenant_id), product_id),
            Scope::ClientSecret(hash) => {
                if self.by_secret.len() > 10_000 {
                    // Random secrets from a guesser must not grow the map without bound.
                    self.by_secret.clear();
                }
                let found = match self.by_secret.get(&hash) {
                    Some(found) => found.clone(),
                    None => {
                        let found = state
                            .db
                            .read(|c| abuse::repo::product_by_client_secret(c, &hash))
                            .ok()
                            .flatten();
                        self.by_secret.insert(hash, found.clone());
                        found
                    }
                };
                match found {
                    Some((product, tenant)) => (Some(tenant), Some(product)),
                    None => (None, None),
                }
            }
            Scope::Unknown => (None, None),
        };
        if let Some(product) = product
            && let Some((policy, tenant)) = self.of_product(state, &product)
        {
            return Some((tenant, Some(product), policy));
        }
        let tenant = tenant.or_else(|| self.default_tenant.clone())?;
        Some((tenant, None, self.defaults.clone()))
    }

    fn of_product(
        &mut self,
        state: &AppState,
        product_id: &str,
    ) -> Option<(Arc<AbusePolicy>, String)> {
        if let Some((policy, tenant, at)) = self.by_product.get(product_id)
            && at.elapsed() < POLICY_TTL
        {
            return Some((policy.clone(), tenant.clone()));
        }
        let (tenant, stored) = state
            .db
            .read(|c| abuse::repo::policy_of(c, product_id))
            .ok()
            .flatten()?;
        let policy = Arc::new(AbusePolicy::from_stored(stored.as_deref()));
        if self.by_product.len() > 10_000 {
            self.by_product.clear();
        }
        self.by_product.insert(
            product_id.to_owned(),
            (policy.clone(), tenant.clone(), Instant::now()),
        );
        Some((policy, tenant))
    }
}

async fn run_detector(state: AppState, mut rx: mpsc::Receiver<Msg>) {
    let default_tenant = state
        .db
        .read(|c| tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG))
        .ok()
        .flatten()
        .map(|t| t.id);
    let mut policies = Policies {
        by_product: HashMap::new(),
        by_secret: HashMap::new(),
        default_tenant,
        defaults: Arc::new(AbusePolicy::default()),
    };
    let mut detector = Detector::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Report(r) => {
                let Some((tenant_id, product_id, policy)) = policies.resolve(&state, r.scope)
                else {
                    continue;
                };
                let event = Event {
                    at: r.at,
                    tenant_id,
                    product_id,
                    ip: r.ip,
                    seen: r.seen,
                };
                for finding in detector.observe(event, &policy) {
                    // Persisting waits for a commit; the detector goes on meanwhile.
                    tokio::spawn(persist(state.clone(), finding, policy.clone()));
                }
            }
            Msg::PolicyChanged(product_id) => {
                policies.by_product.remove(&product_id);
            }
            Msg::Sweep(now) => {
                detector.sweep(now);
                let dropped = state.abuse.dropped();
                if dropped > 0 {
                    tracing::warn!(
                        "abuse detection: {dropped} report(s) dropped so far (queue full)"
                    );
                }
            }
        }
    }
}

async fn persist(state: AppState, finding: Finding, policy: Arc<AbusePolicy>) {
    let kind = finding.kind;
    let subject = finding.subject.clone();
    let outcome = state
        .db
        .write(move |c| abuse::record_finding(c, &finding, &policy, webhook_body))
        .await;
    match outcome {
        Ok(recorded) => {
            if recorded.new {
                tracing::warn!("abuse flag {}: {kind} about {subject}", recorded.flag_id);
            }
            if let Some(block) = &recorded.block {
                state.abuse.blocks.add(block);
            }
            if recorded.webhook_queued {
                state.abuse.wake_webhooks();
            }
        }
        Err(e) => tracing::warn!("abuse finding ({kind} about {subject}) not recorded: {e}"),
    }
}

/// The JSON a webhook receives for a new flag.
pub fn webhook_body(flag: &Flag) -> String {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or(json!(null));
    let time = |ms: i64| {
        ms_to_datetime(ms)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    json!({
        "event": "abuse.flag.created",
        "flag": {
            "id": flag.id,
            "projectId": flag.product_id,
            "kind": flag.kind.as_str(),
            "subjectType": flag.subject_type.as_str(),
            "subject": flag.subject,
            "licenseId": flag.license_id,
            "state": flag.state.as_str(),
            "evidence": parse(&flag.evidence),
            "actions": parse(&flag.actions),
            "createdAt": time(flag.created_at),
        },
    })
    .to_string()
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn deliver_webhooks(state: AppState) {
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    loop {
        let now = now_ms();
        let due = state
            .db
            .read_blocking(move |c| abuse::repo::due_deliveries(c, now, 16))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot read webhook deliveries: {e}");
                Vec::new()
            });
        for delivery in due {
            attempt(&state, &client, delivery).await;
        }
        let next = state.db.read(abuse::repo::next_delivery_at).ok().flatten();
        let wait_ms = next.map_or(60_000, |n| (n - now_ms()).clamp(0, 60_000));
        if wait_ms == 0 {
            continue;
        }
        tokio::select! {
            _ = state.abuse.webhook_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
    }
}

async fn attempt(state: &AppState, client: &HttpClient, d: abuse::repo::Delivery) {
    let signature = d
        .secret_sealed
        .as_deref()
        .and_then(|s| state.master.open(s).ok())
        .map(|secret| abuse::webhook_signature(&secret, d.body.as_bytes()));
    let target = match webhook_target(&d.url, state.config.webhook_allow_private).await {
        Ok(t) => t,
        Err(why) => {
            finish_attempt(state, &d, Err(why)).await;
            return;
        }
    };
    let mut req = hyper::Request::post(target.uri)
        .header("host", target.host)
        .header("content-type", "application/json")
        .header("user-agent", concat!("Keyward/", env!("CARGO_PKG_VERSION")))
        .header("x-keyward-event", "abuse.flag.created")
        .header("x-keyward-delivery", d.id.to_string());
    if let Some(sig) = &signature {
        req = req.header("x-keyward-signature", sig.as_str());
    }
    let outcome = match req.body(Full::new(Bytes::from(d.body.clone()))) {
        Err(e) => Err(format!("cannot build the request: {e}")),
        Ok(req) => match tokio::time::timeout(WEBHOOK_TIMEOUT, client.request(req)).await {
            Err(_) => Err("timed out".to_owned()),
            Ok(Err(e)) => Err(format!("{e}")),
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
        },
    };
    finish_attempt(state, &d, outcome).await;
}

/// Where a delivery goes: the URL with its host replaced by the one address checked by
/// `outgoing::resolve` (so a second DNS answer cannot send it inside), and the original
/// authority for the Host header.
struct WebhookTarget {
    uri: hyper::Uri,
    host: String,
}

async fn webhook_target(url: &str, allow_private: bool) -> Result<WebhookTarget, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid webhook URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| "the webhook URL names no host".to_owned())?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = crate::outgoing::resolve(authority.host(), port, allow_private).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("invalid webhook URL: {e}"))?;
    Ok(WebhookTarget {
        uri,
        host: authority.as_str().to_owned(),
    })
}

/// Records an attempt's outcome: done, retried with backoff, or given up.
async fn finish_attempt(state: &AppState, d: &abuse::repo::Delivery, outcome: Result<(), String>) {
    let now = now_ms();
    let id = d.id;
    let base_ms = state.config.webhook_retry_base.as_millis() as i64;
    let attempts = d.attempts + 1;
    let result = match outcome {
        Ok(()) => {
            state
                .db
                .write(move |c| abuse::repo::delivery_succeeded(c, id, now))
                .await
        }
        Err(error) => {
            let next = (attempts < WEBHOOK_MAX_ATTEMPTS).then(|| {
                now + (base_ms.saturating_mul(1 << (attempts - 1).min(20)))
                    .min(WEBHOOK_MAX_BACKOFF_MS)
            });
            if next.is_none() {
                tracing::warn!(
                    "abuse webhook {id} for flag {} given up: {error}",
                    d.flag_id
                );
            }
            state
                .db
                .write(move |c| abuse::repo::delivery_failed(c, id, &error, next, now))
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!("cannot record webhook delivery {id}: {e}");
    }
}
