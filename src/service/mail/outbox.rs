//! The outbox: listing it, retrying a message by hand, and the worker's delivery step.

use serde_json::json;

use crate::domain::audit::{self, AuditAction};
use crate::domain::mail::{self, OutboxMessage, OutboxStatus, templates::escape_html};
use crate::domain::now_ms;
use crate::error::Error;
use crate::mailer::{self, Outgoing, Smtp};
use crate::service::Ctx;
use crate::state::AppState;

/// Messages delivered per pass of the worker (the rest wait for the next second).
const BATCH: u32 = 20;

/// One page of the caller's workspace's outbox, newest first, as the messages read when sent.
pub fn list(
    state: &AppState,
    ctx: &Ctx,
    status: Option<OutboxStatus>,
    recipient: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<OutboxMessage>, u64), Error> {
    let tenant = super::settings::workspace_of(ctx)?;
    let recipient = recipient
        .map(|r| mail::normalize_address("recipient", r))
        .transpose()?;
    let (rows, total, url) = state.db.read(|c| {
        let filter = mail::repo::OutboxFilter {
            tenant_id: &tenant,
            status,
            recipient: recipient.as_deref(),
            product_id: None,
        };
        let (rows, total) = mail::repo::list(c, &filter, limit, offset)?;
        let settings = mail::repo::settings(c, &tenant)?;
        Ok((rows, total, settings.and_then(|s| s.public_url)))
    })?;
    let url = super::public_url(state, url.as_deref());
    Ok((rows.into_iter().map(|m| resolved(m, &url)).collect(), total))
}

/// A message with its links pointing at `url`.
pub(crate) fn resolved(mut m: OutboxMessage, url: &str) -> OutboxMessage {
    m.body_text = super::with_public_url(&m.body_text, url);
    m.body_html = super::with_public_url(&m.body_html, &escape_html(url));
    m
}

/// Puts a message back in the queue with a fresh set of attempts (a FAILED one, or a PENDING
/// one to try now). A SENT message is not sent again (409).
pub async fn retry(state: &AppState, ctx: &Ctx, id: &str) -> Result<OutboxMessage, Error> {
    let tenant = super::settings::workspace_of(ctx)?;
    let ctx = ctx.clone();
    let id = id.to_owned();
    let (m, url) = state
        .db
        .write(move |c| {
            let m = mail::repo::find_message(c, &tenant, &id)?.ok_or(Error::NotFound("message"))?;
            if m.status == OutboxStatus::Sent {
                return Err(Error::Conflict(
                    "this message was sent already; it is not sent twice".into(),
                ));
            }
            mail::repo::retry(c, &m.id, now_ms())?;
            let event = ctx
                .event(&tenant, AuditAction::MailRetry)
                .detail(json!({"messageId": m.id, "previousStatus": m.status}));
            audit::repo::insert(c, &event)?;
            let m =
                mail::repo::find_message(c, &tenant, &m.id)?.ok_or(Error::NotFound("message"))?;
            let url = mail::repo::settings(c, &tenant)?.and_then(|s| s.public_url);
            Ok((m, url))
        })
        .await?;
    Ok(resolved(m, &super::public_url(state, url.as_deref())))
}

/// How many messages wait (the e-mail queue gauge).
pub fn pending(state: &AppState) -> Result<u64, Error> {
    state.db.read(mail::repo::pending_count)
}

/// The worker's pass: each due message is sent through its workspace's settings; accepted →
/// SENT, refused for good → FAILED, otherwise retried later with a doubled wait until the
/// attempts run out. Returns how many were sent.
pub async fn deliver_due(state: &AppState) -> Result<usize, Error> {
    let now = now_ms();
    let due = state.db.read(|c| mail::repo::due(c, now, BATCH))?;
    let mut sent = 0;
    for m in due {
        let settings = state.db.read(|c| mail::repo::settings(c, &m.tenant_id))?;
        let outcome = match settings {
            None => Err(mailer::SendFailure {
                permanent: false,
                message: "this workspace has no SMTP settings yet".into(),
            }),
            Some(s) => {
                let url = super::public_url(state, s.public_url.as_deref());
                let m = resolved(m.clone(), &url);
                match smtp_of(state, &s) {
                    Err(e) => Err(mailer::SendFailure {
                        permanent: false,
                        message: e.to_string(),
                    }),
                    Ok(smtp) => {
                        mailer::send(
                            &smtp,
                            Outgoing {
                                to: &m.recipient,
                                subject: &m.subject,
                                text: &m.body_text,
                                html: &m.body_html,
                            },
                            state.config.extra_ca_file.as_deref(),
                            state.config.smtp_timeout,
                            state.config.smtp_allow_private || state.config.smtp_allow_plaintext,
                        )
                        .await
                    }
                }
            }
        };
        let id = m.id.clone();
        match outcome {
            Ok(()) => {
                sent += 1;
                state
                    .db
                    .write(move |c| mail::repo::mark_sent(c, &id, now_ms()))
                    .await?;
            }
            Err(failure) => {
                let attempts = m.attempts + 1;
                let give_up = failure.permanent || attempts >= state.config.mail_max_attempts;
                let wait =
                    mail::backoff_ms(state.config.mail_retry_base.as_millis() as i64, attempts);
                tracing::info!(
                    "e-mail {} to {}: attempt {attempts} failed ({}){}",
                    m.id,
                    m.recipient,
                    failure.message,
                    if give_up { "; given up" } else { "" }
                );
                let next = now_ms() + wait;
                state
                    .db
                    .write(move |c| {
                        mail::repo::mark_attempt_failed(c, &id, &failure.message, next, give_up)
                    })
                    .await?;
            }
        }
    }
    Ok(sent)
}

fn smtp_of(state: &AppState, s: &mail::SmtpSettings) -> Result<Smtp, Error> {
    let password = match &s.password_sealed {
        Some(sealed) => Some(
            String::from_utf8(state.master.open(sealed)?)
                .map_err(|_| Error::Storage("the SMTP password is not UTF-8".into()))?,
        ),
        None => None,
    };
    Ok(Smtp {
        host: s.host.clone(),
        port: s.port,
        security: s.security,
        username: s.username.clone(),
        password,
        from_address: s.from_address.clone(),
        from_name: s.from_name.clone(),
    })
}
