//! The bundle store: files in `<data>/bundles`, each named by the SHA-256 of its bytes.
//! Uploads stream into `tmp/` while being hashed, are made durable (fsync) and then renamed
//! into place, so a bundle file is always whole. Memory use does not grow with bundle size.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct BundleStore {
    dir: PathBuf,
}

/// A bundle received into the store's temporary area: hashed, durable, not yet in place.
#[derive(Debug)]
pub struct Received {
    pub temp_path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl BundleStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("bundles"),
        }
    }

    fn temp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Creates the directories and drops uploads a crash interrupted.
    pub fn prepare(&self) -> Result<()> {
        let temp = self.temp_dir();
        if temp.exists() {
            std::fs::remove_dir_all(&temp).map_err(io_error("clear the upload area"))?;
        }
        crate::storage::private_dir(&self.dir)?;
        crate::storage::private_dir(&temp)?;
        Ok(())
    }

    /// Removes stored bundles nothing refers to: a release whose commit failed after its file
    /// was renamed into place, or files a crash left between the two. Run at start, before
    /// any upload can be in flight.
    pub fn sweep_unreferenced(&self, in_use: impl Fn(&str) -> Result<bool>) -> Result<usize> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.dir).map_err(io_error("list the bundle store"))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(sha) = name.to_str() else { continue };
            if self.path(sha).is_err() || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if !in_use(sha)? {
                self.remove(sha);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where the bundle with this hash lives. Hashes are checked to be hex, so a stored value
    /// can never point outside the store.
    pub fn path(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Storage(format!("bad bundle hash {sha256:?}")));
        }
        Ok(self.dir.join(sha256))
    }

    /// Streams `reader` into a temporary file, hashing on the way, refusing more than
    /// `max_bytes` (the partial file is removed).
    pub async fn receive(
        &self,
        mut reader: impl AsyncRead + Unpin,
        max_bytes: u64,
    ) -> Result<Received> {
        let temp_path = self
            .temp_dir()
            .join(format!("upload-{}", uuid::Uuid::new_v4()));
        let outcome = async {
            // 0600 whatever the umask: a bundle may be a paid product.
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options
                .open(&temp_path)
                .await
                .map_err(io_error("create an upload file"))?;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = reader.read(&mut buf).await.map_err(|e| {
                    Error::Invalid(format!("the bundle upload was interrupted: {e}"))
                })?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > max_bytes {
                    return Err(Error::TooLarge(format!(
                        "the bundle is larger than the limit of {max_bytes} bytes"
                    )));
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(io_error("write an upload file"))?;
            }
            if size == 0 {
                return Err(Error::Invalid("bundle is empty".into()));
            }
            // Durable before anything refers to it: an acknowledged release never loses
            // its bytes in a crash.
            file.sync_all()
                .await
                .map_err(io_error("sync an upload file"))?;
            Ok(Received {
                temp_path: temp_path.clone(),
                size,
                sha256: hex::encode(hasher.finalize()),
            })
        }
        .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&temp_path).await;
        }
        outcome
    }

    /// Moves a received bundle to its content address (blocking: call from the writer or a
    /// blocking task). An identical bundle already stored is kept and the upload dropped.
    pub fn install(&self, received: &Received) -> Result<()> {
        let target = self.path(&received.sha256)?;
        if target.exists() {
            std::fs::remove_file(&received.temp_path)
                .map_err(io_error("drop a duplicate upload"))?;
            return Ok(());
        }
        std::fs::rename(&received.temp_path, &target).map_err(io_error("store a bundle"))?;
        // The rename itself must survive a crash too.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync the bundle store"))?;
        Ok(())
    }

    /// Drops a received bundle that will not be used (its release was refused).
    pub async fn discard(&self, received: Received) {
        let _ = tokio::fs::remove_file(&received.temp_path).await;
    }

    /// Removes a stored bundle (the caller checked nothing refers to it any more).
    pub fn remove(&self, sha256: &str) {
        if let Ok(path) = self.path(sha256)
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove unused bundle {}: {e}", path.display());
        }
    }
}

fn io_error(doing: &'static str) -> impl Fn(io::Error) -> Error {
    move |e| Error::Storage(format!("cannot {doing}: {e}"))
}
