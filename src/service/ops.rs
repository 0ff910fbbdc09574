//! Operations on the installation itself: backups (on demand and on a schedule), restores, and
//! the health probe of a running server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::BackupSchedule;
use crate::error::Error;
use crate::storage;

/// The backup archive of the installation in `data_dir` (database snapshot, master key,
/// bundles, manifest), written to `target` (which must not exist), encrypted when a passphrase
/// is given. Works beside a running server; opens no writer, so a wrong `--data-dir` is
/// reported rather than turned into a fresh database.
pub fn backup(
    data_dir: &Path,
    target: &Path,
    passphrase: Option<&str>,
) -> Result<storage::BackupSummary, Error> {
    storage::write_archive(data_dir, target, passphrase)
}

/// Restores an archive into `target`, a new or empty directory, after checking it whole.
pub fn restore(
    archive: &Path,
    target: &Path,
    passphrase: Option<&str>,
) -> Result<storage::Restored, Error> {
    storage::restore(archive, target, passphrase)
}

/// Scheduled archives are named `keyward-<UTC time>.tar[.age]`, so their names sort by age and
/// rotation never touches other files (pre-migration snapshots, an operator's own copies).
const SCHEDULED_PREFIX: &str = "keyward-";

/// Makes an archive every `schedule.every` while the server runs, keeping the newest
/// `schedule.keep`. Each runs on a blocking thread: requests never wait for it (the snapshot
/// is a read, beside the writer). A failure is logged as an error and retried next time.
pub async fn run_backup_schedule(data_dir: PathBuf, schedule: BackupSchedule) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + schedule.every, schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    remove_leftovers(&schedule.dir);
    loop {
        tick.tick().await;
        let (data_dir, schedule) = (data_dir.clone(), schedule.clone());
        let started = std::time::Instant::now();
        let outcome =
            tokio::task::spawn_blocking(move || scheduled_backup(&data_dir, &schedule)).await;
        match outcome {
            Ok(Ok((summary, removed))) => tracing::info!(
                "scheduled backup written to {} ({} bytes, {} bundle(s), {}, {:.1} s); {removed} \
                 older archive(s) removed",
                summary.path.display(),
                summary.bytes,
                summary.bundles,
                if summary.encrypted {
                    "encrypted"
                } else {
                    "not encrypted"
                },
                started.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => tracing::error!(
                "SCHEDULED BACKUP FAILED: {e}; the newest good archive is older than planned, \
                 fix this (see `keyward backup`) before it is needed"
            ),
            Err(e) => tracing::error!("SCHEDULED BACKUP FAILED: the backup task stopped: {e}"),
        }
    }
}

fn scheduled_backup(
    data_dir: &Path,
    schedule: &BackupSchedule,
) -> Result<(storage::BackupSummary, usize), Error> {
    storage::private_dir(&schedule.dir)?;
    let passphrase = schedule.passphrase.as_ref().map(|p| p.expose());
    let suffix = if passphrase.is_some() {
        ".tar.age"
    } else {
        ".tar"
    };
    let target = schedule
        .dir
        .join(format!("{SCHEDULED_PREFIX}{}{suffix}", storage::stamp()));
    let summary = storage::write_archive(data_dir, &target, passphrase)?;
    let removed = rotate(&schedule.dir, schedule.keep)?;
    Ok((summary, removed))
}

/// A server stopped while it wrote an archive leaves its hidden temporary files (the snapshot,
/// the partial archive) beside where the archive would have gone.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let hidden = format!(".{SCHEDULED_PREFIX}");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&hidden) && (name.contains(".partial-") || name.contains(".db-")) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!("removed {name}, left by an interrupted backup"),
                Err(e) => {
                    tracing::warn!("cannot remove {name}, left by an interrupted backup: {e}")
                }
            }
        }
    }
}

/// Removes all but the newest `keep` scheduled archives in `dir`; returns how many went.
pub fn rotate(dir: &Path, keep: usize) -> Result<usize, Error> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Storage(format!("cannot list {}: {e}", dir.display())))?
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(SCHEDULED_PREFIX)
                && (name.ends_with(".tar") || name.ends_with(".tar.age"))
                && entry.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|entry| entry.path())
        .collect();
    archives.sort();
    let excess = archives.len().saturating_sub(keep.max(1));
    for old in &archives[..excess] {
        std::fs::remove_file(old)
            .map_err(|e| Error::Storage(format!("cannot remove {}: {e}", old.display())))?;
    }
    Ok(excess)
}

