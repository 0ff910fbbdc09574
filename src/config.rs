//! Validated settings of a running server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::audit::RetentionClass;

/// Requests per minute; 0 turns a limit off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Every API request, per client IP.
    pub per_ip: u32,
    /// Requests made with one API key (all of a vendor's apps share it, so it is generous).
    pub per_api_key: u32,
    /// Requests whose credential was wrong, per client IP: guessing is cut off quickly.
    pub failed_auth_per_ip: u32,
    /// Admin and portal login attempts, per IP and per account.
    pub login_per_minute: u32,
    /// `/api/validate` and `/api/telegram` calls per license key.
    pub per_license_key: u32,
    /// Update checks per license key per 15 minutes.
    pub update_checks_per_15_min: u32,
    /// Bundle downloads per hour, per license key and per IP.
    pub downloads_per_hour: u32,
}

/// How long an endpoint may fail before it is disabled (`--webhook-disable-after`).
pub const DEFAULT_WEBHOOK_DISABLE_AFTER: Duration = Duration::from_secs(3 * 86_400);

/// Long enough for an updater to start its download after reading the feed, short enough that
/// a leaked feed stops working soon.
pub const DEFAULT_FEED_DOWNLOAD_TTL_SECS: u64 = 900;
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// How long raw audit rows are kept, per kind of event (`None`: forever). Older rows are counted
/// into daily aggregates (the dashboard's figures keep them) and deleted by the maintenance
/// sweep; the space goes back to the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRetention {
    /// Validations, checks, key look-ups, refused activations, update downloads.
    pub validations: Option<Duration>,
    /// Activations, deactivations and the rest of a license's life; portal accounts.
    pub licenses: Option<Duration>,
    /// Operators, API keys, projects, releases, abuse actions.
    pub admin: Option<Duration>,
}

impl AuditRetention {
    pub const DEFAULT_VALIDATIONS_DAYS: u32 = 30;
    pub const DEFAULT_LICENSES_DAYS: u32 = 365;
    pub const DEFAULT_ADMIN_DAYS: u32 = 365;

    /// Retentions in days; 0 keeps that kind forever.
    pub fn from_days(validations: u32, licenses: u32, admin: u32) -> Self {
        let days = |n: u32| (n > 0).then(|| Duration::from_secs(u64::from(n) * 86_400));
        Self {
            validations: days(validations),
            licenses: days(licenses),
            admin: days(admin),
        }
    }

    /// The retention of one kind of event.
    pub fn of(&self, class: RetentionClass) -> Option<Duration> {
        match class {
            RetentionClass::Validations => self.validations,
            RetentionClass::Licenses => self.licenses,
            RetentionClass::Admin => self.admin,
        }
    }
}

