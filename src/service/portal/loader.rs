//! The loader download, gated by the access level of the layout's `download_loader` block.

use serde_json::json;

use super::dashboard::{access_of, loader_level, loader_release};
use super::{open_portal_of, signed_in_user};
use crate::domain::artifacts::{self, Artifact, Picked, Wanted};
use crate::domain::audit::AuditAction;
use crate::domain::portal_users::{self, AccessLevel};
use crate::domain::releases::{Bundle, Release};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// The loader's release and the file sent, opened for streaming.
#[derive(Debug)]
pub struct LoaderDownload {
    pub release: Release,
    /// What is sent: the release's own bundle, or the file of `artifact`.
    pub bundle: Bundle,
    /// The per-platform file chosen, when the release's bundle is not what is sent.
    pub artifact: Option<Artifact>,
    pub file: tokio::fs::File,
}

/// The caller's project's newest published stable release, for a user whose access reaches
/// the level the `download_loader` block requires: its bundle, or the one of its per-platform
/// files `wanted` chooses (as the licensed apps' download picks it). Audited.
pub async fn download_loader(
    state: &AppState,
    ctx: &Ctx,
    wanted: &Wanted<'_>,
) -> Result<LoaderDownload, Error> {
    let (user, level, needed, release, files) = state.db.read(|c| {
        let user = signed_in_user(c, ctx)?;
        let product = open_portal_of(c, ctx, &user)?;
        let facts = access_of(c, ctx, &user, &product)?;
        let level = facts.level;
        let needed = loader_level(&portal_users::settings_of(&product), facts.entitlements());
        let release = loader_release(c, &product)?;
        let files = match &release {
            Some(r) => artifacts::repo::of_release(c, &r.id)?,
            None => Vec::new(),
        };
        Ok((user, level, needed, release, files))
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
    // Chosen only past the access checks, so a locked user learns nothing of the files.
    let (bundle, artifact) = match artifacts::pick(&release, &files, wanted)? {
        Picked::Bundle(b) => (b.clone(), None),
        Picked::Artifact(a) => (a.file.clone(), Some(a.clone())),
    };
    let file = crate::service::updates::open_stored(state, &bundle).await?;
    state.db.writer().record(
        ctx.event(&user.tenant_id, AuditAction::PortalLoaderDownload)
            .product(&user.product_id)
            .detail(json!({
                "releaseId": release.id,
                "version": release.version,
                "artifactId": artifact.as_ref().map(|a| &a.id),
                "platform": artifact.as_ref().map(|a| &a.platform),
                "arch": artifact.as_ref().map(|a| a.arch.as_str()),
                "filetype": artifact.as_ref().map(|a| &a.filetype),
            })),
    );
    Ok(LoaderDownload {
        release,
        bundle,
        artifact,
        file,
    })
}
