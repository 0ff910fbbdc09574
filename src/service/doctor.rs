//! `keyward doctor`: what an operator should look at on an installation, each finding with
//! what to do about it. It only reads: the database is opened read-only and never migrated,
//! so it is safe beside a live server and on a database a newer or older binary wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags};

use crate::crypto::{MASTER_KEY_FILE, MasterKey};
use crate::storage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One finding: what was checked, how it stands, and (unless OK) what to do.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub finding: String,
    pub advice: Option<String>,
}

impl Check {
    fn ok(name: &'static str, finding: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Ok,
            finding: finding.into(),
            advice: None,
        }
    }

    fn warn(name: &'static str, finding: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Warn,
            finding: finding.into(),
            advice: Some(advice.into()),
        }
    }

    fn fail(name: &'static str, finding: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Fail,
            finding: finding.into(),
            advice: Some(advice.into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The TLS certificate served (PEM); without one, `<data-dir>/tls/cert.pem` if present.
    pub tls_cert: Option<PathBuf>,
    /// Where backup archives are written; default `<data-dir>/backups`.
    pub backup_dir: Option<PathBuf>,
    /// A newest backup older than this is a warning.
    pub backup_max_age: Duration,
    /// A certificate expiring sooner than this is a warning (ACME renews 30 days ahead).
    pub cert_warn_before: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            tls_cert: None,
            backup_dir: None,
            backup_max_age: 2 * DAY,
            cert_warn_before: 21 * DAY,
        }
    }
}

/// Every check, in the order an operator would fix them.
pub fn examine(data_dir: &Path, options: &DoctorOptions) -> Vec<Check> {
    let mut checks = vec![permissions(data_dir)];
    if !data_dir.is_dir() {
        return checks;
    }
    let db = open_read_only(data_dir);
    checks.push(schema(db.as_ref()));
    checks.push(master_key(data_dir, db.as_ref().ok()));
    checks.push(disk_space(data_dir));
    checks.push(certificate(data_dir, options));
    checks.push(backup_age(data_dir, options));
    checks
}

fn open_read_only(data_dir: &Path) -> Result<Connection, String> {
    let path = storage::database_path(data_dir);
    if !path.is_file() {
        return Err(format!("no database at {}", path.display()));
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let _ = conn.busy_timeout(Duration::from_secs(5));
    Ok(conn)
}

#[cfg(unix)]
fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_path: &Path) -> Option<u32> {
    None
}

fn permissions(data_dir: &Path) -> Check {
    const NAME: &str = "permissions";
    let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if !data_dir.is_dir() {
        return Check::fail(
            NAME,
            format!("{} is not a directory", shown.display()),
            "pass the installation's directory with --data-dir (or KEYWARD_DATA_DIR)",
        );
    }
    let mut loose = Vec::new();
    if mode(data_dir).is_some_and(|m| m & 0o077 != 0) {
        loose.push(format!(
            "{} ({:o})",
            shown.display(),
            mode(data_dir).unwrap_or(0)
        ));
    }
    let db = storage::database_path(data_dir);
    let names = [
        db.clone(),
        PathBuf::from(format!("{}-wal", db.display())),
        PathBuf::from(format!("{}-shm", db.display())),
        data_dir.join(MASTER_KEY_FILE),
    ];
    for file in names.iter().filter(|f| f.exists()) {
        if let Some(m) = mode(file).filter(|m| m & 0o077 != 0) {
            loose.push(format!("{} ({m:o})", file.display()));
        }
    }
    if loose.is_empty() {
        Check::ok(
            NAME,
            format!("{} is 0700 and its files 0600", shown.display()),
        )
    } else {
        Check::fail(
            NAME,
            format!("readable by others: {}", loose.join(", ")),
            format!(
                "chmod 700 {0} && chmod 600 {0}/keyward.db* {0}/{MASTER_KEY_FILE} \
                 (starting keyward also tightens them)",
                shown.display()
            ),
        )
    }
}

