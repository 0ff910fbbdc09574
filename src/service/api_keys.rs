//! API keys: minted, listed and revoked by operators (admin panel), by FULL_ADMIN keys
//! (automation) and by the operator's shell.
//!
//! Nobody mints a key stronger than itself: an API key mints keys of at most its own scope,
//! and a product-restricted key mints only keys restricted to its product; a USER operator
//! mints keys of at most READ_ONLY scope, so no key a USER holds reaches operator
//! administration or writes beyond what a USER may do. Keys outside the caller's reach (another
//! tenant, another product for a restricted key) are answered as missing.

use serde_json::json;

use crate::domain::api_keys::{self, ApiKey, Scope};
use crate::domain::audit::{self, AuditAction};
use crate::domain::operators::Role;
use crate::domain::products;
use crate::domain::{ApiKeyId, ProductId, ProductScope, TenantId, now_ms};
use crate::error::Error;
use crate::service::{Actor, Ctx};
use crate::state::AppState;

/// How the caller names the product a new key is restricted to.
#[derive(Debug, Clone)]
pub enum ProductRef {
    /// By id, within the caller's reach (the admin API).
    Id(ProductId),
    /// By slug, within the caller's own tenant (the shell).
    Slug(String),
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scope: Scope,
    pub product: Option<ProductRef>,
}

/// A key just minted, with its plaintext: shown this once, never stored.
#[derive(Debug, Clone)]
pub struct MintedApiKey {
    pub key: ApiKey,
    pub plaintext: String,
}

/// A revoked key, and whether this call revoked it (false: it already was).
#[derive(Debug, Clone)]
pub struct RevokedApiKey {
    pub key: ApiKey,
    pub newly: bool,
}

/// The strongest scope the caller may give a key it mints.
fn scope_ceiling(ctx: &Ctx) -> Option<Scope> {
    match &ctx.actor {
        Actor::Operator {
            role: Role::Admin, ..
        }
        | Actor::Cli => Some(Scope::FullAdmin),
        Actor::Operator {
            role: Role::User, ..
        } => Some(Scope::ReadOnly),
        Actor::ApiKey { scope, .. } => Some(*scope),
        Actor::PortalUser { .. } | Actor::App | Actor::System | Actor::PaymentProvider { .. } => {
            None
        }
    }
}

/// True when the key is within the caller's reach: its tenant, and for a product-restricted
/// caller only keys restricted to that same product.
fn reaches_key(ctx: &Ctx, key: &ApiKey) -> bool {
    ctx.reaches_tenant(&key.tenant_id)
        && match &ctx.products {
            ProductScope::All => true,
            ProductScope::Only(p) => key.product_id.as_deref() == Some(p.as_str()),
        }
}

/// API keys within the caller's reach, newest first.
pub fn list(state: &AppState, ctx: &Ctx) -> Result<Vec<ApiKey>, Error> {
    let mut keys = state
        .db
        .read(|c| api_keys::repo::list_in(c, ctx.tenants.filter()))?;
    keys.retain(|k| reaches_key(ctx, k));
    Ok(keys)
}

pub async fn create(state: &AppState, ctx: &Ctx, input: NewApiKey) -> Result<MintedApiKey, Error> {
    let ceiling = scope_ceiling(ctx)
        .ok_or_else(|| Error::Forbidden("This caller cannot create API keys".into()))?;
    if !ceiling.includes(input.scope) {
        let who = match &ctx.actor {
            Actor::Operator { .. } => "a USER operator",
            _ => "this API key",
        };
        return Err(Error::Forbidden(format!(
            "{who} may create API keys of scope {ceiling} or lower, not {}",
            input.scope
        )));
    }
    // A restricted caller naming another product gets 404 below (out of reach, like a
    // missing one); an unrestricted key would reach every product of the tenant.
    if let ProductScope::Only(own) = &ctx.products
        && input.product.is_none()
    {
        return Err(Error::Forbidden(format!(
            "This API key is restricted to project {own}: it may only create keys restricted \
             to it (send projectId {own})"
        )));
    }
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let (tenant_id, product_id) = match &input.product {
                None => (ctx.tenant.to_string(), None),
                Some(ProductRef::Id(id)) => {
                    let p = products::repo::find_in(c, ctx.tenants.filter(), id)?
                        .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
                        .ok_or(Error::NotFound("project"))?;
                    (p.tenant_id, Some(p.id))
                }
                Some(ProductRef::Slug(slug)) => {
                    let p = products::repo::find_by_slug(c, &ctx.tenant, slug)?
                        .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
                        .ok_or_else(|| {
                            Error::Invalid(format!("no product {slug:?} in tenant {}", ctx.tenant))
                        })?;
                    (p.tenant_id, Some(p.id))
                }
            };
            let (key, plaintext) = api_keys::create(
                c,
                &tenant_id,
                &input.name,
                input.scope,
                product_id.as_deref(),
            )?;
            audit::repo::insert(
                c,
                &ctx.event(&tenant_id, AuditAction::ApiKeyCreate)
                    .detail(json!({
                        "apiKeyId": key.id,
                        "scope": key.scope.as_str(),
                        "projectId": key.product_id,
                    })),
            )?;
            Ok(MintedApiKey { key, plaintext })
        })
        .await
}

