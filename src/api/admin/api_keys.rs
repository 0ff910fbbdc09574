//! `/api/api-keys`: the vendor API keys, managed from the admin panel (the vendor document's
//! "Settings > API Keys"). A new key is shown once.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::api_keys::{ApiKey, Scope};
use crate::domain::{ProductId, ms_to_datetime};
use crate::service::api_keys::{self, NewApiKey, ProductRef};
use crate::state::AppState;

pub struct ApiKeysApi {
    pub state: AppState,
}

crate::field_names!(
    KeyNameField = "name",
    ScopeField = "scope",
    ProjectIdField = "projectId",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CreateApiKeyRequest {
    #[oai(
        deserialize_with = "named::<KeyNameField, _>",
        validator(min_length = 1, max_length = 100)
    )]
    pub name: String,
    /// VALIDATE_ONLY ⊂ CREATE_LICENSE ⊂ READ_ONLY ⊂ FULL_ADMIN.
    #[oai(deserialize_with = "named::<ScopeField, _>")]
    pub scope: Scope,
    /// Restrict the key to one project; the key then belongs to that project's workspace.
    #[oai(
        nullable,
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename = "ApiKeyInfo", rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// The readable head of the key (`kw_xxxxxxxx`); the secret part is never shown again.
    pub prefix: String,
    pub scope: Scope,
    #[oai(nullable)]
    pub project_id: Option<String>,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_used_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKeyView {
    fn new(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            tenant_id: k.tenant_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scope: k.scope,
            project_id: k.product_id.clone(),
            created_at: ms_to_datetime(k.created_at),
            last_used_at: k.last_used_at.map(ms_to_datetime),
            revoked_at: k.revoked_at.map(ms_to_datetime),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeysData {
    pub api_keys: Vec<ApiKeyView>,
}

#[derive(Object, Debug)]
pub struct ApiKeysOk {
    pub success: bool,
    pub data: ApiKeysData,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeyCreatedData {
    pub api_key: ApiKeyView,
    /// The whole key: shown only in this answer. Store it now.
    pub key: String,
}

#[derive(Object, Debug)]
pub struct ApiKeyCreatedOk {
    pub success: bool,
    pub data: ApiKeyCreatedData,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeyData {
    pub api_key: ApiKeyView,
}

#[derive(Object, Debug)]
pub struct ApiKeyOk {
    pub success: bool,
    pub data: ApiKeyData,
}

#[derive(ApiResponse)]
pub enum ListApiKeysResponse {
    /// API keys within reach, newest first (prefixes only).
    #[oai(status = 200)]
    Ok(Json<ApiKeysOk>),
}

#[derive(ApiResponse)]
pub enum CreateApiKeyResponse {
    /// Created; `key` is shown this once.
    #[oai(status = 201)]
    Created(Json<ApiKeyCreatedOk>),
}

#[derive(ApiResponse)]
pub enum RevokeApiKeyResponse {
    /// Revoked (or already was): the key stops working at once.
    #[oai(status = 200)]
    Ok(Json<ApiKeyOk>),
}

#[OpenApi(tag = "AdminTags::ApiKeys")]
impl ApiKeysApi {
    /// List API keys
    ///
    /// A product-restricted key sees only keys restricted to its product.
    #[oai(path = "/api/api-keys", method = "get")]
    async fn list(&self, auth: AdminAuth) -> KvResult<ListApiKeysResponse> {
        let admin = auth.admin();
        let keys = api_keys::list(&self.state, &admin.ctx)?;
        Ok(ListApiKeysResponse::Ok(Json(ApiKeysOk {
            success: true,
            data: ApiKeysData {
                api_keys: keys.iter().map(ApiKeyView::new).collect(),
            },
        })))
    }

    /// Create an API key
    ///
    /// The answer holds the whole key, once; only its prefix and hash are stored. Nobody
    /// mints a key stronger than itself: a USER operator creates keys of at most READ_ONLY
    /// scope; an API key, keys of at most its own scope, and a product-restricted key only
    /// keys restricted to its own project (403 otherwise; another project is 404).
    #[oai(path = "/api/api-keys", method = "post")]
    async fn create(
        &self,
        auth: AdminAuth,
        body: Json<CreateApiKeyRequest>,
    ) -> KvResult<CreateApiKeyResponse> {
        let admin = auth.admin();
        let body = body.0;
        let minted = api_keys::create(
            &self.state,
            &admin.ctx,
            NewApiKey {
                name: body.name,
                scope: body.scope,
                product: body.project_id.map(|p| ProductRef::Id(ProductId::from(p))),
            },
        )
        .await?;
        Ok(CreateApiKeyResponse::Created(Json(ApiKeyCreatedOk {
            success: true,
            data: ApiKeyCreatedData {
                api_key: ApiKeyView::new(&minted.key),
                key: minted.plaintext,
            },
        })))
    }

    /// Revoke an API key
    #[oai(path = "/api/api-keys/:id", method = "delete")]
    async fn revoke(&self, auth: AdminAuth, id: Path<String>) -> KvResult<RevokeApiKeyResponse> {
        let admin = auth.admin();
        let revoked = api_keys::revoke(&self.state, &admin.ctx, &id.0).await?;
        Ok(RevokeApiKeyResponse::Ok(Json(ApiKeyOk {
            success: true,
            data: ApiKeyData {
                api_key: ApiKeyView::new(&revoked.key),
            },
        })))
    }
}
