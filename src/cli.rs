//! The command line. Every flag is also an environment variable (`KEYWARD_*`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{AuditRetention, BackupSchedule, Config, Passphrase, RateLimits};
use crate::domain::api_keys::Scope;
use crate::domain::licenses::LicenseType;
use crate::domain::products::{self, HeartbeatPolicy, KeyFormat, ProductType, ProjectSettings};
use crate::domain::tenants;
use crate::error::Error;
use crate::service::api_keys::{NewApiKey, ProductRef};
use crate::service::catalog::{self, ProductDraft};
use crate::service::{self, Ctx};
use crate::state::AppState;
use crate::storage;

// Operator tasks from a shell (issue 14): one module per resource.
mod doctor;
mod import;
mod licenses;
mod operators;
// Releases from CI (issue 15): a remote face, over HTTP(S) to a running server.
mod http;
mod release;

#[derive(Parser, Debug)]
#[command(name = "keyward", version, about = "Self-hosted license-key server")]
pub struct Cli {
    /// Where the database, the master key and release bundles live.
    #[arg(
        long,
        global = true,
        env = "KEYWARD_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Create the data directory, the database and the master key, then exit.
    Init,
    /// Manage products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Manage tenants (isolated vendor namespaces).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The first administrator's setup.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage licenses.
    #[command(subcommand)]
    License(licenses::LicenseCommand),
    /// Import licenses sold elsewhere from a CSV file (all rows or none).
    Import(import::ImportArgs),
    /// Check the installation: permissions, master key, schema, disk, TLS certificate, backups.
    Doctor(doctor::DoctorArgs),
    /// Write one backup archive of the installation to FILE: a consistent snapshot of the live
    /// database, the master key, every release bundle, and a manifest of their SHA-256s.
    Backup {
        /// The archive to create (0600); must not exist.
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Restore a backup archive into --data-dir, which must be new or empty; every file is
    /// checked against the archive's manifest before anything is put in place.
    Restore {
        /// The archive written by `keyward backup` (or a scheduled one).
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Releases from a CI pipeline, through a running server's API (`--server`, `--api-key`):
    /// create a draft, upload files per platform, publish, yank.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Exit 0 if the server at --bind answers healthy, 1 otherwise (for container checks).
    /// Speaks HTTPS when the server does (its TLS settings in the environment, or a listener
    /// that does not answer plain HTTP).
    Healthcheck {
        #[arg(long, env = "KEYWARD_BIND", default_value = "127.0.0.1:3002")]
        bind: SocketAddr,
        #[command(flatten)]
        tls: ListenerTls,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "KEYWARD_BIND", default_value = "127.0.0.1:3002")]
    pub bind: SocketAddr,
    /// Reverse proxies whose X-Forwarded-For is trusted (comma-separated IPs).
    #[arg(long, env = "KEYWARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
    /// API requests per minute per client IP (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_PER_IP", default_value_t = 600)]
    pub rate_limit_per_ip: u32,
    /// Requests per minute per API key (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_PER_API_KEY", default_value_t = 60_000)]
    pub rate_limit_per_api_key: u32,
    /// Requests with a wrong credential per minute per client IP (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_FAILED_AUTH", default_value_t = 20)]
    pub rate_limit_failed_auth: u32,
    /// Admin and portal login attempts per minute, per IP and per account (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_LOGIN", default_value_t = 5)]
    pub rate_limit_login: u32,
    /// /api/validate and /api/telegram calls per minute per license key (0 = unlimited).
    #[arg(
        long,
        env = "KEYWARD_RATE_LIMIT_PER_LICENSE_KEY",
        default_value_t = 120
    )]
    pub rate_limit_per_license_key: u32,
    /// /api/v1/updates/check calls per license key per 15 minutes (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_UPDATE_CHECKS", default_value_t = 60)]
    pub rate_limit_update_checks: u32,
    /// /api/v1/updates/download calls per hour, per license key and per IP (0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_DOWNLOADS", default_value_t = 10)]
    pub rate_limit_downloads: u32,
    /// Largest accepted release bundle, in bytes (streamed to disk, not held in memory).
    #[arg(long, env = "KEYWARD_MAX_BUNDLE_BYTES", default_value_t = crate::config::DEFAULT_MAX_BUNDLE_BYTES)]
    pub max_bundle_bytes: u64,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "KEYWARD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds between sweeps that expire licenses, cull dead machines and prune old audit rows.
    #[arg(long, env = "KEYWARD_MAINTENANCE_INTERVAL", default_value_t = 30)]
    pub maintenance_interval: u64,
    /// Days raw audit rows of validations, checks, key look-ups, refused activations and update
    /// downloads are kept (0 = forever); the dashboard's daily figures keep their counts.
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION_VALIDATIONS", default_value_t = AuditRetention::DEFAULT_VALIDATIONS_DAYS)]
    pub audit_retention_validations: u32,
    /// Days audit rows of activations, deactivations, the rest of a license's life and portal
    /// accounts are kept (0 = forever).
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION_LICENSES", default_value_t = AuditRetention::DEFAULT_LICENSES_DAYS)]
    pub audit_retention_licenses: u32,
    /// Days audit rows of operators, API keys, projects, releases and abuse actions are kept
    /// (0 = forever).
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION_ADMIN", default_value_t = AuditRetention::DEFAULT_ADMIN_DAYS)]
    pub audit_retention_admin: u32,
    /// Abuse detection: `on` (default) or `off` for the whole server.
    // `Set`: a bool field is otherwise a valueless switch, and `--abuse-detection off` fails.
    #[arg(long, env = "KEYWARD_ABUSE_DETECTION", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub abuse_detection: bool,
    /// Let webhooks reach loopback, private and link-local addresses (a relay on this host or
    /// the LAN); without it they are refused, also after DNS resolution.
    #[arg(long, env = "KEYWARD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Seconds a connection may take to send a request's headers (idle time before it included).
    #[arg(long, env = "KEYWARD_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a request body may pause (and a response wait for the client to read it).
    #[arg(long, env = "KEYWARD_BODY_TIMEOUT", default_value_t = 10)]
    pub body_timeout: u64,
    /// Seconds an idle connection is kept open between requests.
    #[arg(long, env = "KEYWARD_IDLE_TIMEOUT", default_value_t = 5)]
    pub idle_timeout: u64,
    /// Open connections per client address (trusted proxies exempt).
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    // --- Metrics (issue 14) ---
    /// Record Prometheus metrics: `on` (default) or `off` (then /metrics answers 404).
    #[arg(long, env = "KEYWARD_METRICS", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Bearer token that opens GET /metrics on the main listener (without one, it is 404 there).
    #[arg(long, env = "KEYWARD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// File holding the metrics bearer token (keeps it out of the process list).
    #[arg(
        long,
        env = "KEYWARD_METRICS_TOKEN_FILE",
        conflicts_with = "metrics_token"
    )]
    pub metrics_token_file: Option<PathBuf>,
    /// Serve GET /metrics, without a token, on this separate address: bind it to loopback or a
    /// private network only.
    #[arg(long, env = "KEYWARD_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    // --- Outgoing HTTPS and event webhooks (issue 13) ---
    /// PEM file of extra CA certificates trusted by outgoing TLS (webhooks to a receiver with
    /// a private CA, SMTP), besides the bundled and system roots.
    #[arg(long, env = "KEYWARD_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// A webhook endpoint whose deliveries have failed for this long is disabled and flagged
    /// (e.g. 3d, 12h, 90m).
    #[arg(long, env = "KEYWARD_WEBHOOK_DISABLE_AFTER", value_parser = parse_interval, default_value = "3d")]
    pub webhook_disable_after: Duration,

    // --- Backups and replication (issue 14) ---
    /// Make a backup archive this often while serving (e.g. 24h, 30m, 1d); off when absent.
    #[arg(long, env = "KEYWARD_BACKUP_EVERY", value_parser = parse_interval)]
    pub backup_every: Option<Duration>,
    /// Scheduled archives kept (the oldest beyond this are removed).
    #[arg(long, env = "KEYWARD_BACKUP_KEEP", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub backup_keep: u32,
    /// Where scheduled archives go (default: <data-dir>/backups).
    #[arg(long, env = "KEYWARD_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Encrypt scheduled archives with the passphrase in this file (age, scrypt).
    #[arg(long, env = "KEYWARD_BACKUP_PASSPHRASE_FILE")]
    pub backup_passphrase_file: Option<PathBuf>,
    /// Litestream replicates the database: leave WAL checkpoints to it (the server's own
    /// automatic checkpoints are turned off, so the WAL grows unless Litestream runs).
    #[arg(long, env = "KEYWARD_LITESTREAM")]
    pub litestream: bool,
    #[command(flatten)]
    pub https: HttpsArgs,
    // --- E-mail to customers (issue 13) ---
    /// The URL clients and customers reach this server at (e.g. https://licenses.example.com):
    /// links in e-mails (portal, password reset) and download URLs in update feeds. Default:
    /// http://<bind> in e-mails, each request's Host in feeds.
    #[arg(long, env = "KEYWARD_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Allow SMTP security `none` (no TLS), to loopback and private hosts only (a relay on this
    /// host or the LAN).
    #[arg(long, env = "KEYWARD_SMTP_ALLOW_PLAINTEXT")]
    pub smtp_allow_plaintext: bool,
    /// Allow an SMTP server on loopback or a private address (with TLS); without it, as for
    /// webhooks, a workspace cannot make the server connect inside its network.
    /// `--smtp-allow-plaintext` implies it.
    #[arg(long, env = "KEYWARD_SMTP_ALLOW_PRIVATE")]
    pub smtp_allow_private: bool,
    /// Seconds an SMTP connection and each of its exchanges may take.
    #[arg(long, env = "KEYWARD_SMTP_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub smtp_timeout: u64,
    /// Seconds before a failed message's first retry; each further retry waits twice as long.
    #[arg(long, env = "KEYWARD_MAIL_RETRY_BASE", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub mail_retry_base: u64,
    /// Attempts before a message is given up (then FAILED, retried only by hand).
    #[arg(long, env = "KEYWARD_MAIL_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub mail_max_attempts: u32,
    /// Days before a subscription license expires that its reminder is e-mailed (0: none).
    #[arg(long, env = "KEYWARD_EXPIRY_REMINDER_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=365))]
    pub expiry_reminder_days: u32,
    /// Portal "send me my keys" and password-reset requests per e-mail address per hour (per
    /// client IP: four times as many; 0 = unlimited).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_MAIL_REQUESTS", default_value_t = 5)]
    pub rate_limit_mail_requests: u32,
    // --- Update feeds (issue 15) ---
    /// Seconds a download URL written into an update feed stays valid.
    #[arg(long, env = "KEYWARD_FEED_DOWNLOAD_TTL", default_value_t = crate::config::DEFAULT_FEED_DOWNLOAD_TTL_SECS)]
    pub feed_download_ttl: u64,
}

fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?}: expected an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "{text:?}: expected a URL without query or fragment"
        ));
    }
    Ok(url.to_owned())
}

/// Where the passphrase of an encrypted archive comes from (never the command line itself,
/// which other users can read in the process list).
#[derive(Args, Debug, Clone)]
pub struct PassphraseArgs {
    /// Read the passphrase from this file (its first line).
    #[arg(long, conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this environment variable.
    #[arg(long)]
    pub passphrase_env: Option<String>,
}

impl PassphraseArgs {
    fn read(&self) -> Result<Option<String>, Error> {
        let text = match (&self.passphrase_file, &self.passphrase_env) {
            (Some(file), _) => read_passphrase_file(file)?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                Error::Invalid(format!(
                    "--passphrase-env {var}: the environment variable {var} is not set"
                ))
            })?,
            (None, None) => return Ok(None),
        };
        let text = text.lines().next().unwrap_or("").to_owned();
        if text.trim().is_empty() {
            return Err(Error::Invalid("the backup passphrase is empty".into()));
        }
        Ok(Some(text))
    }
}

fn read_passphrase_file(file: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|e| {
        Error::Invalid(format!(
            "cannot read the passphrase file {}: {e}",
            file.display()
        ))
    })
}

/// `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 24h, 30m, 90s"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        other => return Err(format!("{other:?}: the unit is one of s, m, h, d")),
    };
    if seconds == 0 {
        return Err("the interval must be at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

// --- The server's TLS as shell commands see it (issue 14: healthcheck, setup-url) ---
/// Whether the server serves HTTPS, read from the same settings (and environment) as `serve`,
/// for the commands that reach its listener or print its address.
#[derive(Args, Debug, Clone, Default)]
pub struct ListenerTls {
    /// The server serves HTTPS with this certificate (as `serve --tls-cert`).
    #[arg(long, env = "KEYWARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The server serves HTTPS with an ACME certificate for these names (as `serve
    /// --acme-domain`); URLs use the first.
    #[arg(long, env = "KEYWARD_ACME_DOMAIN", value_delimiter = ',')]
    pub acme_domain: Vec<String>,
}

impl ListenerTls {
    fn https(&self) -> bool {
        self.tls_cert.is_some() || !self.acme_domain.is_empty()
    }

    fn probe(&self) -> service::ops::ProbeTls {
        service::ops::ProbeTls {
            https: self.https(),
            server_name: self.acme_domain.first().cloned(),
        }
    }

    /// The setup URL: https when the server serves TLS, on its ACME domain when it has one.
    fn setup_url(&self, bind: SocketAddr, token: &str) -> String {
        crate::server::setup_url(
            bind,
            token,
            self.https(),
            self.acme_domain.first().map(String::as_str),
        )
    }
}

// --- HTTPS (issue 14) ---
/// Serving HTTPS: the operator's certificate files, or ACME.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpsArgs {
    /// PEM certificate chain (leaf first) to serve HTTPS with; read again when it changes.
    #[arg(
        long,
        env = "KEYWARD_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "acme_domain"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "KEYWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of --tls-cert and --tls-key for a new certificate.
    #[arg(long, env = "KEYWARD_TLS_RELOAD_INTERVAL", default_value_t = 5)]
    pub tls_reload_interval: u64,
    /// Obtain and renew the certificate by ACME for this domain (repeat or comma-separate for
    /// more names); stored in <data-dir>/acme.
    #[arg(long, env = "KEYWARD_ACME_DOMAIN", value_delimiter = ',')]
    pub acme_domain: Vec<String>,
    /// Contact e-mail given to the certificate authority (expiry notices).
    #[arg(long, env = "KEYWARD_ACME_EMAIL", requires = "acme_domain")]
    pub acme_email: Option<String>,
    /// ACME directory URL of the certificate authority.
    #[arg(long, env = "KEYWARD_ACME_DIRECTORY", default_value = crate::tls::LETS_ENCRYPT)]
    pub acme_directory: String,
    /// PEM root certificate to trust for the ACME directory's HTTPS (a test CA such as pebble).
    #[arg(long, env = "KEYWARD_ACME_CA_FILE", requires = "acme_domain")]
    pub acme_ca_file: Option<PathBuf>,
    /// The challenge the CA validates: tls-alpn-01 (on the HTTPS port) or http-01 (on
    /// --http-redirect-bind).
    #[arg(long, env = "KEYWARD_ACME_CHALLENGE", default_value = "tls-alpn-01", value_parser = parse_challenge)]
    pub acme_challenge: crate::tls::AcmeChallenge,
    /// Also listen for plain HTTP here, only to redirect to HTTPS and answer HTTP-01
    /// challenges (e.g. 0.0.0.0:80).
    #[arg(long, env = "KEYWARD_HTTP_REDIRECT_BIND")]
    pub http_redirect_bind: Option<SocketAddr>,
}

fn parse_challenge(text: &str) -> Result<crate::tls::AcmeChallenge, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "tls-alpn-01" => Ok(crate::tls::AcmeChallenge::TlsAlpn01),
        "http-01" => Ok(crate::tls::AcmeChallenge::Http01),
        other => Err(format!("{other:?}: expected tls-alpn-01 or http-01")),
    }
}

