//! Software updates for licensed apps: the license key itself is the credential; an app
//! checks for the newest release of its channel (or a more stable one), reads its manifest
//! and downloads the signed bundle (whole, a range of it, or a delta).

use std::net::IpAddr;

use semver::Version;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::releases::ReleaseWithDeltas;
use super::{Ctx, Signed, Signer};
use crate::domain::artifacts::{self, Artifact, Picked, Wanted};
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::licenses::{self, License};
use crate::domain::releases::{self, Bundle, Channel, Release, repo};
use crate::domain::revocations;
use crate::domain::{ProductId, TenantId, now_ms};
use crate::error::Error;
use crate::state::AppState;

/// A licensed app proven by its license key: its context (one product) and its license.
#[derive(Debug, Clone)]
pub struct LicensedApp {
    pub ctx: Ctx,
    pub license: License,
}

/// The license presented as the update credential, if it exists and is ACTIVE and unexpired
/// now. Each unknown key is reported to abuse detection and costs the address one token of a
/// small allowance, so guessing stops early.
pub fn authenticate(
    state: &AppState,
    presented: &str,
    ip: Option<IpAddr>,
) -> Result<LicensedApp, Error> {
    let key = licenses::normalize_key(presented);
    let found = if key.is_empty() || key.len() > 128 {
        None
    } else {
        state
            .db
            .read(|c| licenses::repo::find_by_key_everywhere(c, &key))?
    };
    let Some(license) = found else {
        state.abuse.unknown_key(ip, crate::abuse::Scope::Unknown);
        if let Some(ip) = ip {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        return Err(Error::Unauthorized("Invalid license key".into()));
    };
    if let Some(problem) = license.problem(now_ms()) {
        return Err(Error::LicenseRefused(problem));
    }
    let ctx = Ctx::app(
        TenantId::from(license.tenant_id.as_str()),
        ProductId::from(license.product_id.as_str()),
        ip,
    );
    Ok(LicensedApp { ctx, license })
}

/// What an update check answers.
#[derive(Debug, Clone)]
pub struct UpdateCheck {
    /// The highest published release above the app's version, if any.
    pub release: Option<Release>,
    /// The file of that release the app would download: its own bundle, or the artifact that
    /// matches the app's platform and arch (`None` when the release has several and the app
    /// named none).
    pub file: Option<Bundle>,
    /// The release is critical, or the app runs below the product's minimum version.
    pub is_critical: bool,
    /// The current version of the product's revocation list, so the app learns of a newer one.
    pub revocations_version: u64,
}

/// The highest published release above `current` on `channel` or a more stable one that the
/// license is in the rollout of (and, when the app names its platform, that has a file for
/// it), if any, and the version of the product's revocation list, signed with the product's
/// current key (an offline-minded app trusts the offered release only through it). Below the
/// product's minimum version the update is critical.
pub fn check(
    state: &AppState,
    app: &LicensedApp,
    current: &Version,
    channel: Channel,
    wanted: &Wanted<'_>,
) -> Result<Signed<UpdateCheck>, Error> {
    state
        .limits
        .update_checks_per_license
        .check(&app.license.id)?;
    let product_id = &app.license.product_id;
    let (mut published, files, minimum, revocations_version) = state.db.read(|c| {
        Ok((
            repo::published_for_product(c, product_id)?,
            artifacts::repo::of_published(c, product_id)?,
            repo::minimum_version(c, product_id)?,
            revocations::repo::version(c, product_id)?,
        ))
    })?;
    let files_of = |r: &Release| -> Vec<Artifact> {
        files
            .iter()
            .filter(|a| a.release_id == r.id)
            .cloned()
            .collect()
    };
    if wanted.platform.is_some() || wanted.arch.is_some() || wanted.filetype.is_some() {
        published.retain(|r| artifacts::pick(r, &files_of(r), wanted).is_ok());
    }
    let release =
        releases::newest_update_for(&published, current, channel, &app.license.id).cloned();
    let file = release.as_ref().and_then(|r| {
        artifacts::pick(r, &files_of(r), wanted)
            .ok()
            .map(|p| p.file().clone())
    });
    let is_critical = release
        .as_ref()
        .is_some_and(|r| r.is_critical || releases::below_minimum(current, minimum.as_deref()));
    let signer = Signer::of_product_id(state, product_id)?;
    Ok(Signed::new(
        UpdateCheck {
            release,
            file,
            is_critical,
            revocations_version,
        },
        signer,
    ))
}

/// A published release of the app's product, without the bundle.
pub fn manifest(
    state: &AppState,
    app: &LicensedApp,
    release_id: &str,
) -> Result<ReleaseWithDeltas, Error> {
    state.db.read(|c| {
        let release = served_release(c, app, release_id)?;
        super::releases::with_deltas(c, release)
    })
}

/// What a download sends.
pub enum BundleDownload {
    /// The whole bundle.
    Whole {
        file: tokio::fs::File,
        bundle: Bundle,
    },
    /// Bytes `start..=end` of it; `file` is positioned at `start` and ends after `end`.
    Part {
        file: tokio::io::Take<tokio::fs::File>,
        start: u64,
        end: u64,
        bundle: Bundle,
    },
    /// The range starts beyond the end of the `size`-byte bundle.
    Unsatisfiable { size: u64 },
}

/// The bundle of a published release of the app's product, or the artifact that matches
/// `wanted` (platform, arch, filetype); with `from` naming a version a delta was uploaded for,
/// that smaller bundle instead. `range` is an HTTP `Range` header. Each download (not a refused
/// range) is audited.
pub async fn download(
    state: &AppState,
    app: &LicensedApp,
    release_id: &str,
    from: Option<Version>,
    wanted: &Wanted<'_>,
    range: Option<&str>,
) -> Result<BundleDownload, Error> {
    let license = &app.license;
    state.limits.downloads_per_license.check(&license.id)?;
    if let Some(ip) = app.ctx.ip {
        state.limits.downloads_per_ip.check(&ip)?;
    }
    let (release, bundle, what) = state.db.read(|c| {
        let r = served_release(c, app, release_id)?;
        let delta = match &from {
            Some(v) => repo::find_delta(c, &r.id, &v.to_string())?,
            None => None,
        };
        if let Some(d) = delta {
            return Ok((r, d.bundle, Served::Delta));
        }
        let files = artifacts::repo::of_release(c, &r.id)?;
        let (bundle, what) = match artifacts::pick(&r, &files, wanted)? {
            Picked::Bundle(b) => (b.clone(), Served::Bundle),
            Picked::Artifact(a) => (a.file.clone(), Served::Artifact(Box::new(a.clone()))),
        };
        Ok((r, bundle, what))
    })?;
    let download = open_download(state, bundle, range).await?;
    if let Some(sent) = download.sent_range() {
        record_download(state, app, &release, &what, from.as_ref(), sent);
    }
    Ok(download)
}

/// A stored file (bundle or artifact) opened for reading (blocking-free).
pub(crate) async fn open_stored(
    state: &AppState,
    bundle: &Bundle,
) -> Result<tokio::fs::File, Error> {
    let path = state.bundles.path(&bundle.sha256)?;
    tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::Storage(format!("bundle file {} unreadable: {e}", path.display())))
}

