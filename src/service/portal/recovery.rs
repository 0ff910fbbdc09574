//! What a portal user does by e-mail: "send me my keys", resetting a forgotten password by a
//! signed, single-use, expiring link, and the account's e-mail address.
//!
//! The public requests answer the same whether or not the address is known (nothing tells an
//! outsider who is a customer), and are limited per client IP and per address.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::crypto;
use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::mail::{self, MailKind};
use crate::domain::portal_users::{self, PortalUser};
use crate::domain::products::{self, Product};
use crate::domain::{ProductId, licenses, now_ms, operators};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Licenses listed in one "send me my keys" message at most.
const MAX_KEYS_LISTED: u32 = 50;

fn limit(state: &AppState, ip: Option<IpAddr>, email: &str) -> Result<(), Error> {
    if let Some(ip) = ip {
        state.limits.mail_requests_per_ip.check(&ip)?;
    }
    state
        .limits
        .mail_requests_per_address
        .check(&email.to_owned())
}

fn open_portal(c: &rusqlite::Connection, project: &ProductId) -> Result<Product, Error> {
    products::repo::find_by_id(c, project)?
        .filter(|p| portal_users::settings_of(p).enabled)
        .ok_or(Error::NotFound("portal"))
}

/// "Send me my keys": every license of `email` for the portal's product goes to that address,
/// in one message; nothing is sent to an address without licenses. The answer is the same.
pub async fn send_my_keys(
    state: &AppState,
    ip: Option<IpAddr>,
    project: &ProductId,
    email: &str,
) -> Result<(), Error> {
    let email = mail::normalize_address("email", email)?;
    limit(state, ip, &email)?;
    let project = project.clone();
    state
        .db
        .write(move |c| {
            let product = open_portal(c, &project)?;
            let (found, _) = licenses::repo::list_by_email(
                c,
                &product.tenant_id,
                &email,
                Some(&product.id),
                MAX_KEYS_LISTED,
                0,
            )?;
            let mut event =
                AuditEvent::new(&product.tenant_id, "portal", AuditAction::PortalKeysRequest)
                    .product(&product.id)
                    .ip(ip.map(|i| i.to_string()).as_deref());
            if found.is_empty() {
                event = event.detail(json!({"found": 0}));
            } else {
                let list = found
                    .iter()
                    .map(|l| {
                        format!(
                            "{} (valid until: {})",
                            l.key,
                            crate::service::mail::expiry_text(l)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let values = vec![
                    ("product", product.name.clone()),
                    ("licenses", list),
                    (
                        "portal_link",
                        crate::service::mail::portal_link(c, &product)?,
                    ),
                ];
                let id = crate::service::mail::queue(
                    c,
                    &product.tenant_id,
                    Some(&product),
                    None,
                    MailKind::SendKeys,
                    &email,
                    &values,
                )?;
                event = event.detail(json!({"found": found.len(), "messageId": id}));
            }
            audit::repo::insert(c, &event)?;
            Ok(())
        })
        .await
}

fn reset_mac(state: &AppState, user: &PortalUser, expires: i64) -> Result<Vec<u8>, Error> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.master.derive("portal-password-reset"))
        .map_err(|_| Error::Storage("cannot key the reset-link MAC".into()))?;
    // The current password hash is signed too: once the password changes, the link is spent.
    for part in [user.id.as_str(), &expires.to_string(), &user.password_hash] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

fn reset_token(state: &AppState, user: &PortalUser, expires: i64) -> Result<String, Error> {
    let sig = reset_mac(state, user, expires)?;
    Ok(format!("{}.{expires}.{}", user.id, hex::encode(sig)))
}

/// Sends a reset link to each account of the portal with this address; the same answer
/// whether there is one or not.
pub async fn request_password_reset(
    state: &AppState,
    ip: Option<IpAddr>,
    project: &ProductId,
    email: &str,
) -> Result<(), Error> {
    let email = mail::normalize_address("email", email)?;
    limit(state, ip, &email)?;
    let (product, users) = state.db.read(|c| {
        let product = open_portal(c, project)?;
        let users = portal_users::repo::find_by_email(c, &product.id, &email)?;
        Ok((product, users))
    })?;
    let valid = state.config.password_reset_valid;
    let expires = now_ms() + valid.as_millis() as i64;
    let valid_minutes = valid.as_secs().div_ceil(60).max(1);
    let mut links = Vec::new();
    for u in &users {
        links.push((u.clone(), reset_token(state, u, expires)?));
    }
    state
        .db
        .write(move |c| {
            let portal = crate::service::mail::portal_link(c, &product)?;
            let mut queued = 0;
            for (user, token) in links {
                let sep = if portal.contains('?') { '&' } else { '?' };
                let values = vec![
                    ("product", product.name.clone()),
                    ("username", user.username.clone()),
                    ("reset_link", format!("{portal}{sep}reset={token}")),
                    ("valid_minutes", valid_minutes.to_string()),
                ];
                crate::service::mail::queue(
                    c,
                    &product.tenant_id,
                    Some(&product),
                    None,
                    MailKind::PasswordReset,
                    &email,
                    &values,
                )?;
                queued += 1;
            }
            let event = AuditEvent::new(
                &product.tenant_id,
                "portal",
                AuditAction::PortalPasswordResetRequest,
            )
            .product(&product.id)
            .ip(ip.map(|i| i.to_string()).as_deref())
            .detail(json!({"accounts": queued}));
            audit::repo::insert(c, &event)?;
            Ok(())
        })
        .await
}

/// Sets a new password with a reset link's token: once, before it expires. Every session of
/// the account ends.
pub async fn reset_password(
    state: &AppState,
    ip: Option<IpAddr>,
    token: &str,
    password: String,
) -> Result<(), Error> {
    let refused = || Error::Unauthorized("the reset link is invalid or was used already".into());
    let mut parts = token.trim().splitn(3, '.');
    let (Some(user_id), Some(expires), Some(sig)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let expires: i64 = expires.parse().map_err(|_| refused())?;
    let sig = hex::decode(sig).map_err(|_| refused())?;
    if let Some(ip) = ip {
        state.limits.mail_requests_per_ip.check(&ip)?;
    }
    let user = state
        .db
        .read(|c| portal_users::repo::find(c, user_id))?
        .ok_or_else(refused)?;
    if !crypto::constant_time_eq(&reset_mac(state, &user, expires)?, &sig) {
        return Err(refused());
    }
    if expires <= now_ms() {
        return Err(Error::Unauthorized(
            "the reset link has expired; ask for a new one".into(),
        ));
    }
    operators::validate_password(&password)?;
    let hash =
        crate::service::off_runtime_hashing(state, move || operators::hash_password(&password))
            .await??;
    let old_hash = user.password_hash.clone();
    state
        .db
        .write(move |c| {
            // Two uses of one link at once: only the first finds the old hash.
            let current = portal_users::repo::find(c, &user.id)?.ok_or_else(refused)?;
            if current.password_hash != old_hash {
                return Err(refused());
            }
            portal_users::repo::set_password(c, &user.id, &hash)?;
            let event = AuditEvent::new(
                &user.tenant_id,
                &format!("portal:{}", user.id),
                AuditAction::PortalPasswordReset,
            )
            .product(&user.product_id)
            .ip(ip.map(|i| i.to_string()).as_deref());
            audit::repo::insert(c, &event)?;
            Ok(())
        })
        .await
}

/// Sets (or with `None` removes) the signed-in user's e-mail address.
pub async fn set_email(
    state: &AppState,
    ctx: &Ctx,
    email: Option<&str>,
) -> Result<PortalUser, Error> {
    let email = email
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| mail::normalize_address("email", e))
        .transpose()?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let user = super::signed_in_user(c, &ctx)?;
            portal_users::repo::set_email(c, &user.id, email.as_deref())?;
            let event = ctx
                .event(&user.tenant_id, AuditAction::PortalEmailUpdate)
                .product(&user.product_id);
            audit::repo::insert(c, &event)?;
            Ok(PortalUser { email, ..user })
        })
        .await
}
