//! Update feeds for desktop updaters: Tauri, Sparkle, electron-updater and Velopack read the
//! releases of a product in their own formats (the faces render them). A feed is licensed by
//! default: the license key in a header, or a feed token in the URL; a product may make its
//! feeds public. Every download URL in a feed carries a short-lived download token, so the
//! updater fetches the file without the key. Channels, rollouts and yanks apply to every feed
//! as they do to `/api/v1/updates/check`.

use std::net::IpAddr;

use semver::Version;

use super::catalog;
use super::updates;
use crate::domain::artifacts::{self, Arch, Artifact};
use crate::domain::feeds::token::{self, DownloadGrant};
use crate::domain::feeds::{self, ElectronFile, VelopackChannel, repo};
use crate::domain::licenses::{self, License};
use crate::domain::now_ms;
use crate::domain::products::Product;
use crate::domain::releases::{self, Channel, Release};
use crate::error::Error;
use crate::state::AppState;

mod downloads;
mod tokens;

pub use downloads::{download, velopack_package};
pub use tokens::{FeedSettings, issue_feed_token, revoke_feed_tokens, set_public, settings};

/// How a feed request proves a license, as the face found it.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    /// `Authorization: Bearer <key>` or `X-License-Key`.
    LicenseKey(String),
    /// `?token=` (a feed token).
    FeedToken(String),
}

/// A feed request: the product named in the path, the credential, and where the client
/// reaches this server (for the download URLs).
#[derive(Debug, Clone)]
pub struct FeedRequest {
    pub tenant: String,
    pub product: String,
    pub credential: Credential,
    pub ip: Option<IpAddr>,
    /// `https://host[:port]`, without a trailing slash.
    pub base_url: String,
}

/// A file a feed offers: the artifact and its download URL (with a download token).
#[derive(Debug, Clone)]
pub struct FeedFile {
    pub artifact: Artifact,
    pub url: String,
}

/// What a feed reads: the product, the caller's license (`None`: a public feed read
/// anonymously) and the product's published releases and their artifacts.
struct Opened {
    product: Product,
    license: Option<License>,
    /// Who a rollout buckets: the license, or the client's address on a public feed.
    subject: String,
    releases: Vec<Release>,
    files: Vec<Artifact>,
    minimum_version: Option<String>,
}

/// The product of a feed and the license the request proves. An unknown product, and another
/// product's license, are both "not found"; no credential on a licensed feed is 401.
fn open(state: &AppState, req: &FeedRequest) -> Result<Opened, Error> {
    let product = catalog::find_public(state, &req.tenant, &req.product)?;
    let license = match &req.credential {
        Credential::None => None,
        Credential::LicenseKey(key) => Some(updates::authenticate(state, key, req.ip)?.license),
        Credential::FeedToken(presented) => Some(license_of_feed_token(state, presented, req.ip)?),
    };
    if let Some(license) = &license {
        if license.product_id != product.id {
            return Err(Error::NotFound("product"));
        }
        state.limits.update_checks_per_license.check(&license.id)?;
    }
    let (public, releases, files, minimum_version) = state.db.read(|c| {
        Ok((
            repo::is_public(c, &product.id)?,
            releases::repo::published_for_product(c, &product.id)?,
            artifacts::repo::of_published(c, &product.id)?,
            releases::repo::minimum_version(c, &product.id)?,
        ))
    })?;
    if license.is_none() && !public {
        return Err(Error::Unauthorized(
            "this feed is licensed: send the license key (Authorization: Bearer <key> or \
             X-License-Key) or a feed token (?token=)"
                .into(),
        ));
    }
    let subject = match &license {
        Some(l) => l.id.clone(),
        None => req.ip.map(|ip| ip.to_string()).unwrap_or_default(),
    };
    Ok(Opened {
        product,
        license,
        subject,
        releases,
        files,
        minimum_version,
    })
}

