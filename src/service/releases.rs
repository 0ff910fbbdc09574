//! Releases of a product, managed from the admin panel or a CI pipeline: upload a bundle
//! (streamed to the bundle store, hashed, signed with the product's key), publish, yank,
//! delete drafts, add delta bundles. Every look-up is scoped by the caller's context: a key
//! restricted to one product finds nothing of the others.

use std::path::PathBuf;

use rusqlite::Connection;
use semver::Version;
use serde_json::json;
use tokio::io::AsyncRead;

use super::Ctx;
use crate::crypto;
use crate::domain::artifacts::{self, Artifact};
use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::products::{self, Product};
use crate::domain::releases::bundles::Received;
use crate::domain::releases::{
    self, Bundle, Channel, Delta, NewRelease, Release, ReleaseStatus, repo,
};
use crate::domain::webhooks::EventType;
use crate::domain::{ProductId, ReleaseId, now_ms};
use crate::error::Error;
use crate::state::AppState;

/// A release with its delta bundles and its artifacts, as every answer about one shows it.
#[derive(Debug, Clone)]
pub struct ReleaseWithDeltas {
    pub release: Release,
    pub deltas: Vec<Delta>,
    pub artifacts: Vec<Artifact>,
}

/// The product with this id, if the caller reaches it.
fn reachable_product(c: &Connection, ctx: &Ctx, id: &str) -> Result<Product, Error> {
    products::repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|p| ctx.products.reaches(&p.id))
        .ok_or(Error::NotFound("project"))
}

/// The release with this id, if the caller reaches its product.
fn reachable_release(c: &Connection, ctx: &Ctx, id: &str) -> Result<Release, Error> {
    repo::find_in(c, ctx.tenants.filter(), id)?
        .filter(|r| ctx.reaches(&r.tenant_id, &r.product_id))
        .ok_or(Error::NotFound("release"))
}

pub(super) fn with_deltas(c: &Connection, release: Release) -> Result<ReleaseWithDeltas, Error> {
    let deltas = repo::deltas_of(c, &release.id)?;
    let artifacts = artifacts::repo::of_release(c, &release.id)?;
    Ok(ReleaseWithDeltas {
        release,
        deltas,
        artifacts,
    })
}

fn release_event(ctx: &Ctx, r: &Release, action: AuditAction) -> AuditEvent {
    ctx.event(&r.tenant_id, action)
        .product(&r.product_id)
        .detail(json!({"releaseId": r.id, "version": r.version, "channel": r.channel.as_str()}))
}

/// A product's releases, newest first.
pub fn list(
    state: &AppState,
    ctx: &Ctx,
    product_id: &ProductId,
) -> Result<Vec<ReleaseWithDeltas>, Error> {
    state.db.read(|c| {
        let product = reachable_product(c, ctx, product_id)?;
        repo::list_for_product(c, &product.id)?
            .into_iter()
            .map(|r| with_deltas(c, r))
            .collect()
    })
}

pub fn get(state: &AppState, ctx: &Ctx, id: &ReleaseId) -> Result<ReleaseWithDeltas, Error> {
    state.db.read(|c| {
        let r = reachable_release(c, ctx, id)?;
        with_deltas(c, r)
    })
}

/// What an update of a release's details changes; `None` keeps the value.
#[derive(Debug, Default)]
pub struct ReleaseChanges {
    pub channel: Option<Channel>,
    /// `Some("")` clears the notes.
    pub changelog: Option<String>,
    pub is_critical: Option<bool>,
    pub requires_migration: Option<bool>,
    pub rollout_percentage: Option<u8>,
}

/// Changes a release's channel, changelog or flags; a yanked release is kept as it was.
pub async fn update(
    state: &AppState,
    ctx: &Ctx,
    id: ReleaseId,
    changes: ReleaseChanges,
) -> Result<ReleaseWithDeltas, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let mut r = reachable_release(c, &ctx, &id)?;
            if r.status == ReleaseStatus::Yanked {
                return Err(Error::Conflict("a yanked release is kept as it was".into()));
            }
            if let Some(channel) = changes.channel {
                r.channel = channel;
            }
            if let Some(text) = changes.changelog {
                r.changelog = text;
            }
            if let Some(v) = changes.is_critical {
                r.is_critical = v;
            }
            if let Some(v) = changes.requires_migration {
                r.requires_migration = v;
            }
            if let Some(p) = changes.rollout_percentage {
                r.rollout_percentage = p;
            }
            repo::update_details(c, &r)?;
            audit::repo::insert(c, &release_event(&ctx, &r, AuditAction::ReleaseUpdate))?;
            with_deltas(c, r)
        })
        .await
}