impl HttpsArgs {
    fn tls_settings(&self) -> Option<crate::tls::TlsSettings> {
        use crate::tls::{AcmeSettings, TlsSettings, TlsSource};
        let source = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ if !self.acme_domain.is_empty() => TlsSource::Acme(AcmeSettings {
                domains: self.acme_domain.clone(),
                email: self.acme_email.clone(),
                directory: self.acme_directory.clone(),
                ca_file: self.acme_ca_file.clone(),
                challenge: self.acme_challenge,
            }),
            _ => return None,
        };
        Some(TlsSettings {
            source,
            reload_interval: Duration::from_secs(self.tls_reload_interval.max(1)),
        })
    }
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(format!("{other:?}: expected on or off")),
    }
}

impl Default for ServeArgs {
    fn default() -> Self {
        match Cli::try_parse_from(["keyward", "serve"]) {
            Ok(Cli {
                command: Some(Command::Serve(args)),
                ..
            }) => *args,
            // Unreachable: "serve" alone always parses (every flag has a default).
            _ => ServeArgs {
                bind: SocketAddr::from(([127, 0, 0, 1], 3002)),
                trusted_proxies: Vec::new(),
                rate_limit_per_ip: 600,
                rate_limit_per_api_key: 60_000,
                rate_limit_failed_auth: 20,
                rate_limit_login: 5,
                rate_limit_per_license_key: 120,
                rate_limit_update_checks: 60,
                rate_limit_downloads: 10,
                max_bundle_bytes: crate::config::DEFAULT_MAX_BUNDLE_BYTES,
                max_body_bytes: 256 * 1024,
                maintenance_interval: 30,
                audit_retention_validations: AuditRetention::DEFAULT_VALIDATIONS_DAYS,
                audit_retention_licenses: AuditRetention::DEFAULT_LICENSES_DAYS,
                audit_retention_admin: AuditRetention::DEFAULT_ADMIN_DAYS,
                abuse_detection: true,
                webhook_allow_private: false,
                header_timeout: 10,
                body_timeout: 10,
                idle_timeout: 5,
                max_connections_per_ip: 256,
                max_connections: 10_000,
                metrics: true,
                metrics_token: None,
                metrics_token_file: None,
                metrics_bind: None,
                // Outgoing HTTPS and event webhooks (issue 13)
                extra_ca_file: None,
                webhook_disable_after: crate::config::DEFAULT_WEBHOOK_DISABLE_AFTER,
                backup_every: None,
                backup_keep: 7,
                backup_dir: None,
                backup_passphrase_file: None,
                litestream: false,
                https: HttpsArgs::default(),
                // --- E-mail to customers (issue 13) ---
                public_url: None,
                smtp_allow_plaintext: false,
                smtp_allow_private: false,
                smtp_timeout: 30,
                mail_retry_base: 60,
                mail_max_attempts: 8,
                expiry_reminder_days: 7,
                rate_limit_mail_requests: 5,
                // Update feeds (issue 15).
                feed_download_ttl: crate::config::DEFAULT_FEED_DOWNLOAD_TTL_SECS,
            },
        }
    }
}

