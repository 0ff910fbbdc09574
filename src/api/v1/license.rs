//! `/api/v1/license/*`: activation, validation, heartbeats and license management.

use std::collections::BTreeMap;

use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;

use super::ApiTags;
use super::auth::{Caller, CreateScope, ReadScope, ValidateScope};
use super::error::{ErrorDetail, VendorError, VendorResult};
use super::schemas::{
    ActivationView, LicenseCreated, LicensePublic, Pagination, VendorStatus, page_and_limit,
};
use crate::api::shared::fields::named;
use crate::api::shared::signed::{SignedIfKnown, SignedJson};
use crate::crypto;
use crate::domain::activations::MachineInfo;
use crate::domain::audit::AuditEvent;
use crate::domain::licenses::{self, License, LicenseTier, LicenseType, NewLicense, Verdict};
use crate::domain::products::{self, Product, ProductStatus};
use crate::domain::{datetime_to_ms, now_ms};
use crate::error::Error;
use crate::service::licensing::{self, MachineValidation};
use crate::state::AppState;

pub struct LicenseApi {
    pub state: AppState,
}

crate::field_names!(
    AppVersionField = "appVersion",
    CustomerEmailField = "customerEmail",
    CustomerNameField = "customerName",
    KeyField = "key",
    LicenseIdField = "licenseId",
    LicenseKeyField = "licenseKey",
    LicensesField = "licenses",
    MachineIdField = "machineId",
    MachineNameField = "machineName",
    MaxActivationsField = "maxActivations",
    MetadataField = "metadata",
    NonceField = "nonce",
    OrderIdField = "orderId",
    OsNameField = "osName",
    OsVersionField = "osVersion",
    ProductIdField = "productId",
    ReasonField = "reason",
    TierField = "tier",
    TypeField = "type",
    ValidUntilField = "validUntil",
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

#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct CreateLicenseRequest {
    /// Product ID (the product's slug is accepted too).
    #[oai(
        deserialize_with = "named::<ProductIdField, _>",
        validator(min_length = 1, max_length = 30)
    )]
    pub product_id: String,
    #[oai(
        deserialize_with = "named::<CustomerEmailField, _>",
        validator(max_length = 255)
    )]
    pub customer_email: String,
    #[oai(
        deserialize_with = "named::<CustomerNameField, _>",
        validator(max_length = 255)
    )]
    pub customer_name: Option<String>,
    /// Defaults to the product's default type.
    #[oai(deserialize_with = "named::<TypeField, _>", rename = "type")]
    pub license_type: Option<LicenseType>,
    /// Defaults to PERSONAL.
    #[oai(deserialize_with = "named::<TierField, _>")]
    pub tier: Option<LicenseTier>,
    /// Defaults to the product's default.
    #[oai(
        deserialize_with = "named::<MaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub max_activations: Option<u32>,
    /// Expiration; null or absent for none.
    #[oai(deserialize_with = "named::<ValidUntilField, _>")]
    pub valid_until: Option<OffsetDateTime>,
    /// External order reference.
    #[oai(
        deserialize_with = "named::<OrderIdField, _>",
        validator(max_length = 255)
    )]
    pub order_id: Option<String>,
    /// Custom key-value pairs (at most 20 keys).
    #[oai(
        deserialize_with = "named::<MetadataField, _>",
        validator(max_properties = 20)
    )]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Object, Debug)]
pub struct CreateBulkRequest {
    /// 1-20 licenses, each like a create request.
    #[oai(
        deserialize_with = "named::<LicensesField, _>",
        validator(min_items = 1, max_items = 20)
    )]
    pub licenses: Vec<CreateLicenseRequest>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RevokeRequest {
    /// The license ID, or
    #[oai(
        deserialize_with = "named::<LicenseIdField, _>",
        validator(max_length = 64)
    )]
    pub license_id: Option<String>,
    /// the license key.
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(max_length = 100)
    )]
    pub license_key: Option<String>,
    #[oai(
        deserialize_with = "named::<ReasonField, _>",
        validator(max_length = 500)
    )]
    pub reason: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RenewRequest {
    #[oai(
        deserialize_with = "named::<LicenseIdField, _>",
        validator(max_length = 64)
    )]
    pub license_id: Option<String>,
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(max_length = 100)
    )]
    pub license_key: Option<String>,
    /// The new expiration; must be in the future.
    #[oai(deserialize_with = "named::<ValidUntilField, _>")]
    pub valid_until: OffsetDateTime,
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
        SignedJson<ActivateOk>,
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
        SignedIfKnown<ValidateOk>,
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
        SignedJson<HeartbeatOk>,
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
    Ok(
        SignedJson<CheckOk>,
        #[oai(header = "X-Keyward-Product")] String,
    ),
}

