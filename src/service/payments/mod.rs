//! Selling: payment endpoints (each a provider's webhooks for one tenant), their mappings from
//! the provider's price/product/variant ids to a product and license settings, the events they
//! received, and a license's payment timeline. Receiving an event is [`receive`]'s.
//!
//! Endpoints span the products their mappings name, so a product-restricted API key manages
//! none of them; any other admin caller manages those of the tenants it reaches (another
//! tenant's endpoint is "not found").

mod receive;

pub use receive::{Received, receive};

use rusqlite::Connection;
use serde_json::json;

use crate::domain::audit::AuditAction;
use crate::domain::licenses::{LicenseTier, LicenseType, Plan};
use crate::domain::payments::{
    self, Endpoint, EndpointSummary, Mapping, Provider, StoredEvent, repo,
};
use crate::domain::{LicenseId, PaymentEndpointId, audit, entitlements, now_ms, products};
use crate::error::Error;
use crate::service::Ctx;
use crate::service::keys;
use crate::state::AppState;

/// A new endpoint.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub provider: Provider,
    pub name: String,
    /// The provider's signing secret, as its dashboard shows it.
    pub secret: String,
}

/// An endpoint's edits; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub name: Option<String>,
    pub secret: Option<String>,
}

/// An endpoint with its mappings.
#[derive(Debug, Clone)]
pub struct EndpointDetail {
    pub summary: EndpointSummary,
    pub mappings: Vec<Mapping>,
}

/// What a provider id sells.
#[derive(Debug, Clone)]
pub struct NewMapping {
    pub provider_ref: String,
    pub product: crate::domain::ProductId,
    pub license_type: Option<LicenseType>,
    pub tier: Option<LicenseTier>,
    pub plan: Option<Plan>,
    pub max_activations: Option<u32>,
    pub entitlements: Vec<String>,
}

/// One event of a license's payment timeline, with its provider.
pub type TimelineEntry = (Provider, StoredEvent);

fn ensure_manager(ctx: &Ctx) -> Result<(), Error> {
    if ctx.product_restricted() {
        return Err(Error::Forbidden(
            "payment endpoints span products: use an API key that is not restricted to one \
             product, or an operator session"
                .into(),
        ));
    }
    Ok(())
}

fn reachable(c: &Connection, ctx: &Ctx, id: &PaymentEndpointId) -> Result<Endpoint, Error> {
    repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|e| ctx.reaches_tenant(&e.tenant_id))
        .ok_or(Error::NotFound("payment endpoint"))
}

fn summary(c: &Connection, ctx: &Ctx, id: &str) -> Result<EndpointSummary, Error> {
    repo::list(c, ctx.tenants.filter())?
        .into_iter()
        .find(|s| s.endpoint.id == id)
        .ok_or(Error::NotFound("payment endpoint"))
}

pub async fn create_endpoint(
    state: &AppState,
    ctx: &Ctx,
    new: NewEndpoint,
) -> Result<EndpointSummary, Error> {
    ensure_manager(ctx)?;
    let name = payments::validate_name(&new.name)?;
    let secret = payments::validate_secret(&new.secret)?;
    let sealed = state.master.seal(secret.as_bytes())?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let now = now_ms();
            let endpoint = Endpoint {
                id: crate::crypto::new_id("payep"),
                tenant_id: ctx.tenant.to_string(),
                provider: new.provider,
                name,
                created_at: now,
                updated_at: now,
            };
            repo::insert_endpoint(c, &endpoint, &sealed)?;
            audit::repo::insert(
                c,
                &ctx.event(&endpoint.tenant_id, AuditAction::PaymentEndpointCreate)
                    .detail(
                        json!({"endpointId": endpoint.id, "provider": endpoint.provider.as_str()}),
                    ),
            )?;
            Ok(EndpointSummary {
                endpoint,
                mappings: 0,
                events: 0,
                flagged: 0,
            })
        })
        .await
}

pub fn list_endpoints(state: &AppState, ctx: &Ctx) -> Result<Vec<EndpointSummary>, Error> {
    ensure_manager(ctx)?;
    state.db.read(|c| repo::list(c, ctx.tenants.filter()))
}

pub fn get_endpoint(
    state: &AppState,
    ctx: &Ctx,
    id: &PaymentEndpointId,
) -> Result<EndpointDetail, Error> {
    ensure_manager(ctx)?;
    state.db.read(|c| detail_in(c, ctx, id))
}

fn detail_in(c: &Connection, ctx: &Ctx, id: &PaymentEndpointId) -> Result<EndpointDetail, Error> {
    let endpoint = reachable(c, ctx, id)?;
    Ok(EndpointDetail {
        summary: summary(c, ctx, &endpoint.id)?,
        mappings: repo::mappings(c, &endpoint.id)?,
    })
}

