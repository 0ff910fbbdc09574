//! Products ("projects" on the key/HWID face): creating, reading, changing and deleting them.
//! One function per use case serves the admin panel, the vendor API and the CLI, so a product
//! is created, audited and reached the same way whoever asks.

use serde_json::json;

use super::Ctx;
use crate::crypto;
use crate::domain::audit::{self, AuditAction};
use crate::domain::licenses::LicenseType;
use crate::domain::products::{
    self, HeartbeatPolicy, KeyFormat, NewProduct, Product, ProductStatus, ProductType,
    ProjectSettings,
};
use crate::domain::sessions::SessionLimit;
use crate::domain::tenants;
use crate::domain::{ProductId, TenantId, entitlements, now_ms, portal_users, releases};
use crate::error::Error;
use crate::state::AppState;

/// Largest portal configuration a project may store.
const MAX_PORTAL_SETTINGS_BYTES: usize = 64 * 1024;

/// What a new product is made of; the face fills in its own defaults.
#[derive(Debug, Clone)]
pub struct ProductDraft {
    /// Where it belongs; `None` for the caller's own tenant.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    /// Made from the name (and made unique) when absent.
    pub slug: Option<String>,
    pub product_type: ProductType,
    pub default_license_type: LicenseType,
    pub default_max_activations: u32,
    pub key_format: KeyFormat,
    pub heartbeat: Option<HeartbeatPolicy>,
    pub settings: ProjectSettings,
    /// The entitlement codes its licenses may carry.
    pub entitlements: Vec<String>,
}

/// Changes to a product. `None` keeps a field; for clearable fields `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    /// Rotate the `kv_` secret: apps using the old one stop matching keys at once.
    pub regenerate_secret: bool,
    pub key_format: Option<KeyFormat>,
    pub status: Option<ProductStatus>,
    pub default_max_activations: Option<u32>,
    pub server_var: Option<Option<String>>,
    pub require_encryption: Option<bool>,
    pub session_ttl_secs: Option<u32>,
    pub session_limit: Option<SessionLimit>,
    pub hwid_reset_cooldown_secs: Option<u32>,
    /// `Some(None)` removes the heartbeat policy.
    pub heartbeat_interval_secs: Option<Option<u32>>,
    pub heartbeat_grace_secs: Option<u32>,
    pub keep_dead_machines: Option<bool>,
    /// The portal's configuration, a JSON object (checked here).
    pub portal_settings: Option<Option<serde_json::Value>>,
    /// Replaces the entitlement codes. A code some license still carries cannot be removed
    /// (409 naming the code and how many licenses carry it).
    pub entitlements: Option<Vec<String>>,
}

/// A product as its administrator sees it: with its key count and its opened secrets.
#[derive(Debug, Clone)]
pub struct ProductDetails {
    pub product: Product,
    pub key_count: u64,
    /// The `kv_` client secret.
    pub secret: String,
    /// The AES-256-GCM payload key.
    pub encryption_key: Vec<u8>,
}

impl ProductDetails {
    fn open(state: &AppState, product: Product, key_count: u64) -> Result<Self, Error> {
        let secret = state.master.open(&product.client_secret_sealed)?;
        let encryption_key = state.master.open(&product.payload_key_sealed)?;
        Ok(Self {
            secret: String::from_utf8_lossy(&secret).into_owned(),
            encryption_key,
            product,
            key_count,
        })
    }
}

