//! The operator's own certificate: PEM files, read again every few seconds; a changed pair
//! replaces the served certificate for new handshakes. A pair that does not load (half
//! written, key and certificate not matching) keeps the previous certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::Certificates;

/// The bytes of the certificate and key files last looked at.
pub type Seen = (Vec<u8>, Vec<u8>);

/// Reads and checks the pair; the error says which file is wrong and why.
pub fn load(cert: &Path, key: &Path) -> Result<(CertifiedKey, Seen), String> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let loaded = parse(&cert_pem, &key_pem).map_err(|e| {
        format!(
            "TLS certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok((loaded, (cert_pem, key_pem)))
}

/// A certificate chain (leaf first) and its private key, both PEM.
pub fn parse(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the key file holds no private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &super::provider())
        .map_err(|e| format!("the key does not fit the certificate: {e}"))
}

/// Polls the files and installs a changed pair.
pub async fn watch(
    cert: PathBuf,
    key: PathBuf,
    mut seen: Seen,
    certificates: Arc<Certificates>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        // Comparing the bytes (a few KiB) catches every replacement, also one within the
        // file system's timestamp granularity or one that restores an older mtime.
        let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(&cert), std::fs::read(&key)) else {
            continue;
        };
        if (cert_pem.as_slice(), key_pem.as_slice()) == (seen.0.as_slice(), seen.1.as_slice()) {
            continue;
        }
        match parse(&cert_pem, &key_pem) {
            Ok(loaded) => {
                certificates.install(Arc::new(loaded));
                tracing::info!("TLS certificate {} reloaded", cert.display());
            }
            Err(e) => tracing::warn!(
                "TLS certificate {} changed but does not load, the previous one is still \
                 served: {e}",
                cert.display()
            ),
        }
        // Also after a failure: the same bad pair is reported once, not every few seconds.
        seen = (cert_pem, key_pem);
    }
}
