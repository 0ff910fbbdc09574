//! Routes, middleware, background maintenance and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api;
use crate::api::admin::abuse::AbuseApi;
use crate::api::admin::artifacts::ArtifactsApi;
use crate::api::admin::customers::CustomersApi;
use crate::api::admin::feeds::FeedsAdminApi;
use crate::api::admin::mail::MailApi;
use crate::api::admin::mail_templates::MailTemplatesApi;
use crate::api::admin::operators::OperatorsApi;
use crate::api::admin::overview::OverviewApi;
use crate::api::admin::payments::PaymentEndpointsApi;
use crate::api::admin::projects::ProjectsApi;
use crate::api::admin::releases::ReleasesApi;
use crate::api::admin::signing_keys::SigningKeysApi;
use crate::api::admin::two_factor::TwoFactorApi;
use crate::api::admin::webhooks::WebhooksApi;
use crate::api::admin::{api_keys::ApiKeysApi, keys::KeysApi, offline::OfflineActivationApi};
use crate::api::client::{
    license_file::LicenseFileApi, session::SessionApi, telegram::TelegramApi, validate::ValidateApi,
};
use crate::api::metrics::MetricsApi;
use crate::api::payments::PaymentWebhooksApi;
use crate::api::portal::PortalApi;
use crate::api::v1::{
    feeds::FeedsApi, health::HealthApi, license::LicenseApi, license_manage::LicenseManageApi,
    products::ProductApi, updates::UpdatesApi,
};
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::domain::operators::SetupToken;
use crate::error::Error;
use crate::maintenance;
use crate::state::AppState;
use crate::storage::{self, Db, Writer};

/// The OpenAPI service of every API operation.
/// Every API of both contracts, in one OpenAPI document.
pub type Apis = (
    LicenseApi,
    LicenseManageApi,
    ProductApi,
    HealthApi,
    // Operators and their two-factor login.
    (OperatorsApi, TwoFactorApi),
    // Projects and their signing keys, keys and their air-gapped activation: each pair shares
    // one place (a tuple holds at most 16 APIs).
    (ProjectsApi, SigningKeysApi),
    (KeysApi, OfflineActivationApi),
    ApiKeysApi,
    ValidateApi,
    // A tuple holds at most 16 APIs: the key/HWID face's app operations share one place.
    (SessionApi, LicenseFileApi),
    TelegramApi,
    OverviewApi,
    // Releases, their per-platform artifacts and the project's feeds share one place.
    (ReleasesApi, ArtifactsApi, FeedsAdminApi),
    // The vendor contract's update endpoints and the desktop updaters' feeds.
    (UpdatesApi, FeedsApi),
    PortalApi,
    // Abuse detection, selling (payment endpoints and the providers' webhooks) and metrics share
    // one place (a tuple holds at most 16 APIs).
    (
        AbuseApi,
        PaymentEndpointsApi,
        PaymentWebhooksApi,
        MetricsApi,
        WebhooksApi,
        // E-mail to customers and finding them (issue 13).
        (MailApi, MailTemplatesApi, CustomersApi),
    ),
);

pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            LicenseApi {
                state: state.clone(),
            },
            LicenseManageApi {
                state: state.clone(),
            },
            ProductApi {
                state: state.clone(),
            },
            HealthApi {
                state: state.clone(),
            },
            (
                OperatorsApi {
                    state: state.clone(),
                },
                TwoFactorApi {
                    state: state.clone(),
                },
            ),
            (
                ProjectsApi {
                    state: state.clone(),
                },
                SigningKeysApi {
                    state: state.clone(),
                },
            ),
            (
                KeysApi {
                    state: state.clone(),
                },
                OfflineActivationApi {
                    state: state.clone(),
                },
            ),
            ApiKeysApi {
                state: state.clone(),
            },
            ValidateApi {
                state: state.clone(),
            },
            (
                SessionApi {
                    state: state.clone(),
                },
                LicenseFileApi {
                    state: state.clone(),
                },
            ),
            TelegramApi {
                state: state.clone(),
            },
            OverviewApi {
                state: state.clone(),
            },
            (
                ReleasesApi {
                    state: state.clone(),
                },
                ArtifactsApi {
                    state: state.clone(),
                },
                FeedsAdminApi {
                    state: state.clone(),
                },
            ),
            (
                UpdatesApi {
                    state: state.clone(),
                },
                FeedsApi {
                    state: state.clone(),
                },
            ),
            PortalApi {
                state: state.clone(),
            },
            (
                AbuseApi {
                    state: state.clone(),
                },
                PaymentEndpointsApi {
                    state: state.clone(),
                },
                PaymentWebhooksApi {
                    state: state.clone(),
                },
                MetricsApi {
                    state: state.clone(),
                },
                WebhooksApi {
                    state: state.clone(),
                },
                (
                    MailApi {
                        state: state.clone(),
                    },
                    MailTemplatesApi {
                        state: state.clone(),
                    },
                    CustomersApi {
                        state: state.clone(),
                    },
                ),
            ),
        ),
        "Keyward",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
}

const DESCRIPTION: &str = "Self-hosted license-key server.\n\n\
Vendor API (`/api/v1`): `X-API-Key` authentication; validation responses carry `X-Signature`, \
an Ed25519 signature (base64) over the exact body made with the product's key \
(`GET /api/v1/updates/public-key`). Errors: `{\"success\":false,\"error\":{\"code\",\"message\"}}`.\n\n\
Admin and key/HWID API (`/api/*`): an operator session token (`Authorization: Bearer`, or the \
`keyward_token` cookie set by login) or a FULL_ADMIN API key. Errors: \
`{\"success\":false,\"error\":\"…\",\"code\":\"…\"}`.";

pub fn app(state: AppState) -> impl Endpoint {
    let api = openapi(&state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let guard_state = state.clone();
    // The OpenAPI service's paths carry their full `/api/...` prefix, so nothing is stripped.
    let api_routes = Route::new()
        .at("/api/openapi.json", spec)
        .nest("/api/docs", docs)
        .nest_no_strip("/api", api)
        .around(move |ep, req| api::guard(ep, req, guard_state.clone()));
    let metrics_state = state.clone();
    crate::web::mount(Route::new())
        .at("/metrics", api::metrics::service(&state))
        .nest_no_strip("/api", api_routes)
        .with(poem::middleware::CookieJarManager::new())
        .data(state)
        .around(move |ep, req| api::shared::http_metrics::track(ep, req, metrics_state.clone()))
}

/// The `--metrics-bind` listener's app: `/metrics` alone, without a token.
pub fn metrics_app(state: AppState) -> impl Endpoint {
    let metrics_state = state.clone();
    Route::new()
        .at("/metrics", poem::get(api::metrics::scrape_private))
        .data(state)
        .around(move |ep, req| api::shared::http_metrics::track(ep, req, metrics_state.clone()))
}

/// A server running in this process (tests and examples start one on port 0).
pub struct Running {
    pub addr: SocketAddr,
    /// The `--metrics-bind` listener's address, when there is one.
    pub metrics_addr: Option<SocketAddr>,
    /// The listener speaks TLS (`--tls-cert` or `--acme-domain`).
    pub https: bool,
    pub state: AppState,
    /// While no operator exists: the one-time setup token issued at this start (its URL is
    /// what `serve` prints). `None` once setup is done.
    pub setup_token: Option<SetupToken>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Graceful stop: in-flight requests finish, queued writes are committed.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .map_err(|e| Error::Storage(format!("server task failed: {e}")))?
    }

    /// Resolves when the server has stopped by itself (it does not, unless it fails).
    pub async fn wait(self) -> Result<(), Error> {
        let stop = self.stop;
        let out = self
            .task
            .await
            .map_err(|e| Error::Storage(format!("server task failed: {e}")))?;
        drop(stop);
        out
    }
}

