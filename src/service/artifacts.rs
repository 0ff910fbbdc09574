//! Artifacts of a release, per platform, architecture and file type: upload (streamed into the
//! bundle store, hashed with SHA-256 and SHA-512, signed with the product's Ed25519 key and with
//! a minisign signature by the same key), list, delete from a draft, and the product's minisign
//! public key in the forms minisign and Tauri take it.

use serde_json::json;
use tokio::io::AsyncRead;

use super::Ctx;
use super::catalog;
use crate::crypto;
use crate::domain::artifacts::{self, Arch, Artifact, minisign};
use crate::domain::audit::{self, AuditAction};
use crate::domain::products::Product;
use crate::domain::releases::bundles::Received;
use crate::domain::releases::{self, Bundle, Release, repo as releases_repo};
use crate::domain::{ProductId, ReleaseId, now_ms};
use crate::error::Error;
use crate::state::AppState;

/// The release with this id and its product, if the caller reaches them.
fn reachable(c: &rusqlite::Connection, ctx: &Ctx, id: &str) -> Result<(Release, Product), Error> {
    let release = releases_repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|r| ctx.reaches(&r.tenant_id, &r.product_id))
        .ok_or(Error::NotFound("release"))?;
    let product = crate::domain::products::repo::find(c, &release.tenant_id, &release.product_id)?
        .ok_or(Error::NotFound("release"))?;
    Ok((release, product))
}

/// A release's artifacts (platform, arch, filetype, file name, size, hashes and signatures).
pub fn list(state: &AppState, ctx: &Ctx, release_id: &ReleaseId) -> Result<Vec<Artifact>, Error> {
    state.db.read(|c| {
        let (release, _) = reachable(c, ctx, release_id)?;
        artifacts::repo::of_release(c, &release.id)
    })
}

/// The fields of an artifact upload, as the form gave them.
#[derive(Debug, Default)]
pub struct ArtifactForm {
    pub platform: Option<String>,
    pub arch: Option<Arch>,
    pub filetype: Option<String>,
    /// Optional: the oldest OS version the file runs on.
    pub minimum_system_version: Option<String>,
}

/// An artifact upload in progress: the face streams the form into it, then calls
/// [`ArtifactUpload::finish`] with how reading ended.
pub struct ArtifactUpload<'a> {
    state: &'a AppState,
    ctx: Ctx,
    release: Release,
    product: Product,
    received: Option<(Received, Option<String>)>,
}

/// Starts an upload to a release the caller reaches (404 otherwise, before a byte is stored).
pub fn begin_upload<'a>(
    state: &'a AppState,
    ctx: &Ctx,
    release_id: &ReleaseId,
) -> Result<ArtifactUpload<'a>, Error> {
    let (release, product) = state.db.read(|c| reachable(c, ctx, release_id))?;
    if release.status == releases::ReleaseStatus::Yanked {
        return Err(Error::Conflict(
            "the release is yanked: it is kept as it was".into(),
        ));
    }
    Ok(ArtifactUpload {
        state,
        ctx: ctx.clone(),
        release,
        product,
        received: None,
    })
}

impl ArtifactUpload<'_> {
    /// Streams the file into the store's temporary area, hashing it; the form's text fields may
    /// come before or after it.
    pub async fn receive_file(
        &mut self,
        reader: impl AsyncRead + Unpin,
        file_name: Option<String>,
    ) -> Result<(), Error> {
        if self.received.is_some() {
            return Err(Error::Invalid("send one `file` per request".into()));
        }
        let file = self
            .state
            .bundles
            .receive(reader, self.state.config.max_bundle_bytes)
            .await?;
        self.received = Some((file, file_name));
        Ok(())
    }

    /// Hashes and signs the file and records the artifact; `read` is how reading the form ended
    /// (a failure drops the file and is the answer).
    pub async fn finish(
        self,
        read: Result<(), Error>,
        form: ArtifactForm,
    ) -> Result<Artifact, Error> {
        let Self {
            state,
            ctx,
            release,
            product,
            received,
        } = self;
        let Some((file, uploaded_name)) = received else {
            read?;
            return Err(Error::Invalid(
                "file is required: attach the artifact as the form field `file`".into(),
            ));
        };
        let prepared = async {
            read?;
            let platform = form
                .platform
                .ok_or_else(|| Error::Invalid("platform is required".into()))?;
            let arch = form
                .arch
                .ok_or_else(|| Error::Invalid("arch is required".into()))?;
            let filetype = form
                .filetype
                .ok_or_else(|| Error::Invalid("filetype is required".into()))?;
            state
                .db
                .read(|c| artifacts::ensure_can_add(c, &release, &platform, arch, &filetype))?;
            let version = release.semver().ok_or_else(|| {
                Error::Storage(format!("release {} has a bad version", release.id))
            })?;
            let filename =
                releases::safe_filename(uploaded_name.as_deref(), &product.slug, &version);
            let key = state.signing_keys.for_product(&state.master, &product)?;
            let path = file.temp_path.clone();
            let comment = minisign::trusted_comment(now_ms() / 1000, &filename);
            let signed = tokio::task::spawn_blocking(move || {
                let signature = crypto::sign_file(&key.key, &path)?;
                let digests = artifacts::file_digests(&path)?;
                let minisign_signature =
                    minisign::signature_file(&key.key, &key.kid, &digests.blake2b, &comment)?;
                Ok::<_, Error>((signature, key.kid.clone(), digests, minisign_signature))
            })
            .await
            .map_err(|e| Error::Storage(format!("signing task failed: {e}")))??;
            let (signature, signature_kid, digests, minisign_signature) = signed;
            Ok(Artifact {
                id: crypto::new_id("art"),
                release_id: release.id.clone(),
                platform,
                arch,
                filetype,
                file: Bundle {
                    filename,
                    size: file.size,
                    sha256: file.sha256.clone(),
                    signature,
                    signature_kid,
                },
                sha512: digests.sha512,
                minisign_signature,
                created_at: now_ms(),
                sha1: digests.sha1,
                minimum_system_version: form.minimum_system_version,
            })
        }
        .await;
        let artifact = match prepared {
            Ok(a) => a,
            Err(e) => {
                state.bundles.discard(file).await;
                return Err(e);
            }
        };
        super::releases::record_with_bundle(state, file, move |c| {
            // Checked again in the writer: another upload may have taken the slot meanwhile.
            let (release, _) = reachable(c, &ctx, &release.id)?;
            artifacts::ensure_can_add(
                c,
                &release,
                &artifact.platform,
                artifact.arch,
                &artifact.filetype,
            )?;
            artifacts::repo::insert(c, &artifact)?;
            audit::repo::insert(
                c,
                &ctx.event(&release.tenant_id, AuditAction::ReleaseArtifactUpload)
                    .product(&release.product_id)
                    .detail(json!({
                        "releaseId": release.id,
                        "version": release.version,
                        "artifactId": artifact.id,
                        "platform": artifact.platform,
                        "arch": artifact.arch.as_str(),
                        "filetype": artifact.filetype,
                        "size": artifact.file.size,
                        "sha256": artifact.file.sha256,
                    })),
            )?;
            Ok(artifact)
        })
        .await
    }
}

