//! `X-API-Key` authentication. Each scope is its own extractor type, so a handler's signature
//! states the access it needs and no handler body can forget to check it.

use poem::{IntoResponse, Request};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::ApiKey;

use super::error::VendorError;
use crate::api::ClientIp;
use crate::domain::api_keys::{self, Scope};
use crate::domain::now_ms;
use crate::error::Error;
use crate::state::AppState;

/// A request proven to come with a live API key of `tenant_id`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub api_key_id: String,
    pub scope: Scope,
    /// Keys restricted to one product see nothing of the others.
    pub product_id: Option<String>,
    pub ip: Option<String>,
    /// The same address, parsed (for abuse reports).
    pub client_ip: Option<std::net::IpAddr>,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.api_key_id)
    }

    /// Where an abuse report about this caller's request belongs.
    pub fn abuse_scope(&self) -> crate::abuse::Scope {
        crate::abuse::Scope::Tenant {
            tenant_id: self.tenant_id.clone(),
            product_id: self.product_id.clone(),
        }
    }

    pub fn sees_product(&self, product_id: &str) -> bool {
        self.product_id.as_deref().is_none_or(|p| p == product_id)
    }
}

/// Any live API key (VALIDATE_ONLY and above).
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "validate_only"
)]
pub struct ValidateScope(pub Caller);

/// An API key with CREATE_LICENSE scope or above.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "create_license"
)]
pub struct CreateScope(pub Caller);

/// An API key with READ_ONLY scope or above.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "read_only"
)]
pub struct ReadScope(pub Caller);

async fn validate_only(req: &Request, key: ApiKey) -> poem::Result<Caller> {
    authenticate(req, &key.key, Scope::ValidateOnly).map_err(refuse)
}

async fn create_license(req: &Request, key: ApiKey) -> poem::Result<Caller> {
    authenticate(req, &key.key, Scope::CreateLicense).map_err(refuse)
}

async fn read_only(req: &Request, key: ApiKey) -> poem::Result<Caller> {
    authenticate(req, &key.key, Scope::ReadOnly).map_err(refuse)
}

/// Proves `presented` is a live API key with at least `needed` scope, within its rate limit.
/// Faces map the error to their envelope.
pub fn authenticate(req: &Request, presented: &str, needed: Scope) -> Result<Caller, Error> {
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
    Ok(Caller {
        tenant_id: key.tenant_id.clone(),
        api_key_id: key.id.clone(),
        scope: key.scope,
        product_id: key.product_id.clone(),
        ip: ip.map(|i| i.to_string()),
        client_ip: ip,
    })
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

fn refuse(err: Error) -> poem::Error {
    poem::Error::from_response(VendorError::from_error(&err).into_response())
}
