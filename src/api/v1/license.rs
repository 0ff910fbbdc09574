//! `/api/v1/license/*`: activation, validation, heartbeats and license management.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::ApiTags;
use super::auth::ValidateScope;
use super::error::VendorResult;
use super::schemas::{ActivationView, LicensePublic, VendorStatus};
use crate::api::shared::fields::named;
use crate::api::shared::signed::{SignedIfKnown, SignedJson};
use crate::domain::activations::MachineInfo;
use crate::domain::licenses::Verdict;
use crate::error::Error;
use crate::service::licensing::{self, MachineValidation};
use crate::state::AppState;

pub struct LicenseApi {
    pub state: AppState,
}

crate::field_names!(
    AppVersionField = "appVersion",
    EntitlementsField = "entitlements",
    KeyField = "key",
    LicenseKeyField = "licenseKey",
    MachineIdField = "machineId",
    MachineNameField = "machineName",
    NonceField = "nonce",
    OsNameField = "osName",
    OsVersionField = "osVersion",
    TtlField = "ttl",
    EncryptField = "encrypt",
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
        nullable,
        deserialize_with = "named::<MachineNameField, _>",
        validator(max_length = 255)
    )]
    pub machine_name: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<OsNameField, _>",
        validator(max_length = 100)
    )]
    pub os_name: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<OsVersionField, _>",
        validator(max_length = 100)
    )]
    pub os_version: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<AppVersionField, _>",
        validator(max_length = 50)
    )]
    pub app_version: Option<String>,
    /// Client-chosen value echoed inside the signed response (anti-replay).
    #[oai(
        nullable,
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
        nullable,
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename = "LicenseValidateRequest", rename_all = "camelCase")]
pub struct ValidateRequest {
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
        nullable,
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
    /// Entitlement codes the app requires (at most 64). A usable license lacking one answers
    /// `valid: false` with code `ENTITLEMENTS_MISSING`, naming the missing codes.
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// The license key (`licenseKey` is accepted as an alias).
    #[oai(
        nullable,
        deserialize_with = "named::<KeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub key: Option<String>,
    #[oai(
        nullable,
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
        nullable,
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CheckoutRequest {
    /// The license key.
    #[oai(
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(min_length = 10, max_length = 100)
    )]
    pub license_key: String,
    /// A machine activated on the license: its machine file instead of the license file.
    #[oai(
        nullable,
        deserialize_with = "named::<MachineIdField, _>",
        validator(min_length = 8, max_length = 255)
    )]
    pub machine_id: Option<String>,
    /// The file's lifetime in seconds, 3600..=31536000 (default 2592000, 30 days); null for a
    /// file that never expires.
    #[oai(nullable, deserialize_with = "named::<TtlField, _>")]
    pub ttl: MaybeUndefined<i64>,
    /// Encrypt the payload (`aes-256-gcm+ed25519`, the default) or only sign it
    /// (`base64+ed25519`).
    #[oai(nullable, deserialize_with = "named::<EncryptField, _>")]
    pub encrypt: Option<bool>,
}

