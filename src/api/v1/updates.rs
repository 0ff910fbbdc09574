//! `/api/v1/updates/check|download|manifest`: licensed apps ask for updates with their license
//! key (`X-License-Key`), download the bundle and verify it with the product's public key
//! (`/api/v1/updates/public-key`, in `products.rs`).

use poem::{Body, Request};
use poem_openapi::auth::ApiKey;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use time::OffsetDateTime;

use super::ApiTags;
use super::error::{ErrorEnvelope, VendorError, VendorResult};
use crate::api::ClientIp;
use crate::api::shared::signed::SignedJson;
use crate::domain::artifacts::{self, Arch, Wanted};
use crate::domain::ms_to_datetime;
use crate::domain::releases::{self, Bundle, Channel};
use crate::error::Error;
use crate::service;
use crate::service::releases::ReleaseWithDeltas;
use crate::service::updates::{BundleDownload, LicensedApp};
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
pub struct LicenseKeyAuth(pub LicensedApp);

async fn active_license(req: &Request, key: ApiKey) -> poem::Result<LicensedApp> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| refused(&Error::Storage("application state missing".into())))?;
    service::updates::authenticate(state, &key.key, ClientIp::of(req)).map_err(|e| refused(&e))
}

fn refused(e: &Error) -> poem::Error {
    poem::Error::from_response(poem::IntoResponse::into_response(VendorError::from_error(
        e,
    )))
}

#[derive(Object, Debug)]
pub struct UpdateCheckOk {
    pub success: bool,
    pub update_available: bool,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub version: Option<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub channel: Option<Channel>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub changelog: Option<String>,
    /// Bytes of the full bundle.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub bundle_size: Option<u64>,
    /// Hex SHA-256 of the full bundle.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub sha256: Option<String>,
    /// Ed25519 over the full bundle's exact bytes, base64.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub signature: Option<String>,
    /// The kid of the product key that made `signature` (listed by
    /// `GET /api/v1/updates/public-key`): the key current when the bundle was uploaded.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub signature_kid: Option<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub is_critical: Option<bool>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub requires_migration: Option<bool>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub published_at: Option<OffsetDateTime>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub release_id: Option<String>,
    /// The current version of the product's revocation list
    /// (`GET /api/v1/license/revocations`): fetch the list when it is newer than the one the
    /// app holds.
    pub revocations_version: u64,
}

impl crate::api::shared::signed::SignedBody for UpdateCheckOk {}

/// A smaller bundle for clients upgrading from `fromVersion`.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DeltaInfo {
    pub from_version: String,
    pub bundle_filename: String,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub signature: String,
    /// The kid of the product key that made `signature`.
    pub signature_kid: String,
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
    /// The release's own bundle; null for a release served through its `artifacts` only.
    #[oai(nullable)]
    pub bundle_filename: Option<String>,
    #[oai(nullable)]
    pub bundle_size: Option<u64>,
    #[oai(nullable)]
    pub bundle_sha256: Option<String>,
    /// Ed25519 over the bundle's exact bytes, base64.
    #[oai(nullable)]
    pub signature: Option<String>,
    /// The kid of the product key that made `signature` (the key current at upload).
    #[oai(nullable)]
    pub signature_kid: Option<String>,
    pub is_critical: bool,
    pub requires_migration: bool,
    #[oai(nullable)]
    pub published_at: Option<OffsetDateTime>,
    pub deltas: Vec<DeltaInfo>,
    /// The release's files per platform: download one with `platform`, `arch` (and
    /// `filetype` when a platform has several).
    pub artifacts: Vec<ArtifactInfo>,
}

/// A file of a release for one platform, architecture and file type.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ArtifactInfo {
    /// windows, darwin, linux, …
    pub platform: String,
    pub arch: Arch,
    /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
    pub filetype: String,
    pub filename: String,
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Hex SHA-512.
    pub sha512: String,
    /// Ed25519 over the exact bytes, base64.
    pub signature: String,
    /// The kid of the product key that made `signature` and `minisignSignature`.
    pub signature_kid: String,
    /// The text of a minisign `.sig` file (prehashed Ed25519, BLAKE2b-512, trusted comment).
    pub minisign_signature: String,
}

#[derive(Object, Debug)]
pub struct ManifestOk {
    pub success: bool,
    pub release: ReleaseInfo,
}

