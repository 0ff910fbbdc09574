//! Portal accounts: register, sign in, sign out, and the session token that proves a user.

use std::net::IpAddr;

use crate::crypto;
use crate::domain::audit::AuditAction;
use crate::domain::portal_users::{self, PortalUser};
use crate::domain::products::{self, Product};
use crate::domain::{ProductId, now_ms, operators};
use crate::error::Error;
use crate::service::Ctx;
use crate::service::login_guard::{self, AccountKind, DeviceCookie};
use crate::state::AppState;

/// A signed-in user, its new session token (shown once; only its SHA-256 is stored) and the
/// device cookie its client gets (see `service::login_guard`).
#[derive(Debug)]
pub struct PortalSession {
    pub token: String,
    pub user: PortalUser,
    pub device: DeviceCookie,
}

/// The caller of a portal session token: its context and the token's SHA-256 (which logout
/// ends).
pub fn authenticate(
    state: &AppState,
    token: &str,
    ip: Option<IpAddr>,
) -> Result<(Ctx, [u8; 32]), Error> {
    let token_sha256 = crypto::sha256(token.as_bytes());
    let user = state
        .db
        .read(|c| portal_users::repo::find_by_session(c, &token_sha256, now_ms()))?
        .ok_or_else(|| {
            Error::Unauthorized("The portal session has expired; sign in again".into())
        })?;
    Ok((ctx_of(&user, ip), token_sha256))
}

fn ctx_of(user: &PortalUser, ip: Option<IpAddr>) -> Ctx {
    Ctx::portal_user(
        user.id.as_str().into(),
        user.tenant_id.as_str().into(),
        user.product_id.as_str().into(),
        ip,
    )
}

/// Registers a user of an open portal (no key needed) and signs it in.
pub async fn register(
    state: &AppState,
    ip: Option<IpAddr>,
    project: &ProductId,
    username: &str,
    password: String,
    email: Option<&str>,
) -> Result<PortalSession, Error> {
    limit_by_ip(state, ip)?;
    let username = username.trim().to_owned();
    portal_users::validate_username(&username)?;
    let email = email
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| crate::domain::mail::normalize_address("email", e))
        .transpose()?;
    operators::validate_password(&password)?;
    let product = state
        .db
        .read(|c| open_portal(c, project))?
        .ok_or(Error::NotFound("portal"))?;
    let hash =
        crate::service::off_runtime_hashing(state, move || operators::hash_password(&password))
            .await??;
    let (token, user) = state
        .db
        .write(move |c| {
            let user = portal_users::register(c, &product, &username, hash, email)?;
            let token = portal_users::open_session(c, &user)?;
            let event = ctx_of(&user, ip)
                .event(&user.tenant_id, AuditAction::PortalRegister)
                .product(&user.product_id);
            crate::domain::audit::repo::insert(c, &event)?;
            Ok((token, user))
        })
        .await?;
    // Registering signs in: this browser is the owner's from now on.
    let device = login_guard::device_cookie(state, AccountKind::PortalUser, &user.id)?;
    Ok(PortalSession {
        token,
        user,
        device,
    })
}

/// Signs a user in to an open portal. An unknown project, a closed portal and an unknown
/// username answer like a wrong password, in about the same time. Limited per IP (every
/// attempt) and per account (failures only, with a budget of its own for a client holding a
/// device cookie of the account: see `service::login_guard`).
pub async fn login(
    state: &AppState,
    ip: Option<IpAddr>,
    project: &ProductId,
    username: &str,
    password: String,
    devices: &[(String, String)],
) -> Result<PortalSession, Error> {
    limit_by_ip(state, ip)?;
    let username = username.trim().to_owned();
    let found = state.db.read(|c| {
        Ok(match open_portal(c, project)? {
            Some(p) => portal_users::repo::find_by_username(c, &p.id, &username)?,
            None => None,
        })
    })?;
    let attempt = login_guard::admit(
        state,
        AccountKind::PortalUser,
        &format!("{project}:{}", username.to_lowercase()),
        found.as_ref().map(|u| u.id.as_str()),
        devices,
    )?;
    let hash = found
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| operators::decoy_hash().to_owned());
    let matches = crate::service::off_runtime_hashing(state, move || {
        operators::verify_password(&password, &hash)
    })
    .await?;
    let Some(user) = found.filter(|_| matches) else {
        return Err(Error::Unauthorized("Invalid username or password".into()));
    };
    let device = attempt.succeeded(state, AccountKind::PortalUser, &user.id)?;
    state
        .db
        .write(move |c| {
            let token = portal_users::open_session(c, &user)?;
            let event = ctx_of(&user, ip)
                .event(&user.tenant_id, AuditAction::PortalLogin)
                .product(&user.product_id);
            crate::domain::audit::repo::insert(c, &event)?;
            Ok(PortalSession {
                token,
                user,
                device,
            })
        })
        .await
}

/// Ends the caller's session: its token stops working at once.
pub async fn logout(state: &AppState, ctx: &Ctx, token_sha256: [u8; 32]) -> Result<(), Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            // Only a session of the caller's own account ends here.
            let user = super::signed_in_user(c, &ctx)?;
            portal_users::repo::delete_session_of(c, &token_sha256, &user.id)?;
            Ok(())
        })
        .await
}

fn limit_by_ip(state: &AppState, ip: Option<IpAddr>) -> Result<(), Error> {
    if let Some(ip) = ip {
        state.limits.login_per_ip.check(&ip)?;
    }
    Ok(())
}

/// The product of an enabled portal, by id.
fn open_portal(c: &rusqlite::Connection, project: &ProductId) -> Result<Option<Product>, Error> {
    Ok(products::repo::find_by_id(c, project)?.filter(|p| portal_users::settings_of(p).enabled))
}
