//! The client face (key/HWID contract): `/api/validate`, `/api/session/end` and
//! `/api/license-file` for apps and
//! `/api/telegram` for bots.
//! No operator authentication: the license key (optionally scoped by the project's `kv_`
//! secret) is the credential. Errors use the key/HWID envelope.

mod envelope;
pub mod license_file;
pub mod session;
pub mod telegram;
pub mod validate;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ClientTags {
    /// Validation for apps: HWID binding, sessions (and ending one), nonce rotation, encrypted
    /// envelopes.
    Validation,
    /// Telegram bot actions: validate, info, reset_hwid.
    Telegram,
}
