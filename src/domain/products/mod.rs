//! Products: what is licensed. A product owns its licenses, its key format, its heartbeat
//! policy and an Ed25519 key pair that signs validation responses and release bundles.

pub mod repo;

use rusqlite::Connection;

use super::licenses::LicenseType;
use super::sessions::SessionLimit;
use super::{now_ms, text_enum};
use crate::crypto::{self, KEY_ALPHABET, MasterKey};
use crate::error::{Error, Result};

text_enum! {
    pub enum ProductType {
        Desktop => "DESKTOP",
        Web => "WEB",
        Mobile => "MOBILE",
        Plugin => "PLUGIN",
        Api => "API",
    }
}

text_enum! {
    pub enum ProductStatus {
        Active => "ACTIVE",
        Deprecated => "DEPRECATED",
        Discontinued => "DISCONTINUED",
    }
}

/// The default key format: 20 random symbols, 100 bits.
pub const DEFAULT_KEY_FORMAT: &str = "XXXXX-XXXXX-XXXXX-XXXXX";

/// Generated keys must carry at least this much randomness (guessing stays hopeless).
pub const MIN_KEY_BITS: u32 = 80;

/// A key template: each `X` becomes a random symbol of [`KEY_ALPHABET`] (5 bits), every other
/// character (`A-Z`, `0-9`, `-`, `_`, `.`) is literal. Example: `TT-XXXX-XXXX-XXXX-XXXX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat(String);

impl KeyFormat {
    pub fn parse(template: &str) -> Result<Self> {
        let template = template.trim().to_ascii_uppercase();
        if let Some(c) = template
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || "-_.".contains(*c)))
        {
            return Err(Error::Invalid(format!(
                "key format {template:?}: {c:?} is not allowed (use X for a random symbol and \
                 A-Z, 0-9, '-', '_', '.' as literals)"
            )));
        }
        let random = template.chars().filter(|c| *c == 'X').count() as u32;
        let bits = random * 5;
        if bits < MIN_KEY_BITS {
            return Err(Error::Invalid(format!(
                "key format {template:?} has {random} random symbols ({bits} bits); at least {} \
                 X are needed for {MIN_KEY_BITS} bits",
                MIN_KEY_BITS.div_ceil(5)
            )));
        }
        // License keys travel as 10-100 characters in the vendor contract.
        if !(10..=100).contains(&template.len()) {
            return Err(Error::Invalid(format!(
                "key format {template:?} must be 10-100 characters long"
            )));
        }
        Ok(Self(template))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(&self) -> String {
        self.0
            .chars()
            .map(|c| {
                if c == 'X' {
                    crypto::random_string(KEY_ALPHABET, 1)
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
}

/// How a product expects its machines to check in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPolicy {
    pub interval_secs: u32,
    pub grace_secs: u32,
    /// Cull (deactivate, freeing the seat) a machine whose heartbeats stopped; otherwise keep
    /// it, reported as `HEARTBEAT_DEAD` until it checks in again.
    pub cull_dead: bool,
}

impl HeartbeatPolicy {
    /// A machine last seen before this instant is dead.
    pub fn dead_before(&self, now: i64) -> i64 {
        now - (self.interval_secs as i64 + self.grace_secs as i64) * 1000
    }
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub slug: String,
    pub product_type: ProductType,
    pub status: ProductStatus,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    pub key_format: KeyFormat,
    pub heartbeat: Option<HeartbeatPolicy>,
    pub signing_public_key: Vec<u8>,
    pub signing_secret_sealed: Vec<u8>,
    pub client_secret_sha256: Vec<u8>,
    pub client_secret_sealed: Vec<u8>,
    pub payload_key_sealed: Vec<u8>,
    pub settings: ProjectSettings,
    /// The entitlement codes its licenses may carry (see [`super::entitlements`]).
    pub entitlements: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Product {
    /// A discontinued product issues no new licenses, whichever face asks (its existing
    /// licenses keep working).
    pub fn ensure_issues_licenses(&self) -> Result<()> {
        if self.status == ProductStatus::Discontinued {
            return Err(Error::Invalid(format!(
                "product {} is discontinued; no new licenses can be issued",
                self.slug
            )));
        }
        Ok(())
    }
}

/// What the key/HWID face adds to a product ("project").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    pub description: Option<String>,
    /// Handed to apps by every successful `/api/validate`.
    pub server_var: Option<String>,
    /// Refuse plain `/api/validate` requests: only the encrypted envelope is accepted.
    pub require_encryption: bool,
    /// A session not refreshed within this many seconds frees its place.
    pub session_ttl_secs: u32,
    /// What a new session gets when every session a key allows is live.
    pub session_limit: SessionLimit,
    /// Minimum seconds between two HWID resets requested by end users.
    pub hwid_reset_cooldown_secs: u32,
    /// Portal configuration (JSON), used by the portal.
    pub portal_settings: Option<String>,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        Self {
            description: None,
            server_var: None,
            require_encryption: false,
            session_ttl_secs: 300,
            session_limit: SessionLimit::default(),
            hwid_reset_cooldown_secs: 86_400,
            portal_settings: None,
        }
    }
}

/// A fresh `kv_` client secret (32 symbols of 36: ~165 bits).
pub fn new_client_secret() -> String {
    format!("kv_{}", crypto::random_secret(32))
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub slug: String,
    pub product_type: ProductType,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    pub key_format: KeyFormat,
    pub heartbeat: Option<HeartbeatPolicy>,
    /// Entitlement codes, checked by [`create`].
    pub entitlements: Vec<String>,
}

pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 255 {
        return Err(Error::Invalid(
            "product name must be 1-255 characters".into(),
        ));
    }
    Ok(())
}

