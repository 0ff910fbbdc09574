//! The vendor face's machine-facing use cases: activate, validate, deactivate, heartbeat and
//! check, for an API key's context. A license of another tenant or outside the key's product is
//! "not found", exactly like a missing one.

use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;

use crate::domain::abuse::detector::{SeatLimit, Seen};
use crate::domain::activations::{self, Activation, MachineInfo};
use crate::domain::audit::AuditAction;
use crate::domain::licenses::{self, License, LicenseStatus, Verdict};
use crate::domain::products::Product;
use crate::domain::webhooks::EventType;
use crate::domain::{entitlements, now_ms};
use crate::error::{Error, LicenseProblem};
use crate::service::{Ctx, Signed, Signer};
use crate::state::AppState;
use crate::telemetry::Face;

/// A machine bound to its license (newly, or already: activation is idempotent).
#[derive(Debug)]
pub struct MachineActivated {
    pub license: License,
    pub product: Arc<Product>,
    pub activation: Activation,
    /// Machines bound to the license now.
    pub used: u64,
    /// False when the machine was already activated.
    pub new: bool,
}

/// What validation found about a license on a machine.
// Built once and moved once per request; boxing the large variant would add an allocation to
// the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum MachineValidation {
    /// Signed by the license's product.
    Found(Signed<MachineValidated>),
    /// No such license within the caller's reach: there is no product to sign with.
    NotFound,
}

#[derive(Debug)]
pub struct MachineValidated {
    pub verdict: Verdict,
    pub license: License,
    pub product: Arc<Product>,
    pub activation: Option<Activation>,
    pub used: u64,
    /// When the verdict was reached (the status is as of then).
    pub at: i64,
    /// The required entitlements the license lacks (verdict `EntitlementsMissing`).
    pub missing: Vec<String>,
}

impl MachineValidated {
    /// The verdict's message, naming the missing entitlements when they are the reason.
    pub fn message(&self) -> String {
        match self.verdict {
            Verdict::EntitlementsMissing => format!(
                "The license lacks entitlements the app requires: {}",
                self.missing.join(", ")
            ),
            v => v.message().to_owned(),
        }
    }
}

#[derive(Debug)]
pub struct HeartbeatRecorded {
    /// When the next heartbeat is due (ms); none when the product has no heartbeat policy.
    pub next_heartbeat_at: Option<i64>,
    /// The license's entitlements.
    pub entitlements: Vec<String>,
}

/// A license's status now, with its entitlements.
#[derive(Debug)]
pub struct LicenseChecked {
    pub status: LicenseStatus,
    pub entitlements: Vec<String>,
}

/// Binds `machine` to the license `license_key`, unless it may not be used or has no free
/// seat. A refusal is audited and reported to abuse detection, then returned as the error.
pub async fn activate(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    machine: MachineInfo,
) -> Result<Signed<MachineActivated>, Error> {
    bind_machine(state, ctx, license_key, machine, Via::Online).await
}

/// How the machine asked to be activated, which decides what the audit trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// The app itself, online: a new machine is `license.activate`; a repeat is not news.
    Online,
    /// An activation request carried across an air gap: every one hands out a machine file,
    /// so every one is `license.activate.offline`.
    Offline,
}

