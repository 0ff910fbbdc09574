//! `/api/v1/updates/check|download|manifest`: licensed apps ask for updates with their license
//! key (`X-License-Key`), download the bundle and verify it with the product's public key
//! (`/api/v1/updates/public-key`, in `products.rs`).

use poem::{Body, Request};
use poem_openapi::auth::ApiKey;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ApiTags;
use super::error::{ErrorEnvelope, VendorError, VendorResult};
use crate::api::ClientIp;
use crate::domain::audit::AuditEvent;
use crate::domain::licenses::{self, License};
use crate::domain::releases::{self, Bundle, Channel, Release, repo};
use crate::domain::{ms_to_datetime, now_ms};
use crate::error::Error;
use crate::state::AppState;

pub struct UpdatesApi {
    pub state: AppState,
}

/// The license key itself is the credential of the update endpoints.
#[derive(SecurityScheme)]
#[oai(
    rename = "LicenseKey",
    ty = "api_key",
    key_name = "X-License-Key",
    key_in = "header",
    checker = "active_license"
)]
pub struct LicenseKeyAuth(License);

async fn active_license(req: &Request, key: ApiKey) -> poem::Result<License> {
    licensed(req, &key.key).map_err(|e| {
        poem::Error::from_response(poem::IntoResponse::into_response(VendorError::from_error(
            &e,
        )))
    })
}

/// The license presented in `X-License-Key`, if it exists and is ACTIVE and unexpired now.
fn licensed(req: &Request, presented: &str) -> Result<License, Error> {
    let Some(state) = req.data::<AppState>() else {
        return Err(Error::Storage("application state missing".into()));
    };
    let key = licenses::normalize_key(presented);
    let found = if key.is_empty() || key.len() > 128 {
        None
    } else {
        state
            .db
            .read(|c| licenses::repo::find_by_key_everywhere(c, &key))?
    };
    let Some(license) = found else {
        state
            .abuse
            .unknown_key(ClientIp::of(req), crate::abuse::Scope::Unknown);
        // Each wrong key costs the IP one token of a small allowance: guessing stops early.
        if let Some(ip) = ClientIp::of(req) {
            state.limits.failed_auth_per_ip.check(&ip)?;
        }
        return Err(Error::Unauthorized("Invalid license key".into()));
    };
    if let Some(problem) = license.problem(now_ms()) {
        return Err(Error::LicenseRefused(problem));
    }
    Ok(license)
}

#[derive(Object, Debug)]
pub struct UpdateCheckOk {
    pub success: bool,
    pub update_available: bool,
    #[oai(skip_serializing_if_is_none)]
    pub version: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub channel: Option<Channel>,
    #[oai(skip_serializing_if_is_none)]
    pub changelog: Option<String>,
    /// Bytes of the full bundle.
    #[oai(skip_serializing_if_is_none)]
    pub bundle_size: Option<u64>,
    /// Hex SHA-256 of the full bundle.
    #[oai(skip_serializing_if_is_none)]
    pub sha256: Option<String>,
    /// Ed25519 over the full bundle's exact bytes, base64.
    #[oai(skip_serializing_if_is_none)]
    pub signature: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub is_critical: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub requires_migration: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub published_at: Option<OffsetDateTime>,
    #[oai(skip_serializing_if_is_none)]
    pub release_id: Option<String>,
}

/// A smaller bundle for clients upgrading from `fromVersion`.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DeltaInfo {
    pub from_version: String,
    pub bundle_filename: String,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub signature: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ReleaseInfo {
    pub release_id: String,
    /// Semver version.
    pub version: String,
    /// stable, rc, beta, alpha or nightly.
    pub channel: Channel,
    pub changelog: String,
    pub bundle_filename: String,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    /// Ed25519 over the bundle's exact bytes, base64.
    pub signature: String,
    pub is_critical: bool,
    pub requires_migration: bool,
    pub published_at: Option<OffsetDateTime>,
    pub deltas: Vec<DeltaInfo>,
}

#[derive(Object, Debug)]
pub struct ManifestOk {
    pub success: bool,
    pub release: ReleaseInfo,
}

#[derive(ApiResponse)]
pub enum CheckResponse {
    /// Whether a newer release is available on the channel (or a more stable one), and
    /// if so which. Limit: 60 checks per 15 minutes per license key.
    #[oai(status = 200)]
    Ok(Json<UpdateCheckOk>),
}

#[derive(ApiResponse)]
pub enum ManifestResponse {
    /// The release's metadata, without the bundle.
    #[oai(status = 200)]
    Ok(Json<ManifestOk>),
}