pub async fn update_endpoint(
    state: &AppState,
    ctx: &Ctx,
    id: PaymentEndpointId,
    changes: EndpointChanges,
) -> Result<EndpointDetail, Error> {
    ensure_manager(ctx)?;
    let name = changes
        .name
        .as_deref()
        .map(payments::validate_name)
        .transpose()?;
    let sealed = changes
        .secret
        .as_deref()
        .map(|s| payments::validate_secret(s).and_then(|s| state.master.seal(s.as_bytes())))
        .transpose()?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let endpoint = reachable(c, &ctx, &id)?;
            repo::update_endpoint(
                c,
                &endpoint.id,
                name.as_deref(),
                sealed.as_deref(),
                now_ms(),
            )?;
            // The secret itself is never recorded, only that it changed.
            audit::repo::insert(
                c,
                &ctx.event(&endpoint.tenant_id, AuditAction::PaymentEndpointUpdate)
                    .detail(json!({"endpointId": endpoint.id, "name": name,
                        "secretChanged": sealed.is_some()})),
            )?;
            detail_in(c, &ctx, &id)
        })
        .await
}

/// Deletes the endpoint with its mappings and events; the licenses it made stay.
pub async fn delete_endpoint(
    state: &AppState,
    ctx: &Ctx,
    id: PaymentEndpointId,
) -> Result<(), Error> {
    ensure_manager(ctx)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let endpoint = reachable(c, &ctx, &id)?;
            repo::delete_endpoint(c, &endpoint.id)?;
            audit::repo::insert(
                c,
                &ctx.event(&endpoint.tenant_id, AuditAction::PaymentEndpointDelete)
                    .detail(json!({"endpointId": endpoint.id})),
            )
        })
        .await
}

/// Creates or replaces the mapping of a provider id; returns the endpoint's mappings.
pub async fn put_mapping(
    state: &AppState,
    ctx: &Ctx,
    id: PaymentEndpointId,
    new: NewMapping,
) -> Result<Vec<Mapping>, Error> {
    ensure_manager(ctx)?;
    let provider_ref = payments::validate_ref(&new.provider_ref)?;
    let max_activations = payments::validate_max_activations(new.max_activations)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let endpoint = reachable(c, &ctx, &id)?;
            let product = products::repo::find(c, &endpoint.tenant_id, &new.product)?
                .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
                .ok_or(Error::NotFound("project"))?;
            let codes = entitlements::parse_for_product(
                "entitlements",
                &new.entitlements,
                &product.entitlements,
            )?;
            let mapping = Mapping {
                endpoint_id: endpoint.id.clone(),
                provider_ref,
                product_id: product.id.clone(),
                license_type: new.license_type,
                tier: new.tier.unwrap_or(LicenseTier::Personal),
                plan: new.plan,
                max_activations,
                entitlements: codes,
                created_at: now_ms(),
            };
            repo::upsert_mapping(c, &mapping)?;
            audit::repo::insert(
                c,
                &ctx.event(&endpoint.tenant_id, AuditAction::PaymentMappingUpdate)
                    .product(&product.id)
                    .detail(json!({"endpointId": endpoint.id,
                        "providerRef": mapping.provider_ref})),
            )?;
            repo::mappings(c, &endpoint.id)
        })
        .await
}

pub async fn delete_mapping(
    state: &AppState,
    ctx: &Ctx,
    id: PaymentEndpointId,
    provider_ref: String,
) -> Result<Vec<Mapping>, Error> {
    ensure_manager(ctx)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let endpoint = reachable(c, &ctx, &id)?;
            if !repo::delete_mapping(c, &endpoint.id, &provider_ref)? {
                return Err(Error::NotFound("mapping"));
            }
            audit::repo::insert(
                c,
                &ctx.event(&endpoint.tenant_id, AuditAction::PaymentMappingUpdate)
                    .detail(
                        json!({"endpointId": endpoint.id, "providerRef": provider_ref,
                        "deleted": true}),
                    ),
            )?;
            repo::mappings(c, &endpoint.id)
        })
        .await
}

/// A page of the endpoint's received events, newest first (only the flagged ones when
/// `flagged_only`), and their total.
pub fn list_events(
    state: &AppState,
    ctx: &Ctx,
    id: &PaymentEndpointId,
    flagged_only: bool,
    limit: u32,
    offset: u64,
) -> Result<(Vec<StoredEvent>, u64), Error> {
    ensure_manager(ctx)?;
    state.db.read(|c| {
        let endpoint = reachable(c, ctx, id)?;
        repo::list_events(c, &endpoint.id, flagged_only, limit, offset)
    })
}

/// Applies a flagged event (UNMAPPED, LICENSE_NOT_FOUND, FAILED) of the endpoint again, with
/// its mappings of now, exactly as receiving it would have; stores the new outcome on the
/// event. APPLIED and IGNORED events are `Conflict`; one that is still flagged comes back so.
pub async fn apply_event(
    state: &AppState,
    ctx: &Ctx,
    id: PaymentEndpointId,
    event_id: String,
) -> Result<TimelineEntry, Error> {
    ensure_manager(ctx)?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let endpoint = reachable(c, &ctx, &id)?;
            let event = receive::apply_again(c, &ctx, &endpoint, &event_id)?;
            Ok((endpoint.provider, event))
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// The payment events that changed a license the caller reaches, oldest first.
pub fn license_timeline(
    state: &AppState,
    ctx: &Ctx,
    id: &LicenseId,
) -> Result<Vec<TimelineEntry>, Error> {
    let license = keys::get(state, ctx, id)?.license;
    state.db.read(|c| repo::events_for_license(c, &license.id))
}