/// How the health probe speaks to the listener.
#[derive(Debug, Clone, Default)]
pub struct ProbeTls {
    /// The server is configured for HTTPS (its TLS settings are in the environment).
    pub https: bool,
    /// The name to ask for in the TLS handshake (the ACME domain), if known.
    pub server_name: Option<String>,
}

/// Whether the server at `bind` answers `/api/health` with 200, and if not, why (for the
/// container log). A plain HTTP/1.0 GET, over TLS when the server serves HTTPS: when it is
/// configured so, or when the listener does not answer plain HTTP (a TLS listener answers
/// plain text with a TLS alert). The binary carries no HTTP client for this alone.
pub fn probe_health(bind: SocketAddr, tls: &ProbeTls) -> Result<(), String> {
    let over_tls = |plain_failure: Option<String>| {
        exchange_tls(bind, tls.server_name.as_deref()).map_err(|e| match plain_failure {
            Some(plain) => format!("{plain}; over TLS: {e}"),
            None => e,
        })
    };
    let (response, https) = if tls.https {
        (over_tls(None)?, true)
    } else {
        // Nothing listening is the answer; a listener that did not answer HTTP may speak TLS.
        let mut stream = connect(bind)?;
        match exchange_plain(bind, &mut stream) {
            Ok(plain) if plain.starts_with(b"HTTP/") => (plain, false),
            Ok(_) => (over_tls(None)?, true),
            Err(e) => (over_tls(Some(e))?, true),
        }
    };
    judge(bind, &String::from_utf8_lossy(&response), https)
}

const HEALTH_REQUEST: &str = "GET /api/health HTTP/1.0\r\n";

fn connect(bind: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&bind, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect to {bind}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    Ok(stream)
}

fn exchange_plain(bind: SocketAddr, stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    stream
        .write_all(format!("{HEALTH_REQUEST}Host: {bind}\r\n\r\n").as_bytes())
        .map_err(|e| format!("cannot send a request to {bind}: {e}"))?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        // A TLS listener may reset the connection after its alert: that too says "not HTTP".
        Err(_) if !response.is_empty() => Ok(response),
        Err(e) => Err(format!("no answer from {bind}: {e}")),
    }
}

fn exchange_tls(bind: SocketAddr, server_name: Option<&str>) -> Result<Vec<u8>, String> {
    use rustls::pki_types::ServerName;
    let config = crate::tls::probe::loopback_probe_config()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let name = match server_name {
        Some(domain) => ServerName::try_from(domain.to_owned())
            .map_err(|e| format!("{domain:?} is not a server name: {e}"))?,
        None => ServerName::IpAddress(bind.ip().into()),
    };
    let conn = rustls::ClientConnection::new(config, name)
        .map_err(|e| format!("cannot start TLS with {bind}: {e}"))?;
    let mut tls = rustls::StreamOwned::new(conn, connect(bind)?);
    let host = server_name.map_or_else(|| bind.to_string(), str::to_owned);
    tls.write_all(format!("{HEALTH_REQUEST}Host: {host}\r\n\r\n").as_bytes())
        .map_err(|e| format!("no TLS session with {bind}: {e}"))?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        // Closed without close_notify after a whole answer: the answer stands.
        Err(_) if !response.is_empty() => Ok(response),
        Err(e) => Err(format!("no answer from {bind} over TLS: {e}")),
    }
}

fn judge(bind: SocketAddr, response: &str, https: bool) -> Result<(), String> {
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        return Ok(());
    }
    let status = response.lines().next().unwrap_or("").trim();
    if status.is_empty() {
        return Err(format!("{bind} closed the connection without answering"));
    }
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .unwrap_or("");
    let body: String = body.chars().take(300).collect();
    let scheme = if https { "https" } else { "http" };
    Err(format!(
        "GET {scheme}://{bind}/api/health answered {status:?}: {body}"
    ))
}
