//! Operations on the installation itself: backups and the health probe of a running server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::storage;

/// A consistent snapshot of the live database in `data_dir`, written to `target` (which must
/// not exist). Works beside a running server; opens no writer, so a wrong `--data-dir` is
/// reported rather than turned into a fresh database.
pub fn backup(data_dir: &Path, target: &Path) -> Result<(), Error> {
    storage::backup_to(data_dir, target)
}

/// Whether the server at `bind` answers `/api/health` with 200, and if not, why (for the
/// container log). A plain HTTP/1.0 GET: the binary carries no HTTP client for this alone.
pub fn probe_health(bind: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&bind, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect to {bind}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /api/health HTTP/1.0\r\nHost: {bind}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send a request to {bind}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("no answer from {bind}: {e}"))?;
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
    Err(format!(
        "GET http://{bind}/api/health answered {status:?}: {body}"
    ))
}
