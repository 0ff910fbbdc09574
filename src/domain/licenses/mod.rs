//! Licenses: a key string with a status, limits and an expiry, belonging to one product.
//! The vendor face calls them licenses, the key/HWID face calls them keys.

pub mod repo;

use rusqlite::Connection;

use super::products::Product;
use super::{DAY_MS, now_ms, text_enum};
use crate::crypto;
use crate::error::{Error, LicenseProblem, Result};

text_enum! {
    pub enum LicenseType {
        Perpetual => "PERPETUAL",
        Subscription => "SUBSCRIPTION",
        Trial => "TRIAL",
        Beta => "BETA",
    }
}

text_enum! {
    pub enum LicenseTier {
        Personal => "PERSONAL",
        Professional => "PROFESSIONAL",
        Business => "BUSINESS",
        Enterprise => "ENTERPRISE",
    }
}

text_enum! {
    /// Stored statuses. BANNED exists for the key/HWID face; the vendor face shows it as
    /// SUSPENDED. REVOKED is final.
    #[oai(rename = "KeyStatus")]
    pub enum LicenseStatus {
        Active => "ACTIVE",
        Expired => "EXPIRED",
        Suspended => "SUSPENDED",
        Banned => "BANNED",
        Revoked => "REVOKED",
    }
}

text_enum! {
    /// Reseller plans of the key/HWID face. A plan key without an explicit expiry starts its
    /// clock at its first activation.
    pub enum Plan {
        Daily => "DAILY",
        Weekly => "WEEKLY",
        Monthly => "MONTHLY",
        Lifetime => "LIFETIME",
        Custom => "CUSTOM",
    }
}

/// What validation concluded about a license on a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    NotFound,
    Expired,
    Suspended,
    Revoked,
    NotActivated,
    HeartbeatDead,
    /// Usable, but without an entitlement the app requires.
    EntitlementsMissing,
}

impl Verdict {
    pub fn code(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::Revoked => "REVOKED",
            Self::NotActivated => "NOT_ACTIVATED",
            Self::HeartbeatDead => "HEARTBEAT_DEAD",
            Self::EntitlementsMissing => "ENTITLEMENTS_MISSING",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Valid => "License is valid",
            Self::NotFound => "License not found",
            Self::Expired => LicenseProblem::Expired.message(),
            Self::Suspended => LicenseProblem::Suspended.message(),
            Self::Revoked => LicenseProblem::Revoked.message(),
            Self::NotActivated => LicenseProblem::NotActivated.message(),
            Self::HeartbeatDead => {
                "The machine stopped sending heartbeats; send a heartbeat or activate again"
            }
            Self::EntitlementsMissing => "The license lacks entitlements the app requires",
        }
    }
}

#[derive(Debug, Clone)]
pub struct License {
    pub id: String,
    pub tenant_id: String,
    pub product_id: String,
    pub key: String,
    pub license_type: LicenseType,
    pub tier: LicenseTier,
    pub status: LicenseStatus,
    pub max_activations: u32,
    pub max_sessions: Option<u32>,
    pub valid_until: Option<i64>,
    pub plan: Option<Plan>,
    pub plan_days: Option<u32>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub order_id: Option<String>,
    pub metadata: Option<String>,
    pub note: Option<String>,
    pub revoked_reason: Option<String>,
    pub hwid_reset_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The product's entitlement codes this license carries.
    pub entitlements: Vec<String>,
}

impl License {
    /// The status as of `now`: an ACTIVE license past its expiry is EXPIRED even before the
    /// background job has rewritten it.
    pub fn effective_status(&self, now: i64) -> LicenseStatus {
        match (self.status, self.valid_until) {
            (LicenseStatus::Active, Some(until)) if until <= now => LicenseStatus::Expired,
            (status, _) => status,
        }
    }

    /// REVOKED is final: a revoked license is never renewed, reactivated or given another
    /// status. Every path that changes a status or an expiry asks here first.
    pub fn ensure_not_final(&self) -> Result<()> {
        if self.status == LicenseStatus::Revoked {
            return Err(Error::License(LicenseProblem::Revoked));
        }
        Ok(())
    }

