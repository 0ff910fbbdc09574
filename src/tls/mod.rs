//! HTTPS without a reverse proxy: the certificate the listener serves, from the operator's own
//! files (reloaded when they change) or obtained and renewed by ACME, and the plain-HTTP
//! listener that only redirects to HTTPS and answers HTTP-01 challenges.
//!
//! rustls with the ring provider only: one crypto backend in the binary.

pub mod acme;
pub mod files;
pub mod probe;
pub mod redirect;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;

use crate::error::Error;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// `Strict-Transport-Security` on every answer over TLS: one year, this host only (subdomains
/// may be served by something else that has no certificate).
pub const HSTS: &str = "max-age=31536000";

/// Where the served certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// The operator's PEM files (`--tls-cert`, `--tls-key`), reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// Obtained and renewed by ACME (`--acme-domain`).
    Acme(AcmeSettings),
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The names the certificate covers; the first names its files in the data directory.
    pub domains: Vec<String>,
    /// Contact address given to the CA (expiry notices), optional.
    pub email: Option<String>,
    /// The CA's ACME directory URL.
    pub directory: String,
    /// A PEM root to trust for the CA's own HTTPS (a test CA such as pebble); the system's
    /// roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// The challenge the CA is asked to validate.
    pub challenge: AcmeChallenge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcmeChallenge {
    /// Answered on the HTTPS listener itself (port 443 for a public CA).
    #[default]
    TlsAlpn01,
    /// Answered by the plain-HTTP listener (`--http-redirect-bind`, port 80 for a public CA).
    Http01,
}

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub source: TlsSource,
    /// How often the certificate files are read again to see whether they changed.
    pub reload_interval: Duration,
}

/// The certificate served now, swapped in place: handshakes after a swap get the new one,
/// connections already open keep theirs. Also the answers to ACME challenges in progress.
#[derive(Default)]
pub struct Certificates {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// TLS-ALPN-01: the validation certificate per domain.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: the key authorization per token.
    http_challenges: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("has_certificate", &self.current().is_some())
            .finish()
    }
}

impl Certificates {
    pub fn install(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut current) = self.current.write() {
            *current = Some(key);
        }
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.alpn_challenges.lock() {
            map.insert(domain.to_ascii_lowercase(), key);
        }
    }

    pub fn set_http_challenge(&self, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.http_challenges.lock() {
            map.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    /// The key authorization to answer at `/.well-known/acme-challenge/<token>`.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.http_challenges
            .lock()
            .ok()
            .and_then(|map| map.get(token).cloned())
    }

    pub fn clear_challenges(&self) {
        if let Ok(mut map) = self.alpn_challenges.lock() {
            map.clear();
        }
        if let Ok(mut map) = self.http_challenges.lock() {
            map.clear();
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validating = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validating {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.alpn_challenges.lock().ok()?.get(&name).cloned();
        }
        self.current()
    }
}

/// The certificate file the server serves: the operator's, or the one ACME keeps in the data
/// directory (what `doctor` checks the expiry of).
pub fn certificate_file(settings: &TlsSettings, data_dir: &Path) -> PathBuf {
    match &settings.source {
        TlsSource::Files { cert, .. } => cert.clone(),
        TlsSource::Acme(acme) => acme::certificate_path(data_dir, acme),
    }
}

/// When the first certificate of a PEM file stops being valid.
pub fn expires_at(cert_file: &Path) -> Result<SystemTime, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let leaf = CertificateDer::from_pem_file(cert_file)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    Ok(validity(&leaf)?.1)
}

/// A certificate's (not before, not after).
pub(crate) fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS on the main listener: the acceptor, the certificates it serves, and the background
/// task that keeps them current.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub certificates: Arc<Certificates>,
    pub task: JoinHandle<()>,
}

/// Loads the operator's certificate (a server that cannot serve its certificate does not
/// start) or the one ACME stored earlier, and starts what keeps it current.
pub fn start(settings: &TlsSettings, data_dir: &Path, http_listener: bool) -> Result<Tls, Error> {
    let certificates = Arc::new(Certificates::default());
    let task = match &settings.source {
        TlsSource::Files { cert, key } => {
            let (loaded, seen) = files::load(cert, key).map_err(Error::Invalid)?;
            certificates.install(Arc::new(loaded));
            tokio::spawn(files::watch(
                cert.clone(),
                key.clone(),
                seen,
                certificates.clone(),
                settings.reload_interval,
            ))
        }
        TlsSource::Acme(acme_settings) => {
            if acme_settings.challenge == AcmeChallenge::Http01 && !http_listener {
                return Err(Error::Invalid(
                    "--acme-challenge http-01 needs --http-redirect-bind (the CA fetches the \
                     challenge over plain HTTP)"
                        .into(),
                ));
            }
            let manager =
                acme::Manager::new(acme_settings.clone(), data_dir, certificates.clone())?;
            tokio::spawn(manager.run())
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    // A validator offers acme-tls/1 alone; browsers never offer it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certificates,
        task,
    })
}