#[derive(ApiResponse)]
pub enum CheckResponse {
    /// Whether a newer release is available on the channel (or a more stable one), and
    /// if so which. Limit: 60 checks per 15 minutes per license key. Signed with the product's
    /// current key (`X-Signature`, Ed25519 over the exact body; `X-Keyward-Key-Id` names it).
    #[oai(status = 200)]
    Ok(
        SignedJson<UpdateCheckOk>,
        /// Product whose key signed the body.
        #[oai(header = "X-Keyward-Product")]
        String,
    ),
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
        /// The kid of the product key that made `X-Bundle-Signature`.
        #[oai(header = "X-Keyward-Key-Id")]
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
        /// The kid of the product key that made `X-Bundle-Signature`.
        #[oai(header = "X-Keyward-Key-Id")]
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
    /// (stable > rc > beta > alpha > nightly), by semver precedence, among those whose staged
    /// rollout includes the license (a stable hash of release and license below the release's
    /// `rolloutPercentage`). `is_critical` is also true below the product's minimum version.
    #[oai(path = "/api/v1/updates/check", method = "get")]
    async fn check(
        &self,
        auth: LicenseKeyAuth,
        /// The version the client runs (semver, e.g. `1.2.0` or `2.0.0-beta.1`).
        current_version: Query<String>,
        /// stable (default), rc, beta, alpha or nightly.
        channel: Query<Option<String>>,
        /// The client's platform (windows, darwin, linux, …): only releases with a file for it
        /// are offered, and the answer's hash and signature are that file's.
        platform: Query<Option<String>>,
        /// The client's architecture (x86_64, aarch64, i686, armv7, universal).
        arch: Query<Option<String>>,
    ) -> VendorResult<CheckResponse> {
        let app = auth.0;
        let current = releases::parse_version("current_version", &current_version.0)?;
        let channel = match channel.0.as_deref() {
            None | Some("") => Channel::Stable,
            Some(text) => releases::parse_channel("channel", text)?,
        };
        let (platform, arch) = platform_and_arch(platform.0.as_deref(), arch.0.as_deref())?;
        let wanted = Wanted {
            platform: platform.as_deref(),
            arch,
            filetype: None,
        };
        let signed = service::updates::check(&self.state, &app, &current, channel, &wanted)?;
        let product_id = signed.signer.product_id().to_string();
        let checked = signed.body;
        let revocations_version = checked.revocations_version;
        let file = checked.file;
        let is_critical = checked.is_critical;
        let answer = match checked.release {
            None => UpdateCheckOk {
                success: true,
                update_available: false,
                version: None,
                channel: None,
                changelog: None,
                bundle_size: None,
                sha256: None,
                signature: None,
                signature_kid: None,
                is_critical: None,
                requires_migration: None,
                published_at: None,
                release_id: None,
                revocations_version,
            },
            Some(r) => UpdateCheckOk {
                success: true,
                update_available: true,
                version: Some(r.version.clone()),
                channel: Some(r.channel),
                changelog: Some(r.changelog.clone()),
                bundle_size: file.as_ref().map(|f| f.size),
                sha256: file.as_ref().map(|f| f.sha256.clone()),
                signature: file.as_ref().map(|f| f.signature.clone()),
                signature_kid: file.as_ref().map(|f| f.signature_kid.clone()),
                is_critical: Some(is_critical),
                requires_migration: Some(r.requires_migration),
                published_at: r.published_at.map(ms_to_datetime),
                release_id: Some(r.id.clone()),
                revocations_version,
            },
        };
        Ok(CheckResponse::Ok(
            SignedJson::new(answer, signed.signer),
            product_id,
        ))
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
        let ReleaseWithDeltas {
            release,
            deltas,
            artifacts,
        } = service::updates::manifest(&self.state, &auth.0, &release_id.0)?;
        let bundle = release.bundle.as_ref();
        Ok(ManifestResponse::Ok(Json(ManifestOk {
            success: true,
            release: ReleaseInfo {
                release_id: release.id.clone(),
                version: release.version.clone(),
                channel: release.channel,
                changelog: release.changelog.clone(),
                bundle_filename: bundle.map(|b| b.filename.clone()),
                bundle_size: bundle.map(|b| b.size),
                bundle_sha256: bundle.map(|b| b.sha256.clone()),
                signature: bundle.map(|b| b.signature.clone()),
                signature_kid: bundle.map(|b| b.signature_kid.clone()),
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
                        signature_kid: d.bundle.signature_kid.clone(),
                    })
                    .collect(),
                artifacts: artifacts
                    .iter()
                    .map(|a| ArtifactInfo {
                        platform: a.platform.clone(),
                        arch: a.arch,
                        filetype: a.filetype.clone(),
                        filename: a.file.filename.clone(),
                        size: a.file.size,
                        sha256: a.file.sha256.clone(),
                        sha512: a.sha512.clone(),
                        signature: a.file.signature.clone(),
                        signature_kid: a.file.signature_kid.clone(),
                        minisign_signature: a.minisign_signature.clone(),
                    })
                    .collect(),
            },
        })))
    }

    /// Download a bundle
    ///
    /// Streams the bundle of a published release of the license's product. With
    /// `from_version` naming a version a delta bundle was uploaded for, that smaller bundle
    /// is sent instead (its own hash and signature are in the headers). With `platform` and
    /// `arch` (and `filetype` when the platform has several), the matching artifact is sent; a
    /// release with a bundle of its own sends that bundle when no artifact matches. Supports
    /// `Range: bytes=start-` to resume.
    #[oai(path = "/api/v1/updates/download", method = "get")]
    // One argument per query parameter, as poem-openapi declares them.
    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        auth: LicenseKeyAuth,
        /// The `release_id` an update check answered.
        release_id: Query<String>,
        /// The version the client runs; selects a delta bundle when one exists.
        from_version: Query<Option<String>>,
        /// windows, darwin, linux, …: selects the release's artifact for that platform.
        platform: Query<Option<String>>,
        /// x86_64, aarch64, i686, armv7 or universal.
        arch: Query<Option<String>>,
        /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …: needed when the
        /// platform and arch have several artifacts.
        filetype: Query<Option<String>>,
        /// `bytes=start-end`, `bytes=start-` or `bytes=-suffix`, to resume.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> VendorResult<DownloadResponse> {
        let from = match from_version.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(releases::parse_version("from_version", text)?),
        };
        let (platform, arch) = platform_and_arch(platform.0.as_deref(), arch.0.as_deref())?;
        let filetype = match filetype.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(artifacts::parse_filetype("filetype", text)?),
        };
        let wanted = Wanted {
            platform: platform.as_deref(),
            arch,
            filetype: filetype.as_deref(),
        };
        let download = service::updates::download(
            &self.state,
            &auth.0,
            &release_id.0,
            from,
            &wanted,
            range.0.as_deref(),
        )
        .await?;
        match download {
            BundleDownload::Unsatisfiable { size } => Ok(DownloadResponse::RangeNotSatisfiable(
                ErrorEnvelope::new(
                    "RANGE_NOT_SATISFIABLE",
                    format!("The range starts beyond the end of the {size}-byte bundle"),
                ),
                format!("bytes */{size}"),
            )),
            BundleDownload::Whole { file, bundle } => Ok(DownloadResponse::Full(
                Binary(crate::api::shared::body::bundle_body(file)),
                bundle.size,
                bundle.sha256.clone(),
                bundle.signature.clone(),
                bundle.signature_kid.clone(),
                "bytes".into(),
                disposition(&bundle),
                etag(&bundle),
            )),
            BundleDownload::Part {
                file,
                start,
                end,
                bundle,
            } => Ok(DownloadResponse::Partial(
                Binary(crate::api::shared::body::bundle_body(file)),
                end - start + 1,
                format!("bytes {start}-{end}/{}", bundle.size),
                bundle.sha256.clone(),
                bundle.signature.clone(),
                bundle.signature_kid.clone(),
                "bytes".into(),
                disposition(&bundle),
                etag(&bundle),
            )),
        }
    }
}

/// The optional `platform` and `arch` of a request, checked (empty means absent).
fn platform_and_arch(
    platform: Option<&str>,
    arch: Option<&str>,
) -> Result<(Option<String>, Option<Arch>), Error> {
    let platform = match platform {
        None | Some("") => None,
        Some(text) => Some(artifacts::parse_platform("platform", text)?),
    };
    let arch = match arch {
        None | Some("") => None,
        Some(text) => Some(artifacts::parse_arch("arch", text)?),
    };
    Ok((platform, arch))
}

fn disposition(bundle: &Bundle) -> String {
    format!("attachment; filename=\"{}\"", bundle.filename)
}

fn etag(bundle: &Bundle) -> String {
    format!("\"{}\"", bundle.sha256)
}
