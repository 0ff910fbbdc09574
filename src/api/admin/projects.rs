//! `/api/projects`: projects are the vendor API's products, seen from the admin panel, with
//! the key/HWID face's additions (kv_ secret, payload key, server variable, sessions…).

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::{Admin, AdminAuth};
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::v1::schemas::{Pagination, page_and_limit};
use crate::crypto;
use crate::domain::audit;
use crate::domain::licenses::LicenseType;
use crate::domain::products::{
    self, HeartbeatPolicy, KeyFormat, NewProduct, Product, ProductStatus, ProductType,
};
use crate::domain::{ms_to_datetime, now_ms, portal_users, releases, tenants};
use crate::error::Error;
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
    HwidResetCooldownField = "hwidResetCooldownSeconds",
    HeartbeatIntervalField = "heartbeatIntervalSeconds",
    HeartbeatGraceField = "heartbeatGraceSeconds",
    KeepDeadMachinesField = "keepDeadMachines",
    PortalSettingsField = "portalSettings",
    StatusField = "status",
    RegenerateSecretField = "regenerateSecret",
    TenantIdField = "tenantId",
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
        deserialize_with = "named::<DescriptionField, _>",
        validator(max_length = 1000)
    )]
    pub description: Option<String>,
    /// URL name of the portal (`/p/<slug>`); made from the name when absent.
    #[oai(deserialize_with = "named::<SlugField, _>", validator(max_length = 64))]
    pub slug: Option<String>,
    /// Key template (X = random symbol); default `XXXX-XXXX-XXXX-XXXX`.
    #[oai(
        deserialize_with = "named::<KeyFormatField, _>",
        validator(max_length = 100)
    )]
    pub key_format: Option<String>,
    #[oai(deserialize_with = "named::<TypeField, _>", rename = "type")]
    pub product_type: Option<ProductType>,
    #[oai(deserialize_with = "named::<DefaultLicenseTypeField, _>")]
    pub default_license_type: Option<LicenseType>,
    /// Machines per key; default 1 (HWID locked).
    #[oai(
        deserialize_with = "named::<DefaultMaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub default_max_activations: Option<u32>,
    #[oai(
        deserialize_with = "named::<ServerVarField, _>",
        validator(max_length = 4096)
    )]
    pub server_var: Option<String>,
    #[oai(deserialize_with = "named::<RequireEncryptionField, _>")]
    pub require_encryption: Option<bool>,
    #[oai(deserialize_with = "named::<SessionTtlField, _>")]
    pub session_ttl_seconds: Option<u32>,
    #[oai(deserialize_with = "named::<HwidResetCooldownField, _>")]
    pub hwid_reset_cooldown_seconds: Option<u32>,
    /// Seconds between expected heartbeats; absent for none.
    #[oai(
        deserialize_with = "named::<HeartbeatIntervalField, _>",
        validator(minimum(value = "1"), maximum(value = "2592000"))
    )]
    pub heartbeat_interval_seconds: Option<u32>,
    #[oai(
        deserialize_with = "named::<HeartbeatGraceField, _>",
        validator(maximum(value = "2592000"))
    )]
    pub heartbeat_grace_seconds: Option<u32>,
    #[oai(deserialize_with = "named::<KeepDeadMachinesField, _>")]
    pub keep_dead_machines: Option<bool>,
    /// Workspace to create the project in (ADMIN operators only; default: your own).
    #[oai(
        deserialize_with = "named::<TenantIdField, _>",
        validator(max_length = 64)
    )]
    pub tenant_id: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateProjectRequest {
    #[oai(
        deserialize_with = "named::<NameField, _>",
        validator(min_length = 1, max_length = 255)
    )]
    pub name: Option<String>,
    /// null clears it.
    #[oai(
        deserialize_with = "named::<DescriptionField, _>",
        validator(max_length = 1000)
    )]
    pub description: MaybeUndefined<String>,
    /// Rotate the kv_ secret: apps using the old one stop matching keys at once.
    #[oai(deserialize_with = "named::<RegenerateSecretField, _>")]
    pub regenerate_secret: Option<bool>,
    #[oai(
        deserialize_with = "named::<KeyFormatField, _>",
        validator(max_length = 100)
    )]
    pub key_format: Option<String>,
    #[oai(deserialize_with = "named::<StatusField, _>")]
    pub status: Option<ProductStatus>,
    #[oai(
        deserialize_with = "named::<DefaultMaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub default_max_activations: Option<u32>,
    /// null clears it.
    #[oai(
        deserialize_with = "named::<ServerVarField, _>",
        validator(max_length = 4096)
    )]
    pub server_var: MaybeUndefined<String>,
    #[oai(deserialize_with = "named::<RequireEncryptionField, _>")]
    pub require_encryption: Option<bool>,
    #[oai(deserialize_with = "named::<SessionTtlField, _>")]
    pub session_ttl_seconds: Option<u32>,
    #[oai(deserialize_with = "named::<HwidResetCooldownField, _>")]
    pub hwid_reset_cooldown_seconds: Option<u32>,
    /// null removes the heartbeat policy.
    #[oai(
        deserialize_with = "named::<HeartbeatIntervalField, _>",
        validator(minimum(value = "1"), maximum(value = "2592000"))
    )]
    pub heartbeat_interval_seconds: MaybeUndefined<u32>,
    #[oai(
        deserialize_with = "named::<HeartbeatGraceField, _>",
        validator(maximum(value = "2592000"))
    )]
    pub heartbeat_grace_seconds: Option<u32>,
    #[oai(deserialize_with = "named::<KeepDeadMachinesField, _>")]
    pub keep_dead_machines: Option<bool>,
    /// The portal's configuration (JSON object); null clears it.
    #[oai(deserialize_with = "named::<PortalSettingsField, _>")]
    pub portal_settings: MaybeUndefined<serde_json::Value>,
}