/// A stored file opened for a download: whole, or the part an HTTP `Range` header asks for.
pub(super) async fn open_download(
    state: &AppState,
    bundle: Bundle,
    range: Option<&str>,
) -> Result<BundleDownload, Error> {
    let mut file = open_stored(state, &bundle).await?;
    let size = bundle.size;
    match range.map(|r| parse_range(r, size)) {
        Some(Err(Unsatisfiable)) => Ok(BundleDownload::Unsatisfiable { size }),
        Some(Ok(None)) | None => Ok(BundleDownload::Whole { file, bundle }),
        Some(Ok(Some((start, end)))) => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| Error::Storage(format!("cannot seek a bundle: {e}")))?;
            Ok(BundleDownload::Part {
                file: file.take(end - start + 1),
                start,
                end,
                bundle,
            })
        }
    }
}

impl BundleDownload {
    /// What is sent, for the audit trail: `Some(None)` the whole file, `Some(Some((start,
    /// end)))` a part, `None` nothing (an unsatisfiable range).
    pub(super) fn sent_range(&self) -> Option<Option<(u64, u64)>> {
        match self {
            Self::Whole { .. } => Some(None),
            Self::Part { start, end, .. } => Some(Some((*start, *end))),
            Self::Unsatisfiable { .. } => None,
        }
    }
}

