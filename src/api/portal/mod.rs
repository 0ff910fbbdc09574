//! `/api/portal/*`: the per-project user portal's API (key/HWID contract). End users register
//! without a key, sign in, link a key, and read their dashboard; the loader downloads through
//! here, gated by access level and audited.

use poem::{Body, IntoResponse, Request, RequestBody};
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::registry::Registry;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
    SecurityScheme, Tags,
};
use serde_json::json;
use time::OffsetDateTime;

use crate::api::ClientIp;
use crate::api::shared::csrf::refuse_cross_site;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::{KvError, KvResult};
use crate::crypto;
use crate::domain::audit::AuditEvent;
use crate::domain::licenses::{self, License, Plan};
use crate::domain::portal_users::{
    self, AccessLevel, Block, BlockType, PortalSettings, PortalUser, TOKEN_COOKIE,
};
use crate::domain::products::{self, Product};
use crate::domain::releases::{self, Channel, Release};
use crate::domain::{activations, ms_to_datetime, now_ms, operators, sessions, tenants};
use crate::error::Error;
use crate::state::AppState;

#[derive(Tags)]
pub enum PortalTags {
    /// The end users' portal of a project (`/p/<slug>`).
    Portal,
}

pub struct PortalApi {
    pub state: AppState,
}

/// Portal session token in the `Authorization: Bearer` header. Only declares the scheme.
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(rename = "PortalBearer", ty = "bearer")]
pub struct PortalBearer(Bearer);

/// Portal session token in the HttpOnly `portal_token` cookie (set by register and login).
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(
    rename = "PortalCookie",
    ty = "api_key",
    key_name = "portal_token",
    key_in = "cookie"
)]
pub struct PortalCookie(ApiKey);

/// A signed-in portal user (Bearer token or cookie), proven before the handler runs.
pub struct PortalAuth {
    user: PortalUser,
    token_sha256: [u8; 32],
}

impl<'a> ApiExtractor<'a> for PortalAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <PortalBearer as ApiExtractor>::register(registry);
        <PortalCookie as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["PortalBearer", "PortalCookie"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        portal_user(req).map_err(|e| poem::Error::from_response(KvError::from(e).into_response()))
    }
}

fn portal_user(req: &Request) -> Result<PortalAuth, Error> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| Error::Storage("application state missing".into()))?;
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .map(str::trim)
                .map(str::to_owned)
                .ok_or_else(|| Error::Unauthorized("Authorization must be `Bearer <token>`".into()))
        })
        .transpose()?;
    let token = match bearer {
        Some(t) => t,
        None => {
            let cookie = req
                .cookie()
                .get(TOKEN_COOKIE)
                .map(|c| c.value_str().to_owned());
            let Some(token) = cookie else {
                return Err(Error::Unauthorized(
                    "Sign in first: no portal session".into(),
                ));
            };
            // A cookie rides along on cross-site requests; a changing request must come from
            // the portal page itself.
            refuse_cross_site(req)?;
            token
        }
    };
    let token_sha256 = crypto::sha256(token.as_bytes());
    let user = state
        .db
        .read(|c| portal_users::repo::find_by_session(c, &token_sha256, now_ms()))?
        .ok_or_else(|| {
            Error::Unauthorized("The portal session has expired; sign in again".into())
        })?;
    Ok(PortalAuth { user, token_sha256 })
}

crate::field_names!(
    UsernameField = "username",
    PasswordField = "password",
    ProjectIdField = "projectId",
    KeyField = "key",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalCredentialsRequest {
    /// 3-32 characters: letters, digits, `_`, `-`, `.`; unique per project, ignoring case.
    #[oai(
        deserialize_with = "named::<UsernameField, _>",
        validator(max_length = 64)
    )]
    pub username: String,
    /// 8-128 characters.
    #[oai(
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 256)
    )]
    pub password: String,
    /// The project whose portal this is (`GET /api/portal/info` tells it).
    #[oai(
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: String,
}

#[derive(Object, Debug)]
pub struct PortalActivateRequest {
    /// The license key, as the user received it (case and spaces do not matter).
    #[oai(deserialize_with = "named::<KeyField, _>", validator(max_length = 100))]
    pub key: String,
}

#[derive(Object, Debug)]
#[oai(rename = "PortalUser", rename_all = "camelCase")]
pub struct PortalUserView {
    pub id: String,
    pub username: String,
    pub project_id: String,
    /// The linked key's id, or null.
    pub key_id: Option<String>,
}