#[derive(Object, Debug)]
pub struct LicenseOk {
    pub success: bool,
    pub license: LicenseCreated,
    /// True when an idempotency key returned the license created earlier.
    #[oai(skip_serializing_if_is_none)]
    pub idempotent: Option<bool>,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// The license was created.
    #[oai(status = 201)]
    Created(Json<LicenseOk>),
    /// The idempotency key was seen with this same request: the license created then.
    #[oai(status = 200)]
    Idempotent(Json<LicenseOk>),
}

#[derive(Object, Debug)]
pub struct BulkItem {
    /// Position of the item in the request (0-based).
    pub index: u32,
    pub success: bool,
    #[oai(skip_serializing_if_is_none)]
    pub license: Option<LicenseCreated>,
    #[oai(skip_serializing_if_is_none)]
    pub idempotent: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<ErrorDetail>,
}

#[derive(Object, Debug)]
pub struct BulkOk {
    /// True when every item succeeded.
    pub success: bool,
    pub created: u32,
    pub failed: u32,
    pub results: Vec<BulkItem>,
}

#[derive(ApiResponse)]
pub enum CreateBulkResponse {
    /// Every license was created (or returned by its idempotency key).
    #[oai(status = 201)]
    Created(Json<BulkOk>),
    /// Some items failed; each result says whether it succeeded and why not.
    #[oai(status = 207)]
    Partial(Json<BulkOk>),
}

#[derive(ApiResponse)]
pub enum LicenseResponse {
    /// The license as it is now.
    #[oai(status = 200)]
    Ok(Json<LicenseOk>),
}

#[derive(Object, Debug)]
pub struct LicensesOk {
    pub success: bool,
    pub licenses: Vec<LicenseCreated>,
    pub pagination: Pagination,
}

