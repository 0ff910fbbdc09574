//! Restoring a backup archive into a new data directory. Everything is extracted into a hidden
//! directory beside the target and checked (manifest, checksums, the database's integrity, the
//! master key opening its secrets) before one rename makes it the target: a damaged archive
//! leaves nothing behind.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::archive::{self, DATABASE_ENTRY, Hashing, MANIFEST, Manifest, ReadEntries};
use crate::error::Error;

/// The manifest is a few lines per entry; anything this large is not one.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// What a restore put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    pub bundles: usize,
}

pub fn restore(archive: &Path, target: &Path, passphrase: Option<&str>) -> Result<Restored, Error> {
    refuse_non_empty(target)?;
    let parent = archive::parent_of(target);
    std::fs::create_dir_all(&parent).map_err(archive::io_error(&parent))?;
    let temp = TempDir(archive::sibling(target, "restore"));
    super::private_dir(&temp.0)?;

    let reader = archive::open(archive, passphrase)?;
    let (manifest, read) = extract(reader, &temp.0).map_err(|e| match e {
        Error::Storage(why) => Error::Invalid(format!(
            "{} is damaged or truncated ({why}); nothing was restored",
            archive.display()
        )),
        other => other,
    })?;
    let Some(manifest) = manifest else {
        return Err(Error::Invalid(format!(
            "{} has no manifest.json: it is truncated or not a Keyward backup archive; nothing \
             was restored",
            archive.display()
        )));
    };
    archive::check_against_manifest(&manifest, &read)
        .map_err(|e| Error::Invalid(format!("{e}; nothing was restored")))?;
    super::files::check_restored(&temp.0)?;

    // rename(2) replaces an empty directory, and never a non-empty one.
    std::fs::rename(&temp.0, target).map_err(|e| {
        Error::Storage(format!(
            "cannot move the restored files to {}: {e}",
            target.display()
        ))
    })?;
    temp.keep();
    archive::sync_dir(&parent);
    let bundles = read.keys().filter(|p| p.starts_with("bundles/")).count();
    Ok(Restored {
        data_dir: target.to_path_buf(),
        manifest,
        bundles,
    })
}

fn refuse_non_empty(target: &Path) -> Result<(), Error> {
    if !target.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(target).map_err(|e| {
        Error::Invalid(format!(
            "{} exists and is not a readable directory ({e}): restore into a new or empty \
             directory",
            target.display()
        ))
    })?;
    if entries.next().is_some() {
        return Err(Error::Invalid(format!(
            "{} is not empty: restore into a new or empty directory (a restore never mixes with \
             or replaces an existing installation)",
            target.display()
        )));
    }
    Ok(())
}

/// Extracts the entries a Keyward archive may hold into `dir`, each 0600, hashing them on the
/// way; any other entry (another path, a link, a second copy) is refused.
fn extract(reader: Box<dyn Read>, dir: &Path) -> Result<(Option<Manifest>, ReadEntries), Error> {
    let mut tar = tar::Archive::new(reader);
    let mut manifest = None;
    let mut read = ReadEntries::new();
    let entries = tar.entries().map_err(|e| Error::Storage(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Storage(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| Error::Storage(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(Error::Invalid(format!(
                "the archive's entry {path:?} is not a regular file: not a Keyward backup; \
                 nothing was restored"
            )));
        }
        if read.contains_key(&path) || (path == MANIFEST && manifest.is_some()) {
            return Err(Error::Invalid(format!(
                "the archive holds {path:?} twice: it was altered; nothing was restored"
            )));
        }
        if path == MANIFEST {
            let mut json = Vec::new();
            (&mut entry)
                .take(MAX_MANIFEST_BYTES)
                .read_to_end(&mut json)
                .map_err(|e| Error::Storage(e.to_string()))?;
            manifest = Some(serde_json::from_slice::<Manifest>(&json).map_err(|e| {
                Error::Invalid(format!(
                    "the archive's manifest.json cannot be read ({e}); nothing was restored"
                ))
            })?);
            continue;
        }
        let out = destination(dir, &path)?;
        let mut file = super::backup::create_private_file(&out)?;
        let mut hashing = Hashing::new(&mut entry);
        std::io::copy(&mut hashing, &mut file).map_err(|e| Error::Storage(e.to_string()))?;
        file.sync_all().map_err(archive::io_error(&out))?;
        read.insert(path, (hashing.count, hashing.hex()));
    }
    Ok((manifest, read))
}

/// Where an entry goes: only the names a backup writes, so no entry can land outside `dir`.
fn destination(dir: &Path, path: &str) -> Result<PathBuf, Error> {
    if path == DATABASE_ENTRY || path == crate::crypto::MASTER_KEY_FILE {
        return Ok(dir.join(path));
    }
    if let Some(sha) = path.strip_prefix("bundles/")
        && sha.len() == 64
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let bundles = dir.join("bundles");
        super::private_dir(&bundles)?;
        return Ok(bundles.join(sha));
    }
    Err(Error::Invalid(format!(
        "the archive holds {path:?}, which no Keyward backup contains: it was altered or is not \
         a Keyward backup; nothing was restored"
    )))
}

/// A directory removed with its contents when dropped, unless kept.
struct TempDir(PathBuf);

impl TempDir {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