impl ServeArgs {
    /// The settings of `serve`; fails only on a passphrase file that cannot be read.
    pub fn into_serve_config(self, data_dir: PathBuf) -> Result<Config, Error> {
        let schedule = match self.backup_every {
            None => None,
            Some(every) => Some(BackupSchedule {
                every,
                keep: self.backup_keep.max(1) as usize,
                dir: self
                    .backup_dir
                    .clone()
                    .unwrap_or_else(|| storage::default_backup_dir(&data_dir)),
                passphrase: PassphraseArgs {
                    passphrase_file: self.backup_passphrase_file.clone(),
                    passphrase_env: None,
                }
                .read()?
                .map(Passphrase::new),
            }),
        };
        let mut config = self.into_config(data_dir);
        config.backup_schedule = schedule;
        Ok(config)
    }

    pub fn into_config(self, data_dir: PathBuf) -> Config {
        Config {
            bind: self.bind,
            data_dir,
            trusted_proxies: self.trusted_proxies,
            rate_limits: RateLimits {
                per_ip: self.rate_limit_per_ip,
                per_api_key: self.rate_limit_per_api_key,
                failed_auth_per_ip: self.rate_limit_failed_auth,
                login_per_minute: self.rate_limit_login,
                per_license_key: self.rate_limit_per_license_key,
                update_checks_per_15_min: self.rate_limit_update_checks,
                downloads_per_hour: self.rate_limit_downloads,
            },
            max_body_bytes: self.max_body_bytes,
            max_bundle_bytes: self.max_bundle_bytes,
            maintenance_interval: Duration::from_secs(self.maintenance_interval.max(1)),
            audit_retention: AuditRetention::from_days(
                self.audit_retention_validations,
                self.audit_retention_licenses,
                self.audit_retention_admin,
            ),
            read_pool_size: 8,
            abuse_detection: self.abuse_detection,
            webhook_retry_base: Duration::from_secs(5),
            webhook_allow_private: self.webhook_allow_private,
            connections: crate::net::ConnectionLimits {
                header_timeout: Duration::from_secs(self.header_timeout.max(1)),
                body_timeout: Duration::from_secs(self.body_timeout.max(1)),
                idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
                max_per_ip: self.max_connections_per_ip.max(1),
                max_total: self.max_connections.max(1),
            },
            metrics: crate::config::MetricsConfig {
                enabled: self.metrics,
                token: self.metrics_token,
                token_file: self.metrics_token_file,
                bind: self.metrics_bind,
            },
            // Outgoing HTTPS and event webhooks (issue 13)
            extra_ca_file: self.extra_ca_file,
            webhook_disable_after: self.webhook_disable_after,
            backup_schedule: None,
            litestream: self.litestream,
            tls: self.https.tls_settings(),
            http_redirect_bind: self.https.http_redirect_bind,
            // --- E-mail to customers (issue 13) ---
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            smtp_allow_plaintext: self.smtp_allow_plaintext,
            smtp_allow_private: self.smtp_allow_private || self.smtp_allow_plaintext,
            smtp_timeout: Duration::from_secs(self.smtp_timeout.max(1)),
            mail_retry_base: Duration::from_secs(self.mail_retry_base.max(1)),
            mail_max_attempts: self.mail_max_attempts.max(1),
            mail_poll_interval: Duration::from_secs(1),
            expiry_reminder_days: self.expiry_reminder_days,
            mail_requests_per_hour: self.rate_limit_mail_requests,
            password_reset_valid: Duration::from_secs(3600),
            // Update feeds (issue 15).
            feed_download_ttl: Duration::from_secs(self.feed_download_ttl.max(1)),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ProductCommand {
    /// Create a product (with its Ed25519 signing key) and print its id and public key.
    Create {
        #[arg(long)]
        name: String,
        /// Unique within the tenant: a-z, 0-9, '-'.
        #[arg(long)]
        slug: String,
        /// Tenant slug.
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
        /// DESKTOP, WEB, MOBILE, PLUGIN or API.
        #[arg(long = "type", default_value = "DESKTOP")]
        product_type: String,
        /// Default license type: PERPETUAL, SUBSCRIPTION, TRIAL or BETA.
        #[arg(long, default_value = "PERPETUAL")]
        license_type: String,
        /// Default maximum activations (machines) per license, 1-1000.
        #[arg(long, default_value_t = 3)]
        max_activations: u32,
        /// Key template: X = random symbol, other characters literal; at least 16 X.
        #[arg(long, default_value = products::DEFAULT_KEY_FORMAT)]
        key_format: String,
        /// Seconds between expected heartbeats (none when absent).
        #[arg(long)]
        heartbeat_interval: Option<u32>,
        /// Extra seconds a late machine is given before it counts as dead.
        #[arg(long, default_value_t = 0)]
        heartbeat_grace: u32,
        /// Keep dead machines (reported HEARTBEAT_DEAD) instead of culling them.
        #[arg(long)]
        keep_dead_machines: bool,
        /// Entitlement codes its licenses may carry, comma-separated (e.g. PRO_EXPORT,CLOUD_SYNC).
        #[arg(long, value_delimiter = ',')]
        entitlements: Vec<String>,
    },
    /// List a tenant's products.
    List {
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create an API key and print it alone on stdout (it is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// VALIDATE_ONLY, CREATE_LICENSE, READ_ONLY or FULL_ADMIN.
        #[arg(long)]
        scope: String,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
        /// Restrict the key to one product (its slug).
        #[arg(long)]
        product: Option<String>,
    },
    /// List a tenant's API keys (prefixes only; keys are never shown again).
    List {
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
    /// Revoke an API key by id or prefix.
    Revoke {
        id_or_prefix: String,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Print a new one-time setup URL (invalidating earlier ones) while no operator exists;
    /// refuses once one does.
    SetupUrl {
        /// The address the server listens on (the URL's host and port).
        #[arg(long, env = "KEYWARD_BIND", default_value = "127.0.0.1:3002")]
        bind: SocketAddr,
        #[command(flatten)]
        tls: ListenerTls,
    },
    /// Create an operator (also the first one, without the setup URL); prints its id.
    Create {
        #[arg(long)]
        email: String,
        /// ADMIN or USER.
        #[arg(long, default_value = "USER")]
        role: String,
        /// Put a USER into this tenant (by slug) instead of a new workspace of its own.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        password: operators::PasswordSource,
    },
    /// List operators: id, e-mail, role, enabled/disabled, tenant id.
    List,
    /// Set a new password for an operator (by e-mail or id); ends its sessions.
    ResetPassword {
        operator: String,
        #[command(flatten)]
        password: operators::PasswordSource,
        /// Also enable the operator if it was disabled.
        #[arg(long)]
        enable: bool,
    },
    /// Disable an operator (by e-mail or id): it can no longer sign in; its sessions end.
    Disable { operator: String },
    /// Enable a disabled operator again.
    Enable { operator: String },
    /// Turn off the two-factor login of an operator (by e-mail or id) who lost the device and
    /// the recovery codes: its password alone signs in again (it must enrol again if its
    /// workspace requires two-factor login).
    #[command(name = "disable-2fa")]
    Disable2fa { operator: String },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let data_dir = cli.data_dir;
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::default()))
    {
        Command::Serve(args) => {
            crate::server::serve(args.into_serve_config(data_dir)?).await?;
            Ok(0)
        }
        Command::Init => {
            let existed = storage::has_database(&data_dir);
            storage::open_data_dir(&data_dir, true)?;
            let shown = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
            if existed {
                eprintln!("{} already holds an installation", shown.display());
            } else {
                eprintln!("installation created in {}", shown.display());
            }
            Ok(0)
        }
        Command::Product(cmd) => {
            let shell = Shell::open(&data_dir)?;
            let out = product_command(&shell.state, cmd).await;
            shell.close().await;
            out
        }
        Command::Apikey(cmd) => {
            let shell = Shell::open(&data_dir)?;
            let out = apikey(&shell.state, cmd).await;
            shell.close().await;
            out
        }
        Command::Tenant(cmd) => {
            let shell = Shell::open(&data_dir)?;
            let out = tenant(&shell.state, cmd).await;
            shell.close().await;
            out
        }
        Command::Admin(cmd) => {
            let shell = Shell::open(&data_dir)?;
            let out = admin(&shell.state, cmd).await;
            shell.close().await;
            out
        }
        Command::License(cmd) => {
            let shell = Shell::open(&data_dir)?;
            let out = licenses::run(&shell.state, cmd).await;
            shell.close().await;
            out
        }
        Command::Import(args) => {
            let shell = Shell::open(&data_dir)?;
            let out = import::import(&shell.state, args).await;
            shell.close().await;
            out
        }
        Command::Doctor(args) => doctor::run(&data_dir, args),
        Command::Backup { file, passphrase } => {
            let passphrase = passphrase.read()?;
            let done = service::ops::backup(&data_dir, &file, passphrase.as_deref())?;
            eprintln!(
                "backup written to {} ({} bytes: database at schema version {}, master key, {} \
                 bundle(s){})",
                done.path.display(),
                done.bytes,
                done.schema_version,
                done.bundles,
                if done.encrypted { "; encrypted" } else { "" }
            );
            Ok(0)
        }
        Command::Restore { file, passphrase } => {
            let passphrase = passphrase.read()?;
            let done = service::ops::restore(&file, &data_dir, passphrase.as_deref())?;
            let shown = std::path::absolute(&done.data_dir).unwrap_or(done.data_dir);
            eprintln!(
                "restored into {}: database at schema version {} (made by keyward {} at {}), \
                 master key, {} bundle(s); every checksum matched. Start it with `keyward \
                 --data-dir {} serve`",
                shown.display(),
                done.manifest.schema_version,
                done.manifest.keyward_version,
                done.manifest.created_at,
                done.bundles,
                shown.display()
            );
            Ok(0)
        }
        Command::Release(cmd) => release::run(cmd).await,
        Command::Healthcheck { bind, tls } => {
            match service::ops::probe_health(bind, &tls.probe()) {
                Ok(()) => Ok(0),
                Err(why) => {
                    eprintln!("unhealthy: {why}");
                    Ok(1)
                }
            }
        }
    }
}

/// The application state of the data directory, for commands that go through the services
/// like the server does (same writer, same audit trail); runs beside a live server.
struct Shell {
    state: AppState,
    writer: crate::storage::Writer,
}

impl Shell {
    /// An operator command works on an existing installation only: run from the wrong
    /// directory, it must not create a new, empty one.
    fn open(data_dir: &std::path::Path) -> Result<Self, Error> {
        let mut config = ServeArgs::default().into_config(data_dir.to_path_buf());
        config.read_pool_size = 1;
        let (db, writer, master) = crate::server::open(&config, false)?;
        Ok(Self {
            state: AppState::new(config, db, master),
            writer,
        })
    }

    /// Commits whatever is still queued (audit events), then stops the writer.
    async fn close(self) {
        let Self { state, writer } = self;
        drop(state);
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    }
}

fn parse_choice<T>(
    what: &str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    choices: String,
) -> Result<T, Error> {
    parse(&text.to_ascii_uppercase())
        .ok_or_else(|| Error::Invalid(format!("{what} {text:?} is not one of {choices}")))
}

async fn product_command(state: &AppState, cmd: ProductCommand) -> Result<i32, Error> {
    match cmd {
        ProductCommand::Create {
            name,
            slug,
            tenant,
            product_type,
            license_type,
            max_activations,
            key_format,
            heartbeat_interval,
            heartbeat_grace,
            keep_dead_machines,
            entitlements,
        } => {
            let draft = ProductDraft {
                tenant_id: None,
                name,
                slug: Some(slug),
                product_type: parse_choice(
                    "--type",
                    &product_type,
                    ProductType::parse,
                    ProductType::choices(),
                )?,
                default_license_type: parse_choice(
                    "--license-type",
                    &license_type,
                    LicenseType::parse,
                    LicenseType::choices(),
                )?,
                default_max_activations: max_activations,
                key_format: KeyFormat::parse(&key_format)?,
                heartbeat: heartbeat_interval.map(|interval_secs| HeartbeatPolicy {
                    interval_secs,
                    grace_secs: heartbeat_grace,
                    cull_dead: !keep_dead_machines,
                }),
                settings: ProjectSettings::default(),
                entitlements: entitlements.iter().map(|c| c.trim().to_owned()).collect(),
            };
            let ctx = service::tenants::cli_context(state, &tenant)?;
            let product = catalog::create_product(state, &ctx, draft).await?.product;
            println!("{}", product.id);
            eprintln!(
                "product {} ({}) created; public key (Ed25519, base64): {}",
                product.slug,
                product.name,
                crate::crypto::base64(&product.signing_public_key)
            );
            Ok(0)
        }
        ProductCommand::List { tenant } => {
            let ctx = service::tenants::cli_context(state, &tenant)?;
            let (all, _) = catalog::list_of_tenant(state, &ctx, &ctx.tenant, false, u32::MAX, 0)?;
            for p in all {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.id,
                    p.slug,
                    p.status,
                    p.name,
                    crate::crypto::base64(&p.signing_public_key)
                );
            }
            Ok(0)
        }
    }
}

/// The shell reaches every tenant; a command naming `--tenant` means that one alone.
fn only_its_tenant(ctx: Ctx) -> Ctx {
    Ctx {
        tenants: crate::domain::TenantScope::Only(ctx.tenant.clone()),
        ..ctx
    }
}

async fn apikey(state: &AppState, cmd: ApiKeyCommand) -> Result<i32, Error> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            scope,
            tenant,
            product,
        } => {
            let scope = parse_choice("--scope", &scope, Scope::parse, Scope::choices())?;
            let ctx = service::tenants::cli_context(state, &tenant)?;
            let minted = service::api_keys::create(
                state,
                &ctx,
                NewApiKey {
                    name,
                    scope,
                    product: product.map(ProductRef::Slug),
                },
            )
            .await?;
            println!("{}", minted.plaintext);
            eprintln!("store this key now: it is shown only once");
            Ok(0)
        }
        ApiKeyCommand::List { tenant } => {
            let ctx = only_its_tenant(service::tenants::cli_context(state, &tenant)?);
            for k in service::api_keys::list(state, &ctx)?.iter().rev() {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                println!(
                    "{}\t{}…\t{}\t{}\t{}\t{}",
                    k.id,
                    k.prefix,
                    k.scope,
                    status,
                    k.product_id.as_deref().unwrap_or("-"),
                    k.name
                );
            }
            Ok(0)
        }
        ApiKeyCommand::Revoke {
            id_or_prefix,
            tenant,
        } => {
            let ctx = only_its_tenant(service::tenants::cli_context(state, &tenant)?);
            match service::api_keys::revoke(state, &ctx, &id_or_prefix).await {
                Ok(r) if r.newly => {
                    eprintln!("API key {id_or_prefix} revoked");
                    Ok(0)
                }
                Ok(_) | Err(Error::NotFound(_)) => {
                    Err(Error::Invalid(format!("no live API key {id_or_prefix:?}")))
                }
                Err(e) => Err(e),
            }
        }
    }
}

