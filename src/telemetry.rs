//! The server's own metrics, recorded with the `metrics` macros into a Prometheus recorder that
//! belongs to one [`crate::state::AppState`] (several servers in one process, as in the tests,
//! keep separate figures: no global recorder is installed). Rendered by
//! `service::metrics::scrape` for `GET /metrics`.
//!
//! Recording is switchable at runtime ([`Telemetry::set_enabled`]): off, every probe returns
//! after one relaxed atomic load, which is how the bench measures the cost of being on.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Latency buckets, in seconds: a signed validation takes well under a millisecond on loopback,
/// a group commit a few milliseconds, an argon2 login tens of milliseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Messages (write jobs and audit events) per writer transaction; the writer takes at most 512.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub const HTTP_REQUESTS: &str = "keyward_http_requests_total";
pub const HTTP_DURATION: &str = "keyward_http_request_duration_seconds";
pub const VALIDATIONS: &str = "keyward_validations_total";
pub const ACTIVATIONS: &str = "keyward_activations_total";
pub const WRITER_QUEUE: &str = "keyward_writer_queue_depth";
pub const WRITER_BATCH: &str = "keyward_writer_batch_size";
pub const WRITER_COMMIT: &str = "keyward_writer_commit_duration_seconds";
pub const WRITER_COMMITS: &str = "keyward_writer_commits_total";
pub const DATABASE_BYTES: &str = "keyward_database_size_bytes";
pub const WAL_BYTES: &str = "keyward_database_wal_size_bytes";
pub const ABUSE_FLAGS_OPEN: &str = "keyward_abuse_flags_open";
pub const IP_BLOCKS: &str = "keyward_abuse_ip_blocks_active";
pub const RATE_LIMITED: &str = "keyward_rate_limit_refusals_total";
pub const OUTGOING_QUEUE: &str = "keyward_outgoing_queue_depth";

/// Which licensing face a validation or activation came through (a label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `/api/v1/license/*`.
    Vendor,
    /// `/api/validate`, `/api/telegram` (an activation there is a HWID bound on first use).
    KeyHwid,
    /// An activation request carried across an air gap.
    Offline,
}

impl Face {
    fn label(self) -> &'static str {
        match self {
            Face::Vendor => "vendor",
            Face::KeyHwid => "key_hwid",
            Face::Offline => "offline",
        }
    }
}

