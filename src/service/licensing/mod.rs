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

use crate::domain::licenses::{License, Plan};

/// The days of a CUSTOM plan (the other plans name their length).
pub fn custom_days(license: &License) -> Option<u32> {
    (license.plan == Some(Plan::Custom))
        .then_some(license.plan_days)
        .flatten()
}
