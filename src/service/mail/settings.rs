//! A workspace's SMTP settings, and its "Send a test e-mail".

use serde_json::json;

use crate::domain::audit::{self, AuditAction};
use crate::domain::mail::{self, MailKind, SmtpSecurity, SmtpSettings};
use crate::domain::now_ms;
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// What to do with the stored password.
#[derive(Debug, Clone)]
pub enum PasswordChange {
    Keep,
    Clear,
    Set(String),
}

#[derive(Debug, Clone)]
pub struct SettingsInput {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: PasswordChange,
    pub from_address: String,
    pub from_name: Option<String>,
    pub public_url: Option<String>,
}

/// The settings as shown: the password never leaves the server.
#[derive(Debug, Clone)]
pub struct SettingsView {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password_set: bool,
    pub from_address: String,
    pub from_name: Option<String>,
    pub public_url: Option<String>,
    pub updated_at: i64,
}

impl SettingsView {
    fn new(s: &SmtpSettings) -> Self {
        Self {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            username: s.username.clone(),
            password_set: s.password_sealed.is_some(),
            from_address: s.from_address.clone(),
            from_name: s.from_name.clone(),
            public_url: s.public_url.clone(),
            updated_at: s.updated_at,
        }
    }
}

/// Mail settings and the outbox belong to the whole workspace: a caller restricted to one
/// product (an API key) may not touch them.
pub(crate) fn workspace_of(ctx: &Ctx) -> Result<String, Error> {
    if ctx.product_restricted() {
        return Err(Error::Forbidden(
            "this API key is restricted to one product; the workspace's e-mail needs an \
             unrestricted key or an operator"
                .into(),
        ));
    }
    Ok(ctx.tenant.to_string())
}

/// The caller's workspace's settings, if any.
pub fn get(state: &AppState, ctx: &Ctx) -> Result<Option<SettingsView>, Error> {
    let tenant = workspace_of(ctx)?;
    let found = state.db.read(|c| mail::repo::settings(c, &tenant))?;
    Ok(found.as_ref().map(SettingsView::new))
}

fn optional(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Saves the caller's workspace's settings (creating them on first use).
pub async fn save(
    state: &AppState,
    ctx: &Ctx,
    input: SettingsInput,
) -> Result<SettingsView, Error> {
    let tenant = workspace_of(ctx)?;
    let host = mail::validate_host(&input.host)?;
    if input.port == 0 {
        return Err(Error::Invalid("port must be 1-65535".into()));
    }
    if input.security == SmtpSecurity::None {
        if !state.config.smtp_allow_plaintext {
            return Err(Error::Invalid(
                "security none (no TLS) is refused: use starttls or tls, or start the server \
                 with --smtp-allow-plaintext for a relay on a loopback or private address"
                    .into(),
            ));
        }
        if !mail::is_private_host(&host) {
            return Err(Error::Invalid(format!(
                "security none is allowed only to a loopback or private address, not {host}"
            )));
        }
    }
    let from_address = mail::normalize_address("fromAddress", &input.from_address)?;
    let from_name = optional(input.from_name);
    if from_name
        .as_deref()
        .is_some_and(|n| n.contains(['\r', '\n', '<', '>', '"']))
    {
        return Err(Error::Invalid(
            "fromName must be one line without <, > or \"".into(),
        ));
    }
    let public_url = optional(input.public_url);
    if let Some(url) = &public_url
        && (!(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(char::is_whitespace)
            || url.contains(['<', '>', '"']))
    {
        return Err(Error::Invalid(
            "publicUrl must be an http:// or https:// URL without spaces".into(),
        ));
    }
    let username = optional(input.username);
    let sealed_new = match &input.password {
        PasswordChange::Set(p) => Some(state.master.seal(p.as_bytes())?),
        _ => None,
    };
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let old = mail::repo::settings(c, &tenant)?;
            let password_sealed = match input.password {
                PasswordChange::Keep => old.and_then(|o| o.password_sealed),
                PasswordChange::Clear => None,
                PasswordChange::Set(_) => sealed_new,
            };
            let settings = SmtpSettings {
                tenant_id: tenant.clone(),
                host,
                port: input.port,
                security: input.security,
                username,
                password_sealed,
                from_address,
                from_name,
                public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
                updated_at: now_ms(),
            };
            mail::repo::save_settings(c, &settings)?;
            let event = ctx
                .event(&tenant, AuditAction::MailSettingsUpdate)
                .detail(json!({
                    "host": settings.host,
                    "port": settings.port,
                    "security": settings.security,
                    "passwordSet": settings.password_sealed.is_some(),
                }));
            audit::repo::insert(c, &event)?;
            Ok(SettingsView::new(&settings))
        })
        .await
}

/// Removes the caller's workspace's settings: messages wait in the outbox until new ones.
pub async fn delete(state: &AppState, ctx: &Ctx) -> Result<(), Error> {
    let tenant = workspace_of(ctx)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            if !mail::repo::delete_settings(c, &tenant)? {
                return Err(Error::NotFound("SMTP settings"));
            }
            let event = ctx
                .event(&tenant, AuditAction::MailSettingsUpdate)
                .detail(json!({"deleted": true}));
            audit::repo::insert(c, &event)?;
            Ok(())
        })
        .await
}

/// Queues a test message to `to` through the workspace's settings; the outbox shows how it
/// went. 409 while there are no settings.
pub async fn send_test(state: &AppState, ctx: &Ctx, to: &str) -> Result<String, Error> {
    let tenant = workspace_of(ctx)?;
    let to = mail::normalize_address("to", to)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let Some(settings) = mail::repo::settings(c, &tenant)? else {
                return Err(Error::Conflict(
                    "there are no SMTP settings yet: save them first".into(),
                ));
            };
            let id = super::queue(
                c,
                &tenant,
                None,
                None,
                MailKind::Test,
                &to,
                &[("from", settings.from_address.clone())],
            )?;
            let event = ctx
                .event(&tenant, AuditAction::MailSend)
                .detail(json!({"kind": MailKind::Test, "to": to, "messageId": id}));
            audit::repo::insert(c, &event)?;
            Ok(id)
        })
        .await
}