fn schema(db: Result<&Connection, &String>) -> Check {
    const NAME: &str = "schema";
    let conn = match db {
        Ok(c) => c,
        Err(why) => {
            return Check::fail(
                NAME,
                why.clone(),
                "create the installation with `keyward init`, or restore a backup into this \
                 directory",
            );
        }
    };
    let version = match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)) {
        Ok(v) => v,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read the schema version: {e}"),
                "the file is not a readable SQLite database: restore a backup",
            );
        }
    };
    let latest = storage::LATEST_VERSION;
    match version.cmp(&latest) {
        std::cmp::Ordering::Equal => Check::ok(NAME, format!("version {version}, as this binary")),
        std::cmp::Ordering::Less => Check::warn(
            NAME,
            format!("version {version}; this binary's is {latest}"),
            "take a backup (`keyward backup FILE`), then start this keyward: it migrates the \
             database at start",
        ),
        std::cmp::Ordering::Greater => Check::fail(
            NAME,
            format!("version {version} is newer than this binary's {latest}"),
            "run the keyward that wrote it (or a newer one): this one refuses to start",
        ),
    }
}

fn master_key(data_dir: &Path, db: Option<&Connection>) -> Check {
    const NAME: &str = "master key";
    let key_path = data_dir.join(MASTER_KEY_FILE);
    let sealed = db.and_then(|c| crate::storage::any_sealed_secret(c).ok().flatten());
    let master = match MasterKey::load(data_dir) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read {}: {e}", key_path.display()),
                "restore the master.key backed up with this database",
            );
        }
    };
    match (master, sealed) {
        (None, Some(_)) => Check::fail(
            NAME,
            format!(
                "{} is missing, but the database holds sealed secrets",
                key_path.display()
            ),
            "restore the master.key backed up together with this keyward.db; without it no \
             signed answer can be made",
        ),
        (None, None) => Check::warn(
            NAME,
            format!("{} does not exist yet", key_path.display()),
            "start keyward once (or `keyward init`): it creates the key; then back it up",
        ),
        (Some(_), None) => Check::ok(NAME, "present; nothing is sealed with it yet"),
        (Some(master), Some(sealed)) => {
            if master.open(&sealed).is_ok() {
                Check::ok(NAME, "opens the database's sealed secrets")
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "{} does not open the database's sealed secrets",
                        key_path.display()
                    ),
                    "restore the master.key from the same backup as this keyward.db; the \
                     server refuses to start until they match",
                )
            }
        }
    }
}

/// Below this, writes (and the WAL's growth) may fail soon.
const DISK_FAIL_BYTES: u64 = 100 * 1024 * 1024;
const DISK_WARN_BYTES: u64 = 1024 * 1024 * 1024;

