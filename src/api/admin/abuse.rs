//! `/api/abuse/*` and `/api/projects/{id}/abuse-policy`: what abuse detection found, the IP
//! blocks in force, and each project's thresholds, automatic actions and webhook.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::domain::abuse::{
    AbuseKind, AbusePolicy, Flag, FlagState, IpBlock, SubjectType, Threshold,
};
use crate::domain::{FlagId, ProductId, ms_to_datetime, now_ms};
use crate::service;
use crate::service::abuse::{FlagQuery, PolicyState};
use crate::state::AppState;

pub struct AbuseApi {
    pub state: AppState,
}

crate::field_names!(StateField = "state");

#[derive(Object, Debug)]
#[oai(rename = "AbuseFlag", rename_all = "camelCase")]
pub struct FlagView {
    pub id: String,
    /// The project whose policy applied; null when the requests could not be tied to one.
    #[oai(nullable)]
    pub project_id: Option<String>,
    pub kind: AbuseKind,
    pub subject_type: SubjectType,
    /// The license id, address, CIDR range or API key id the flag is about.
    pub subject: String,
    #[oai(nullable)]
    pub key_id: Option<String>,
    pub state: FlagState,
    /// How many times the threshold was crossed while the flag was open.
    pub occurrences: u64,
    /// Counts, addresses, HWIDs, machine names and the window, as of the last crossing.
    pub evidence: Value,
    /// Automatic actions taken (LICENSE_SUSPENDED, IP_BLOCKED).
    pub actions: Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    #[oai(nullable)]
    pub resolved_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub resolved_by: Option<String>,
}

