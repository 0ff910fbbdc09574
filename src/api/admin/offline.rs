//! `/api/keys/activate-offline`: the vendor carries an air-gapped machine's activation request
//! to the admin panel and gets its machine file back.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::offline::{MachineFileOk, OfflineActivationRequest, requested_ttl};
use crate::service::licensing;
use crate::state::AppState;

pub struct OfflineActivationApi {
    pub state: AppState,
}

#[derive(ApiResponse)]
pub enum OfflineActivationResponse {
    /// The machine is activated (or was already); its machine file, to save as `fileName` and
    /// carry to the app.
    #[oai(status = 200)]
    Ok(Json<MachineFileOk>),
}

#[OpenApi(tag = "AdminTags::Keys")]
impl OfflineActivationApi {
    /// Activate a machine offline
    ///
    /// `request` is the activation request an air-gapped app shows (or its `.req` file's
    /// text). The key it names (within the caller's workspace, and product for a
    /// product-restricted API key; else 404) activates the fingerprint with the usual seat
    /// rules: idempotent for a machine already activated, a full key → 403 HWID_MISMATCH, an
    /// expired, suspended, banned or revoked key → 403 KEY_EXPIRED / KEY_SUSPENDED /
    /// KEY_BANNED / KEY_REVOKED. Answers the machine's encrypted machine file. A malformed
    /// request → 400 naming what is wrong, and nothing is activated. Audited as
    /// `license.activate.offline`.
    #[oai(path = "/api/keys/activate-offline", method = "post")]
    async fn activate_offline(
        &self,
        auth: AdminAuth,
        body: Json<OfflineActivationRequest>,
    ) -> KvResult<OfflineActivationResponse> {
        let admin = auth.admin();
        let body = body.0;
        let done = licensing::activate_offline(
            &self.state,
            &admin.ctx,
            &body.request,
            requested_ttl(body.ttl),
        )
        .await?;
        Ok(OfflineActivationResponse::Ok(Json(
            MachineFileOk::activated(done),
        )))
    }
}
