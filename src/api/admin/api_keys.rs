//! `/api/api-keys`: the vendor API keys, managed from the admin panel (the vendor document's
//! "Settings > API Keys"). A new key is shown once.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::api_keys::{self, ApiKey, Scope};
use crate::domain::audit;
use crate::domain::{ms_to_datetime, now_ms, products};
use crate::error::Error;
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
    pub project_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
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
    #[oai(path = "/api/api-keys", method = "get")]
    async fn list(&self, auth: AdminAuth) -> KvResult<ListApiKeysResponse> {
        let admin = auth.admin();
        let keys = self
            .state
            .db
            .read(|c| api_keys::repo::list_in(c, admin.tenant_scope()))?;
        Ok(ListApiKeysResponse::Ok(Json(ApiKeysOk {
            success: true,
            data: ApiKeysData {
                api_keys: keys.iter().map(ApiKeyView::new).collect(),
            },
        })))
    }

    /// Create an API key
    ///
    /// The answer holds the whole key, once; only its prefix and hash are stored.
    #[oai(path = "/api/api-keys", method = "post")]
    async fn create(
        &self,
        auth: AdminAuth,
        body: Json<CreateApiKeyRequest>,
    ) -> KvResult<CreateApiKeyResponse> {
        let admin = auth.admin();
        let body = body.0;
        let (key, plaintext) = self
            .state
            .db
            .write(move |c| {
                let tenant_id = match &body.project_id {
                    Some(p) => products::repo::find_in(c, admin.tenant_scope(), p)?
                        .ok_or(Error::NotFound("project"))?
                        .tenant_id,
                    None => admin.tenant_id.clone(),
                };
                let (key, plaintext) =
                    api_keys::create(c, &tenant_id, &body.name, body.scope, body.project_id.as_deref())?;
                audit::repo::insert(
                    c,
                    &admin.event(&tenant_id, crate::domain::audit::AuditAction::ApiKeyCreate)
                        .detail(json!({"apiKeyId": key.id, "scope": key.scope.as_str(), "projectId": key.product_id})),
                )?;
                Ok((key, plaintext))
            })
            .await?;
        Ok(CreateApiKeyResponse::Created(Json(ApiKeyCreatedOk {
            success: true,
            data: ApiKeyCreatedData {
                api_key: ApiKeyView::new(&key),
                key: plaintext,
            },
        })))
    }

    /// Revoke an API key
    #[oai(path = "/api/api-keys/:id", method = "delete")]
    async fn revoke(&self, auth: AdminAuth, id: Path<String>) -> KvResult<RevokeApiKeyResponse> {
        let admin = auth.admin();
        let id = id.0;
        let state = self.state.clone();
        let key = self
            .state
            .db
            .write(move |c| {
                let key = api_keys::repo::find_in(c, admin.tenant_scope(), &id)?
                    .ok_or(Error::NotFound("API key"))?;
                if key.revoked_at.is_none() {
                    api_keys::repo::revoke(c, &key.tenant_id, &key.id, now_ms())?;
                    audit::repo::insert(
                        c,
                        &admin
                            .event(
                                &key.tenant_id,
                                crate::domain::audit::AuditAction::ApiKeyRevoke,
                            )
                            .detail(json!({"apiKeyId": key.id})),
                    )?;
                }
                api_keys::repo::find_in(c, Some(&key.tenant_id), &key.id)?
                    .ok_or(Error::NotFound("API key"))
            })
            .await?;
        // Revoked means revoked now, not when the cached copy ages out.
        state.api_key_cache.forget(&key.prefix);
        Ok(RevokeApiKeyResponse::Ok(Json(ApiKeyOk {
            success: true,
            data: ApiKeyData {
                api_key: ApiKeyView::new(&key),
            },
        })))
    }
}