/// A project as the admin panel sees it. Secrets appear only in single-project answers.
#[derive(Object, Debug)]
#[oai(rename = "Project", rename_all = "camelCase")]
pub struct ProjectView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    #[oai(rename = "type")]
    pub product_type: ProductType,
    pub status: ProductStatus,
    pub key_format: String,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    pub server_var: Option<String>,
    pub require_encryption: bool,
    pub session_ttl_seconds: u32,
    pub hwid_reset_cooldown_seconds: u32,
    pub heartbeat_interval_seconds: Option<u32>,
    pub heartbeat_grace_seconds: u32,
    pub keep_dead_machines: bool,
    /// The portal's configuration: `enabled`, `title`, `welcome`, `loaderUrl` and `blocks`
    /// (`{type, label?, url?, text?, requires?}`), defaults filled in.
    pub portal_settings: Option<serde_json::Value>,
    /// Ed25519 public key (base64 of 32 bytes): verifies signed answers and bundles.
    pub public_key: String,
    pub key_count: u64,
    /// The project's `kv_` client secret (only in single-project answers).
    #[oai(skip_serializing_if_is_none)]
    pub secret: Option<String>,
    /// The AES-256-GCM payload key, base64 (only in single-project answers).
    #[oai(skip_serializing_if_is_none)]
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
            hwid_reset_cooldown_seconds: p.settings.hwid_reset_cooldown_secs,
            heartbeat_interval_seconds: p.heartbeat.map(|h| h.interval_secs),
            heartbeat_grace_seconds: p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
            keep_dead_machines: p.heartbeat.is_some_and(|h| !h.cull_dead),
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

    /// With the secrets opened, for the one operator who asked for this project.
    fn with_secrets(p: &Product, key_count: u64, state: &AppState) -> Result<Self, Error> {
        let mut view = Self::new(p, key_count);
        let secret = state.master.open(&p.client_secret_sealed)?;
        view.secret = Some(String::from_utf8_lossy(&secret).into_owned());
        view.encryption_key = Some(crypto::base64(&state.master.open(&p.payload_key_sealed)?));
        Ok(view)
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
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = self
            .state
            .db
            .read(|c| products::repo::list_in(c, admin.tenant_scope(), limit, offset))?;
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
        let admin = auth.admin();
        let body = body.0;
        let tenant_id = match &body.tenant_id {
            Some(t) if admin.is_admin_operator() => t.clone(),
            Some(t) if *t == admin.tenant_id => t.clone(),
            Some(_) => {
                return Err(Error::Forbidden(
                    "Only ADMIN operators may create projects in another workspace".into(),
                )
                .into());
            }
            None => admin.tenant_id.clone(),
        };
        products::validate_name(&body.name)?;
        let key_format =
            KeyFormat::parse(body.key_format.as_deref().unwrap_or("XXXX-XXXX-XXXX-XXXX"))?;
        if let Some(slug) = &body.slug {
            tenants::validate_slug(slug).map_err(Error::Invalid)?;
        }
        let settings = products::ProjectSettings {
            description: body.description.clone(),
            server_var: body.server_var.clone(),
            require_encryption: body.require_encryption.unwrap_or(false),
            session_ttl_secs: body.session_ttl_seconds.unwrap_or(300),
            hwid_reset_cooldown_secs: body.hwid_reset_cooldown_seconds.unwrap_or(86_400),
            portal_settings: None,
        };
        products::validate_settings(&settings)?;
        let heartbeat = body
            .heartbeat_interval_seconds
            .map(|interval_secs| HeartbeatPolicy {
                interval_secs,
                grace_secs: body.heartbeat_grace_seconds.unwrap_or(0),
                cull_dead: !body.keep_dead_machines.unwrap_or(false),
            });
        let master = self.state.master.clone();
        let caller = admin.caller();
        let product = self
            .state
            .db
            .write(move |c| {
                tenants::repo::find(c, &tenant_id)?.ok_or(Error::NotFound("workspace"))?;
                let slug = match &body.slug {
                    Some(s) => s.clone(),
                    None => {
                        products::free_slug(c, &tenant_id, &products::slug_from_name(&body.name))?
                    }
                };
                let new = NewProduct {
                    name: body.name.clone(),
                    slug,
                    product_type: body.product_type.unwrap_or(ProductType::Desktop),
                    default_license_type: body
                        .default_license_type
                        .unwrap_or(LicenseType::Perpetual),
                    default_max_activations: body.default_max_activations.unwrap_or(1),
                    key_format,
                    heartbeat,
                };
                let mut product = products::create(c, &master, &tenant_id, new)?;
                product.settings = settings;
                products::repo::update(c, &product)?;
                audit::repo::insert(
                    c,
                    &caller
                        .event(&tenant_id, crate::domain::audit::AuditAction::ProductCreate)
                        .product(&product.id),
                )?;
                Ok(product)
            })
            .await?;
        Ok(CreateProjectResponse::Created(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&product, 0, &self.state)?,
            },
        })))
    }

    /// Project details
    ///
    /// With its key count, its `kv_` secret and its payload encryption key.
    #[oai(path = "/api/projects/:id", method = "get")]
    async fn get(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ProjectResponse> {
        let admin = auth.admin();
        let (product, count) = self.state.db.read(|c| {
            let p = reachable(c, &admin, &id.0)?;
            let n = products::repo::license_count(c, &p.id)?;
            Ok((p, n))
        })?;
        Ok(ProjectResponse::Ok(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&product, count, &self.state)?,
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
        let admin = auth.admin();
        let body = body.0;
        let key_format = body
            .key_format
            .as_deref()
            .map(KeyFormat::parse)
            .transpose()?;
        if let Some(name) = &body.name {
            products::validate_name(name)?;
        }
        let portal_settings = match &body.portal_settings {
            MaybeUndefined::Value(v) if !v.is_object() => {
                return Err(Error::Invalid("portalSettings must be a JSON object".into()).into());
            }
            MaybeUndefined::Value(v) if v.to_string().len() > 64 * 1024 => {
                return Err(Error::Invalid("portalSettings must be at most 64 KiB".into()).into());
            }
            MaybeUndefined::Value(v) => {
                let parsed = portal_users::parse_settings(v)?;
                MaybeUndefined::Value(
                    serde_json::to_string(&parsed).map_err(|e| Error::Storage(e.to_string()))?,
                )
            }
            MaybeUndefined::Null => MaybeUndefined::Null,
            MaybeUndefined::Undefined => MaybeUndefined::Undefined,
        };
        let master = self.state.master.clone();
        let id = id.0;
        let (product, count) = self
            .state
            .db
            .write(move |c| {
                let mut p = reachable(c, &admin, &id)?;
                let before = p.clone();
                if let Some(name) = body.name {
                    p.name = name.trim().to_owned();
                }
                apply(&mut p.settings.description, body.description);
                apply(&mut p.settings.server_var, body.server_var);
                apply(&mut p.settings.portal_settings, portal_settings);
                if let Some(f) = key_format {
                    p.key_format = f;
                }
                if let Some(s) = body.status {
                    p.status = s;
                }
                if let Some(n) = body.default_max_activations {
                    p.default_max_activations = n;
                }
                if let Some(v) = body.require_encryption {
                    p.settings.require_encryption = v;
                }
                if let Some(v) = body.session_ttl_seconds {
                    p.settings.session_ttl_secs = v;
                }
                if let Some(v) = body.hwid_reset_cooldown_seconds {
                    p.settings.hwid_reset_cooldown_secs = v;
                }
                match body.heartbeat_interval_seconds {
                    MaybeUndefined::Null => p.heartbeat = None,
                    MaybeUndefined::Value(interval_secs) => {
                        p.heartbeat = Some(HeartbeatPolicy {
                            interval_secs,
                            grace_secs: p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
                            cull_dead: p.heartbeat.map(|h| h.cull_dead).unwrap_or(true),
                        })
                    }
                    MaybeUndefined::Undefined => {}
                }
                if let Some(h) = p.heartbeat.as_mut() {
                    if let Some(g) = body.heartbeat_grace_seconds {
                        h.grace_secs = g;
                    }
                    if let Some(k) = body.keep_dead_machines {
                        h.cull_dead = !k;
                    }
                }
                products::validate_settings(&p.settings)?;
                let rotated = body.regenerate_secret == Some(true);
                if rotated {
                    let secret = products::new_client_secret();
                    p.client_secret_sha256 = crypto::sha256(secret.as_bytes()).to_vec();
                    p.client_secret_sealed = master.seal(secret.as_bytes())?;
                }
                p.updated_at = now_ms();
                products::repo::update(c, &p)?;
                audit::repo::insert(
                    c,
                    &admin
                        .event(
                            &p.tenant_id,
                            crate::domain::audit::AuditAction::ProductUpdate,
                        )
                        .product(&p.id)
                        .detail(json!({
                            "secretRotated": rotated,
                            "renamed": before.name != p.name,
                            "status": p.status.as_str(),
                        })),
                )?;
                let n = products::repo::license_count(c, &p.id)?;
                Ok((p, n))
            })
            .await?;
        // Validation must see the new settings at once, not when the cached copy ages out.
        self.state.product_cache.forget(&product.id);
        Ok(ProjectResponse::Ok(Json(ProjectOk {
            success: true,
            data: ProjectData {
                project: ProjectView::with_secrets(&product, count, &self.state)?,
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
        let admin = auth.admin();
        let id = id.0;
        self.state.product_cache.forget(&id);
        let confirm = confirm.0;
        let store = self.state.bundles.clone();
        let deleted = self
            .state
            .db
            .write(move |c| {
                let p = reachable(c, &admin, &id)?;
                // Either the slug or the exact name confirms: the person deleting typed it.
                let named = confirm
                    .as_deref()
                    .is_some_and(|c| c == p.slug || c == p.name);
                if !named {
                    return Err(Error::Invalid(format!(
                        "confirm the deletion by naming the project: ?confirm={}",
                        p.slug
                    )));
                }
                let n = products::repo::license_count(c, &p.id)?;
                let bundles = releases::repo::bundles_of_product(c, &p.id)?;
                products::repo::delete(c, &p.id)?;
                // Releases went with the product (cascade); their files go unless another
                // product's release has the same bytes.
                for sha in bundles {
                    if !releases::repo::bundle_in_use(c, &sha)? {
                        store.remove(&sha);
                    }
                }
                audit::repo::insert(
                    c,
                    &admin
                        .event(
                            &p.tenant_id,
                            crate::domain::audit::AuditAction::ProductDelete,
                        )
                        .product(&p.id)
                        .detail(json!({"name": p.name, "slug": p.slug, "deletedKeys": n})),
                )?;
                Ok(n)
            })
            .await?;
        Ok(DeleteProjectResponse::Ok(Json(ProjectDeletedOk {
            success: true,
            data: ProjectDeleted {
                message: "Project deleted".into(),
                deleted_keys: deleted,
            },
        })))
    }
}

fn reachable(c: &rusqlite::Connection, admin: &Admin, id: &str) -> Result<Product, Error> {
    products::repo::find_in(c, admin.tenant_scope(), id)?.ok_or(Error::NotFound("project"))
}

fn apply<T>(field: &mut Option<T>, change: MaybeUndefined<T>) {
    match change {
        MaybeUndefined::Value(v) => *field = Some(v),
        MaybeUndefined::Null => *field = None,
        MaybeUndefined::Undefined => {}
    }
}
