//! The answers of the feed endpoints: Tauri's JSON, the text feeds, Velopack's JSON and
//! packages, the download links and the feed tokens.

use poem::{Body, IntoResponse};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};
use time::OffsetDateTime;

use crate::api::v1::error::ErrorEnvelope;

/// Tauri v2's dynamic update answer.
#[derive(Object, Debug)]
pub struct TauriUpdate {
    /// Semver version of the update.
    pub version: String,
    /// The release notes.
    pub notes: String,
    /// When the release was published (RFC 3339).
    pub pub_date: OffsetDateTime,
    /// The updater artifact for the target and arch: a download URL with a short-lived
    /// token, fetched without the license key.
    pub url: String,
    /// The content of the artifact's `.sig` file as Tauri's bundler writes it: base64 of a
    /// minisign signature (prehashed Ed25519, BLAKE2b-512, trusted comment) made by the
    /// product's signing key (`tauri.conf.json` `plugins.updater.pubkey`: see the project's
    /// update settings).
    pub signature: String,
    /// Not Tauri's own: the client runs below the product's minimum version, or the release is
    /// critical (read it from the update's raw JSON).
    pub critical: bool,
}

#[derive(ApiResponse)]
pub enum TauriResponse {
    /// A newer release with an updater artifact for the target and arch.
    #[oai(status = 200)]
    Update(Json<TauriUpdate>),
    /// Nothing newer for this client (Tauri: no update).
    #[oai(status = 204)]
    NoUpdate,
}

#[derive(ApiResponse)]
pub enum AppcastResponse {
    /// An RSS 2.0 appcast with Sparkle's namespace, newest release first (possibly without
    /// items).
    #[oai(status = 200, content_type = "application/xml")]
    Ok(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum ElectronResponse {
    /// electron-updater's channel file (`version`, `files`, `path`, `sha512`, `releaseDate`,
    /// `releaseNotes`, `stagingPercentage`).
    #[oai(status = 200, content_type = "text/yaml")]
    Ok(PlainText<String>),
    /// No release on this channel (or a more stable one) has a file for the platform.
    #[oai(status = 204)]
    NoRelease,
}

/// One full package of a Velopack feed.
#[derive(Object, Debug)]
pub struct VelopackAsset {
    #[oai(rename = "PackageId")]
    pub package_id: String,
    #[oai(rename = "Version")]
    pub version: String,
    /// Always `Full`.
    #[oai(rename = "Type")]
    pub kind: String,
    /// The package's name: Velopack downloads it next to the feed
    /// (`/api/v1/updates/velopack/{product}/{FileName}`), with the feed's credential.
    #[oai(rename = "FileName")]
    pub file_name: String,
    /// Upper-case hex SHA-1.
    #[oai(rename = "SHA1")]
    pub sha1: String,
    /// Upper-case hex SHA-256.
    #[oai(rename = "SHA256")]
    pub sha256: String,
    #[oai(rename = "Size")]
    pub size: u64,
    #[oai(rename = "NotesMarkdown")]
    pub notes_markdown: String,
}

#[derive(Object, Debug)]
pub struct VelopackFeed {
    /// Newest first.
    #[oai(rename = "Assets")]
    pub assets: Vec<VelopackAsset>,
}

#[derive(ApiResponse)]
pub enum VelopackFeedResponse {
    /// `releases.{channel}.json`: the packages of the channel (possibly none); for a
    /// package's name, the package itself (`application/octet-stream`).
    #[oai(status = 200)]
    Feed(Json<VelopackFeed>),
}

#[derive(ApiResponse)]
pub enum VelopackPackageResponse {
    /// A package the feed lists, whole.
    #[oai(status = 200, content_type = "application/octet-stream")]
    Package(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// Always `bytes`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// The file's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The requested part of a package (`Range: bytes=start-end`).
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// `bytes start-end/size`.
        #[oai(header = "Content-Range")]
        String,
        /// Always `bytes`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// The file's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The range starts beyond the end of the package (`RANGE_NOT_SATISFIABLE`).
    #[oai(status = 416)]
    RangeNotSatisfiable(
        Json<ErrorEnvelope>,
        /// `bytes */size`.
        #[oai(header = "Content-Range")]
        String,
    ),
}

/// One path serves Velopack's feed and its packages (Velopack downloads `FileName` next to
/// the feed), so the 200 answer is JSON or a package: the two declarations are merged here,
/// since a derived response holds one content type per status.
pub enum VelopackResponse {
    Feed(VelopackFeedResponse),
    Package(VelopackPackageResponse),
}

impl ApiResponse for VelopackResponse {
    fn meta() -> MetaResponses {
        let mut responses = VelopackFeedResponse::meta().responses;
        for mut extra in VelopackPackageResponse::meta().responses {
            match responses.iter_mut().find(|m| m.status == extra.status) {
                Some(same) => {
                    same.content.append(&mut extra.content);
                    for mut header in extra.headers {
                        // Only one of the two answers sends them.
                        header.required = false;
                        same.headers.push(header);
                    }
                }
                None => responses.push(extra),
            }
        }
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        VelopackFeedResponse::register(registry);
        VelopackPackageResponse::register(registry);
    }
}

impl IntoResponse for VelopackResponse {
    fn into_response(self) -> poem::Response {
        match self {
            Self::Feed(feed) => feed.into_response(),
            Self::Package(package) => package.into_response(),
        }
    }
}

#[derive(ApiResponse)]
pub enum FeedDownloadResponse {
    /// The whole file.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// Hex SHA-256 of the whole file.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the whole file's exact bytes, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// Always `bytes`: an interrupted download resumes with `Range`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
        /// The file's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The requested part of the file (`Range: bytes=start-end`).
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        /// Bytes in this response.
        #[oai(header = "Content-Length")]
        u64,
        /// `bytes start-end/size`.
        #[oai(header = "Content-Range")]
        String,
        /// Hex SHA-256 of the whole file.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the whole file's exact bytes, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// Always `bytes`.
        #[oai(header = "Accept-Ranges")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
        /// The file's SHA-256, quoted.
        #[oai(header = "ETag")]
        String,
    ),
    /// The range starts beyond the end of the file (`RANGE_NOT_SATISFIABLE`).
    #[oai(status = 416)]
    RangeNotSatisfiable(
        Json<ErrorEnvelope>,
        /// `bytes */size`.
        #[oai(header = "Content-Range")]
        String,
    ),
}

#[derive(Object, Debug)]
pub struct FeedTokenOk {
    pub success: bool,
    /// Stands for the license in feed URLs (`?token=`); shown once. Revoked with
    /// `DELETE /api/v1/updates/feed-token`, and refused while the license is not active.
    pub token: String,
}

#[derive(ApiResponse)]
pub enum FeedTokenResponse {
    /// A new feed token for the license.
    #[oai(status = 201)]
    Created(Json<FeedTokenOk>),
}

#[derive(Object, Debug)]
pub struct FeedTokensRevokedOk {
    pub success: bool,
    /// How many tokens the license had.
    pub revoked: u64,
}

#[derive(ApiResponse)]
pub enum FeedTokensRevokedResponse {
    /// Every feed token of the license is revoked.
    #[oai(status = 200)]
    Ok(Json<FeedTokensRevokedOk>),
}
