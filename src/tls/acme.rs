//! Certificates by ACME (RFC 8555) with `instant-acme`: an account kept in the data directory,
//! an order per issuance, TLS-ALPN-01 answered by the HTTPS listener or HTTP-01 by the
//! plain-HTTP one, and renewal in the background at two thirds of the certificate's lifetime.
//!
//! Files (0600, in `<data-dir>/acme/`, 0700): `account.json` (the account key and the
//! directory it belongs to), `<domain>.crt` (the chain) and `<domain>.key`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::{AcmeChallenge, AcmeSettings, Certificates};
use crate::error::Error;

/// Waits after a failed attempt: the first, then doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// A long sleep is cut in pieces, so a suspended machine or a changed clock is noticed.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// A certificate on disk, with the moment to renew it.
struct Issued {
    renew_at: SystemTime,
    not_after: SystemTime,
}

/// Where the certificate for `settings` is kept.
pub fn certificate_path(data_dir: &Path, settings: &AcmeSettings) -> PathBuf {
    let first = settings
        .domains
        .first()
        .map(String::as_str)
        .unwrap_or("none");
    data_dir.join("acme").join(format!("{first}.crt"))
}

pub struct Manager {
    settings: AcmeSettings,
    dir: PathBuf,
    certificates: Arc<Certificates>,
}