/// Creates a product with its signing key pair, `kv_` secret and payload key, audited as
/// `project.create` whoever asks. A product-restricted API key cannot create products: it
/// would reach nothing of what it made.
pub async fn create_product(
    state: &AppState,
    ctx: &Ctx,
    draft: ProductDraft,
) -> Result<ProductDetails, Error> {
    if ctx.product_restricted() {
        return Err(Error::Forbidden(
            "This API key is restricted to one product and cannot create products".into(),
        ));
    }
    let tenant_id = match draft.tenant_id.clone() {
        Some(t) if ctx.reaches_tenant(&t) => t,
        Some(_) => {
            return Err(Error::Forbidden(
                "Only ADMIN operators may create projects in another workspace".into(),
            ));
        }
        None => ctx.tenant.clone(),
    };
    products::validate_name(&draft.name)?;
    if let Some(slug) = &draft.slug {
        tenants::validate_slug(slug).map_err(Error::Invalid)?;
    }
    products::validate_settings(&draft.settings)?;
    entitlements::parse_set("entitlements", &draft.entitlements)?;
    let master = state.master.clone();
    let event = ctx.event(&tenant_id, AuditAction::ProductCreate);
    let product = state
        .db
        .write(move |c| {
            tenants::repo::find(c, &tenant_id)?.ok_or(Error::NotFound("workspace"))?;
            let slug = match draft.slug {
                Some(s) => s,
                None => products::free_slug(c, &tenant_id, &products::slug_from_name(&draft.name))?,
            };
            let new = NewProduct {
                name: draft.name,
                slug,
                product_type: draft.product_type,
                default_license_type: draft.default_license_type,
                default_max_activations: draft.default_max_activations,
                key_format: draft.key_format,
                heartbeat: draft.heartbeat,
                entitlements: draft.entitlements,
            };
            let mut product = products::create(c, &master, &tenant_id, new)?;
            if product.settings != draft.settings {
                product.settings = draft.settings;
                products::repo::update(c, &product)?;
            }
            let mut event = event.product(&product.id);
            if !product.entitlements.is_empty() {
                event = event.detail(json!({"entitlements": product.entitlements}));
            }
            audit::repo::insert(c, &event)?;
            Ok(product)
        })
        .await?;
    ProductDetails::open(state, product, 0)
}

/// One product within reach, with its secrets.
pub fn get(state: &AppState, ctx: &Ctx, id: &ProductId) -> Result<ProductDetails, Error> {
    let (product, count) = state.db.read(|c| {
        let p = reachable(c, ctx, id)?;
        let n = products::repo::license_count(c, &p.id)?;
        Ok((p, n))
    })?;
    ProductDetails::open(state, product, count)
}

/// One page of the products within reach, newest first, each with its key count; and the
/// total.
pub fn list(
    state: &AppState,
    ctx: &Ctx,
    limit: u32,
    offset: u64,
) -> Result<(Vec<(Product, u64)>, u64), Error> {
    state.db.read(|c| {
        products::repo::list_within(
            c,
            ctx.tenants.filter(),
            ctx.products.filter(),
            limit,
            offset,
        )
    })
}

/// One page of a tenant's products, oldest first (optionally only ACTIVE ones): the vendor
/// API's list and the CLI's. A tenant out of reach has no products the caller may see.
pub fn list_of_tenant(
    state: &AppState,
    ctx: &Ctx,
    tenant_id: &TenantId,
    only_active: bool,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Product>, u64), Error> {
    if !ctx.reaches_tenant(tenant_id) {
        return Err(Error::NotFound("tenant"));
    }
    state.db.read(|c| {
        products::repo::list(
            c,
            tenant_id,
            only_active,
            ctx.products.filter(),
            limit,
            offset,
        )
    })
}

/// The product a client names by tenant and product slug, for the public key endpoint (no
/// credential: a public key is public).
pub fn find_public(
    state: &AppState,
    tenant_slug: &str,
    product_slug: &str,
) -> Result<Product, Error> {
    if product_slug.len() > 64 || tenant_slug.len() > 64 {
        return Err(Error::Invalid(
            "product and tenant are slugs of at most 64 characters".into(),
        ));
    }
    let found = state.db.read(|c| {
        let Some(tenant) = tenants::repo::find_by_slug(c, tenant_slug)? else {
            return Ok(None);
        };
        products::repo::find_by_slug(c, &tenant.id, product_slug)
    })?;
    found.ok_or(Error::NotFound("product"))
}

