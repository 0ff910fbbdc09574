//! `/api/v1/products` and the public key endpoint.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::CreateScope;
use super::error::VendorResult;
use super::schemas::{Pagination, ProductPublic, page_and_limit};
use crate::domain::tenants;
use crate::service::catalog;
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
    /// Ed25519 public key: base64 of the raw 32 bytes.
    pub public_key: String,
}

#[derive(ApiResponse)]
pub enum PublicKeyResponse {
    /// The product's public key.
    #[oai(status = 200)]
    Ok(Json<PublicKeyOk>),
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

    /// Ed25519 public key of a product
    ///
    /// Verifies signed validation responses and release bundles. No authentication.
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
        let product = catalog::find_public(&self.state, &tenant_slug, &product.0)?;
        Ok(PublicKeyResponse::Ok(Json(PublicKeyOk {
            success: true,
            public_key: crate::crypto::base64(&product.signing_public_key),
        })))
    }
}
