//! Releases, managed from the admin panel or a CI pipeline (a FULL_ADMIN API key): upload a
//! bundle as a multipart stream, publish, yank, delete drafts, add delta bundles.

use poem::web::Multipart;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart as MultipartForm, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::artifacts::ArtifactView;
use super::auth::AdminAuth;
use super::multipart::{
    BundleUpload, bool_field, next_field, rollout_field, text_field, unknown_field,
};
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::artifacts::Artifact;
use crate::domain::releases::{self, Channel, Delta, Release, ReleaseStatus};
use crate::domain::{ProductId, ReleaseId, ms_to_datetime};
use crate::error::Error;
use crate::service;
use crate::service::releases::{ReleaseChanges, ReleaseForm, ReleaseUpload, ReleaseWithDeltas};
use crate::state::AppState;

pub struct ReleasesApi {
    pub state: AppState,
}

/// The form of `POST /api/projects/{id}/releases` (documentation of the multipart body; the
/// handler streams it, see [`BundleUpload`]).
#[derive(MultipartForm, Debug)]
pub struct ReleaseUploadForm {
    /// Semantic version, unique per project (`1.4.0`, `2.0.0-beta.1`).
    pub version: String,
    /// stable (default), rc, beta, alpha or nightly.
    pub channel: Option<String>,
    /// Release notes (at most 64 KiB).
    pub changelog: Option<String>,
    /// `true` or `false` (default).
    #[oai(rename = "isCritical")]
    pub is_critical: Option<bool>,
    /// `true` or `false` (default).
    #[oai(rename = "requiresMigration")]
    pub requires_migration: Option<bool>,
    /// The share (0–100, default 100) of licenses offered the release.
    #[oai(rename = "rolloutPercentage")]
    pub rollout_percentage: Option<u8>,
    /// The bundle file. Streamed to disk, hashed and signed; its size limit is the server's
    /// `--max-bundle-bytes`.
    pub bundle: Upload,
}

/// The form of `POST /api/releases/{id}/deltas`.
#[derive(MultipartForm, Debug)]
pub struct DeltaUploadForm {
    /// The older version this bundle upgrades from.
    #[oai(rename = "fromVersion")]
    pub from_version: String,
    /// The delta bundle file.
    pub bundle: Upload,
}

crate::field_names!(
    ChangelogField = "changelog",
    ChannelField = "channel",
    IsCriticalField = "isCritical",
    RequiresMigrationField = "requiresMigration",
    RolloutPercentageField = "rolloutPercentage",
    VersionField = "version",
);

/// A release without a bundle of its own: its files are uploaded as artifacts afterwards.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CreateReleaseRequest {
    /// Semantic version, unique per project (`1.4.0`, `2.0.0-beta.1`).
    #[oai(
        deserialize_with = "named::<VersionField, _>",
        validator(min_length = 1, max_length = 64)
    )]
    pub version: String,
    /// stable (default), rc, beta, alpha or nightly.
    #[oai(nullable, deserialize_with = "named::<ChannelField, _>")]
    pub channel: Option<Channel>,
    /// Release notes (at most 64 KiB).
    #[oai(
        nullable,
        deserialize_with = "named::<ChangelogField, _>",
        validator(max_length = 65536)
    )]
    pub changelog: Option<String>,
    #[oai(nullable, deserialize_with = "named::<IsCriticalField, _>")]
    pub is_critical: Option<bool>,
    #[oai(nullable, deserialize_with = "named::<RequiresMigrationField, _>")]
    pub requires_migration: Option<bool>,
    /// The share (0–100, default 100) of licenses offered the release.
    #[oai(
        nullable,
        deserialize_with = "named::<RolloutPercentageField, _>",
        validator(minimum(value = "0"), maximum(value = "100"))
    )]
    pub rollout_percentage: Option<u8>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateReleaseRequest {
    #[oai(nullable, deserialize_with = "named::<ChannelField, _>")]
    pub channel: Option<Channel>,
    #[oai(
        nullable,
        deserialize_with = "named::<ChangelogField, _>",
        validator(max_length = 65536)
    )]
    pub changelog: MaybeUndefined<String>,
    #[oai(nullable, deserialize_with = "named::<IsCriticalField, _>")]
    pub is_critical: Option<bool>,
    #[oai(nullable, deserialize_with = "named::<RequiresMigrationField, _>")]
    pub requires_migration: Option<bool>,
    /// The share (0–100) of licenses offered the release; raise it to widen a staged rollout
    /// (a license inside keeps getting the release).
    #[oai(
        nullable,
        deserialize_with = "named::<RolloutPercentageField, _>",
        validator(minimum(value = "0"), maximum(value = "100"))
    )]
    pub rollout_percentage: Option<u8>,
}