/// Revokes the key named by id (or prefix); revoking a revoked key changes nothing.
pub async fn revoke(
    state: &AppState,
    ctx: &Ctx,
    id_or_prefix: &str,
) -> Result<RevokedApiKey, Error> {
    let ctx = ctx.clone();
    let id_or_prefix = id_or_prefix.to_owned();
    let revoked = state
        .db
        .write(move |c| {
            let key =
                api_keys::repo::find_by_id_or_prefix_in(c, ctx.tenants.filter(), &id_or_prefix)?
                    .filter(|k| reaches_key(&ctx, k))
                    .ok_or(Error::NotFound("API key"))?;
            let newly = key.revoked_at.is_none();
            if newly {
                api_keys::repo::revoke(c, &key.tenant_id, &key.id, now_ms())?;
                audit::repo::insert(
                    c,
                    &ctx.event(&key.tenant_id, AuditAction::ApiKeyRevoke)
                        .detail(json!({"apiKeyId": key.id})),
                )?;
            }
            let key = api_keys::repo::find_in(c, Some(&key.tenant_id), &key.id)?
                .ok_or(Error::NotFound("API key"))?;
            Ok(RevokedApiKey { key, newly })
        })
        .await?;
    // Revoked means revoked now, not when the cached copy ages out.
    state.api_key_cache.forget(&revoked.key.prefix);
    Ok(revoked)
}

/// Proves `presented` is a live API key with at least `needed` scope, within its rate limit;
/// the caller context it acts with. The row is cached briefly (every validation reads it).
pub fn authenticate(
    state: &AppState,
    presented: &str,
    needed: Scope,
    ip: Option<std::net::IpAddr>,
) -> Result<Ctx, Error> {
    let presented = presented.trim();
    let key = match api_keys::prefix_of(presented) {
        None => None,
        Some(prefix) => {
            let row = match state.api_key_cache.get(prefix) {
                Some(row) => Some(row),
                None => {
                    let row = state
                        .db
                        .read(|c| api_keys::repo::find_by_prefix(c, prefix))?;
                    row.map(|k| {
                        note_use(state, &k);
                        state.api_key_cache.put(prefix, k)
                    })
                }
            };
            row.filter(|k| api_keys::matches(k, presented))
        }
    };
    let Some(key) = key else {
        // Each wrong key costs the IP one token of a small allowance: guessing stops early.
        if let Some(ip) = ip {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        return Err(Error::Unauthorized("Invalid or revoked API key".into()));
    };
    if !key.scope.includes(needed) {
        return Err(Error::Forbidden(format!(
            "This API key has scope {}; this operation needs {} or higher",
            key.scope, needed
        )));
    }
    if let Err(e) = state.limits.per_api_key.check(&key.id) {
        state
            .abuse
            .rate_limited(None, Some((key.tenant_id.as_str(), key.id.as_str())));
        return Err(e);
    }
    Ok(Ctx::api_key(
        ApiKeyId::from(key.id.as_str()),
        key.scope,
        TenantId::from(key.tenant_id.as_str()),
        key.product_id.as_deref().map(ProductId::from),
        ip,
    ))
}

/// Records the key's last use when its row is (re)read, at most once a minute per key, so busy
/// keys cost no writes.
fn note_use(state: &AppState, key: &api_keys::ApiKey) {
    let now = now_ms();
    if key.last_used_at.is_some_and(|t| now - t < 60_000) {
        return;
    }
    let db = state.db.clone();
    let id = key.id.clone();
    tokio::spawn(async move {
        if let Err(e) = db
            .write(move |c| api_keys::repo::set_last_used(c, &id, now))
            .await
        {
            tracing::warn!("cannot record API key use: {e}");
        }
    });
}
