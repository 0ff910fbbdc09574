//! `POST /api/telegram`: the bot forwards a key and the PC's HWID; actions `validate`, `info`
//! and `reset_hwid`. The Telegram user goes into the audit trail.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use time::OffsetDateTime;

use super::ClientTags;
use crate::api::ClientIp;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::licenses::{self, LicenseStatus, Plan};
use crate::domain::{ms_to_datetime, now_ms};
use crate::error::Error;
use crate::service::keys;
use crate::service::licensing::{self, KeyClient};
use crate::state::AppState;

pub struct TelegramApi {
    pub state: AppState,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum TelegramAction {
    /// Check key + PC HWID; binds the HWID on first use; returns the key's current nonce
    /// without rotating it.
    Validate,
    /// Key information, read-only; with `hwid`, says whether it matches.
    Info,
    /// Unbind the HWID (needs the project secret; obeys the project's cooldown).
    ResetHwid,
}

crate::field_names!(
    ActionField = "action",
    KeyField = "key",
    HwidField = "hwid",
    SecretField = "secret",
    TelegramIdField = "telegram_id",
    TelegramUsernameField = "telegram_username",
);

#[derive(Object, Debug)]
pub struct TelegramRequest {
    #[oai(deserialize_with = "named::<ActionField, _>")]
    pub action: TelegramAction,
    #[oai(
        deserialize_with = "named::<KeyField, _>",
        validator(min_length = 1, max_length = 100)
    )]
    pub key: String,
    /// The real PC's HWID, from the client.
    #[oai(
        nullable,
        deserialize_with = "named::<HwidField, _>",
        validator(max_length = 255)
    )]
    pub hwid: Option<String>,
    /// The project's `kv_` secret (required for reset_hwid).
    #[oai(
        nullable,
        deserialize_with = "named::<SecretField, _>",
        validator(max_length = 100)
    )]
    pub secret: Option<String>,
    /// For the audit trail.
    #[oai(
        nullable,
        deserialize_with = "named::<TelegramIdField, _>",
        validator(max_length = 64)
    )]
    pub telegram_id: Option<String>,
    #[oai(
        nullable,
        deserialize_with = "named::<TelegramUsernameField, _>",
        validator(max_length = 64)
    )]
    pub telegram_username: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TelegramData {
    pub valid: bool,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    #[oai(nullable)]
    pub custom_days: Option<u32>,
    #[oai(nullable, rename = "expires_at")]
    pub expires_at: Option<OffsetDateTime>,
    /// validate only: the key's current nonce, the one the app presents next (a bot's
    /// validation does not rotate it).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub nonce: Option<String>,
    #[oai(nullable)]
    pub note: Option<String>,
    /// The entitlement codes the key carries.
    pub entitlements: Vec<String>,
    /// info only: the key's status now.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub status: Option<LicenseStatus>,
    /// info only: whether a machine is bound.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub hwid_bound: Option<bool>,
    /// info with `hwid`: whether it is the bound machine.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub hwid_match: Option<bool>,
    /// reset_hwid only: what happened.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub message: Option<String>,
    /// reset_hwid only: when the next reset is allowed.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub next_reset_at: Option<OffsetDateTime>,
}

#[derive(Object, Debug)]
pub struct TelegramOk {
    pub success: bool,
    pub data: TelegramData,
}

#[derive(ApiResponse)]
pub enum TelegramResponse {
    /// The action's result.
    #[oai(status = 200)]
    Ok(Json<TelegramOk>),
}

#[OpenApi(tag = "ClientTags::Telegram")]
impl TelegramApi {
    /// Telegram bot actions
    ///
    /// `validate` (binds the PC HWID on first use, returns the key's current nonce without
    /// rotating it: the app's chain stays intact), `info` (read-only), `reset_hwid` (needs `secret`; at most once per the project's cooldown, else 429 with
    /// Retry-After). Refusals use the same codes as `/api/validate`.
    #[oai(path = "/api/telegram", method = "post")]
    async fn telegram(
        &self,
        req: &Request,
        body: Json<TelegramRequest>,
    ) -> KvResult<TelegramResponse> {
        let body = body.0;
        let client = KeyClient::telegram(
            body.telegram_id.as_deref(),
            body.telegram_username.as_deref(),
            ClientIp::of(req),
        );
        let data = match body.action {
            TelegramAction::Validate => {
                let hwid = body.hwid.filter(|h| !h.is_empty()).ok_or_else(|| {
                    Error::Invalid("field `hwid` is required for validate".into())
                })?;
                // The bot reads on the app's behalf: the app's nonce chain stays intact.
                let v =
                    licensing::telegram_validate(&self.state, &client, body.key, body.secret, hwid)
                        .await?;
                let l = &v.license;
                TelegramData {
                    valid: true,
                    plan: l.plan,
                    custom_days: licensing::custom_days(l),
                    expires_at: l.valid_until.map(ms_to_datetime),
                    nonce: Some(v.nonce),
                    entitlements: v.license.entitlements,
                    note: v.license.note,
                    status: None,
                    hwid_bound: None,
                    hwid_match: None,
                    message: None,
                    next_reset_at: None,
                }
            }
            TelegramAction::Info => {
                let info =
                    licensing::key_info(&self.state, &client, body.key, body.secret, body.hwid)?;
                let l = &info.license;
                TelegramData {
                    valid: l.problem(info.at).is_none(),
                    plan: l.plan,
                    custom_days: licensing::custom_days(l),
                    expires_at: l.valid_until.map(ms_to_datetime),
                    nonce: None,
                    note: l.note.clone(),
                    entitlements: l.entitlements.clone(),
                    status: Some(l.effective_status(info.at)),
                    hwid_bound: Some(info.hwid_bound),
                    hwid_match: info.hwid_match,
                    message: None,
                    next_reset_at: None,
                }
            }
            TelegramAction::ResetHwid => self.reset_hwid(body.key, body.secret, &client).await?,
        };
        Ok(TelegramResponse::Ok(Json(TelegramOk {
            success: true,
            data,
        })))
    }
}

impl TelegramApi {
    async fn reset_hwid(
        &self,
        key: String,
        secret: Option<String>,
        client: &KeyClient,
    ) -> Result<TelegramData, Error> {
        let secret = secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::Invalid(
                "field `secret` (the project's kv_ secret) is required for reset_hwid".into(),
            )
        })?;
        self.state
            .limits
            .per_license_key
            .check(&licenses::normalize_key(&key))?;
        let reset = keys::reset_hwid(&self.state, client, secret, &key).await?;
        let license = reset.license;
        Ok(TelegramData {
            valid: license.problem(now_ms()).is_none(),
            plan: license.plan,
            custom_days: custom_days(&license),
            expires_at: license.valid_until.map(ms_to_datetime),
            nonce: None,
            note: license.note.clone(),
            entitlements: license.entitlements.clone(),
            status: None,
            hwid_bound: Some(false),
            hwid_match: None,
            message: Some("HWID reset: the key can be activated on a new machine".into()),
            next_reset_at: Some(ms_to_datetime(reset.next_reset_at)),
        })
    }
}

fn custom_days(license: &licenses::License) -> Option<u32> {
    (license.plan == Some(Plan::Custom))
        .then_some(license.plan_days)
        .flatten()
}
