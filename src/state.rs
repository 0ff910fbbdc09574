//! What every request handler shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::domain::products::Product;
use crate::domain::releases::bundles::BundleStore;
use crate::error::Error;
use crate::ratelimit::{FailureBudget, Limiter};
use crate::storage::Db;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub master: MasterKey,
    pub signing_keys: SigningKeys,
    pub limits: Limits,
    /// Release bundles, files in the data directory named by their SHA-256.
    pub bundles: BundleStore,
    /// API keys and products are read by every validation and change rarely: short-lived
    /// copies spare two queries per request. Changes made through this process forget the
    /// copy at once; changes made by another process (the CLI) show within [`ROW_CACHE_TTL`].
    pub api_key_cache: RowCache<crate::domain::api_keys::ApiKey>,
    pub product_cache: RowCache<Product>,
    /// argon2id costs ~19 MiB and tens of milliseconds: at most two run at once.
    pub password_hashing: tokio::sync::Semaphore,
    /// Abuse detection: reports from handlers, the IP block list.
    pub abuse: crate::abuse::Abuse,
    /// Event webhooks: wakes the delivery worker after an event is committed.
    pub webhooks: crate::outgoing::webhooks::Webhooks,
    /// Prometheus metrics of this server (see `telemetry`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

pub struct Limits {
    pub per_ip: Limiter<IpAddr>,
    pub per_api_key: Limiter<String>,
    pub failed_auth_per_ip: Limiter<IpAddr>,
    /// Every sign-in attempt, per client IP.
    pub login_per_ip: Limiter<IpAddr>,
    /// Failed sign-ins per account, from clients without a device cookie of it.
    pub login_per_account: FailureBudget<String>,
    /// Failed sign-ins per device cookie (see `service::login_guard`).
    pub login_per_device: FailureBudget<String>,
    pub per_license_key: Limiter<String>,
    pub update_checks_per_license: Limiter<String>,
    pub downloads_per_license: Limiter<String>,
    pub downloads_per_ip: Limiter<IpAddr>,
    // --- E-mail to customers (issue 13) ---
    /// Portal "send me my keys" and password-reset requests, per client IP.
    pub mail_requests_per_ip: Limiter<IpAddr>,
    /// The same, per e-mail address asked about (an address is not flooded from many IPs).
    pub mail_requests_per_address: Limiter<String>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, db: Db, master: MasterKey) -> Self {
        let r = config.rate_limits;
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(config.metrics.enabled));
        db.writer().observe(telemetry.clone());
        Self(Arc::new(Inner {
            telemetry,
            limits: Limits {
                per_ip: Limiter::per_minute(r.per_ip),
                per_api_key: Limiter::per_minute(r.per_api_key),
                failed_auth_per_ip: Limiter::per_minute(r.failed_auth_per_ip),
                login_per_ip: Limiter::per_minute(r.login_per_minute),
                login_per_account: FailureBudget::per_minute(r.login_per_minute),
                login_per_device: FailureBudget::per_minute(r.login_per_minute),
                per_license_key: Limiter::per_minute(r.per_license_key),
                update_checks_per_license: Limiter::per_window(
                    r.update_checks_per_15_min,
                    Duration::from_secs(15 * 60),
                ),
                downloads_per_license: Limiter::per_window(
                    r.downloads_per_hour,
                    Duration::from_secs(3600),
                ),
                downloads_per_ip: Limiter::per_window(
                    r.downloads_per_hour,
                    Duration::from_secs(3600),
                ),
                mail_requests_per_ip: Limiter::per_window(
                    config.mail_requests_per_hour.saturating_mul(4),
                    Duration::from_secs(3600),
                ),
                mail_requests_per_address: Limiter::per_window(
                    config.mail_requests_per_hour,
                    Duration::from_secs(3600),
                ),
            },
            bundles: BundleStore::new(&config.data_dir),
            password_hashing: tokio::sync::Semaphore::new(2),
            abuse: crate::abuse::Abuse::new(config.abuse_detection),
            webhooks: crate::outgoing::webhooks::Webhooks::new(),
            config,
            db,
            master,
            signing_keys: SigningKeys::default(),
            api_key_cache: RowCache::new(ROW_CACHE_TTL),
            product_cache: RowCache::new(ROW_CACHE_TTL),
        }))
    }
}

