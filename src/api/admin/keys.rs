//! `/api/keys`: license keys as the admin panel manages them (the vendor API calls them
//! licenses; both are the same rows).

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
use crate::crypto::MasterKey;
use crate::domain::activations::{self, Activation};
use crate::domain::audit;
use crate::domain::licenses::{
    self, License, LicenseStatus, LicenseTier, LicenseType, NewLicense, Plan,
};
use crate::domain::products::{self, KeyFormat, NewProduct, Product, ProductType};
use crate::domain::{ms_to_datetime, now_ms, sessions};
use crate::error::Error;
use crate::state::AppState;

pub struct KeysApi {
    pub state: AppState,
}

crate::field_names!(
    PlanField = "plan",
    CountField = "count",
    MaxSessionsField = "maxSessions",
    CustomDaysField = "customDays",
    NoteField = "note",
    ProjectIdField = "projectId",
    StatusField = "status",
    ResetHwidField = "resetHwid",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct GenerateKeysRequest {
    /// DAILY, WEEKLY, MONTHLY, LIFETIME or CUSTOM; the clock starts at first activation.
    #[oai(deserialize_with = "named::<PlanField, _>")]
    pub plan: Plan,
    /// How many keys, 1-50 (default 1).
    #[oai(
        deserialize_with = "named::<CountField, _>",
        validator(minimum(value = "1"), maximum(value = "50"))
    )]
    pub count: Option<u32>,
    /// Concurrent sessions allowed, 1-100 (default 1).
    #[oai(
        deserialize_with = "named::<MaxSessionsField, _>",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    pub max_sessions: Option<u32>,
    /// Required for CUSTOM: 1-3650 days.
    #[oai(
        deserialize_with = "named::<CustomDaysField, _>",
        validator(minimum(value = "1"), maximum(value = "3650"))
    )]
    pub custom_days: Option<u32>,
    #[oai(
        deserialize_with = "named::<NoteField, _>",
        validator(max_length = 500)
    )]
    pub note: Option<String>,
    /// The project; without it, the workspace's "Default" project (created on first use).
    #[oai(
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateKeyRequest {
    /// ACTIVE, EXPIRED, SUSPENDED, BANNED or REVOKED (final).
    #[oai(deserialize_with = "named::<StatusField, _>")]
    pub status: Option<LicenseStatus>,
    /// Unbind every machine so the key can be used on a new one.
    #[oai(deserialize_with = "named::<ResetHwidField, _>")]
    pub reset_hwid: Option<bool>,
    #[oai(
        deserialize_with = "named::<MaxSessionsField, _>",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    pub max_sessions: Option<u32>,
    /// null clears it.
    #[oai(
        deserialize_with = "named::<NoteField, _>",
        validator(max_length = 500)
    )]
    pub note: MaybeUndefined<String>,
}

#[derive(Object, Debug)]
#[oai(rename = "Key", rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub key: String,
    pub project_id: String,
    /// The status as of now (a key past its expiry is EXPIRED).
    pub status: LicenseStatus,
    pub plan: Option<Plan>,
    pub custom_days: Option<u32>,
    /// null until the first activation starts a plan's clock, or for LIFETIME.
    pub expires_at: Option<OffsetDateTime>,
    pub max_sessions: u32,
    pub max_activations: u32,
    /// The first bound machine (HWID), if any.
    pub hwid: Option<String>,
    /// True when the key binds a single machine.
    pub hwid_locked: bool,
    pub activations: u64,
    pub note: Option<String>,
    pub created_at: OffsetDateTime,
}

