//! A release's artifacts (its files per platform, architecture and file type) and a project's
//! update settings (its minimum version, and the minisign public key Tauri apps pin).

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart as MultipartForm, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use super::multipart::{BundleUpload, next_field, text_field, unknown_field};
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::artifacts::{self, Arch, Artifact};
use crate::domain::{ProductId, ReleaseId, ms_to_datetime};
use crate::error::Error;
use crate::service;
use crate::service::artifacts::{ArtifactForm, UpdateSettings};
use crate::state::AppState;

pub struct ArtifactsApi {
    pub state: AppState,
}

/// The form of `POST /api/releases/{id}/artifacts` (documentation of the multipart body; the
/// handler streams it).
#[derive(MultipartForm, Debug)]
pub struct ArtifactUploadForm {
    /// windows, darwin, linux, … (lower case).
    pub platform: String,
    /// x86_64, aarch64, i686, armv7 or universal.
    pub arch: String,
    /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
    pub filetype: String,
    /// Optional: the oldest OS version the file runs on, one to four dot-separated numbers
    /// (`10.15`). Sparkle's appcast writes it as `sparkle:minimumSystemVersion`.
    #[oai(rename = "minimumSystemVersion")]
    pub minimum_system_version: Option<String>,
    /// The file. Streamed to disk, hashed (SHA-256, SHA-512) and signed (Ed25519 and
    /// minisign); its size limit is the server's `--max-bundle-bytes`.
    pub file: Upload,
}

#[derive(Object, Debug)]
#[oai(rename = "ReleaseArtifact", rename_all = "camelCase")]
pub struct ArtifactView {
    pub id: String,
    pub release_id: String,
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
    /// Ed25519 over the exact bytes with the project's key, base64.
    pub signature: String,
    /// The kid of the project key that made `signature` and `minisignSignature` (its minisign
    /// key id is the same 8 bytes).
    pub signature_kid: String,
    /// The text of a minisign `.sig` file: prehashed Ed25519 (BLAKE2b-512) with a trusted
    /// comment. Tauri's updater wants it base64-encoded.
    pub minisign_signature: String,
    /// The oldest OS version the file runs on, where set.
    #[oai(nullable)]
    pub minimum_system_version: Option<String>,
    pub created_at: OffsetDateTime,
}

impl ArtifactView {
    pub fn new(a: &Artifact) -> Self {
        Self {
            id: a.id.clone(),
            release_id: a.release_id.clone(),
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
            minimum_system_version: a.minimum_system_version.clone(),
            created_at: ms_to_datetime(a.created_at),
        }
    }
}

#[derive(Object, Debug)]
pub struct ArtifactsData {
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Object, Debug)]
pub struct ArtifactsOk {
    pub success: bool,
    pub data: ArtifactsData,
}

#[derive(Object, Debug)]
pub struct ArtifactData {
    pub artifact: ArtifactView,
}

#[derive(Object, Debug)]
pub struct ArtifactOk {
    pub success: bool,
    pub data: ArtifactData,
}

#[derive(Object, Debug)]
pub struct ArtifactDeletedData {
    pub message: String,
}

#[derive(Object, Debug)]
pub struct ArtifactDeletedOk {
    pub success: bool,
    pub data: ArtifactDeletedData,
}

/// The minisign public key of the project's current signing key.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MinisignKeyView {
    /// minisign's key id (upper-case hex, as `minisign` prints it); its bytes are the kid's.
    pub key_id: String,
    /// The kid of the signing key (`GET /api/projects/{id}/signing-keys`).
    pub kid: String,
    /// The base64 key line: `minisign -Vm FILE -P <this>`.
    pub public_key: String,
    /// The text of the `.pub` file.
    pub public_key_file: String,
    /// What `tauri.conf.json` takes as `plugins.updater.pubkey`: base64 of the `.pub` text.
    pub tauri_pubkey: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateSettingsView {
    pub project_id: String,
    /// A client below this version is told its update is critical.
    #[oai(nullable)]
    pub minimum_version: Option<String>,
    pub minisign: MinisignKeyView,
}

impl UpdateSettingsView {
    fn new(s: UpdateSettings) -> Self {
        let kid = crate::domain::signing_keys::kid(&s.product.signing_public_key);
        Self {
            project_id: s.product.id.clone(),
            minimum_version: s.minimum_version,
            minisign: MinisignKeyView {
                key_id: s.minisign.key_id.clone(),
                kid,
                tauri_pubkey: s.minisign.tauri(),
                public_key: s.minisign.base64,
                public_key_file: s.minisign.file,
            },
        }
    }
}

#[derive(Object, Debug)]
pub struct UpdateSettingsOk {
    pub success: bool,
    pub data: UpdateSettingsView,
}

crate::field_names!(MinimumVersionField = "minimumVersion");

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdateSettingsRequest {
    /// A semantic version; null or "" clears it.
    #[oai(
        nullable,
        deserialize_with = "named::<MinimumVersionField, _>",
        validator(max_length = 64)
    )]
    pub minimum_version: Option<String>,
}

#[derive(ApiResponse)]
pub enum ListArtifactsResponse {
    /// The release's artifacts, by platform, arch and filetype.
    #[oai(status = 200)]
    Ok(Json<ArtifactsOk>),
}

#[derive(ApiResponse)]
pub enum UploadArtifactResponse {
    /// Stored, hashed and signed.
    #[oai(status = 201)]
    Created(Json<ArtifactOk>),
}

