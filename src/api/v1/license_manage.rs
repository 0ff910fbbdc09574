//! `/api/v1/license/{create,create-bulk,revoke,renew,by-order,by-email}`: license management for
//! server-to-server integrations (checkout webhooks, back offices). The use cases are
//! `service::keys`; this face parses, calls one of them and answers in the vendor envelope.

use std::collections::BTreeMap;

use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::ApiTags;
use super::auth::{CreateScope, ReadScope};
use super::error::{ErrorDetail, VendorError, VendorResult};
use super::schemas::{LicenseCreated, Pagination, page_and_limit};
use crate::api::shared::fields::named;
use crate::crypto;
use crate::domain::licenses::{LicenseTier, LicenseType};
use crate::domain::{datetime_to_ms, now_ms};
use crate::error::Error;
use crate::service::Ctx;
use crate::service::keys::{self, Idempotency, KeyRef, LicenseOrder};
use crate::state::AppState;

pub struct LicenseManageApi {
    pub state: AppState,
}

crate::field_names!(
    CustomerEmailField = "customerEmail",
    CustomerNameField = "customerName",
    EntitlementsField = "entitlements",
    LicenseIdField = "licenseId",
    LicenseKeyField = "licenseKey",
    LicensesField = "licenses",
    MaxActivationsField = "maxActivations",
    MetadataField = "metadata",
    OrderIdField = "orderId",
    ProductIdField = "productId",
    ReasonField = "reason",
    TierField = "tier",
    TypeField = "type",
    ValidUntilField = "validUntil",
);

// ---- requests -------------------------------------------------------------------------

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
        nullable,
        deserialize_with = "named::<CustomerNameField, _>",
        validator(max_length = 255)
    )]
    pub customer_name: Option<String>,
    /// Defaults to the product's default type.
    #[oai(nullable, deserialize_with = "named::<TypeField, _>", rename = "type")]
    pub license_type: Option<LicenseType>,
    /// Defaults to PERSONAL.
    #[oai(nullable, deserialize_with = "named::<TierField, _>")]
    pub tier: Option<LicenseTier>,
    /// Defaults to the product's default.
    #[oai(
        nullable,
        deserialize_with = "named::<MaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub max_activations: Option<u32>,
    /// Expiration; null or absent for none.
    #[oai(nullable, deserialize_with = "named::<ValidUntilField, _>")]
    pub valid_until: Option<OffsetDateTime>,
    /// External order reference.
    #[oai(
        nullable,
        deserialize_with = "named::<OrderIdField, _>",
        validator(max_length = 255)
    )]
    pub order_id: Option<String>,
    /// Custom key-value pairs (at most 20 keys).
    #[oai(
        nullable,
        deserialize_with = "named::<MetadataField, _>",
        validator(max_properties = 20)
    )]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Entitlement codes the license carries, each one of the product's (at most 64).
    // Left out of the idempotency hash when absent, so requests hashed before entitlements
    // existed still match.
    #[oai(
        nullable,
        skip_serializing_if_is_none,
        deserialize_with = "named::<EntitlementsField, _>"
    )]
    pub entitlements: Option<Vec<String>>,
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
        nullable,
        deserialize_with = "named::<LicenseIdField, _>",
        validator(max_length = 64)
    )]
    pub license_id: Option<String>,
    /// the license key.
    #[oai(
        nullable,
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(max_length = 100)
    )]
    pub license_key: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<ReasonField, _>",
        validator(max_length = 500)
    )]
    pub reason: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RenewRequest {
    #[oai(
        nullable,
        deserialize_with = "named::<LicenseIdField, _>",
        validator(max_length = 64)
    )]
    pub license_id: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<LicenseKeyField, _>",
        validator(max_length = 100)
    )]
    pub license_key: Option<String>,
    /// The new expiration; must be in the future.
    #[oai(deserialize_with = "named::<ValidUntilField, _>")]
    pub valid_until: OffsetDateTime,
    /// When given, replaces the license's entitlement codes (each one of its product's).
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

// ---- responses ------------------------------------------------------------------------