// ---- responses ------------------------------------------------------------------------

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ActivateOk {
    pub success: bool,
    pub message: String,
    pub license: LicensePublic,
    pub activation: ActivationView,
    /// The license's entitlement codes.
    pub entitlements: Vec<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

impl crate::api::shared::signed::SignedBody for ActivateOk {}

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

#[derive(Object, serde::Serialize, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ValidateOk {
    pub success: bool,
    pub valid: bool,
    /// VALID, NOT_FOUND, EXPIRED, SUSPENDED, REVOKED, NOT_ACTIVATED, HEARTBEAT_DEAD or
    /// ENTITLEMENTS_MISSING.
    pub code: String,
    /// Null when the license was not found.
    #[oai(nullable)]
    pub status: Option<VendorStatus>,
    pub message: String,
    #[oai(nullable)]
    pub license: Option<LicensePublic>,
    #[oai(nullable)]
    pub activation: Option<ActivationView>,
    /// The license's entitlement codes (empty when the license was not found).
    pub entitlements: Vec<String>,
    /// With `ENTITLEMENTS_MISSING`: the required codes the license lacks; otherwise empty.
    pub missing_entitlements: Vec<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Written on every validation: straight to JSON (see `SignedBody`).
impl crate::api::shared::signed::SignedBody for ValidateOk {
    fn body_bytes(&self) -> Vec<u8> {
        crate::api::shared::signed::serde_body(self)
    }
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
    #[oai(nullable)]
    pub next_heartbeat_at: Option<OffsetDateTime>,
    /// The license's entitlement codes.
    pub entitlements: Vec<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

impl crate::api::shared::signed::SignedBody for HeartbeatOk {}

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
    /// The license's entitlement codes.
    pub entitlements: Vec<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub nonce: Option<String>,
}

impl crate::api::shared::signed::SignedBody for CheckOk {}

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
#[oai(rename_all = "camelCase")]
pub struct CheckoutOk {
    pub success: bool,
    /// The license file (`-----BEGIN LICENSE FILE-----`) or machine file
    /// (`-----BEGIN MACHINE FILE-----`), Keygen's format: verify `sig` with the product's
    /// public key over `license/` + `enc` (`machine/` + `enc`), then decrypt `enc` with
    /// SHA-256 of the license key (followed by the machine id for a machine file).
    pub certificate: String,
    pub issued: OffsetDateTime,
    /// When the file expires; null for a file without expiry.
    #[oai(nullable)]
    pub expiry: Option<OffsetDateTime>,
    /// The file's lifetime in seconds; null for a file without expiry.
    #[oai(nullable)]
    pub ttl: Option<i64>,
}

impl crate::api::shared::signed::SignedBody for CheckoutOk {}

#[derive(ApiResponse)]
pub enum CheckoutResponse {
    /// The license or machine file. The answer is signed like every other; the file carries
    /// its own signature.
    #[oai(status = 200)]
    Ok(
        SignedJson<CheckoutOk>,
        /// Product whose key signed the body and the file.
        #[oai(header = "X-Keyward-Product")]
        String,
    ),
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
                    entitlements: a.license.entitlements.clone(),
                    nonce,
                }
            })),
            product_id,
        ))
    }

    /// Validate a license on a machine
    ///
    /// Read-only: never creates or changes activations. Always answers 200; `valid` says
    /// whether the app may run and `code` says why not. With `entitlements`, a license that
    /// lacks one of them is `ENTITLEMENTS_MISSING`. Signed when the license was found.
    #[oai(path = "/validate", method = "post")]
    async fn validate(
        &self,
        auth: ValidateScope,
        body: Json<ValidateRequest>,
    ) -> VendorResult<ValidateResponse> {
        let body = body.0;
        let nonce = body.nonce;
        let required = body.entitlements.unwrap_or_default();
        let signed = match licensing::validate(
            &self.state,
            &auth.0,
            &body.license_key,
            &body.machine_id,
            &required,
        )? {
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
                        entitlements: Vec::new(),
                        missing_entitlements: Vec::new(),
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
                message: v.message(),
                license: Some(LicensePublic::new(&v.license, &v.product, v.used)),
                activation: v.activation.as_ref().map(ActivationView::new),
                entitlements: v.license.entitlements.clone(),
                missing_entitlements: v.missing.clone(),
                nonce,
            })),
            Some(product_id),
        ))
    }

    /// Check out an offline license file
    ///
    /// A Keygen-compatible license file for the license, or a machine file for `machineId`
    /// (a machine activated on the license; otherwise 400 `NOT_ACTIVATED`). An expired,
    /// suspended or revoked license is refused like an activation (400 `LICENSE_EXPIRED`,
    /// `LICENSE_SUSPENDED`, `LICENSE_REVOKED`). The app verifies
    /// the file offline with the product's public key (`kid` names it). `ttl` out of range
    /// → 400 `VALIDATION_ERROR`. Signed.
    #[oai(path = "/checkout", method = "post")]
    async fn checkout(
        &self,
        auth: ValidateScope,
        body: Json<CheckoutRequest>,
    ) -> VendorResult<CheckoutResponse> {
        let body = body.0;
        let options = licensing::FileOptions {
            ttl: match body.ttl {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(t) => Some(Some(t)),
            },
            encrypt: body.encrypt.unwrap_or(true),
        };
        let signed = licensing::checkout(
            &self.state,
            &auth.0,
            &body.license_key,
            body.machine_id.as_deref(),
            options,
        )?;
        let product_id = signed.signer.product_id().to_string();
        Ok(CheckoutResponse::Ok(
            SignedJson::from(signed.map(|f| CheckoutOk {
                success: true,
                certificate: f.certificate,
                issued: crate::domain::ms_to_datetime(f.issued),
                expiry: f.expiry.map(crate::domain::ms_to_datetime),
                ttl: f.ttl,
            })),
            product_id,
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
                entitlements: h.entitlements,
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
            SignedJson::from(signed.map(|checked| CheckOk {
                success: true,
                status: VendorStatus::of(checked.status),
                entitlements: checked.entitlements,
                nonce,
            })),
            product_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{ValidateOk, VendorStatus};
    use crate::api::shared::signed::assert_same_document;
    use crate::api::v1::schemas::{ActivationView, LicensePublic};
    use crate::domain::licenses::{LicenseTier, LicenseType};

    /// The validate answer is written with serde, not poem-openapi's `Value` tree: both must
    /// give the document the OpenAPI schema describes, with every field present or absent
    /// alike (nulls, skipped nonce, times, renamed fields and enums).
    #[test]
    fn validate_answer_written_directly_is_the_documented_json() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_764_547_200)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let full = ValidateOk {
            success: true,
            valid: false,
            code: "ENTITLEMENTS_MISSING".into(),
            status: Some(VendorStatus::Suspended),
            message: "quote \" and unicode é".into(),
            license: Some(LicensePublic {
                key: "TT-ABCD".into(),
                product: "App".into(),
                tier: LicenseTier::Business,
                license_type: LicenseType::Subscription,
                valid_until: Some(at),
                activations_used: 2,
                max_activations: 3,
            }),
            activation: Some(ActivationView {
                machine_id: "m-1".into(),
                machine_name: None,
                activated_at: at,
                last_seen_at: at + time::Duration::milliseconds(1_234),
            }),
            entitlements: vec!["pro".into()],
            missing_entitlements: vec!["sso".into()],
            nonce: Some("n-1".into()),
        };
        assert_same_document(&full);
        let bare = ValidateOk {
            success: true,
            valid: false,
            code: "NOT_FOUND".into(),
            status: None,
            message: String::new(),
            license: None,
            activation: None,
            entitlements: Vec::new(),
            missing_entitlements: Vec::new(),
            nonce: None,
        };
        assert_same_document(&bare);
    }
}
