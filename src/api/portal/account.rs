//! Accounts: register, sign in, sign out, and the session cookie.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::api::shared::csrf::is_https;
use crate::api::shared::fields::named;
use crate::domain::portal_users::{self, PortalUser, TOKEN_COOKIE};
use crate::service::portal::PortalSession;
use crate::state::AppState;

crate::field_names!(
    UsernameField = "username",
    PasswordField = "password",
    ProjectIdField = "projectId",
    EmailField = "email",
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
    /// Registration only (ignored by sign in): where password-reset links go.
    #[oai(
        nullable,
        deserialize_with = "named::<EmailField, _>",
        validator(max_length = 254)
    )]
    pub email: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename = "PortalUser", rename_all = "camelCase")]
pub struct PortalUserView {
    pub id: String,
    pub username: String,
    pub project_id: String,
    /// The linked key's id, or null.
    #[oai(nullable)]
    pub key_id: Option<String>,
    /// Where password-reset links go, if set.
    #[oai(nullable)]
    pub email: Option<String>,
}

impl PortalUserView {
    pub fn new(u: &PortalUser) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            project_id: u.product_id.clone(),
            key_id: u.license_id.clone(),
            email: u.email.clone(),
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

impl PortalSessionOk {
    pub fn new(session: PortalSession) -> Json<Self> {
        Json(Self {
            success: true,
            data: PortalSessionData {
                user: PortalUserView::new(&session.user),
                token: session.token,
            },
        })
    }
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
pub enum PortalLogoutResponse {
    /// The session ended and the cookie is cleared.
    #[oai(status = 200)]
    Ok(Json<PortalLogoutOk>, #[oai(header = "Set-Cookie")] String),
}

fn secure(req: &Request, state: &AppState) -> &'static str {
    if is_https(req, state) { "; Secure" } else { "" }
}

pub fn session_cookie(req: &Request, state: &AppState, token: &str) -> String {
    let max_age = portal_users::SESSION_TTL_MS / 1000;
    let secure = secure(req, state);
    format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

pub fn cleared_cookie(req: &Request, state: &AppState) -> String {
    let secure = secure(req, state);
    format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

impl PortalLogoutOk {
    pub fn signed_out() -> Json<Self> {
        Json(Self {
            success: true,
            data: PortalLogoutData {
                message: "Signed out".into(),
            },
        })
    }
}
