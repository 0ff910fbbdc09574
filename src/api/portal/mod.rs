//! `/api/portal/*`: the per-project user portal's API (key/HWID contract). End users register
//! without a key, sign in, link a key, and read their dashboard; the loader downloads through
//! here, gated by access level and audited. Each handler calls one `service::portal` function;
//! a signed-in user acts through the [`Ctx`] its token proves.

mod account;
mod dashboard;
mod downloads;
mod keys;
mod license_file;
mod recovery;

use poem::{IntoResponse, Request, RequestBody};
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::registry::Registry;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, OpenApi, SecurityScheme, Tags,
};

use crate::api::ClientIp;
use crate::api::shared::csrf::refuse_cross_site;
use crate::api::shared::device_cookie;
use crate::api::shared::keyvault_error::{KvError, KvResult};
use crate::api::shared::offline::{MachineFileOk, OfflineActivationRequest, requested_ttl};
use crate::domain::ProductId;
use crate::domain::artifacts::{self, Wanted};
use crate::domain::portal_users::TOKEN_COOKIE;
use crate::error::Error;
use crate::service::{Ctx, portal};
use crate::state::AppState;

pub use account::{
    PortalCredentialsRequest, PortalLoginResponse, PortalLogoutOk, PortalLogoutResponse,
    PortalRegisterResponse, PortalSessionOk,
};
pub use dashboard::{
    PortalInfoOk, PortalInfoResponse, PortalLoaderFile, PortalMeOk, PortalMeResponse,
};
pub use downloads::PortalLoaderResponse;
pub use keys::{PortalActivateOk, PortalActivateRequest, PortalActivateResponse};
pub use license_file::{
    PortalMachineFileRequest, PortalMachineFileResponse, PortalOfflineActivationResponse,
};
pub use recovery::{
    PortalAccountEmailRequest, PortalAccountEmailResponse, PortalEmailRequest,
    PortalMailRequestResponse, PortalMessageOk, PortalResetConfirmRequest,
    PortalResetConfirmResponse,
};

#[derive(Tags)]
pub enum PortalTags {
    /// The end users' portal of a project (`/p/<slug>`).
    Portal,
}

/// Where the portal device cookie is sent back (and nowhere else).
const LOGIN_PATH: &str = "/api/portal/login";

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

/// A signed-in portal user (Bearer token or cookie), proven before the handler runs: its
/// context reaches the user's own tenant and project only.
pub struct PortalAuth {
    ctx: Ctx,
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
        portal_auth(req).map_err(|e| poem::Error::from_response(KvError::from(e).into_response()))
    }
}