/// Applies `changes` to a product within reach (rotating its `kv_` secret if asked) and
/// answers it with its secrets.
pub async fn update_product(
    state: &AppState,
    ctx: &Ctx,
    id: &ProductId,
    changes: ProductChanges,
) -> Result<ProductDetails, Error> {
    if let Some(name) = &changes.name {
        products::validate_name(name)?;
    }
    let portal_settings = match &changes.portal_settings {
        Some(Some(v)) => Some(Some(portal_settings_text(v)?)),
        Some(None) => Some(None),
        None => None,
    };
    let new_entitlements = changes
        .entitlements
        .as_deref()
        .map(|codes| entitlements::parse_set("entitlements", codes))
        .transpose()?;
    let master = state.master.clone();
    let ctx = ctx.clone();
    let id = id.clone();
    let (product, count) = state
        .db
        .write(move |c| {
            let mut p = reachable(c, &ctx, &id)?;
            let rotated = changes.regenerate_secret;
            let renamed = apply(&mut p, changes, portal_settings);
            products::validate_settings(&p.settings)?;
            let entitlements_changed = match new_entitlements {
                Some(codes) if codes != p.entitlements => {
                    ensure_not_carried(c, &p, &codes)?;
                    p.entitlements = codes;
                    true
                }
                _ => false,
            };
            // A portal block may only be gated on one of the project's codes (checked when
            // either changes).
            portal_users::check_block_entitlements(
                &portal_users::settings_of(&p),
                &p.entitlements,
            )?;
            if rotated {
                let secret = products::new_client_secret();
                p.client_secret_sha256 = crypto::sha256(secret.as_bytes()).to_vec();
                p.client_secret_sealed = master.seal(secret.as_bytes())?;
            }
            p.updated_at = now_ms();
            products::repo::update(c, &p)?;
            let mut detail = json!({
                "secretRotated": rotated,
                "renamed": renamed,
                "status": p.status.as_str(),
            });
            if entitlements_changed {
                detail["entitlements"] = json!(p.entitlements);
            }
            let event = ctx
                .event(&p.tenant_id, AuditAction::ProductUpdate)
                .product(&p.id)
                .detail(detail);
            audit::repo::insert(c, &event)?;
            let n = products::repo::license_count(c, &p.id)?;
            Ok((p, n))
        })
        .await?;
    // Validation must see the new settings at once, not when the cached copy ages out.
    state.product_cache.forget(&product.id);
    ProductDetails::open(state, product, count)
}

/// Refuses to drop a code from the product while a license still carries it: the licenses
/// would silently lose a feature their customers paid for. The operator takes it off those
/// licenses first (or keeps the code).
fn ensure_not_carried(
    c: &rusqlite::Connection,
    p: &Product,
    codes: &[String],
) -> Result<(), Error> {
    for removed in p.entitlements.iter().filter(|old| !codes.contains(old)) {
        let n = entitlements::repo::licenses_carrying(c, &p.tenant_id, &p.id, removed)?;
        if n > 0 {
            return Err(Error::Conflict(format!(
                "entitlements: {removed} cannot be removed: {n} license{} of this product \
                 carr{} it (take it off {} first)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "ies" } else { "y" },
                if n == 1 {
                    "that license"
                } else {
                    "those licenses"
                },
            )));
        }
    }
    Ok(())
}

