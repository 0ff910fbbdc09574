//! `/api/keys`: license keys as the admin panel manages them (the vendor API calls them
//! licenses; both are the same rows).

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
use crate::domain::activations::Activation;
use crate::domain::licenses::{License, LicenseStatus, Plan};
use crate::domain::{LicenseId, ProductId, ms_to_datetime, now_ms};
use crate::error::Error;
use crate::service::keys;
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
    EntitlementsField = "entitlements",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct GenerateKeysRequest {
    /// DAILY, WEEKLY, MONTHLY, LIFETIME or CUSTOM; the clock starts at first activation.
    #[oai(deserialize_with = "named::<PlanField, _>")]
    pub plan: Plan,
    /// How many keys, 1-50 (default 1).
    #[oai(
        nullable,
        deserialize_with = "named::<CountField, _>",
        validator(minimum(value = "1"), maximum(value = "50"))
    )]
    pub count: Option<u32>,
    /// Concurrent sessions allowed, 1-100 (default 1).
    #[oai(
        nullable,
        deserialize_with = "named::<MaxSessionsField, _>",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    pub max_sessions: Option<u32>,
    /// Required for CUSTOM: 1-3650 days.
    #[oai(
        nullable,
        deserialize_with = "named::<CustomDaysField, _>",
        validator(minimum(value = "1"), maximum(value = "3650"))
    )]
    pub custom_days: Option<u32>,
    #[oai(
        nullable,
        deserialize_with = "named::<NoteField, _>",
        validator(max_length = 500)
    )]
    pub note: Option<String>,
    /// The project; without it, the workspace's "Default" project (created on first use).
    #[oai(
        nullable,
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
    /// Entitlement codes every generated key carries, each one of the project's.
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateKeyRequest {
    /// ACTIVE, EXPIRED, SUSPENDED, BANNED or REVOKED (final).
    #[oai(nullable, deserialize_with = "named::<StatusField, _>")]
    pub status: Option<LicenseStatus>,
    /// Unbind every machine so the key can be used on a new one.
    #[oai(nullable, deserialize_with = "named::<ResetHwidField, _>")]
    pub reset_hwid: Option<bool>,
    #[oai(
        nullable,
        deserialize_with = "named::<MaxSessionsField, _>",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    pub max_sessions: Option<u32>,
    /// null clears it.
    #[oai(
        nullable,
        deserialize_with = "named::<NoteField, _>",
        validator(max_length = 500)
    )]
    pub note: MaybeUndefined<String>,
    /// Replaces the key's entitlement codes (each one of its project's; [] removes all).
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

#[derive(Object, Debug)]
#[oai(rename = "Key", rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub key: String,
    pub project_id: String,
    /// The status as of now (a key past its expiry is EXPIRED).
    pub status: LicenseStatus,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    #[oai(nullable)]
    pub custom_days: Option<u32>,
    /// null until the first activation starts a plan's clock, or for LIFETIME.
    #[oai(nullable)]
    pub expires_at: Option<OffsetDateTime>,
    pub max_sessions: u32,
    pub max_activations: u32,
    /// The first bound machine (HWID), if any.
    #[oai(nullable)]
    pub hwid: Option<String>,
    /// True when the key binds a single machine.
    pub hwid_locked: bool,
    pub activations: u64,
    #[oai(nullable)]
    pub note: Option<String>,
    /// The entitlement codes the key carries.
    pub entitlements: Vec<String>,
    pub created_at: OffsetDateTime,
    /// The customer (`GET /api/customers/{email}` shows all of the address).
    #[oai(nullable)]
    pub customer_email: Option<String>,
    #[oai(nullable)]
    pub customer_name: Option<String>,
    #[oai(nullable)]
    pub order_id: Option<String>,
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
            entitlements: l.entitlements.clone(),
            created_at: ms_to_datetime(l.created_at),
            customer_email: l.customer_email.clone(),
            customer_name: l.customer_name.clone(),
            order_id: l.order_id.clone(),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "KeyActivation", rename_all = "camelCase")]
