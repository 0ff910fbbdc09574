//! Releases, managed from the admin panel or a CI pipeline (a FULL_ADMIN API key): upload a
//! bundle as a multipart stream, publish, yank, delete drafts, add delta bundles.

use std::marker::PhantomData;

use poem::web::Multipart;
use poem::{FromRequest, IntoResponse, Request, RequestBody};
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Multipart as MultipartForm,
    Object, OpenApi,
};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::{KvError, KvResult};
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

/// A multipart body documented as `F` but handed to the handler unparsed, so the bundle
/// streams to disk after authentication instead of being buffered whole in a temp file.
pub struct BundleUpload<F> {
    form: Multipart,
    _doc: PhantomData<F>,
}

impl<'a, F: Payload> ApiExtractor<'a> for BundleUpload<F> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        F::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: F::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let multipart = req.content_type().is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
        if !multipart {
            return Err(poem::Error::from_response(
                KvError::from_status(
                    poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported media type: send the release as multipart/form-data".into(),
                )
                .into_response(),
            ));
        }
        let form = <Multipart as FromRequest>::from_request(req, body)
            .await
            .map_err(|e| {
                poem::Error::from_response(
                    KvError::from_error(&Error::Invalid(format!("malformed multipart body: {e}")))
                        .into_response(),
                )
            })?;
        Ok(Self {
            form,
            _doc: PhantomData,
        })
    }
}

crate::field_names!(
    ChangelogField = "changelog",
    ChannelField = "channel",
    IsCriticalField = "isCritical",
    RequiresMigrationField = "requiresMigration",
);

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
    pub bundle_filename: String,
    pub bundle_size: u64,
    /// Hex SHA-256 of the bundle.
    pub bundle_sha256: String,
    /// Ed25519 over the bundle's exact bytes with the project's key, base64.
    pub signature: String,
    /// The kid of the project key that made `signature` (the key current at upload; see
    /// `GET /api/projects/{id}/signing-keys`).
    pub signature_kid: String,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub published_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub yanked_at: Option<OffsetDateTime>,
    pub deltas: Vec<DeltaView>,
}

impl ReleaseView {
    fn of(found: &ReleaseWithDeltas) -> Self {
        Self::new(&found.release, &found.deltas)
    }

    fn new(r: &Release, deltas: &[Delta]) -> Self {
        Self {
            id: r.id.clone(),
            project_id: r.product_id.clone(),
            version: r.version.clone(),
            channel: r.channel,
            changelog: r.changelog.clone(),
            status: r.status,
            is_critical: r.is_critical,
            requires_migration: r.requires_migration,
            bundle_filename: r.bundle.filename.clone(),
            bundle_size: r.bundle.size,
            bundle_sha256: r.bundle.sha256.clone(),
            signature: r.bundle.signature.clone(),
            signature_kid: r.bundle.signature_kid.clone(),
            created_at: ms_to_datetime(r.created_at),
            published_at: r.published_at.map(ms_to_datetime),
            yanked_at: r.yanked_at.map(ms_to_datetime),
            deltas: deltas.iter().map(DeltaView::new).collect(),
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
            release: ReleaseView::new(release, deltas),
        },
    })
}

fn ok_with(found: &ReleaseWithDeltas) -> Json<ReleaseOk> {
    ok(&found.release, &found.deltas)
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
            "bundle" => {
                let name = field.file_name().map(str::to_owned);
                upload.receive_bundle(field.into_async_read(), name).await?;
            }
            other => {
                return Err(unknown_field(
                    other,
                    "version, channel, changelog, isCritical, requiresMigration and bundle",
                ));
            }
        }
    }
    Ok(())
}

async fn next_field(form: &mut Multipart) -> Result<Option<poem::web::Field>, Error> {
    form.next_field()
        .await
        .map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))
}

async fn text_field(field: poem::web::Field, name: &str, max: usize) -> Result<String, Error> {
    let mut bytes = Vec::new();
    field
        .into_async_read()
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
    if bytes.len() > max {
        return Err(Error::Invalid(format!(
            "{name} must be at most {max} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Error::Invalid(format!("{name} must be UTF-8 text")))
}

async fn bool_field(field: poem::web::Field, name: &str) -> Result<bool, Error> {
    match text_field(field, name, 8).await?.trim() {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" | "" => Ok(false),
        _ => Err(Error::Invalid(format!("{name} must be true or false"))),
    }
}

fn unknown_field(name: &str, expected: &str) -> Error {
    if name.is_empty() {
        return Error::Invalid(format!("a form field has no name; expected {expected}"));
    }
    let shown: String = name.chars().take(40).collect();
    Error::Invalid(format!("unknown form field `{shown}`; expected {expected}"))
}
