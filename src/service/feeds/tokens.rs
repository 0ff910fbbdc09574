//! A license's feed tokens and a product's public-feeds switch.

use serde_json::json;

use crate::domain::ProductId;
use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::feeds::{repo, token};
use crate::domain::licenses::License;
use crate::domain::now_ms;
use crate::domain::products::Product;
use crate::error::Error;
use crate::service::Ctx;
use crate::service::catalog;
use crate::service::updates::LicensedApp;
use crate::state::AppState;

/// A new feed token for the app's license (shown once; stored as SHA-256).
pub async fn issue_feed_token(state: &AppState, app: &LicensedApp) -> Result<String, Error> {
    let (token, hash) = token::new_feed_token();
    let license = app.license.clone();
    let ctx = app.ctx.clone();
    let prefix: String = token.chars().take(10).collect();
    state
        .db
        .write(move |c| {
            repo::insert_token(
                c,
                &hash,
                &repo::FeedToken {
                    tenant_id: license.tenant_id.clone(),
                    product_id: license.product_id.clone(),
                    license_id: license.id.clone(),
                    prefix: prefix.clone(),
                    created_at: now_ms(),
                },
            )?;
            audit::repo::insert(
                c,
                &app_event(&ctx, &license, AuditAction::FeedTokenIssue)
                    .detail(json!({"prefix": prefix})),
            )?;
            Ok(())
        })
        .await?;
    Ok(token)
}

/// Revokes every feed token of the app's license; how many there were.
pub async fn revoke_feed_tokens(state: &AppState, app: &LicensedApp) -> Result<u64, Error> {
    let license = app.license.clone();
    let ctx = app.ctx.clone();
    state
        .db
        .write(move |c| {
            let revoked = repo::delete_tokens_of(c, &license.id)?;
            audit::repo::insert(
                c,
                &app_event(&ctx, &license, AuditAction::FeedTokenRevoke)
                    .detail(json!({"revoked": revoked})),
            )?;
            Ok(revoked)
        })
        .await
}

fn app_event(ctx: &Ctx, license: &License, action: AuditAction) -> AuditEvent {
    // As update downloads do: the key proved the request, so the actor is the license.
    AuditEvent::new(&license.tenant_id, "license", action)
        .license(&license.product_id, &license.id)
        .ip(ctx.ip_text().as_deref())
}

/// A product's feed settings.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub product: Product,
    /// The feeds answer without a license.
    pub public: bool,
}

pub fn settings(state: &AppState, ctx: &Ctx, id: &ProductId) -> Result<FeedSettings, Error> {
    state.db.read(|c| {
        let product = catalog::reachable(c, ctx, id)?;
        let public = repo::is_public(c, &product.id)?;
        Ok(FeedSettings { product, public })
    })
}

/// Makes a product's feeds public or licensed, audited as a project update.
pub async fn set_public(
    state: &AppState,
    ctx: &Ctx,
    id: ProductId,
    public: bool,
) -> Result<FeedSettings, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let product = catalog::reachable(c, &ctx, &id)?;
            repo::set_public(c, &product.id, public)?;
            audit::repo::insert(
                c,
                &ctx.event(&product.tenant_id, AuditAction::ProductUpdate)
                    .product(&product.id)
                    .detail(json!({"feedsPublic": public})),
            )?;
            Ok(FeedSettings { product, public })
        })
        .await
}
