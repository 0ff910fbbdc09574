//! Two-factor login for operators: enrolment (a TOTP secret confirmed by a first code),
//! recovery codes, turning it off, the sign-in's second step, and the workspace policy that
//! requires it.
//!
//! Every check of a code or a password here spends the account's sign-in failure budget
//! (`service::login_guard`) when it fails: a stolen password, or a stolen session, buys no more
//! guesses at the second factor than anyone gets at the password.

use std::net::IpAddr;

use serde_json::json;

use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::operators::{self, Operator};
use crate::domain::two_factor::{self, Factor};
use crate::domain::{TenantId, now_ms, tenants};
use crate::error::Error;
use crate::service::login_guard::{self, AccountKind};
use crate::service::operators::LoginOutcome;
use crate::service::{Actor, Ctx};
use crate::state::AppState;

const WRONG_FACTOR: &str = "The code is wrong or was already used: enter the current code of \
     your authenticator app (each code works once), or one of your recovery codes";

const CHALLENGE_INVALID: &str =
    "The sign-in challenge is invalid or has expired: sign in with your password again";

/// A new enrolment: what the authenticator app needs, shown once.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret in base32, for typing in.
    pub secret: String,
    /// The `otpauth://` URI (what the QR code holds).
    pub uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

#[derive(Debug, Clone)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    /// An enrolment was started and waits for its first code.
    pub pending: bool,
    pub recovery_codes_left: u32,
    /// The operator's workspace requires two-factor login.
    pub required_by_workspace: bool,
}

/// What proves the operator is at the keyboard before two-factor login is turned off or its
/// recovery codes are replaced.
#[derive(Debug, Clone)]
pub enum Proof {
    Code(String),
    Password(String),
}

#[derive(Debug, Clone)]
pub struct WorkspacePolicy {
    pub tenant_id: String,
    pub required: bool,
}

/// What a sign-in challenge (the face's signed token between the two steps) vouches for.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub operator_id: String,
    /// When the password step succeeded (ms): a password reset or a disable since voids it.
    pub issued_at_ms: i64,
}

/// The operator acting, from a session; API keys and other callers have no second factor.
fn acting_operator(state: &AppState, ctx: &Ctx) -> Result<Operator, Error> {
    match &ctx.actor {
        Actor::Operator { id, .. } => state
            .db
            .read(|c| operators::repo::find(c, id))?
            .ok_or(Error::NotFound("operator")),
        Actor::ApiKey { .. } => Err(Error::Forbidden(
            "Two-factor login belongs to operators: an API key has none; sign in as an operator"
                .into(),
        )),
        _ => Err(Error::Forbidden(
            "Two-factor login belongs to operators signed in to the admin panel".into(),
        )),
    }
}

/// The caller's own two-factor state.
pub fn status(state: &AppState, ctx: &Ctx) -> Result<TwoFactorStatus, Error> {
    let operator = acting_operator(state, ctx)?;
    state.db.read(|c| {
        let totp = two_factor::repo::find(c, &operator.id)?;
        Ok(TwoFactorStatus {
            enabled: totp.as_ref().is_some_and(|t| t.is_enabled()),
            pending: totp.as_ref().is_some_and(|t| !t.is_enabled()),
            recovery_codes_left: two_factor::repo::recovery_codes_left(c, &operator.id)?,
            required_by_workspace: two_factor::repo::is_required(c, &operator.tenant_id)?,
        })
    })
}

/// True when the operator's workspace requires two-factor login and the operator has not
/// turned it on: its session may then only enrol.
pub fn must_enrol(state: &AppState, operator: &Operator) -> Result<bool, Error> {
    state.db.read(|c| {
        Ok(two_factor::repo::is_required(c, &operator.tenant_id)?
            && !two_factor::repo::is_enabled(c, &operator.id)?)
    })
}

/// True when the operator signs in with a second factor.
pub fn is_enabled(state: &AppState, operator_id: &str) -> Result<bool, Error> {
    state
        .db
        .read(|c| two_factor::repo::is_enabled(c, operator_id))
}