/// Opens the data directory (creating it, the database and the master key on first start).
/// Opens the installation in `config.data_dir`; only `create` (the server, `keyward init`) may
/// make a new one: an operator command run from the wrong directory must not.
pub fn open(config: &Config, create: bool) -> Result<(Db, Writer, MasterKey), Error> {
    let (writer_conn, master) = storage::open_data_dir(&config.data_dir, create)?;
    let path = storage::database_path(&config.data_dir);
    if create {
        give_space_back(&writer_conn);
    }
    if config.litestream {
        // Litestream copies WAL frames before it checkpoints them; the writer's automatic
        // checkpoints would otherwise race it (see README, "Continuous replication").
        writer_conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
    }
    let writer = Writer::start(writer_conn)?;
    let pool = storage::read_pool(&path, config.read_pool_size)?;
    Ok((Db::new(pool, writer.handle()), writer, master))
}

/// Turns incremental auto-vacuum on for a database made before version 6, so the space of pruned
/// audit rows goes back to the file system: one full VACUUM at the first start (the server
/// answers nothing meanwhile). If it fails (no disk space for the copy, the file locked by
/// another process) the server starts anyway: pruned pages are then reused, not given back, and
/// the next start tries again.
fn give_space_back(conn: &rusqlite::Connection) {
    match storage::vacuum::is_incremental(conn) {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!("cannot read the database's auto_vacuum mode: {e}");
            return;
        }
    }
    let size = storage::vacuum::pages(conn)
        .map(|p| p.page_count * p.page_size / (1024 * 1024))
        .unwrap_or(0);
    tracing::info!(
        "rewriting the database ({size} MiB) once so that pruned audit rows give their space \
         back (auto_vacuum = INCREMENTAL)…"
    );
    let started = std::time::Instant::now();
    match storage::vacuum::enable_incremental(conn) {
        Ok(_) => tracing::info!(
            "database rewritten in {:.1} s; incremental auto-vacuum is on",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => tracing::warn!(
            "could not rewrite the database for incremental auto-vacuum ({e}); space of pruned \
             audit rows is reused but not given back until a later start succeeds"
        ),
    }
}

