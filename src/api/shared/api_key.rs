//! `X-API-Key` authentication, shared by the vendor face and the admin API (FULL_ADMIN keys).

use poem::Request;

use crate::api::ClientIp;
use crate::domain::api_keys::{self, Scope};
use crate::domain::now_ms;
use crate::domain::{ApiKeyId, ProductId, TenantId};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Proves `presented` is a live API key with at least `needed` scope, within its rate limit.
/// Faces map the error to their envelope.
pub fn authenticate(req: &Request, presented: &str, needed: Scope) -> Result<Ctx, Error> {
    let Some(state) = req.data::<AppState>() else {
        return Err(Error::Storage("application state missing".into()));
    };
    let ip = ClientIp::of(req);
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
