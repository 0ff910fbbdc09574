//! `/api/v1/updates/{tauri,sparkle,electron,velopack}/…`: the update feeds desktop updaters
//! read, `/api/v1/updates/feeds/download/…` (the signed download URLs they carry) and
//! `/api/v1/updates/feed-token` (a license's token for feed URLs).

mod formats;
mod responses;

pub use responses::*;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use time::OffsetDateTime;

use super::ApiTags;
use super::error::{ErrorEnvelope, VendorResult};
use super::updates::LicenseKeyAuth;
use crate::api::ClientIp;
use crate::domain::releases::Release;
use crate::domain::{ms_to_datetime, tenants};
use crate::service;
use crate::service::feeds::{Credential, FeedRequest};
use crate::service::updates::BundleDownload;
use crate::state::AppState;

pub struct FeedsApi {
    pub state: AppState,
}

/// How a feed request proves a license: `X-License-Key`, `Authorization: Bearer`, or a feed
/// token in the URL (in that order).
fn credential(
    license_key: Option<String>,
    authorization: Option<String>,
    token: Option<String>,
) -> Credential {
    let nonempty = |s: String| (!s.trim().is_empty()).then_some(s);
    if let Some(key) = license_key.and_then(nonempty) {
        return Credential::LicenseKey(key);
    }
    let bearer = authorization.and_then(|a| {
        let (scheme, rest) = a.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned())
    });
    if let Some(key) = bearer.and_then(nonempty) {
        return Credential::LicenseKey(key);
    }
    match token.and_then(nonempty) {
        Some(token) => Credential::FeedToken(token),
        None => Credential::None,
    }
}

/// Where the client reaches this server: `--public-url`, else the request's own `Host` (when
/// it is a plain host name or address), else the listening address.
fn base_url(req: &Request, state: &AppState) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(poem::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.bind.to_string());
    format!("{scheme}://{host}")
}

fn published(release: &Release) -> OffsetDateTime {
    ms_to_datetime(release.published_at.unwrap_or(release.created_at))
}

struct FeedParams {
    product: String,
    tenant: Option<String>,
    license_key: Option<String>,
    authorization: Option<String>,
    token: Option<String>,
}

impl FeedParams {
    fn request(self, req: &Request, state: &AppState) -> FeedRequest {
        FeedRequest {
            tenant: self
                .tenant
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| tenants::DEFAULT_SLUG.to_owned()),
            product: self.product,
            credential: credential(self.license_key, self.authorization, self.token),
            ip: ClientIp::of(req),
            base_url: base_url(req, state),
        }
    }
}