/// [`activate`]'s rules, recorded as `via` says.
pub(super) async fn bind_machine(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    mut machine: MachineInfo,
    via: Via,
) -> Result<Signed<MachineActivated>, Error> {
    let key = licenses::normalize_key(license_key);
    machine.ip = ctx.ip_text();
    let job_ctx = ctx.clone();
    let job_state = state.clone();
    let outcome = state
        .db
        .write(move |c| {
            let (license, product) = license_by_key(&job_state, c, &job_ctx, &key)?;
            match activations::activate_machine(c, &license, &machine, now_ms()) {
                Ok(activated) => {
                    let used = activations::repo::count(c, &license.id)?;
                    crate::service::events::machine_activated(c, &activated)?;
                    let recorded = match via {
                        Via::Online if activated.new => Some((
                            AuditAction::LicenseActivate,
                            json!({"machineName": machine.machine_name}),
                        )),
                        Via::Online => None,
                        Via::Offline => Some((
                            AuditAction::LicenseActivateOffline,
                            json!({"machineName": machine.machine_name, "new": activated.new}),
                        )),
                    };
                    if let Some((action, detail)) = recorded {
                        crate::domain::audit::repo::insert(
                            c,
                            &license_event(&job_ctx, action, &license)
                                .machine(&machine.machine_id)
                                .detail(detail),
                        )?;
                    }
                    Ok(Ok((activated, product, used, machine)))
                }
                // Refusals are answers, not failures: keep them for the audit trail.
                Err(Error::License(problem)) => Ok(Err((problem, license, machine))),
                Err(e) => Err(e),
            }
        })
        .await;
    let face = match via {
        Via::Online => Face::Vendor,
        Via::Offline => Face::Offline,
    };
    if let Err(Error::NotFound("license")) = &outcome {
        state.telemetry.activation(face, "NOT_FOUND");
    }
    let outcome = unknown_key_seen(state, ctx, outcome)?;
    let (activated, product, used, machine) = match outcome {
        Ok(ok) => ok,
        Err((problem, license, machine)) => {
            let hwid = Some(machine.machine_id.as_str());
            state.abuse.license_used(
                ctx.ip,
                &license,
                hwid,
                machine.machine_name.as_deref(),
                None,
            );
            if problem == LicenseProblem::ActivationLimitReached {
                state
                    .abuse
                    .seat_refused(ctx.ip, &license, hwid, SeatLimit::Activations);
            }
            state.db.writer().record(
                license_event(ctx, AuditAction::LicenseActivateRefused, &license)
                    .machine(&machine.machine_id)
                    .detail(if via == Via::Offline {
                        json!({"code": problem.vendor_code(), "offline": true})
                    } else {
                        json!({"code": problem.vendor_code()})
                    }),
            );
            state.telemetry.activation(face, problem.vendor_code());
            return Err(Error::License(problem));
        }
    };
    if activated.new {
        state.webhooks.wake();
    }
    state.telemetry.activation(
        face,
        if activated.new {
            "ACTIVATED"
        } else {
            "ALREADY_ACTIVATED"
        },
    );
    state.abuse.license_used(
        ctx.ip,
        &activated.license,
        Some(&machine.machine_id),
        machine.machine_name.as_deref(),
        None,
    );
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(
        MachineActivated {
            license: activated.license,
            product,
            activation: activated.activation,
            used,
            new: activated.new,
        },
        signer,
    ))
}

/// Judges the license `license_key` on `machine_id`, read-only. The hot path of a licensed
/// app: one statement, the product from the cache, the audit event queued to the writer.
/// `required` names entitlements the app needs: a usable license lacking one of them is
/// `ENTITLEMENTS_MISSING` (its entitlements come with the license row, no further query).
pub fn validate(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    machine_id: &str,
    required: &[String],
) -> Result<MachineValidation, Error> {
    let required = entitlements::parse_set("entitlements", required)?;
    let key = licenses::normalize_key(license_key);
    let now = now_ms();
    let found = state.db.read(|c| {
        let Some((license, used, activation)) =
            licenses::repo::find_for_validation(c, &ctx.tenant, &key, machine_id)?
                .filter(|(l, _, _)| ctx.reaches(&l.tenant_id, &l.product_id))
        else {
            return Ok(None);
        };
        let product = super::product_of(state, c, &license)?;
        Ok(Some((license, product, activation, used)))
    })?;
    let Some((license, product, activation, used)) = found else {
        state
            .telemetry
            .validation(Face::Vendor, Verdict::NotFound.code());
        state.abuse.unknown_key(ctx.ip, abuse_scope(ctx));
        state.db.writer().record(
            ctx.event(&ctx.tenant, AuditAction::LicenseValidate)
                .machine(machine_id)
                .detail(json!({"code": Verdict::NotFound.code()})),
        );
        return Ok(MachineValidation::NotFound);
    };
    let mut verdict = activations::assess(&license, &product, activation.as_ref(), now);
    let missing = entitlements::missing(&required, &license.entitlements);
    if verdict == Verdict::Valid && !missing.is_empty() {
        verdict = Verdict::EntitlementsMissing;
    }
    state
        .abuse
        .license_used(ctx.ip, &license, Some(machine_id), None, None);
    state.telemetry.validation(Face::Vendor, verdict.code());
    let mut detail = json!({"code": verdict.code()});
    if verdict == Verdict::EntitlementsMissing {
        detail["missing"] = json!(missing);
    }
    state.db.writer().record(
        license_event(ctx, AuditAction::LicenseValidate, &license)
            .machine(machine_id)
            .detail(detail),
    );
    let signer = Signer::of(state, &product)?;
    Ok(MachineValidation::Found(Signed::new(
        MachineValidated {
            verdict,
            license,
            product,
            activation,
            used,
            at: now,
            missing: if verdict == Verdict::EntitlementsMissing {
                missing
            } else {
                Vec::new()
            },
        },
        signer,
    )))
}

