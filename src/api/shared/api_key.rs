//! `X-API-Key` authentication, shared by the vendor face and the admin API (FULL_ADMIN keys).

use poem::Request;

use crate::api::ClientIp;
use crate::domain::api_keys::Scope;
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Proves `presented` is a live API key with at least `needed` scope, within its rate limit.
/// Faces map the error to their envelope.
pub fn authenticate(req: &Request, presented: &str, needed: Scope) -> Result<Ctx, Error> {
    let Some(state) = req.data::<AppState>() else {
        return Err(Error::Storage("application state missing".into()));
    };
    crate::service::api_keys::authenticate(state, presented, needed, ClientIp::of(req))
}