async fn tenant(state: &AppState, cmd: TenantCommand) -> Result<i32, Error> {
    let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
    match cmd {
        TenantCommand::Create { slug, name } => {
            let t = service::tenants::create(state, &ctx, &slug, &name).await?;
            println!("{}", t.id);
            Ok(0)
        }
        TenantCommand::List => {
            for t in service::tenants::list(state, &ctx)? {
                println!("{}\t{}\t{}", t.id, t.slug, t.name);
            }
            Ok(0)
        }
    }
}

async fn admin(state: &AppState, cmd: AdminCommand) -> Result<i32, Error> {
    match cmd {
        AdminCommand::SetupUrl { bind, tls } => {
            let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
            let setup = service::operators::issue_setup_token(state, &ctx).await?;
            println!("{}", tls.setup_url(bind, &setup.token));
            eprintln!(
                "open it to create the first administrator: it works once, for 24 h; \
                 earlier setup URLs no longer work"
            );
            Ok(0)
        }
        AdminCommand::Create {
            email,
            role,
            tenant,
            password,
        } => operators::create(state, email, &role, tenant, password).await,
        AdminCommand::List => operators::list(state),
        AdminCommand::ResetPassword {
            operator,
            password,
            enable,
        } => operators::change(state, &operator, Some(password), enable.then_some(false)).await,
        AdminCommand::Disable { operator } => {
            operators::change(state, &operator, None, Some(true)).await
        }
        AdminCommand::Enable { operator } => {
            operators::change(state, &operator, None, Some(false)).await
        }
        AdminCommand::Disable2fa { operator } => operators::disable_2fa(state, &operator).await,
    }
}
