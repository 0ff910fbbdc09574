//! Tenants: isolated vendor namespaces, created and listed from the operator's shell.

use crate::domain::audit::{self, AuditAction};
use crate::domain::tenants::{self, Tenant};
use crate::domain::{TenantId, TenantScope};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// The shell's context acting in the tenant named by `slug`: what every `keyward <resource>`
/// command starts from.
pub fn cli_context(state: &AppState, slug: &str) -> Result<Ctx, Error> {
    let tenant = state
        .db
        .read(|c| tenants::repo::find_by_slug(c, slug))?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no tenant {slug:?}; create it with `keyward tenant create --slug {slug} --name …`"
            ))
        })?;
    Ok(Ctx::cli(TenantId::from(tenant.id)))
}

/// Creating a tenant is for callers that reach every tenant (the shell, ADMIN operators).
pub async fn create(state: &AppState, ctx: &Ctx, slug: &str, name: &str) -> Result<Tenant, Error> {
    if ctx.tenants != TenantScope::All {
        return Err(Error::Forbidden(
            "Only the server's owner may create tenants".into(),
        ));
    }
    let ctx = ctx.clone();
    let (slug, name) = (slug.to_owned(), name.to_owned());
    state
        .db
        .write(move |c| {
            let tenant = tenants::repo::create(c, &slug, &name)?;
            audit::repo::insert(c, &ctx.event(&tenant.id, AuditAction::TenantCreate))?;
            Ok(tenant)
        })
        .await
}

/// Tenants within the caller's reach, oldest first.
pub fn list(state: &AppState, ctx: &Ctx) -> Result<Vec<Tenant>, Error> {
    let mut all = state.db.read(tenants::repo::list)?;
    all.retain(|t| ctx.reaches_tenant(&t.id));
    Ok(all)
}
