//! Abuse detection at work: request handlers report what they saw through [`Abuse`] without
//! waiting (a bounded channel; `try_send`, so a full queue drops a report rather than slow a
//! validation), one task runs the in-memory [`Detector`] and persists its findings through the
//! writer, and the IP block list is checked in memory by the API guard. A new flag is an
//! `abuse.flag.created` webhook event (`outgoing::webhooks` delivers it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use crate::domain::abuse::detector::{Detector, Event, SeatLimit, Seen};
use crate::domain::abuse::{self, AbusePolicy, Finding, Flag, IpBlock, full_prefix, network_of};
use crate::domain::licenses::License;
use crate::domain::webhooks::EventType;
use crate::domain::{ms_to_datetime, now_ms, tenants};
use crate::state::AppState;

/// Reports queued at most; beyond that, reports are dropped (and counted).
const QUEUE: usize = 65_536;
/// How long a product's policy is trusted before it is read again (changes made through the
/// admin API apply at once; see [`Abuse::policy_changed`]).
const POLICY_TTL: Duration = Duration::from_secs(5);

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
        .write(move |c| abuse::record_finding(c, &finding, &policy, emit_flag_events))
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
                state.webhooks.wake();
            }
        }
        Err(e) => tracing::warn!("abuse finding ({kind} about {subject}) not recorded: {e}"),
    }
}

/// `abuse.flag.created` for a new flag (to event endpoints and to the policy's own URL), and
/// `license.suspended` when the flag suspended its license. Runs in the flag's writer job.
fn emit_flag_events(
    c: &rusqlite::Connection,
    flag: &Flag,
    policy: &AbusePolicy,
) -> Result<usize, crate::error::Error> {
    let mut queued = crate::service::events::emit_with_abuse_url(
        c,
        &flag.tenant_id,
        flag.product_id.as_deref(),
        EventType::AbuseFlagCreated,
        json!({"flag": flag_data(flag)}),
        policy.webhook_url.as_deref(),
    )?;
    let suspended = flag.actions.contains("LICENSE_SUSPENDED");
    if suspended
        && let Some(license_id) = &flag.license_id
        && let Some(license) = crate::domain::licenses::repo::find(c, &flag.tenant_id, license_id)?
    {
        queued += crate::service::events::emit(
            c,
            &license.tenant_id,
            Some(&license.product_id),
            EventType::LicenseSuspended,
            crate::service::events::license_data(&license),
        )?;
    }
    Ok(queued)
}

/// A flag as its webhook event shows it.
pub fn flag_data(flag: &Flag) -> serde_json::Value {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or(json!(null));
    let time = |ms: i64| {
        ms_to_datetime(ms)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    json!({
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
    })
}
