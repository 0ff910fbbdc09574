//! `/api/projects/{id}/signing-keys`: a project's Ed25519 signing keys; rotating to a new
//! current key (endorsed by the previous one) and retiring old ones.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::signing_key::SigningKeyView;
use crate::domain::ProductId;
use crate::service::signing_keys;
use crate::state::AppState;

pub struct SigningKeysApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
pub struct SigningKeysData {
    /// Oldest first.
    pub keys: Vec<SigningKeyView>,
}

#[derive(Object, Debug)]
pub struct SigningKeysOk {
    pub success: bool,
    pub data: SigningKeysData,
}

#[derive(Object, Debug)]
pub struct SigningKeyData {
    pub key: SigningKeyView,
}

#[derive(Object, Debug)]
pub struct SigningKeyOk {
    pub success: bool,
    pub data: SigningKeyData,
}

#[derive(ApiResponse)]
pub enum ListSigningKeysResponse {
    /// The project's keys, oldest first: exactly one is current.
    #[oai(status = 200)]
    Ok(Json<SigningKeysOk>),
}

#[derive(ApiResponse)]
pub enum RotateSigningKeyResponse {
    /// The new current key, endorsed by the key current until now. Every answer, license
    /// file and bundle the project signs from now on is signed by it.
    #[oai(status = 201)]
    Created(Json<SigningKeyOk>),
}

#[derive(ApiResponse)]
pub enum RetireSigningKeyResponse {
    /// The key, retired (retiring a retired key answers it unchanged).
    #[oai(status = 200)]
    Ok(Json<SigningKeyOk>),
}

#[OpenApi(tag = "AdminTags::Projects")]
impl SigningKeysApi {
    /// List a project's signing keys
    #[oai(path = "/api/projects/:id/signing-keys", method = "get")]
    async fn list(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ListSigningKeysResponse> {
        let ctx = auth.admin().ctx;
        let ring = signing_keys::list(&self.state, &ctx, &ProductId::from(id.0))?;
        Ok(ListSigningKeysResponse::Ok(Json(SigningKeysOk {
            success: true,
            data: SigningKeysData {
                keys: ring.keys.iter().map(SigningKeyView::new).collect(),
            },
        })))
    }

    /// Rotate a project's signing key
    ///
    /// Makes a new current Ed25519 key. Its public key is endorsed: signed by the key current
    /// until now, over `keyward-key-endorsement/` followed by the new `publicKey` (base64), so
    /// an app that pinned an earlier key accepts the new one only through that signature. The
    /// earlier keys keep verifying what they signed until they are retired.
    #[oai(path = "/api/projects/:id/signing-keys", method = "post")]
    async fn rotate(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<RotateSigningKeyResponse> {
        let ctx = auth.admin().ctx;
        let key = signing_keys::rotate(&self.state, &ctx, &ProductId::from(id.0)).await?;
        Ok(RotateSigningKeyResponse::Created(Json(SigningKeyOk {
            success: true,
            data: SigningKeyData {
                key: SigningKeyView::new(&key),
            },
        })))
    }

    /// Retire a signing key
    ///
    /// The key stays listed with `retired: true`, so apps drop it, and never signs again.
    /// Final. The current key cannot be retired (409): rotate first.
    #[oai(path = "/api/projects/:id/signing-keys/:kid/retire", method = "post")]
    async fn retire(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        /// The key's kid: 16 hex characters.
        kid: Path<String>,
    ) -> KvResult<RetireSigningKeyResponse> {
        let ctx = auth.admin().ctx;
        let key = signing_keys::retire(&self.state, &ctx, &ProductId::from(id.0), &kid.0).await?;
        Ok(RetireSigningKeyResponse::Ok(Json(SigningKeyOk {
            success: true,
            data: SigningKeyData {
                key: SigningKeyView::new(&key),
            },
        })))
    }
}
