//! Operators: setup of the first one, login, logout, the session check behind every admin
//! request, and operator administration (list, create, disable, reset a password, delete).
//!
//! Only ADMIN operators (and the shell) administer operators. API keys never do, whatever
//! their scope: a key is a server-to-server credential, and one that could create, reset or
//! delete operators would be a way around every role.

use std::net::IpAddr;

use serde_json::json;

use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::operators::{self, Operator, Role, SetupToken};
use crate::domain::{OperatorId, TenantId, now_ms, tenants};
use crate::error::Error;
use crate::service::login_guard::{self, AccountKind, DeviceCookie};
use crate::service::{Actor, Ctx};
use crate::state::AppState;

const SELF_REGISTRATION_DISABLED: &str =
    "Self-registration is disabled: ask an ADMIN to create your account";

const SETUP_COMPLETE: &str =
    "Setup is complete: an operator exists. Sign in as an ADMIN to create more operators";

#[derive(Debug, Clone)]
pub struct NewOperator {
    pub email: String,
    pub password: String,
    /// Default USER; the first operator is always ADMIN.
    pub role: Option<Role>,
    /// Put a USER into an existing workspace instead of a new one.
    pub tenant_id: Option<TenantId>,
    /// The one-time setup token: required (and consumed) when this is the first operator.
    pub setup_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct OperatorChange {
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// The session token's facts the service checks (the token format is the face's).
#[derive(Debug, Clone)]
pub struct SessionToken {
    pub operator_id: OperatorId,
    pub token_id: String,
    pub issued_at_ms: i64,
    /// When the token expires anyway (seconds): a logged-out token is remembered until then.
    pub expires_at: i64,
}

/// True while no operator exists: the setup screen (and an unauthenticated register) is open.
pub fn setup_required(state: &AppState) -> Result<bool, Error> {
    Ok(state.db.read(operators::repo::count)? == 0)
}

/// At server start: while no operator exists, a fresh setup token (replacing any earlier one)
/// for the setup URL the server prints; `None` once setup is done.
pub async fn setup_token_at_start(state: &AppState) -> Result<Option<SetupToken>, Error> {
    // Not audited: the server's own output shows it, and no one acted.
    issue_setup(state, None).await
}

/// `keyward admin setup-url`: a fresh setup token, invalidating earlier ones. Only the shell
/// may ask, and only while no operator exists: afterwards an ADMIN creates operators.
pub async fn issue_setup_token(state: &AppState, ctx: &Ctx) -> Result<SetupToken, Error> {
    if !matches!(ctx.actor, Actor::Cli | Actor::System) {
        return Err(Error::Forbidden(
            "only the server's shell issues setup tokens".into(),
        ));
    }
    issue_setup(state, Some(ctx.actor_label()))
        .await?
        .ok_or_else(|| Error::Conflict(SETUP_COMPLETE.into()))
}

/// Issues a token while no operator exists; `actor` (a person at the shell) is audited.
async fn issue_setup(state: &AppState, actor: Option<String>) -> Result<Option<SetupToken>, Error> {
    state
        .db
        .write(move |c| {
            // Decided inside the write: a first operator created meanwhile closes setup.
            if operators::repo::count(c)? > 0 {
                return Ok(None);
            }
            let now = now_ms();
            let token = SetupToken::generate(now);
            operators::repo::replace_setup_token(c, &token.sha256(), token.expires_at, now)?;
            if let Some(actor) = &actor
                && let Some(tenant) = tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
            {
                audit::repo::insert(
                    c,
                    &AuditEvent::new(&tenant.id, actor, AuditAction::SetupTokenIssue)
                        .detail(json!({"expiresAt": token.expires_at})),
                )?;
            }
            Ok(Some(token))
        })
        .await
}

/// argon2id costs ~19 MiB and tens of milliseconds: off the async runtime, a few at a time.
async fn hash_password(state: &AppState, password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    super::off_runtime_hashing(state, move || operators::hash_password(&password)).await?
}

/// Creates an operator. With no caller this is the setup step: allowed only while no
/// operator exists and only with the current one-time setup token (which it consumes), and
/// the first one is ADMIN in the default tenant. Afterwards only ADMIN operators may: a new
/// USER gets a workspace of its own unless `tenant_id` names one.
pub async fn register(
    state: &AppState,
    caller: Option<&Ctx>,
    ip: Option<IpAddr>,
    input: NewOperator,
) -> Result<Operator, Error> {
    match caller {
        Some(ctx) => ctx.require_operator_admin()?,
        // Rights before input: after setup a stranger learns nothing but "no".
        None if !setup_required(state)? => {
            return Err(Error::Forbidden(SELF_REGISTRATION_DISABLED.into()));
        }
        // Whoever reaches the server before its owner must not become its ADMIN: the token
        // proves access to the server's output or shell. Checked before the input, and again
        // in the write below (a newer token may replace it meanwhile).
        None => operators::check_setup_token(
            input.setup_token.as_deref(),
            state.db.read(operators::repo::setup_token)?,
            now_ms(),
        )?,
    }
    let email = input.email.trim().to_ascii_lowercase();
    operators::validate_email(&email)?;
    operators::validate_password(&input.password)?;
    let role = input.role.unwrap_or(Role::User);
    let hash = hash_password(state, &input.password).await?;
    let caller = caller.cloned();
    let setup_token = input.setup_token.clone();
    let ip = caller
        .as_ref()
        .and_then(|c| c.ip)
        .or(ip)
        .map(|i| i.to_string());
    state
        .db
        .write(move |c| {
            // Counted again inside the write: of two concurrent setups, one wins.
            let first = operators::repo::count(c)? == 0;
            // The shell proves access to the server as the setup token does: `keyward admin
            // create` recovers an installation whose operators are all gone.
            let by_shell = caller.as_ref().is_some_and(|c| c.actor == Actor::Cli);
            if first {
                // Single use: consumed in the transaction that creates the first operator.
                if !by_shell {
                    operators::check_setup_token(
                        setup_token.as_deref(),
                        operators::repo::setup_token(c)?,
                        now_ms(),
                    )?;
                }
                operators::repo::delete_setup_token(c)?;
            }
            let actor = match (&caller, first) {
                (Some(ctx), true) if by_shell => ctx.actor_label(),
                (_, true) => "setup".to_owned(),
                (Some(ctx), false) => ctx.actor_label(),
                (None, false) => return Err(Error::Forbidden(SELF_REGISTRATION_DISABLED.into())),
            };
            if operators::repo::find_by_email(c, &email)?.is_some() {
                return Err(Error::Conflict(format!(
                    "An operator with email {email} exists"
                )));
            }
            let default_tenant = |c: &rusqlite::Connection| {
                tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
                    .map(|t| t.id)
                    .ok_or(Error::NotFound("tenant"))
            };
            let (role, tenant_id) = match (first, &input.tenant_id, role) {
                (true, _, _) => (Role::Admin, default_tenant(c)?),
                (false, Some(t), role) => (
                    role,
                    tenants::repo::find(c, t)?
                        .ok_or(Error::NotFound("tenant"))?
                        .id,
                ),
                (false, None, Role::User) => {
                    let slug = format!("ws-{}", crate::crypto::random_secret(10));
                    (Role::User, tenants::repo::create(c, &slug, &email)?.id)
                }
                (false, None, Role::Admin) => (Role::Admin, default_tenant(c)?),
            };
            let now = now_ms();
            let operator = Operator {
                id: crate::crypto::new_id("op"),
                tenant_id,
                email,
                password_hash: hash,
                role,
                disabled_at: None,
                sessions_valid_after: 0,
                created_at: now,
                updated_at: now,
            };
            operators::repo::insert(c, &operator)?;
            audit::repo::insert(
                c,
                &AuditEvent::new(&operator.tenant_id, &actor, AuditAction::OperatorCreate)
                    .ip(ip.as_deref())
                    .detail(json!({"operatorId": operator.id, "role": operator.role.as_str()})),
            )?;
            Ok(operator)
        })
        .await
}

/// A successful operator sign-in: the operator, and the device cookie its client gets.
#[derive(Debug)]
pub struct LoginOutcome {
    pub operator: Operator,
    pub device: DeviceCookie,
}

/// What a right password leads to.
#[derive(Debug)]
pub enum LoginStep {
    /// Signed in.
    SignedIn(LoginOutcome),
    /// The operator has two-factor login on: a code completes the sign-in
    /// (`service::two_factor::complete_sign_in`). No session and no device cookie yet.
    SecondFactor { operator: Operator, at_ms: i64 },
}

/// Checks an operator's password. Limited per IP (every attempt) and per account (failures
/// only; a client with a device cookie of the account has a budget of its own: see
/// `service::login_guard`). An unknown email and a wrong password cost the same time and get
/// the same answer.
pub async fn login(
    state: &AppState,
    ip: Option<IpAddr>,
    email: &str,
    password: &str,
    devices: &[(String, String)],
) -> Result<LoginStep, Error> {
    let email = email.trim().to_ascii_lowercase();
    if let Some(ip) = ip {
        state.limits.login_per_ip.check(&ip)?;
    }
    let found = state
        .db
        .read(|c| operators::repo::find_by_email(c, &email))?;
    let attempt = login_guard::admit(
        state,
        AccountKind::Operator,
        &email,
        found.as_ref().map(|o| o.id.as_str()),
        devices,
    )?;
    let hash = found
        .as_ref()
        .map(|o| o.password_hash.clone())
        .unwrap_or_else(|| operators::decoy_hash().to_owned());
    let password = password.to_owned();
    let matches =
        super::off_runtime_hashing(state, move || operators::verify_password(&password, &hash))
            .await?;
    let ip_text = ip.map(|i| i.to_string());
    let event = |o: &Operator, action| {
        AuditEvent::new(&o.tenant_id, &format!("operator:{}", o.id), action).ip(ip_text.as_deref())
    };
    match found {
        Some(o)
            if matches
                && o.disabled_at.is_none()
                && super::two_factor::is_enabled(state, &o.id)? =>
        {
            attempt.passed(state);
            Ok(LoginStep::SecondFactor {
                operator: o,
                at_ms: now_ms(),
            })
        }
        Some(o) if matches && o.disabled_at.is_none() => {
            let device = attempt.succeeded(state, AccountKind::Operator, &o.id)?;
            state
                .db
                .writer()
                .record(event(&o, AuditAction::OperatorLogin));
            Ok(LoginStep::SignedIn(LoginOutcome {
                operator: o,
                device,
            }))
        }
        other => {
            if let Some(o) = other {
                state.db.writer().record(
                    event(&o, AuditAction::OperatorLoginFailed)
                        .detail(json!({"knownDevice": attempt.from_known_device()})),
                );
            }
            Err(Error::Unauthorized("Invalid email or password".into()))
        }
    }
}

/// Ends a session for good: the token is remembered as revoked until it would expire.
pub async fn logout(state: &AppState, ctx: &Ctx, token: &SessionToken) -> Result<(), Error> {
    let event = ctx.event(&ctx.tenant, AuditAction::OperatorLogout);
    let (jti, exp) = (token.token_id.clone(), token.expires_at);
    state
        .db
        .write(move |c| {
            operators::repo::revoke_token(c, &jti, exp)?;
            audit::repo::insert(c, &event)
        })
        .await
}

/// The operator behind a genuine session token, if it is not logged out and the operator
/// still exists and is enabled; disabling or a password reset ends every session issued
/// before it, at once.
pub fn session(state: &AppState, token: &SessionToken) -> Result<Operator, Error> {
    let (operator, revoked) = state.db.read(|c| {
        Ok((
            operators::repo::find(c, &token.operator_id)?,
            operators::repo::is_token_revoked(c, &token.token_id)?,
        ))
    })?;
    match operator {
        Some(o)
            if o.disabled_at.is_none()
                && !revoked
                && token.issued_at_ms >= o.sessions_valid_after =>
        {
            Ok(o)
        }
        Some(o) if o.disabled_at.is_some() => {
            Err(Error::Unauthorized("This account is disabled".into()))
        }
        _ => Err(Error::Unauthorized(
            "Invalid or expired session token; log in again".into(),
        )),
    }
}

/// Operators within the caller's reach, oldest first, one page.
pub fn list(
    state: &AppState,
    ctx: &Ctx,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Operator>, u64), Error> {
    ctx.require_operator_admin()?;
    state
        .db
        .read(|c| operators::repo::list(c, ctx.tenants.filter(), limit, offset))
}

fn reachable_operator(
    c: &rusqlite::Connection,
    ctx: &Ctx,
    id: &OperatorId,
) -> Result<Operator, Error> {
    operators::repo::find(c, id)?
        .filter(|o| ctx.reaches_tenant(&o.tenant_id))
        .ok_or(Error::NotFound("operator"))
}

fn is_self(ctx: &Ctx, target: &Operator) -> bool {
    matches!(&ctx.actor, Actor::Operator { id, .. } if *id == target.id)
}

/// Disables, re-enables, or resets the password of an operator.
pub async fn update(
    state: &AppState,
    ctx: &Ctx,
    id: &OperatorId,
    change: OperatorChange,
) -> Result<Operator, Error> {
    ctx.require_operator_admin()?;
    if change.disabled.is_none() && change.password.is_none() {
        return Err(Error::Invalid(
            "nothing to change: send disabled and/or password".into(),
        ));
    }
    let hash = match &change.password {
        Some(p) => {
            operators::validate_password(p)?;
            Some(hash_password(state, p).await?)
        }
        None => None,
    };
    let ctx = ctx.clone();
    let id = id.clone();
    let disabled = change.disabled;
    state
        .db
        .write(move |c| {
            let target = reachable_operator(c, &ctx, &id)?;
            if disabled == Some(true) && is_self(&ctx, &target) {
                return Err(Error::Invalid("you cannot disable yourself".into()));
            }
            let now = now_ms();
            if let Some(disabled) = disabled {
                operators::repo::set_disabled(c, &target.id, disabled.then_some(now), now)?;
            }
            if let Some(hash) = &hash {
                operators::repo::set_password_hash(c, &target.id, hash, now)?;
            }
            audit::repo::insert(
                c,
                &ctx.event(&target.tenant_id, AuditAction::OperatorUpdate)
                    .detail(json!({
                        "operatorId": target.id,
                        "disabled": disabled,
                        "passwordReset": hash.is_some(),
                    })),
            )?;
            operators::repo::find(c, &target.id)?.ok_or(Error::NotFound("operator"))
        })
        .await
}

pub async fn delete(state: &AppState, ctx: &Ctx, id: &OperatorId) -> Result<(), Error> {
    ctx.require_operator_admin()?;
    let ctx = ctx.clone();
    let id = id.clone();
    state
        .db
        .write(move |c| {
            let target = reachable_operator(c, &ctx, &id)?;
            if is_self(&ctx, &target) {
                return Err(Error::Invalid("you cannot delete yourself".into()));
            }
            operators::repo::delete(c, &target.id)?;
            audit::repo::insert(
                c,
                &ctx.event(&target.tenant_id, AuditAction::OperatorDelete)
                    .detail(json!({"operatorId": target.id, "email": target.email})),
            )
        })
        .await
}

/// The operator an ADMIN (or the shell) names by e-mail or id, if within its reach.
pub fn find(state: &AppState, ctx: &Ctx, email_or_id: &str) -> Result<Operator, Error> {
    ctx.require_operator_admin()?;
    let wanted = email_or_id.trim();
    state
        .db
        .read(|c| {
            Ok(match operators::repo::find(c, wanted)? {
                Some(o) => Some(o),
                None => operators::repo::find_by_email(c, &wanted.to_ascii_lowercase())?,
            })
        })?
        .filter(|o| ctx.reaches_tenant(&o.tenant_id))
        .ok_or(Error::NotFound("operator"))
}