/// DRAFT → PUBLISHED: offered to licensed apps from now on.
pub async fn publish(
    state: &AppState,
    ctx: &Ctx,
    id: ReleaseId,
) -> Result<ReleaseWithDeltas, Error> {
    transition(
        state,
        ctx,
        id,
        AuditAction::ReleasePublish,
        releases::publish,
    )
    .await
}

/// PUBLISHED → YANKED: withdrawn from checks and downloads at once, kept for the record.
pub async fn yank(state: &AppState, ctx: &Ctx, id: ReleaseId) -> Result<ReleaseWithDeltas, Error> {
    transition(state, ctx, id, AuditAction::ReleaseYank, releases::yank).await
}

async fn transition(
    state: &AppState,
    ctx: &Ctx,
    id: ReleaseId,
    action: AuditAction,
    change: fn(&Connection, &Release) -> Result<bool, Error>,
) -> Result<ReleaseWithDeltas, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let r = reachable_release(c, &ctx, &id)?;
            let changed = change(c, &r)?;
            if changed {
                audit::repo::insert(c, &release_event(&ctx, &r, action))?;
            }
            let r =
                repo::find_in(c, Some(&r.tenant_id), &r.id)?.ok_or(Error::NotFound("release"))?;
            let event = match action {
                AuditAction::ReleasePublish => Some(EventType::ReleasePublished),
                AuditAction::ReleaseYank => Some(EventType::ReleaseYanked),
                _ => None,
            };
            if changed && let Some(event) = event {
                super::events::emit(
                    c,
                    &r.tenant_id,
                    Some(&r.product_id),
                    event,
                    super::events::release_data(&r),
                )?;
            }
            with_deltas(c, r)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// Deletes a draft, and its bundles unless another release shares them.
pub async fn delete(state: &AppState, ctx: &Ctx, id: ReleaseId) -> Result<(), Error> {
    let ctx = ctx.clone();
    let store = state.bundles.clone();
    state
        .db
        .write(move |c| {
            let r = reachable_release(c, &ctx, &id)?;
            releases::ensure_deletable(&r)?;
            let bundles = repo::bundles_of_release(c, &r.id)?;
            repo::delete(c, &r.id)?;
            for sha in bundles {
                if !repo::bundle_in_use(c, &sha)? {
                    store.remove(&sha);
                }
            }
            audit::repo::insert(c, &release_event(&ctx, &r, AuditAction::ReleaseDelete))?;
            Ok(())
        })
        .await
}

/// A bundle streamed into the store's temporary area, with the name it was uploaded under.
/// Whatever ends the upload (success or refusal) consumes it, so no temporary file stays.
struct Intake {
    received: Option<(Received, Option<String>)>,
}

impl Intake {
    async fn receive(
        &mut self,
        state: &AppState,
        reader: impl AsyncRead + Unpin,
        file_name: Option<String>,
    ) -> Result<(), Error> {
        if self.received.is_some() {
            return Err(Error::Invalid("send one `bundle` file per request".into()));
        }
        let file = state
            .bundles
            .receive(reader, state.config.max_bundle_bytes)
            .await?;
        self.received = Some((file, file_name));
        Ok(())
    }

    /// The end of reading an upload form: the bundle must have come, the other fields must
    /// check out (`fields` gives what they make and the version naming the download), and the
    /// bundle is signed with the product's key off the async runtime. Any refusal drops the
    /// received file.
    async fn sign<T>(
        self,
        state: &AppState,
        product: &Product,
        read: Result<(), Error>,
        fields: impl FnOnce() -> Result<(T, Version), Error>,
    ) -> Result<(T, Received, Bundle), Error> {
        let Some((file, uploaded_name)) = self.received else {
            read?;
            return Err(Error::Invalid(
                "bundle is required: attach the file as the form field `bundle`".into(),
            ));
        };
        let outcome = async {
            read?;
            let (made, version) = fields()?;
            let key = state.signing_keys.for_product(&state.master, product)?;
            let path = file.temp_path.clone();
            let signature_kid = key.kid.clone();
            let signature = tokio::task::spawn_blocking(move || crypto::sign_file(&key.key, &path))
                .await
                .map_err(|e| Error::Storage(format!("signing task failed: {e}")))??;
            let bundle = Bundle {
                filename: releases::safe_filename(
                    uploaded_name.as_deref(),
                    &product.slug,
                    &version,
                ),
                size: file.size,
                sha256: file.sha256.clone(),
                signature,
                signature_kid,
            };
            Ok((made, bundle))
        }
        .await;
        match outcome {
            Ok((made, bundle)) => Ok((made, file, bundle)),
            Err(e) => {
                state.bundles.discard(file).await;
                Err(e)
            }
        }
    }
}