#[derive(ApiResponse)]
pub enum DownloadResponse {
    /// The whole bundle. Limit: 10 downloads per hour per license key and per IP.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// Hex SHA-256 of the whole bundle.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the whole bundle's exact bytes, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// Always `bytes`: an interrupted download resumes with `Range`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
        /// The bundle's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The requested part of the bundle (`Range: bytes=start-end`).
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// `bytes start-end/size`.
        #[oai(header = "Content-Range")]
        String,
        /// Hex SHA-256 of the whole bundle.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the whole bundle's exact bytes, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// Always `bytes`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
        /// The bundle's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The range starts beyond the end of the bundle (`RANGE_NOT_SATISFIABLE`).
    #[oai(status = 416)]
    RangeNotSatisfiable(
        Json<ErrorEnvelope>,
        /// `bytes */size`.
        #[oai(header = "Content-Range")]
        String,
    ),
}

#[OpenApi(tag = "ApiTags::Updates")]
impl UpdatesApi {
    /// Check for an update
    ///
    /// The license (`X-License-Key`) must be ACTIVE and unexpired. Answers the highest
    /// published release above `current_version` on `channel` or a more stable one
    /// (stable > rc > beta > alpha > nightly), by semver precedence.
    #[oai(path = "/api/v1/updates/check", method = "get")]
    async fn check(
        &self,
        auth: LicenseKeyAuth,
        /// The version the client runs (semver, e.g. `1.2.0` or `2.0.0-beta.1`).
        current_version: Query<String>,
        /// stable (default), rc, beta, alpha or nightly.
        channel: Query<Option<String>>,
    ) -> VendorResult<CheckResponse> {
        let license = auth.0;
        let current = releases::parse_version("current_version", &current_version.0)?;
        let channel = match channel.0.as_deref() {
            None | Some("") => Channel::Stable,
            Some(text) => releases::parse_channel("channel", text)?,
        };
        self.state
            .limits
            .update_checks_per_license
            .check(&license.id)?;
        let published = self
            .state
            .db
            .read(|c| repo::published_for_product(c, &license.product_id))?;
        let answer = match releases::newest_update(&published, &current, channel) {
            None => UpdateCheckOk {
                success: true,
                update_available: false,
                version: None,
                channel: None,
                changelog: None,
                bundle_size: None,
                sha256: None,
                signature: None,
                is_critical: None,
                requires_migration: None,
                published_at: None,
                release_id: None,
            },
            Some(r) => UpdateCheckOk {
                success: true,
                update_available: true,
                version: Some(r.version.clone()),
                channel: Some(r.channel),
                changelog: Some(r.changelog.clone()),
                bundle_size: Some(r.bundle.size),
                sha256: Some(r.bundle.sha256.clone()),
                signature: Some(r.bundle.signature.clone()),
                is_critical: Some(r.is_critical),
                requires_migration: Some(r.requires_migration),
                published_at: r.published_at.map(ms_to_datetime),
                release_id: Some(r.id.clone()),
            },
        };
        Ok(CheckResponse::Ok(Json(answer)))
    }

    /// Release metadata
    ///
    /// Version, filename, size, SHA-256, signature, channel, flags and publish date of a
    /// published release of the license's product, without the bundle.
    #[oai(path = "/api/v1/updates/manifest", method = "get")]
    async fn manifest(
        &self,
        auth: LicenseKeyAuth,
        /// The `release_id` an update check answered.
        release_id: Query<String>,
    ) -> VendorResult<ManifestResponse> {
        let license = auth.0;
        let (release, deltas) = self.state.db.read(|c| {
            let r = served_release(c, &license, &release_id.0)?;
            let deltas = repo::deltas_of(c, &r.id)?;
            Ok((r, deltas))
        })?;
        Ok(ManifestResponse::Ok(Json(ManifestOk {
            success: true,
            release: ReleaseInfo {
                release_id: release.id.clone(),
                version: release.version.clone(),
                channel: release.channel,
                changelog: release.changelog.clone(),
                bundle_filename: release.bundle.filename.clone(),
                bundle_size: release.bundle.size,
                bundle_sha256: release.bundle.sha256.clone(),
                signature: release.bundle.signature.clone(),
                is_critical: release.is_critical,
                requires_migration: release.requires_migration,
                published_at: release.published_at.map(ms_to_datetime),
                deltas: deltas
                    .iter()
                    .map(|d| DeltaInfo {
                        from_version: d.from_version.clone(),
                        bundle_filename: d.bundle.filename.clone(),
                        bundle_size: d.bundle.size,
                        bundle_sha256: d.bundle.sha256.clone(),
                        signature: d.bundle.signature.clone(),
                    })
                    .collect(),
            },
        })))
    }

