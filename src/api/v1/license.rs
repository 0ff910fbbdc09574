//! `/api/v1/license/*`: activation, validation, heartbeats and license management.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;

use super::ApiTags;
use super::auth::{Caller, ValidateScope};
use super::error::VendorResult;
use super::schemas::{ActivationView, LicensePublic, VendorStatus};
use crate::api::shared::fields::named;
use crate::domain::abuse::detector::{SeatLimit, Seen};
use crate::domain::activations::{self, MachineInfo};
use crate::domain::audit::AuditEvent;
use crate::domain::licenses::{self, License, Verdict};
use crate::domain::now_ms;
use crate::domain::products::{self, Product};
use crate::error::{Error, LicenseProblem};
use crate::state::AppState;

pub struct LicenseApi {
    pub state: AppState,
}

crate::field_names!(
    AppVersionField = "appVersion",
    KeyField = "key",
    LicenseKeyField = "licenseKey",
    MachineIdField = "machineId",
    MachineNameField = "machineName",
    NonceField = "nonce",
    OsNameField = "osName",
    OsVersionField = "osVersion",
);

// ---- requests -------------------------------------------------------------------------

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ActivateRequest {
    /// The license key.
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub license_key: String,
    /// Unique hardware fingerprint.
    #[oai(
        deserialize_with = "named::<MachineIdField, _>",
        validator(min_length = 8, max_length = 255)
    )]
    pub machine_id: String,
    /// Human-readable name.
    #[oai(
        deserialize_with = "named::<MachineNameField, _>",
        validator(max_length = 255)
    )]
    pub machine_name: Option<String>,
    #[oai(
        deserialize_with = "named::<OsNameField, _>",
        validator(max_length = 100)
    )]
    pub os_name: Option<String>,
    #[oai(
        deserialize_with = "named::<OsVersionField, _>",
        validator(max_length = 100)
    )]
    pub os_version: Option<String>,
    #[oai(
        deserialize_with = "named::<AppVersionField, _>",
        validator(max_length = 50)
    )]
    pub app_version: Option<String>,
    /// Client-chosen value echoed inside the signed response (anti-replay).
    #[oai(
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MachineRequest {
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub license_key: String,
    #[oai(
        deserialize_with = "named::<MachineIdField, _>",
        validator(min_length = 8, max_length = 255)
    )]
    pub machine_id: String,
    /// Client-chosen value echoed inside the signed response (anti-replay).
    #[oai(
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// The license key (`licenseKey` is accepted as an alias).
    #[oai(
        deserialize_with = "named::<KeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub key: Option<String>,
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub license_key: Option<String>,
    #[oai(
        deserialize_with = "named::<MachineIdField, _>",
        validator(min_length = 8, max_length = 255)
    )]
    pub machine_id: String,
    #[oai(
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
}

