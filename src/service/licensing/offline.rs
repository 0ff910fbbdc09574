//! Air-gapped activation: an app without network shows an activation request (format in
//! `domain::license_files::request`); someone carries it to the portal or the admin panel, and
//! this use case activates the machine under the usual seat rules and answers the machine file
//! the app loads. Nothing else crosses the gap.
//!
//! The seat rules are the one rule both faces share (`activations::activate_machine`, as
//! `POST /api/v1/license/activate` and a key's first validation apply it): a usable license
//! binds a new fingerprint while it has a free seat, a fingerprint already bound is taken
//! again (idempotent), a full license refuses (the key/HWID envelope calls a full HWID-locked
//! key `HWID_MISMATCH`), an expired, suspended, banned or revoked one refuses with its code. No
//! session is opened: an air-gapped machine has none to keep alive.

use super::files::{CheckedOut, issue};
use super::machine::{Via, bind_machine};
use crate::domain::activations::MachineInfo;
use crate::domain::license_files::{self, ActivationRequest};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// A machine activated from its request, with its machine file.
#[derive(Debug)]
pub struct OfflineActivated {
    /// The encrypted machine file (`-----BEGIN MACHINE FILE-----`): its AES key is SHA-256 of
    /// the license key followed by the fingerprint, which only the app holds.
    pub file: CheckedOut,
    pub fingerprint: String,
    pub machine_name: Option<String>,
    /// False when the fingerprint was already activated (the file is issued again).
    pub new: bool,
    /// A file name for the download, `<product>-<key end>-<fingerprint>.lic`.
    pub file_name: String,
}

/// Reads the activation request `text` and answers [`activate_request`]'s machine file.
/// A malformed request is 400 naming what is wrong, and changes nothing.
pub async fn activate_offline(
    state: &AppState,
    ctx: &Ctx,
    text: &str,
    ttl: Option<Option<i64>>,
) -> Result<OfflineActivated, Error> {
    let request = ActivationRequest::parse(text)?;
    activate_request(state, ctx, &request, ttl).await
}

/// Activates the request's fingerprint on its key, within the caller's reach (another
/// tenant's key, or another product's for a product-restricted caller, is 404), and issues
/// its encrypted machine file, valid `ttl` (default 30 days; 3600..=31536000 s, or null for no
/// expiry). Audited as `license.activate.offline` (refusals `license.activate.refused` with
/// `"offline": true`); the file is signed by the product's key.
pub async fn activate_request(
    state: &AppState,
    ctx: &Ctx,
    request: &ActivationRequest,
    ttl: Option<Option<i64>>,
) -> Result<OfflineActivated, Error> {
    // A bad lifetime is refused before the machine takes a seat.
    let ttl = license_files::ttl(ttl)?;
    let machine = MachineInfo {
        machine_id: request.fingerprint.clone(),
        machine_name: request.name.clone(),
        ..MachineInfo::default()
    };
    let activated = bind_machine(state, ctx, &request.key, machine, Via::Offline)
        .await?
        .body;
    let file = issue(
        state,
        &activated.license,
        &activated.product,
        Some(&activated.activation),
        ttl,
        true,
    )?
    .body;
    let file_name = license_files::file_name(
        &activated.product.slug,
        &activated.license.key,
        Some(&activated.activation.machine_id),
    );
    Ok(OfflineActivated {
        file,
        fingerprint: activated.activation.machine_id,
        machine_name: activated.activation.machine_name,
        new: activated.new,
        file_name,
    })
}
