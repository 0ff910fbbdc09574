//! What a portal shows: its public face and a signed-in user's dashboard.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use time::OffsetDateTime;

use super::downloads::LOADER_PATH;
use crate::domain::artifacts::Artifact;
use crate::domain::licenses::{LicenseStatus, Plan};
use crate::domain::ms_to_datetime;
use crate::domain::portal_users::{AccessLevel, BlockType};
use crate::domain::products::Product;
use crate::service::portal::{Dashboard, KeyFacts, LoaderLink, PortalFace, ShownBlock};

#[derive(Object, Debug)]
#[oai(rename = "PortalProject")]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    pub slug: String,
    #[oai(nullable)]
    pub description: Option<String>,
}

impl ProjectInfo {
    fn new(p: &Product) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            slug: p.slug.clone(),
            description: p.settings.description.clone(),
        }
    }
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "PortalBlock")]
pub struct BlockView {
    /// key_info, copy_key, download_loader, hwid_status, license_file, custom_button or
    /// custom_text.
    #[oai(rename = "type")]
    pub block_type: BlockType,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub label: Option<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub url: Option<String>,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub text: Option<String>,
    /// The access level the block needs: none, key (an active key) or full (bound HWID).
    pub requires: AccessLevel,
    /// The entitlement the user's key must carry for the block to unlock, if any.
    #[oai(nullable, skip_serializing_if_is_none, rename = "requiresEntitlement")]
    pub requires_entitlement: Option<String>,
    /// True when the user's access is below `requires`, or the key lacks
    /// `requiresEntitlement`; a locked block's URL is withheld.
    pub locked: bool,
}

impl From<ShownBlock> for BlockView {
    fn from(b: ShownBlock) -> Self {
        Self {
            block_type: b.block_type,
            label: b.label,
            url: b.url,
            text: b.text,
            requires: b.requires,
            requires_entitlement: b.requires_entitlement,
            locked: b.locked,
        }
    }
}

fn block_views(blocks: Vec<ShownBlock>) -> Vec<BlockView> {
    blocks.into_iter().map(BlockView::from).collect()
}

#[derive(Object, Debug)]
pub struct PortalInfo {
    pub title: String,
    #[oai(nullable)]
    pub welcome: Option<String>,
    pub blocks: Vec<BlockView>,
}

#[derive(Object, Debug)]
pub struct PortalInfoData {
    pub project: ProjectInfo,
    pub portal: PortalInfo,
}

#[derive(Object, Debug)]
pub struct PortalInfoOk {
    pub success: bool,
    pub data: PortalInfoData,
}

impl PortalInfoOk {
    pub fn new(face: PortalFace) -> Json<Self> {
        Json(Self {
            success: true,
            data: PortalInfoData {
                project: ProjectInfo::new(&face.product),
                portal: PortalInfo {
                    title: face.title,
                    welcome: face.welcome,
                    blocks: block_views(face.blocks),
                },
            },
        })
    }
}

#[derive(Object, Debug)]
#[oai(rename = "PortalKey", rename_all = "camelCase")]
pub struct KeyView {
    /// The key with its middle hidden: `A1B2-****-****-G7H8`.
    pub mask: String,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    pub status: LicenseStatus,
    /// Bound to a machine (HWID).
    pub hwid_locked: bool,
    #[oai(nullable)]
    pub expires_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub max_sessions: Option<u32>,
    pub active_sessions: u64,
}

