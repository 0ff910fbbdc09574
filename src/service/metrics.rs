//! The server's Prometheus metrics, as `GET /metrics` answers them: what the probes recorded
//! (`telemetry`), plus figures read at scrape time (file sizes, open abuse flags, limiter
//! refusals, queue depths), so nothing on the request path keeps them up to date.

use crate::domain::abuse::repo as abuse_repo;
use crate::error::Error;
use crate::state::AppState;
use crate::telemetry::Snapshot;

/// Whether `/metrics` exists on this server at all (metrics recorded).
pub fn served(state: &AppState) -> bool {
    state.telemetry.enabled()
}

/// Whether `presented` is the configured bearer token for `/metrics` on the main listener
/// (constant time). `None` configured: the endpoint does not exist there.
pub fn token_matches(state: &AppState, presented: &str) -> Option<bool> {
    let expected = state.config.metrics.token.as_deref()?;
    Some(crate::crypto::constant_time_eq(
        expected.as_bytes(),
        presented.as_bytes(),
    ))
}

/// The exposition text of this server's metrics.
pub fn scrape(state: &AppState) -> Result<String, Error> {
    let db_path = crate::storage::database_path(&state.config.data_dir);
    let size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut wal = db_path.clone().into_os_string();
    wal.push("-wal");
    let now = crate::domain::now_ms();
    let (abuse_flags_open, ip_blocks_active, webhooks, mail_pending) = state.db.read(|c| {
        Ok((
            abuse_repo::open_by_kind(c)?,
            abuse_repo::active_block_count(c, now)?,
            crate::domain::webhooks::repo::pending_count(c)?,
            crate::domain::mail::repo::pending_count(c)?,
        ))
    })?;
    let l = &state.limits;
    let snapshot = Snapshot {
        database_bytes: size(&db_path),
        wal_bytes: size(std::path::Path::new(&wal)),
        writer_queue: state.db.writer().queue_depth(),
        abuse_flags_open,
        ip_blocks_active,
        rate_limit_refusals: vec![
            ("per_ip", l.per_ip.refusals()),
            ("per_api_key", l.per_api_key.refusals()),
            ("failed_auth_per_ip", l.failed_auth_per_ip.refusals()),
            ("login_per_ip", l.login_per_ip.refusals()),
            ("login_per_account", l.login_per_account.refusals()),
            ("login_per_device", l.login_per_device.refusals()),
            ("per_license_key", l.per_license_key.refusals()),
            (
                "update_checks_per_license",
                l.update_checks_per_license.refusals(),
            ),
            ("downloads_per_license", l.downloads_per_license.refusals()),
            ("downloads_per_ip", l.downloads_per_ip.refusals()),
        ],
        outgoing_queues: vec![("webhooks", webhooks), ("email", mail_pending)],
    };
    Ok(state.telemetry.render(&snapshot))
}

/// How a scrape reached the server.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// The main listener, with the bearer token it presented (if any), from `ip`.
    Token {
        presented: Option<&'a str>,
        ip: Option<std::net::IpAddr>,
    },
    /// The `--metrics-bind` listener: reaching it is the authorization.
    PrivateListener,
}

/// `GET /metrics`: the exposition text, if `access` may read it. 404 while metrics are off, or
/// on the main listener while no token is configured (the endpoint does not exist there); 401
/// for a missing or wrong token; wrong tokens spend the address's failed-credential budget
/// (429 once it is spent), so the token cannot be guessed at line rate.
pub fn read(state: &AppState, access: Access<'_>) -> Result<String, Error> {
    if !served(state) {
        return Err(Error::NotFound("metrics endpoint"));
    }
    if let Access::Token { presented, ip } = access {
        match token_matches(state, presented.unwrap_or("")) {
            None => return Err(Error::NotFound("metrics endpoint")),
            Some(true) => {}
            Some(false) => {
                if let Some(ip) = ip {
                    state.limits.failed_auth_per_ip.check(&ip)?;
                }
                return Err(Error::Unauthorized(
                    "Send Authorization: Bearer <the metrics token>".into(),
                ));
            }
        }
    }
    scrape(state)
}