/// Binds, starts serving and returns at once. `shutdown` (or [`Running::stop`]) stops it.
pub async fn start(mut config: Config) -> Result<Running, Error> {
    config.metrics.token = metrics_token(&config.metrics)?;
    let open_files = crate::net::raise_open_files_limit();
    let mut limits = config.connections;
    limits.max_total = crate::net::effective_max_total(&limits, open_files);
    let (db, writer, master) = open(&config, true)?;
    if let Some(path) = &config.extra_ca_file {
        crate::outgoing::client::extra_cas(path)?;
    }
    let bind = config.bind;
    let state = AppState::new(config, db, master);
    state.bundles.prepare()?;
    let swept = state.db.read(|c| {
        state
            .bundles
            .sweep_unreferenced(|sha| crate::domain::releases::repo::bundle_in_use(c, sha))
    })?;
    if swept > 0 {
        tracing::info!("removed {swept} bundle file(s) no release refers to");
    }
    // A fresh token at every start while setup is open: the printed URL is always current,
    // and one left in an old log stops working.
    let setup_token = crate::service::operators::setup_token_at_start(&state).await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Invalid(describe_listen_error(bind, &e)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("cannot listen on {bind}: {e}")))?;
    let metrics_listener = match state.config.metrics.bind {
        Some(bind) => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| Error::Invalid(describe_listen_error(bind, &e)))?;
            let addr = listener
                .local_addr()
                .map_err(|e| Error::Invalid(format!("cannot listen on {bind}: {e}")))?;
            Some((listener, addr))
        }
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, addr)| *addr);
    let (tls, redirect) = start_https(&state, addr.port(), limits).await?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let maintenance = tokio::spawn(maintenance::run(state.clone()));
    let mail_worker = tokio::spawn(crate::mailer::run(state.clone()));
    let metrics_tasks = start_metrics(&state, metrics_listener, limits);
    let backups = state.config.backup_schedule.clone().map(|schedule| {
        tracing::info!(
            "a backup archive every {} s into {}, the newest {} kept",
            schedule.every.as_secs(),
            schedule.dir.display(),
            schedule.keep
        );
        tokio::spawn(crate::service::ops::run_backup_schedule(
            state.config.data_dir.clone(),
            schedule,
        ))
    });
    let mut abuse_tasks = crate::abuse::start(&state);
    abuse_tasks.push(crate::outgoing::webhooks::start(&state));
    let app = app(state.clone()).map_to_response();
    let trusted_proxies = state.config.trusted_proxies.clone();
    let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
    let https = tls.is_some();
    let task = tokio::spawn(async move {
        let served = crate::net::serve_with_tls(
            listener,
            app,
            limits,
            trusted_proxies,
            acceptor,
            async move {
                let _ = stop_rx.await;
            },
            Duration::from_secs(30),
        )
        .await;
        maintenance.abort();
        mail_worker.abort();
        if let Some(backups) = &backups {
            backups.abort();
        }
        if let Some(tls) = &tls {
            tls.task.abort();
        }
        if let Some(redirect) = &redirect {
            redirect.abort();
        }
        for t in metrics_tasks.iter().chain(&abuse_tasks) {
            t.abort();
        }
        // Every handler has returned; commit whatever is still queued, then stop the writer.
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
        served.map_err(|e| Error::Storage(format!("server error: {e}")))
    });
    Ok(Running {
        addr,
        metrics_addr,
        https,
        state,
        setup_token,
        stop: Some(stop_tx),
        task,
    })
}

/// The metrics bearer token: given inline, or read from its file (trailing newline dropped).
fn metrics_token(metrics: &crate::config::MetricsConfig) -> Result<Option<String>, Error> {
    let Some(path) = &metrics.token_file else {
        return Ok(metrics.token.clone().filter(|t| !t.trim().is_empty()));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Invalid(format!(
            "cannot read the metrics token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Invalid(format!(
            "the metrics token file {} is empty",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}

/// The recorder's upkeep, and the `--metrics-bind` listener if configured; both end with the
/// server (their tasks are aborted, in-flight scrapes cut off: a scraper retries).
fn start_metrics(
    state: &AppState,
    listener: Option<(tokio::net::TcpListener, SocketAddr)>,
    limits: crate::net::ConnectionLimits,
) -> Vec<JoinHandle<()>> {
    let upkeep_state = state.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep_state.telemetry.upkeep();
        }
    })];
    if let Some((listener, addr)) = listener {
        let app = metrics_app(state.clone()).map_to_response();
        let trusted_proxies = state.config.trusted_proxies.clone();
        tasks.push(tokio::spawn(async move {
            let served = crate::net::serve(
                listener,
                app,
                limits,
                trusted_proxies,
                std::future::pending(),
                Duration::from_secs(1),
            )
            .await;
            if let Err(e) = served {
                tracing::error!("the metrics listener on {addr} stopped: {e}");
            }
        }));
    }
    tasks
}