impl Manager {
    pub fn new(
        settings: AcmeSettings,
        data_dir: &Path,
        certificates: Arc<Certificates>,
    ) -> Result<Self, Error> {
        if settings.domains.is_empty() {
            return Err(Error::Invalid("--acme-domain names no domain".into()));
        }
        let dir = data_dir.join("acme");
        crate::storage::private_dir(&dir)?;
        Ok(Self {
            settings,
            dir,
            certificates,
        })
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.settings.domains[0]))
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.settings.domains[0]))
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// Serves the stored certificate, if it covers the domains, and returns when to renew it.
    fn load_stored(&self) -> Option<Issued> {
        let cert_pem = std::fs::read(self.cert_path()).ok()?;
        let key_pem = std::fs::read(self.key_path()).ok()?;
        match self.install(&cert_pem, &key_pem) {
            Ok(issued) => Some(issued),
            Err(e) => {
                tracing::warn!(
                    "the stored ACME certificate {} is not usable ({e}); obtaining a new one",
                    self.cert_path().display()
                );
                None
            }
        }
    }

    fn install(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Issued, String> {
        let key = super::files::parse(cert_pem, key_pem)?;
        let issued = inspect(&key, &self.settings.domains)?;
        self.certificates.install(Arc::new(key));
        Ok(issued)
    }

    /// Obtains a certificate when none is stored, then renews it for ever.
    pub async fn run(self) {
        let mut issued = self.load_stored();
        if let Some(i) = &issued {
            tracing::info!(
                "serving the stored ACME certificate for {} (expires {}, renewal {})",
                self.settings.domains.join(", "),
                rfc3339(i.not_after),
                rfc3339(i.renew_at)
            );
        }
        let mut retry = RETRY_FIRST;
        let mut last_obtained: Option<std::time::Instant> = None;
        loop {
            if let Some(i) = &issued {
                let Ok(left) = i.renew_at.duration_since(SystemTime::now()) else {
                    issued = None;
                    continue;
                };
                tokio::time::sleep(left.min(LONGEST_SLEEP)).await;
                continue;
            }
            // A certificate due for renewal as soon as it arrives (a CA issuing very short
            // lives) must not turn into a loop of orders.
            if let Some(at) = last_obtained {
                tokio::time::sleep(RETRY_FIRST.saturating_sub(at.elapsed())).await;
            }
            match self.obtain().await {
                Ok(new) => {
                    last_obtained = Some(std::time::Instant::now());
                    tracing::info!(
                        "ACME certificate for {} obtained from {} (expires {}, renewal {})",
                        self.settings.domains.join(", "),
                        self.settings.directory,
                        rfc3339(new.not_after),
                        rfc3339(new.renew_at)
                    );
                    issued = Some(new);
                    retry = RETRY_FIRST;
                }
                Err(e) => {
                    tracing::warn!(
                        "ACME: cannot obtain a certificate for {} from {} ({e}); trying again \
                         in {} s",
                        self.settings.domains.join(", "),
                        self.settings.directory,
                        retry.as_secs()
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn obtain(&self) -> Result<Issued, String> {
        let account = self.account().await?;
        let outcome = self.order(&account).await;
        self.certificates.clear_challenges();
        let (chain_pem, key_pem) = match outcome {
            Ok(pair) => pair,
            Err(e) => {
                // The CA may have forgotten the account (a test CA forgets everything when it
                // restarts): the next attempt registers a new one.
                let _ = std::fs::remove_file(self.account_path());
                return Err(e);
            }
        };
        let issued = self.install(chain_pem.as_bytes(), key_pem.as_bytes())?;
        write_private(&self.key_path(), key_pem.as_bytes())?;
        write_private(&self.cert_path(), chain_pem.as_bytes())?;
        Ok(issued)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, String> {
        match &self.settings.ca_file {
            Some(ca) => Account::builder_with_root(ca)
                .map_err(|e| format!("cannot use the CA file {}: {e}", ca.display())),
            None => Account::builder().map_err(|e| format!("HTTP client: {e}")),
        }
    }

    /// The stored account of this directory, or a new one.
    async fn account(&self) -> Result<Account, String> {
        let stored = std::fs::read(self.account_path())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<StoredAccount>(&bytes).ok())
            .filter(|s| s.directory == self.settings.directory);
        if let Some(stored) = stored {
            return self
                .builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| format!("cannot restore the ACME account: {e}"));
        }
        let contact = self
            .settings
            .email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await
            .map_err(|e| format!("cannot create an ACME account: {e}"))?;
        let stored = StoredAccount {
            directory: self.settings.directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
        write_private(&self.account_path(), &json)?;
        Ok(account)
    }

    /// One order, from the challenges to the certificate: (chain PEM, key PEM).
    async fn order(&self, account: &Account) -> Result<(String, String), String> {
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let kind = match self.settings.challenge {
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
                AcmeChallenge::Http01 => ChallengeType::Http01,
            };
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let domain = challenge.identifier().to_string();
            let key_authorization = challenge.key_authorization();
            match self.settings.challenge {
                AcmeChallenge::TlsAlpn01 => {
                    let key = validation_certificate(&domain, key_authorization.digest().as_ref())?;
                    self.certificates.set_alpn_challenge(&domain, Arc::new(key));
                }
                AcmeChallenge::Http01 => self
                    .certificates
                    .set_http_challenge(&challenge.token, key_authorization.as_str()),
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge for {domain}: {e}"))?;
        }
        let patience = RetryPolicy::new().timeout(Duration::from_secs(120));
        let status = order
            .poll_ready(&patience)
            .await
            .map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default();
            return Err(format!("the order is {status:?}{detail}"));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&patience)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        Ok((chain_pem, key_pem))
    }
}

/// The self-signed certificate that proves control of `domain` in TLS-ALPN-01 (RFC 8737).
fn validation_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .map_err(|e| format!("validation certificate: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("validation key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("validation certificate: {e}"))?;
    // Not `files::parse`: its key check parses the certificate with webpki, which refuses
    // the critical acmeIdentifier extension this certificate exists to carry.
    let signing_key = super::provider()
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            key.serialize_der().into(),
        ))
        .map_err(|e| format!("validation key: {e}"))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}

/// The certificate's validity, its renewal moment (two thirds of its lifetime, as Let's
/// Encrypt advises), and whether it covers every domain.
fn inspect(key: &CertifiedKey, domains: &[String]) -> Result<Issued, String> {
    let leaf = key.cert.first().ok_or("empty chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(missing) = domains
        .iter()
        .find(|d| !names.contains(&d.to_ascii_lowercase()))
    {
        return Err(format!("it does not cover {missing}"));
    }
    let (not_before, not_after) = super::validity(leaf.as_ref())?;
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    Ok(Issued {
        renew_at: not_before + lifetime * 2 / 3,
        not_after,
    })
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

/// Writes `bytes` to `path` atomically, 0600 from the start.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(failed)?;
    crate::storage::make_private(path).map_err(|e| e.to_string())
}