fn portal_auth(req: &Request) -> Result<PortalAuth, Error> {
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
    let (ctx, token_sha256) = portal::authenticate(state, &token, ClientIp::of(req))?;
    Ok(PortalAuth { ctx, token_sha256 })
}

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
        let face = portal::info(&self.state, &slug.0, tenant.0.as_deref())?;
        Ok(PortalInfoResponse::Ok(PortalInfoOk::new(face)))
    }

    /// Register a portal user
    ///
    /// No key needed. Signs the new user in (token in the body and the `portal_token` cookie)
    /// and sets the account's device cookie (see sign in).
    #[oai(path = "/api/portal/register", method = "post")]
    async fn register(
        &self,
        req: &Request,
        body: Json<PortalCredentialsRequest>,
    ) -> KvResult<PortalRegisterResponse> {
        let body = body.0;
        let project = ProductId::from(body.project_id);
        let session = portal::register(
            &self.state,
            ClientIp::of(req),
            &project,
            &body.username,
            body.password,
            body.email.as_deref(),
        )
        .await?;
        device_cookie::set(req, &self.state, LOGIN_PATH, &session.device);
        let cookie = account::session_cookie(req, &self.state, &session.token);
        Ok(PortalRegisterResponse::Created(
            PortalSessionOk::new(session),
            cookie,
        ))
    }

    /// Sign in as a portal user
    ///
    /// An unknown username answers like a wrong password, in about the same time. Sets a
    /// device cookie (`kw_device_…`, HttpOnly, SameSite=Strict, Path=/api/portal/login), as
    /// register does. Limited per IP (every attempt) and per account (failed attempts only):
    /// once an account's failure budget is used up, 429 with `Retry-After` for every client
    /// except those presenting a device cookie of the account, which have a failure budget of
    /// their own.
    #[oai(path = "/api/portal/login", method = "post")]
    async fn login(
        &self,
        req: &Request,
        body: Json<PortalCredentialsRequest>,
    ) -> KvResult<PortalLoginResponse> {
        let body = body.0;
        let project = ProductId::from(body.project_id);
        let session = portal::login(
            &self.state,
            ClientIp::of(req),
            &project,
            &body.username,
            body.password,
            &device_cookie::presented(req),
        )
        .await?;
        device_cookie::set(req, &self.state, LOGIN_PATH, &session.device);
        let cookie = account::session_cookie(req, &self.state, &session.token);
        Ok(PortalLoginResponse::Ok(
            PortalSessionOk::new(session),
            cookie,
        ))
    }

    /// The signed-in user's portal
    ///
    /// User, key (masked), access level (`hasKey`, `keyActive`, `hwidBound`, `fullAccess`,
    /// `canDownloadLoader`, `loaderUrl`) and the dashboard blocks, locked above the level.
    #[oai(path = "/api/portal/me", method = "get")]
    async fn me(&self, auth: PortalAuth) -> KvResult<PortalMeResponse> {
        let dashboard = portal::dashboard(&self.state, &auth.ctx)?;
        Ok(PortalMeResponse::Ok(PortalMeOk::new(dashboard)))
    }

    /// Link a license key to the account
    ///
    /// The key must belong to this portal's project, be usable (not expired, suspended,
    /// banned or revoked) and not be linked to another account. A new key replaces the old.
    #[oai(path = "/api/portal/activate", method = "post")]
    async fn activate(
        &self,
        auth: PortalAuth,
        body: Json<PortalActivateRequest>,
    ) -> KvResult<PortalActivateResponse> {
        let linked = portal::link_key(&self.state, &auth.ctx, &body.0.key).await?;
        Ok(PortalActivateResponse::Ok(PortalActivateOk::new(linked)))
    }

    /// Sign out
    ///
    /// Ends the session (the token stops working at once) and clears the cookie.
    #[oai(path = "/api/portal/logout", method = "post")]
    async fn logout(&self, req: &Request, auth: PortalAuth) -> KvResult<PortalLogoutResponse> {
        portal::logout(&self.state, &auth.ctx, auth.token_sha256).await?;
        Ok(PortalLogoutResponse::Ok(
            PortalLogoutOk::signed_out(),
            account::cleared_cookie(req, &self.state),
        ))
    }

    /// Download the loader
    ///
    /// The project's newest published stable release, for a user whose key is active (the
    /// loader is how the key gets bound to a machine): its bundle, or one of its per-platform
    /// files (`loaderFiles` of `/api/portal/me`) chosen by `platform`, `arch` and `filetype`.
    /// A release with only files sends its one file without a choice, and answers 400 naming
    /// the choices when it has several. Audited.
    #[oai(path = "/api/portal/loader", method = "get")]
    async fn loader(
        &self,
        auth: PortalAuth,
        /// windows, darwin, linux, …: chooses the release's file for that platform.
        platform: Query<Option<String>>,
        /// x86_64, aarch64, i686, armv7 or universal.
        arch: Query<Option<String>>,
        /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …: needed when the
        /// platform and arch have several files.
        filetype: Query<Option<String>>,
    ) -> KvResult<PortalLoaderResponse> {
        let platform = match platform.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(artifacts::parse_platform("platform", text)?),
        };
        let arch = match arch.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(artifacts::parse_arch("arch", text)?),
        };
        let filetype = match filetype.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(artifacts::parse_filetype("filetype", text)?),
        };
        let wanted = Wanted {
            platform: platform.as_deref(),
            arch,
            filetype: filetype.as_deref(),
        };
        let download = portal::download_loader(&self.state, &auth.ctx, &wanted).await?;
        Ok(PortalLoaderResponse::new(download))
    }

    /// The machine file of the user's bound machine
    ///
    /// For the portal's `license_file` block (404 without one; 403 while the block is locked
    /// for this user). A Keygen-compatible machine file for `fingerprint` (one of the machines
    /// the user's key is bound to, else 404; by default the one seen last), encrypted with
    /// the key and the fingerprint. 409 when the key is bound to no machine yet; an expired,
    /// suspended, banned or revoked key → 403 KEY_EXPIRED / KEY_SUSPENDED / KEY_BANNED /
    /// KEY_REVOKED. Audited as `license.checkout`.
    #[oai(path = "/api/portal/license-file", method = "post")]
    async fn license_file(
        &self,
        auth: PortalAuth,
        body: Json<PortalMachineFileRequest>,
    ) -> KvResult<PortalMachineFileResponse> {
        let body = body.0;
        let file = portal::machine_file(
            &self.state,
            &auth.ctx,
            body.fingerprint.as_deref(),
            requested_ttl(body.ttl),
        )?;
        Ok(PortalMachineFileResponse::new(file))
    }

    /// Activate a machine offline
    ///
    /// For the portal's `license_file` block. `request` is the activation request an
    /// air-gapped app shows (or its `.req` file's text) for the user's own key: the machine
    /// is activated with the usual seat rules (idempotent for a machine already activated; a
    /// full key → 403 HWID_MISMATCH; an unusable key → 403 KEY_*), and its machine file is
    /// returned. A malformed request → 400 naming what is wrong; a request for any other key
    /// → 404. Audited as `license.activate.offline`.
    #[oai(path = "/api/portal/license-file/activate", method = "post")]
    async fn activate_offline(
        &self,
        auth: PortalAuth,
        body: Json<OfflineActivationRequest>,
    ) -> KvResult<PortalOfflineActivationResponse> {
        let body = body.0;
        let done = portal::activate_offline(
            &self.state,
            &auth.ctx,
            &body.request,
            requested_ttl(body.ttl),
        )
        .await?;
        Ok(PortalOfflineActivationResponse::Ok(Json(
            MachineFileOk::activated(done),
        )))
    }

    /// Send me my keys
    ///
    /// E-mails every license of this address for the portal's project, in one message. The
    /// answer is the same whether or not the address has licenses. Limited per address and
    /// per IP (429 with `Retry-After`).
    #[oai(path = "/api/portal/send-keys", method = "post")]
    async fn send_keys(
        &self,
        req: &Request,
        body: Json<PortalEmailRequest>,
    ) -> KvResult<PortalMailRequestResponse> {
        let body = body.0;
        portal::send_my_keys(
            &self.state,
            ClientIp::of(req),
            &ProductId::from(body.project_id),
            &body.email,
        )
        .await?;
        Ok(PortalMailRequestResponse::Accepted(PortalMessageOk::new(
            "If this address has licenses, they are on their way to it.",
        )))
    }

    /// Forgot password
    ///
    /// E-mails a password-reset link (signed, single use, valid for an hour) to each account
    /// of the portal with this address. The answer is the same whether or not there is one.
    /// Limited per address and per IP (429 with `Retry-After`).
    #[oai(path = "/api/portal/password-reset", method = "post")]
    async fn password_reset(
        &self,
        req: &Request,
        body: Json<PortalEmailRequest>,
    ) -> KvResult<PortalMailRequestResponse> {
        let body = body.0;
        portal::request_password_reset(
            &self.state,
            ClientIp::of(req),
            &ProductId::from(body.project_id),
            &body.email,
        )
        .await?;
        Ok(PortalMailRequestResponse::Accepted(PortalMessageOk::new(
            "If an account has this address, a reset link is on its way to it.",
        )))
    }

    /// Choose a new password with a reset link
    ///
    /// The link's token works once and for an hour (401 otherwise). Every session of the
    /// account ends.
    #[oai(path = "/api/portal/password-reset/confirm", method = "post")]
    async fn password_reset_confirm(
        &self,
        req: &Request,
        body: Json<PortalResetConfirmRequest>,
    ) -> KvResult<PortalResetConfirmResponse> {
        let body = body.0;
        portal::reset_password(&self.state, ClientIp::of(req), &body.token, body.password).await?;
        Ok(PortalResetConfirmResponse::Ok(PortalMessageOk::new(
            "Your password is changed. Sign in with it.",
        )))
    }

    /// Set the account's e-mail address
    ///
    /// Where password-reset links go; null removes it.
    #[oai(path = "/api/portal/email", method = "put")]
    async fn set_email(
        &self,
        auth: PortalAuth,
        body: Json<PortalAccountEmailRequest>,
    ) -> KvResult<PortalAccountEmailResponse> {
        let user = portal::set_email(&self.state, &auth.ctx, body.0.email.as_deref()).await?;
        Ok(PortalAccountEmailResponse::Ok(Json(
            recovery::PortalAccountOk {
                success: true,
                data: account::PortalUserView::new(&user),
            },
        )))
    }
}
