//! `/api/mail/*`: the workspace's SMTP settings, its test message and its outbox; and the key
//! page's "E-mail the key to the customer" (`POST /api/keys/{id}/send`).

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
use crate::domain::mail::{MailKind, OutboxMessage, OutboxStatus, SmtpSecurity};
use crate::domain::ms_to_datetime;
use crate::service::mail::{outbox, settings};
use crate::state::AppState;

pub struct MailApi {
    pub state: AppState,
}

crate::field_names!(
    HostField = "host",
    PortField = "port",
    SecurityField = "security",
    UsernameField = "username",
    PasswordField = "password",
    FromAddressField = "fromAddress",
    FromNameField = "fromName",
    PublicUrlField = "publicUrl",
    ToField = "to",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MailSettingsRequest {
    /// The SMTP server's host name or IP address.
    #[oai(
        deserialize_with = "named::<HostField, _>",
        validator(min_length = 1, max_length = 253)
    )]
    pub host: String,
    /// 1-65535: usually 587 (starttls) or 465 (tls).
    #[oai(
        deserialize_with = "named::<PortField, _>",
        validator(minimum(value = "1"), maximum(value = "65535"))
    )]
    pub port: u16,
    /// starttls, tls (implicit TLS) or none (only with --smtp-allow-plaintext, to a loopback
    /// or private address).
    #[oai(deserialize_with = "named::<SecurityField, _>")]
    pub security: SmtpSecurity,
    /// SMTP user name; null or absent: no authentication.
    #[oai(
        nullable,
        deserialize_with = "named::<UsernameField, _>",
        validator(max_length = 255)
    )]
    pub username: Option<String>,
    /// Absent: keep the stored password; null: remove it; a string: replace it. Sealed with
    /// the master key and never returned.
    #[oai(
        nullable,
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 1024)
    )]
    pub password: MaybeUndefined<String>,
    /// The sender address of every message.
    #[oai(
        deserialize_with = "named::<FromAddressField, _>",
        validator(min_length = 1, max_length = 254)
    )]
    pub from_address: String,
    /// The sender's display name (e.g. the vendor's name).
    #[oai(
        nullable,
        deserialize_with = "named::<FromNameField, _>",
        validator(max_length = 100)
    )]
    pub from_name: Option<String>,
    /// Where links in messages point (the portal's public address), e.g.
    /// https://licenses.example.com; absent: the server's --public-url.
    #[oai(
        nullable,
        deserialize_with = "named::<PublicUrlField, _>",
        validator(max_length = 200)
    )]
    pub public_url: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename = "MailSettings", rename_all = "camelCase")]
pub struct MailSettingsView {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    #[oai(nullable)]
    pub username: Option<String>,
    /// True when a password is stored (it is never shown).
    pub password_set: bool,
    pub from_address: String,
    #[oai(nullable)]
    pub from_name: Option<String>,
    #[oai(nullable)]
    pub public_url: Option<String>,
    pub updated_at: OffsetDateTime,
}

impl MailSettingsView {
    fn new(s: settings::SettingsView) -> Self {
        Self {
            host: s.host,
            port: s.port,
            security: s.security,
            username: s.username,
            password_set: s.password_set,
            from_address: s.from_address,
            from_name: s.from_name,
            public_url: s.public_url,
            updated_at: ms_to_datetime(s.updated_at),
        }
    }
}

#[derive(Object, Debug)]
pub struct MailSettingsOk {
    pub success: bool,
    /// null until settings are saved.
    #[oai(nullable)]
    pub data: Option<MailSettingsView>,
}

#[derive(Object, Debug)]
pub struct MailDoneOk {
    pub success: bool,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TestMailRequest {
    /// Who gets the test message.
    #[oai(
        deserialize_with = "named::<ToField, _>",
        validator(min_length = 1, max_length = 254)
    )]
    pub to: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct QueuedData {
    /// The message in the outbox (`GET /api/mail/outbox`).
    pub message_id: String,
}