/// Deletes an artifact of a draft, and its file unless something else shares it.
pub async fn delete(
    state: &AppState,
    ctx: &Ctx,
    release_id: ReleaseId,
    artifact_id: String,
) -> Result<(), Error> {
    let ctx = ctx.clone();
    let store = state.bundles.clone();
    state
        .db
        .write(move |c| {
            let (release, _) = reachable(c, &ctx, &release_id)?;
            let artifact = artifacts::repo::find(c, &release.id, &artifact_id)?
                .ok_or(Error::NotFound("artifact"))?;
            artifacts::ensure_deletable(&release)?;
            artifacts::repo::delete(c, &artifact.id)?;
            if !releases_repo::bundle_in_use(c, &artifact.file.sha256)? {
                store.remove(&artifact.file.sha256);
            }
            audit::repo::insert(
                c,
                &ctx.event(&release.tenant_id, AuditAction::ReleaseArtifactDelete)
                    .product(&release.product_id)
                    .detail(json!({
                        "releaseId": release.id,
                        "version": release.version,
                        "artifactId": artifact.id,
                        "platform": artifact.platform,
                        "arch": artifact.arch.as_str(),
                        "filetype": artifact.filetype,
                    })),
            )?;
            Ok(())
        })
        .await
}

/// The minisign public key of a product's current signing key (what its artifacts' minisign
/// signatures verify with until the next rotation).
pub fn minisign_key(product: &Product) -> Result<minisign::PublicKey, Error> {
    let public: [u8; 32] = product
        .signing_public_key
        .as_slice()
        .try_into()
        .map_err(|_| Error::Storage(format!("product {} has a bad public key", product.id)))?;
    let kid = crate::domain::signing_keys::kid(&public);
    minisign::public_key(&public, &kid)
}

/// A product's update settings: its minimum version and the minisign key of its current
/// signing key.
#[derive(Debug, Clone)]
pub struct UpdateSettings {
    pub product: Product,
    pub minimum_version: Option<String>,
    pub minisign: minisign::PublicKey,
}

pub fn settings(state: &AppState, ctx: &Ctx, id: &ProductId) -> Result<UpdateSettings, Error> {
    state.db.read(|c| {
        let product = catalog::reachable(c, ctx, id)?;
        let minimum_version = releases_repo::minimum_version(c, &product.id)?;
        let minisign = minisign_key(&product)?;
        Ok(UpdateSettings {
            product,
            minimum_version,
            minisign,
        })
    })
}

/// Sets (or with `None` clears) a product's minimum version, audited as a project update.
pub async fn set_minimum_version(
    state: &AppState,
    ctx: &Ctx,
    id: ProductId,
    minimum: Option<String>,
) -> Result<UpdateSettings, Error> {
    let minimum = match minimum.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(releases::parse_version("minimumVersion", text)?.to_string()),
    };
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let product = catalog::reachable(c, &ctx, &id)?;
            releases_repo::set_minimum_version(c, &product.id, minimum.as_deref())?;
            audit::repo::insert(
                c,
                &ctx.event(&product.tenant_id, AuditAction::ProductUpdate)
                    .product(&product.id)
                    .detail(json!({"minimumVersion": minimum})),
            )?;
            let minisign = minisign_key(&product)?;
            Ok(UpdateSettings {
                product,
                minimum_version: minimum,
                minisign,
            })
        })
        .await
}