pub struct ActivationInfo {
    pub hwid: String,
    #[oai(nullable)]
    pub machine_name: Option<String>,
    #[oai(nullable)]
    pub ip: Option<String>,
    pub activated_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

impl ActivationInfo {
    pub fn new(a: &Activation) -> Self {
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
    #[oai(nullable)]
    pub hwid: Option<String>,
    #[oai(nullable)]
    pub ip: Option<String>,
    #[oai(nullable)]
    pub detail: Option<serde_json::Value>,
}

impl LogView {
    pub fn new(e: &keys::LogEntry) -> Self {
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
    #[oai(nullable)]
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
    /// of a key or of a bound HWID, or any part of the note, of the customer's e-mail or name,
    /// or of the order id.
    #[oai(path = "/api/keys", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(name = "projectId")] project_id: Query<Option<String>>,
        status: Query<Option<LicenseStatus>>,
        plan: Query<Option<Plan>>,
        /// Key or HWID prefix, or part of the note, customer e-mail, customer name or order id
        /// (up to 100 characters).
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
        let filter = keys::KeyFilter {
            project: project_id.0.map(ProductId::from),
            status: status.0,
            plan: plan.0,
            text: text.map(str::to_owned),
        };
        let offset = (page as u64 - 1) * limit as u64;
        let (rows, total) = keys::list(&self.state, &admin.ctx, filter, limit, offset).await?;
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
        let order = keys::PlanKeys {
            plan: body.plan,
            count: body.count.unwrap_or(1),
            max_sessions: body.max_sessions.unwrap_or(1),
            custom_days: body.custom_days,
            note: body.note,
            project: body.project_id.map(ProductId::from),
            entitlements: body.entitlements.unwrap_or_default(),
        };
        let issued = keys::issue_plan_keys(&self.state, &admin.ctx, order).await?;
        let now = now_ms();
        Ok(GenerateKeysResponse::Created(Json(GeneratedOk {
            success: true,
            data: GeneratedData {
                keys: issued
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
        let detail = keys::get(&self.state, &admin.ctx, &LicenseId::from(id.0))?;
        Ok(KeyDetailResponse::Ok(Json(detail_view(detail))))
    }

    /// Update a key's status, sessions, note or entitlements, or reset its HWID
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
            && body.entitlements.is_none()
        {
            return Err(Error::Invalid(
                "nothing to change: send status, resetHwid, maxSessions, note or entitlements"
                    .into(),
            )
            .into());
        }
        let changes = keys::KeyChanges {
            status: body.status,
            reset_hwid: body.reset_hwid == Some(true),
            max_sessions: body.max_sessions,
            note: match body.note {
                MaybeUndefined::Value(note) => Some(Some(note)),
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Undefined => None,
            },
            entitlements: body.entitlements,
        };
        let detail = keys::update(&self.state, &admin.ctx, LicenseId::from(id.0), changes).await?;
        Ok(KeyDetailResponse::Ok(Json(detail_view(detail))))
    }

    /// Revoke a key
    ///
    /// The key stops validating for good; it stays listed with its history.
    #[oai(path = "/api/keys/:id", method = "delete")]
    async fn revoke(&self, auth: AdminAuth, id: Path<String>) -> KvResult<KeyDetailResponse> {
        let admin = auth.admin();
        let detail = keys::delete(&self.state, &admin.ctx, LicenseId::from(id.0)).await?;
        Ok(KeyDetailResponse::Ok(Json(detail_view(detail))))
    }
}

fn detail_view(d: keys::KeyDetail) -> KeyDetailOk {
    let now = now_ms();
    let sessions = d
        .sessions
        .into_iter()
        .map(|s| SessionView {
            live: s.last_seen_at >= now - d.session_ttl_ms,
            id: s.id,
            hwid: s.machine_id,
            ip: s.ip,
            started_at: ms_to_datetime(s.created_at),
            last_seen_at: ms_to_datetime(s.last_seen_at),
        })
        .collect();
    let hwid = d.activations.first().map(|a| a.machine_id.clone());
    KeyDetailOk {
        success: true,
        data: KeyDetailData {
            key: KeyView::new(&d.license, d.activations.len() as u64, hwid, now),
            activations: d.activations.iter().map(ActivationInfo::new).collect(),
            sessions,
            logs: d.logs.iter().map(LogView::new).collect(),
        },
    }
}