impl FlagView {
    fn new(f: &Flag) -> Self {
        let parse = |t: &str| serde_json::from_str(t).unwrap_or(Value::Null);
        Self {
            id: f.id.clone(),
            project_id: f.product_id.clone(),
            kind: f.kind,
            subject_type: f.subject_type,
            subject: f.subject.clone(),
            key_id: f.license_id.clone(),
            state: f.state,
            occurrences: f.occurrences,
            evidence: parse(&f.evidence),
            actions: parse(&f.actions),
            created_at: ms_to_datetime(f.created_at),
            updated_at: ms_to_datetime(f.updated_at),
            resolved_at: f.resolved_at.map(ms_to_datetime),
            resolved_by: f.resolved_by.clone(),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "IpBlock", rename_all = "camelCase")]
pub struct BlockView {
    pub id: String,
    #[oai(nullable)]
    pub project_id: Option<String>,
    #[oai(nullable)]
    pub flag_id: Option<String>,
    /// An address, or a /24 or /64 range in CIDR notation.
    pub target: String,
    #[oai(nullable)]
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    #[oai(nullable)]
    pub lifted_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub lifted_by: Option<String>,
    /// In force now (not lifted, not expired).
    pub active: bool,
}

impl BlockView {
    fn new(b: &IpBlock, now: i64) -> Self {
        Self {
            id: b.id.clone(),
            project_id: b.product_id.clone(),
            flag_id: b.flag_id.clone(),
            target: b.target(),
            reason: b.reason.clone(),
            created_at: ms_to_datetime(b.created_at),
            expires_at: ms_to_datetime(b.expires_at),
            lifted_at: b.lifted_at.map(ms_to_datetime),
            lifted_by: b.lifted_by.clone(),
            active: b.active(now),
        }
    }
}

#[derive(Object, Debug)]
pub struct FlagsData {
    pub flags: Vec<FlagView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct FlagsOk {
    pub success: bool,
    pub data: FlagsData,
}

#[derive(Object, Debug)]
pub struct FlagOk {
    pub success: bool,
    pub data: FlagView,
}

#[derive(Object, Debug)]
pub struct BlocksData {
    pub blocks: Vec<BlockView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct BlocksOk {
    pub success: bool,
    pub data: BlocksData,
}

#[derive(Object, Debug)]
pub struct BlockOk {
    pub success: bool,
    pub data: BlockView,
}

#[derive(Object, Debug)]
pub struct UpdateFlagRequest {
    /// RESOLVED (handled; automatic actions stay), DISMISSED (a false positive: its blocks are
    /// lifted and the license it suspended is active again) or OPEN.
    #[oai(deserialize_with = "named::<StateField, _>")]
    pub state: FlagState,
}

/// The thresholds, actions and webhook of a project.
#[derive(Object, Debug)]
#[oai(rename = "AbusePolicy", rename_all = "camelCase")]
pub struct PolicyView {
    pub enabled: bool,
    pub key_guessing_per_ip: Threshold,
    pub key_guessing_per_network: Threshold,
    pub sharing_ips: Threshold,
    pub sharing_hwids: Threshold,
    pub sharing_machine_names: Threshold,
    pub activation_churn: Threshold,
    pub hwid_resets: Threshold,
    pub session_ips: Threshold,
    pub seat_pressure: Threshold,
    pub rate_limit_hits: Threshold,
    pub suspend_license: bool,
    pub block_ip: bool,
    pub block_secs: u32,
    #[oai(nullable)]
    pub webhook_url: Option<String>,
    /// Whether a webhook secret exists (it is only shown when generated).
    pub webhook_secret_set: bool,
    /// The new webhook secret: present only in the answer that generated it. Receivers check
    /// `X-Keyward-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub webhook_secret: Option<String>,
}

impl PolicyView {
    fn new(found: PolicyState) -> Self {
        let p = found.policy;
        Self {
            enabled: p.enabled,
            key_guessing_per_ip: p.key_guessing_per_ip,
            key_guessing_per_network: p.key_guessing_per_network,
            sharing_ips: p.sharing_ips,
            sharing_hwids: p.sharing_hwids,
            sharing_machine_names: p.sharing_machine_names,
            activation_churn: p.activation_churn,
            hwid_resets: p.hwid_resets,
            session_ips: p.session_ips,
            seat_pressure: p.seat_pressure,
            rate_limit_hits: p.rate_limit_hits,
            suspend_license: p.suspend_license,
            block_ip: p.block_ip,
            block_secs: p.block_secs,
            webhook_url: p.webhook_url,
            webhook_secret_set: found.webhook_secret_set,
            webhook_secret: found.new_webhook_secret,
        }
    }
}

/// A threshold change: either part may be left out.
#[derive(Object, Debug, Clone, Copy)]
#[oai(rename = "ThresholdPatch", rename_all = "camelCase")]
pub struct ThresholdPatch {
    #[oai(nullable)]
    pub count: Option<u32>,
    #[oai(nullable)]
    pub window_secs: Option<u32>,
}

fn patch_threshold(t: &mut Threshold, p: Option<ThresholdPatch>) {
    if let Some(p) = p {
        t.count = p.count.unwrap_or(t.count);
        t.window_secs = p.window_secs.unwrap_or(t.window_secs);
    }
}

/// Fields left out keep their value.
#[derive(Object, Debug)]
#[oai(rename = "AbusePolicyPatch", rename_all = "camelCase")]
pub struct PolicyPatch {
    #[oai(nullable)]
    pub enabled: Option<bool>,
    #[oai(nullable)]
    pub key_guessing_per_ip: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub key_guessing_per_network: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub sharing_ips: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub sharing_hwids: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub sharing_machine_names: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub activation_churn: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub hwid_resets: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub session_ips: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub seat_pressure: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub rate_limit_hits: Option<ThresholdPatch>,
    #[oai(nullable)]
    pub suspend_license: Option<bool>,
    #[oai(nullable)]
    pub block_ip: Option<bool>,
    #[oai(nullable)]
    pub block_secs: Option<u32>,
    /// An http:// URL; null removes the webhook (and its secret).
    #[oai(nullable, validator(max_length = 2048))]
    pub webhook_url: MaybeUndefined<String>,
    /// Generate a new webhook secret (shown once in the answer).
    #[oai(nullable)]
    pub rotate_webhook_secret: Option<bool>,
}

#[derive(Object, Debug)]
pub struct PolicyOk {
    pub success: bool,
    pub data: PolicyView,
}

#[derive(ApiResponse)]
pub enum FlagsResponse {
    /// Matching flags, most recently updated first.
    #[oai(status = 200)]
    Ok(Json<FlagsOk>),
}

#[derive(ApiResponse)]
pub enum FlagResponse {
    /// The flag with its evidence.
    #[oai(status = 200)]
    Ok(Json<FlagOk>),
}

#[derive(ApiResponse)]
pub enum BlocksResponse {
    /// IP blocks, newest first.
    #[oai(status = 200)]
    Ok(Json<BlocksOk>),
}

#[derive(ApiResponse)]
pub enum BlockResponse {
    /// The block as it is now.
    #[oai(status = 200)]
    Ok(Json<BlockOk>),
}

#[derive(ApiResponse)]
pub enum PolicyResponse {
    /// The project's abuse policy (defaults for what was never set).
    #[oai(status = 200)]
    Ok(Json<PolicyOk>),
}

#[OpenApi(tag = "AdminTags::Abuse")]
impl AbuseApi {
    /// List abuse flags
    ///
    /// Paginated; filter by project, kind and state.
    #[oai(path = "/api/abuse/flags", method = "get")]
    async fn list_flags(
        &self,
        auth: AdminAuth,
        #[oai(name = "projectId")] project_id: Query<Option<String>>,
        kind: Query<Option<AbuseKind>>,
        state: Query<Option<FlagState>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<FlagsResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let query = FlagQuery {
            product_id: project_id.0.map(ProductId::from),
            kind: kind.0,
            state: state.0,
        };
        let offset = (page as u64 - 1) * limit as u64;
        let (flags, total) =
            service::abuse::list_flags(&self.state, &admin.ctx, query, limit, offset).await?;
        Ok(FlagsResponse::Ok(Json(FlagsOk {
            success: true,
            data: FlagsData {
                flags: flags.iter().map(FlagView::new).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// An abuse flag with its evidence
    #[oai(path = "/api/abuse/flags/:id", method = "get")]
    async fn get_flag(&self, auth: AdminAuth, id: Path<String>) -> KvResult<FlagResponse> {
        let admin = auth.admin();
        let flag = service::abuse::get_flag(&self.state, &admin.ctx, &FlagId::from(id.0))?;
        Ok(FlagResponse::Ok(Json(FlagOk {
            success: true,
            data: FlagView::new(&flag),
        })))
    }

    /// Resolve, dismiss or reopen a flag
    ///
    /// DISMISSED undoes the flag's automatic actions (lifts its IP blocks, reactivates the
    /// license it suspended); RESOLVED keeps them. Audited.
    #[oai(path = "/api/abuse/flags/:id", method = "patch")]
    async fn update_flag(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateFlagRequest>,
    ) -> KvResult<FlagResponse> {
        let admin = auth.admin();
        let flag =
            service::abuse::update_flag(&self.state, &admin.ctx, FlagId::from(id.0), body.0.state)
                .await?;
        Ok(FlagResponse::Ok(Json(FlagOk {
            success: true,
            data: FlagView::new(&flag),
        })))
    }

    /// List IP blocks
    ///
    /// Newest first; `active=true` keeps only blocks in force. Blocked addresses get 403
    /// `IP_BLOCKED` on licensing and client endpoints (never on the admin API).
    #[oai(path = "/api/abuse/blocks", method = "get")]
    async fn list_blocks(
        &self,
        auth: AdminAuth,
        active: Query<Option<bool>>,
        page: Query<Option<u32>>,
        limit: Query<Option<u32>>,
    ) -> KvResult<BlocksResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let now = now_ms();
        let offset = (page as u64 - 1) * limit as u64;
        let (blocks, total) = service::abuse::list_blocks(
            &self.state,
            &admin.ctx,
            active.0.unwrap_or(false),
            limit,
            offset,
        )
        .await?;
        Ok(BlocksResponse::Ok(Json(BlocksOk {
            success: true,
            data: BlocksData {
                blocks: blocks.iter().map(|b| BlockView::new(b, now)).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Lift an IP block
    ///
    /// The address is served again at once. Lifting a lifted block changes nothing. Audited.
    #[oai(path = "/api/abuse/blocks/:id", method = "delete")]
    async fn lift_block(&self, auth: AdminAuth, id: Path<String>) -> KvResult<BlockResponse> {
        let admin = auth.admin();
        let block = service::abuse::lift_block(&self.state, &admin.ctx, id.0).await?;
        Ok(BlockResponse::Ok(Json(BlockOk {
            success: true,
            data: BlockView::new(&block, now_ms()),
        })))
    }

    /// A project's abuse policy
    ///
    /// Thresholds (count within windowSecs), automatic actions and webhook; what was never set
    /// shows its default.
    #[oai(
        path = "/api/projects/:id/abuse-policy",
        method = "get",
        tag = "AdminTags::Projects"
    )]
    async fn get_policy(&self, auth: AdminAuth, id: Path<String>) -> KvResult<PolicyResponse> {
        let admin = auth.admin();
        let found = service::abuse::policy(&self.state, &admin.ctx, &ProductId::from(id.0))?;
        Ok(PolicyResponse::Ok(Json(PolicyOk {
            success: true,
            data: PolicyView::new(found),
        })))
    }

    /// Change a project's abuse policy
    ///
    /// Fields left out keep their value. Setting a webhook URL for the first time, or
    /// `rotateWebhookSecret: true`, generates the webhook secret, shown once in this answer.
    /// Applies at once. Audited.
    #[oai(
        path = "/api/projects/:id/abuse-policy",
        method = "patch",
        tag = "AdminTags::Projects"
    )]
    async fn update_policy(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<PolicyPatch>,
    ) -> KvResult<PolicyResponse> {
        let admin = auth.admin();
        let patch = body.0;
        let rotate = patch.rotate_webhook_secret == Some(true);
        let changed = service::abuse::update_policy(
            &self.state,
            &admin.ctx,
            ProductId::from(id.0),
            move |policy| apply_patch(policy, &patch),
            rotate,
        )
        .await?;
        Ok(PolicyResponse::Ok(Json(PolicyOk {
            success: true,
            data: PolicyView::new(changed),
        })))
    }
}

fn apply_patch(policy: &mut AbusePolicy, p: &PolicyPatch) {
    if let Some(v) = p.enabled {
        policy.enabled = v;
    }
    patch_threshold(&mut policy.key_guessing_per_ip, p.key_guessing_per_ip);
    patch_threshold(
        &mut policy.key_guessing_per_network,
        p.key_guessing_per_network,
    );
    patch_threshold(&mut policy.sharing_ips, p.sharing_ips);
    patch_threshold(&mut policy.sharing_hwids, p.sharing_hwids);
    patch_threshold(&mut policy.sharing_machine_names, p.sharing_machine_names);
    patch_threshold(&mut policy.activation_churn, p.activation_churn);
    patch_threshold(&mut policy.hwid_resets, p.hwid_resets);
    patch_threshold(&mut policy.session_ips, p.session_ips);
    patch_threshold(&mut policy.seat_pressure, p.seat_pressure);
    patch_threshold(&mut policy.rate_limit_hits, p.rate_limit_hits);
    if let Some(v) = p.suspend_license {
        policy.suspend_license = v;
    }
    if let Some(v) = p.block_ip {
        policy.block_ip = v;
    }
    if let Some(v) = p.block_secs {
        policy.block_secs = v;
    }
    match &p.webhook_url {
        MaybeUndefined::Value(url) => policy.webhook_url = Some(url.trim().to_owned()),
        MaybeUndefined::Null => policy.webhook_url = None,
        MaybeUndefined::Undefined => {}
    }
}
