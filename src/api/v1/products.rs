//! `/api/v1/products` and the public key endpoint.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use time::OffsetDateTime;

use super::ApiTags;
use super::auth::CreateScope;
use super::error::VendorResult;
use super::schemas::{Pagination, ProductPublic, VendorStatus, page_and_limit};
use crate::api::shared::signed::SignedJson;
use crate::api::shared::signing_key::SigningKeyView;
use crate::domain::{ms_to_datetime, revocations, tenants};
use crate::service::catalog;
use crate::service::revocations::RevocationList;
use crate::state::AppState;

pub struct ProductApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
pub struct ProductsOk {
    pub success: bool,
    pub products: Vec<ProductPublic>,
    pub pagination: Pagination,
}

#[derive(ApiResponse)]
pub enum ProductsResponse {
    /// The tenant's active products (only its own product for a product-restricted key).
    #[oai(status = 200)]
    Ok(Json<ProductsOk>),
}

#[derive(Object, Debug)]
pub struct PublicKeyOk {
    pub success: bool,
    /// The current Ed25519 public key (the one that signs now): base64 of the raw 32 bytes.
    pub public_key: String,
    /// The same key as `public_key`, spelled as the entries of `keys` spell it.
    #[oai(rename = "publicKey")]
    pub public_key_camel: String,
    /// The current key's id.
    pub kid: String,
    /// Every key of the product, oldest first. Pin the first key you trust; accept a later
    /// key only when a key you already trust endorses it (its `endorsement` verifies under the
    /// endorsing key, over `keyward-key-endorsement/` followed by its `publicKey`); drop keys
    /// listed as `retired`.
    pub keys: Vec<SigningKeyView>,
}

#[derive(ApiResponse)]
pub enum PublicKeyResponse {
    /// The product's current public key and all its keys.
    #[oai(status = 200)]
    Ok(Json<PublicKeyOk>),
}

/// One license an app must refuse, named without its key.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RevokedLicense {
    pub license_id: String,
    /// Hex SHA-256 of the license key, normalized (trimmed, upper-case): the app hashes the key
    /// it holds the same way and compares.
    pub key_sha256: String,
    /// When the license entered the list with this status.
    pub revoked_at: OffsetDateTime,
    /// SUSPENDED (a suspension may be lifted: the license then leaves the list) or REVOKED.
    pub status: VendorStatus,
}

#[derive(Object, Debug)]
pub struct RevocationsOk {
    pub success: bool,
    /// The product's slug.
    pub product: String,
    /// Grows with every change of the list, never decreases (0: never changed). An app keeps
    /// the highest version it verified and ignores any older list.
    pub version: u64,
    /// When this answer was made.
    pub issued: OffsetDateTime,
    /// The licenses to refuse, in license id order, at most 1000 per page.
    pub revoked: Vec<RevokedLicense>,
    pub pagination: Pagination,
}

impl crate::api::shared::signed::SignedBody for RevocationsOk {}

impl RevocationsOk {
    fn new(found: RevocationList) -> Self {
        let RevocationList {
            product,
            page,
            list,
        } = found;
        Self {
            success: true,
            product: product.slug,
            version: list.version,
            issued: OffsetDateTime::now_utc(),
            revoked: list
                .entries
                .into_iter()
                .map(|e| RevokedLicense {
                    key_sha256: e.key_sha256,
                    license_id: e.license_id,
                    revoked_at: ms_to_datetime(e.revoked_at),
                    status: VendorStatus::of(e.status),
                })
                .collect(),
            pagination: Pagination::new(page, revocations::PAGE_SIZE, list.total),
        }
    }
}

#[derive(ApiResponse)]
pub enum RevocationsResponse {
    /// A page of the product's revocation list, signed with the product's key (`X-Signature`,
    /// Ed25519 over the exact body). Limit: the per-IP limit only, like the public key.
    #[oai(status = 200)]
    Ok(
        SignedJson<RevocationsOk>,
        /// Product whose key signed the body.
        #[oai(header = "X-Keyward-Product")]
        String,
    ),
}

#[OpenApi]
impl ProductApi {
    /// List active products
    ///
    /// Needs CREATE_LICENSE scope or higher.
    #[oai(path = "/api/v1/products", method = "get", tag = "ApiTags::Products")]
    async fn list(
        &self,
        auth: CreateScope,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> VendorResult<ProductsResponse> {
        let ctx = auth.0;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) =
            catalog::list_of_tenant(&self.state, &ctx, &ctx.tenant, true, limit, offset)?;
        Ok(ProductsResponse::Ok(Json(ProductsOk {
            success: true,
            products: found.iter().map(ProductPublic::new).collect(),
            pagination: Pagination::new(page, limit, total),
        })))
    }

    /// Ed25519 public keys of a product
    ///
    /// Verify signed validation responses, license files and release bundles: each names the
    /// `kid` of the key that signed it. No authentication.
    #[oai(
        path = "/api/v1/updates/public-key",
        method = "get",
        tag = "ApiTags::Updates"
    )]
    async fn public_key(
        &self,
        /// The product's slug.
        product: Query<String>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
    ) -> VendorResult<PublicKeyResponse> {
        let tenant_slug = tenant.0.unwrap_or_else(|| tenants::DEFAULT_SLUG.to_owned());
        let ring =
            crate::service::signing_keys::public_keys(&self.state, &tenant_slug, &product.0)?;
        let (current, kid) = ring.current();
        Ok(PublicKeyResponse::Ok(Json(PublicKeyOk {
            success: true,
            kid,
            public_key_camel: current.clone(),
            public_key: current,
            keys: ring.keys.iter().map(SigningKeyView::new).collect(),
        })))
    }

    /// Revocation list of a product
    ///
    /// The product's licenses that an app must refuse even offline: every SUSPENDED, BANNED
    /// (shown as SUSPENDED) or REVOKED license, named by id and the SHA-256 of its key. Expired
    /// licenses are not listed. `version` grows with every change of the list; an app that
    /// verified a list never accepts an older one. Signed with the product's key. No
    /// authentication. At most 1000 entries per page (`pagination.totalPages`); every page of
    /// one version carries the same `version`.
    #[oai(
        path = "/api/v1/license/revocations",
        method = "get",
        tag = "ApiTags::License"
    )]
    async fn revocations(
        &self,
        /// The product's slug.
        product: Query<Option<String>>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
        /// Page number, from 1 (1000 entries per page).
        page: Query<Option<u32>>,
    ) -> VendorResult<RevocationsResponse> {
        let tenant_slug = tenant.0.unwrap_or_else(|| tenants::DEFAULT_SLUG.to_owned());
        let signed = crate::service::revocations::list(
            &self.state,
            &tenant_slug,
            product.0.as_deref().unwrap_or_default(),
            page.0.unwrap_or(1),
        )?;
        let product_id = signed.signer.product_id().to_string();
        Ok(RevocationsResponse::Ok(
            SignedJson::from(signed.map(RevocationsOk::new)),
            product_id,
        ))
    }
}
