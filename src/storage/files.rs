//! The data directory: created only by `serve` and `init`, private to the service's user
//! (directory 0700, files 0600 whatever the umask), and checked at opening: its master key
//! must open the database's sealed secrets.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use crate::crypto::MasterKey;
use crate::error::Error;

/// Creates `dir` (and missing parents) if needed and makes it 0700.
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    let failed =
        |e: std::io::Error| Error::Storage(format!("cannot create {}: {e}", dir.display()));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(failed)?;
    set_mode(dir, 0o700)
}

/// Makes an existing file 0600; a missing one is left missing.
pub fn make_private(path: &Path) -> Result<(), Error> {
    if path.exists() {
        set_mode(path, 0o600)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::Storage(format!("cannot restrict {}: {e}", path.display())))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), Error> {
    Ok(())
}

/// The database file and SQLite's companions (`-wal`, `-shm`).
fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Creates the database file 0600 before SQLite does (SQLite gives its `-wal` and `-shm` the
/// mode of the database file), and tightens files restored with looser modes.
fn secure_database_files(db: &Path) -> Result<(), Error> {
    if !db.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(db)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", db.display())))?;
    }
    for file in database_files(db) {
        make_private(&file)?;
    }
    Ok(())
}

/// Whether `dir` holds an installation.
pub fn has_database(dir: &Path) -> bool {
    super::database_path(dir).is_file()
}

/// Opens the installation in `data_dir`: the migrated database (the writer's connection) and
/// the master key. With `create`, a missing directory, database or master key is created (first
/// start); without it, a directory with no database is refused, naming the path looked at.
pub fn open_data_dir(data_dir: &Path, create: bool) -> Result<(Connection, MasterKey), Error> {
    let db = super::database_path(data_dir);
    if !create && !db.is_file() {
        let shown = std::path::absolute(&db).unwrap_or_else(|_| db.clone());
        return Err(Error::Invalid(format!(
            "no Keyward database at {}: pass the installation's directory with --data-dir (or \
             KEYWARD_DATA_DIR), or create one with `keyward init` (or `keyward serve`)",
            shown.display()
        )));
    }
    private_dir(data_dir)?;
    secure_database_files(&db)?;
    let conn = super::open_and_migrate(&db)?;
    // The WAL and shared-memory files exist once the database is open.
    for file in database_files(&db) {
        make_private(&file)?;
    }
    let master = match MasterKey::load(data_dir)? {
        Some(master) => master,
        None => {
            if any_sealed_secret(&conn)?.is_some() {
                return Err(missing_master_key(data_dir));
            }
            MasterKey::load_or_create(data_dir)?
        }
    };
    make_private(&data_dir.join(crate::crypto::MASTER_KEY_FILE))?;
    check_master_key(&conn, &master, data_dir)?;
    Ok((conn, master))
}

/// One secret sealed with the master key, if the database holds any: a product's signing key
/// first, then the secrets an installation without products may still hold (an operator's
/// TOTP, an event webhook's, an SMTP password, a payment provider's). Whichever it is, the
/// master key either opens it or is the wrong key.
pub fn any_sealed_secret(conn: &Connection) -> Result<Option<Vec<u8>>, Error> {
    const SEALED: [&str; 5] = [
        "SELECT signing_secret_sealed FROM products ORDER BY rowid LIMIT 1",
        "SELECT secret_sealed FROM operator_totp LIMIT 1",
        "SELECT secret_sealed FROM webhook_endpoints LIMIT 1",
        "SELECT password_sealed FROM smtp_settings WHERE password_sealed IS NOT NULL LIMIT 1",
        "SELECT secret_sealed FROM payment_endpoints LIMIT 1",
    ];
    for sql in SEALED {
        let found: Option<Vec<u8>> = conn
            .query_row(sql, [], |r| r.get(0))
            .optional()
            .map_err(|e| Error::Storage(format!("cannot read the sealed secrets: {e}")))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A database restored without its master key would start, report healthy and fail every
/// signed request: refuse to start instead.
fn check_master_key(conn: &Connection, master: &MasterKey, data_dir: &Path) -> Result<(), Error> {
    let Some(sealed) = any_sealed_secret(conn)? else {
        return Ok(());
    };
    if master.open(&sealed).is_ok() {
        return Ok(());
    }
    let key = std::path::absolute(data_dir.join(crate::crypto::MASTER_KEY_FILE))
        .unwrap_or_else(|_| data_dir.join(crate::crypto::MASTER_KEY_FILE));
    Err(Error::Invalid(format!(
        "{} does not open the secrets of the database beside it: restore the master.key that was \
         backed up together with this keyward.db (the same backup archive), or restore the \
         database that belongs to this key; refusing to start",
        key.display()
    )))
}

fn missing_master_key(data_dir: &Path) -> Error {
    let key = std::path::absolute(data_dir.join(crate::crypto::MASTER_KEY_FILE))
        .unwrap_or_else(|_| data_dir.join(crate::crypto::MASTER_KEY_FILE));
    Error::Invalid(format!(
        "{} is missing but the database holds secrets sealed with it: restore the master.key \
         backed up together with this keyward.db; refusing to create a new one",
        key.display()
    ))
}

/// A restored directory is whole: its database passes SQLite's quick check and its master key
/// opens the database's sealed secrets (so a server started there signs as before).
pub(super) fn check_restored(dir: &Path) -> Result<(), Error> {
    let db = super::database_path(dir);
    let conn = Connection::open(&db)
        .map_err(|e| Error::Invalid(format!("the restored database cannot be opened: {e}")))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| Error::Invalid(format!("the restored database is damaged: {e}")))?;
    if check != "ok" {
        return Err(Error::Invalid(format!(
            "the restored database is damaged ({check}); nothing was restored"
        )));
    }
    let Some(master) = MasterKey::load(dir)? else {
        return Err(missing_master_key(dir));
    };
    check_master_key(&conn, &master, dir)
}
