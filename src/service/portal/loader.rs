//! The loader download, gated by the access level of the layout's `download_loader` block.

use serde_json::json;

use super::dashboard::{access_of, loader_level, loader_release};
use super::{open_portal_of, signed_in_user};
use crate::domain::audit::AuditAction;
use crate::domain::portal_users::{self, AccessLevel};
use crate::domain::releases::{Bundle, Release};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// The loader's release and its bundle, opened for streaming.
#[derive(Debug)]
pub struct LoaderDownload {
    pub release: Release,
    /// The release's own bundle (a release served through per-platform artifacts only has no
    /// loader file).
    pub bundle: Bundle,
    pub file: tokio::fs::File,
}

/// The caller's project's newest published stable release, for a user whose access reaches
/// the level the `download_loader` block requires. Audited.
pub async fn download_loader(state: &AppState, ctx: &Ctx) -> Result<LoaderDownload, Error> {
    let (user, level, needed, release) = state.db.read(|c| {
        let user = signed_in_user(c, ctx)?;
        let product = open_portal_of(c, ctx, &user)?;
        let facts = access_of(c, ctx, &user, &product)?;
        let level = facts.level;
        let needed = loader_level(&portal_users::settings_of(&product), facts.entitlements());
        let release = loader_release(c, &product)?;
        Ok((user, level, needed, release))
    })?;
    let needed = match needed {
        None => return Err(Error::NotFound("loader")),
        Some(Err(code)) => {
            return Err(Error::Forbidden(format!(
                "the loader needs a key with the {code} entitlement"
            )));
        }
        Some(Ok(needed)) => needed,
    };
    if !level.reaches(needed) {
        let why = if needed == AccessLevel::Full {
            "the loader is available once your key is bound to a machine"
        } else {
            "activate an active key on your account to download the loader"
        };
        return Err(Error::Forbidden(why.into()));
    }
    let release = release.ok_or(Error::NotFound("loader"))?;
    let bundle = release.bundle.clone().ok_or(Error::NotFound("loader"))?;
    let path = state.bundles.path(&bundle.sha256)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::Storage(format!("bundle file {} unreadable: {e}", path.display())))?;
    state.db.writer().record(
        ctx.event(&user.tenant_id, AuditAction::PortalLoaderDownload)
            .product(&user.product_id)
            .detail(json!({"releaseId": release.id, "version": release.version})),
    );
    Ok(LoaderDownload {
        release,
        bundle,
        file,
    })
}
