//! Abuse administration: the flags detection raised, the IP blocks in force, and each
//! product's thresholds, automatic actions and webhook. Flags and policies belong to a product
//! and are scoped by the caller's context like any product's object. IP blocks act on every
//! product of the server at once, so a caller restricted to one product may not see or lift
//! them.

use rusqlite::Connection;
use serde_json::{Value, json};

use super::Ctx;
use crate::domain::abuse::repo::FlagFilter;
use crate::domain::abuse::{self, AbuseKind, AbusePolicy, Flag, FlagState, IpBlock};
use crate::domain::audit::{self, AuditAction, Caller};
use crate::domain::webhooks::EventType;
use crate::domain::{FlagId, ProductId, now_ms, products};
use crate::error::Error;
use crate::state::AppState;

/// The audit trail's view of the caller (the domain's abuse rules record their own events).
fn caller(ctx: &Ctx) -> Caller {
    Caller {
        actor: ctx.actor_label(),
        ip: ctx.ip_text(),
    }
}

fn reachable_flag(c: &Connection, ctx: &Ctx, id: &str) -> Result<Flag, Error> {
    abuse::repo::find_flag_in(c, ctx.tenants.filter(), id)?
        .filter(|f| flag_reached(ctx, f))
        .ok_or(Error::NotFound("flag"))
}

/// A flag not tied to a product (key guessing from one address) concerns the whole tenant:
/// only a caller that reaches every product of it sees the flag.
fn flag_reached(ctx: &Ctx, f: &Flag) -> bool {
    match &f.product_id {
        Some(p) => ctx.reaches(&f.tenant_id, p),
        None => ctx.reaches_tenant(&f.tenant_id) && !ctx.product_restricted(),
    }
}

fn reachable_product(c: &Connection, ctx: &Ctx, id: &str) -> Result<products::Product, Error> {
    products::repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|p| ctx.products.reaches(&p.id))
        .ok_or(Error::NotFound("project"))
}

fn refuse_product_restricted(ctx: &Ctx) -> Result<(), Error> {
    if ctx.product_restricted() {
        return Err(Error::Forbidden(
            "IP blocks apply to every product; an API key restricted to one product cannot manage them"
                .into(),
        ));
    }
    Ok(())
}

/// Which flags to list.
#[derive(Debug, Default, Clone)]
pub struct FlagQuery {
    pub product_id: Option<ProductId>,
    pub kind: Option<AbuseKind>,
    pub state: Option<FlagState>,
}

/// One page of the flags the caller reaches, most recently updated first, and the total.
pub async fn list_flags(
    state: &AppState,
    ctx: &Ctx,
    query: FlagQuery,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Flag>, u64), Error> {
    if query.product_id.as_ref().is_some_and(|p| p.len() > 64) {
        return Err(Error::Invalid(
            "projectId must be at most 64 characters".into(),
        ));
    }
    let product = match (ctx.products.filter(), query.product_id) {
        (Some(own), Some(asked)) if own != asked.as_str() => return Ok((Vec::new(), 0)),
        (Some(own), _) => Some(own.to_owned()),
        (None, asked) => asked.map(|p| p.0),
    };
    let tenants = ctx.tenants.filter().map(str::to_owned);
    let (kind, flag_state) = (query.kind, query.state);
    state
        .db
        .read_blocking(move |c| {
            let filter = FlagFilter {
                tenant_scope: tenants.as_deref(),
                product_id: product.as_deref(),
                kind,
                state: flag_state,
            };
            abuse::repo::list_flags(c, &filter, limit, offset)
        })
        .await
}

pub fn get_flag(state: &AppState, ctx: &Ctx, id: &FlagId) -> Result<Flag, Error> {
    state.db.read(|c| reachable_flag(c, ctx, id))
}

/// Resolves, dismisses or reopens a flag. Dismissing undoes its automatic actions (lifts its
/// IP blocks, reactivates the license it suspended); resolving keeps them. Audited.
pub async fn update_flag(
    state: &AppState,
    ctx: &Ctx,
    id: FlagId,
    to: FlagState,
) -> Result<Flag, Error> {
    let ctx = ctx.clone();
    let (flag, change) = state
        .db
        .write(move |c| {
            let flag = reachable_flag(c, &ctx, &id)?;
            let change = abuse::change_state(c, &flag, to, &caller(&ctx), now_ms())?;
            if change.reactivated_license
                && let Some(license_id) = &flag.license_id
                && let Some(license) =
                    crate::domain::licenses::repo::find(c, &flag.tenant_id, license_id)?
            {
                super::events::emit(
                    c,
                    &license.tenant_id,
                    Some(&license.product_id),
                    EventType::LicenseReinstated,
                    super::events::license_data(&license),
                )?;
            }
            Ok((reachable_flag(c, &ctx, &id)?, change))
        })
        .await?;
    if change.reactivated_license {
        state.webhooks.wake();
    }
    if change.lifted_blocks > 0 {
        crate::abuse::reload_blocks(state)?;
    }
    Ok(flag)
}

/// One page of IP blocks, newest first, and the total; `active` keeps those in force.
pub async fn list_blocks(
    state: &AppState,
    ctx: &Ctx,
    active: bool,
    limit: u32,
    offset: u64,
) -> Result<(Vec<IpBlock>, u64), Error> {
    refuse_product_restricted(ctx)?;
    let tenants = ctx.tenants.filter().map(str::to_owned);
    let active_at = active.then(now_ms);
    state
        .db
        .read_blocking(move |c| {
            abuse::repo::list_blocks(c, tenants.as_deref(), active_at, limit, offset)
        })
        .await
}