// ---- responses ------------------------------------------------------------------------

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ActivateOk {
    pub success: bool,
    pub message: String,
    pub license: LicensePublic,
    pub activation: ActivationView,
    #[oai(skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

#[derive(ApiResponse)]
pub enum ActivateResponse {
    /// The machine is activated (or already was: activation is idempotent). Signed.
    #[oai(status = 200)]
    Ok(
        Json<ActivateOk>,
        /// Product whose key signed the body.
        #[oai(header = "X-Keyward-Product")]
        String,
    ),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ValidateOk {
    pub success: bool,
    pub valid: bool,
    /// VALID, NOT_FOUND, EXPIRED, SUSPENDED, REVOKED, NOT_ACTIVATED or HEARTBEAT_DEAD.
    pub code: String,
    /// Null when the license was not found.
    pub status: Option<VendorStatus>,
    pub message: String,
    pub license: Option<LicensePublic>,
    pub activation: Option<ActivationView>,
    #[oai(skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

#[derive(ApiResponse)]
pub enum ValidateResponse {
    /// Always 200: check `valid` and `code`. Signed when the license was found.
    #[oai(status = 200)]
    Ok(
        Json<ValidateOk>,
        /// Product whose key signed the body (absent when the license was not found).
        #[oai(header = "X-Keyward-Product")]
        Option<String>,
    ),
}

#[derive(Object, Debug)]
pub struct MessageOk {
    pub success: bool,
    pub message: String,
}

#[derive(ApiResponse)]
pub enum DeactivateResponse {
    /// The machine's activation was removed and its seat is free.
    #[oai(status = 200)]
    Ok(Json<MessageOk>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct HeartbeatOk {
    pub success: bool,
    /// When the next heartbeat is due; null when the product has no heartbeat policy.
    pub next_heartbeat_at: Option<OffsetDateTime>,
    #[oai(skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

#[derive(ApiResponse)]
pub enum HeartbeatResponse {
    /// Heartbeat recorded. Signed.
    #[oai(status = 200)]
    Ok(
        Json<HeartbeatOk>,
        #[oai(header = "X-Keyward-Product")] String,
    ),
}

#[derive(Object, Debug)]
pub struct CheckOk {
    pub success: bool,
    pub status: VendorStatus,
    #[oai(skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

#[derive(ApiResponse)]
pub enum CheckResponse {
    /// The license's status. Signed.
    #[oai(status = 200)]
    Ok(Json<CheckOk>, #[oai(header = "X-Keyward-Product")] String),
}

// ---- operations -----------------------------------------------------------------------

#[OpenApi(prefix_path = "/api/v1/license", tag = "ApiTags::License")]
impl LicenseApi {
    /// Activate a license on a machine
    ///
    /// Idempotent: activating an already activated machine returns its activation. Refused
    /// with 400 when the license is expired, suspended, revoked or has no free seat. The
    /// response is signed (`X-Signature`, Ed25519 over the body, product key).
    #[oai(path = "/activate", method = "post")]
    async fn activate(
        &self,
        auth: ValidateScope,
        body: Json<ActivateRequest>,
    ) -> VendorResult<ActivateResponse> {
        let caller = Caller::from(auth.0);
        let body = body.0;
        let key = licenses::normalize_key(&body.license_key);
        let machine = MachineInfo {
            machine_id: body.machine_id.clone(),
            machine_name: body.machine_name.clone(),
            os_name: body.os_name.clone(),
            os_version: body.os_version.clone(),
            app_version: body.app_version.clone(),
            ip: caller.ip.clone(),
        };
        let job_caller = caller.clone();
        let outcome = self
            .state
            .db
            .write(move |c| {
                let (license, product) = license_by_key(c, &job_caller, &key)?;
                let now = now_ms();
                let result = activations::activate_machine(c, &license, &machine, now);
                match result {
                    Ok(activated) => {
                        let used = activations::repo::count(c, &license.id)?;
                        if activated.new {
                            crate::domain::audit::repo::insert(
                                c,
                                &event(
                                    &job_caller,
                                    crate::domain::audit::AuditAction::LicenseActivate,
                                    &license,
                                )
                                .machine(&machine.machine_id)
                                .detail(json!({"machineName": machine.machine_name})),
                            )?;
                        }
                        Ok(Ok((activated, product, used)))
                    }
                    // Refusals are answers, not failures: keep them for the audit trail.
                    Err(Error::License(problem)) => Ok(Err((problem, license))),
                    Err(e) => Err(e),
                }
            })
            .await;
        let outcome = self.unknown_key_seen(&caller, outcome)?;
        let abuse = &self.state.abuse;
        let (activated, product, used) = match outcome {
            Ok(ok) => {
                abuse.license_used(
                    caller.client_ip,
                    &ok.0.license,
                    Some(&body.machine_id),
                    body.machine_name.as_deref(),
                    None,
                );
                ok
            }
            Err((problem, license)) => {
                abuse.license_used(
                    caller.client_ip,
                    &license,
                    Some(&body.machine_id),
                    body.machine_name.as_deref(),
                    None,
                );
                if problem == LicenseProblem::ActivationLimitReached {
                    abuse.seat_refused(
                        caller.client_ip,
                        &license,
                        Some(&body.machine_id),
                        SeatLimit::Activations,
                    );
                }
                self.state.db.writer().record(
                    event(
                        &caller,
                        crate::domain::audit::AuditAction::LicenseActivateRefused,
                        &license,
                    )
                    .machine(&body.machine_id)
                    .detail(json!({"code": super::error::license_code(problem)})),
                );
                return Err(Error::License(problem).into());
            }
        };
        self.open_signing_key(&product)?;
        let message = if activated.new {
            "License activated"
        } else {
            "Machine already activated"
        };
        Ok(ActivateResponse::Ok(
            Json(ActivateOk {
                success: true,
                message: message.into(),
                license: LicensePublic::new(&activated.license, &product, used),
                activation: ActivationView::new(&activated.activation),
                nonce: body.nonce,
            }),
            product.id,
        ))
    }

    /// Validate a license on a machine
    ///
    /// Read-only: never creates or changes activations. Always answers 200; `valid` says
    /// whether the app may run and `code` says why not. Signed when the license was found.
    #[oai(path = "/validate", method = "post")]
    async fn validate(
        &self,
        auth: ValidateScope,
        body: Json<MachineRequest>,
    ) -> VendorResult<ValidateResponse> {
        let caller = Caller::from(auth.0);
        let body = body.0;
        let key = licenses::normalize_key(&body.license_key);
        let now = now_ms();
        // The hot path: one pooled connection, one statement, the product from the cache.
        let found = self.state.db.read(|c| {
            let Some((license, used, activation)) =
                licenses::repo::find_for_validation(c, &caller.tenant_id, &key, &body.machine_id)?
                    .filter(|(l, _, _)| caller.sees_product(&l.product_id))
            else {
                return Ok(None);
            };
            let product = match self.state.product_cache.get(&license.product_id) {
                Some(p) => p,
                None => {
                    let p = products::repo::find(c, &caller.tenant_id, &license.product_id)?
                        .ok_or(Error::NotFound("license"))?;
                    self.state.product_cache.put(&license.product_id, p)
                }
            };
            Ok(Some((license, product, activation, used)))
        })?;
        let Some((license, product, activation, used)) = found else {
            self.state
                .abuse
                .unknown_key(caller.client_ip, caller.abuse_scope());
            self.state.db.writer().record(
                AuditEvent::new(
                    &caller.tenant_id,
                    &caller.actor(),
                    crate::domain::audit::AuditAction::LicenseValidate,
                )
                .machine(&body.machine_id)
                .ip(caller.ip.as_deref())
                .detail(json!({"code": Verdict::NotFound.code()})),
            );
            return Ok(ValidateResponse::Ok(
                Json(ValidateOk {
                    success: true,
                    valid: false,
                    code: Verdict::NotFound.code().into(),
                    status: None,
                    message: Verdict::NotFound.message().into(),
                    license: None,
                    activation: None,
                    nonce: body.nonce,
                }),
                None,
            ));
        };
        let verdict = activations::assess(&license, &product, activation.as_ref(), now);
        self.state.abuse.license_used(
            caller.client_ip,
            &license,
            Some(&body.machine_id),
            None,
            None,
        );
        self.state.db.writer().record(
            event(
                &caller,
                crate::domain::audit::AuditAction::LicenseValidate,
                &license,
            )
            .machine(&body.machine_id)
            .detail(json!({"code": verdict.code()})),
        );
        self.open_signing_key(&product)?;
        Ok(ValidateResponse::Ok(
            Json(ValidateOk {
                success: true,
                valid: verdict == Verdict::Valid,
                code: verdict.code().into(),
                status: Some(VendorStatus::of(license.effective_status(now))),
                message: verdict.message().into(),
                license: Some(LicensePublic::new(&license, &product, used)),
                activation: activation.as_ref().map(ActivationView::new),
                nonce: body.nonce,
            }),
            Some(product.id.clone()),
        ))
    }

    /// Deactivate a license on a machine
    ///
    /// Removes the machine's activation, freeing its seat.
    #[oai(path = "/deactivate", method = "post")]
    async fn deactivate(
        &self,
        auth: ValidateScope,
        body: Json<MachineRequest>,
    ) -> VendorResult<DeactivateResponse> {
        let caller = Caller::from(auth.0);
        let key = licenses::normalize_key(&body.license_key);
        let machine_id = body.0.machine_id;
        let job_caller = caller.clone();
        let job_machine = machine_id.clone();
        let outcome = self
            .state
            .db
            .write(move |c| {
                let (license, _) = license_by_key(c, &job_caller, &key)?;
                if !activations::repo::delete(c, &license.id, &job_machine)? {
                    return Err(Error::NotFound("activation"));
                }
                crate::domain::audit::repo::insert(
                    c,
                    &event(
                        &job_caller,
                        crate::domain::audit::AuditAction::LicenseDeactivate,
                        &license,
                    )
                    .machine(&job_machine),
                )?;
                Ok(license)
            })
            .await;
        let license = self.unknown_key_seen(&caller, outcome)?;
        self.state.abuse.report(
            caller.client_ip,
            crate::abuse::Scope::of_license(&license),
            Seen::Deactivated {
                license_id: license.id.clone(),
                hwid: machine_id,
            },
        );
        Ok(DeactivateResponse::Ok(Json(MessageOk {
            success: true,
            message: "License deactivated on this machine".into(),
        })))
    }

    /// Heartbeat from an activated machine
    ///
    /// Updates the machine's `lastSeenAt` and returns when the next heartbeat is due. Machines
    /// whose heartbeats stop (interval + grace) are culled or reported dead, per the product's
    /// policy. Signed.
    #[oai(path = "/heartbeat", method = "post")]
    async fn heartbeat(
        &self,
        auth: ValidateScope,
        body: Json<HeartbeatRequest>,
    ) -> VendorResult<HeartbeatResponse> {
        let caller = Caller::from(auth.0);
        let body = body.0;
        let Some(raw_key) = body.key.as_deref().or(body.license_key.as_deref()) else {
            return Err(Error::Invalid("key (or licenseKey) is required".into()).into());
        };
        let key = licenses::normalize_key(raw_key);
        let machine_id = body.machine_id.clone();
        let job_caller = caller.clone();
        let outcome = self
            .state
            .db
            .write(move |c| {
                let (license, product) = license_by_key(c, &job_caller, &key)?;
                activations::heartbeat(c, &license, &machine_id, now_ms())?;
                Ok((license, product))
            })
            .await;
        let (license, product) = self.unknown_key_seen(&caller, outcome)?;
        self.state.abuse.license_used(
            caller.client_ip,
            &license,
            Some(&body.machine_id),
            None,
            None,
        );
        self.open_signing_key(&product)?;
        Ok(HeartbeatResponse::Ok(
            Json(HeartbeatOk {
                success: true,
                next_heartbeat_at: activations::next_heartbeat_at(&product, now_ms())
                    .map(crate::domain::ms_to_datetime),
                nonce: body.nonce,
            }),
            product.id,
        ))
    }

    /// Quick status check
    ///
    /// Only the license's status; no machine needed. Signed.
    #[oai(path = "/check/:key", method = "get")]
    async fn check(
        &self,
        auth: ValidateScope,
        key: Path<String>,
        /// Client-chosen value echoed inside the signed response.
        nonce: Query<Option<String>>,
    ) -> VendorResult<CheckResponse> {
        let caller = Caller::from(auth.0);
        if key.0.trim().len() > 100 {
            return Err(Error::Invalid("key must be at most 100 characters".into()).into());
        }
        if nonce.0.as_ref().is_some_and(|n| n.len() > 128) {
            return Err(Error::Invalid("nonce must be at most 128 characters".into()).into());
        }
        let key = licenses::normalize_key(&key.0);
        let found = self.state.db.read(|c| license_by_key(c, &caller, &key));
        let (license, product) = self.unknown_key_seen(&caller, found)?;
        self.state.db.writer().record(event(
            &caller,
            crate::domain::audit::AuditAction::LicenseCheck,
            &license,
        ));
        self.open_signing_key(&product)?;
        Ok(CheckResponse::Ok(
            Json(CheckOk {
                success: true,
                status: VendorStatus::of(license.effective_status(now_ms())),
                nonce: nonce.0,
            }),
            product.id,
        ))
    }
}

impl LicenseApi {
    /// Passes `outcome` through, reporting a key that does not exist to abuse detection.
    fn unknown_key_seen<T>(&self, caller: &Caller, outcome: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::NotFound("license")) = &outcome {
            self.state
                .abuse
                .unknown_key(caller.client_ip, caller.abuse_scope());
        }
        outcome
    }

    fn open_signing_key(&self, product: &Product) -> Result<(), Error> {
        self.state
            .signing_keys
            .for_product(&self.state.master, product)
            .map(|_| ())
    }
}

/// The caller's license with this (normalized) key and its product; another tenant's or
/// another product's license is "not found", exactly like a missing one.
fn license_by_key(
    c: &rusqlite::Connection,
    caller: &Caller,
    key: &str,
) -> Result<(License, Product), Error> {
    let license = licenses::repo::find_by_key(c, &caller.tenant_id, key)?
        .filter(|l| caller.sees_product(&l.product_id))
        .ok_or(Error::NotFound("license"))?;
    let product = products::repo::find(c, &caller.tenant_id, &license.product_id)?
        .ok_or(Error::NotFound("license"))?;
    Ok((license, product))
}

fn event(
    caller: &Caller,
    action: crate::domain::audit::AuditAction,
    license: &License,
) -> AuditEvent {
    AuditEvent::new(&caller.tenant_id, &caller.actor(), action)
        .license(&license.product_id, &license.id)
        .ip(caller.ip.as_deref())
}
