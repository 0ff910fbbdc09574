//! Reading licenses: the admin list and detail, and an order's licenses.

use rusqlite::Connection;

use super::{KeyRef, reachable};
use crate::domain::activations::{self, Activation};
use crate::domain::audit::{self, AuditEvent};
use crate::domain::licenses::{self, License, LicenseStatus, Plan, repo::KeyRow};
use crate::domain::sessions::{self, Session};
use crate::domain::{Counted, LicenseId, ProductId, products};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Filters of the admin key list.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub project: Option<ProductId>,
    pub status: Option<LicenseStatus>,
    pub plan: Option<Plan>,
    /// Key or HWID prefix, or part of the note.
    pub text: Option<String>,
}

/// A license with its machines, sessions and most recent audit events.
#[derive(Debug, Clone)]
pub struct KeyDetail {
    pub license: License,
    pub activations: Vec<Activation>,
    pub sessions: Vec<Session>,
    /// A session not refreshed within this many milliseconds is no longer live.
    pub session_ttl_ms: i64,
    /// The 50 most recent, newest first.
    pub logs: Vec<AuditEvent>,
}

/// One page of the licenses the caller reaches, newest first, and the total.
pub async fn list(
    state: &AppState,
    ctx: &Ctx,
    filter: KeyFilter,
    limit: u32,
    offset: u64,
) -> Result<(Vec<KeyRow>, Counted), Error> {
    // The note index (FTS5) stops reading at a NUL, and no key, HWID or note holds a control
    // character: such a search is a mistake or a probe, answered as bad input.
    if filter
        .text
        .as_deref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        return Err(Error::Invalid(
            "search must not contain control characters".into(),
        ));
    }
    // A product-restricted caller lists its product only; asking for another lists nothing.
    let product = match (ctx.products.filter(), filter.project) {
        (Some(own), Some(asked)) if own != asked.as_str() => {
            return Ok((
                Vec::new(),
                Counted {
                    total: 0,
                    capped: false,
                },
            ));
        }
        (Some(own), _) => Some(own.to_owned()),
        (None, asked) => asked.map(|p| p.0),
    };
    let scope = ctx.tenants.filter().map(str::to_owned);
    // A search may scan many rows: keep it off the async workers.
    state
        .db
        .read_blocking(move |c| {
            let filters = licenses::repo::Search {
                tenant_scope: scope.as_deref(),
                product_id: product.as_deref(),
                status: filter.status,
                plan: filter.plan,
                text: filter.text.as_deref(),
            };
            licenses::repo::search(c, &filters, limit, offset)
        })
        .await
}

/// A license the caller reaches, with its machines, sessions and recent logs.
pub fn get(state: &AppState, ctx: &Ctx, id: &LicenseId) -> Result<KeyDetail, Error> {
    state.db.read(|c| detail_in(c, ctx, id))
}

/// A license the caller reaches, named by id or key, with its machines, sessions and logs.
pub fn find(state: &AppState, ctx: &Ctx, target: &KeyRef) -> Result<KeyDetail, Error> {
    state.db.read(|c| {
        let license = reachable(c, ctx, target, "license")?;
        detail_in(c, ctx, &LicenseId::from(license.id))
    })
}

pub(super) fn detail_in(c: &Connection, ctx: &Ctx, id: &LicenseId) -> Result<KeyDetail, Error> {
    let license = reachable(c, ctx, &KeyRef::Id(id.clone()), "key")?;
    let activations = activations::repo::for_license(c, &license.id)?;
    let logs = audit::repo::for_license(c, &license.tenant_id, &license.id, 50)?;
    let session_ttl_ms = products::repo::find(c, &license.tenant_id, &license.product_id)?
        .map(|p| p.settings.session_ttl_secs as i64 * 1000)
        .unwrap_or(0);
    let sessions = sessions::repo::for_license(c, &license.id)?;
    Ok(KeyDetail {
        license,
        activations,
        sessions,
        session_ttl_ms,
        logs,
    })
}

/// One page of the licenses issued for an external order, oldest first, and the total.
pub fn by_order(
    state: &AppState,
    ctx: &Ctx,
    order_id: &str,
    limit: u32,
    offset: u64,
) -> Result<(Vec<License>, u64), Error> {
    state.db.read(|c| {
        licenses::repo::list_by_order(
            c,
            &ctx.tenant,
            order_id,
            ctx.products.filter(),
            limit,
            offset,
        )
    })
}
