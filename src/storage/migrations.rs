//! Schema creation and upgrades. `schema.sql` creates a fresh database at the latest version;
//! each later version is one migration, applied in its own transaction, recorded in
//! `PRAGMA user_version`. A database newer than this binary is refused, never touched.

use std::path::Path;

use rusqlite::Connection;

use crate::error::Error;

/// The schema version `schema.sql` creates.
pub const LATEST_VERSION: i64 = 1;

const SCHEMA: &str = include_str!("../../schema.sql");

/// Migration `i` upgrades version `i + 1` to `i + 2`. Empty until the schema first changes.
const MIGRATIONS: &[&str] = &[];

/// Opens (creating if needed) the database at `path`, configured and at the latest version.
pub fn open_and_migrate(path: &Path) -> Result<Connection, Error> {
    let mut conn = Connection::open(path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    super::configure_connection(&conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > LATEST_VERSION {
        return Err(Error::Storage(format!(
            "the database is at schema version {version}, but this keyward only knows versions up \
             to {LATEST_VERSION}: upgrade keyward (or restore a backup made by this version)"
        )));
    }
    if version == 0 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(&format!("PRAGMA user_version = {LATEST_VERSION}"))?;
        crate::domain::tenants::repo::ensure_default(&tx)?;
        tx.commit()?;
        return Ok(());
    }
    debug_assert_eq!(MIGRATIONS.len() as i64, LATEST_VERSION - 1);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
        let to = i as i64 + 2;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))?;
        tx.commit()?;
        tracing::info!("database migrated to schema version {to}");
    }
    Ok(())
}
