//! Issuing licenses: one at a time with an idempotency key (the vendor API, checkout
//! webhooks), or a batch of plan keys (the admin panel). A discontinued product refuses both
//! (the rule is the domain's: `licenses::create`).

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::json;

use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::licenses::{self, Created, License, LicenseTier, LicenseType, NewLicense, Plan};
use crate::domain::products::{self, KeyFormat, NewProduct, Product, ProductType};
use crate::domain::webhooks::EventType;
use crate::domain::{ProductId, ProductScope, audit};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// A license as the vendor API orders it; what is left out takes the product's defaults.
#[derive(Debug, Clone)]
pub struct LicenseOrder {
    /// The product's id or slug.
    pub product: String,
    pub license_type: Option<LicenseType>,
    pub tier: Option<LicenseTier>,
    pub max_activations: Option<u32>,
    pub valid_until: Option<i64>,
    pub customer_email: String,
    pub customer_name: Option<String>,
    pub order_id: Option<String>,
    /// Custom key-value pairs: at most 20 keys of 1-64 characters, at most 8 KiB as JSON.
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Entitlement codes, each one of the product's.
    pub entitlements: Vec<String>,
}

/// Makes a retried order safe: one license per key and tenant; the same key with another
/// request (by its hash) is refused.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_sha256: [u8; 32],
}

/// Plan keys as the admin panel generates them.
#[derive(Debug, Clone)]
pub struct PlanKeys {
    pub plan: Plan,
    /// 1-50.
    pub count: u32,
    pub max_sessions: u32,
    /// Required for CUSTOM.
    pub custom_days: Option<u32>,
    pub note: Option<String>,
    /// Without one, the caller's own product (a product-restricted key) or its workspace's
    /// "Default" project, created on first use.
    pub project: Option<ProductId>,
    /// Entitlement codes every generated key carries, each one of the project's.
    pub entitlements: Vec<String>,
}