/// Runs `job` in the writer and moves the bundle into the store in the same job, ordered
/// with deletions that free the same file; if the job fails the received file is dropped.
pub(super) async fn record_with_bundle<R: Send + 'static>(
    state: &AppState,
    file: Received,
    job: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
) -> Result<R, Error> {
    let temp_path: PathBuf = file.temp_path.clone();
    let store = state.bundles.clone();
    let stored = state
        .db
        .write(move |c| {
            let out = job(c)?;
            store.install(&file)?;
            Ok(out)
        })
        .await;
    if stored.is_err() {
        let _ = tokio::fs::remove_file(&temp_path).await;
    }
    stored
}

/// The fields of a new release, as the upload form gave them.
#[derive(Debug, Default)]
pub struct ReleaseForm {
    pub version: Option<Version>,
    pub channel: Option<Channel>,
    pub changelog: Option<String>,
    pub is_critical: Option<bool>,
    pub requires_migration: Option<bool>,
    pub rollout_percentage: Option<u8>,
}

impl ReleaseForm {
    fn into_new(self) -> Result<NewRelease, Error> {
        Ok(NewRelease {
            version: self
                .version
                .ok_or_else(|| Error::Invalid("version is required".into()))?,
            channel: self.channel.unwrap_or(Channel::Stable),
            changelog: self.changelog.unwrap_or_default(),
            is_critical: self.is_critical.unwrap_or(false),
            requires_migration: self.requires_migration.unwrap_or(false),
            rollout_percentage: self.rollout_percentage.unwrap_or(100),
        })
    }
}

fn created_event(ctx: &Ctx, release: &Release) -> AuditEvent {
    ctx.event(&release.tenant_id, AuditAction::ReleaseUpload)
        .product(&release.product_id)
        .detail(json!({
            "releaseId": release.id,
            "version": release.version,
            "channel": release.channel.as_str(),
            "bundleSize": release.bundle.as_ref().map(|b| b.size),
            "bundleSha256": release.bundle.as_ref().map(|b| &b.sha256),
            "rolloutPercentage": release.rollout_percentage,
        }))
}

/// Records a new DRAFT release without a bundle of its own: its files come as artifacts
/// (`keyward release create`, then `upload`). Audited as a release upload.
pub async fn create_draft(
    state: &AppState,
    ctx: &Ctx,
    product_id: &ProductId,
    form: ReleaseForm,
) -> Result<ReleaseWithDeltas, Error> {
    if let Some(text) = &form.changelog {
        releases::validate_changelog(text)?;
    }
    let new = form.into_new()?;
    let ctx = ctx.clone();
    let product_id = product_id.clone();
    state
        .db
        .write(move |c| {
            let product = reachable_product(c, &ctx, &product_id)?;
            let release = releases::create(c, &product.tenant_id, &product.id, new, None)?;
            audit::repo::insert(c, &created_event(&ctx, &release))?;
            with_deltas(c, release)
        })
        .await
}

/// An upload of a new release in progress: the face streams the form into it field by field,
/// then calls [`ReleaseUpload::finish`] with how reading ended.
pub struct ReleaseUpload<'a> {
    state: &'a AppState,
    ctx: Ctx,
    product: Product,
    intake: Intake,
}

/// Starts an upload to a product the caller reaches (404 otherwise, before a byte is stored).
pub fn begin_upload<'a>(
    state: &'a AppState,
    ctx: &Ctx,
    product_id: &ProductId,
) -> Result<ReleaseUpload<'a>, Error> {
    let product = state.db.read(|c| reachable_product(c, ctx, product_id))?;
    Ok(ReleaseUpload {
        state,
        ctx: ctx.clone(),
        product,
        intake: Intake { received: None },
    })
}

