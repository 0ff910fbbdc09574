//! What the feeds' files are downloaded through: the signed links of Tauri, Sparkle and
//! electron-updater, and Velopack's packages next to its feed.

use std::net::IpAddr;

use serde_json::json;

use super::{FeedRequest, open};
use crate::domain::artifacts::Artifact;
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::feeds::token;
use crate::domain::feeds::{self, repo};
use crate::domain::licenses::{self, License};
use crate::domain::now_ms;
use crate::domain::releases::{self, Channel, Release};
use crate::error::Error;
use crate::service::updates::{self, BundleDownload};
use crate::state::AppState;

/// A package a Velopack feed listed, by its file name (Velopack downloads `FileName` next to
/// the feed, with the feed's own credential); `range` is an HTTP `Range` header.
pub async fn velopack_package(
    state: &AppState,
    req: &FeedRequest,
    file_name: &str,
    range: Option<&str>,
) -> Result<BundleDownload, Error> {
    let opened = open(state, req)?;
    let artifact = opened
        .files
        .iter()
        .filter(|a| a.filetype == "nupkg" && a.file.filename == file_name)
        .find(|a| {
            opened.releases.iter().any(|r| {
                r.id == a.release_id && feeds::offered(r, Channel::Nightly, &opened.subject)
            })
        })
        .cloned()
        .ok_or(Error::NotFound("package"))?;
    send(
        state,
        &artifact,
        opened.license.as_ref(),
        req.ip,
        range,
        "velopack",
    )
    .await
}

/// The file a feed's download URL names, if its token is genuine and unexpired and the
/// artifact's release is still served (a yanked release's links die at once).
pub async fn download(
    state: &AppState,
    download_token: &str,
    ip: Option<IpAddr>,
    range: Option<&str>,
) -> Result<BundleDownload, Error> {
    let key = state.master.derive(token::DOWNLOAD_KEY_LABEL);
    let grant = token::verify_download(&key, download_token, now_ms() / 1000)?;
    let (artifact, license) = state.db.read(|c| {
        let artifact =
            repo::find_artifact(c, &grant.artifact_id)?.ok_or(Error::NotFound("artifact"))?;
        let release = releases::repo::find_in(c, None, &artifact.release_id)?
            .filter(Release::is_served)
            .ok_or(Error::NotFound("artifact"))?;
        let license = match &grant.license_id {
            Some(id) => licenses::repo::find(c, &release.tenant_id, id)?,
            None => None,
        };
        Ok((artifact, license))
    })?;
    if let Some(license) = &license
        && let Some(problem) = license.problem(now_ms())
    {
        return Err(Error::LicenseRefused(problem));
    }
    send(state, &artifact, license.as_ref(), ip, range, "feed").await
}

async fn send(
    state: &AppState,
    artifact: &Artifact,
    license: Option<&License>,
    ip: Option<IpAddr>,
    range: Option<&str>,
    via: &str,
) -> Result<BundleDownload, Error> {
    if let Some(license) = license {
        state.limits.downloads_per_license.check(&license.id)?;
    }
    if let Some(ip) = ip {
        state.limits.downloads_per_ip.check(&ip)?;
    }
    let download = updates::open_download(state, artifact.file.clone(), range).await?;
    if let (Some(license), Some(wanted)) = (license, download.sent_range()) {
        state.db.writer().record(
            AuditEvent::new(&license.tenant_id, "license", AuditAction::UpdateDownload)
                .license(&license.product_id, &license.id)
                .ip(ip.map(|i| i.to_string()).as_deref())
                .detail(json!({
                    "releaseId": artifact.release_id,
                    "artifactId": artifact.id,
                    "platform": artifact.platform,
                    "arch": artifact.arch.as_str(),
                    "filetype": artifact.filetype,
                    "rangeStart": wanted.map(|(start, _)| start),
                    "via": via,
                })),
        );
    }
    Ok(download)
}