/// A slug made from a name: lower-case ASCII letters and digits joined by '-'.
pub fn slug_from_name(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(48).collect();
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "project".into()
    } else {
        slug
    }
}

/// `base`, or `base-2`, `base-3`… whichever is free in the tenant.
pub fn free_slug(conn: &Connection, tenant_id: &str, base: &str) -> Result<String> {
    let mut candidate = base.to_owned();
    for n in 2..1000 {
        if repo::find_by_slug(conn, tenant_id, &candidate)?.is_none() {
            return Ok(candidate);
        }
        candidate = format!("{base}-{n}");
    }
    Err(Error::Conflict(format!(
        "no free slug like {base:?}; choose a slug"
    )))
}

/// Checks the settings a project may be given.
pub fn validate_settings(s: &ProjectSettings) -> Result<()> {
    if s.description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(Error::Invalid(
            "description must be at most 1000 characters".into(),
        ));
    }
    if s.server_var.as_ref().is_some_and(|v| v.len() > 4096) {
        return Err(Error::Invalid(
            "serverVar must be at most 4096 characters".into(),
        ));
    }
    if !(30..=86_400).contains(&s.session_ttl_secs) {
        return Err(Error::Invalid("sessionTtlSeconds must be 30-86400".into()));
    }
    if s.hwid_reset_cooldown_secs > 365 * 86_400 {
        return Err(Error::Invalid(
            "hwidResetCooldownSeconds must be 0-31536000".into(),
        ));
    }
    Ok(())
}

/// Creates a product with a fresh Ed25519 key pair whose secret half is sealed with the
/// master key.
pub fn create(
    conn: &Connection,
    master: &MasterKey,
    tenant_id: &str,
    new: NewProduct,
) -> Result<Product> {
    validate_name(&new.name)?;
    super::tenants::validate_slug(&new.slug).map_err(Error::Invalid)?;
    if !(1..=1000).contains(&new.default_max_activations) {
        return Err(Error::Invalid(
            "default maxActivations must be 1-1000".into(),
        ));
    }
    if let Some(hb) = new.heartbeat
        && hb.interval_secs == 0
    {
        return Err(Error::Invalid(
            "heartbeat interval must be at least 1 second".into(),
        ));
    }
    let new = NewProduct {
        entitlements: super::entitlements::parse_set("entitlements", &new.entitlements)?,
        ..new
    };
    if repo::find_by_slug(conn, tenant_id, &new.slug)?.is_some() {
        return Err(Error::Conflict(format!(
            "a product with slug {:?} exists in this tenant",
            new.slug
        )));
    }
    let (public, secret) = crypto::generate_signing_key();
    let client_secret = new_client_secret();
    let payload_key = crypto::random_bytes::<32>();
    let now = now_ms();
    let product = Product {
        id: crypto::new_id("prod"),
        tenant_id: tenant_id.to_owned(),
        name: new.name.trim().to_owned(),
        slug: new.slug,
        product_type: new.product_type,
        status: ProductStatus::Active,
        default_license_type: new.default_license_type,
        default_max_activations: new.default_max_activations,
        key_format: new.key_format,
        heartbeat: new.heartbeat,
        signing_public_key: public.to_vec(),
        signing_secret_sealed: master.seal(&secret)?,
        client_secret_sha256: crypto::sha256(client_secret.as_bytes()).to_vec(),
        client_secret_sealed: master.seal(client_secret.as_bytes())?,
        payload_key_sealed: master.seal(&payload_key)?,
        settings: ProjectSettings::default(),
        entitlements: new.entitlements,
        created_at: now,
        updated_at: now,
    };
    repo::insert(conn, &product)?;
    super::signing_keys::repo::insert(
        conn,
        &super::signing_keys::SigningKeyRecord::first(
            &product.id,
            &product.signing_public_key,
            product.signing_secret_sealed.clone(),
            now,
        ),
    )?;
    Ok(product)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_need_eighty_random_bits() {
        let cases = [
            ("TT-XXXX-XXXX-XXXX-XXXX", true),
            ("XXXX-XXXX-XXXX-XXXX", true),
            ("XXXX-XXXX-XXXX-XXX", false),
            ("tt-xxxx-xxxx-xxxx-xxxx", true),
            ("TT XXXX-XXXX-XXXX-XXXX", false),
            ("TT-XXXX-XXXX-XXXX-XXXX-é", false),
            (&"X".repeat(101), false),
        ];
        for (template, ok) in cases {
            assert_eq!(KeyFormat::parse(template).is_ok(), ok, "{template}");
        }
    }

    #[test]
    fn generated_keys_follow_the_template() -> Result<()> {
        let format = KeyFormat::parse("tt-XXXX-XXXX-XXXX-XXXX")?;
        let key = format.generate();
        assert_eq!(key.len(), 22);
        assert!(key.starts_with("TT-"));
        for (t, k) in format.as_str().chars().zip(key.chars()) {
            if t == 'X' {
                assert!(KEY_ALPHABET.contains(&(k as u8)), "{k} from the alphabet");
            } else {
                assert_eq!(t, k);
            }
        }
        assert_ne!(format.generate(), key);
        Ok(())
    }
}
