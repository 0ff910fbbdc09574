//! `/api/projects`: projects are the vendor API's products, seen from the admin panel, with
//! the key/HWID face's additions (kv_ secret, payload key, server variable, sessions…).

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::crypto;
use crate::domain::licenses::LicenseType;
use crate::domain::products::{
    HeartbeatPolicy, KeyFormat, Product, ProductStatus, ProductType, ProjectSettings,
};
use crate::domain::sessions::SessionLimit;
use crate::domain::{ProductId, TenantId, ms_to_datetime, portal_users};
use crate::service::catalog::{self, ProductChanges, ProductDetails, ProductDraft};
use crate::state::AppState;

pub struct ProjectsApi {
    pub state: AppState,
}

crate::field_names!(
    NameField = "name",
    SlugField = "slug",
    DescriptionField = "description",
    KeyFormatField = "keyFormat",
    TypeField = "type",
    DefaultLicenseTypeField = "defaultLicenseType",
    DefaultMaxActivationsField = "defaultMaxActivations",
    ServerVarField = "serverVar",
    RequireEncryptionField = "requireEncryption",
    SessionTtlField = "sessionTtlSeconds",
    SessionLimitField = "sessionLimit",
    HwidResetCooldownField = "hwidResetCooldownSeconds",
    HeartbeatIntervalField = "heartbeatIntervalSeconds",
    HeartbeatGraceField = "heartbeatGraceSeconds",
    KeepDeadMachinesField = "keepDeadMachines",
    PortalSettingsField = "portalSettings",
    StatusField = "status",
    RegenerateSecretField = "regenerateSecret",
    TenantIdField = "tenantId",
    EntitlementsField = "entitlements",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CreateProjectRequest {
    #[oai(
        deserialize_with = "named::<NameField, _>",
        validator(min_length = 1, max_length = 255)
    )]
    pub name: String,
    #[oai(
        nullable,
        deserialize_with = "named::<DescriptionField, _>",
        validator(max_length = 1000)
    )]
    pub description: Option<String>,
    /// URL name of the portal (`/p/<slug>`); made from the name when absent.
    #[oai(
        nullable,
        deserialize_with = "named::<SlugField, _>",
        validator(max_length = 64)
    )]
    pub slug: Option<String>,
    /// Key template (X = random symbol); default `XXXX-XXXX-XXXX-XXXX`.
    #[oai(
        nullable,
        deserialize_with = "named::<KeyFormatField, _>",
        validator(max_length = 100)
    )]
    pub key_format: Option<String>,
    #[oai(nullable, deserialize_with = "named::<TypeField, _>", rename = "type")]
    pub product_type: Option<ProductType>,
    #[oai(nullable, deserialize_with = "named::<DefaultLicenseTypeField, _>")]
    pub default_license_type: Option<LicenseType>,
    /// Machines per key; default 1 (HWID locked).
    #[oai(
        nullable,
        deserialize_with = "named::<DefaultMaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub default_max_activations: Option<u32>,
    #[oai(
        nullable,
        deserialize_with = "named::<ServerVarField, _>",
        validator(max_length = 4096)
    )]
    pub server_var: Option<String>,
    #[oai(nullable, deserialize_with = "named::<RequireEncryptionField, _>")]
    pub require_encryption: Option<bool>,
    #[oai(nullable, deserialize_with = "named::<SessionTtlField, _>")]
    pub session_ttl_seconds: Option<u32>,
    /// What a validation that would open a session gets when every session of its key is
    /// live: `END_OLDEST` (default: the newcomer gets a session, the oldest session's next
    /// refresh gets 403 `SESSION_ENDED`) or `REFUSE_NEW` (403 `MAX_SESSIONS` until one ends or
    /// times out).
    #[oai(nullable, deserialize_with = "named::<SessionLimitField, _>")]
    pub session_limit: Option<SessionLimit>,
    #[oai(nullable, deserialize_with = "named::<HwidResetCooldownField, _>")]
    pub hwid_reset_cooldown_seconds: Option<u32>,
    /// Seconds between expected heartbeats; absent for none.
    #[oai(
        nullable,
        deserialize_with = "named::<HeartbeatIntervalField, _>",
        validator(minimum(value = "1"), maximum(value = "2592000"))
    )]
    pub heartbeat_interval_seconds: Option<u32>,
    #[oai(
        nullable,
        deserialize_with = "named::<HeartbeatGraceField, _>",
        validator(maximum(value = "2592000"))
    )]
    pub heartbeat_grace_seconds: Option<u32>,
    #[oai(nullable, deserialize_with = "named::<KeepDeadMachinesField, _>")]
    pub keep_dead_machines: Option<bool>,
    /// Workspace to create the project in (ADMIN operators only; default: your own).
    #[oai(
        nullable,
        deserialize_with = "named::<TenantIdField, _>",
        validator(max_length = 64)
    )]
    pub tenant_id: Option<String>,
    /// Entitlement codes (`^[A-Z][A-Z0-9_]{0,63}$`, at most 64, no duplicates) its keys may
    /// carry.
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateProjectRequest {
    #[oai(
        nullable,
        deserialize_with = "named::<NameField, _>",
        validator(min_length = 1, max_length = 255)
    )]
    pub name: Option<String>,
    /// null clears it.
    #[oai(
        nullable,
        deserialize_with = "named::<DescriptionField, _>",
        validator(max_length = 1000)
    )]
    pub description: MaybeUndefined<String>,
    /// Rotate the kv_ secret: apps using the old one stop matching keys at once.
    #[oai(nullable, deserialize_with = "named::<RegenerateSecretField, _>")]
    pub regenerate_secret: Option<bool>,
    #[oai(
        nullable,
        deserialize_with = "named::<KeyFormatField, _>",
        validator(max_length = 100)
    )]
    pub key_format: Option<String>,
    #[oai(nullable, deserialize_with = "named::<StatusField, _>")]
    pub status: Option<ProductStatus>,
    #[oai(
        nullable,
        deserialize_with = "named::<DefaultMaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub default_max_activations: Option<u32>,
    /// null clears it.
    #[oai(
        nullable,
        deserialize_with = "named::<ServerVarField, _>",
        validator(max_length = 4096)
    )]
    pub server_var: MaybeUndefined<String>,
    #[oai(nullable, deserialize_with = "named::<RequireEncryptionField, _>")]
    pub require_encryption: Option<bool>,
    #[oai(nullable, deserialize_with = "named::<SessionTtlField, _>")]
    pub session_ttl_seconds: Option<u32>,
    /// What a validation that would open a session gets when every session of its key is
    /// live: `END_OLDEST` (default: the newcomer gets a session, the oldest session's next
    /// refresh gets 403 `SESSION_ENDED`) or `REFUSE_NEW` (403 `MAX_SESSIONS` until one ends or
    /// times out).
    #[oai(nullable, deserialize_with = "named::<SessionLimitField, _>")]
    pub session_limit: Option<SessionLimit>,
    #[oai(nullable, deserialize_with = "named::<HwidResetCooldownField, _>")]
    pub hwid_reset_cooldown_seconds: Option<u32>,
    /// null removes the heartbeat policy.
    #[oai(
        nullable,
        deserialize_with = "named::<HeartbeatIntervalField, _>",
        validator(minimum(value = "1"), maximum(value = "2592000"))
    )]
    pub heartbeat_interval_seconds: MaybeUndefined<u32>,
    #[oai(
        nullable,
        deserialize_with = "named::<HeartbeatGraceField, _>",
        validator(maximum(value = "2592000"))
    )]
    pub heartbeat_grace_seconds: Option<u32>,
    #[oai(nullable, deserialize_with = "named::<KeepDeadMachinesField, _>")]
    pub keep_dead_machines: Option<bool>,
    /// The portal's configuration (JSON object); null clears it.
    #[oai(nullable, deserialize_with = "named::<PortalSettingsField, _>")]
    pub portal_settings: MaybeUndefined<serde_json::Value>,
    /// Replaces the entitlement codes. Removing a code some key still carries is refused
    /// (409 `CONFLICT`, naming the code and how many keys carry it).
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

