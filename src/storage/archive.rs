//! The backup archive: one tar, optionally age-encrypted with a passphrase (scrypt), holding a
//! consistent database snapshot, the master key, every bundle the snapshot refers to and, last,
//! `manifest.json` with each entry's size and SHA-256. The manifest comes last so that one pass
//! writes the archive, and a truncated archive always lacks it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

pub const MANIFEST: &str = "manifest.json";
pub const DATABASE_ENTRY: &str = "keyward.db";
/// Archives this binary writes; it reads these and older ones.
pub const FORMAT_VERSION: u32 = 1;
/// How every age file begins: an encrypted archive is told apart from a plain tar by it.
pub(super) const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub keyward_version: String,
    pub schema_version: i64,
    pub created_at: String,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    pub bundles: usize,
    pub bytes: u64,
    pub schema_version: i64,
    pub encrypted: bool,
}

/// Writes the archive of the installation in `data_dir` to `target` (which must not exist).
/// Safe beside a running server: the database is read in one snapshot (`VACUUM INTO`), and the
/// bundles are the ones that snapshot refers to. The archive appears under its name only once
/// it is complete and on disk, 0600 whatever the umask.
pub fn write_archive(
    data_dir: &Path,
    target: &Path,
    passphrase: Option<&str>,
) -> Result<Summary, Error> {
    if target.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists; choose a new file name",
            target.display()
        )));
    }
    let master_key = data_dir.join(crate::crypto::MASTER_KEY_FILE);
    let parent = parent_of(target);
    let snapshot = TempPath(sibling(target, "db"));
    super::backup::snapshot_to(data_dir, &snapshot.0)?;
    if !master_key.is_file() {
        return Err(Error::Invalid(format!(
            "no master key at {}; is --data-dir right?",
            master_key.display()
        )));
    }
    let (schema_version, bundles) = describe_snapshot(&snapshot.0)?;
    let store = crate::domain::releases::bundles::BundleStore::new(data_dir);

    let partial = TempPath(sibling(target, "partial"));
    let file = super::backup::create_private_file(&partial.0)?;
    let mut sink = Sink::new(BufWriter::new(file), passphrase)?;
    let mut tar = tar::Builder::new(&mut sink);
    let mut entries = Vec::new();
    entries.push(append_file(&mut tar, DATABASE_ENTRY, &snapshot.0)?);
    entries.push(append_file(
        &mut tar,
        crate::crypto::MASTER_KEY_FILE,
        &master_key,
    )?);
    for sha in &bundles {
        let path = store.path(sha)?;
        if !path.is_file() {
            // Deleted by a release deletion between the snapshot and this copy.
            return Err(Error::Storage(format!(
                "the bundle {sha} vanished while the backup was written (a release was deleted \
                 meanwhile); run the backup again"
            )));
        }
        entries.push(append_file(&mut tar, &format!("bundles/{sha}"), &path)?);
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        keyward_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        created_at: super::backup::now_rfc3339(),
        entries,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Storage(format!("cannot write the manifest: {e}")))?;
    tar.append(&header(MANIFEST, json.len() as u64)?, json.as_slice())
        .map_err(io_error(target))?;
    tar.finish().map_err(io_error(target))?;
    drop(tar);
    let file = sink.finish().map_err(io_error(target))?;
    file.sync_all().map_err(io_error(target))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    // A hard link never replaces an existing file, unlike a rename.
    std::fs::hard_link(&partial.0, target)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", target.display())))?;
    drop(partial);
    sync_dir(&parent);
    Ok(Summary {
        path: target.to_path_buf(),
        bundles: bundles.len(),
        bytes,
        schema_version,
        encrypted: passphrase.is_some(),
    })
}

/// The schema version of a snapshot and the bundles its releases, deltas and artifacts refer
/// to ('' is a release without a bundle of its own).
fn describe_snapshot(snapshot: &Path) -> Result<(i64, Vec<String>), Error> {
    let conn = rusqlite::Connection::open(snapshot)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT bundle_sha256 FROM releases WHERE bundle_sha256 <> '' \
         UNION SELECT bundle_sha256 FROM release_deltas \
         UNION SELECT sha256 FROM release_artifacts ORDER BY 1",
    )?;
    let bundles = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((version, bundles))
}