/// How long a cached row is trusted before it is read again.
pub const ROW_CACHE_TTL: Duration = Duration::from_secs(5);

/// A small map of recently read rows, each trusted for a fixed time.
pub struct RowCache<T> {
    ttl: Duration,
    rows: RwLock<HashMap<String, (Arc<T>, Instant)>>,
}

impl<T> RowCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            rows: RwLock::new(HashMap::new()),
        }
    }

    /// The row, if it was read less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        let rows = self.rows.read().ok()?;
        let (row, at) = rows.get(key)?;
        (at.elapsed() < self.ttl).then(|| row.clone())
    }

    pub fn put(&self, key: &str, row: T) -> Arc<T> {
        let row = Arc::new(row);
        if let Ok(mut rows) = self.rows.write() {
            // Bounded: a flood of distinct keys empties the map rather than growing it.
            if rows.len() >= 10_000 {
                rows.clear();
            }
            rows.insert(key.to_owned(), (row.clone(), Instant::now()));
        }
        row
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut rows) = self.rows.write() {
            rows.remove(key);
        }
    }
}

/// Decrypted product signing keys, opened once per product and kept in memory: signing a
/// validation response must not cost an AES decryption each time.
#[derive(Default)]
pub struct SigningKeys(RwLock<HashMap<String, Arc<OpenSigningKey>>>);

/// A product's signing key, opened, with its id (`kid`) worked out once: every signed answer
/// names it, so it is not recomputed per answer.
pub struct OpenSigningKey {
    pub key: SigningKey,
    /// The same key expanded once, for the answers it signs.
    pub answers: crypto::AnswerSigner,
    pub kid: String,
    /// The rotation that made it current in this process (`signing_keys.serial`); 0 for a key
    /// opened from the product row, which is current when read.
    serial: i64,
}

impl SigningKeys {
    /// The signing key of `product`, opening its sealed secret on first use.
    pub fn for_product(
        &self,
        master: &MasterKey,
        product: &Product,
    ) -> Result<Arc<OpenSigningKey>, Error> {
        if let Some(key) = self.get(&product.id) {
            return Ok(key);
        }
        let seed = master.open(&product.signing_secret_sealed)?;
        let key = crypto::signing_key_from_seed(&seed)?;
        let kid = crate::domain::license_files::kid(key.verifying_key().as_bytes());
        let key = Arc::new(OpenSigningKey {
            answers: crypto::AnswerSigner::new(&key),
            key,
            kid,
            serial: 0,
        });
        // A rotation that replaced the entry meanwhile wins: `product` may be the row as it
        // was read before that rotation.
        match self.0.write() {
            Ok(mut map) => Ok(map.entry(product.id.clone()).or_insert(key).clone()),
            Err(_) => Ok(key),
        }
    }

    /// Makes `key` (the product's key number `serial`) its signing key in this process at
    /// once: called by the rotation that made it current, after its commit, so the next answer
    /// is signed by it. Of two rotations that finish together, the later key stays.
    pub fn replace(&self, product_id: &str, key: SigningKey, serial: i64) {
        let kid = crate::domain::license_files::kid(key.verifying_key().as_bytes());
        let key = Arc::new(OpenSigningKey {
            answers: crypto::AnswerSigner::new(&key),
            key,
            kid,
            serial,
        });
        if let Ok(mut map) = self.0.write() {
            let newer = map.get(product_id).is_none_or(|open| open.serial < serial);
            if newer {
                map.insert(product_id.to_owned(), key);
            }
        }
    }

    /// Only keys already opened by [`SigningKeys::for_product`].
    pub fn get(&self, product_id: &str) -> Option<Arc<OpenSigningKey>> {
        self.0.read().ok()?.get(product_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let (_, seed) = crypto::generate_signing_key();
        SigningKey::from_bytes(&seed)
    }

    /// Two rotations of one product that commit together may reach the cache in either order;
    /// the later key (the current one) stays.
    #[test]
    fn the_later_rotation_wins_the_cache() {
        let keys = SigningKeys::default();
        let (second, third) = (key(), key());
        let third_kid = crate::domain::license_files::kid(third.verifying_key().as_bytes());
        keys.replace("prod_1", third, 3);
        keys.replace("prod_1", second, 2);
        assert_eq!(keys.get("prod_1").map(|k| k.kid.clone()), Some(third_kid));
    }
}