/// Issues one license (or, with an idempotency key seen before, returns the one issued then).
pub async fn issue(
    state: &AppState,
    ctx: &Ctx,
    order: LicenseOrder,
    idempotency: Option<Idempotency>,
) -> Result<Created, Error> {
    let email = order.customer_email.trim().to_owned();
    licenses::validate_email(&email)?;
    let metadata = order.metadata.as_ref().map(check_metadata).transpose()?;
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let product = products::repo::find_by_id_or_slug(c, &ctx.tenant, &order.product)?
                .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
                .ok_or(Error::NotFound("product"))?;
            let new = NewLicense {
                license_type: order.license_type.unwrap_or(product.default_license_type),
                tier: order.tier.unwrap_or(LicenseTier::Personal),
                max_activations: order
                    .max_activations
                    .unwrap_or(product.default_max_activations),
                max_sessions: None,
                valid_until: order.valid_until,
                plan: None,
                plan_days: None,
                customer_email: Some(email),
                customer_name: order.customer_name,
                order_id: order.order_id,
                metadata,
                note: None,
                entitlements: order.entitlements,
            };
            let idem = idempotency
                .as_ref()
                .map(|i| (i.key.as_str(), i.request_sha256));
            let created = licenses::create_idempotent(c, &product, &new, idem)?;
            if !created.replayed {
                let mut detail = json!({"orderId": new.order_id});
                if !created.license.entitlements.is_empty() {
                    detail["entitlements"] = json!(created.license.entitlements);
                }
                record_issue(c, &ctx, &created.license, detail)?;
            }
            Ok(created)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// Issues `count` keys of one plan in one transaction. A plan's clock starts at the key's
/// first activation; keys bind as many machines as the project's default.
pub async fn issue_plan_keys(
    state: &AppState,
    ctx: &Ctx,
    order: PlanKeys,
) -> Result<Vec<License>, Error> {
    let plan_days = match (order.plan, order.custom_days) {
        (Plan::Custom, None) => {
            return Err(Error::Invalid(
                "customDays (1-3650) is required for plan CUSTOM".into(),
            ));
        }
        (Plan::Custom, Some(d)) => Some(d),
        (plan, _) => licenses::plan_days(plan, None),
    };
    let ctx = ctx.clone();
    let master = state.master.clone();
    state
        .db
        .write(move |c| {
            let product = match (&order.project, &ctx.products) {
                (Some(id), _) | (None, ProductScope::Only(id)) => {
                    products::repo::find_in(c, ctx.tenants.filter(), id)?
                        .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
                        .ok_or(Error::NotFound("project"))?
                }
                (None, ProductScope::All) => default_project(c, &master, &ctx)?,
            };
            let new = NewLicense {
                license_type: if order.plan == Plan::Lifetime {
                    LicenseType::Perpetual
                } else {
                    LicenseType::Subscription
                },
                tier: LicenseTier::Personal,
                max_activations: product.default_max_activations,
                max_sessions: Some(order.max_sessions),
                valid_until: None,
                plan: Some(order.plan),
                plan_days,
                customer_email: None,
                customer_name: None,
                order_id: None,
                metadata: None,
                note: order.note.clone(),
                entitlements: order.entitlements.clone(),
            };
            let mut issued = Vec::with_capacity(order.count as usize);
            for _ in 0..order.count {
                let license = licenses::create(c, &product, &new)?;
                let mut detail = json!({"plan": order.plan.as_str()});
                if !license.entitlements.is_empty() {
                    detail["entitlements"] = json!(license.entitlements);
                }
                record_issue(c, &ctx, &license, detail)?;
                issued.push(license);
            }
            Ok(issued)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// Issues one license inside the caller's writer job (a paid order, with its other effects in
/// the same transaction); `detail` joins the audit event's (the payment's provider and event).
pub(crate) fn issue_in(
    c: &Connection,
    ctx: &Ctx,
    product: &Product,
    new: &NewLicense,
    detail: serde_json::Value,
) -> Result<License, Error> {
    if !ctx.reaches(&product.tenant_id, &product.id) {
        return Err(Error::NotFound("product"));
    }
    if let Some(email) = &new.customer_email {
        licenses::validate_email(email)?;
    }
    let license = licenses::create(c, product, new)?;
    let mut event = json!({"orderId": new.order_id});
    if !license.entitlements.is_empty() {
        event["entitlements"] = json!(license.entitlements);
    }
    super::merge_detail(&mut event, detail);
    record_issue(c, ctx, &license, event)?;
    Ok(license)
}

fn record_issue(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    detail: serde_json::Value,
) -> Result<(), Error> {
    let event: AuditEvent = ctx
        .event(&license.tenant_id, AuditAction::LicenseCreate)
        .license(&license.product_id, &license.id)
        .detail(detail);
    audit::repo::insert(c, &event)?;
    crate::service::events::license_event(c, license, EventType::LicenseCreated)?;
    Ok(())
}

/// The caller's workspace's "Default" project, created on first use, for keys generated
/// without a project.
fn default_project(
    c: &Connection,
    master: &crate::crypto::MasterKey,
    ctx: &Ctx,
) -> Result<Product, Error> {
    if let Some(p) = products::repo::find_by_slug(c, &ctx.tenant, "default")? {
        return Ok(p);
    }
    let product = products::create(
        c,
        master,
        &ctx.tenant,
        NewProduct {
            name: "Default".into(),
            slug: "default".into(),
            product_type: ProductType::Desktop,
            default_license_type: LicenseType::Subscription,
            default_max_activations: 1,
            key_format: KeyFormat::parse("XXXX-XXXX-XXXX-XXXX")?,
            heartbeat: None,
            entitlements: Vec::new(),
        },
    )?;
    audit::repo::insert(
        c,
        &ctx.event(&ctx.tenant, AuditAction::ProductCreate)
            .product(&product.id),
    )?;
    Ok(product)
}

fn check_metadata(m: &BTreeMap<String, serde_json::Value>) -> Result<String, Error> {
    if m.len() > 20 {
        return Err(Error::Invalid("metadata may have at most 20 keys".into()));
    }
    if let Some(k) = m.keys().find(|k| k.is_empty() || k.len() > 64) {
        return Err(Error::Invalid(format!(
            "metadata key {k:?} must be 1-64 characters"
        )));
    }
    let text = serde_json::to_string(m).map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
    if text.len() > 8192 {
        return Err(Error::Invalid(
            "metadata must be at most 8 KiB as JSON".into(),
        ));
    }
    Ok(text)
}