impl Default for AuditRetention {
    fn default() -> Self {
        Self::from_days(
            Self::DEFAULT_VALIDATIONS_DAYS,
            Self::DEFAULT_LICENSES_DAYS,
            Self::DEFAULT_ADMIN_DAYS,
        )
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// Peers whose `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    pub rate_limits: RateLimits,
    /// Largest JSON request body accepted.
    pub max_body_bytes: usize,
    /// Largest release bundle accepted (uploads stream to disk, so this bounds disk, not RAM).
    pub max_bundle_bytes: u64,
    /// How often expired licenses are marked, dead machines culled and old audit rows pruned.
    pub maintenance_interval: Duration,
    /// How long raw audit rows are kept, per kind.
    pub audit_retention: AuditRetention,
    pub read_pool_size: u32,
    /// Abuse detection on (default) or off for the whole server (`KEYWARD_ABUSE_DETECTION`).
    pub abuse_detection: bool,
    /// First retry delay of a webhook delivery; each further retry waits about twice as long.
    pub webhook_retry_base: Duration,
    /// Webhooks may reach loopback, private and link-local addresses (off: refused).
    pub webhook_allow_private: bool,
    /// Timeouts and caps of client connections.
    pub connections: crate::net::ConnectionLimits,
    // --- Metrics (issue 14) ---
    pub metrics: MetricsConfig,
    // --- Outgoing HTTPS and event webhooks (issue 13) ---
    /// PEM CA certificates trusted by outgoing TLS (webhooks over HTTPS, SMTP) besides the
    /// bundled and system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// An endpoint whose deliveries have failed for this long is disabled and flagged.
    pub webhook_disable_after: Duration,
    // --- Backups and replication (issue 14) ---
    /// Archives made by the running server (`--backup-every`); `None`: no schedule.
    pub backup_schedule: Option<BackupSchedule>,
    /// Litestream replicates the database: the server leaves WAL checkpoints to it.
    pub litestream: bool,
    // --- HTTPS (issue 14) ---
    /// Serve HTTPS on `bind` (`--tls-cert`/`--tls-key` or `--acme-domain`); `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsSettings>,
    /// A plain-HTTP listener that redirects to HTTPS and answers HTTP-01 challenges.
    pub http_redirect_bind: Option<SocketAddr>,
    // --- E-mail to customers (issue 13) ---
    /// The address clients and customers reach this server at: links in e-mails (default
    /// `http://<bind>`) and download URLs in update feeds (default: each request's `Host`).
    pub public_url: Option<String>,
    /// SMTP without TLS is allowed, to loopback and private hosts only.
    pub smtp_allow_plaintext: bool,
    /// SMTP servers on loopback and private addresses may be used (with TLS); implied by
    /// `smtp_allow_plaintext`.
    pub smtp_allow_private: bool,
    /// Connecting to and each exchange with an SMTP server time out after this.
    pub smtp_timeout: Duration,
    /// First retry delay of a message; each further retry waits twice as long.
    pub mail_retry_base: Duration,
    /// Attempts before a message is given up (FAILED).
    pub mail_max_attempts: u32,
    /// How often the outbox is looked at for due messages.
    pub mail_poll_interval: Duration,
    /// Days before a subscription's expiry its reminder goes out (0: no reminders).
    pub expiry_reminder_days: u32,
    /// Portal "send me my keys" / password-reset requests per e-mail address per hour (per
    /// client IP: four times as many); 0: unlimited.
    pub mail_requests_per_hour: u32,
    /// How long a portal password-reset link works.
    pub password_reset_valid: Duration,
    // --- Update feeds (issue 15) ---
    /// How long a download URL written into a feed stays valid.
    pub feed_download_ttl: Duration,
}

/// Prometheus metrics: what is recorded and where `/metrics` is served.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Record metrics at all (`--metrics on|off`); off, `/metrics` answers 404 everywhere.
    pub enabled: bool,
    /// Bearer token that opens `/metrics` on the main listener; none: 404 there.
    pub token: Option<String>,
    /// A file holding that token (read at start), so it stays out of `ps` and the unit file.
    pub token_file: Option<PathBuf>,
    /// A separate listener serving only `/metrics`, without a token (bind it privately).
    pub bind: Option<SocketAddr>,
}

/// Rotating archives made by the running server.
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub every: Duration,
    /// Newest archives kept; older scheduled ones are removed.
    pub keep: usize,
    pub dir: PathBuf,
    pub passphrase: Option<Passphrase>,
}

/// A backup passphrase; never shown by `Debug` (the configuration may be logged).
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(text: String) -> Self {
        Self(text)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Config {
    /// Settings for tests and embedding: loopback on a free port, limits off.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            trusted_proxies: Vec::new(),
            rate_limits: RateLimits {
                per_ip: 0,
                per_api_key: 0,
                failed_auth_per_ip: 0,
                login_per_minute: 0,
                per_license_key: 0,
                update_checks_per_15_min: 0,
                downloads_per_hour: 0,
            },
            max_body_bytes: 256 * 1024,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            maintenance_interval: Duration::from_secs(30),
            audit_retention: AuditRetention::default(),
            read_pool_size: 8,
            abuse_detection: true,
            webhook_retry_base: Duration::from_secs(5),
            webhook_allow_private: false,
            connections: crate::net::ConnectionLimits::default(),
            metrics: MetricsConfig {
                enabled: true,
                ..MetricsConfig::default()
            },
            // Outgoing HTTPS and event webhooks (issue 13)
            extra_ca_file: None,
            webhook_disable_after: DEFAULT_WEBHOOK_DISABLE_AFTER,
            backup_schedule: None,
            litestream: false,
            tls: None,
            http_redirect_bind: None,
            // --- E-mail to customers (issue 13) ---
            public_url: None,
            smtp_allow_plaintext: false,
            smtp_allow_private: false,
            smtp_timeout: Duration::from_secs(30),
            mail_retry_base: Duration::from_secs(60),
            mail_max_attempts: 8,
            mail_poll_interval: Duration::from_secs(1),
            expiry_reminder_days: 7,
            mail_requests_per_hour: 0,
            password_reset_valid: Duration::from_secs(3600),
            feed_download_ttl: Duration::from_secs(DEFAULT_FEED_DOWNLOAD_TTL_SECS),
        }
    }
}