/// TLS for the main listener and the plain-HTTP redirect listener, when configured.
async fn start_https(
    state: &AppState,
    https_port: u16,
    limits: crate::net::ConnectionLimits,
) -> Result<(Option<crate::tls::Tls>, Option<JoinHandle<()>>), Error> {
    let config = &state.config;
    let Some(settings) = &config.tls else {
        if config.http_redirect_bind.is_some() {
            return Err(Error::Invalid(
                "--http-redirect-bind redirects to HTTPS: it needs --tls-cert/--tls-key or \
                 --acme-domain"
                    .into(),
            ));
        }
        return Ok((None, None));
    };
    let tls = crate::tls::start(
        settings,
        &config.data_dir,
        config.http_redirect_bind.is_some(),
    )?;
    let redirect = match config.http_redirect_bind {
        None => None,
        Some(bind) => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| Error::Invalid(describe_listen_error(bind, &e)))?;
            let ep = crate::tls::redirect::endpoint(tls.certificates.clone(), https_port);
            let trusted = config.trusted_proxies.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = crate::net::serve(
                    listener,
                    ep,
                    limits,
                    trusted,
                    std::future::pending(),
                    Duration::ZERO,
                )
                .await
                {
                    tracing::error!("the HTTP redirect listener stopped: {e}");
                }
            }))
        }
    };
    Ok((Some(tls), redirect))
}

/// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), Error> {
    // Handlers are installed before the address is printed: a supervisor that reads the
    // address and at once sends SIGTERM must get a graceful stop, not the default kill.
    let signals = ShutdownSignals::install()?;
    let running = start(config).await?;
    let scheme = if running.https { "https" } else { "http" };
    say(&format!(
        "Keyward {} listening on {scheme}://{}\n  admin panel: {scheme}://{}/\n  API docs:    {scheme}://{}/api/docs\n  data dir:    {}",
        env!("CARGO_PKG_VERSION"),
        running.addr,
        running.addr,
        running.addr,
        running.state.config.data_dir.display()
    ));
    if let Some(addr) = running.metrics_addr {
        say(&format!(
            "  metrics:     http://{addr}/metrics (no token: keep this address private)"
        ));
    }
    if let Some(setup) = &running.setup_token {
        let domain = match running.state.config.tls.as_ref().map(|t| &t.source) {
            Some(crate::tls::TlsSource::Acme(acme)) => acme.domains.first().map(String::as_str),
            _ => None,
        };
        let url = setup_url(running.addr, &setup.token, running.https, domain);
        say(&format!(
            "No operator exists yet. Open {url} to create the first administrator \
             (the link works once, for 24 h; `keyward admin setup-url` prints a new one)"
        ));
    }
    signals.recv().await;
    say("shutting down: finishing requests and committing queued writes…");
    running.stop().await
}

/// A line for whoever watches the server's stdout. A closed stdout (a pipe whose reader went
/// away) must not stop the server, least of all on its way to committing queued writes.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The setup URL for a server listening on `addr`. A wildcard address (0.0.0.0, ::) is not
/// one a browser can open: the same port on loopback is. With HTTPS it is https://, on the
/// ACME `domain` when there is one (its certificate names that domain, not the address).
pub fn setup_url(addr: SocketAddr, token: &str, https: bool, domain: Option<&str>) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let host = match domain {
        Some(domain) if addr.port() == 443 => domain.to_owned(),
        Some(domain) => format!("{domain}:{}", addr.port()),
        None => SocketAddr::new(ip, addr.port()).to_string(),
    };
    let scheme = if https || domain.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}/setup?token={token}")
}

#[cfg(unix)]
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl ShutdownSignals {
    fn install() -> Result<Self, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| {
            signal(kind).map_err(|e| Error::Storage(format!("cannot install signal handler: {e}")))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

#[cfg(not(unix))]
struct ShutdownSignals;

#[cfg(not(unix))]
impl ShutdownSignals {
    fn install() -> Result<Self, Error> {
        Ok(Self)
    }

    async fn recv(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// "address in use" in words an operator acts on, rather than the OS's error text alone.
fn describe_listen_error(bind: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {bind}: address in use (another process, perhaps another keyward, \
             listens there; stop it or choose another --bind)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot listen on {bind}: permission denied (ports below 1024 need privileges)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {bind}: address not available on this machine")
        }
        _ => format!("cannot listen on {bind}: {e}"),
    }
}
