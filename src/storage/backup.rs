//! Online snapshot of the live database (consistent even while the server writes).

use std::path::Path;

use crate::error::Error;

/// Writes a consistent copy of the database in `data_dir` to `target` with `VACUUM INTO`,
/// which reads one snapshot and produces a compact, self-contained file.
pub fn backup_to(data_dir: &Path, target: &Path) -> Result<(), Error> {
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
    // Created empty and private first (VACUUM INTO accepts an empty file), so the copy of
    // every secret is never readable by others, whatever the umask.
    create_private_file(target)?;
    let target = target
        .to_str()
        .ok_or_else(|| Error::Invalid("the backup path must be valid UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

fn create_private_file(path: &Path) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))?;
    super::make_private(path)
}