#[OpenApi(tag = "ApiTags::Updates")]
impl FeedsApi {
    /// Tauri v2 update feed
    ///
    /// For `plugins.updater.endpoints` in `tauri.conf.json`:
    /// `…/api/v1/updates/tauri/{product}/{{target}}/{{arch}}/{{current_version}}`. Answers the
    /// newest release above `current_version` on the stable channel (or `channel` and more
    /// stable ones) that the license is in the rollout of and that has a Tauri updater
    /// artifact for the target and arch (darwin: app.tar.gz; linux: AppImage; windows: nsis,
    /// then msi; their v1-compatible .zip/.tar.gz archives too); 204 when there is none.
    /// Licensed unless the product's feeds are public: `X-License-Key` or
    /// `Authorization: Bearer` with the license key (Tauri's `headers`), or `?token=`.
    #[oai(
        path = "/api/v1/updates/tauri/:product/:target/:arch/:current_version",
        method = "get"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn tauri(
        &self,
        req: &Request,
        /// The product's slug.
        product: Path<String>,
        /// Tauri's `{{target}}`: darwin, linux or windows.
        target: Path<String>,
        /// Tauri's `{{arch}}`: x86_64, aarch64, i686 or armv7.
        arch: Path<String>,
        /// Tauri's `{{current_version}}` (semver).
        current_version: Path<String>,
        /// stable (default), rc, beta, alpha or nightly.
        channel: Query<Option<String>>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
        /// A feed token (`POST /api/v1/updates/feed-token`), instead of the license key.
        token: Query<Option<String>>,
        /// The license key.
        #[oai(name = "X-License-Key")]
        license_key: Header<Option<String>>,
        /// `Bearer <license key>`.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> VendorResult<TauriResponse> {
        let feed = FeedParams {
            product: product.0,
            tenant: tenant.0,
            license_key: license_key.0,
            authorization: authorization.0,
            token: token.0,
        }
        .request(req, &self.state);
        let found = service::feeds::tauri(
            &self.state,
            &feed,
            &target.0,
            &arch.0,
            &current_version.0,
            channel.0.as_deref(),
        )?;
        let Some(update) = found else {
            return Ok(TauriResponse::NoUpdate);
        };
        let signature = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            update.file.artifact.minisign_signature.as_bytes(),
        );
        Ok(TauriResponse::Update(Json(TauriUpdate {
            version: update.release.version.clone(),
            notes: update.release.changelog.clone(),
            pub_date: published(&update.release),
            url: update.file.url,
            signature,
            critical: update.is_critical,
        })))
    }

    /// Sparkle appcast
    ///
    /// For `SUFeedURL` in the app's Info.plist. Every release the license is in the rollout of
    /// that has a macOS archive (zip, dmg, app.tar.gz, tar.xz, tar.gz, pkg; for `arch` or
    /// universal), newest first: `sparkle:version`, `sparkle:shortVersionString`, `pubDate`,
    /// the notes, `sparkle:channel` for releases off the stable channel, `sparkle:criticalUpdate`
    /// (a critical release, or below the product's minimum version) and an `enclosure` whose
    /// `sparkle:edSignature` is Ed25519 over the archive (`SUPublicEDKey`: the product's
    /// public key). Sparkle sends no custom headers: put a feed token in the URL (`?token=`),
    /// or make the product's feeds public.
    #[oai(path = "/api/v1/updates/sparkle/:product/appcast.xml", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn sparkle(
        &self,
        req: &Request,
        /// The product's slug.
        product: Path<String>,
        /// x86_64 or aarch64 (also arm64): the archive for that arch, else a universal one.
        /// Default: universal first.
        arch: Query<Option<String>>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
        /// A feed token (`POST /api/v1/updates/feed-token`).
        token: Query<Option<String>>,
        /// The license key.
        #[oai(name = "X-License-Key")]
        license_key: Header<Option<String>>,
        /// `Bearer <license key>`.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> VendorResult<AppcastResponse> {
        let feed = FeedParams {
            product: product.0,
            tenant: tenant.0,
            license_key: license_key.0,
            authorization: authorization.0,
            token: token.0,
        }
        .request(req, &self.state);
        let appcast = service::feeds::sparkle(&self.state, &feed, arch.0.as_deref())?;
        Ok(AppcastResponse::Ok(PlainText(formats::appcast(&appcast))))
    }

    /// electron-updater channel file
    ///
    /// For electron-builder's `publish: {provider: generic, url: …/api/v1/updates/electron/{product}}`:
    /// `latest.yml` (Windows: nsis), `latest-mac.yml` (zip, dmg), `latest-linux.yml` (AppImage,
    /// deb, rpm), `latest-linux-arm64.yml`, and the same for `beta`, `alpha`, … . The newest
    /// release on the channel or a more stable one with a file for the platform. A licensed
    /// client gets the newest release its license is in the rollout of; an anonymous client of
    /// a public feed gets the newest release with its `stagingPercentage`, which
    /// electron-updater applies per installation. `sha512` is base64, as electron-builder
    /// writes it.
    #[oai(path = "/api/v1/updates/electron/:product/:file", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn electron(
        &self,
        req: &Request,
        /// The product's slug.
        product: Path<String>,
        /// `<channel>.yml`, `<channel>-mac.yml`, `<channel>-linux.yml` or
        /// `<channel>-linux-arm64.yml`; channel `latest` (stable), rc, beta, alpha or nightly.
        file: Path<String>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
        /// A feed token (`POST /api/v1/updates/feed-token`).
        token: Query<Option<String>>,
        /// The license key (electron-updater's `requestHeaders`).
        #[oai(name = "X-License-Key")]
        license_key: Header<Option<String>>,
        /// `Bearer <license key>`.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> VendorResult<ElectronResponse> {
        let feed = FeedParams {
            product: product.0,
            tenant: tenant.0,
            license_key: license_key.0,
            authorization: authorization.0,
            token: token.0,
        }
        .request(req, &self.state);
        match service::feeds::electron(&self.state, &feed, &file.0)? {
            None => Ok(ElectronResponse::NoRelease),
            Some(update) => Ok(ElectronResponse::Ok(PlainText(formats::electron_yaml(
                &update,
            )))),
        }
    }

    /// Velopack feed and packages
    ///
    /// For Velopack's `UpdateManager` with a `SimpleWebSource` at
    /// `…/api/v1/updates/velopack/{product}`: `releases.{channel}.json` lists the full packages
    /// (`nupkg` artifacts) of every release offered on the channel, newest first. The channel
    /// is Velopack's: an OS (`win`, `osx`, `linux`), optionally an arch (`x64`, `arm64`, `x86`)
    /// and a stability channel (`beta`, …), joined by `-`. Any other name is a package the
    /// feed lists, downloaded with the feed's own credential (whole or by `Range`).
    #[oai(path = "/api/v1/updates/velopack/:product/:file", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn velopack(
        &self,
        req: &Request,
        /// The product's slug.
        product: Path<String>,
        /// `releases.{channel}.json`, or a package's `FileName`.
        file: Path<String>,
        /// The tenant's slug (default: `default`).
        tenant: Query<Option<String>>,
        /// A feed token (`POST /api/v1/updates/feed-token`).
        token: Query<Option<String>>,
        /// The license key.
        #[oai(name = "X-License-Key")]
        license_key: Header<Option<String>>,
        /// `Bearer <license key>`.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
        /// `bytes=start-end` for a package: resume an interrupted download.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> VendorResult<VelopackResponse> {
        let feed = FeedParams {
            product: product.0,
            tenant: tenant.0,
            license_key: license_key.0,
            authorization: authorization.0,
            token: token.0,
        }
        .request(req, &self.state);
        let channel = file
            .0
            .strip_prefix("releases.")
            .and_then(|rest| rest.strip_suffix(".json"));
        if let Some(channel) = channel {
            let assets = service::feeds::velopack(&self.state, &feed, channel).await?;
            return Ok(VelopackResponse::Feed(VelopackFeedResponse::Feed(Json(
                VelopackFeed {
                    assets: assets
                        .into_iter()
                        .map(|a| VelopackAsset {
                            package_id: a.package_id,
                            version: a.release.version.clone(),
                            kind: "Full".into(),
                            file_name: a.artifact.file.filename.clone(),
                            sha1: a.sha1.to_ascii_uppercase(),
                            sha256: a.artifact.file.sha256.to_ascii_uppercase(),
                            size: a.artifact.file.size,
                            notes_markdown: a.release.changelog.clone(),
                        })
                        .collect(),
                },
            ))));
        }
        let sent =
            service::feeds::velopack_package(&self.state, &feed, &file.0, range.0.as_deref())
                .await?;
        Ok(VelopackResponse::Package(match sent {
            BundleDownload::Unsatisfiable { size } => VelopackPackageResponse::RangeNotSatisfiable(
                unsatisfiable(size),
                format!("bytes */{size}"),
            ),
            BundleDownload::Whole { file, bundle } => VelopackPackageResponse::Package(
                Binary(crate::api::shared::body::bundle_body(file)),
                bundle.size,
                "bytes".into(),
                format!("\"{}\"", bundle.sha256),
            ),
            BundleDownload::Part {
                file,
                start,
                end,
                bundle,
            } => VelopackPackageResponse::Partial(
                Binary(crate::api::shared::body::bundle_body(file)),
                end - start + 1,
                format!("bytes {start}-{end}/{}", bundle.size),
                "bytes".into(),
                format!("\"{}\"", bundle.sha256),
            ),
        }))
    }

    /// Download through a feed's link
    ///
    /// The URLs Tauri, Sparkle and electron-updater feeds carry: the token names one artifact
    /// and expires after a few minutes (`--feed-download-ttl`), so the updater needs no
    /// license key. A yanked release's links stop at once. Whole, or a byte range (`Range`).
    #[oai(
        path = "/api/v1/updates/feeds/download/:token/:filename",
        method = "get"
    )]
    async fn download(
        &self,
        req: &Request,
        /// The download token the feed wrote.
        token: Path<String>,
        /// The artifact's file name (for the updater's own file name; not checked).
        #[allow(unused_variables)]
        filename: Path<String>,
        /// `bytes=start-end`: resume an interrupted download.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> VendorResult<FeedDownloadResponse> {
        let sent =
            service::feeds::download(&self.state, &token.0, ClientIp::of(req), range.0.as_deref())
                .await?;
        Ok(match sent {
            BundleDownload::Unsatisfiable { size } => FeedDownloadResponse::RangeNotSatisfiable(
                unsatisfiable(size),
                format!("bytes */{size}"),
            ),
            BundleDownload::Whole { file, bundle } => FeedDownloadResponse::Full(
                Binary(crate::api::shared::body::bundle_body(file)),
                bundle.size,
                bundle.sha256.clone(),
                bundle.signature.clone(),
                "bytes".into(),
                format!("attachment; filename=\"{}\"", bundle.filename),
                format!("\"{}\"", bundle.sha256),
            ),
            BundleDownload::Part {
                file,
                start,
                end,
                bundle,
            } => FeedDownloadResponse::Partial(
                Binary(crate::api::shared::body::bundle_body(file)),
                end - start + 1,
                format!("bytes {start}-{end}/{}", bundle.size),
                bundle.sha256.clone(),
                bundle.signature.clone(),
                "bytes".into(),
                format!("attachment; filename=\"{}\"", bundle.filename),
                format!("\"{}\"", bundle.sha256),
            ),
        })
    }

    /// Issue a feed token
    ///
    /// A token that stands for the license (`X-License-Key`) in feed URLs (`?token=`), for
    /// updaters that cannot send headers (Sparkle). The key itself never goes into a URL.
    #[oai(path = "/api/v1/updates/feed-token", method = "post")]
    async fn issue_feed_token(&self, auth: LicenseKeyAuth) -> VendorResult<FeedTokenResponse> {
        let token = service::feeds::issue_feed_token(&self.state, &auth.0).await?;
        Ok(FeedTokenResponse::Created(Json(FeedTokenOk {
            success: true,
            token,
        })))
    }

    /// Revoke feed tokens
    ///
    /// Revokes every feed token of the license (`X-License-Key`).
    #[oai(path = "/api/v1/updates/feed-token", method = "delete")]
    async fn revoke_feed_tokens(
        &self,
        auth: LicenseKeyAuth,
    ) -> VendorResult<FeedTokensRevokedResponse> {
        let revoked = service::feeds::revoke_feed_tokens(&self.state, &auth.0).await?;
        Ok(FeedTokensRevokedResponse::Ok(Json(FeedTokensRevokedOk {
            success: true,
            revoked,
        })))
    }
}

fn unsatisfiable(size: u64) -> Json<ErrorEnvelope> {
    ErrorEnvelope::new(
        "RANGE_NOT_SATISFIABLE",
        format!("The range starts beyond the end of the {size}-byte file"),
    )
}