#[derive(Object, Debug)]
pub struct QueuedOk {
    pub success: bool,
    pub data: QueuedData,
}

#[derive(Object, Debug)]
#[oai(rename = "OutboxMessage", rename_all = "camelCase")]
pub struct OutboxMessageView {
    pub id: String,
    pub kind: MailKind,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// PENDING (waiting for an attempt), SENT (the SMTP server accepted it) or FAILED (given
    /// up; retry by hand).
    pub status: OutboxStatus,
    pub attempts: u32,
    /// When the next attempt is due (PENDING only).
    #[oai(nullable)]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// What went wrong last time.
    #[oai(nullable)]
    pub last_error: Option<String>,
    #[oai(nullable)]
    pub project_id: Option<String>,
    #[oai(nullable)]
    pub key_id: Option<String>,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub sent_at: Option<OffsetDateTime>,
}

impl OutboxMessageView {
    pub fn new(m: OutboxMessage) -> Self {
        Self {
            next_attempt_at: (m.status == OutboxStatus::Pending)
                .then(|| ms_to_datetime(m.next_attempt_at)),
            id: m.id,
            kind: m.kind,
            recipient: m.recipient,
            subject: m.subject,
            text: m.body_text,
            html: m.body_html,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            project_id: m.product_id,
            key_id: m.license_id,
            created_at: ms_to_datetime(m.created_at),
            sent_at: m.sent_at.map(ms_to_datetime),
        }
    }
}

#[derive(Object, Debug)]
pub struct OutboxData {
    pub messages: Vec<OutboxMessageView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct OutboxOk {
    pub success: bool,
    pub data: OutboxData,
}

#[derive(Object, Debug)]
pub struct OutboxMessageOk {
    pub success: bool,
    pub data: OutboxMessageView,
}

#[derive(ApiResponse)]
pub enum MailSettingsResponse {
    /// The workspace's SMTP settings (data null when there are none).
    #[oai(status = 200)]
    Ok(Json<MailSettingsOk>),
}

#[derive(ApiResponse)]
pub enum MailDoneResponse {
    /// Done.
    #[oai(status = 200)]
    Ok(Json<MailDoneOk>),
}

#[derive(ApiResponse)]
pub enum QueuedResponse {
    /// The message is in the outbox; the worker sends it within seconds.
    #[oai(status = 202)]
    Accepted(Json<QueuedOk>),
}

#[derive(ApiResponse)]
pub enum OutboxResponse {
    /// Messages, newest first.
    #[oai(status = 200)]
    Ok(Json<OutboxOk>),
}

#[derive(ApiResponse)]
pub enum OutboxMessageResponse {
    /// The message, queued again.
    #[oai(status = 200)]
    Ok(Json<OutboxMessageOk>),
}

#[OpenApi(tag = "AdminTags::Mail")]
impl MailApi {
    /// The workspace's SMTP settings
    ///
    /// The password is never returned (`passwordSet` tells whether one is stored).
    #[oai(path = "/api/mail/settings", method = "get")]
    async fn get_settings(&self, auth: AdminAuth) -> KvResult<MailSettingsResponse> {
        let admin = auth.admin();
        let found = settings::get(&self.state, &admin.ctx)?;
        Ok(MailSettingsResponse::Ok(Json(MailSettingsOk {
            success: true,
            data: found.map(MailSettingsView::new),
        })))
    }