/// Which file of a release a download sends.
enum Served {
    Bundle,
    Delta,
    Artifact(Box<Artifact>),
}

fn record_download(
    state: &AppState,
    app: &LicensedApp,
    release: &Release,
    what: &Served,
    from: Option<&Version>,
    range: Option<(u64, u64)>,
) {
    let artifact = match what {
        Served::Artifact(a) => Some(a.as_ref()),
        _ => None,
    };
    let license = &app.license;
    // The trail has always named this actor `license` (the key proved the request).
    state.db.writer().record(
        AuditEvent::new(&license.tenant_id, "license", AuditAction::UpdateDownload)
            .license(&license.product_id, &license.id)
            .ip(app.ctx.ip_text().as_deref())
            .detail(json!({
                "releaseId": release.id,
                "version": release.version,
                "fromVersion": from.map(ToString::to_string),
                "delta": matches!(what, Served::Delta),
                "rangeStart": range.map(|(start, _)| start),
                "artifactId": artifact.map(|a| &a.id),
                "platform": artifact.map(|a| &a.platform),
                "arch": artifact.map(|a| a.arch.as_str()),
            })),
    );
}

/// A published release of the app's product; anything else (another product's, a draft, a
/// yanked one) is indistinguishable from a missing one.
fn served_release(
    c: &rusqlite::Connection,
    app: &LicensedApp,
    release_id: &str,
) -> Result<Release, Error> {
    if release_id.len() > 64 {
        return Err(Error::NotFound("release"));
    }
    repo::find_in_product(c, &app.license.product_id, release_id)?
        .filter(|r| app.ctx.reaches(&r.tenant_id, &r.product_id))
        .filter(Release::is_served)
        .ok_or(Error::NotFound("release"))
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unsatisfiable;

/// An inclusive byte range to send, `None` for the whole bundle.
pub(super) type WantedRange = Result<Option<(u64, u64)>, Unsatisfiable>;

/// One byte range of a `size`-byte file, inclusive. `Ok(None)`: serve the whole file (no
/// usable single range: several ranges or a header we do not understand, which RFC 9110 lets
/// a server ignore). `Err`: the range lies beyond the end (416).
pub(super) fn parse_range(header: &str, size: u64) -> WantedRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match parse(last) {
            Some(0) => Err(Unsatisfiable),
            Some(_) if size == 0 => Err(Unsatisfiable),
            Some(n) => Ok(Some((size.saturating_sub(n), size - 1))),
            None => Ok(None),
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return Ok(None);
            };
            let end = if last.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(last) {
                    Some(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return Ok(None),
                }
            };
            if start >= size {
                return Err(Unsatisfiable);
            }
            Ok(Some((start, end)))
        }
        (true, true) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases: &[(&str, WantedRange)] = &[
            ("bytes=0-99", Ok(Some((0, 99)))),
            ("bytes=100-", Ok(Some((100, 999)))),
            ("bytes=-100", Ok(Some((900, 999)))),
            ("bytes=-5000", Ok(Some((0, 999)))),
            ("bytes=500-5000", Ok(Some((500, 999)))),
            ("bytes=999-", Ok(Some((999, 999)))),
            ("bytes=1000-", Err(Unsatisfiable)),
            ("bytes=-0", Err(Unsatisfiable)),
            ("bytes=5-1", Ok(None)),
            ("bytes=0-1,5-9", Ok(None)),
            ("items=0-1", Ok(None)),
            ("bytes=a-b", Ok(None)),
            ("bytes=-", Ok(None)),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_range(header, 1000), expected, "{header}");
        }
    }
}