/// Applies the changes but the secret rotation; returns whether the name changed.
fn apply(p: &mut Product, ch: ProductChanges, portal_settings: Option<Option<String>>) -> bool {
    let mut renamed = false;
    if let Some(name) = ch.name {
        let name = name.trim().to_owned();
        renamed = name != p.name;
        p.name = name;
    }
    if let Some(v) = ch.description {
        p.settings.description = v;
    }
    if let Some(v) = ch.server_var {
        p.settings.server_var = v;
    }
    if let Some(v) = portal_settings {
        p.settings.portal_settings = v;
    }
    if let Some(f) = ch.key_format {
        p.key_format = f;
    }
    if let Some(s) = ch.status {
        p.status = s;
    }
    if let Some(n) = ch.default_max_activations {
        p.default_max_activations = n;
    }
    if let Some(v) = ch.require_encryption {
        p.settings.require_encryption = v;
    }
    if let Some(v) = ch.session_ttl_secs {
        p.settings.session_ttl_secs = v;
    }
    if let Some(v) = ch.session_limit {
        p.settings.session_limit = v;
    }
    if let Some(v) = ch.hwid_reset_cooldown_secs {
        p.settings.hwid_reset_cooldown_secs = v;
    }
    match ch.heartbeat_interval_secs {
        Some(None) => p.heartbeat = None,
        Some(Some(interval_secs)) => {
            p.heartbeat = Some(HeartbeatPolicy {
                interval_secs,
                grace_secs: p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
                cull_dead: p.heartbeat.map(|h| h.cull_dead).unwrap_or(true),
            })
        }
        None => {}
    }
    if let Some(h) = p.heartbeat.as_mut() {
        if let Some(g) = ch.heartbeat_grace_secs {
            h.grace_secs = g;
        }
        if let Some(k) = ch.keep_dead_machines {
            h.cull_dead = !k;
        }
    }
    renamed
}

/// The stored form of a portal configuration, checked and with unknown fields dropped.
fn portal_settings_text(v: &serde_json::Value) -> Result<String, Error> {
    if !v.is_object() {
        return Err(Error::Invalid(
            "portalSettings must be a JSON object".into(),
        ));
    }
    if v.to_string().len() > MAX_PORTAL_SETTINGS_BYTES {
        return Err(Error::Invalid(
            "portalSettings must be at most 64 KiB".into(),
        ));
    }
    let parsed = portal_users::parse_settings(v)?;
    serde_json::to_string(&parsed).map_err(|e| Error::Storage(e.to_string()))
}

/// Deletes a product within reach with its keys, activations and releases (the audit trail
/// is kept); `confirm` must repeat its slug or its exact name. Answers how many keys went.
pub async fn delete_product(
    state: &AppState,
    ctx: &Ctx,
    id: &ProductId,
    confirm: Option<String>,
) -> Result<u64, Error> {
    let store = state.bundles.clone();
    let ctx = ctx.clone();
    let id = id.clone();
    let deleted = state
        .db
        .write(move |c| {
            let p = reachable(c, &ctx, &id)?;
            // Either the slug or the exact name confirms: the person deleting typed it.
            let named = confirm
                .as_deref()
                .is_some_and(|c| c == p.slug || c == p.name);
            if !named {
                return Err(Error::Invalid(format!(
                    "confirm the deletion by naming the project: ?confirm={}",
                    p.slug
                )));
            }
            let n = products::repo::license_count(c, &p.id)?;
            let bundles = releases::repo::bundles_of_product(c, &p.id)?;
            products::repo::delete(c, &p.id)?;
            // Releases went with the product (cascade); their files go unless another
            // product's release has the same bytes.
            for sha in bundles {
                if !releases::repo::bundle_in_use(c, &sha)? {
                    store.remove(&sha);
                }
            }
            let event = ctx
                .event(&p.tenant_id, AuditAction::ProductDelete)
                .product(&p.id)
                .detail(json!({"name": p.name, "slug": p.slug, "deletedKeys": n}));
            audit::repo::insert(c, &event)?;
            Ok((p.id, n))
        })
        .await;
    let (product_id, n) = deleted?;
    state.product_cache.forget(&product_id);
    Ok(n)
}

/// The product `id` if the caller reaches it; otherwise not found, exactly like a missing
/// one. Other services find the product a sub-resource hangs from through this.
pub fn reachable(c: &rusqlite::Connection, ctx: &Ctx, id: &str) -> Result<Product, Error> {
    products::repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|p| ctx.products.reaches(&p.id))
        .ok_or(Error::NotFound("project"))
}