/// Figures read when a scrape asks for them rather than on every change: file sizes, rows,
/// counters kept elsewhere.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub writer_queue: u64,
    /// Open abuse flags per kind.
    pub abuse_flags_open: Vec<(String, u64)>,
    pub ip_blocks_active: u64,
    /// Refusals since start, per limiter (the limiters count them themselves).
    pub rate_limit_refusals: Vec<(&'static str, u64)>,
    /// Outgoing queues (deliveries not yet made), per queue: `webhooks` (event webhooks,
    /// abuse policy URLs included); e-mail joins here when it exists.
    pub outgoing_queues: Vec<(&'static str, u64)>,
}

pub struct Telemetry {
    enabled: AtomicBool,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The request series already registered, by (method, route, status).
    http_series: RwLock<HashMap<HttpSeries, (Counter, Histogram)>>,
    /// Validation and activation counters by (metric, face, result code): looked up once, as
    /// the HTTP series are, so a validation pays no label allocation.
    result_series: RwLock<HashMap<(&'static str, &'static str, &'static str), Counter>>,
}

/// Routes are templates and statuses a short list, so the series are few; the bound only
/// guards against a surprise (a series past it is still recorded, just not cached).
const MAX_HTTP_SERIES: usize = 4096;

type HttpSeries = (&'static str, String, &'static str);

/// Looks a series up by borrowed parts (no `String` built per request).
trait SeriesKey {
    fn parts(&self) -> (&'static str, &str, &'static str);
}

impl SeriesKey for HttpSeries {
    fn parts(&self) -> (&'static str, &str, &'static str) {
        (self.0, &self.1, self.2)
    }
}

impl SeriesKey for (&'static str, &str, &'static str) {
    fn parts(&self) -> (&'static str, &str, &'static str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn SeriesKey + 'a> for HttpSeries {
    fn borrow(&self) -> &(dyn SeriesKey + 'a) {
        self
    }
}

impl PartialEq for dyn SeriesKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn SeriesKey + '_ {}

impl std::hash::Hash for dyn SeriesKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl Telemetry {
    pub fn new(enabled: bool) -> Self {
        // The bucket lists are not empty, so neither call fails; if one did, that histogram
        // would be rendered as a summary, still valid exposition.
        let mut builder = PrometheusBuilder::new();
        if let Ok(b) = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(WRITER_BATCH.into()), BATCH_BUCKETS)
            })
        {
            builder = b;
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        Self {
            enabled: AtomicBool::new(enabled),
            recorder,
            handle,
            http_series: RwLock::new(HashMap::new()),
            result_series: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns recording on or off at once (the bench compares the two).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    fn record(&self, f: impl FnOnce()) {
        if self.enabled() {
            metrics::with_local_recorder(&self.recorder, f);
        }
    }

    /// One answered HTTP request. `route` is the matched route template (`/api/keys/:id`),
    /// never the raw path: ids and keys must not become label values.
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        if !self.enabled() {
            return;
        }
        let status = status_label(status);
        // The hot path: a read lock and a look-up, no allocation once a series is known.
        let cached = self
            .http_series
            .read()
            .ok()
            .and_then(|m| m.get(&(method, route, status) as &dyn SeriesKey).cloned());
        let (requests, duration) = match cached {
            Some(series) => series,
            None => {
                let series = metrics::with_local_recorder(&self.recorder, || {
                    (
                        counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(), "status" => status),
                        histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned()),
                    )
                });
                if let Ok(mut m) = self.http_series.write()
                    && m.len() < MAX_HTTP_SERIES
                {
                    m.insert((method, route.to_owned(), status), series.clone());
                }
                series
            }
        };
        requests.increment(1);
        duration.record(took);
    }

    /// A validation's result code (`VALID`, `EXPIRED`, `KEY_BANNED`…, as its face answers it).
    pub fn validation(&self, face: Face, result: &'static str) {
        self.count_result(VALIDATIONS, face, result);
    }

    /// An activation's result code (`ACTIVATED`, `ALREADY_ACTIVATED`, or the refusal's code).
    pub fn activation(&self, face: Face, result: &'static str) {
        self.count_result(ACTIVATIONS, face, result);
    }

    /// One validation or activation result; result codes are a short static list.
    fn count_result(&self, name: &'static str, face: Face, result: &'static str) {
        if !self.enabled() {
            return;
        }
        let key = (name, face.label(), result);
        let cached = self
            .result_series
            .read()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let counter = match cached {
            Some(counter) => counter,
            None => {
                let counter = metrics::with_local_recorder(
                    &self.recorder,
                    || counter!(name, "face" => key.1, "result" => result),
                );
                if let Ok(mut m) = self.result_series.write() {
                    m.insert(key, counter.clone());
                }
                counter
            }
        };
        counter.increment(1);
    }

    /// Keeps the recorder's memory bounded between scrapes (histogram samples are buffered
    /// until drained); run every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition text, with the scrape-time figures of `snapshot` set first.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            gauge!(DATABASE_BYTES).set(snapshot.database_bytes as f64);
            gauge!(WAL_BYTES).set(snapshot.wal_bytes as f64);
            gauge!(WRITER_QUEUE).set(snapshot.writer_queue as f64);
            gauge!(IP_BLOCKS).set(snapshot.ip_blocks_active as f64);
            for (kind, n) in &snapshot.abuse_flags_open {
                gauge!(ABUSE_FLAGS_OPEN, "kind" => kind.clone()).set(*n as f64);
            }
            for (limiter, n) in &snapshot.rate_limit_refusals {
                counter!(RATE_LIMITED, "limiter" => *limiter).absolute(*n);
            }
            for (queue, n) in &snapshot.outgoing_queues {
                gauge!(OUTGOING_QUEUE, "queue" => *queue).set(*n as f64);
            }
        });
        self.handle.render()
    }
}

impl crate::storage::BatchObserver for Telemetry {
    fn committed(&self, messages: usize, took: Duration, ok: bool) {
        self.record(|| {
            histogram!(WRITER_BATCH).record(messages as f64);
            histogram!(WRITER_COMMIT).record(took);
            counter!(WRITER_COMMITS, "outcome" => if ok { "committed" } else { "failed" })
                .increment(1);
        });
    }
}

/// Status codes as static label values (no allocation per request for the usual ones).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        other => match other / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time from a request's arrival to its answer, by method and route template"
    );
    describe_counter!(VALIDATIONS, "License validations by face and result code");
    describe_counter!(
        ACTIVATIONS,
        "Machine activations (HWID bindings on the key/HWID face) by face and result code"
    );
    describe_gauge!(
        WRITER_QUEUE,
        "Write jobs and audit events queued for the writer, not yet taken into a transaction"
    );
    describe_histogram!(
        WRITER_BATCH,
        "Write jobs and audit events committed per writer transaction (group commit)"
    );
    describe_histogram!(
        WRITER_COMMIT,
        metrics::Unit::Seconds,
        "Time of one writer transaction, BEGIN to COMMIT (fsync included)"
    );
    describe_counter!(WRITER_COMMITS, "Writer transactions, by outcome");
    describe_gauge!(DATABASE_BYTES, "Size of the SQLite database file");
    describe_gauge!(WAL_BYTES, "Size of the SQLite write-ahead log");
    describe_gauge!(ABUSE_FLAGS_OPEN, "Open abuse flags, by kind");
    describe_gauge!(
        IP_BLOCKS,
        "Client addresses blocked for suspected abuse now"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit since start, by limiter"
    );
    describe_gauge!(
        OUTGOING_QUEUE,
        "Outgoing deliveries waiting to be made, by queue"
    );
}