fn license_of_feed_token(
    state: &AppState,
    presented: &str,
    ip: Option<IpAddr>,
) -> Result<License, Error> {
    let refused = || Error::Unauthorized("Invalid or revoked feed token".into());
    let found = match token::feed_token_hash(presented) {
        Some(hash) => state.db.read(|c| {
            let Some(t) = repo::find_token(c, &hash)? else {
                return Ok(None);
            };
            licenses::repo::find(c, &t.tenant_id, &t.license_id)
        })?,
        None => None,
    };
    let Some(license) = found else {
        state.abuse.unknown_key(ip, crate::abuse::Scope::Unknown);
        if let Some(ip) = ip {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        return Err(refused());
    };
    if let Some(problem) = license.problem(now_ms()) {
        return Err(Error::LicenseRefused(problem));
    }
    Ok(license)
}

impl Opened {
    fn file_url(&self, state: &AppState, base_url: &str, a: &Artifact) -> Result<FeedFile, Error> {
        let grant = DownloadGrant {
            artifact_id: a.id.clone(),
            expires_at: now_ms() / 1000 + state.config.feed_download_ttl.as_secs() as i64,
            license_id: self.license.as_ref().map(|l| l.id.clone()),
        };
        let key = state.master.derive(token::DOWNLOAD_KEY_LABEL);
        let token = token::issue_download(&key, &grant)?;
        Ok(FeedFile {
            artifact: a.clone(),
            url: format!(
                "{base_url}/api/v1/updates/feeds/download/{token}/{}",
                a.file.filename
            ),
        })
    }

    fn critical(&self, release: &Release, current: Option<&Version>) -> bool {
        release.is_critical
            || current.is_some_and(|c| releases::below_minimum(c, self.minimum_version.as_deref()))
    }
}

/// A Tauri update: the release, its file for the target and arch, and whether it is critical.
#[derive(Debug, Clone)]
pub struct TauriUpdate {
    pub release: Release,
    pub file: FeedFile,
    pub is_critical: bool,
}

/// The newest release above `current` (stable channel, or `channel`) with a Tauri updater
/// artifact for `target`/`arch` that the license is in the rollout of; `None`: nothing newer.
pub fn tauri(
    state: &AppState,
    req: &FeedRequest,
    target: &str,
    arch: &str,
    current: &str,
    channel: Option<&str>,
) -> Result<Option<TauriUpdate>, Error> {
    let platform = feeds::parse_tauri_target(target)?;
    let arch = feeds::parse_tauri_arch(arch)?;
    let current = releases::parse_version("current_version", current)?;
    let channel = parse_channel(channel)?;
    let opened = open(state, req)?;
    let filetypes = feeds::tauri_filetypes(&platform);
    let found = feeds::newest_with_file(
        &opened.releases,
        Some(&current),
        channel,
        &opened.subject,
        |r| feeds::choose(&opened.files, &r.id, &platform, Some(arch), filetypes),
    );
    let Some((release, artifact)) = found else {
        return Ok(None);
    };
    Ok(Some(TauriUpdate {
        file: opened.file_url(state, &req.base_url, artifact)?,
        is_critical: opened.critical(release, Some(&current)),
        release: release.clone(),
    }))
}

fn parse_channel(channel: Option<&str>) -> Result<Channel, Error> {
    match channel {
        None | Some("") => Ok(Channel::Stable),
        Some(text) => releases::parse_channel("channel", text),
    }
}

/// One release of a Sparkle appcast.
#[derive(Debug, Clone)]
pub struct AppcastItem {
    pub release: Release,
    pub file: FeedFile,
}

#[derive(Debug, Clone)]
pub struct Appcast {
    pub product: Product,
    /// Newest first.
    pub items: Vec<AppcastItem>,
    /// Clients below it are told every update is critical (`sparkle:criticalUpdate`).
    pub minimum_version: Option<String>,
}

/// Every release on any channel (Sparkle filters by `sparkle:channel` itself) that the license
/// is in the rollout of, with its macOS archive (for `arch`, or universal).
pub fn sparkle(state: &AppState, req: &FeedRequest, arch: Option<&str>) -> Result<Appcast, Error> {
    let arch = match arch {
        None | Some("") => None,
        Some(text) => Some(feeds::parse_arch_alias("arch", text)?),
    };
    let opened = open(state, req)?;
    let mut items = Vec::new();
    for release in feeds::offered_newest_first(&opened.releases, Channel::Nightly, &opened.subject)
    {
        let file = feeds::choose(
            &opened.files,
            &release.id,
            "darwin",
            arch,
            feeds::SPARKLE_FILETYPES,
        );
        if let Some(artifact) = file {
            items.push(AppcastItem {
                release: release.clone(),
                file: opened.file_url(state, &req.base_url, artifact)?,
            });
        }
    }
    Ok(Appcast {
        product: opened.product,
        items,
        minimum_version: opened.minimum_version,
    })
}

/// An electron-updater channel file's release.
#[derive(Debug, Clone)]
pub struct ElectronUpdate {
    pub release: Release,
    /// The installer first (`path`), then the other files of the platform.
    pub files: Vec<FeedFile>,
    /// electron-updater's `stagingPercentage`: written for an anonymous client of a public
    /// feed (electron-updater then decides per installation); a licensed client was already
    /// bucketed here, by its license.
    pub staging_percentage: Option<u8>,
}

/// The newest release on the file's channel (or a more stable one) with a file for its
/// platform; `None` when there is none.
pub fn electron(
    state: &AppState,
    req: &FeedRequest,
    file_name: &str,
) -> Result<Option<ElectronUpdate>, Error> {
    let ElectronFile {
        channel,
        platform,
        arch,
    } = feeds::parse_electron_file(file_name)?;
    let opened = open(state, req)?;
    let filetypes = feeds::electron_filetypes(platform);
    let files_of = |r: &Release| -> Vec<&Artifact> {
        filetypes
            .iter()
            .flat_map(|t| {
                opened.files.iter().filter(move |a| {
                    a.release_id == r.id
                        && a.platform == platform
                        && a.filetype == *t
                        && arch.is_none_or(|want| a.arch == want || a.arch == Arch::Universal)
                        && (arch.is_some() || platform == "darwin" || a.arch != Arch::Aarch64)
                })
            })
            .collect()
    };
    let anonymous = opened.license.is_none();
    let candidates: Vec<Release> = opened
        .releases
        .iter()
        .filter(|r| !files_of(r).is_empty())
        .filter(|r| anonymous || releases::in_rollout(r, &opened.subject))
        .cloned()
        .collect();
    let Some(newest) = releases::newest(&candidates, channel, None) else {
        return Ok(None);
    };
    let files = files_of(newest)
        .into_iter()
        .map(|a| opened.file_url(state, &req.base_url, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ElectronUpdate {
        staging_percentage: (anonymous && newest.rollout_percentage < 100)
            .then_some(newest.rollout_percentage),
        release: newest.clone(),
        files,
    }))
}

/// One package of a Velopack feed.
#[derive(Debug, Clone)]
pub struct VelopackAsset {
    pub package_id: String,
    pub release: Release,
    pub artifact: Artifact,
    /// Hex SHA-1 (computed and kept the first time for an artifact that lacked it).
    pub sha1: String,
}

/// Every release offered on the channel's stability (and more stable ones), newest first, with
/// its full package (`nupkg`) for the channel's OS and arch.
pub async fn velopack(
    state: &AppState,
    req: &FeedRequest,
    channel: &str,
) -> Result<Vec<VelopackAsset>, Error> {
    let VelopackChannel {
        platform,
        arch,
        channel,
    } = feeds::parse_velopack_channel(channel)?;
    let opened = open(state, req)?;
    let mut assets = Vec::new();
    for release in feeds::offered_newest_first(&opened.releases, channel, &opened.subject) {
        let artifact = opened
            .files
            .iter()
            .filter(|a| a.release_id == release.id && a.filetype == "nupkg")
            .filter(|a| platform.is_none_or(|p| a.platform == p))
            .filter(|a| arch.is_none_or(|want| a.arch == want || a.arch == Arch::Universal))
            .min_by_key(|a| if a.arch == Arch::X86_64 { 0 } else { 1 });
        let Some(artifact) = artifact else { continue };
        let sha1 = sha1_of(state, artifact).await?;
        assets.push(VelopackAsset {
            package_id: feeds::velopack_package_id(&opened.product.slug),
            release: release.clone(),
            artifact: artifact.clone(),
            sha1,
        });
    }
    Ok(assets)
}

async fn sha1_of(state: &AppState, artifact: &Artifact) -> Result<String, Error> {
    if !artifact.sha1.is_empty() {
        return Ok(artifact.sha1.clone());
    }
    let path = state.bundles.path(&artifact.file.sha256)?;
    let digests = tokio::task::spawn_blocking(move || artifacts::file_digests(&path))
        .await
        .map_err(|e| Error::Storage(format!("hashing task failed: {e}")))??;
    let id = artifact.id.clone();
    let sha1 = digests.sha1.clone();
    state
        .db
        .write(move |c| repo::set_sha1(c, &id, &sha1))
        .await?;
    Ok(digests.sha1)
}
