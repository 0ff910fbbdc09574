//! SQLite storage: a read pool and one writer thread (see DESIGN.md, "Storage").

mod archive;
mod backup;
mod files;
mod migrations;
mod restore;
pub mod vacuum;
mod writer;

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

pub use archive::{Manifest, ManifestEntry, Summary as BackupSummary, write_archive};
pub use backup::{default_backup_dir, snapshot_to, stamp};
pub use files::{any_sealed_secret, has_database, make_private, open_data_dir, private_dir};
pub use migrations::{LATEST_VERSION, open_and_migrate};
pub use restore::{Restored, restore};
pub use writer::{BatchObserver, Writer, WriterHandle};

use crate::error::Error;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

/// Prepared statements each connection keeps (rusqlite's default is 16). The writer runs every
/// kind of write, and a key/HWID validation alone prepares a dozen statements: with 16, other
/// work pushes the hot path's statements out and they are parsed again. Not more: every cached
/// statement holds memory, and 128 put the idle server at its 30 MB budget (1M licenses).
const STATEMENT_CACHE: usize = 32;

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("keyward.db")
}

/// Settings every connection gets: durability first (`synchronous=FULL`), referential
/// integrity, and a busy timeout so operator commands can run beside a live server. A WAL that
/// once grew large (a burst of pruning while a long read held back checkpoints) is cut back to
/// 64 MiB when it is next reset, rather than keeping its largest size on disk.
pub fn configure_connection(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;",
    )
}

/// Storage handle shared by every request: reads from the pool, writes through the writer.
#[derive(Clone)]
pub struct Db {
    pool: ReadPool,
    writer: WriterHandle,
}

impl Db {
    pub fn new(pool: ReadPool, writer: WriterHandle) -> Self {
        Self { pool, writer }
    }

    /// Runs a read on a pooled connection. Point lookups take microseconds, so they run
    /// on the calling task; long scans should use [`Db::read_blocking`].
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let conn = self.pool.get().map_err(|e| Error::Storage(e.to_string()))?;
        f(&conn)
    }

    /// Runs a read off the async runtime (for scans that may take milliseconds).
    pub async fn read_blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(|e| Error::Storage(e.to_string()))?;
            f(&conn)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
    }

    /// Queues a write job; resolves after the transaction holding it has committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.writer.write(f).await
    }

    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// `SELECT 1` on a pooled connection: the health endpoints' database check.
    pub fn ping(&self) -> bool {
        self.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(Error::from)
        })
        .is_ok()
    }
}

pub fn read_pool(path: &Path, size: u32) -> Result<ReadPool, Error> {
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        c.busy_timeout(Duration::from_secs(5))?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Memory-mapped reads skip a copy per page on the validation path.
        c.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA query_only = ON; PRAGMA mmap_size = 268435456;",
        )
    });
    r2d2::Pool::builder()
        .max_size(size)
        // r2d2_sqlite's validity check runs `SELECT 1` (parsed and prepared anew) on every
        // checkout, twice per validation; a local SQLite connection cannot go stale like a
        // network one, so the check only costs time.
        .test_on_check_out(false)
        .min_idle(Some(1))
        .build(manager)
        .map_err(|e| Error::Storage(format!("cannot open the read pool: {e}")))
}

/// Runs `f` inside a nested savepoint of the current write job and undoes what it wrote if it
/// fails. A job that records a refusal (and so commits) uses it to keep nothing of the refused
/// operation: a validation refused for its session limit must not leave the machine bound.
pub fn undo_on_error<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    writer::run_cached(conn, "SAVEPOINT undo_on_error")?;
    let outcome = f(conn);
    if outcome.is_err() {
        writer::run_cached(conn, "ROLLBACK TO undo_on_error")?;
    }
    writer::run_cached(conn, "RELEASE undo_on_error")?;
    outcome
}