/// Removes `machine_id`'s activation of the license, freeing its seat.
pub async fn deactivate(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    machine_id: &str,
) -> Result<(), Error> {
    let key = licenses::normalize_key(license_key);
    let job_ctx = ctx.clone();
    let job_machine = machine_id.to_owned();
    let job_state = state.clone();
    let outcome = state
        .db
        .write(move |c| {
            let (license, _) = license_by_key(&job_state, c, &job_ctx, &key)?;
            let machine = activations::repo::find(c, &license.id, &job_machine)?;
            if !activations::repo::delete(c, &license.id, &job_machine)? {
                return Err(Error::NotFound("activation"));
            }
            if let Some(m) = &machine {
                crate::service::events::emit(
                    c,
                    &license.tenant_id,
                    Some(&license.product_id),
                    EventType::MachineDeactivated,
                    crate::service::events::machine_data(&license, m, None),
                )?;
            }
            crate::domain::audit::repo::insert(
                c,
                &license_event(&job_ctx, AuditAction::LicenseDeactivate, &license)
                    .machine(&job_machine),
            )?;
            Ok(license)
        })
        .await;
    let license = unknown_key_seen(state, ctx, outcome)?;
    state.webhooks.wake();
    state.abuse.report(
        ctx.ip,
        crate::abuse::Scope::of_license(&license),
        Seen::Deactivated {
            license_id: license.id.clone(),
            hwid: machine_id.to_owned(),
        },
    );
    Ok(())
}

/// Records that `machine_id` is alive; the machine must be activated and the license usable.
pub async fn heartbeat(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
    machine_id: &str,
) -> Result<Signed<HeartbeatRecorded>, Error> {
    let key = licenses::normalize_key(license_key);
    let job_ctx = ctx.clone();
    let job_machine = machine_id.to_owned();
    let job_state = state.clone();
    let outcome = state
        .db
        .write(move |c| {
            let (license, product) = license_by_key(&job_state, c, &job_ctx, &key)?;
            activations::heartbeat(c, &license, &job_machine, now_ms())?;
            Ok((license, product))
        })
        .await;
    let (license, product) = unknown_key_seen(state, ctx, outcome)?;
    state
        .abuse
        .license_used(ctx.ip, &license, Some(machine_id), None, None);
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(
        HeartbeatRecorded {
            next_heartbeat_at: activations::next_heartbeat_at(&product, now_ms()),
            entitlements: license.entitlements,
        },
        signer,
    ))
}

/// The license's status now; no machine needed.
pub fn check(
    state: &AppState,
    ctx: &Ctx,
    license_key: &str,
) -> Result<Signed<LicenseChecked>, Error> {
    let key = licenses::normalize_key(license_key);
    let found = state.db.read(|c| license_by_key(state, c, ctx, &key));
    let (license, product) = unknown_key_seen(state, ctx, found)?;
    state
        .db
        .writer()
        .record(license_event(ctx, AuditAction::LicenseCheck, &license));
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(
        LicenseChecked {
            status: license.effective_status(now_ms()),
            entitlements: license.entitlements,
        },
        signer,
    ))
}

/// The caller's license with this (normalized) key and its product; another tenant's or a
/// product outside the caller's reach is "not found", exactly like a missing one.
pub(super) fn license_by_key(
    state: &AppState,
    c: &Connection,
    ctx: &Ctx,
    key: &str,
) -> Result<(License, Arc<Product>), Error> {
    let license = licenses::repo::find_by_key(c, &ctx.tenant, key)?
        .filter(|l| ctx.reaches(&l.tenant_id, &l.product_id))
        .ok_or(Error::NotFound("license"))?;
    let product = super::product_of(state, c, &license)?;
    Ok((license, product))
}

pub(super) fn license_event(
    ctx: &Ctx,
    action: AuditAction,
    license: &License,
) -> crate::domain::audit::AuditEvent {
    ctx.event(&license.tenant_id, action)
        .license(&license.product_id, &license.id)
}

/// Passes `outcome` through, reporting a key that does not exist to abuse detection.
pub(super) fn unknown_key_seen<T>(
    state: &AppState,
    ctx: &Ctx,
    outcome: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(Error::NotFound("license")) = &outcome {
        state.abuse.unknown_key(ctx.ip, abuse_scope(ctx));
    }
    outcome
}

/// Where a report about an API key's request belongs: its tenant, and its product if it is
/// restricted to one.
fn abuse_scope(ctx: &Ctx) -> crate::abuse::Scope {
    crate::abuse::Scope::Tenant {
        tenant_id: ctx.tenant.to_string(),
        product_id: ctx.products.filter().map(str::to_owned),
    }
}