/// A project as the admin panel sees it. Secrets appear only in single-project answers.
#[derive(Object, Debug)]
#[oai(rename = "Project", rename_all = "camelCase")]
pub struct ProjectView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub slug: String,
    #[oai(nullable)]
    pub description: Option<String>,
    #[oai(rename = "type")]
    pub product_type: ProductType,
    pub status: ProductStatus,
    pub key_format: String,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    #[oai(nullable)]
    pub server_var: Option<String>,
    pub require_encryption: bool,
    pub session_ttl_seconds: u32,
    /// `END_OLDEST` or `REFUSE_NEW`: what a new session gets when every session of a key is
    /// live.
    pub session_limit: SessionLimit,
    pub hwid_reset_cooldown_seconds: u32,
    #[oai(nullable)]
    pub heartbeat_interval_seconds: Option<u32>,
    pub heartbeat_grace_seconds: u32,
    pub keep_dead_machines: bool,
    /// The entitlement codes its keys may carry.
    pub entitlements: Vec<String>,
    /// The portal's configuration: `enabled`, `title`, `welcome`, `loaderUrl` and `blocks`
    /// (`{type, label?, url?, text?, requires?, requiresEntitlement?}`), defaults filled in.
    #[oai(nullable)]
    pub portal_settings: Option<serde_json::Value>,
    /// The current Ed25519 public key (base64 of 32 bytes): verifies signed answers and bundles
    /// (earlier keys: `GET /api/projects/{id}/signing-keys`).
    pub public_key: String,
    pub key_count: u64,
    /// The project's `kv_` client secret (only in single-project answers).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub secret: Option<String>,
    /// The AES-256-GCM payload key, base64 (only in single-project answers).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub encryption_key: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl ProjectView {
    pub fn new(p: &Product, key_count: u64) -> Self {
        Self {
            id: p.id.clone(),
            tenant_id: p.tenant_id.clone(),
            name: p.name.clone(),
            slug: p.slug.clone(),
            description: p.settings.description.clone(),
            product_type: p.product_type,
            status: p.status,
            key_format: p.key_format.as_str().to_owned(),
            default_license_type: p.default_license_type,
            default_max_activations: p.default_max_activations,
            server_var: p.settings.server_var.clone(),
            require_encryption: p.settings.require_encryption,
            session_ttl_seconds: p.settings.session_ttl_secs,
            session_limit: p.settings.session_limit,
            hwid_reset_cooldown_seconds: p.settings.hwid_reset_cooldown_secs,
            heartbeat_interval_seconds: p.heartbeat.map(|h| h.interval_secs),
            heartbeat_grace_seconds: p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
            keep_dead_machines: p.heartbeat.is_some_and(|h| !h.cull_dead),
            entitlements: p.entitlements.clone(),
            // The effective settings: a project that never saved any has the default portal.
            portal_settings: serde_json::to_value(portal_users::settings_of(p)).ok(),
            public_key: crypto::base64(&p.signing_public_key),
            key_count,
            secret: None,
            encryption_key: None,
            created_at: ms_to_datetime(p.created_at),
            updated_at: ms_to_datetime(p.updated_at),
        }
    }

    /// With the secrets, for the one operator who asked for this project.
    fn with_secrets(d: &ProductDetails) -> Self {
        let mut view = Self::new(&d.product, d.key_count);
        view.secret = Some(d.secret.clone());
        view.encryption_key = Some(crypto::base64(&d.encryption_key));
        view
    }
}

