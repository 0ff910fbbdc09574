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

/// True when the server at `bind` answers `/api/health` with 200. A plain HTTP/1.0 GET: the
/// binary carries no HTTP client for this alone.
pub fn probe_health(bind: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&bind, Duration::from_secs(3)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /api/health HTTP/1.0\r\nHost: {bind}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}