#[derive(Object, Debug)]
pub struct LicenseOk {
    pub success: bool,
    pub license: LicenseCreated,
    /// True when an idempotency key returned the license created earlier.
    #[oai(nullable, skip_serializing_if_is_none)]
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
    #[oai(nullable, skip_serializing_if_is_none)]
    pub license: Option<LicenseCreated>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub idempotent: Option<bool>,
    #[oai(nullable, skip_serializing_if_is_none)]
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

#[derive(ApiResponse)]
pub enum ByEmailResponse {
    /// The customer's licenses (possibly none).
    #[oai(status = 200)]
    Ok(Json<LicensesOk>),
}

// ---- operations -----------------------------------------------------------------------

#[OpenApi(prefix_path = "/api/v1/license", tag = "ApiTags::License")]
impl LicenseManageApi {
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
        let idem = idempotency_key.0;
        if let Some(k) = &idem {
            check_idempotency_key(k)?;
        }
        let created = self.create_one(&auth.0, body.0, idem).await?;
        let ok = LicenseOk {
            success: true,
            license: LicenseCreated::new(&created.license, now_ms()),
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
        let idem = idempotency_key.0;
        if let Some(k) = &idem {
            check_idempotency_key(k)?;
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(body.0.licenses.len());
        for (i, item) in body.0.licenses.into_iter().enumerate() {
            let item_key = idem.as_ref().map(|k| format!("{k}:{i}"));
            let result = match self.create_one(&auth.0, item, item_key).await {
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
        let body = body.0;
        let target = KeyRef::from_parts(body.license_id, body.license_key)?;
        let license = keys::revoke(&self.state, &auth.0, target, body.reason).await?;
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
        let body = body.0;
        let target = KeyRef::from_parts(body.license_id, body.license_key)?;
        let valid_until = datetime_to_ms(body.valid_until);
        let license =
            keys::renew(&self.state, &auth.0, target, valid_until, body.entitlements).await?;
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
        if order_id.0.len() > 255 {
            return Err(Error::Invalid("orderId must be at most 255 characters".into()).into());
        }
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = keys::by_order(&self.state, &auth.0, &order_id.0, limit, offset)?;
        let now = now_ms();
        Ok(ByOrderResponse::Ok(Json(LicensesOk {
            success: true,
            licenses: found.iter().map(|l| LicenseCreated::new(l, now)).collect(),
            pagination: Pagination::new(page, limit, total),
        })))
    }

    /// Licenses of a customer e-mail
    ///
    /// Every license whose `customerEmail` is this address (ignoring case), oldest first.
    /// Needs READ_ONLY scope; a product-restricted key sees its product's only.
    #[oai(path = "/by-email/:email", method = "get")]
    async fn by_email(
        &self,
        auth: ReadScope,
        /// The customer's e-mail address.
        email: Path<String>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> VendorResult<ByEmailResponse> {
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = crate::service::mail::customers::licenses_by_email(
            &self.state,
            &auth.0,
            &email.0,
            limit,
            offset,
        )?;
        let now = now_ms();
        Ok(ByEmailResponse::Ok(Json(LicensesOk {
            success: true,
            licenses: found.iter().map(|l| LicenseCreated::new(l, now)).collect(),
            pagination: Pagination::new(page, limit, total),
        })))
    }
}

impl LicenseManageApi {
    async fn create_one(
        &self,
        ctx: &Ctx,
        req: CreateLicenseRequest,
        idempotency_key: Option<String>,
    ) -> Result<crate::domain::licenses::Created, Error> {
        // The request as sent, hashed: a reused idempotency key must come with the same one.
        let idempotency = idempotency_key.map(|key| Idempotency {
            key,
            request_sha256: crypto::sha256(req.to_json_string().as_bytes()),
        });
        let order = LicenseOrder {
            product: req.product_id,
            license_type: req.license_type,
            tier: req.tier,
            max_activations: req.max_activations,
            valid_until: req.valid_until.map(datetime_to_ms),
            customer_email: req.customer_email,
            customer_name: req.customer_name,
            order_id: req.order_id,
            metadata: req.metadata,
            entitlements: req.entitlements.unwrap_or_default(),
        };
        keys::issue(&self.state, ctx, order, idempotency).await
    }
}

fn check_idempotency_key(key: &str) -> Result<(), VendorError> {
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(
            Error::Invalid("X-Idempotency-Key must be 1-255 printable characters".into()).into(),
        );
    }
    Ok(())
}
