//! A project's update feeds: whether they answer without a license, and their addresses.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::ProductId;
use crate::service;
use crate::service::feeds::FeedSettings;
use crate::state::AppState;

pub struct FeedsAdminApi {
    pub state: AppState,
}

/// The feed addresses of a project (paths on this server; Tauri fills in the `{{…}}` parts).
#[derive(Object, Debug)]
pub struct FeedPaths {
    pub tauri: String,
    pub sparkle: String,
    pub electron: String,
    pub velopack: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct FeedSettingsView {
    pub project_id: String,
    /// The feeds answer without a license (anyone may download the releases).
    pub public: bool,
    pub paths: FeedPaths,
}

impl FeedSettingsView {
    fn new(s: FeedSettings) -> Self {
        let slug = &s.product.slug;
        Self {
            project_id: s.product.id.clone(),
            public: s.public,
            paths: FeedPaths {
                tauri: format!(
                    "/api/v1/updates/tauri/{slug}/{{{{target}}}}/{{{{arch}}}}/{{{{current_version}}}}"
                ),
                sparkle: format!("/api/v1/updates/sparkle/{slug}/appcast.xml"),
                electron: format!("/api/v1/updates/electron/{slug}"),
                velopack: format!("/api/v1/updates/velopack/{slug}"),
            },
        }
    }
}

#[derive(Object, Debug)]
pub struct FeedSettingsOk {
    pub success: bool,
    pub data: FeedSettingsView,
}

#[derive(Object, Debug)]
pub struct FeedSettingsRequest {
    /// true: the feeds answer without a license; false: only to licensed clients.
    pub public: bool,
}

#[derive(ApiResponse)]
pub enum FeedSettingsResponse {
    /// Whether the project's feeds are public, and their addresses.
    #[oai(status = 200)]
    Ok(Json<FeedSettingsOk>),
}

fn ok(s: FeedSettings) -> FeedSettingsResponse {
    FeedSettingsResponse::Ok(Json(FeedSettingsOk {
        success: true,
        data: FeedSettingsView::new(s),
    }))
}

#[OpenApi(tag = "AdminTags::Releases")]
impl FeedsAdminApi {
    /// A project's update feeds
    ///
    /// Whether its Tauri, Sparkle, electron-updater and Velopack feeds are public, and their
    /// paths.
    #[oai(path = "/api/projects/:id/feeds", method = "get")]
    async fn feeds(&self, auth: AdminAuth, id: Path<String>) -> KvResult<FeedSettingsResponse> {
        let admin = auth.admin();
        let found = service::feeds::settings(&self.state, &admin.ctx, &ProductId::from(id.0))?;
        Ok(ok(found))
    }

    /// Make a project's feeds public or licensed
    ///
    /// Public feeds answer without a license key or feed token (a free app, or a trial
    /// download page); licensed feeds (the default) answer 401 without one.
    #[oai(path = "/api/projects/:id/feeds", method = "patch")]
    async fn set_feeds(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<FeedSettingsRequest>,
    ) -> KvResult<FeedSettingsResponse> {
        let admin = auth.admin();
        let changed = service::feeds::set_public(
            &self.state,
            &admin.ctx,
            ProductId::from(id.0),
            body.0.public,
        )
        .await?;
        Ok(ok(changed))
    }
}