impl From<KeyFacts> for KeyView {
    fn from(k: KeyFacts) -> Self {
        Self {
            mask: k.mask,
            plan: k.plan,
            status: k.status,
            hwid_locked: k.hwid_locked,
            expires_at: k.expires_at.map(ms_to_datetime),
            max_sessions: k.max_sessions,
            active_sessions: k.active_sessions,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalAccess {
    pub has_key: bool,
    pub key_active: bool,
    pub hwid_bound: bool,
    pub full_access: bool,
    pub can_download_loader: bool,
    /// Where the loader downloads from (present only when allowed).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub loader_url: Option<String>,
    /// none, key or full.
    pub level: AccessLevel,
    /// The loader release's per-platform files, each downloading from its own `url` (present
    /// only when `loaderUrl` is the portal's own download).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub loader_files: Option<Vec<PortalLoaderFile>>,
    /// True when the loader release has a bundle of its own, which `loaderUrl` sends; without
    /// one, `loaderUrl` alone works only for a release with a single file (present with
    /// `loaderFiles`).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub loader_bundle: Option<bool>,
}

/// One per-platform file of the loader release.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalLoaderFile {
    /// windows, darwin, linux, …
    pub platform: String,
    /// x86_64, aarch64, i686, armv7 or universal.
    pub arch: String,
    /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
    pub filetype: String,
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// The loader download choosing this file (`platform`, `arch` and `filetype`).
    pub url: String,
}

impl PortalLoaderFile {
    fn new(a: Artifact) -> Self {
        // The three names are checked slugs on upload, safe in a query as they are.
        let url = format!(
            "{LOADER_PATH}?platform={}&arch={}&filetype={}",
            a.platform,
            a.arch.as_str(),
            a.filetype
        );
        Self {
            arch: a.arch.as_str().to_owned(),
            url,
            platform: a.platform,
            filetype: a.filetype,
            filename: a.file.filename,
            size: a.file.size,
        }
    }
}

#[derive(Object, Debug)]
pub struct PortalMeUser {
    pub id: String,
    pub username: String,
    #[oai(rename = "projectId")]
    pub project_id: String,
    /// Where password-reset links go, if set.
    #[oai(nullable)]
    pub email: Option<String>,
}

#[derive(Object, Debug)]
pub struct PortalMeData {
    pub user: PortalMeUser,
    #[oai(nullable)]
    pub key: Option<KeyView>,
    pub access: PortalAccess,
    pub project: ProjectInfo,
    pub title: String,
    #[oai(nullable)]
    pub welcome: Option<String>,
    /// The dashboard, as the project's portal editor arranged it.
    pub blocks: Vec<BlockView>,
}

#[derive(Object, Debug)]
pub struct PortalMeOk {
    pub success: bool,
    pub data: PortalMeData,
}

impl PortalMeOk {
    pub fn new(d: Dashboard) -> Json<Self> {
        let access = d.access;
        let (loader_url, loader_files, loader_bundle) = match access.loader {
            None => (None, None, None),
            Some(LoaderLink::External(url)) => (Some(url), None, None),
            Some(LoaderLink::Release { files, bundle }) => (
                Some(LOADER_PATH.to_owned()),
                Some(files.into_iter().map(PortalLoaderFile::new).collect()),
                Some(bundle),
            ),
        };
        Json(Self {
            success: true,
            data: PortalMeData {
                user: PortalMeUser {
                    id: d.user.id,
                    username: d.user.username,
                    project_id: d.user.product_id,
                    email: d.user.email,
                },
                key: d.key.map(KeyView::from),
                access: PortalAccess {
                    has_key: access.has_key,
                    key_active: access.level.reaches(AccessLevel::Key),
                    hwid_bound: access.hwid_bound,
                    full_access: access.level == AccessLevel::Full,
                    can_download_loader: access.can_download_loader,
                    loader_url,
                    level: access.level,
                    loader_files,
                    loader_bundle,
                },
                project: ProjectInfo::new(&d.face.product),
                title: d.face.title,
                welcome: d.face.welcome,
                blocks: block_views(d.face.blocks),
            },
        })
    }
}

#[derive(ApiResponse)]
pub enum PortalInfoResponse {
    /// The portal's public face: project and dashboard layout.
    #[oai(status = 200)]
    Ok(Json<PortalInfoOk>),
}

#[derive(ApiResponse)]
pub enum PortalMeResponse {
    /// The user, the linked key (masked), the access level and the dashboard.
    #[oai(status = 200)]
    Ok(Json<PortalMeOk>),
}
