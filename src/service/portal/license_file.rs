//! The `license_file` block: a user's offline licensing. The machine file of a machine the
//! user's key is bound to, and air-gapped activation of a machine from its activation request.
//! Both act on the user's own linked key only, through the licensing use cases.

use rusqlite::Connection;

use super::dashboard::access_of;
use super::{open_portal_of, signed_in_user};
use crate::domain::licenses::{self, License};
use crate::domain::portal_users::{self, AccessLevel, BlockType};
use crate::domain::{activations, license_files};
use crate::error::Error;
use crate::service::Ctx;
use crate::service::licensing::{self, CheckedOut, FileOptions, OfflineActivated};
use crate::state::AppState;

/// The machine file of a machine bound to the user's key.
#[derive(Debug)]
pub struct MachineFile {
    pub file: CheckedOut,
    pub fingerprint: String,
    pub machine_name: Option<String>,
    pub file_name: String,
}

/// The machine file for `fingerprint` (one of the machines the user's key is bound to; by
/// default the one seen last), under the checkout's rules (an unusable key is refused with its
/// code). 409 when the key is bound to no machine yet. Audited as `license.checkout`.
pub fn machine_file(
    state: &AppState,
    ctx: &Ctx,
    fingerprint: Option<&str>,
    ttl: Option<Option<i64>>,
) -> Result<MachineFile, Error> {
    let (license, product_slug, machines) = state.db.read(|c| {
        let (license, slug) = linked_key(c, ctx)?;
        let machines = activations::repo::for_license(c, &license.id)?;
        Ok((license, slug, machines))
    })?;
    let machine = match fingerprint.map(str::trim).filter(|f| !f.is_empty()) {
        Some(fp) => machines
            .iter()
            .find(|m| m.machine_id == fp)
            .ok_or(Error::NotFound("machine"))?,
        None => machines
            .iter()
            .max_by_key(|m| m.last_seen_at)
            .ok_or_else(|| {
                Error::Conflict(
                    "no machine is bound to this key yet: start the app once online, or \
                     activate the machine offline with its activation request"
                        .into(),
                )
            })?,
    };
    let options = FileOptions { ttl, encrypt: true };
    let file = licensing::checkout(state, ctx, &license.key, Some(&machine.machine_id), options)?;
    Ok(MachineFile {
        file: file.body,
        file_name: license_files::file_name(&product_slug, &license.key, Some(&machine.machine_id)),
        fingerprint: machine.machine_id.clone(),
        machine_name: machine.machine_name.clone(),
    })
}

/// Activates a machine from its activation request `text` on the user's own key (a request
/// for any other key is 404, like an unknown one) and answers its machine file, as
/// `licensing::activate_offline` does.
pub async fn activate_offline(
    state: &AppState,
    ctx: &Ctx,
    text: &str,
    ttl: Option<Option<i64>>,
) -> Result<OfflineActivated, Error> {
    let (own, _) = state.db.read(|c| linked_key(c, ctx))?;
    let request = license_files::ActivationRequest::parse(text)?;
    if licenses::normalize_key(&request.key) != own.key {
        return Err(Error::NotFound("key"));
    }
    licensing::activate_request(state, ctx, &request, ttl).await
}

/// The user's linked key and its product's slug, when the layout has a `license_file` block
/// the user may open. A key that may not be used now is passed on, so the licensing rules
/// refuse it with its code.
fn linked_key(c: &Connection, ctx: &Ctx) -> Result<(License, String), Error> {
    let user = signed_in_user(c, ctx)?;
    let product = open_portal_of(c, ctx, &user)?;
    let settings = portal_users::settings_of(&product);
    let facts = access_of(c, ctx, &user, &product)?;
    let blocks: Vec<_> = settings
        .blocks
        .iter()
        .filter(|b| b.block_type == BlockType::LicenseFile)
        .collect();
    let Some(first) = blocks.first() else {
        return Err(Error::NotFound("license file block"));
    };
    let Some(license) = facts.license.clone() else {
        return Err(Error::Forbidden(
            "link a license key to your account first".into(),
        ));
    };
    // Entitlements count only while the key is usable; an unusable key is judged below.
    let carried = &license.entitlements;
    let needed = blocks
        .iter()
        .filter(|b| {
            b.requires_entitlement
                .as_ref()
                .is_none_or(|code| carried.contains(code))
        })
        .map(|b| b.needs())
        .min_by_key(|level| level.rank());
    let Some(needed) = needed else {
        return Err(Error::Forbidden(format!(
            "license files need a key with the {} entitlement",
            first.requires_entitlement.clone().unwrap_or_default()
        )));
    };
    // A usable key reaches `key`; `full` also needs a bound machine. An unusable key is left
    // to the licensing rules, which name why (KEY_EXPIRED, KEY_SUSPENDED …).
    let usable = facts.level.reaches(AccessLevel::Key);
    if usable && !facts.level.reaches(needed) {
        return Err(Error::Forbidden(
            "license files are available once your key is bound to a machine".into(),
        ));
    }
    Ok((license, product.slug))
}