fn disk_space(data_dir: &Path) -> Check {
    const NAME: &str = "disk space";
    let Some(free) = free_bytes(data_dir) else {
        return Check::warn(
            NAME,
            "cannot read the file system's free space",
            "check it with `df -h` on the data directory",
        );
    };
    let db_size = std::fs::metadata(storage::database_path(data_dir))
        .map(|m| m.len())
        .unwrap_or(0);
    let mib = |b: u64| b / (1024 * 1024);
    let finding = format!(
        "{} MiB free; the database is {} MiB",
        mib(free),
        mib(db_size)
    );
    // A backup or a VACUUM needs room for a whole copy of the database.
    if free < DISK_FAIL_BYTES || free < db_size {
        Check::fail(
            NAME,
            finding,
            "free space on the data directory's file system now: writes and backups fail when \
             it is full",
        )
    } else if free < DISK_WARN_BYTES || free < 2 * db_size {
        Check::warn(
            NAME,
            finding,
            "free space or grow the disk; shorten the audit retention (--audit-retention-*) if \
             the database keeps growing",
        )
    } else {
        Check::ok(NAME, finding)
    }
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// Where a certificate kept in the data directory is looked for when none is named.
pub const DATA_DIR_CERT: &str = "tls/cert.pem";

/// The certificate the data directory holds when none is named: one ACME obtained
/// (`acme/<domain>.crt`, see `tls::certificate_file`), else [`DATA_DIR_CERT`].
fn data_dir_certificate(data_dir: &Path) -> Option<PathBuf> {
    let acme = std::fs::read_dir(data_dir.join("acme"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
        .min();
    acme.or_else(|| Some(data_dir.join(DATA_DIR_CERT)).filter(|p| p.is_file()))
}

fn certificate(data_dir: &Path, options: &DoctorOptions) -> Check {
    const NAME: &str = "TLS certificate";
    let path = match &options.tls_cert {
        Some(p) => p.clone(),
        None => match data_dir_certificate(data_dir) {
            Some(p) => p,
            None => {
                return Check::ok(
                    NAME,
                    "none configured (pass --tls-cert FILE to check one served by a proxy)",
                );
            }
        },
    };
    let not_after = match certificate_not_after(&path) {
        Ok(t) => t,
        Err(why) => {
            return Check::fail(
                NAME,
                why,
                "point --tls-cert at the PEM certificate keyward (or the proxy) serves",
            );
        }
    };
    let shown = time::OffsetDateTime::from(not_after)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    match not_after.duration_since(SystemTime::now()) {
        Err(_) => Check::fail(
            NAME,
            format!("{} expired at {shown}", path.display()),
            "renew it now (with --acme-domain keyward renews by itself); clients refuse it",
        ),
        Ok(left) if left < options.cert_warn_before => Check::warn(
            NAME,
            format!(
                "{} expires at {shown}, in {} days",
                path.display(),
                left.as_secs() / 86_400
            ),
            "renew it; if ACME should have done so, look for renewal errors in the log",
        ),
        Ok(left) => Check::ok(
            NAME,
            format!(
                "{} valid until {shown} ({} days)",
                path.display(),
                left.as_secs() / 86_400
            ),
        ),
    }
}

/// The first certificate of a PEM file: its `notAfter`.
pub fn certificate_not_after(path: &Path) -> Result<SystemTime, String> {
    use x509_cert::der::DecodePem;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A chain file holds the leaf first; the parser wants one PEM block.
    let text = String::from_utf8_lossy(&pem);
    const END: &str = "-----END CERTIFICATE-----";
    let first = text
        .find(END)
        .map(|i| &text[..i + END.len()])
        .ok_or_else(|| format!("{} holds no PEM certificate", path.display()))?;
    let cert = x509_cert::Certificate::from_pem(first.trim_start().as_bytes())
        .map_err(|e| format!("{} is not a readable certificate: {e}", path.display()))?;
    Ok(cert.tbs_certificate.validity.not_after.to_system_time())
}

fn backup_age(data_dir: &Path, options: &DoctorOptions) -> Check {
    const NAME: &str = "backups";
    let dir = options
        .backup_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("backups"));
    let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file()
                    .then(|| meta.modified().ok().map(|t| (t, e.path())))
                    .flatten()
            })
            .max_by_key(|(t, _)| *t)
    });
    let Some((modified, path)) = newest else {
        return Check::warn(
            NAME,
            format!("no backup in {}", dir.display()),
            format!(
                "take one with `keyward backup {}/keyward-$(date +%F).db` and schedule it; \
                 or pass --backup-dir where yours are",
                dir.display()
            ),
        );
    };
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    let hours = age.as_secs() / 3600;
    if age > options.backup_max_age {
        Check::warn(
            NAME,
            format!("the newest, {}, is {hours} h old", path.display()),
            "take a backup now (`keyward backup FILE`) and check the schedule that should \
             have made one",
        )
    } else {
        Check::ok(
            NAME,
            format!("the newest, {}, is {hours} h old", path.display()),
        )
    }
}

/// True when nothing failed.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.level != Level::Fail)
}