/// Lifts an IP block: the address is served again at once. Lifting a lifted block changes
/// nothing. Audited.
pub async fn lift_block(state: &AppState, ctx: &Ctx, id: String) -> Result<IpBlock, Error> {
    refuse_product_restricted(ctx)?;
    let ctx = ctx.clone();
    let block = state
        .db
        .write(move |c| {
            let block = abuse::repo::find_block_in(c, ctx.tenants.filter(), &id)?
                .ok_or(Error::NotFound("block"))?;
            abuse::lift_block(c, &block, &caller(&ctx), now_ms())?;
            abuse::repo::find_block_in(c, ctx.tenants.filter(), &id)?
                .ok_or(Error::NotFound("block"))
        })
        .await?;
    crate::abuse::reload_blocks(state)?;
    Ok(block)
}

/// A product's abuse policy, and whether its webhook secret exists.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub policy: AbusePolicy,
    pub webhook_secret_set: bool,
    /// A newly generated webhook secret: present only in the answer that generated it.
    pub new_webhook_secret: Option<String>,
}

/// A product's abuse policy (defaults for what was never set).
pub fn policy(state: &AppState, ctx: &Ctx, product_id: &ProductId) -> Result<PolicyState, Error> {
    state.db.read(|c| {
        let product = reachable_product(c, ctx, product_id)?;
        let stored = abuse::repo::policy_of(c, &product.id)?.and_then(|(_, p)| p);
        let secret = abuse::repo::webhook_secret_sealed(c, &product.id)?;
        Ok(PolicyState {
            policy: AbusePolicy::from_stored(stored.as_deref()),
            webhook_secret_set: secret.is_some(),
            new_webhook_secret: None,
        })
    })
}

/// Changes a product's abuse policy: `edit` changes the stored policy, which must then be
/// valid. Setting a webhook URL for the first time, or `rotate_webhook_secret`, generates the
/// webhook secret (answered once); removing the URL removes the secret. Applies at once.
/// Audited.
pub async fn update_policy(
    state: &AppState,
    ctx: &Ctx,
    product_id: ProductId,
    edit: impl FnOnce(&mut AbusePolicy) + Send + 'static,
    rotate_webhook_secret: bool,
) -> Result<PolicyState, Error> {
    let ctx = ctx.clone();
    let master = state.master.clone();
    let allow_private = state.config.webhook_allow_private;
    let (product_id, answer) = state
        .db
        .write(move |c| {
            let product = reachable_product(c, &ctx, &product_id)?;
            let stored = abuse::repo::policy_of(c, &product.id)?.and_then(|(_, p)| p);
            let mut policy = AbusePolicy::from_stored(stored.as_deref());
            edit(&mut policy);
            policy.validate()?;
            if let Some(url) = &policy.webhook_url {
                refuse_internal_address(url, allow_private)?;
            }
            if rotate_webhook_secret && policy.webhook_url.is_none() {
                return Err(Error::Invalid(
                    "rotateWebhookSecret needs a webhookUrl (set one in the same request)".into(),
                ));
            }
            let mut secret_sealed = abuse::repo::webhook_secret_sealed(c, &product.id)?;
            let mut new_secret = None;
            if policy.webhook_url.is_none() {
                if secret_sealed.is_some() {
                    abuse::repo::set_webhook_secret(c, &product.id, None)?;
                    secret_sealed = None;
                }
            } else if secret_sealed.is_none() || rotate_webhook_secret {
                let secret = abuse::new_webhook_secret();
                let sealed = master.seal(secret.as_bytes())?;
                abuse::repo::set_webhook_secret(c, &product.id, Some(&sealed))?;
                secret_sealed = Some(sealed);
                new_secret = Some(secret);
            }
            let now = now_ms();
            let json = serde_json::to_string(&policy)
                .map_err(|e| Error::Storage(format!("cannot encode the policy: {e}")))?;
            abuse::repo::set_policy(c, &product.id, &json, now)?;
            let mut event = ctx
                .event(&product.tenant_id, AuditAction::AbusePolicyUpdate)
                .product(&product.id)
                .detail(json!({
                    "policy": serde_json::from_str::<Value>(&json).unwrap_or(Value::Null),
                    "webhookSecretRotated": new_secret.is_some(),
                }));
            event.at = now;
            audit::repo::insert(c, &event)?;
            Ok((
                product.id,
                PolicyState {
                    policy,
                    webhook_secret_set: secret_sealed.is_some(),
                    new_webhook_secret: new_secret,
                },
            ))
        })
        .await?;
    state.abuse.policy_changed(&product_id);
    state.product_cache.forget(&product_id);
    Ok(answer)
}

/// Generates a new webhook secret for a product that has a webhook URL (answered once).
pub async fn rotate_webhook_secret(
    state: &AppState,
    ctx: &Ctx,
    product_id: ProductId,
) -> Result<PolicyState, Error> {
    update_policy(state, ctx, product_id, |_| {}, true).await
}

/// A webhook URL naming an internal address outright is refused when it is set; a host name is
/// checked after resolution at each delivery (`outgoing::resolve`), since DNS can change.
fn refuse_internal_address(url: &str, allow_private: bool) -> Result<(), Error> {
    crate::outgoing::client::refuse_internal_literal(url, allow_private)
        .map_err(|why| Error::Invalid(format!("webhookUrl {why}")))
}
