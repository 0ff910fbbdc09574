//! Payments: a tenant's endpoints that receive a payment provider's webhooks, the mapping from
//! the provider's price/product/variant ids to a product and license settings, and the events
//! received. The provider's signature schemes are in [`signature`], the reading of its event
//! shapes in [`events`].

pub mod events;
pub mod repo;
pub mod signature;

use super::licenses::{LicenseTier, LicenseType, Plan};
use super::text_enum;
use crate::error::{Error, Result};

text_enum! {
    /// Who sends the webhooks of an endpoint.
    #[oai(rename = "PaymentProvider")]
    pub enum Provider {
        Stripe => "STRIPE",
        Paddle => "PADDLE",
        LemonSqueezy => "LEMONSQUEEZY",
    }
}

impl Provider {
    /// The provider's segment of its receiving path (`/api/payments/<segment>/<endpointId>`).
    pub fn path_segment(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Paddle => "paddle",
            Provider::LemonSqueezy => "lemonsqueezy",
        }
    }

    /// The header that carries the provider's signature.
    pub fn signature_header(self) -> &'static str {
        match self {
            Provider::Stripe => "Stripe-Signature",
            Provider::Paddle => "Paddle-Signature",
            Provider::LemonSqueezy => "X-Signature",
        }
    }
}

text_enum! {
    /// What an event means for the licenses of its payment.
    #[oai(rename = "PaymentEffect")]
    #[derive(Default)]
    pub enum Effect {
        /// Create the license(s) of what was bought.
        Purchase => "PURCHASE",
        /// A subscription was paid: the license runs to the period's end.
        Renewal => "RENEWAL",
        /// A subscription was cancelled or ended: the license expires at the period's end.
        Cancellation => "CANCELLATION",
        /// The payment was refunded: the license is revoked.
        Refund => "REFUND",
        /// A dispute or chargeback was opened: the license is suspended.
        DisputeOpened => "DISPUTE_OPENED",
        /// The vendor won the dispute: the license is active again.
        DisputeWon => "DISPUTE_WON",
        /// The vendor lost the dispute: the license is revoked.
        DisputeLost => "DISPUTE_LOST",
        /// An event type Keyward does not act on (stored all the same).
        #[default]
        None => "NONE",
    }
}

text_enum! {
    /// What became of a received event. Anything but APPLIED and IGNORED is flagged for the
    /// vendor to look at.
    #[oai(rename = "PaymentOutcome")]
    pub enum Outcome {
        Applied => "APPLIED",
        /// Nothing to do (an event type Keyward does not act on, a partial refund…).
        Ignored => "IGNORED",
        /// No mapping names what was bought.
        Unmapped => "UNMAPPED",
        /// No license of this endpoint belongs to the payment the event names.
        LicenseNotFound => "LICENSE_NOT_FOUND",
        /// A rule refused the effect (a revoked license cannot be renewed, …).
        Failed => "FAILED",
    }
}

impl Outcome {
    pub fn flagged(self) -> bool {
        !matches!(self, Outcome::Applied | Outcome::Ignored)
    }
}

/// A payment endpoint (its secret is stored sealed and never read back out).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub provider: Provider,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    /// Where the provider sends its webhooks, relative to the server's address.
    pub fn receiving_path(&self) -> String {
        format!("/api/payments/{}/{}", self.provider.path_segment(), self.id)
    }
}

/// An endpoint as listed, with counts.
#[derive(Debug, Clone)]
pub struct EndpointSummary {
    pub endpoint: Endpoint,
    pub mappings: u64,
    pub events: u64,
    pub flagged: u64,
}

/// What one provider id (a price, product or variant) sells.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub endpoint_id: String,
    pub provider_ref: String,
    pub product_id: String,
    /// `None`: the product's default.
    pub license_type: Option<LicenseType>,
    pub tier: LicenseTier,
    /// A plan whose clock starts at the first activation (unless the event names a period).
    pub plan: Option<Plan>,
    /// `None`: the product's default.
    pub max_activations: Option<u32>,
    pub entitlements: Vec<String>,
    pub created_at: i64,
}

/// A received event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub endpoint_id: String,
    pub event_id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub received_at: i64,
    pub effect: Effect,
    pub outcome: Outcome,
    pub message: String,
    pub customer_id: Option<String>,
    pub customer_email: Option<String>,
    pub refs: Vec<String>,
    pub period_end: Option<i64>,
    /// The licenses it changed.
    pub license_ids: Vec<String>,
}

pub const NAME_MAX: usize = 100;
pub const SECRET_MAX: usize = 500;
pub const REF_MAX: usize = 200;
/// Licenses one purchased line may create: a quantity beyond is a mistake, not an order.
pub const QUANTITY_MAX: u32 = 100;

pub fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(Error::Invalid(format!(
            "name must be 1-{NAME_MAX} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// A signing secret as the provider shows it (`whsec_…`, `pdl_ntfset_…`, or the one chosen
/// for Lemon Squeezy): printable, without spaces, 8-500 characters.
pub fn validate_secret(secret: &str) -> Result<String> {
    let secret = secret.trim();
    let n = secret.chars().count();
    if !(8..=SECRET_MAX).contains(&n) {
        return Err(Error::Invalid(format!(
            "secret must be 8-{SECRET_MAX} characters"
        )));
    }
    if !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::Invalid(
            "secret must be printable ASCII without spaces".into(),
        ));
    }
    Ok(secret.to_owned())
}

/// A provider id (`price_1N…`, `pri_01h…`, `123456`): 1-200 printable characters, no spaces.
pub fn validate_ref(provider_ref: &str) -> Result<String> {
    let r = provider_ref.trim();
    if r.is_empty() || r.len() > REF_MAX || !r.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::Invalid(format!(
            "providerRef must be 1-{REF_MAX} printable ASCII characters without spaces"
        )));
    }
    Ok(r.to_owned())
}

pub fn validate_max_activations(n: Option<u32>) -> Result<Option<u32>> {
    match n {
        Some(n) if !(1..=1000).contains(&n) => {
            Err(Error::Invalid("maxActivations must be 1-1000".into()))
        }
        n => Ok(n),
    }
}