#[derive(Object, Debug)]
#[oai(rename = "ReleaseDelta", rename_all = "camelCase")]
pub struct DeltaView {
    pub from_version: String,
    pub bundle_filename: String,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub signature: String,
    /// The kid of the project key that made `signature`.
    pub signature_kid: String,
    pub created_at: OffsetDateTime,
}

impl DeltaView {
    fn new(d: &Delta) -> Self {
        Self {
            from_version: d.from_version.clone(),
            bundle_filename: d.bundle.filename.clone(),
            bundle_size: d.bundle.size,
            bundle_sha256: d.bundle.sha256.clone(),
            signature: d.bundle.signature.clone(),
            signature_kid: d.bundle.signature_kid.clone(),
            created_at: ms_to_datetime(d.created_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "Release", rename_all = "camelCase")]
pub struct ReleaseView {
    pub id: String,
    pub project_id: String,
    pub version: String,
    pub channel: Channel,
    pub changelog: String,
    /// DRAFT (not offered), PUBLISHED (offered), YANKED (withdrawn, kept for the record).
    pub status: ReleaseStatus,
    pub is_critical: bool,
    pub requires_migration: bool,
    /// The share (0–100) of licenses offered the release.
    pub rollout_percentage: u8,
    /// The release's own bundle; null for a release made without one (its files are its
    /// `artifacts`).
    #[oai(nullable)]
    pub bundle_filename: Option<String>,
    #[oai(nullable)]
    pub bundle_size: Option<u64>,
    /// Hex SHA-256 of the bundle.
    #[oai(nullable)]
    pub bundle_sha256: Option<String>,
    /// Ed25519 over the bundle's exact bytes with the project's key, base64.
    #[oai(nullable)]
    pub signature: Option<String>,
    /// The kid of the project key that made `signature` (the key current at upload; see
    /// `GET /api/projects/{id}/signing-keys`).
    #[oai(nullable)]
    pub signature_kid: Option<String>,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub published_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub yanked_at: Option<OffsetDateTime>,
    pub deltas: Vec<DeltaView>,
    /// The release's files per platform, architecture and file type.
    pub artifacts: Vec<ArtifactView>,
}

impl ReleaseView {
    fn of(found: &ReleaseWithDeltas) -> Self {
        Self::new(&found.release, &found.deltas, &found.artifacts)
    }

    fn new(r: &Release, deltas: &[Delta], artifacts: &[Artifact]) -> Self {
        let bundle = r.bundle.as_ref();
        Self {
            id: r.id.clone(),
            project_id: r.product_id.clone(),
            version: r.version.clone(),
            channel: r.channel,
            changelog: r.changelog.clone(),
            status: r.status,
            is_critical: r.is_critical,
            requires_migration: r.requires_migration,
            rollout_percentage: r.rollout_percentage,
            bundle_filename: bundle.map(|b| b.filename.clone()),
            bundle_size: bundle.map(|b| b.size),
            bundle_sha256: bundle.map(|b| b.sha256.clone()),
            signature: bundle.map(|b| b.signature.clone()),
            signature_kid: bundle.map(|b| b.signature_kid.clone()),
            created_at: ms_to_datetime(r.created_at),
            published_at: r.published_at.map(ms_to_datetime),
            yanked_at: r.yanked_at.map(ms_to_datetime),
            deltas: deltas.iter().map(DeltaView::new).collect(),
            artifacts: artifacts.iter().map(ArtifactView::new).collect(),
        }
    }
}

#[derive(Object, Debug)]
pub struct ReleasesData {
    pub releases: Vec<ReleaseView>,
}

#[derive(Object, Debug)]
pub struct ReleasesOk {
    pub success: bool,
    pub data: ReleasesData,
}

#[derive(Object, Debug)]
pub struct ReleaseData {
    pub release: ReleaseView,
}

#[derive(Object, Debug)]
pub struct ReleaseOk {
    pub success: bool,
    pub data: ReleaseData,
}

#[derive(Object, Debug)]
pub struct ReleaseDeletedData {
    pub message: String,
}

#[derive(Object, Debug)]
pub struct ReleaseDeletedOk {
    pub success: bool,
    pub data: ReleaseDeletedData,
}

#[derive(ApiResponse)]
pub enum ListReleasesResponse {
    /// The project's releases, newest first.
    #[oai(status = 200)]
    Ok(Json<ReleasesOk>),
}

#[derive(ApiResponse)]
pub enum UploadReleaseResponse {
    /// Stored, hashed and signed; the release is a DRAFT until published.
    #[oai(status = 201)]
    Created(Json<ReleaseOk>),
}

#[derive(ApiResponse)]
pub enum ReleaseResponse {
    /// The release.
    #[oai(status = 200)]
    Ok(Json<ReleaseOk>),
}

#[derive(ApiResponse)]
pub enum DeleteReleaseResponse {
    /// The draft and (unless another release shares it) its bundle are gone.
    #[oai(status = 200)]
    Ok(Json<ReleaseDeletedOk>),
}

fn ok(release: &Release, deltas: &[Delta]) -> Json<ReleaseOk> {
    Json(ReleaseOk {
        success: true,
        data: ReleaseData {
            release: ReleaseView::new(release, deltas, &[]),
        },
    })
}

fn ok_with(found: &ReleaseWithDeltas) -> Json<ReleaseOk> {
    Json(ReleaseOk {
        success: true,
        data: ReleaseData {
            release: ReleaseView::of(found),
        },
    })
}

#[OpenApi(tag = "AdminTags::Releases")]
impl ReleasesApi {
    /// List a project's releases
    #[oai(path = "/api/projects/:id/releases", method = "get")]
    async fn list(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ListReleasesResponse> {
        let admin = auth.admin();
        let releases = service::releases::list(&self.state, &admin.ctx, &ProductId::from(id.0))?
            .iter()
            .map(ReleaseView::of)
            .collect();
        Ok(ListReleasesResponse::Ok(Json(ReleasesOk {
            success: true,
            data: ReleasesData { releases },
        })))
    }

    /// Upload a release
    ///
    /// A `multipart/form-data` body: `version`, `channel`, `changelog`, `isCritical`,
    /// `requiresMigration` and the file `bundle`. The bundle streams to disk, is hashed
    /// (SHA-256) and signed with the project's Ed25519 key. The release starts as a DRAFT.
    /// From a CI pipeline: `curl -H "X-API-Key: $FULL_ADMIN_KEY" -F version=1.4.0
    /// -F channel=stable -F changelog=@CHANGES.md -F bundle=@app.tar.gz
    /// $URL/api/projects/$PROJECT/releases`.
    #[oai(path = "/api/projects/:id/releases", method = "post")]
    async fn upload(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        form: BundleUpload<ReleaseUploadForm>,
    ) -> KvResult<UploadReleaseResponse> {
        let admin = auth.admin();
        let mut upload =
            service::releases::begin_upload(&self.state, &admin.ctx, &ProductId::from(id.0))?;
        let mut form = form.form;
        let mut fields = ReleaseForm::default();
        let read = read_release_form(&mut form, &mut upload, &mut fields).await;
        let release = upload.finish(read, fields).await?;
        Ok(UploadReleaseResponse::Created(ok(&release, &[])))
    }

    /// Create a release without a bundle
    ///
    /// A DRAFT whose files are uploaded afterwards, one per platform, architecture and file
    /// type (`POST /api/releases/{id}/artifacts`); `keyward release create` calls it.
    #[oai(path = "/api/projects/:id/release-drafts", method = "post")]
    async fn create_draft(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<CreateReleaseRequest>,
    ) -> KvResult<UploadReleaseResponse> {
        let admin = auth.admin();
        let body = body.0;
        let form = ReleaseForm {
            version: Some(releases::parse_version("version", &body.version)?),
            channel: body.channel,
            changelog: body.changelog,
            is_critical: body.is_critical,
            requires_migration: body.requires_migration,
            rollout_percentage: body.rollout_percentage,
        };
        let created =
            service::releases::create_draft(&self.state, &admin.ctx, &ProductId::from(id.0), form)
                .await?;
        Ok(UploadReleaseResponse::Created(ok_with(&created)))
    }

    /// Get a release
    #[oai(path = "/api/releases/:id", method = "get")]
    async fn get(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ReleaseResponse> {
        let admin = auth.admin();
        let found = service::releases::get(&self.state, &admin.ctx, &ReleaseId::from(id.0))?;
        Ok(ReleaseResponse::Ok(ok_with(&found)))
    }

    /// Change a release's channel, changelog or flags
    #[oai(path = "/api/releases/:id", method = "patch")]
    async fn update(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateReleaseRequest>,
    ) -> KvResult<ReleaseResponse> {
        let admin = auth.admin();
        let body = body.0;
        let changes = ReleaseChanges {
            channel: body.channel,
            changelog: match body.changelog {
                MaybeUndefined::Value(text) => Some(text),
                MaybeUndefined::Null => Some(String::new()),
                MaybeUndefined::Undefined => None,
            },
            is_critical: body.is_critical,
            requires_migration: body.requires_migration,
            rollout_percentage: body.rollout_percentage,
        };
        let updated =
            service::releases::update(&self.state, &admin.ctx, ReleaseId::from(id.0), changes)
                .await?;
        Ok(ReleaseResponse::Ok(ok_with(&updated)))
    }

    /// Publish a draft
    ///
    /// The release is offered to licensed apps from now on (`publishedAt` is set).
    #[oai(path = "/api/releases/:id/publish", method = "post")]
    async fn publish(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ReleaseResponse> {
        let admin = auth.admin();
        let published =
            service::releases::publish(&self.state, &admin.ctx, ReleaseId::from(id.0)).await?;
        Ok(ReleaseResponse::Ok(ok_with(&published)))
    }

    /// Yank a published release
    ///
    /// Withdrawn from update checks and downloads at once; kept for the record.
    #[oai(path = "/api/releases/:id/yank", method = "post")]
    async fn yank(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ReleaseResponse> {
        let admin = auth.admin();
        let yanked =
            service::releases::yank(&self.state, &admin.ctx, ReleaseId::from(id.0)).await?;
        Ok(ReleaseResponse::Ok(ok_with(&yanked)))
    }

    /// Delete a draft
    ///
    /// Only drafts: a published release is yanked instead, so the record stays.
    #[oai(path = "/api/releases/:id", method = "delete")]
    async fn delete(&self, auth: AdminAuth, id: Path<String>) -> KvResult<DeleteReleaseResponse> {
        let admin = auth.admin();
        service::releases::delete(&self.state, &admin.ctx, ReleaseId::from(id.0)).await?;
        Ok(DeleteReleaseResponse::Ok(Json(ReleaseDeletedOk {
            success: true,
            data: ReleaseDeletedData {
                message: "Draft deleted".into(),
            },
        })))
    }

    /// Add a delta bundle
    ///
    /// A `multipart/form-data` body with `fromVersion` and the file `bundle`: clients that
    /// download this release with `from_version` equal to `fromVersion` get this smaller
    /// bundle (signed like any other).
    #[oai(path = "/api/releases/:id/deltas", method = "post")]
    async fn add_delta(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        form: BundleUpload<DeltaUploadForm>,
    ) -> KvResult<UploadReleaseResponse> {
        let admin = auth.admin();
        let mut upload =
            service::releases::begin_delta(&self.state, &admin.ctx, &ReleaseId::from(id.0))?;
        let mut form = form.form;
        let mut from_version = None;
        let read: Result<(), Error> = async {
            while let Some(field) = next_field(&mut form).await? {
                match field.name().unwrap_or_default() {
                    "fromVersion" => {
                        let text = text_field(field, "fromVersion", 64).await?;
                        from_version = Some(upload.check_from_version(&text)?);
                    }
                    "bundle" => {
                        let name = field.file_name().map(str::to_owned);
                        upload.receive_bundle(field.into_async_read(), name).await?;
                    }
                    other => {
                        return Err(unknown_field(other, "fromVersion and bundle"));
                    }
                }
            }
            Ok(())
        }
        .await;
        let with_delta = upload.finish(read, from_version).await?;
        Ok(UploadReleaseResponse::Created(ok_with(&with_delta)))
    }
}

/// Reads the form field by field; text fields are checked as they arrive, so a bad version
/// sent before the bundle is refused before a byte of the bundle is stored.
async fn read_release_form(
    form: &mut Multipart,
    upload: &mut ReleaseUpload<'_>,
    fields: &mut ReleaseForm,
) -> Result<(), Error> {
    while let Some(field) = next_field(form).await? {
        match field.name().unwrap_or_default() {
            "version" => {
                let text = text_field(field, "version", 64).await?;
                fields.version = Some(upload.check_version(&text)?);
            }
            "channel" => {
                let text = text_field(field, "channel", 16).await?;
                fields.channel = Some(releases::parse_channel("channel", &text)?);
            }
            "changelog" => {
                let text = text_field(field, "changelog", releases::MAX_CHANGELOG_BYTES).await?;
                fields.changelog = Some(text);
            }
            "isCritical" => {
                fields.is_critical = Some(bool_field(field, "isCritical").await?);
            }
            "requiresMigration" => {
                fields.requires_migration = Some(bool_field(field, "requiresMigration").await?);
            }
            "rolloutPercentage" => {
                let text = text_field(field, "rolloutPercentage", 8).await?;
                fields.rollout_percentage = Some(rollout_field(&text)?);
            }
            "bundle" => {
                let name = field.file_name().map(str::to_owned);
                upload.receive_bundle(field.into_async_read(), name).await?;
            }
            other => {
                return Err(unknown_field(
                    other,
                    "version, channel, changelog, isCritical, requiresMigration, rolloutPercentage \
                     and bundle",
                ));
            }
        }
    }
    Ok(())
}