    /// Download a bundle
    ///
    /// Streams the bundle of a published release of the license's product. With
    /// `from_version` naming a version a delta bundle was uploaded for, that smaller bundle
    /// is sent instead (its own hash and signature are in the headers). Supports
    /// `Range: bytes=start-` to resume.
    #[oai(path = "/api/v1/updates/download", method = "get")]
    async fn download(
        &self,
        req: &Request,
        auth: LicenseKeyAuth,
        /// The `release_id` an update check answered.
        release_id: Query<String>,
        /// The version the client runs; selects a delta bundle when one exists.
        from_version: Query<Option<String>>,
        /// `bytes=start-end`, `bytes=start-` or `bytes=-suffix`, to resume.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> VendorResult<DownloadResponse> {
        let license = auth.0;
        let ip = ClientIp::of(req);
        let from = match from_version.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(releases::parse_version("from_version", text)?),
        };
        self.state.limits.downloads_per_license.check(&license.id)?;
        if let Some(ip) = ip {
            self.state.limits.downloads_per_ip.check(&ip)?;
        }
        let (release, bundle) = self.state.db.read(|c| {
            let r = served_release(c, &license, &release_id.0)?;
            let delta = match &from {
                Some(v) => repo::find_delta(c, &r.id, &v.to_string())?,
                None => None,
            };
            let bundle = delta.map_or_else(|| r.bundle.clone(), |d| d.bundle);
            Ok((r, bundle))
        })?;
        let path = self.state.bundles.path(&bundle.sha256)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            Error::Storage(format!("bundle file {} unreadable: {e}", path.display()))
        })?;
        let size = bundle.size;
        let wanted = match range.0.as_deref().map(|r| parse_range(r, size)) {
            Some(Err(Unsatisfiable)) => {
                return Ok(DownloadResponse::RangeNotSatisfiable(
                    ErrorEnvelope::new(
                        "RANGE_NOT_SATISFIABLE",
                        format!("The range starts beyond the end of the {size}-byte bundle"),
                    ),
                    format!("bytes */{size}"),
                ));
            }
            Some(Ok(r)) => r,
            None => None,
        };
        self.audit_download(&license, &release, &bundle, from.as_ref(), wanted, ip);
        let disposition = format!("attachment; filename=\"{}\"", bundle.filename);
        let etag = format!("\"{}\"", bundle.sha256);
        match wanted {
            None => Ok(DownloadResponse::Full(
                Binary(crate::api::shared::body::bundle_body(file)),
                size,
                bundle.sha256,
                bundle.signature,
                "bytes".into(),
                disposition,
                etag,
            )),
            Some((start, end)) => {
                file.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(|e| Error::Storage(format!("cannot seek a bundle: {e}")))?;
                let len = end - start + 1;
                Ok(DownloadResponse::Partial(
                    Binary(crate::api::shared::body::bundle_body(file.take(len))),
                    len,
                    format!("bytes {start}-{end}/{size}"),
                    bundle.sha256,
                    bundle.signature,
                    "bytes".into(),
                    disposition,
                    etag,
                ))
            }
        }
    }
}

impl UpdatesApi {
    fn audit_download(
        &self,
        license: &License,
        release: &Release,
        bundle: &Bundle,
        from: Option<&semver::Version>,
        range: Option<(u64, u64)>,
        ip: Option<std::net::IpAddr>,
    ) {
        let ip = ip.map(|i| i.to_string());
        self.state.db.writer().record(
            AuditEvent::new(
                &license.tenant_id,
                "license",
                crate::domain::audit::AuditAction::UpdateDownload,
            )
            .license(&license.product_id, &license.id)
            .ip(ip.as_deref())
            .detail(json!({
                "releaseId": release.id,
                "version": release.version,
                "fromVersion": from.map(ToString::to_string),
                "delta": bundle.sha256 != release.bundle.sha256,
                "rangeStart": range.map(|(start, _)| start),
            })),
        );
    }
}

/// A published release of the license's product; anything else (another product's, a draft,
/// a yanked one) is indistinguishable from a missing one.
fn served_release(
    c: &rusqlite::Connection,
    license: &License,
    release_id: &str,
) -> Result<Release, Error> {
    if release_id.len() > 64 {
        return Err(Error::NotFound("release"));
    }
    repo::find_in_product(c, &license.product_id, release_id)?
        .filter(Release::is_served)
        .ok_or(Error::NotFound("release"))
}

#[derive(Debug, PartialEq, Eq)]
struct Unsatisfiable;

/// An inclusive byte range to send, `None` for the whole bundle.
type WantedRange = Result<Option<(u64, u64)>, Unsatisfiable>;

/// One byte range of a `size`-byte file, inclusive. `Ok(None)`: serve the whole file (no
/// usable single range: several ranges or a header we do not understand, which RFC 9110 lets
/// a server ignore). `Err`: the range lies beyond the end (416).
fn parse_range(header: &str, size: u64) -> WantedRange {
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