    /// Save the workspace's SMTP settings
    ///
    /// Messages go out through them from the outbox. `security` none (no TLS) is accepted only
    /// when the server runs with --smtp-allow-plaintext, and only to a loopback or private
    /// address.
    #[oai(path = "/api/mail/settings", method = "put")]
    async fn save_settings(
        &self,
        auth: AdminAuth,
        body: Json<MailSettingsRequest>,
    ) -> KvResult<MailSettingsResponse> {
        let admin = auth.admin();
        let b = body.0;
        let input = settings::SettingsInput {
            host: b.host,
            port: b.port,
            security: b.security,
            username: b.username,
            password: match b.password {
                MaybeUndefined::Undefined => settings::PasswordChange::Keep,
                MaybeUndefined::Null => settings::PasswordChange::Clear,
                MaybeUndefined::Value(p) => settings::PasswordChange::Set(p),
            },
            from_address: b.from_address,
            from_name: b.from_name,
            public_url: b.public_url,
        };
        let saved = settings::save(&self.state, &admin.ctx, input).await?;
        Ok(MailSettingsResponse::Ok(Json(MailSettingsOk {
            success: true,
            data: Some(MailSettingsView::new(saved)),
        })))
    }

    /// Remove the workspace's SMTP settings
    ///
    /// Queued messages wait (and use up their attempts) until settings are saved again.
    #[oai(path = "/api/mail/settings", method = "delete")]
    async fn delete_settings(&self, auth: AdminAuth) -> KvResult<MailDoneResponse> {
        let admin = auth.admin();
        settings::delete(&self.state, &admin.ctx).await?;
        Ok(MailDoneResponse::Ok(Json(MailDoneOk { success: true })))
    }

    /// Send a test e-mail
    ///
    /// Queues a test message to `to`; the outbox shows whether the SMTP server accepted it.
    /// 409 while no settings are saved.
    #[oai(path = "/api/mail/test", method = "post")]
    async fn send_test(
        &self,
        auth: AdminAuth,
        body: Json<TestMailRequest>,
    ) -> KvResult<QueuedResponse> {
        let admin = auth.admin();
        let id = settings::send_test(&self.state, &admin.ctx, &body.0.to).await?;
        Ok(QueuedResponse::Accepted(Json(QueuedOk {
            success: true,
            data: QueuedData { message_id: id },
        })))
    }

    /// The outbox
    ///
    /// Every message of the workspace, newest first, with its status, attempts and last error.
    #[oai(path = "/api/mail/outbox", method = "get")]
    async fn list_outbox(
        &self,
        auth: AdminAuth,
        /// PENDING, SENT or FAILED.
        status: Query<Option<OutboxStatus>>,
        /// Only the messages to this address.
        recipient: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<OutboxResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (rows, total) = outbox::list(
            &self.state,
            &admin.ctx,
            status.0,
            recipient.0.as_deref(),
            limit,
            offset,
        )?;
        Ok(OutboxResponse::Ok(Json(OutboxOk {
            success: true,
            data: OutboxData {
                messages: rows.into_iter().map(OutboxMessageView::new).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Retry a message
    ///
    /// A FAILED (or waiting) message is queued for an attempt now, with a fresh set of
    /// attempts. A SENT message is never sent twice (409).
    #[oai(path = "/api/mail/outbox/:id/retry", method = "post")]
    async fn retry(&self, auth: AdminAuth, id: Path<String>) -> KvResult<OutboxMessageResponse> {
        let admin = auth.admin();
        let m = outbox::retry(&self.state, &admin.ctx, &id.0).await?;
        Ok(OutboxMessageResponse::Ok(Json(OutboxMessageOk {
            success: true,
            data: OutboxMessageView::new(m),
        })))
    }

    /// E-mail the key to its customer
    ///
    /// Queues the "license delivered" message (key, product, expiry, portal link) for the
    /// key's customer e-mail. 400 when the key has none.
    #[oai(path = "/api/keys/:id/send", method = "post")]
    async fn send_key(&self, auth: AdminAuth, id: Path<String>) -> KvResult<QueuedResponse> {
        let admin = auth.admin();
        let message_id = crate::service::mail::email_key(&self.state, &admin.ctx, &id.0).await?;
        Ok(QueuedResponse::Accepted(Json(QueuedOk {
            success: true,
            data: QueuedData { message_id },
        })))
    }
}
