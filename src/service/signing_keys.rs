//! A product's signing keys: listing them (for operators, and publicly for apps that pin
//! keys), rotating to a new current key endorsed by the previous one, and retiring old keys.
//! See `domain::signing_keys` for the rules.

use serde_json::json;

use super::Ctx;
use super::catalog;
use crate::domain::audit::{self, AuditAction};
use crate::domain::products::Product;
use crate::domain::signing_keys::{self, SigningKeyRecord};
use crate::domain::{ProductId, now_ms};
use crate::error::Error;
use crate::state::AppState;

/// A product with its keys, oldest first.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub product: Product,
    pub keys: Vec<SigningKeyRecord>,
}

/// The keys of a product within reach.
pub fn list(state: &AppState, ctx: &Ctx, id: &ProductId) -> Result<KeyRing, Error> {
    state.db.read(|c| {
        let product = catalog::reachable(c, ctx, id)?;
        let keys = signing_keys::repo::list(c, &product.id)?;
        Ok(KeyRing { product, keys })
    })
}

/// The keys of the product a client names by tenant and product slug (no credential: public
/// keys are public), for the public key endpoint.
pub fn public_keys(
    state: &AppState,
    tenant_slug: &str,
    product_slug: &str,
) -> Result<KeyRing, Error> {
    let product = catalog::find_public(state, tenant_slug, product_slug)?;
    let keys = state
        .db
        .read(|c| signing_keys::repo::list(c, &product.id))?;
    Ok(KeyRing { product, keys })
}

/// Makes a new current signing key for a product within reach, endorsed by the key current
/// until now, audited as `project.signing_key.rotate`. From the moment it answers, every
/// answer, license file and bundle of the product this process signs is signed by the new key.
pub async fn rotate(
    state: &AppState,
    ctx: &Ctx,
    id: &ProductId,
) -> Result<SigningKeyRecord, Error> {
    let master = state.master.clone();
    let ctx = ctx.clone();
    let id = id.clone();
    let rotated = state
        .db
        .write(move |c| {
            let product = catalog::reachable(c, &ctx, &id)?;
            let rotated = signing_keys::rotate(c, &master, &product, now_ms())?;
            let event = ctx
                .event(&product.tenant_id, AuditAction::SigningKeyRotate)
                .product(&product.id)
                .detail(json!({
                    "kid": rotated.key.kid,
                    "endorsedBy": rotated.key.endorsement.as_ref().map(|e| &e.kid),
                }));
            audit::repo::insert(c, &event)?;
            Ok(rotated)
        })
        .await?;
    let product_id = rotated.key.product_id.clone();
    // Committed: the next signature is the new key's, not when a cached copy ages out.
    state.signing_keys.replace(&product_id, rotated.open);
    state.product_cache.forget(&product_id);
    Ok(rotated.key)
}

/// Retires the key `kid` of a product within reach, audited as `project.signing_key.retire`
/// (once: retiring a retired key answers it unchanged). The current key cannot be retired.
pub async fn retire(
    state: &AppState,
    ctx: &Ctx,
    id: &ProductId,
    kid: &str,
) -> Result<SigningKeyRecord, Error> {
    let kid = signing_keys::parse_kid(kid)?;
    let ctx = ctx.clone();
    let id = id.clone();
    state
        .db
        .write(move |c| {
            let product = catalog::reachable(c, &ctx, &id)?;
            let (key, retired) = signing_keys::retire(c, &product.id, &kid, now_ms())?;
            if retired {
                let event = ctx
                    .event(&product.tenant_id, AuditAction::SigningKeyRetire)
                    .product(&product.id)
                    .detail(json!({"kid": key.kid}));
                audit::repo::insert(c, &event)?;
            }
            Ok(key)
        })
        .await
}