    /// Why this license may not be used now, if anything stops it.
    pub fn problem(&self, now: i64) -> Option<LicenseProblem> {
        match self.effective_status(now) {
            LicenseStatus::Active => None,
            LicenseStatus::Expired => Some(LicenseProblem::Expired),
            LicenseStatus::Suspended => Some(LicenseProblem::Suspended),
            LicenseStatus::Banned => Some(LicenseProblem::Banned),
            LicenseStatus::Revoked => Some(LicenseProblem::Revoked),
        }
    }
}

/// Keys are compared trimmed and upper-cased, so users may paste them any way.
pub fn normalize_key(key: &str) -> String {
    key.trim().to_ascii_uppercase()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NewLicense {
    pub license_type: LicenseType,
    pub tier: LicenseTier,
    pub max_activations: u32,
    pub max_sessions: Option<u32>,
    pub valid_until: Option<i64>,
    pub plan: Option<Plan>,
    pub plan_days: Option<u32>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub order_id: Option<String>,
    pub metadata: Option<String>,
    pub note: Option<String>,
    /// Entitlement codes, each one of the product's (checked by [`create`]).
    pub entitlements: Vec<String>,
}

/// A customer's e-mail address, by the rule every address follows ([`crate::domain::mail::is_address`]):
/// a key's address must be one the key e-mail can later be sent to.
pub fn validate_email(email: &str) -> Result<()> {
    if !crate::domain::mail::is_address(email) {
        return Err(Error::Invalid(format!(
            "customerEmail {email:?} is not a valid e-mail address"
        )));
    }
    Ok(())
}

/// Issues a license with a fresh key in the product's format.
pub fn create(conn: &Connection, product: &Product, new: &NewLicense) -> Result<License> {
    let now = now_ms();
    if let Some(until) = new.valid_until
        && until <= now
    {
        return Err(Error::Invalid("validUntil must be in the future".into()));
    }
    let mut license = draft(product, new, now)?;
    // With >= 80 random bits a collision is practically impossible; retry anyway rather than
    // fail a paying customer's order on the one-in-a-trillion chance.
    for _ in 0..5 {
        license.key = product.key_format.generate();
        if repo::find_by_key_any_tenant(conn, &license.key)?.is_none() {
            repo::insert(conn, &license)?;
            return Ok(license);
        }
    }
    Err(Error::Storage(
        "could not generate a unique license key".into(),
    ))
}

/// A new license of `product` without its key: the rules every way of issuing one shares.
fn draft(product: &Product, new: &NewLicense, now: i64) -> Result<License> {
    product.ensure_issues_licenses()?;
    if !(1..=1000).contains(&new.max_activations) {
        return Err(Error::Invalid("maxActivations must be 1-1000".into()));
    }
    let entitlements = super::entitlements::parse_for_product(
        "entitlements",
        &new.entitlements,
        &product.entitlements,
    )?;
    Ok(License {
        id: crypto::new_id("lic"),
        tenant_id: product.tenant_id.clone(),
        product_id: product.id.clone(),
        key: String::new(),
        license_type: new.license_type,
        tier: new.tier,
        status: LicenseStatus::Active,
        max_activations: new.max_activations,
        max_sessions: new.max_sessions,
        valid_until: new.valid_until,
        plan: new.plan,
        plan_days: new.plan_days,
        customer_email: new.customer_email.clone(),
        customer_name: new.customer_name.clone(),
        order_id: new.order_id.clone(),
        metadata: new.metadata.clone(),
        note: new.note.clone(),
        revoked_reason: None,
        hwid_reset_at: None,
        created_at: now,
        updated_at: now,
        entitlements,
    })
}

/// A license carried over from another system: its key as it was sold, its status and its
/// expiry (which may have passed: such a license is imported expired).
#[derive(Debug, Clone)]
pub struct ImportedLicense {
    pub key: String,
    pub status: LicenseStatus,
    pub license: NewLicense,
}

/// What importing one license did.
#[derive(Debug, Clone)]
pub enum ImportOutcome {
    Created(License),
    /// The key was imported before (into the same product): importing again changes nothing.
    AlreadyPresent(License),
}

/// Keys from elsewhere: 10-100 letters, digits and `-_.` (the lengths every face accepts, so
/// an imported key validates everywhere), compared as [`normalize_key`] does.
pub fn validate_imported_key(key: &str) -> Result<String> {
    let key = normalize_key(key);
    let n = key.chars().count();
    if !(10..=100).contains(&n) {
        return Err(Error::Invalid(format!(
            "key {key:?} must be 10-100 characters"
        )));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::Invalid(format!(
            "key {key:?} may hold only letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(key)
}

/// Imports one license under its existing key. A key already in `product` is left as it is
/// (so a file can be imported twice); a key anywhere else is refused.
pub fn import(
    conn: &Connection,
    product: &Product,
    imported: &ImportedLicense,
) -> Result<ImportOutcome> {
    let key = validate_imported_key(&imported.key)?;
    if let Some(existing) = repo::find_by_key_everywhere(conn, &key)? {
        if existing.tenant_id == product.tenant_id && existing.product_id == product.id {
            return Ok(ImportOutcome::AlreadyPresent(existing));
        }
        return Err(Error::Conflict(format!(
            "key {key} is already in use by another product"
        )));
    }
    if let Some(email) = &imported.license.customer_email {
        validate_email(email)?;
    }
    let mut license = draft(product, &imported.license, now_ms())?;
    license.key = key;
    license.status = imported.status;
    if imported.status == LicenseStatus::Revoked {
        license.revoked_reason = Some("imported as revoked".into());
    }
    repo::insert(conn, &license)?;
    Ok(ImportOutcome::Created(license))
}

/// Outcome of an idempotent create.
pub struct Created {
    pub license: License,
    /// True when the idempotency key had already produced this license.
    pub replayed: bool,
}

/// Creates a license once per idempotency key: the same key with the same request returns the
/// license made the first time; with a different request it is refused.
pub fn create_idempotent(
    conn: &Connection,
    product: &Product,
    new: &NewLicense,
    idempotency: Option<(&str, [u8; 32])>,
) -> Result<Created> {
    product.ensure_issues_licenses()?;
    if let Some((key, request_sha256)) = idempotency
        && let Some((stored_hash, license_id)) =
            repo::find_idempotency(conn, &product.tenant_id, key)?
    {
        if !crypto::constant_time_eq(&stored_hash, &request_sha256) {
            return Err(Error::IdempotencyMismatch(format!(
                "idempotency key {key:?} was already used with a different request"
            )));
        }
        let license =
            repo::find(conn, &product.tenant_id, &license_id)?.ok_or(Error::NotFound("license"))?;
        return Ok(Created {
            license,
            replayed: true,
        });
    }
    let license = create(conn, product, new)?;
    if let Some((key, request_sha256)) = idempotency {
        repo::insert_idempotency(conn, &product.tenant_id, key, &request_sha256, &license.id)?;
    }
    Ok(Created {
        license,
        replayed: false,
    })
}

/// Revokes for good. Revoking a revoked license changes nothing and is not an error.
pub fn revoke(conn: &Connection, license: &License, reason: Option<&str>) -> Result<License> {
    if license.status != LicenseStatus::Revoked {
        repo::set_revoked(conn, &license.id, reason, now_ms())?;
    }
    repo::find(conn, &license.tenant_id, &license.id)?.ok_or(Error::NotFound("license"))
}

/// Moves the expiry to `valid_until`; an EXPIRED license becomes ACTIVE again. Revoked
/// licenses stay revoked.
pub fn renew(conn: &Connection, license: &License, valid_until: i64) -> Result<License> {
    license.ensure_not_final()?;
    let now = now_ms();
    if valid_until <= now {
        return Err(Error::Invalid("validUntil must be in the future".into()));
    }
    let status = match license.status {
        LicenseStatus::Expired => LicenseStatus::Active,
        s => s,
    };
    repo::set_valid_until(conn, &license.id, valid_until, status, now)?;
    repo::find(conn, &license.tenant_id, &license.id)?.ok_or(Error::NotFound("license"))
}

/// Makes the license end at `until` (a cancelled subscription's period end): still usable
/// until then when it lies ahead, EXPIRED at once when it has passed. Revoked licenses stay
/// revoked; a suspended or banned one keeps that status.
pub fn expire_at(conn: &Connection, license: &License, until: i64) -> Result<License> {
    license.ensure_not_final()?;
    let now = now_ms();
    let status = match license.status {
        LicenseStatus::Active | LicenseStatus::Expired if until <= now => LicenseStatus::Expired,
        LicenseStatus::Expired => LicenseStatus::Active,
        s => s,
    };
    repo::set_valid_until(conn, &license.id, until, status, now)?;
    repo::find(conn, &license.tenant_id, &license.id)?.ok_or(Error::NotFound("license"))
}

/// Gives the license another stored status. REVOKED goes through [`revoke`]; a revoked
/// license keeps its status (REVOKED is final). Returns whether anything changed.
pub fn change_status(
    conn: &Connection,
    license: &License,
    status: LicenseStatus,
    reason: Option<&str>,
) -> Result<bool> {
    if status == license.status {
        return Ok(false);
    }
    // Asking a revoked license for another status is a request that cannot be honoured
    // (400 on both faces), not a refusal to use the license.
    license
        .ensure_not_final()
        .map_err(|_| Error::Invalid("a revoked license stays revoked: REVOKED is final".into()))?;
    if status == LicenseStatus::Revoked {
        revoke(conn, license, reason)?;
    } else {
        repo::set_status(conn, &license.id, status, now_ms())?;
    }
    Ok(true)
}

/// Days a plan runs, counted from its first activation.
pub fn plan_days(plan: Plan, custom_days: Option<u32>) -> Option<u32> {
    match plan {
        Plan::Daily => Some(1),
        Plan::Weekly => Some(7),
        Plan::Monthly => Some(30),
        Plan::Lifetime => None,
        Plan::Custom => custom_days,
    }
}

/// The expiry a plan key gets when its clock starts at `now`.
pub fn plan_expiry(license: &License, now: i64) -> Option<i64> {
    match (license.valid_until, license.plan_days) {
        (None, Some(days)) => Some(now + days as i64 * DAY_MS),
        (until, _) => until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(status: LicenseStatus, valid_until: Option<i64>) -> License {
        License {
            id: "lic_x".into(),
            tenant_id: "t".into(),
            product_id: "p".into(),
            key: "K".into(),
            license_type: LicenseType::Perpetual,
            tier: LicenseTier::Personal,
            status,
            max_activations: 1,
            max_sessions: None,
            valid_until,
            plan: None,
            plan_days: Some(7),
            customer_email: None,
            customer_name: None,
            order_id: None,
            metadata: None,
            note: None,
            revoked_reason: None,
            hwid_reset_at: None,
            created_at: 0,
            updated_at: 0,
            entitlements: Vec::new(),
        }
    }

    #[test]
    fn expiry_is_judged_at_request_time() {
        let now = 1_000_000;
        assert_eq!(
            license(LicenseStatus::Active, Some(now - 1)).effective_status(now),
            LicenseStatus::Expired
        );
        assert_eq!(
            license(LicenseStatus::Active, Some(now + 1)).effective_status(now),
            LicenseStatus::Active
        );
        assert_eq!(
            license(LicenseStatus::Revoked, Some(now - 1)).problem(now),
            Some(LicenseProblem::Revoked)
        );
        assert_eq!(
            license(LicenseStatus::Banned, None).problem(now),
            Some(LicenseProblem::Banned)
        );
        assert_eq!(license(LicenseStatus::Active, None).problem(now), None);
    }

    #[test]
    fn plan_clock_starts_at_first_activation() {
        let now = 5 * DAY_MS;
        assert_eq!(
            plan_expiry(&license(LicenseStatus::Active, None), now),
            Some(now + 7 * DAY_MS)
        );
        assert_eq!(
            plan_expiry(&license(LicenseStatus::Active, Some(9)), now),
            Some(9)
        );
        assert_eq!(plan_days(Plan::Lifetime, None), None);
        assert_eq!(plan_days(Plan::Custom, Some(90)), Some(90));
    }

    #[test]
    fn emails_and_keys() {
        for ok in ["a@b.co", "first.last+tag@example.com"] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@.co",
            "a b@c.co",
            "a@b.co.",
            "a@b@c.co",
            "<a@b.co>",
            "a@b.co,c@d.co",
            " a@b.co",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_key("  tt-abcd-efgh \n"), "TT-ABCD-EFGH");
    }
}