/// Starts an enrolment with a new secret (replacing an unconfirmed one). Two-factor login is
/// not on until [`confirm_enrolment`] sees a first code.
pub async fn start_enrolment(state: &AppState, ctx: &Ctx) -> Result<Enrolment, Error> {
    let operator = acting_operator(state, ctx)?;
    let secret = two_factor::new_secret();
    let sealed = state.master.seal(&secret)?;
    let uri = two_factor::otpauth_uri(&operator.email, &secret);
    let enrolment = Enrolment {
        secret: two_factor::secret_base32(&secret),
        qr_svg: two_factor::qr_svg(&uri)?,
        uri,
    };
    let id = operator.id.clone();
    state
        .db
        .write(move |c| {
            if two_factor::repo::is_enabled(c, &id)? {
                return Err(Error::Conflict(
                    "Two-factor login is on already: turn it off first to enrol another device"
                        .into(),
                ));
            }
            two_factor::repo::start(c, &id, &sealed, now_ms())
        })
        .await?;
    Ok(enrolment)
}

/// Turns two-factor login on with the enrolment's first code; answers the recovery codes,
/// shown this once.
pub async fn confirm_enrolment(
    state: &AppState,
    ctx: &Ctx,
    code: &str,
) -> Result<Vec<String>, Error> {
    let code = two_factor::normalize_code(code)?;
    let operator = acting_operator(state, ctx)?;
    let codes = two_factor::new_recovery_codes();
    let hashes = codes
        .iter()
        .map(|c| two_factor::recovery_code_hash(c))
        .collect::<Result<Vec<_>, _>>()?;
    let master = state.master.clone();
    let event = ctx.event(&operator.tenant_id, AuditAction::TwoFactorEnable);
    let id = operator.id.clone();
    state
        .db
        .write(move |c| {
            let totp = two_factor::repo::find(c, &id)?;
            let totp = match totp {
                Some(t) if t.is_enabled() => {
                    return Err(Error::Conflict("Two-factor login is on already".into()));
                }
                Some(t) => t,
                None => {
                    return Err(Error::Invalid(
                        "no enrolment to confirm: start one first (POST /api/auth/2fa/enroll)"
                            .into(),
                    ));
                }
            };
            let secret = master.open(&totp.secret_sealed)?;
            let now = now_ms();
            let Some(step) = two_factor::matching_step(&secret, &code, now / 1000, 0)? else {
                return Err(Error::Invalid(
                    "code does not match the new secret: enter the code your authenticator app \
                     shows now (check that the device's clock is right)"
                        .into(),
                ));
            };
            two_factor::repo::enable(c, &id, step, now)?;
            two_factor::repo::replace_recovery_codes(c, &id, &hashes, now)?;
            audit::repo::insert(c, &event)
        })
        .await?;
    Ok(codes)
}

/// Checks a proof of presence: a current code (single-use, as at sign-in) or the password.
/// A wrong one spends the account's sign-in failure budget.
async fn check_proof(state: &AppState, operator: &Operator, proof: Proof) -> Result<(), Error> {
    if let Proof::Code(code) = &proof {
        two_factor::normalize_code(code)?;
    }
    let attempt = login_guard::admit(
        state,
        AccountKind::Operator,
        &operator.email,
        Some(&operator.id),
        &[],
    )?;
    let passed = match proof {
        Proof::Password(password) => {
            let hash = operator.password_hash.clone();
            super::off_runtime_hashing(state, move || operators::verify_password(&password, &hash))
                .await?
        }
        Proof::Code(code) => {
            let code = two_factor::normalize_code(&code)?;
            let master = state.master.clone();
            let id = operator.id.clone();
            state
                .db
                .write(move |c| accept_code(c, &master, &id, &code))
                .await?
        }
    };
    if !passed {
        return Err(Error::Forbidden(
            "The code or password is wrong (a code works once): nothing was changed".into(),
        ));
    }
    attempt.passed(state);
    Ok(())
}

/// Accepts a TOTP code of an enabled enrolment once, remembering its step.
fn accept_code(
    c: &rusqlite::Connection,
    master: &crate::crypto::MasterKey,
    operator_id: &str,
    code: &str,
) -> Result<bool, Error> {
    let Some(totp) = two_factor::repo::find(c, operator_id)?.filter(|t| t.is_enabled()) else {
        return Ok(false);
    };
    let secret = master.open(&totp.secret_sealed)?;
    match two_factor::matching_step(&secret, code, now_ms() / 1000, totp.last_step)? {
        Some(step) => two_factor::repo::advance_step(c, operator_id, step),
        None => Ok(false),
    }
}