fn header(path: &str, size: u64) -> Result<tar::Header, Error> {
    let mut header = tar::Header::new_gnu();
    header
        .set_path(path)
        .map_err(|e| Error::Storage(format!("cannot name {path} in the archive: {e}")))?;
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    header.set_cksum();
    Ok(header)
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> Result<ManifestEntry, Error> {
    let file = File::open(path).map_err(io_error(path))?;
    let size = file.metadata().map_err(io_error(path))?.len();
    let mut reader = Hashing::new(file);
    tar.append(&header(name, size)?, &mut reader)
        .map_err(io_error(path))?;
    Ok(ManifestEntry {
        path: name.to_owned(),
        size: reader.count,
        sha256: reader.hex(),
    })
}

/// The archive's bytes on their way to the file, encrypted or not.
enum Sink {
    Plain(BufWriter<File>),
    Age(age::stream::StreamWriter<BufWriter<File>>),
}

impl Sink {
    fn new(out: BufWriter<File>, passphrase: Option<&str>) -> Result<Self, Error> {
        Ok(match passphrase {
            None => Sink::Plain(out),
            Some(passphrase) => {
                let encryptor =
                    age::Encryptor::with_user_passphrase(SecretString::from(passphrase.to_owned()));
                Sink::Age(
                    encryptor
                        .wrap_output(out)
                        .map_err(|e| Error::Storage(format!("cannot start encrypting: {e}")))?,
                )
            }
        })
    }

    fn finish(self) -> io::Result<File> {
        let out = match self {
            Sink::Plain(out) => out,
            Sink::Age(stream) => stream.finish()?,
        };
        out.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

/// Counts and hashes what is read through it.
pub(super) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Opens an archive for reading, decrypting it when it is an age file.
pub(super) fn open(archive: &Path, passphrase: Option<&str>) -> Result<Box<dyn Read>, Error> {
    let file = File::open(archive).map_err(io_error(archive))?;
    let mut reader = BufReader::new(file);
    let encrypted = reader
        .fill_buf()
        .map_err(io_error(archive))?
        .starts_with(AGE_MAGIC);
    if !encrypted {
        return Ok(Box::new(reader));
    }
    let Some(passphrase) = passphrase else {
        return Err(Error::Invalid(format!(
            "{} is encrypted with a passphrase: pass --passphrase-file FILE or --passphrase-env \
             VAR",
            archive.display()
        )));
    };
    let decryptor = age::Decryptor::new_buffered(reader).map_err(|e| {
        Error::Invalid(format!(
            "{} is damaged: its encryption header cannot be read ({e})",
            archive.display()
        ))
    })?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    let stream = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => Error::Invalid(format!(
                "wrong passphrase for {} (or its header is damaged)",
                archive.display()
            )),
            other => Error::Invalid(format!("cannot decrypt {}: {other}", archive.display())),
        })?;
    Ok(Box::new(stream))
}

/// What was read from an archive: each entry's path → its size and SHA-256 (hex).
pub(super) type ReadEntries = BTreeMap<String, (u64, String)>;

/// Checks what was read from an archive against its manifest: the same entries, sizes and
/// SHA-256s, and the database and master key among them.
pub(super) fn check_against_manifest(manifest: &Manifest, read: &ReadEntries) -> Result<(), Error> {
    if manifest.format_version > FORMAT_VERSION {
        return Err(Error::Invalid(format!(
            "the archive's format version is {}, this keyward reads up to {FORMAT_VERSION}: \
             restore with a newer keyward",
            manifest.format_version
        )));
    }
    if manifest.schema_version > super::LATEST_VERSION {
        return Err(Error::Invalid(format!(
            "the archive holds a database at schema version {} (keyward {}), newer than this \
             keyward knows ({}): restore with that version or newer",
            manifest.schema_version,
            manifest.keyward_version,
            super::LATEST_VERSION
        )));
    }
    for required in [DATABASE_ENTRY, crate::crypto::MASTER_KEY_FILE] {
        if !manifest.entries.iter().any(|e| e.path == required) {
            return Err(Error::Invalid(format!(
                "the archive's manifest lists no {required}: not a complete Keyward backup"
            )));
        }
    }
    for entry in &manifest.entries {
        match read.get(&entry.path) {
            None => {
                return Err(Error::Invalid(format!(
                    "{} is listed in the manifest but missing from the archive",
                    entry.path
                )));
            }
            Some((size, sha)) if *size != entry.size || *sha != entry.sha256 => {
                return Err(Error::Invalid(format!(
                    "{} does not match the manifest (size {size}, SHA-256 {sha}; expected size \
                     {}, SHA-256 {}): the archive is damaged or was altered",
                    entry.path, entry.size, entry.sha256
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = read
        .keys()
        .find(|p| !manifest.entries.iter().any(|e| &e.path == *p))
    {
        return Err(Error::Invalid(format!(
            "{extra} is in the archive but not in its manifest: the archive was altered"
        )));
    }
    Ok(())
}

/// A temporary file beside the target, removed when dropped (after a hard link keeps it).
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A hidden, unique name beside `target`, on the same file system.
pub(super) fn sibling(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyward".into());
    parent_of(target).join(format!(
        ".{name}.{what}-{}",
        crate::crypto::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 10)
    ))
}

pub(super) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename or new name in `dir` durable; best effort (not every file system allows it).
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub(super) fn io_error(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::Storage(format!("{}: {e}", path.display()))
}
