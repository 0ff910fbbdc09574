//! The use cases, one function each, shared by every face (the vendor API, the key/HWID
//! client API, the admin API, the portal) and by the CLI. A service takes the application
//! state, the caller's [`Ctx`] and a typed input; it scopes every look-up by the context,
//! owns its writer job, its audit event, its abuse report and its signing, and returns domain
//! values (or [`Signed`] ones) that each face maps to its own envelope.
//!
//! Faces call services and nothing below them: no face reads a `repo`, opens a writer job or
//! records an audit event (a test greps for it).

pub mod abuse;
pub mod api_keys;
pub mod artifacts;
pub mod catalog;
pub mod context;
pub mod doctor;
pub mod events;
pub mod feeds;
pub mod keys;
pub mod licensing;
pub mod login_guard;
pub mod mail;
pub mod metrics;
pub mod operators;
pub mod ops;
pub mod payments;
pub mod portal;
pub mod releases;
pub mod reports;
pub mod revocations;
pub mod signing;
pub mod signing_keys;
pub mod tenants;
pub mod two_factor;
pub mod updates;
pub mod webhooks;

pub use context::{Actor, Ctx};
pub use signing::{Signed, Signer};

/// argon2id costs ~19 MiB and tens of milliseconds: off the async runtime, at most two at once
/// (the size of the password module's memory pool). Operator and portal logins share it.
pub(crate) async fn off_runtime_hashing<T: Send + 'static>(
    state: &crate::state::AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, crate::error::Error> {
    use crate::error::Error;
    let _permit = state
        .password_hashing
        .acquire()
        .await
        .map_err(|_| Error::Storage("password hashing unavailable".into()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(e.to_string()))
}