#[derive(ApiResponse)]
pub enum DeleteArtifactResponse {
    /// The artifact and (unless something else shares it) its file are gone.
    #[oai(status = 200)]
    Ok(Json<ArtifactDeletedOk>),
}

#[derive(ApiResponse)]
pub enum UpdateSettingsResponse {
    /// The project's minimum version and minisign public key.
    #[oai(status = 200)]
    Ok(Json<UpdateSettingsOk>),
}

fn settings_ok(s: UpdateSettings) -> UpdateSettingsResponse {
    UpdateSettingsResponse::Ok(Json(UpdateSettingsOk {
        success: true,
        data: UpdateSettingsView::new(s),
    }))
}

#[OpenApi(tag = "AdminTags::Releases")]
impl ArtifactsApi {
    /// List a release's artifacts
    #[oai(path = "/api/releases/:id/artifacts", method = "get")]
    async fn list(&self, auth: AdminAuth, id: Path<String>) -> KvResult<ListArtifactsResponse> {
        let admin = auth.admin();
        let artifacts = service::artifacts::list(&self.state, &admin.ctx, &ReleaseId::from(id.0))?
            .iter()
            .map(ArtifactView::new)
            .collect();
        Ok(ListArtifactsResponse::Ok(Json(ArtifactsOk {
            success: true,
            data: ArtifactsData { artifacts },
        })))
    }

    /// Upload an artifact
    ///
    /// A `multipart/form-data` body: `platform`, `arch`, `filetype`, optionally
    /// `minimumSystemVersion`, and the file `file`, one per
    /// (platform, arch, filetype) and release. The file streams to disk, is hashed (SHA-256,
    /// SHA-512) and signed with the project's key (Ed25519, and minisign for Tauri). To a draft
    /// or a published release; not to a yanked one.
    #[oai(path = "/api/releases/:id/artifacts", method = "post")]
    async fn upload(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        form: BundleUpload<ArtifactUploadForm>,
    ) -> KvResult<UploadArtifactResponse> {
        let admin = auth.admin();
        let mut upload =
            service::artifacts::begin_upload(&self.state, &admin.ctx, &ReleaseId::from(id.0))?;
        let mut form = form.form;
        let mut fields = ArtifactForm::default();
        let read: Result<(), Error> = async {
            while let Some(field) = next_field(&mut form).await? {
                match field.name().unwrap_or_default() {
                    "platform" => {
                        let text = text_field(field, "platform", 64).await?;
                        fields.platform = Some(artifacts::parse_platform("platform", &text)?);
                    }
                    "arch" => {
                        let text = text_field(field, "arch", 64).await?;
                        fields.arch = Some(artifacts::parse_arch("arch", &text)?);
                    }
                    "filetype" => {
                        let text = text_field(field, "filetype", 64).await?;
                        fields.filetype = Some(artifacts::parse_filetype("filetype", &text)?);
                    }
                    "minimumSystemVersion" => {
                        let text = text_field(field, "minimumSystemVersion", 64).await?;
                        fields.minimum_system_version = Some(
                            artifacts::parse_minimum_system_version("minimumSystemVersion", &text)?,
                        );
                    }
                    "file" => {
                        let name = field.file_name().map(str::to_owned);
                        upload.receive_file(field.into_async_read(), name).await?;
                    }
                    other => {
                        return Err(unknown_field(
                            other,
                            "platform, arch, filetype, minimumSystemVersion and file",
                        ));
                    }
                }
            }
            Ok(())
        }
        .await;
        let artifact = upload.finish(read, fields).await?;
        Ok(UploadArtifactResponse::Created(Json(ArtifactOk {
            success: true,
            data: ArtifactData {
                artifact: ArtifactView::new(&artifact),
            },
        })))
    }

    /// Delete an artifact of a draft
    #[oai(path = "/api/releases/:id/artifacts/:artifact_id", method = "delete")]
    async fn delete(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        artifact_id: Path<String>,
    ) -> KvResult<DeleteArtifactResponse> {
        let admin = auth.admin();
        service::artifacts::delete(
            &self.state,
            &admin.ctx,
            ReleaseId::from(id.0),
            artifact_id.0,
        )
        .await?;
        Ok(DeleteArtifactResponse::Ok(Json(ArtifactDeletedOk {
            success: true,
            data: ArtifactDeletedData {
                message: "Artifact deleted".into(),
            },
        })))
    }

    /// A project's update settings
    ///
    /// Its minimum version and the minisign public key of its current signing key, also in the
    /// form `tauri.conf.json` takes (`plugins.updater.pubkey`).
    #[oai(path = "/api/projects/:id/update-settings", method = "get")]
    async fn settings(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<UpdateSettingsResponse> {
        let admin = auth.admin();
        let found = service::artifacts::settings(&self.state, &admin.ctx, &ProductId::from(id.0))?;
        Ok(settings_ok(found))
    }

    /// Change a project's minimum version
    ///
    /// A client below it is told its update is critical (`isCritical` of the update check).
    #[oai(path = "/api/projects/:id/update-settings", method = "patch")]
    async fn set_settings(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateSettingsRequest>,
    ) -> KvResult<UpdateSettingsResponse> {
        let admin = auth.admin();
        let changed = service::artifacts::set_minimum_version(
            &self.state,
            &admin.ctx,
            ProductId::from(id.0),
            body.0.minimum_version,
        )
        .await?;
        Ok(settings_ok(changed))
    }
}