fn require_enabled(state: &AppState, operator: &Operator) -> Result<(), Error> {
    if !is_enabled(state, &operator.id)? {
        return Err(Error::Conflict("Two-factor login is not on".into()));
    }
    Ok(())
}

/// Turns the caller's two-factor login off (a current code or the password proves presence).
pub async fn disable(state: &AppState, ctx: &Ctx, proof: Proof) -> Result<(), Error> {
    let operator = acting_operator(state, ctx)?;
    require_enabled(state, &operator)?;
    check_proof(state, &operator, proof).await?;
    let event = ctx
        .event(&operator.tenant_id, AuditAction::TwoFactorDisable)
        .detail(json!({"operatorId": operator.id}));
    state
        .db
        .write(move |c| {
            two_factor::repo::delete(c, &operator.id)?;
            audit::repo::insert(c, &event)
        })
        .await
}

/// New recovery codes for the caller (the old ones stop working); shown this once.
pub async fn regenerate_recovery_codes(
    state: &AppState,
    ctx: &Ctx,
    proof: Proof,
) -> Result<Vec<String>, Error> {
    let operator = acting_operator(state, ctx)?;
    require_enabled(state, &operator)?;
    check_proof(state, &operator, proof).await?;
    let codes = two_factor::new_recovery_codes();
    let hashes = codes
        .iter()
        .map(|c| two_factor::recovery_code_hash(c))
        .collect::<Result<Vec<_>, _>>()?;
    let event = ctx.event(
        &operator.tenant_id,
        AuditAction::TwoFactorRecoveryCodesRegenerate,
    );
    state
        .db
        .write(move |c| {
            two_factor::repo::replace_recovery_codes(c, &operator.id, &hashes, now_ms())?;
            audit::repo::insert(c, &event)
        })
        .await?;
    Ok(codes)
}

/// `keyward admin disable-2fa`: for an operator who lost the device and the recovery codes.
/// Only the shell may; false when the operator had no two-factor login.
pub async fn disable_by_shell(
    state: &AppState,
    ctx: &Ctx,
    operator: &Operator,
) -> Result<bool, Error> {
    if ctx.actor != Actor::Cli {
        return Err(Error::Forbidden(
            "only the server's shell turns off another operator's two-factor login".into(),
        ));
    }
    let event = ctx
        .event(&operator.tenant_id, AuditAction::TwoFactorDisable)
        .detail(json!({"operatorId": operator.id, "byShell": true}));
    let id = operator.id.clone();
    state
        .db
        .write(move |c| {
            let removed = two_factor::repo::delete(c, &id)?;
            if removed {
                audit::repo::insert(c, &event)?;
            }
            Ok(removed)
        })
        .await
}

/// The workspace a policy call names: the caller's own by default; another only within reach
/// (an ADMIN reaches every workspace; anyone else's is answered like a missing one).
fn policy_tenant(
    state: &AppState,
    ctx: &Ctx,
    tenant: Option<&TenantId>,
) -> Result<tenants::Tenant, Error> {
    let wanted = tenant.unwrap_or(&ctx.tenant);
    state
        .db
        .read(|c| tenants::repo::find(c, wanted))?
        .filter(|t| ctx.reaches_tenant(&t.id))
        .ok_or(Error::NotFound("tenant"))
}

/// Whether a workspace requires two-factor login. Any operator may read its own.
pub fn policy(
    state: &AppState,
    ctx: &Ctx,
    tenant: Option<&TenantId>,
) -> Result<WorkspacePolicy, Error> {
    acting_operator(state, ctx)?;
    let tenant = policy_tenant(state, ctx, tenant)?;
    let required = state
        .db
        .read(|c| two_factor::repo::is_required(c, &tenant.id))?;
    Ok(WorkspacePolicy {
        tenant_id: tenant.id,
        required,
    })
}

