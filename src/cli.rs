//! The command line. Every flag is also an environment variable (`KEYWARD_*`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{AuditRetention, Config, RateLimits};
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
    Serve(ServeArgs),
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
    /// Write a consistent snapshot of the live database to FILE.
    Backup {
        /// The file to create; must not exist.
        file: PathBuf,
    },
    /// Exit 0 if the server at --bind answers healthy, 1 otherwise (for container checks).
    Healthcheck {
        #[arg(long, env = "KEYWARD_BIND", default_value = "127.0.0.1:3002")]
        bind: SocketAddr,
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
    #[command(flatten)]
    pub https: HttpsArgs,
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
            }) => args,
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
                https: HttpsArgs::default(),
            },
        }
    }
}

impl ServeArgs {
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
            tls: self.https.tls_settings(),
            http_redirect_bind: self.https.http_redirect_bind,
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
    },
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
        .unwrap_or_else(|| Command::Serve(ServeArgs::default()))
    {
        Command::Serve(args) => {
            crate::server::serve(args.into_config(data_dir)).await?;
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
        Command::Backup { file } => {
            service::ops::backup(&data_dir, &file)?;
            eprintln!("backup written to {}", file.display());
            Ok(0)
        }
        Command::Healthcheck { bind } => match service::ops::probe_health(bind) {
            Ok(()) => Ok(0),
            Err(why) => {
                eprintln!("unhealthy: {why}");
                Ok(1)
            }
        },
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
        AdminCommand::SetupUrl { bind } => {
            let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
            let setup = service::operators::issue_setup_token(state, &ctx).await?;
            println!("{}", crate::server::setup_url(bind, &setup.token));
            eprintln!(
                "open it to create the first administrator: it works once, for 24 h; \
                 earlier setup URLs no longer work"
            );
            Ok(0)
        }
    }
}