impl PortalUserView {
    fn new(u: &PortalUser) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            project_id: u.product_id.clone(),
            key_id: u.license_id.clone(),
        }
    }
}

#[derive(Object, Debug)]
pub struct PortalSessionData {
    /// The portal session token (also set as the HttpOnly `portal_token` cookie).
    pub token: String,
    pub user: PortalUserView,
}

#[derive(Object, Debug)]
pub struct PortalSessionOk {
    pub success: bool,
    pub data: PortalSessionData,
}

#[derive(Object, Debug)]
#[oai(rename = "PortalProject")]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "PortalBlock")]
pub struct BlockView {
    /// key_info, copy_key, download_loader, hwid_status, custom_button or custom_text.
    #[oai(rename = "type")]
    pub block_type: BlockType,
    #[oai(skip_serializing_if_is_none)]
    pub label: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub url: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub text: Option<String>,
    /// The access level the block needs: none, key (an active key) or full (bound HWID).
    pub requires: AccessLevel,
    /// True when the user's access is below `requires`; a locked block's URL is withheld.
    pub locked: bool,
}

fn block_views(blocks: &[Block], level: Option<AccessLevel>) -> Vec<BlockView> {
    blocks
        .iter()
        .map(|b| {
            let needs = b.needs();
            let locked = level.is_some_and(|l| !l.reaches(needs));
            BlockView {
                block_type: b.block_type,
                label: b.label.clone(),
                url: if locked { None } else { b.url.clone() },
                text: b.text.clone(),
                requires: needs,
                locked,
            }
        })
        .collect()
}