#[derive(ApiResponse)]
pub enum ByOrderResponse {
    /// The order's licenses (possibly none).
    #[oai(status = 200)]
    Ok(Json<LicensesOk>),
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
        let body = body.0;
        let machine = MachineInfo {
            machine_id: body.machine_id,
            machine_name: body.machine_name,
            os_name: body.os_name,
            os_version: body.os_version,
            app_version: body.app_version,
            ip: None,
        };
        let signed = licensing::activate(&self.state, &auth.0, &body.license_key, machine).await?;
        let product_id = signed.signer.product_id().to_string();
        let nonce = body.nonce;
        Ok(ActivateResponse::Ok(
            SignedJson::from(signed.map(|a| {
                ActivateOk {
                    success: true,
                    message: if a.new {
                        "License activated"
                    } else {
                        "Machine already activated"
                    }
                    .into(),
                    license: LicensePublic::new(&a.license, &a.product, a.used),
                    activation: ActivationView::new(&a.activation),
                    nonce,
                }
            })),
            product_id,
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
        let body = body.0;
        let nonce = body.nonce;
        let signed =
            match licensing::validate(&self.state, &auth.0, &body.license_key, &body.machine_id)? {
                MachineValidation::Found(signed) => signed,
                MachineValidation::NotFound => {
                    return Ok(ValidateResponse::Ok(
                        SignedIfKnown::Plain(ValidateOk {
                            success: true,
                            valid: false,
                            code: Verdict::NotFound.code().into(),
                            status: None,
                            message: Verdict::NotFound.message().into(),
                            license: None,
                            activation: None,
                            nonce,
                        }),
                        None,
                    ));
                }
            };
        let product_id = signed.signer.product_id().to_string();
        Ok(ValidateResponse::Ok(
            SignedIfKnown::from(signed.map(|v| ValidateOk {
                success: true,
                valid: v.verdict == Verdict::Valid,
                code: v.verdict.code().into(),
                status: Some(VendorStatus::of(v.license.effective_status(v.at))),
                message: v.verdict.message().into(),
                license: Some(LicensePublic::new(&v.license, &v.product, v.used)),
                activation: v.activation.as_ref().map(ActivationView::new),
                nonce,
            })),
            Some(product_id),
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
        licensing::deactivate(&self.state, &auth.0, &body.license_key, &body.machine_id).await?;
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
        let body = body.0;
        let Some(key) = body.key.as_deref().or(body.license_key.as_deref()) else {
            return Err(Error::Invalid("key (or licenseKey) is required".into()).into());
        };
        let signed = licensing::heartbeat(&self.state, &auth.0, key, &body.machine_id).await?;
        let product_id = signed.signer.product_id().to_string();
        let nonce = body.nonce;
        Ok(HeartbeatResponse::Ok(
            SignedJson::from(signed.map(|h| HeartbeatOk {
                success: true,
                next_heartbeat_at: h.next_heartbeat_at.map(crate::domain::ms_to_datetime),
                nonce,
            })),
            product_id,
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
        if key.0.trim().len() > 100 {
            return Err(Error::Invalid("key must be at most 100 characters".into()).into());
        }
        if nonce.0.as_ref().is_some_and(|n| n.len() > 128) {
            return Err(Error::Invalid("nonce must be at most 128 characters".into()).into());
        }
        let signed = licensing::check(&self.state, &auth.0, &key.0)?;
        let product_id = signed.signer.product_id().to_string();
        let nonce = nonce.0;
        Ok(CheckResponse::Ok(
            SignedJson::from(signed.map(|status| CheckOk {
                success: true,
                status: VendorStatus::of(status),
                nonce,
            })),
            product_id,
        ))
    }

    /// Create a license
    ///
    /// For server-to-server integrations such as checkout webhooks. With
    /// `X-Idempotency-Key`, a retried request returns the license created the first time
    /// (200, `idempotent: true`); the same key with a different body is refused with 422.
    #[oai(path = "/create", method = "post")]
    async fn create(
        &self,
        auth: CreateScope,
        /// Makes retries safe: one license per key and tenant.
        #[oai(name = "X-Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<CreateLicenseRequest>,
    ) -> VendorResult<CreateResponse> {
        let caller = Caller::from(auth.0);
        let idem = idempotency_key.0;
        if let Some(k) = &idem {
            check_idempotency_key(k)?;
        }
        let created = self.create_one(&caller, body.0, idem).await?;
        let now = now_ms();
        let ok = LicenseOk {
            success: true,
            license: LicenseCreated::new(&created.license, now),
            idempotent: created.replayed.then_some(true),
        };
        Ok(if created.replayed {
            CreateResponse::Idempotent(Json(ok))
        } else {
            CreateResponse::Created(Json(ok))
        })
    }

    /// Create up to 20 licenses
    ///
    /// Each item is created on its own: 201 when all succeed, 207 with a result per item
    /// otherwise. With `X-Idempotency-Key: K`, item `i` uses the key `K:i`.
    #[oai(path = "/create-bulk", method = "post")]
    async fn create_bulk(
        &self,
        auth: CreateScope,
        #[oai(name = "X-Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<CreateBulkRequest>,
    ) -> VendorResult<CreateBulkResponse> {
        let caller = Caller::from(auth.0);
        let idem = idempotency_key.0;
        if let Some(k) = &idem {
            check_idempotency_key(k)?;
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(body.0.licenses.len());
        for (i, item) in body.0.licenses.into_iter().enumerate() {
            let item_key = idem.as_ref().map(|k| format!("{k}:{i}"));
            let result = match self.create_one(&caller, item, item_key).await {
                Ok(created) => BulkItem {
                    index: i as u32,
                    success: true,
                    license: Some(LicenseCreated::new(&created.license, now)),
                    idempotent: created.replayed.then_some(true),
                    error: None,
                },
                Err(e) => {
                    let error = match VendorError::from_error(&e) {
                        VendorError::BadRequest(j)
                        | VendorError::NotFound(j)
                        | VendorError::Unprocessable(j)
                        | VendorError::Forbidden(j)
                        | VendorError::Internal(j) => j.0.error,
                        other => return Err(other),
                    };
                    BulkItem {
                        index: i as u32,
                        success: false,
                        license: None,
                        idempotent: None,
                        error: Some(error),
                    }
                }
            };
            results.push(result);
        }
        let created = results.iter().filter(|r| r.success).count() as u32;
        let failed = results.len() as u32 - created;
        let body = Json(BulkOk {
            success: failed == 0,
            created,
            failed,
            results,
        });
        Ok(if failed == 0 {
            CreateBulkResponse::Created(body)
        } else {
            CreateBulkResponse::Partial(body)
        })
    }

    /// Revoke a license permanently
    ///
    /// Name it by `licenseId` or `licenseKey`. Revocation is final; revoking again changes
    /// nothing.
    #[oai(path = "/revoke", method = "post")]
    async fn revoke(
        &self,
        auth: CreateScope,
        body: Json<RevokeRequest>,
    ) -> VendorResult<LicenseResponse> {
        let caller = Caller::from(auth.0);
        let body = body.0;
        let target = LicenseRef::from_parts(body.license_id, body.license_key)?;
        let reason = body.reason;
        let license = self
            .state
            .db
            .write(move |c| {
                let (license, _) = target.find(c, &caller)?;
                let revoked = licenses::revoke(c, &license, reason.as_deref())?;
                if license.status != licenses::LicenseStatus::Revoked {
                    crate::domain::audit::repo::insert(
                        c,
                        &event(
                            &caller,
                            crate::domain::audit::AuditAction::LicenseRevoke,
                            &license,
                        )
                        .detail(json!({"reason": reason})),
                    )?;
                }
                Ok(revoked)
            })
            .await?;
        Ok(LicenseResponse::Ok(Json(LicenseOk {
            success: true,
            license: LicenseCreated::new(&license, now_ms()),
            idempotent: None,
        })))
    }

    /// Extend a license's expiration
    ///
    /// Sets `validUntil` (which must be in the future); an expired license becomes active
    /// again. Revoked licenses cannot be renewed (400 `LICENSE_REVOKED`).
    #[oai(path = "/renew", method = "post")]
    async fn renew(
        &self,
        auth: CreateScope,
        body: Json<RenewRequest>,
    ) -> VendorResult<LicenseResponse> {
        let caller = Caller::from(auth.0);
        let body = body.0;
        let target = LicenseRef::from_parts(body.license_id, body.license_key)?;
        let valid_until = datetime_to_ms(body.valid_until);
        let license = self
            .state
            .db
            .write(move |c| {
                let (license, _) = target.find(c, &caller)?;
                let renewed = licenses::renew(c, &license, valid_until)?;
                crate::domain::audit::repo::insert(
                    c,
                    &event(
                        &caller,
                        crate::domain::audit::AuditAction::LicenseRenew,
                        &license,
                    )
                    .detail(json!({"validUntil": valid_until, "previous": license.valid_until})),
                )?;
                Ok(renewed)
            })
            .await?;
        Ok(LicenseResponse::Ok(Json(LicenseOk {
            success: true,
            license: LicenseCreated::new(&license, now_ms()),
            idempotent: None,
        })))
    }

    /// Licenses of an external order
    ///
    /// Every license created with this `orderId`, oldest first. Needs READ_ONLY scope.
    #[oai(path = "/by-order/:orderId", method = "get")]
    async fn by_order(
        &self,
        auth: ReadScope,
        /// The external order reference given at creation.
        #[oai(name = "orderId")]
        order_id: Path<String>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> VendorResult<ByOrderResponse> {
        let caller = Caller::from(auth.0);
        if order_id.0.len() > 255 {
            return Err(Error::Invalid("orderId must be at most 255 characters".into()).into());
        }
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = self.state.db.read(|c| {
            licenses::repo::list_by_order(
                c,
                &caller.tenant_id,
                &order_id.0,
                caller.product_id.as_deref(),
                limit,
                offset,
            )
        })?;
        let now = now_ms();
        Ok(ByOrderResponse::Ok(Json(LicensesOk {
            success: true,
            licenses: found.iter().map(|l| LicenseCreated::new(l, now)).collect(),
            pagination: Pagination::new(page, limit, total),
        })))
    }
}

impl LicenseApi {
    async fn create_one(
        &self,
        caller: &Caller,
        req: CreateLicenseRequest,
        idempotency_key: Option<String>,
    ) -> Result<licenses::Created, Error> {
        licenses::validate_email(req.customer_email.trim())?;
        let metadata = match &req.metadata {
            Some(m) => Some(check_metadata(m)?),
            None => None,
        };
        let request_sha256 = crypto::sha256(req.to_json_string().as_bytes());
        let caller = caller.clone();
        self.state
            .db
            .write(move |c| {
                let product =
                    products::repo::find_by_id_or_slug(c, &caller.tenant_id, &req.product_id)?
                        .filter(|p| caller.sees_product(&p.id))
                        .ok_or(Error::NotFound("product"))?;
                if product.status == ProductStatus::Discontinued {
                    return Err(Error::Invalid(format!(
                        "product {} is discontinued; no new licenses can be issued",
                        product.slug
                    )));
                }
                let new = NewLicense {
                    license_type: req.license_type.unwrap_or(product.default_license_type),
                    tier: req.tier.unwrap_or(LicenseTier::Personal),
                    max_activations: req
                        .max_activations
                        .unwrap_or(product.default_max_activations),
                    max_sessions: None,
                    valid_until: req.valid_until.map(datetime_to_ms),
                    plan: None,
                    plan_days: None,
                    customer_email: Some(req.customer_email.trim().to_owned()),
                    customer_name: req.customer_name.clone(),
                    order_id: req.order_id.clone(),
                    metadata,
                    note: None,
                };
                let idem = idempotency_key.as_deref().map(|k| (k, request_sha256));
                let created = licenses::create_idempotent(c, &product, &new, idem)?;
                if !created.replayed {
                    crate::domain::audit::repo::insert(
                        c,
                        &event(
                            &caller,
                            crate::domain::audit::AuditAction::LicenseCreate,
                            &created.license,
                        )
                        .detail(json!({"orderId": new.order_id})),
                    )?;
                }
                Ok(created)
            })
            .await
    }
}

/// A license named by id or by key, as revoke and renew accept.
enum LicenseRef {
    Id(String),
    Key(String),
}

impl LicenseRef {
    fn from_parts(id: Option<String>, key: Option<String>) -> Result<Self, VendorError> {
        match (id, key) {
            (Some(id), _) => Ok(Self::Id(id)),
            (None, Some(key)) => Ok(Self::Key(licenses::normalize_key(&key))),
            (None, None) => {
                Err(Error::Invalid("licenseId or licenseKey is required".into()).into())
            }
        }
    }

    fn find(&self, c: &rusqlite::Connection, caller: &Caller) -> Result<(License, Product), Error> {
        match self {
            Self::Key(key) => license_by_key(c, caller, key),
            Self::Id(id) => {
                let license = licenses::repo::find(c, &caller.tenant_id, id)?
                    .filter(|l| caller.sees_product(&l.product_id))
                    .ok_or(Error::NotFound("license"))?;
                let product = products::repo::find(c, &caller.tenant_id, &license.product_id)?
                    .ok_or(Error::NotFound("license"))?;
                Ok((license, product))
            }
        }
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

fn check_idempotency_key(key: &str) -> Result<(), VendorError> {
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(
            Error::Invalid("X-Idempotency-Key must be 1-255 printable characters".into()).into(),
        );
    }
    Ok(())
}

/// Metadata: at most 20 keys of 1-64 characters, at most 8 KiB as JSON.
fn check_metadata(m: &BTreeMap<String, serde_json::Value>) -> Result<String, Error> {
    if m.len() > 20 {
        return Err(Error::Invalid("metadata may have at most 20 keys".into()));
    }
    if let Some(k) = m.keys().find(|k| k.is_empty() || k.len() > 64) {
        return Err(Error::Invalid(format!(
            "metadata key {k:?} must be 1-64 characters"
        )));
    }
    let text = serde_json::to_string(m).map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
    if text.len() > 8192 {
        return Err(Error::Invalid(
            "metadata must be at most 8 KiB as JSON".into(),
        ));
    }
    Ok(text)
}