/// Requires (or stops requiring) two-factor login in a workspace. ADMIN operators only.
pub async fn set_policy(
    state: &AppState,
    ctx: &Ctx,
    tenant: Option<&TenantId>,
    required: bool,
) -> Result<WorkspacePolicy, Error> {
    if !matches!(
        ctx.actor,
        Actor::Operator {
            role: operators::Role::Admin,
            ..
        }
    ) {
        return Err(Error::Forbidden(
            "Only ADMIN operators may require two-factor login for a workspace".into(),
        ));
    }
    let tenant = policy_tenant(state, ctx, tenant)?;
    let event = ctx
        .event(&tenant.id, AuditAction::TwoFactorPolicyUpdate)
        .detail(json!({"required": required}));
    let tenant_id = tenant.id.clone();
    state
        .db
        .write(move |c| {
            two_factor::repo::set_required(c, &tenant_id, required, now_ms())?;
            audit::repo::insert(c, &event)
        })
        .await?;
    Ok(WorkspacePolicy {
        tenant_id: tenant.id,
        required,
    })
}

/// The second step of a two-factor sign-in: the challenge of the password step and a code
/// (single-use) or a recovery code (single-use). Limited like the password step: per IP, and
/// every wrong code spends the account's (or the device cookie's) failure budget.
pub async fn complete_sign_in(
    state: &AppState,
    ip: Option<IpAddr>,
    challenge: &Challenge,
    factor: Factor,
    devices: &[(String, String)],
) -> Result<LoginOutcome, Error> {
    if let Some(ip) = ip {
        state.limits.login_per_ip.check(&ip)?;
    }
    // Malformed input is refused before it costs anything (and changes nothing).
    let factor = match factor {
        Factor::Code(code) => Factor::Code(two_factor::normalize_code(&code)?),
        Factor::RecoveryCode(code) => {
            two_factor::recovery_code_hash(&code)?;
            Factor::RecoveryCode(code)
        }
    };
    let operator = state
        .db
        .read(|c| operators::repo::find(c, &challenge.operator_id))?
        .filter(|o| o.disabled_at.is_none() && challenge.issued_at_ms >= o.sessions_valid_after)
        .ok_or_else(|| Error::Unauthorized(CHALLENGE_INVALID.into()))?;
    if !is_enabled(state, &operator.id)? {
        return Err(Error::Unauthorized(CHALLENGE_INVALID.into()));
    }
    let attempt = login_guard::admit(
        state,
        AccountKind::Operator,
        &operator.email,
        Some(&operator.id),
        devices,
    )?;
    let master = state.master.clone();
    let ip_text = ip.map(|i| i.to_string());
    let actor = format!("operator:{}", operator.id);
    let (id, tenant) = (operator.id.clone(), operator.tenant_id.clone());
    let known_device = attempt.from_known_device();
    let accepted = state
        .db
        .write(move |c| {
            let event = |action| AuditEvent::new(&tenant, &actor, action).ip(ip_text.as_deref());
            let (accepted, method) = match &factor {
                Factor::Code(code) => (accept_code(c, &master, &id, code)?, "totp"),
                Factor::RecoveryCode(code) => {
                    let hash = two_factor::recovery_code_hash(code)?;
                    let used = two_factor::repo::use_recovery_code(c, &id, &hash, now_ms())?;
                    if used {
                        let left = two_factor::repo::recovery_codes_left(c, &id)?;
                        audit::repo::insert(
                            c,
                            &event(AuditAction::TwoFactorRecoveryCodeUse)
                                .detail(json!({"recoveryCodesLeft": left})),
                        )?;
                    }
                    (used, "recovery_code")
                }
            };
            let recorded = if accepted {
                event(AuditAction::OperatorLogin).detail(json!({"secondFactor": method}))
            } else {
                event(AuditAction::TwoFactorFailed)
                    .detail(json!({"method": method, "knownDevice": known_device}))
            };
            audit::repo::insert(c, &recorded)?;
            Ok(accepted)
        })
        .await?;
    if !accepted {
        return Err(Error::Unauthorized(WRONG_FACTOR.into()));
    }
    let device = attempt.succeeded(state, AccountKind::Operator, &operator.id)?;
    Ok(LoginOutcome { operator, device })
}