impl KeyView {
    pub fn new(l: &License, activation_count: u64, hwid: Option<String>, now: i64) -> Self {
        Self {
            id: l.id.clone(),
            key: l.key.clone(),
            project_id: l.product_id.clone(),
            status: l.effective_status(now),
            plan: l.plan,
            custom_days: if l.plan == Some(Plan::Custom) {
                l.plan_days
            } else {
                None
            },
            expires_at: l.valid_until.map(ms_to_datetime),
            max_sessions: l.max_sessions.unwrap_or(1),
            max_activations: l.max_activations,
            hwid,
            hwid_locked: l.max_activations == 1,
            activations: activation_count,
            note: l.note.clone(),
            created_at: ms_to_datetime(l.created_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "KeyActivation", rename_all = "camelCase")]
pub struct ActivationInfo {
    pub hwid: String,
    pub machine_name: Option<String>,
    pub ip: Option<String>,
    pub activated_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

impl ActivationInfo {
    fn new(a: &Activation) -> Self {
        Self {
            hwid: a.machine_id.clone(),
            machine_name: a.machine_name.clone(),
            ip: a.ip.clone(),
            activated_at: ms_to_datetime(a.activated_at),
            last_seen_at: ms_to_datetime(a.last_seen_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "Log", rename_all = "camelCase")]
pub struct LogView {
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub hwid: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl LogView {
    pub fn new(e: &audit::AuditEvent) -> Self {
        Self {
            at: ms_to_datetime(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            hwid: e.machine_id.clone(),
            ip: e.ip.clone(),
            detail: e
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "KeySession", rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub hwid: String,
    pub ip: Option<String>,
    pub started_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// False once the project's session TTL has passed without a refresh.
    pub live: bool,
}

#[derive(Object, Debug)]
pub struct KeysData {
    pub keys: Vec<KeyView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct KeysOk {
    pub success: bool,
    pub data: KeysData,
}

#[derive(Object, Debug)]
pub struct GeneratedData {
    pub keys: Vec<KeyView>,
}

#[derive(Object, Debug)]
pub struct GeneratedOk {
    pub success: bool,
    pub data: GeneratedData,
}

#[derive(Object, Debug)]
pub struct KeyDetailData {
    pub key: KeyView,
    pub activations: Vec<ActivationInfo>,
    pub sessions: Vec<SessionView>,
    /// The 50 most recent log entries of this key, newest first.
    pub logs: Vec<LogView>,
}

#[derive(Object, Debug)]
pub struct KeyDetailOk {
    pub success: bool,
    pub data: KeyDetailData,
}

#[derive(ApiResponse)]
pub enum ListKeysResponse {
    /// Matching keys, newest first.
    #[oai(status = 200)]
    Ok(Json<KeysOk>),
}

#[derive(ApiResponse)]
pub enum GenerateKeysResponse {
    /// The new keys.
    #[oai(status = 201)]
    Created(Json<GeneratedOk>),
}

#[derive(ApiResponse)]
pub enum KeyDetailResponse {
    /// The key with its machines and recent logs.
    #[oai(status = 200)]
    Ok(Json<KeyDetailOk>),
}

#[OpenApi(tag = "AdminTags::Keys")]
impl KeysApi {
    /// List keys
    ///
    /// Paginated, newest first; filter by project, status and plan; `search` matches the start
    /// of a key or of a bound HWID, or any part of the note.
    #[oai(path = "/api/keys", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(name = "projectId")] project_id: Query<Option<String>>,
        status: Query<Option<LicenseStatus>>,
        plan: Query<Option<Plan>>,
        /// Key or HWID prefix, or part of the note (2-100 characters).
        search: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<ListKeysResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let text = search.0.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if text.is_some_and(|t| t.len() > 100) {
            return Err(Error::Invalid("search must be at most 100 characters".into()).into());
        }
        let scope = admin.tenant_scope().map(str::to_owned);
        let product = project_id.0;
        let text = text.map(str::to_owned);
        let (status, plan) = (status.0, plan.0);
        let offset = (page as u64 - 1) * limit as u64;
        // A search may scan many rows: keep it off the async workers.
        let (rows, total) = self
            .state
            .db
            .read_blocking(move |c| {
                let filters = licenses::repo::Search {
                    tenant_scope: scope.as_deref(),
                    product_id: product.as_deref(),
                    status,
                    plan,
                    text: text.as_deref(),
                };
                licenses::repo::search(c, &filters, limit, offset)
            })
            .await?;
        let now = now_ms();
        Ok(ListKeysResponse::Ok(Json(KeysOk {
            success: true,
            data: KeysData {
                keys: rows
                    .into_iter()
                    .map(|r| KeyView::new(&r.license, r.activation_count, r.first_machine, now))
                    .collect(),
                pagination: Pagination::counted(page, limit, total),
            },
        })))
    }

    /// Generate keys
    ///
    /// 1-50 keys of one plan. A plan's clock starts at the key's first activation. Keys are
    /// HWID locked (one machine) unless the project allows more.
    #[oai(path = "/api/keys", method = "post")]
    async fn generate(
        &self,
        auth: AdminAuth,
        body: Json<GenerateKeysRequest>,
    ) -> KvResult<GenerateKeysResponse> {
        let admin = auth.admin();
        let body = body.0;
        let plan_days = match (body.plan, body.custom_days) {
            (Plan::Custom, None) => {
                return Err(Error::Invalid(
                    "customDays (1-3650) is required for plan CUSTOM".into(),
                )
                .into());
            }
            (Plan::Custom, Some(d)) => Some(d),
            (plan, _) => licenses::plan_days(plan, None),
        };
        let count = body.count.unwrap_or(1);
        let master = self.state.master.clone();
        let (created, now) = self
            .state
            .db
            .write(move |c| {
                let product = match &body.project_id {
                    Some(id) => products::repo::find_in(c, admin.tenant_scope(), id)?
                        .ok_or(Error::NotFound("project"))?,
                    None => default_project(c, &master, &admin)?,
                };
                let new = NewLicense {
                    license_type: if body.plan == Plan::Lifetime {
                        LicenseType::Perpetual
                    } else {
                        LicenseType::Subscription
                    },
                    tier: LicenseTier::Personal,
                    max_activations: product.default_max_activations,
                    max_sessions: Some(body.max_sessions.unwrap_or(1)),
                    valid_until: None,
                    plan: Some(body.plan),
                    plan_days,
                    customer_email: None,
                    customer_name: None,
                    order_id: None,
                    metadata: None,
                    note: body.note.clone(),
                };
                let mut created = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let license = licenses::create(c, &product, &new)?;
                    audit::repo::insert(
                        c,
                        &admin
                            .event(
                                &product.tenant_id,
                                crate::domain::audit::AuditAction::LicenseCreate,
                            )
                            .license(&product.id, &license.id)
                            .detail(json!({"plan": body.plan.as_str()})),
                    )?;
                    created.push(license);
                }
                Ok((created, now_ms()))
            })
            .await?;
        Ok(GenerateKeysResponse::Created(Json(GeneratedOk {
            success: true,
            data: GeneratedData {
                keys: created
                    .iter()
                    .map(|l| KeyView::new(l, 0, None, now))
                    .collect(),
            },
        })))
    }

    /// Key details with its machines and recent logs
    #[oai(path = "/api/keys/:id", method = "get")]
    async fn get(&self, auth: AdminAuth, id: Path<String>) -> KvResult<KeyDetailResponse> {
        let admin = auth.admin();
        let detail = self.state.db.read(|c| key_detail(c, &admin, &id.0))?;
        Ok(KeyDetailResponse::Ok(Json(detail)))
    }

    /// Update a key's status, sessions or note, or reset its HWID
    ///
    /// REVOKED is final: a revoked key cannot be changed back.
    #[oai(path = "/api/keys/:id", method = "patch")]
    async fn update(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateKeyRequest>,
    ) -> KvResult<KeyDetailResponse> {
        let admin = auth.admin();
        let body = body.0;
        if body.status.is_none()
            && body.reset_hwid.is_none()
            && body.max_sessions.is_none()
            && body.note.is_undefined()
        {
            return Err(Error::Invalid(
                "nothing to change: send status, resetHwid, maxSessions or note".into(),
            )
            .into());
        }
        let id = id.0;
        let detail = self
            .state
            .db
            .write(move |c| {
                let license = reachable(c, &admin, &id)?;
                let now = now_ms();
                let mut changes = serde_json::Map::new();
                if let Some(status) = body.status
                    && status != license.status
                {
                    if license.status == LicenseStatus::Revoked {
                        return Err(Error::Invalid("a revoked key stays revoked".into()));
                    }
                    licenses::repo::set_status(c, &license.id, status, now)?;
                    changes.insert("status".into(), json!(status.as_str()));
                }
                if body.reset_hwid == Some(true) {
                    let n = activations::repo::delete_all(c, &license.id)?;
                    sessions::repo::delete_for_license(c, &license.id)?;
                    licenses::repo::set_hwid_reset_at(c, &license.id, now)?;
                    changes.insert("hwidReset".into(), json!(n));
                }
                if let Some(n) = body.max_sessions {
                    licenses::repo::set_max_sessions(c, &license.id, n, now)?;
                    changes.insert("maxSessions".into(), json!(n));
                }
                match &body.note {
                    MaybeUndefined::Value(note) => {
                        licenses::repo::set_note(c, &license.id, Some(note), now)?;
                        changes.insert("note".into(), json!(true));
                    }
                    MaybeUndefined::Null => {
                        licenses::repo::set_note(c, &license.id, None, now)?;
                        changes.insert("note".into(), json!(null));
                    }
                    MaybeUndefined::Undefined => {}
                }
                audit::repo::insert(
                    c,
                    &admin
                        .event(
                            &license.tenant_id,
                            crate::domain::audit::AuditAction::LicenseUpdate,
                        )
                        .license(&license.product_id, &license.id)
                        .detail(serde_json::Value::Object(changes)),
                )?;
                key_detail(c, &admin, &license.id)
            })
            .await?;
        Ok(KeyDetailResponse::Ok(Json(detail)))
    }

    /// Revoke a key
    ///
    /// The key stops validating for good; it stays listed with its history.
    #[oai(path = "/api/keys/:id", method = "delete")]
    async fn revoke(&self, auth: AdminAuth, id: Path<String>) -> KvResult<KeyDetailResponse> {
        let admin = auth.admin();
        let id = id.0;
        let detail = self
            .state
            .db
            .write(move |c| {
                let license = reachable(c, &admin, &id)?;
                if license.status != LicenseStatus::Revoked {
                    licenses::revoke(c, &license, Some("revoked from the admin panel"))?;
                    audit::repo::insert(
                        c,
                        &admin
                            .event(
                                &license.tenant_id,
                                crate::domain::audit::AuditAction::LicenseRevoke,
                            )
                            .license(&license.product_id, &license.id),
                    )?;
                }
                key_detail(c, &admin, &license.id)
            })
            .await?;
        Ok(KeyDetailResponse::Ok(Json(detail)))
    }
}

fn reachable(c: &rusqlite::Connection, admin: &Admin, id: &str) -> Result<License, Error> {
    licenses::repo::find_in(c, admin.tenant_scope(), id)?.ok_or(Error::NotFound("key"))
}

fn key_detail(c: &rusqlite::Connection, admin: &Admin, id: &str) -> Result<KeyDetailOk, Error> {
    let license = reachable(c, admin, id)?;
    let machines = activations::repo::for_license(c, &license.id)?;
    let logs = audit::repo::for_license(c, &license.tenant_id, &license.id, 50)?;
    let ttl_ms = products::repo::find(c, &license.tenant_id, &license.product_id)?
        .map(|p| p.settings.session_ttl_secs as i64 * 1000)
        .unwrap_or(0);
    let now = now_ms();
    let sessions = sessions::repo::for_license(c, &license.id)?
        .into_iter()
        .map(|s| SessionView {
            live: s.last_seen_at >= now - ttl_ms,
            id: s.id,
            hwid: s.machine_id,
            ip: s.ip,
            started_at: ms_to_datetime(s.created_at),
            last_seen_at: ms_to_datetime(s.last_seen_at),
        })
        .collect();
    let hwid = machines.first().map(|a| a.machine_id.clone());
    Ok(KeyDetailOk {
        success: true,
        data: KeyDetailData {
            key: KeyView::new(&license, machines.len() as u64, hwid, now_ms()),
            activations: machines.iter().map(ActivationInfo::new).collect(),
            sessions,
            logs: logs.iter().map(LogView::new).collect(),
        },
    })
}

/// The caller's workspace's "Default" project, created on first use, for keys generated
/// without a project.
fn default_project(
    c: &rusqlite::Connection,
    master: &MasterKey,
    admin: &Admin,
) -> Result<Product, Error> {
    if let Some(p) = products::repo::find_by_slug(c, &admin.tenant_id, "default")? {
        return Ok(p);
    }
    let product = products::create(
        c,
        master,
        &admin.tenant_id,
        NewProduct {
            name: "Default".into(),
            slug: "default".into(),
            product_type: ProductType::Desktop,
            default_license_type: LicenseType::Subscription,
            default_max_activations: 1,
            key_format: KeyFormat::parse("XXXX-XXXX-XXXX-XXXX")?,
            heartbeat: None,
        },
    )?;
    audit::repo::insert(
        c,
        &admin
            .event(
                &admin.tenant_id,
                crate::domain::audit::AuditAction::ProductCreate,
            )
            .product(&product.id),
    )?;
    Ok(product)
}
