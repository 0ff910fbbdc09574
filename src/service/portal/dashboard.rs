//! What a portal shows: its public face at `/p/<slug>`, and a signed-in user's dashboard with
//! the access level that unlocks its blocks.

use rusqlite::Connection;

use super::{open_portal_of, signed_in_user};
use crate::domain::artifacts::{self, Artifact};
use crate::domain::licenses::{self, License, LicenseStatus, Plan};
use crate::domain::portal_users::{
    self, AccessLevel, Block, BlockType, PortalSettings, PortalUser,
};
use crate::domain::products::{self, Product};
use crate::domain::releases::{self, Channel, Release};
use crate::domain::{activations, now_ms, sessions, tenants};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Where a user's loader comes from.
#[derive(Debug, Clone)]
pub enum LoaderLink {
    /// The vendor's own download address (`loaderUrl` of the portal settings).
    External(String),
    /// The product's newest published stable release, through the portal's loader download.
    Release {
        /// Its per-platform files, each downloadable by name.
        files: Vec<Artifact>,
        /// True when it has a bundle of its own (what a download without a choice sends).
        bundle: bool,
    },
}

/// A portal as its project's vendor arranged it.
#[derive(Debug)]
pub struct PortalFace {
    pub product: Product,
    pub title: String,
    pub welcome: Option<String>,
    pub blocks: Vec<ShownBlock>,
}

/// One dashboard block as a given user may see it.
#[derive(Debug, Clone)]
pub struct ShownBlock {
    pub block_type: BlockType,
    pub label: Option<String>,
    /// Withheld while the block is locked.
    pub url: Option<String>,
    pub text: Option<String>,
    pub requires: AccessLevel,
    /// The entitlement the user's key must carry, if any.
    pub requires_entitlement: Option<String>,
    /// True when the user's access is below `requires`, or the user's key lacks
    /// `requires_entitlement`.
    pub locked: bool,
}

/// The linked key as the portal shows it: never the key itself, only its mask.
#[derive(Debug)]
pub struct KeyFacts {
    pub mask: String,
    pub plan: Option<Plan>,
    pub status: LicenseStatus,
    /// Bound to a machine (HWID).
    pub hwid_locked: bool,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
    pub max_sessions: Option<u32>,
    pub active_sessions: u64,
}

#[derive(Debug)]
pub struct Access {
    pub level: AccessLevel,
    pub has_key: bool,
    pub hwid_bound: bool,
    pub can_download_loader: bool,
    /// Where the loader downloads from, present only when allowed.
    pub loader: Option<LoaderLink>,
}

#[derive(Debug)]
pub struct Dashboard {
    pub user: PortalUser,
    pub key: Option<KeyFacts>,
    pub access: Access,
    pub face: PortalFace,
}

/// The enabled portal at `/p/<slug>`: the named workspace's, else the default workspace's,
/// else the only one with that slug. Anyone may read it; blocks show what they require.
pub fn info(state: &AppState, slug: &str, tenant: Option<&str>) -> Result<PortalFace, Error> {
    let product = state.db.read(|c| portal_product(c, slug, tenant))?;
    Ok(face_of(product, None, &[]))
}

/// The signed-in user's dashboard: the linked key (masked), the access level and the blocks,
/// locked above it.
pub fn dashboard(state: &AppState, ctx: &Ctx) -> Result<Dashboard, Error> {
    state.db.read(|c| {
        let user = signed_in_user(c, ctx)?;
        let product = open_portal_of(c, ctx, &user)?;
        let settings = portal_users::settings_of(&product);
        let facts = access_of(c, ctx, &user, &product)?;
        let now = now_ms();
        let entitlements = facts.entitlements().to_vec();
        let key = match &facts.license {
            Some(l) => {
                let ttl_ms = i64::from(product.settings.session_ttl_secs) * 1000;
                let live = sessions::repo::for_license(c, &l.id)?
                    .iter()
                    .filter(|s| s.last_seen_at > now - ttl_ms)
                    .count() as u64;
                Some(KeyFacts {
                    mask: portal_users::mask_key(&l.key),
                    plan: l.plan,
                    status: l.effective_status(now),
                    hwid_locked: facts.bound,
                    // A plan key's clock starts at its first activation: until then it has no
                    // expiry to show (now + plan would move on every request).
                    expires_at: l.valid_until,
                    max_sessions: l.max_sessions,
                    active_sessions: live,
                })
            }
            None => None,
        };
        let loader = match settings.loader_url.as_deref().filter(|u| !u.is_empty()) {
            Some(external) => Some(LoaderLink::External(external.to_owned())),
            None => match loader_release(c, &product)? {
                Some(r) => Some(LoaderLink::Release {
                    files: artifacts::repo::of_release(c, &r.id)?,
                    bundle: r.bundle.is_some(),
                }),
                None => None,
            },
        };
        // The loader is offered only through a `download_loader` block, at the level that
        // block requires (HWID gating).
        let can_download = loader_level(&settings, &entitlements)
            .is_some_and(|needed| needed.is_ok_and(|n| facts.level.reaches(n)))
            && loader.is_some();
        Ok(Dashboard {
            key,
            access: Access {
                level: facts.level,
                has_key: facts.license.is_some(),
                hwid_bound: facts.bound,
                can_download_loader: can_download,
                loader: if can_download { loader } else { None },
            },
            face: face_of(product, Some(facts.level), &entitlements),
            user,
        })
    })
}