#[derive(Object, Debug)]
pub struct PortalInfo {
    pub title: String,
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

#[derive(Object, Debug)]
#[oai(rename = "PortalKey", rename_all = "camelCase")]
pub struct KeyView {
    /// The key with its middle hidden: `A1B2-****-****-G7H8`.
    pub mask: String,
    pub plan: Option<Plan>,
    pub status: licenses::LicenseStatus,
    /// Bound to a machine (HWID).
    pub hwid_locked: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub max_sessions: Option<u32>,
    pub active_sessions: u64,
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
    #[oai(skip_serializing_if_is_none)]
    pub loader_url: Option<String>,
    /// none, key or full.
    pub level: AccessLevel,
}

#[derive(Object, Debug)]
pub struct PortalMeUser {
    pub id: String,
    pub username: String,
    #[oai(rename = "projectId")]
    pub project_id: String,
}

#[derive(Object, Debug)]
pub struct PortalMeData {
    pub user: PortalMeUser,
    pub key: Option<KeyView>,
    pub access: PortalAccess,
    pub project: ProjectInfo,
    pub title: String,
    pub welcome: Option<String>,
    /// The dashboard, as the project's portal editor arranged it.
    pub blocks: Vec<BlockView>,
}

#[derive(Object, Debug)]
pub struct PortalMeOk {
    pub success: bool,
    pub data: PortalMeData,
}

#[derive(Object, Debug)]
#[oai(rename = "PortalActivatedKey")]
pub struct ActivatedKey {
    pub mask: String,
    pub plan: Option<Plan>,
    pub status: licenses::LicenseStatus,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalActivateData {
    pub message: String,
    pub key: ActivatedKey,
    /// True until the loader has bound the key to a machine.
    pub needs_hwid_binding: bool,
}

#[derive(Object, Debug)]
pub struct PortalActivateOk {
    pub success: bool,
    pub data: PortalActivateData,
}

#[derive(Object, Debug)]
pub struct PortalLogoutData {
    pub message: String,
}

#[derive(Object, Debug)]
pub struct PortalLogoutOk {
    pub success: bool,
    pub data: PortalLogoutData,
}

#[derive(ApiResponse)]
pub enum PortalInfoResponse {
    /// The portal's public face: project and dashboard layout.
    #[oai(status = 200)]
    Ok(Json<PortalInfoOk>),
}

#[derive(ApiResponse)]
pub enum PortalRegisterResponse {
    /// Registered and signed in: the token is in the body and in the HttpOnly cookie.
    #[oai(status = 201)]
    Created(Json<PortalSessionOk>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum PortalLoginResponse {
    /// Signed in: the token is in the body and in the HttpOnly cookie.
    #[oai(status = 200)]
    Ok(Json<PortalSessionOk>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum PortalMeResponse {
    /// The user, the linked key (masked), the access level and the dashboard.
    #[oai(status = 200)]
    Ok(Json<PortalMeOk>),
}

#[derive(ApiResponse)]
pub enum PortalActivateResponse {
    /// The key is linked to this account.
    #[oai(status = 200)]
    Ok(Json<PortalActivateOk>),
}

#[derive(ApiResponse)]
pub enum PortalLogoutResponse {
    /// The session ended and the cookie is cleared.
    #[oai(status = 200)]
    Ok(Json<PortalLogoutOk>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum PortalLoaderResponse {
    /// The loader: the project's newest published stable release.
    #[oai(status = 200)]
    Ok(
        Binary<Body>,
        /// Bytes.
        #[oai(header = "Content-Length")]
        u64,
        /// Hex SHA-256 of the bundle.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the bundle's exact bytes, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

/// The path of the portal's own loader download.
const LOADER_PATH: &str = "/api/portal/loader";

#[OpenApi(tag = "PortalTags::Portal")]
impl PortalApi {
    /// Public portal info
    ///
    /// The project and the dashboard layout of the portal at `/p/<slug>`. 404 when there is no
    /// such portal or it is disabled. Slugs are unique per workspace: `tenant` picks one when
    /// several workspaces use the same slug (default: the `default` workspace).
    #[oai(path = "/api/portal/info", method = "get")]
    async fn info(
        &self,
        /// The project's slug, as in `/p/<slug>`.
        slug: Query<String>,
        /// The workspace (tenant) slug, when several use this project slug.
        tenant: Query<Option<String>>,
    ) -> KvResult<PortalInfoResponse> {
        let product = self
            .state
            .db
            .read(|c| portal_product(c, &slug.0, tenant.0.as_deref()))?;
        let settings = portal_users::settings_of(&product);
        Ok(PortalInfoResponse::Ok(Json(PortalInfoOk {
            success: true,
            data: PortalInfoData {
                portal: PortalInfo {
                    title: title_of(&settings, &product),
                    welcome: settings.welcome.clone(),
                    blocks: block_views(&settings.blocks, None),
                },
                project: project_info(&product),
            },
        })))
    }

    /// Register a portal user
    ///
    /// No key needed. Signs the new user in (token in the body and the `portal_token` cookie).
    #[oai(path = "/api/portal/register", method = "post")]
    async fn register(
        &self,
        req: &Request,
        body: Json<PortalCredentialsRequest>,
    ) -> KvResult<PortalRegisterResponse> {
        let body = body.0;
        self.limit_by_ip(req)?;
        let username = body.username.trim().to_owned();
        portal_users::validate_username(&username)?;
        operators::validate_password(&body.password)?;
        let product = self.open_portal(&body.project_id)?;
        let password = body.password;
        let hash = self
            .hash_off_runtime(move || operators::hash_password(&password))
            .await??;
        let ip = ClientIp::of(req).map(|i| i.to_string());
        let (user, token) = self
            .state
            .db
            .write(move |c| {
                let user = portal_users::register(c, &product, &username, hash)?;
                let token = portal_users::open_session(c, &user)?;
                crate::domain::audit::repo::insert(
                    c,
                    &AuditEvent::new(
                        &user.tenant_id,
                        &actor(&user),
                        crate::domain::audit::AuditAction::PortalRegister,
                    )
                    .product(&user.product_id)
                    .ip(ip.as_deref()),
                )?;
                Ok((user, token))
            })
            .await?;
        let cookie = session_cookie(req, &self.state, &token);
        Ok(PortalRegisterResponse::Created(
            Json(PortalSessionOk {
                success: true,
                data: PortalSessionData {
                    token,
                    user: PortalUserView::new(&user),
                },
            }),
            cookie,
        ))
    }

    /// Sign in as a portal user
    ///
    /// An unknown username answers like a wrong password, in about the same time.
    #[oai(path = "/api/portal/login", method = "post")]
    async fn login(
        &self,
        req: &Request,
        body: Json<PortalCredentialsRequest>,
    ) -> KvResult<PortalLoginResponse> {
        let body = body.0;
        self.limit_by_ip(req)?;
        let username = body.username.trim().to_owned();
        self.state.limits.login_per_account.check(&format!(
            "portal:{}:{}",
            body.project_id,
            username.to_lowercase()
        ))?;
        let found = self.state.db.read(|c| {
            Ok(match products::repo::find_by_id(c, &body.project_id)? {
                Some(p) => portal_users::repo::find_by_username(c, &p.id, &username)?,
                None => None,
            })
        })?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| operators::decoy_hash().to_owned());
        let password = body.password;
        let matches = self
            .hash_off_runtime(move || operators::verify_password(&password, &hash))
            .await?;
        let ip = ClientIp::of(req).map(|i| i.to_string());
        let Some(user) = found.filter(|_| matches) else {
            return Err(Error::Unauthorized("Invalid username or password".into()).into());
        };
        let (token, user) = self
            .state
            .db
            .write(move |c| {
                let token = portal_users::open_session(c, &user)?;
                crate::domain::audit::repo::insert(
                    c,
                    &AuditEvent::new(
                        &user.tenant_id,
                        &actor(&user),
                        crate::domain::audit::AuditAction::PortalLogin,
                    )
                    .product(&user.product_id)
                    .ip(ip.as_deref()),
                )?;
                Ok((token, user))
            })
            .await?;
        let cookie = session_cookie(req, &self.state, &token);
        Ok(PortalLoginResponse::Ok(
            Json(PortalSessionOk {
                success: true,
                data: PortalSessionData {
                    user: PortalUserView::new(&user),
                    token,
                },
            }),
            cookie,
        ))
    }

    /// The signed-in user's portal
    ///
    /// User, key (masked), access level (`hasKey`, `keyActive`, `hwidBound`, `fullAccess`,
    /// `canDownloadLoader`, `loaderUrl`) and the dashboard blocks, locked above the level.
    #[oai(path = "/api/portal/me", method = "get")]
    async fn me(&self, auth: PortalAuth) -> KvResult<PortalMeResponse> {
        let user = auth.user;
        let view = self.state.db.read(|c| dashboard(c, &user))?;
        Ok(PortalMeResponse::Ok(Json(PortalMeOk {
            success: true,
            data: view,
        })))
    }

    /// Link a license key to the account
    ///
    /// The key must belong to this portal's project, be usable (not expired, suspended,
    /// banned or revoked) and not be linked to another account. A new key replaces the old.
    #[oai(path = "/api/portal/activate", method = "post")]
    async fn activate(
        &self,
        req: &Request,
        auth: PortalAuth,
        body: Json<PortalActivateRequest>,
    ) -> KvResult<PortalActivateResponse> {
        let user = auth.user;
        let key = licenses::normalize_key(&body.0.key);
        if key.is_empty() {
            return Err(Error::Invalid("key is required".into()).into());
        }
        let ip = ClientIp::of(req);
        let found = self
            .state
            .db
            .read(|c| licenses::repo::find_by_key_in_product(c, &user.product_id, &key))?;
        let Some(license) = found else {
            // Each unknown key costs the IP one token of a small allowance: no guessing.
            self.state
                .abuse
                .unknown_key(ip, crate::abuse::Scope::ProductId(user.product_id.clone()));
            if let Some(ip) = ip {
                self.state.limits.failed_auth_per_ip.check(&ip)?;
            }
            return Err(Error::Invalid("key: no such key in this project".into()).into());
        };
        let ip_text = ip.map(|i| i.to_string());
        let job_user = user.clone();
        let (license, bound) = self
            .state
            .db
            .write(move |c| {
                portal_users::link_license(c, &job_user, &license)?;
                crate::domain::audit::repo::insert(
                    c,
                    &AuditEvent::new(
                        &job_user.tenant_id,
                        &actor(&job_user),
                        crate::domain::audit::AuditAction::PortalActivate,
                    )
                    .license(&license.product_id, &license.id)
                    .ip(ip_text.as_deref()),
                )?;
                let bound = activations::repo::count(c, &license.id)? > 0;
                Ok((license, bound))
            })
            .await
            .map_err(|e| match e {
                Error::Conflict(m) => Error::Conflict(format!("key: {m}")),
                other => other,
            })?;
        Ok(PortalActivateResponse::Ok(Json(PortalActivateOk {
            success: true,
            data: PortalActivateData {
                message: "Key activated successfully!".into(),
                key: ActivatedKey {
                    mask: portal_users::mask_key(&license.key),
                    plan: license.plan,
                    status: license.effective_status(now_ms()),
                },
                needs_hwid_binding: !bound,
            },
        })))
    }

    /// Sign out
    ///
    /// Ends the session (the token stops working at once) and clears the cookie.
    #[oai(path = "/api/portal/logout", method = "post")]
    async fn logout(&self, req: &Request, auth: PortalAuth) -> KvResult<PortalLogoutResponse> {
        let token = auth.token_sha256;
        self.state
            .db
            .write(move |c| portal_users::repo::delete_session(c, &token))
            .await?;
        let secure = if crate::api::shared::csrf::is_https(req, &self.state) {
            "; Secure"
        } else {
            ""
        };
        Ok(PortalLogoutResponse::Ok(
            Json(PortalLogoutOk {
                success: true,
                data: PortalLogoutData {
                    message: "Signed out".into(),
                },
            }),
            format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        ))
    }

    /// Download the loader
    ///
    /// The project's newest published stable release, for a user whose key is active (the
    /// loader is how the key gets bound to a machine). Audited.
    #[oai(path = "/api/portal/loader", method = "get")]
    async fn loader(&self, req: &Request, auth: PortalAuth) -> KvResult<PortalLoaderResponse> {
        let user = auth.user;
        let (level, needed, release) = self.state.db.read(|c| {
            let product = products::repo::find_by_id(c, &user.product_id)?
                .ok_or(Error::NotFound("portal"))?;
            let level = access_of(c, &user, &product)?.level;
            let needed = loader_level(&portal_users::settings_of(&product));
            Ok((level, needed, newest_stable(c, &product.id)?))
        })?;
        let Some(needed) = needed else {
            return Err(Error::NotFound("loader").into());
        };
        if !level.reaches(needed) {
            let why = if needed == AccessLevel::Full {
                "the loader is available once your key is bound to a machine"
            } else {
                "activate an active key on your account to download the loader"
            };
            return Err(Error::Forbidden(why.into()).into());
        }
        let release = release.ok_or(Error::NotFound("loader"))?;
        let path = self.state.bundles.path(&release.bundle.sha256)?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            Error::Storage(format!("bundle file {} unreadable: {e}", path.display()))
        })?;
        let ip = ClientIp::of(req).map(|i| i.to_string());
        self.state.db.writer().record(
            AuditEvent::new(
                &user.tenant_id,
                &actor(&user),
                crate::domain::audit::AuditAction::PortalLoaderDownload,
            )
            .product(&user.product_id)
            .ip(ip.as_deref())
            .detail(json!({"releaseId": release.id, "version": release.version})),
        );
        Ok(PortalLoaderResponse::Ok(
            Binary(crate::api::shared::body::bundle_body(file)),
            release.bundle.size,
            release.bundle.sha256.clone(),
            release.bundle.signature.clone(),
            format!("attachment; filename=\"{}\"", release.bundle.filename),
        ))
    }
}

impl PortalApi {
    fn limit_by_ip(&self, req: &Request) -> Result<(), Error> {
        if let Some(ip) = ClientIp::of(req) {
            self.state.limits.login_per_ip.check(&ip)?;
        }
        Ok(())
    }

    /// The product of an enabled portal, by id.
    fn open_portal(&self, project_id: &str) -> Result<Product, Error> {
        let product = self
            .state
            .db
            .read(|c| products::repo::find_by_id(c, project_id))?
            .filter(|p| portal_users::settings_of(p).enabled)
            .ok_or(Error::NotFound("portal"))?;
        Ok(product)
    }

    /// argon2id costs tens of milliseconds and ~19 MiB: off the runtime, at most two at once.
    async fn hash_off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .state
            .password_hashing
            .acquire()
            .await
            .map_err(|_| Error::Storage("password hashing unavailable".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Storage(e.to_string()))
    }
}

fn actor(user: &PortalUser) -> String {
    format!("portal:{}", user.id)
}

fn session_cookie(req: &Request, state: &AppState, token: &str) -> String {
    let max_age = portal_users::SESSION_TTL_MS / 1000;
    let secure = if crate::api::shared::csrf::is_https(req, state) {
        "; Secure"
    } else {
        ""
    };
    format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn project_info(p: &Product) -> ProjectInfo {
    ProjectInfo {
        id: p.id.clone(),
        name: p.name.clone(),
        slug: p.slug.clone(),
        description: p.settings.description.clone(),
    }
}

fn title_of(settings: &PortalSettings, product: &Product) -> String {
    settings
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| product.name.clone())
}

/// The enabled portal at `/p/<slug>`: the named workspace's, else the default workspace's,
/// else the only one with that slug.
fn portal_product(
    c: &rusqlite::Connection,
    slug: &str,
    tenant: Option<&str>,
) -> Result<Product, Error> {
    if slug.len() > 64 || tenant.is_some_and(|t| t.len() > 64) {
        return Err(Error::NotFound("portal"));
    }
    let mut candidates = Vec::new();
    for (tenant_id, product_id) in portal_users::repo::products_with_slug(c, slug)? {
        if let Some(p) = products::repo::find(c, &tenant_id, &product_id)?
            && portal_users::settings_of(&p).enabled
        {
            candidates.push(p);
        }
    }
    let tenant_id_of = |slug: &str| -> Result<Option<String>, Error> {
        Ok(tenants::repo::find_by_slug(c, slug)?.map(|t| t.id))
    };
    let chosen = match tenant {
        Some(t) => {
            let id = tenant_id_of(t)?;
            candidates
                .into_iter()
                .find(|p| Some(&p.tenant_id) == id.as_ref())
        }
        None if candidates.len() <= 1 => candidates.pop(),
        None => {
            let default = tenant_id_of(tenants::DEFAULT_SLUG)?;
            candidates
                .into_iter()
                .find(|p| Some(&p.tenant_id) == default.as_ref())
        }
    };
    chosen.ok_or(Error::NotFound("portal"))
}

struct AccessFacts {
    level: AccessLevel,
    license: Option<License>,
    bound: bool,
}

fn access_of(
    c: &rusqlite::Connection,
    user: &PortalUser,
    product: &Product,
) -> Result<AccessFacts, Error> {
    let license = match &user.license_id {
        Some(id) => licenses::repo::find(c, &product.tenant_id, id)?,
        None => None,
    };
    let now = now_ms();
    let active = license.as_ref().is_some_and(|l| l.problem(now).is_none());
    let bound = match &license {
        Some(l) => activations::repo::count(c, &l.id)? > 0,
        None => false,
    };
    let level = match (active, bound) {
        (true, true) => AccessLevel::Full,
        (true, false) => AccessLevel::Key,
        _ => AccessLevel::Anyone,
    };
    Ok(AccessFacts {
        level,
        license,
        bound,
    })
}

/// The access level the layout's `download_loader` block requires; None when the layout has
/// no such block (then the loader is not offered at all).
fn loader_level(settings: &PortalSettings) -> Option<AccessLevel> {
    settings
        .blocks
        .iter()
        .filter(|b| b.block_type == BlockType::DownloadLoader)
        .map(Block::needs)
        .min_by_key(|level| level.rank())
}

fn newest_stable(c: &rusqlite::Connection, product_id: &str) -> Result<Option<Release>, Error> {
    let published = releases::repo::published_for_product(c, product_id)?;
    Ok(releases::newest(&published, Channel::Stable, None).cloned())
}

fn dashboard(c: &rusqlite::Connection, user: &PortalUser) -> Result<PortalMeData, Error> {
    let product =
        products::repo::find_by_id(c, &user.product_id)?.ok_or(Error::NotFound("portal"))?;
    let settings = portal_users::settings_of(&product);
    let facts = access_of(c, user, &product)?;
    let now = now_ms();
    let key = match &facts.license {
        Some(l) => {
            let ttl_ms = i64::from(product.settings.session_ttl_secs) * 1000;
            let live = sessions::repo::for_license(c, &l.id)?
                .iter()
                .filter(|s| s.last_seen_at > now - ttl_ms)
                .count() as u64;
            Some(KeyView {
                mask: portal_users::mask_key(&l.key),
                plan: l.plan,
                status: l.effective_status(now),
                hwid_locked: facts.bound,
                expires_at: licenses::plan_expiry(l, now).map(ms_to_datetime),
                max_sessions: l.max_sessions,
                active_sessions: live,
            })
        }
        None => None,
    };
    let loader_url = match settings.loader_url.as_deref().filter(|u| !u.is_empty()) {
        Some(external) => Some(external.to_owned()),
        None => newest_stable(c, &product.id)?.map(|_| LOADER_PATH.to_owned()),
    };
    // The loader is offered only through a `download_loader` block, at the level that block
    // requires (HWID gating).
    let can_download = loader_level(&settings).is_some_and(|needed| facts.level.reaches(needed))
        && loader_url.is_some();
    Ok(PortalMeData {
        user: PortalMeUser {
            id: user.id.clone(),
            username: user.username.clone(),
            project_id: user.product_id.clone(),
        },
        key,
        access: PortalAccess {
            has_key: facts.license.is_some(),
            key_active: facts.level.reaches(AccessLevel::Key),
            hwid_bound: facts.bound,
            full_access: facts.level == AccessLevel::Full,
            can_download_loader: can_download,
            loader_url: if can_download { loader_url } else { None },
            level: facts.level,
        },
        project: project_info(&product),
        title: title_of(&settings, &product),
        welcome: settings.welcome.clone(),
        blocks: block_views(&settings.blocks, Some(facts.level)),
    })
}
