//! Online snapshots of the live database (consistent even while the server writes), the
//! snapshot taken before a migration, and the names of scheduled archives.

use std::fs::File;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::Error;

/// Where scheduled archives and pre-migration snapshots go unless `--backup-dir` says otherwise.
pub fn default_backup_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// Writes a consistent copy of the database in `data_dir` to `target` with `VACUUM INTO`,
/// which reads one snapshot and produces a compact, self-contained file.
pub fn snapshot_to(data_dir: &Path, target: &Path) -> Result<(), Error> {
    if target.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists; choose a new file name",
            target.display()
        )));
    }
    let source = super::database_path(data_dir);
    if !source.exists() {
        return Err(Error::Invalid(format!(
            "no database at {}; is --data-dir right?",
            source.display()
        )));
    }
    let conn = super::open_and_migrate(&source)?;
    vacuum_into(&conn, target)
}

/// Before a migration changes the schema, a copy of the database as it was, in
/// `<data-dir>/backups/pre-migration-v<old>-<time>.db`: an upgrade that goes wrong can be undone
/// by putting it back (with the same master key) and starting the older keyward.
pub(super) fn before_migration(
    conn: &rusqlite::Connection,
    db_path: &Path,
    version: i64,
) -> Result<PathBuf, Error> {
    let dir = default_backup_dir(&super::archive::parent_of(db_path));
    super::private_dir(&dir)?;
    let target = dir.join(format!("pre-migration-v{version}-{}.db", stamp()));
    vacuum_into(conn, &target).map_err(|e| {
        Error::Storage(format!(
            "cannot snapshot the database before migrating it from schema version {version} \
             ({e}); nothing was migrated. Free disk space in {} and start again",
            dir.display()
        ))
    })?;
    Ok(target)
}

fn vacuum_into(conn: &rusqlite::Connection, target: &Path) -> Result<(), Error> {
    // Created empty and private first (VACUUM INTO accepts an empty file), so the copy of
    // every secret is never readable by others, whatever the umask.
    drop(create_private_file(target)?);
    let name = target
        .to_str()
        .ok_or_else(|| Error::Invalid("the backup path must be valid UTF-8".into()))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [name]) {
        let _ = std::fs::remove_file(target);
        return Err(e.into());
    }
    Ok(())
}

pub(super) fn create_private_file(path: &Path) -> Result<File, Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))?;
    super::make_private(path)?;
    Ok(file)
}

/// A UTC time for file names that sorts like the time it names: `20261130T211916.123Z`.
pub fn stamp() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

pub(super) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
