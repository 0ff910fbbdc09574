//! Offline licenses: checking out a Keygen-compatible license file (or machine file) that an
//! app verifies without the server (format in `domain::license_files`). The vendor face checks
//! out for an API key's context ([`checkout`]); the key/HWID face for the key itself, under
//! `/api/validate`'s rules ([`key_checkout`]).

use serde_json::json;

use super::keys::{KeyClient, KeyLookup, KeyRefusal, run_key_request};
use super::machine::{license_by_key, license_event, unknown_key_seen};
use crate::domain::activations::{self, Activation, MachineInfo};
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::license_files::{self, Contents};
use crate::domain::licenses::{self, License};
use crate::domain::now_ms;
use crate::domain::products::Product;
use crate::error::{Error, LicenseProblem};
use crate::service::{Ctx, Signed, Signer};
use crate::state::AppState;

/// What the caller asks of the file.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// The lifetime: `None` when the caller sent none (30 days), `Some(None)` for a file that
    /// never expires, else seconds (3600..=31536000; others are refused).
    pub ttl: Option<Option<i64>>,
    /// AES-256-GCM (the default) or plain base64.
    pub encrypt: bool,
}

/// A file checked out.
#[derive(Debug, Clone)]
pub struct CheckedOut {
    /// The armoured file, `-----BEGIN LICENSE FILE-----` … (or `MACHINE FILE`).
    pub certificate: String,
    /// When it was issued (ms).
    pub issued: i64,
    /// When it expires (ms); none for a file without expiry.
    pub expiry: Option<i64>,
    /// Its lifetime in seconds; none for a file without expiry.
    pub ttl: Option<i64>,
}

/// A license file for the license `license_key`, or a machine file when `machine_id` names a
/// machine activated on it (else 400 `NOT_ACTIVATED`). A license that may not be used now is
/// refused like an activation (`LICENSE_EXPIRED`, `LICENSE_SUSPENDED`, `LICENSE_REVOKED`); one
/// outside the caller's reach is 404, like a missing one. Audited as `license.checkout` (or
/// `license.checkout.refused`), signed by the product's key.
pub fn checkout(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    machine_id: Option<&str>,
    options: FileOptions,
) -> Result<Signed<CheckedOut>, Error> {
    let ttl = license_files::ttl(options.ttl)?;
    let key = licenses::normalize_key(license_key);
    let found = state.db.read(|c| {
        let (license, product) = license_by_key(state, c, ctx, &key)?;
        let machine = match machine_id {
            Some(m) => Some(activations::repo::find(c, &license.id, m)?),
            None => None,
        };
        Ok((license, product, machine))
    });
    let (license, product, machine) = unknown_key_seen(state, ctx, found)?;
    // A file outlives the request: only a license that may be used now gets one, as only such a
    // license may be activated.
    let refusal = match (license.problem(now_ms()), machine_id, &machine) {
        (Some(problem), _, _) => Some(problem),
        (None, Some(_), Some(None)) => Some(LicenseProblem::NotActivated),
        _ => None,
    };
    if let Some(problem) = refusal {
        let mut event = license_event(ctx, AuditAction::LicenseCheckoutRefused, &license)
            .detail(json!({"code": problem.vendor_code()}));
        if let Some(m) = machine_id {
            event = event.machine(m);
        }
        state.db.writer().record(event);
        return Err(Error::License(problem));
    }
    let machine = machine.flatten();
    state
        .abuse
        .license_used(ctx.ip, &license, machine_id, None, None);
    let mut event = license_event(ctx, AuditAction::LicenseCheckout, &license).detail(json!({
        "kind": if machine.is_some() { "machine" } else { "license" },
        "ttl": ttl,
        "encrypted": options.encrypt,
    }));
    if let Some(m) = machine_id {
        event = event.machine(m);
    }
    state.db.writer().record(event);
    issue(
        state,
        &license,
        &product,
        machine.as_ref(),
        ttl,
        options.encrypt,
    )
}

/// A machine file for the key on the machine `hwid` (the fingerprint is the HWID), under
/// `/api/validate`'s rules: an unusable key is refused (KEY_EXPIRED, KEY_SUSPENDED, …), an
/// unbound key is bound to this HWID (and its plan's clock starts), a key bound elsewhere with
/// no free machine is refused (HWID_MISMATCH). No session is opened. Audited as
/// `license.checkout` (or `license.checkout.refused`), signed by the key's project.
pub async fn key_checkout(
    state: &AppState,
    client: &KeyClient,
    lookup: KeyLookup,
    hwid: String,
    options: FileOptions,
) -> Result<Signed<CheckedOut>, KeyRefusal> {
    let ttl = license_files::ttl(options.ttl)?;
    let actor = client.actor_label().to_owned();
    let ip = client.ip().map(|i| i.to_string());
    let job_hwid = hwid.clone();
    let encrypt = options.encrypt;
    let (product, (license, activation, bound_now)) = run_key_request(
        state,
        client,
        lookup,
        None,
        &hwid,
        AuditAction::LicenseCheckoutRefused,
        move |c, license, product, _encrypted, now| {
            let machine = MachineInfo {
                machine_id: job_hwid.clone(),
                ip: ip.clone(),
                ..MachineInfo::default()
            };
            let activated = match activations::activate_machine(c, license, &machine, now) {
                Ok(a) => a,
                Err(Error::License(LicenseProblem::ActivationLimitReached)) => {
                    return Err(Error::License(LicenseProblem::HwidMismatch));
                }
                Err(e) => return Err(e),
            };
            crate::service::events::machine_activated(c, &activated)?;
            let event = AuditEvent::new(&license.tenant_id, &actor, AuditAction::LicenseCheckout)
                .license(&product.id, &license.id)
                .machine(&job_hwid)
                .ip(ip.as_deref())
                .detail(json!({
                    "kind": "machine",
                    "ttl": ttl,
                    "encrypted": encrypt,
                    "hwidBound": activated.new,
                }));
            Ok((
                (activated.license, activated.activation, activated.new),
                event,
            ))
        },
    )
    .await?;
    if bound_now {
        state.webhooks.wake();
    }
    state
        .abuse
        .license_used(client.ip(), &license, Some(&hwid), None, None);
    Ok(issue(
        state,
        &license,
        &product,
        Some(&activation),
        ttl,
        encrypt,
    )?)
}

/// Writes and signs the file.
pub(super) fn issue(
    state: &AppState,
    license: &License,
    product: &Product,
    machine: Option<&Activation>,
    ttl: Option<i64>,
    encrypt: bool,
) -> Result<Signed<CheckedOut>, Error> {
    let signer = Signer::of(state, product)?;
    let contents = Contents {
        license,
        product,
        machine,
        issued: now_ms(),
        ttl,
        kid: signer.kid(),
    };
    let key = encrypt
        .then(|| license_files::file_key(&license.key, machine.map(|m| m.machine_id.as_str())));
    let certificate = license_files::encode(
        contents.kind(),
        &contents.payload(),
        key.as_ref(),
        signer.kid(),
        |bytes| signer.sign(bytes),
    )?;
    Ok(Signed::new(
        CheckedOut {
            certificate,
            issued: contents.issued,
            expiry: contents.expiry(),
            ttl,
        },
        signer,
    ))
}