impl ReleaseUpload<'_> {
    /// Checks a version as it arrives, so a taken one is refused before the bundle is stored.
    pub fn check_version(&self, text: &str) -> Result<Version, Error> {
        let version = releases::parse_version("version", text)?;
        self.state
            .db
            .read(|c| releases::ensure_new_version(c, &self.product.id, &version))?;
        Ok(version)
    }

    /// Streams the bundle into the store's temporary area, hashing it.
    pub async fn receive_bundle(
        &mut self,
        reader: impl AsyncRead + Unpin,
        file_name: Option<String>,
    ) -> Result<(), Error> {
        self.intake.receive(self.state, reader, file_name).await
    }

    /// Signs the bundle and records the DRAFT release; `read` is how reading the form ended
    /// (a failure drops the bundle and is the answer).
    pub async fn finish(
        self,
        read: Result<(), Error>,
        form: ReleaseForm,
    ) -> Result<Release, Error> {
        let Self {
            state,
            ctx,
            product,
            intake,
        } = self;
        let (new, file, bundle) = intake
            .sign(state, &product, read, || {
                let new: NewRelease = form.into_new()?;
                let named = new.version.clone();
                Ok((new, named))
            })
            .await?;
        record_with_bundle(state, file, move |c| {
            let release = releases::create(c, &product.tenant_id, &product.id, new, Some(bundle))?;
            audit::repo::insert(c, &created_event(&ctx, &release))?;
            Ok(release)
        })
        .await
    }
}

/// An upload of a delta bundle to a release in progress.
pub struct DeltaUpload<'a> {
    state: &'a AppState,
    ctx: Ctx,
    release: Release,
    product: Product,
    intake: Intake,
}

/// Starts a delta upload to a release the caller reaches (404 otherwise).
pub fn begin_delta<'a>(
    state: &'a AppState,
    ctx: &Ctx,
    release_id: &ReleaseId,
) -> Result<DeltaUpload<'a>, Error> {
    let (release, product) = state.db.read(|c| {
        let r = reachable_release(c, ctx, release_id)?;
        let p = products::repo::find(c, &r.tenant_id, &r.product_id)?
            .ok_or(Error::NotFound("release"))?;
        Ok((r, p))
    })?;
    Ok(DeltaUpload {
        state,
        ctx: ctx.clone(),
        release,
        product,
        intake: Intake { received: None },
    })
}

impl DeltaUpload<'_> {
    /// Checks the starting version as it arrives: older than the release, not yet covered.
    pub fn check_from_version(&self, text: &str) -> Result<Version, Error> {
        let v = releases::parse_version("fromVersion", text)?;
        self.state
            .db
            .read(|c| releases::check_delta(c, &self.release, &v))?;
        Ok(v)
    }

    pub async fn receive_bundle(
        &mut self,
        reader: impl AsyncRead + Unpin,
        file_name: Option<String>,
    ) -> Result<(), Error> {
        self.intake.receive(self.state, reader, file_name).await
    }

    /// Signs the delta bundle and records it with the release.
    pub async fn finish(
        self,
        read: Result<(), Error>,
        from_version: Option<Version>,
    ) -> Result<ReleaseWithDeltas, Error> {
        let Self {
            state,
            ctx,
            release,
            product,
            intake,
        } = self;
        let (from, file, bundle) = intake
            .sign(state, &product, read, || {
                let from =
                    from_version.ok_or_else(|| Error::Invalid("fromVersion is required".into()))?;
                Ok((from.clone(), from))
            })
            .await?;
        record_with_bundle(state, file, move |c| {
            let r = repo::find_in(c, Some(&release.tenant_id), &release.id)?
                .ok_or(Error::NotFound("release"))?;
            releases::check_delta(c, &r, &from)?;
            let delta = Delta {
                release_id: r.id.clone(),
                from_version: from.to_string(),
                bundle,
                created_at: now_ms(),
            };
            repo::insert_delta(c, &delta)?;
            audit::repo::insert(
                c,
                &ctx.event(&r.tenant_id, AuditAction::ReleaseDelta)
                    .product(&r.product_id)
                    .detail(json!({
                        "releaseId": r.id,
                        "version": r.version,
                        "fromVersion": delta.from_version,
                        "bundleSize": delta.bundle.size,
                    })),
            )?;
            with_deltas(c, r)
        })
        .await
    }
}
