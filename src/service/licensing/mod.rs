//! The licensed app's use cases: what a machine does with its license. The vendor face's
//! activate / validate / deactivate / heartbeat / check ([`machine`]) take an API key's
//! context; the key/HWID face's `/api/validate`, `/api/session/end` and the Telegram bot's
//! validate and info ([`keys`]) have no caller until the key is found (the key is the credential), so they take a
//! [`KeyClient`] instead and reach exactly what the key (and the project secret) names.

pub mod files;
pub mod keys;
pub mod machine;
pub mod offline;

pub use files::{CheckedOut, FileOptions, checkout, key_checkout};
pub use keys::{
    EndSessionRequest, EnvelopeProject, KeyClient, KeyInfo, KeyLookup, KeyRefusal, KeyRequest,
    KeyValidation, ScopeHint, SealedRequest, SessionEnded, end_session, envelope_project, key_info,
    telegram_validate, validate_key,
};
pub use machine::{
    HeartbeatRecorded, LicenseChecked, MachineActivated, MachineValidated, MachineValidation,
    activate, check, deactivate, heartbeat, validate,
};
pub use offline::{OfflineActivated, activate_offline, activate_request};

use std::sync::Arc;

use rusqlite::Connection;

use crate::domain::licenses::{License, Plan};
use crate::domain::products::{self, Product};
use crate::error::Error;
use crate::state::AppState;

/// The product of `license`, from the product cache or else read on `conn` (and cached). Every
/// validation needs it and products change rarely: the cache spares a query and the decoding
/// of some thirty columns, on a reader and on the writer alike (see `state::ROW_CACHE_TTL`).
pub(crate) fn product_of(
    state: &AppState,
    conn: &Connection,
    license: &License,
) -> Result<Arc<Product>, Error> {
    if let Some(product) = state
        .product_cache
        .get(&license.product_id)
        .filter(|p| p.tenant_id == license.tenant_id)
    {
        return Ok(product);
    }
    let product = products::repo::find(conn, &license.tenant_id, &license.product_id)?
        .ok_or(Error::NotFound("license"))?;
    Ok(state.product_cache.put(&license.product_id, product))
}

/// The days of a CUSTOM plan (the other plans name their length).
pub fn custom_days(license: &License) -> Option<u32> {
    (license.plan == Some(Plan::Custom))
        .then_some(license.plan_days)
        .flatten()
}