fn face_of(product: Product, level: Option<AccessLevel>, entitlements: &[String]) -> PortalFace {
    let settings = portal_users::settings_of(&product);
    PortalFace {
        title: title_of(&settings, &product),
        welcome: settings.welcome.clone(),
        blocks: shown_blocks(&settings.blocks, level, entitlements),
        product,
    }
}

/// The blocks as `level` with `entitlements` sees them (`None`: the public face, where
/// nothing is locked yet).
fn shown_blocks(
    blocks: &[Block],
    level: Option<AccessLevel>,
    entitlements: &[String],
) -> Vec<ShownBlock> {
    blocks
        .iter()
        .map(|b| {
            let needs = b.needs();
            let lacks = b
                .requires_entitlement
                .as_ref()
                .is_some_and(|code| !entitlements.contains(code));
            let locked = level.is_some_and(|l| !l.reaches(needs) || lacks);
            ShownBlock {
                block_type: b.block_type,
                label: b.label.clone(),
                url: if locked { None } else { b.url.clone() },
                text: b.text.clone(),
                requires: needs,
                requires_entitlement: b.requires_entitlement.clone(),
                locked,
            }
        })
        .collect()
}

fn title_of(settings: &PortalSettings, product: &Product) -> String {
    settings
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| product.name.clone())
}

fn portal_product(c: &Connection, slug: &str, tenant: Option<&str>) -> Result<Product, Error> {
    if slug.len() > 64 || tenant.is_some_and(|t| t.len() > 64) {
        return Err(Error::NotFound("portal"));
    }
    let mut candidates = Vec::new();
    for (tenant_id, product_id) in portal_users::repo::products_with_slug(c, slug)? {
        if let Some(p) = products::repo::find(c, &tenant_id, &product_id)?
            && portal_users::settings_of(&p).enabled
        {
            candidates.push(p);
        }
    }
    let tenant_id_of = |slug: &str| -> Result<Option<String>, Error> {
        Ok(tenants::repo::find_by_slug(c, slug)?.map(|t| t.id))
    };
    let chosen = match tenant {
        Some(t) => {
            let id = tenant_id_of(t)?;
            candidates
                .into_iter()
                .find(|p| Some(&p.tenant_id) == id.as_ref())
        }
        None if candidates.len() <= 1 => candidates.pop(),
        None => {
            let default = tenant_id_of(tenants::DEFAULT_SLUG)?;
            candidates
                .into_iter()
                .find(|p| Some(&p.tenant_id) == default.as_ref())
        }
    };
    chosen.ok_or(Error::NotFound("portal"))
}

pub(super) struct AccessFacts {
    pub level: AccessLevel,
    pub license: Option<License>,
    pub bound: bool,
}

/// The user's access: its linked key, if that key is within the caller's reach (a key of
/// another project is never shown, even if a link to one were ever stored).
pub(super) fn access_of(
    c: &Connection,
    ctx: &Ctx,
    user: &PortalUser,
    product: &Product,
) -> Result<AccessFacts, Error> {
    let license = match &user.license_id {
        Some(id) => licenses::repo::find(c, &product.tenant_id, id)?
            .filter(|l| l.product_id == product.id && ctx.reaches(&l.tenant_id, &l.product_id)),
        None => None,
    };
    let now = now_ms();
    let active = license.as_ref().is_some_and(|l| l.problem(now).is_none());
    let bound = match &license {
        Some(l) => activations::repo::count(c, &l.id)? > 0,
        None => false,
    };
    let level = match (active, bound) {
        (true, true) => AccessLevel::Full,
        (true, false) => AccessLevel::Key,
        _ => AccessLevel::Anyone,
    };
    Ok(AccessFacts {
        level,
        license,
        bound,
    })
}

impl AccessFacts {
    /// The entitlements that unlock blocks: a usable key's, else none.
    pub fn entitlements(&self) -> &[String] {
        match &self.license {
            Some(l) if self.level.reaches(AccessLevel::Key) => &l.entitlements,
            _ => &[],
        }
    }
}

/// The access level the layout's `download_loader` block requires, among the blocks whose
/// `requiresEntitlement` (if any) is in `entitlements`; `Err` with the code the user's key
/// lacks when every such block needs one it does not carry; None when the layout has no such
/// block (then the loader is not offered at all).
pub(super) fn loader_level(
    settings: &PortalSettings,
    entitlements: &[String],
) -> Option<Result<AccessLevel, String>> {
    let loaders: Vec<&Block> = settings
        .blocks
        .iter()
        .filter(|b| b.block_type == BlockType::DownloadLoader)
        .collect();
    let first = loaders.first()?;
    let open = loaders
        .iter()
        .filter(|b| {
            b.requires_entitlement
                .as_ref()
                .is_none_or(|code| entitlements.contains(code))
        })
        .map(|b| b.needs())
        .min_by_key(|level| level.rank());
    Some(open.ok_or_else(|| first.requires_entitlement.clone().unwrap_or_default()))
}

/// The portal's loader: the product's newest published stable release. The portal's own
/// look-up of another area's data (releases); a candidate to fold into `service::releases`.
pub(super) fn loader_release(c: &Connection, product: &Product) -> Result<Option<Release>, Error> {
    let published = releases::repo::published_for_product(c, &product.id)?;
    Ok(releases::newest(&published, Channel::Stable, None)
        .filter(|r| r.tenant_id == product.tenant_id)
        .cloned())
}
