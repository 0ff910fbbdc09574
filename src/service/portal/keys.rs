//! Linking a license key to a portal account.

use super::{open_portal_of, signed_in_user};
use crate::domain::audit::AuditAction;
use crate::domain::licenses::{self, LicenseStatus, Plan};
use crate::domain::{activations, now_ms, portal_users};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// The key just linked, as the portal shows it.
#[derive(Debug)]
pub struct LinkedKey {
    pub mask: String,
    pub plan: Option<Plan>,
    pub status: LicenseStatus,
    /// True until the loader has bound the key to a machine.
    pub needs_hwid_binding: bool,
}

/// Links a key to the caller's account. The key must be of the caller's project (any other
/// answers like an unknown key), usable, and not linked to another account; a new key
/// replaces the old one.
pub async fn link_key(state: &AppState, ctx: &Ctx, key: &str) -> Result<LinkedKey, Error> {
    let key = licenses::normalize_key(key);
    if key.is_empty() {
        return Err(Error::Invalid("key is required".into()));
    }
    let (user, found) = state.db.read(|c| {
        let user = signed_in_user(c, ctx)?;
        let product = open_portal_of(c, ctx, &user)?;
        let found = licenses::repo::find_by_key_in_product(c, &product.id, &key)?
            .filter(|l| ctx.reaches(&l.tenant_id, &l.product_id));
        Ok((user, found))
    })?;
    let Some(license) = found else {
        // Each unknown key costs the IP one token of a small allowance: no guessing.
        state.abuse.unknown_key(
            ctx.ip,
            crate::abuse::Scope::ProductId(user.product_id.clone()),
        );
        if let Some(ip) = ctx.ip {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        return Err(Error::Invalid("key: no such key in this project".into()));
    };
    let ctx = ctx.clone();
    let (license, bound) = state
        .db
        .write(move |c| {
            portal_users::link_license(c, &user, &license)?;
            let event = ctx
                .event(&user.tenant_id, AuditAction::PortalActivate)
                .license(&license.product_id, &license.id);
            crate::domain::audit::repo::insert(c, &event)?;
            let bound = activations::repo::count(c, &license.id)? > 0;
            Ok((license, bound))
        })
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::Conflict(format!("key: {m}")),
            other => other,
        })?;
    Ok(LinkedKey {
        mask: portal_users::mask_key(&license.key),
        plan: license.plan,
        status: license.effective_status(now_ms()),
        needs_hwid_binding: !bound,
    })
}