#[derive(Object, Debug)]
pub struct ProjectData {
    pub project: ProjectView,
}

#[derive(Object, Debug)]
pub struct ProjectOk {
    pub success: bool,
    pub data: ProjectData,
}

#[derive(Object, Debug)]
pub struct ProjectsData {
    pub projects: Vec<ProjectView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct ProjectsOk {
    pub success: bool,
    pub data: ProjectsData,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ProjectDeleted {
    pub message: String,
    pub deleted_keys: u64,
}

#[derive(Object, Debug)]
pub struct ProjectDeletedOk {
    pub success: bool,
    pub data: ProjectDeleted,
}

#[derive(ApiResponse)]
pub enum ListProjectsResponse {
    /// Projects within reach, newest first, with their key counts (no secrets).
    #[oai(status = 200)]
    Ok(Json<ProjectsOk>),
}

#[derive(ApiResponse)]
pub enum CreateProjectResponse {
    /// Created, with its new kv_ secret, payload key and signing key.
    #[oai(status = 201)]
    Created(Json<ProjectOk>),
}

#[derive(ApiResponse)]
pub enum ProjectResponse {
    /// The project with its key count and secrets.
    #[oai(status = 200)]
    Ok(Json<ProjectOk>),
}

#[derive(ApiResponse)]
pub enum DeleteProjectResponse {
    /// The project is gone with its keys and their activations.
    #[oai(status = 200)]
    Ok(Json<ProjectDeletedOk>),
}

#[OpenApi(tag = "AdminTags::Projects")]
impl ProjectsApi {
    /// List projects
    #[oai(path = "/api/projects", method = "get")]
    async fn list(
        &self,
        auth: AdminAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<ListProjectsResponse> {
        let ctx = auth.admin().ctx;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = catalog::list(&self.state, &ctx, limit, offset)?;
        Ok(ListProjectsResponse::Ok(Json(ProjectsOk {
            success: true,
            data: ProjectsData {
                projects: found.iter().map(|(p, n)| ProjectView::new(p, *n)).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Create a project
    ///
    /// Generates its `kv_` secret (165 bits), its AES-256-GCM payload key and its Ed25519
    /// signing key. Keys of a project are HWID locked (one machine) unless
    /// `defaultMaxActivations` says otherwise.
    #[oai(path = "/api/projects", method = "post")]
    async fn create(
        &self,
        auth: AdminAuth,
        body: Json<CreateProjectRequest>,
    ) -> KvResult<CreateProjectResponse> {
        let ctx = auth.admin().ctx;
        let body = body.0;
        let draft = ProductDraft {
            tenant_id: body.tenant_id.map(TenantId::from),
            key_format: KeyFormat::parse(
                body.key_format.as_deref().unwrap_or("XXXX-XXXX-XXXX-XXXX"),
            )?,
            settings: ProjectSettings {
                description: body.description,
                server_var: body.server_var,
                require_encryption: body.require_encryption.unwrap_or(false),
                session_ttl_secs: body.session_ttl_seconds.unwrap_or(300),
                session_limit: body.session_limit.unwrap_or_default(),
                hwid_reset_cooldown_secs: body.hwid_reset_cooldown_seconds.unwrap_or(86_400),
                portal_settings: None,
            },
            heartbeat: body
                .heartbeat_interval_seconds
                .map(|interval_secs| HeartbeatPolicy {
                    interval_secs,
                    grace_secs: body.heartbeat_grace_seconds.unwrap_or(0),
                    cull_dead: !body.keep_dead_machines.unwrap_or(false),
                }),
            name: body.name,
            slug: body.slug,
            product_type: body.product_type.unwrap_or(ProductType::Desktop),
            default_license_type: body.default_license_type.unwrap_or(LicenseType::Perpetual),
            default_max_activations: body.default_max_activations.unwrap_or(1),
            entitlements: body.entitlements.unwrap_or_default(),
        };
        let created = catalog::create_product(&self.state, &ctx, draft).await?;
        Ok(CreateProjectResponse::Created(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&created),
            },
        })))
    }

    /// Project details
    ///
    /// With its key count, its `kv_` secret and its payload encryption key.
    #[oai(path = "/api/projects/:id", method = "get")]
    async fn get(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ProjectResponse> {
        let ctx = auth.admin().ctx;
        let found = catalog::get(&self.state, &ctx, &ProductId::from(id.0))?;
        Ok(ProjectResponse::Ok(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&found),
            },
        })))
    }

    /// Update a project, or rotate its secret
    #[oai(path = "/api/projects/:id", method = "patch")]
    async fn update(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateProjectRequest>,
    ) -> KvResult<ProjectResponse> {
        let ctx = auth.admin().ctx;
        let body = body.0;
        let changes = ProductChanges {
            name: body.name,
            description: change(body.description),
            regenerate_secret: body.regenerate_secret == Some(true),
            key_format: body
                .key_format
                .as_deref()
                .map(KeyFormat::parse)
                .transpose()?,
            status: body.status,
            default_max_activations: body.default_max_activations,
            server_var: change(body.server_var),
            require_encryption: body.require_encryption,
            session_ttl_secs: body.session_ttl_seconds,
            session_limit: body.session_limit,
            hwid_reset_cooldown_secs: body.hwid_reset_cooldown_seconds,
            heartbeat_interval_secs: change(body.heartbeat_interval_seconds),
            heartbeat_grace_secs: body.heartbeat_grace_seconds,
            keep_dead_machines: body.keep_dead_machines,
            portal_settings: change(body.portal_settings),
            entitlements: body.entitlements,
        };
        let updated =
            catalog::update_product(&self.state, &ctx, &ProductId::from(id.0), changes).await?;
        Ok(ProjectResponse::Ok(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&updated),
            },
        })))
    }

    /// Delete a project with all its keys
    ///
    /// Irreversible: the project, its keys and their activations are deleted (the audit trail
    /// is kept). The request must name the project: `?confirm=<slug>`.
    #[oai(path = "/api/projects/:id", method = "delete")]
    async fn delete(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        /// The project's slug or its exact name, repeated as confirmation.
        confirm: Query<Option<String>>,
    ) -> KvResult<DeleteProjectResponse> {
        let ctx = auth.admin().ctx;
        let deleted =
            catalog::delete_product(&self.state, &ctx, &ProductId::from(id.0), confirm.0).await?;
        Ok(DeleteProjectResponse::Ok(Json(ProjectDeletedOk {
            success: true,
            data: ProjectDeleted {
                message: "Project deleted".into(),
                deleted_keys: deleted,
            },
        })))
    }
}

/// A JSON field that may be absent (keep), null (clear) or a value (set).
fn change<T: poem_openapi::types::ParseFromJSON + poem_openapi::types::ToJSON>(
    field: MaybeUndefined<T>,
) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Value(v) => Some(Some(v)),
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Undefined => None,
    }
}
