//! The vendor contract's schemas, and their construction from the domain.

use poem_openapi::{Enum, Object};

pub use crate::api::shared::pagination::{Counted, Pagination, page_and_limit};
use time::OffsetDateTime;

use crate::domain::activations::Activation;
use crate::domain::licenses::{License, LicenseStatus, LicenseTier, LicenseType};
use crate::domain::ms_to_datetime;
use crate::domain::products::{Product, ProductStatus, ProductType};

/// The vendor contract's four statuses (BANNED keys show as SUSPENDED).
#[derive(Enum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename = "LicenseStatus", rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VendorStatus {
    Active,
    Expired,
    Suspended,
    Revoked,
}

impl VendorStatus {
    pub fn of(status: LicenseStatus) -> Self {
        match status {
            LicenseStatus::Active => Self::Active,
            LicenseStatus::Expired => Self::Expired,
            LicenseStatus::Suspended | LicenseStatus::Banned => Self::Suspended,
            LicenseStatus::Revoked => Self::Revoked,
        }
    }
}

/// Returned by public validation endpoints.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct LicensePublic {
    /// License key (e.g. TT-ABCD-EFGH-IJKL-MNOP).
    pub key: String,
    /// Product name.
    pub product: String,
    pub tier: LicenseTier,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub license_type: LicenseType,
    /// Expiration (null for perpetual).
    #[oai(nullable)]
    #[serde(serialize_with = "crate::api::shared::signed::rfc3339_or_null")]
    pub valid_until: Option<OffsetDateTime>,
    /// Current activation count.
    pub activations_used: u64,
    /// Maximum allowed activations.
    pub max_activations: u32,
}

impl LicensePublic {
    pub fn new(license: &License, product: &Product, activations_used: u64) -> Self {
        Self {
            key: license.key.clone(),
            product: product.name.clone(),
            tier: license.tier,
            license_type: license.license_type,
            valid_until: license.valid_until.map(ms_to_datetime),
            activations_used,
            max_activations: license.max_activations,
        }
    }
}

/// Returned by create, revoke and renew.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct LicenseCreated {
    /// License ID.
    pub id: String,
    /// License key.
    pub key: String,
    /// Product ID.
    pub product: String,
    #[oai(rename = "type")]
    pub license_type: LicenseType,
    pub tier: LicenseTier,
    /// Current status.
    pub status: VendorStatus,
    pub max_activations: u32,
    /// Expiration (null for perpetual).
    #[oai(nullable)]
    pub valid_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// The entitlement codes the license carries.
    pub entitlements: Vec<String>,
}

impl LicenseCreated {
    pub fn new(license: &License, now: i64) -> Self {
        Self {
            id: license.id.clone(),
            key: license.key.clone(),
            product: license.product_id.clone(),
            license_type: license.license_type,
            tier: license.tier,
            status: VendorStatus::of(license.effective_status(now)),
            max_activations: license.max_activations,
            valid_until: license.valid_until.map(ms_to_datetime),
            created_at: ms_to_datetime(license.created_at),
            entitlements: license.entitlements.clone(),
        }
    }
}

/// A machine bound to a license.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "Activation", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ActivationView {
    pub machine_id: String,
    #[oai(nullable)]
    pub machine_name: Option<String>,
    #[serde(serialize_with = "crate::api::shared::signed::rfc3339")]
    pub activated_at: OffsetDateTime,
    /// Last activation or heartbeat of this machine.
    #[serde(serialize_with = "crate::api::shared::signed::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

impl ActivationView {
    pub fn new(a: &Activation) -> Self {
        Self {
            machine_id: a.machine_id.clone(),
            machine_name: a.machine_name.clone(),
            activated_at: ms_to_datetime(a.activated_at),
            last_seen_at: ms_to_datetime(a.last_seen_at),
        }
    }
}

/// A product as API clients see it; `publicKey` verifies signed responses and bundles.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct ProductPublic {
    pub id: String,
    pub name: String,
    pub slug: String,
    #[oai(rename = "type")]
    pub product_type: ProductType,
    pub status: ProductStatus,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    /// Seconds between expected heartbeats; null when the product expects none.
    #[oai(nullable)]
    pub heartbeat_interval_seconds: Option<u32>,
    /// The current Ed25519 public key, base64 of the raw 32 bytes (every key, with its
    /// endorsement: `GET /api/v1/updates/public-key`).
    pub public_key: String,
    /// The entitlement codes its licenses may carry.
    pub entitlements: Vec<String>,
    pub created_at: OffsetDateTime,
}

impl ProductPublic {
    pub fn new(p: &Product) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            slug: p.slug.clone(),
            product_type: p.product_type,
            status: p.status,
            default_license_type: p.default_license_type,
            default_max_activations: p.default_max_activations,
            heartbeat_interval_seconds: p.heartbeat.map(|h| h.interval_secs),
            public_key: crate::crypto::base64(&p.signing_public_key),
            entitlements: p.entitlements.clone(),
            created_at: ms_to_datetime(p.created_at),
        }
    }
}
