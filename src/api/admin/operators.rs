//! `/api/auth/*` (setup, login, logout, me) and `/api/users` (operator administration).

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::{
    AdminAuth, CHALLENGE_TTL_SECS, EnrolmentAuth, Principal, TOKEN_COOKIE, TOKEN_TTL_SECS,
    admin_from_request, issue_challenge, issue_token,
};
use crate::api::ClientIp;
use crate::api::shared::csrf::is_https;
use crate::api::shared::device_cookie;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::domain::api_keys::Scope;
use crate::domain::operators::{Operator, Role};
use crate::domain::{OperatorId, TenantId, ms_to_datetime};
use crate::service::operators::{self, LoginOutcome, LoginStep, NewOperator, OperatorChange};
use crate::state::AppState;

/// Where the admin device cookie is sent back (and nowhere else).
const LOGIN_PATH: &str = "/api/auth/login";

pub struct OperatorsApi {
    pub state: AppState,
}

crate::field_names!(
    EmailField = "email",
    PasswordField = "password",
    RoleField = "role",
    TenantIdField = "tenantId",
    DisabledField = "disabled",
    SetupTokenField = "setupToken",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RegisterRequest {
    #[oai(
        deserialize_with = "named::<EmailField, _>",
        validator(max_length = 255)
    )]
    pub email: String,
    /// 8-128 characters.
    #[oai(
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 1024)
    )]
    pub password: String,
    /// ADMIN or USER (default USER; the first operator is always ADMIN).
    #[oai(nullable, deserialize_with = "named::<RoleField, _>")]
    pub role: Option<Role>,
    /// Put a USER into an existing workspace instead of a new one (ADMINs only).
    #[oai(
        nullable,
        deserialize_with = "named::<TenantIdField, _>",
        validator(max_length = 64)
    )]
    pub tenant_id: Option<String>,
    /// The one-time setup token, required to create the first operator (no session yet):
    /// the `token` of the setup URL the server prints at its first start, or a new one from
    /// `keyward admin setup-url`. Single-use, valid 24 hours. Ignored once an operator
    /// exists (an ADMIN's session is needed then).
    #[oai(
        nullable,
        deserialize_with = "named::<SetupTokenField, _>",
        validator(max_length = 128)
    )]
    pub setup_token: Option<String>,
}

#[derive(Object, Debug)]
pub struct LoginRequest {
    #[oai(
        deserialize_with = "named::<EmailField, _>",
        validator(max_length = 255)
    )]
    pub email: String,
    #[oai(
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 1024)
    )]
    pub password: String,
}

#[derive(Object, Debug)]
pub struct UpdateOperatorRequest {
    /// Disable (true) or re-enable (false); a disabled operator's tokens stop working at once.
    #[oai(nullable, deserialize_with = "named::<DisabledField, _>")]
    pub disabled: Option<bool>,
    /// Reset the password (8-128 characters).
    #[oai(
        nullable,
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 1024)
    )]
    pub password: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename = "User", rename_all = "camelCase")]
pub struct OperatorView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub tenant_id: String,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
}

impl OperatorView {
    pub fn new(o: &Operator) -> Self {
        Self {
            id: o.id.clone(),
            email: o.email.clone(),
            role: o.role,
            tenant_id: o.tenant_id.clone(),
            disabled: o.disabled_at.is_some(),
            created_at: ms_to_datetime(o.created_at),
        }
    }
}

#[derive(Object, Debug)]
pub struct UserData {
    pub user: OperatorView,
}

#[derive(Object, Debug)]
pub struct UserOk {
    pub success: bool,
    pub data: UserData,
}

#[derive(Object, Debug)]
pub struct LoginData {
    pub user: OperatorView,
    /// The session token, also set as the HttpOnly `keyward_token` cookie; send it as
    /// `Authorization: Bearer <token>` from scripts.
    pub token: String,
}

#[derive(Object, Debug)]
pub struct LoginOk {
    pub success: bool,
    pub data: LoginData,
}

#[derive(Object, Debug)]
pub struct ApiKeyIdentity {
    pub id: String,
    pub scope: Scope,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MeData {
    /// The logged-in operator (null for an API key).
    #[oai(nullable)]
    pub user: Option<OperatorView>,
    /// The API key in use (null for an operator session).
    #[oai(nullable)]
    pub api_key: Option<ApiKeyIdentity>,
    pub tenant_id: String,
    /// The workspace requires two-factor login and this operator has not turned it on: until
    /// it does, every other admin call answers 403 `TWO_FACTOR_ENROLMENT_REQUIRED`.
    pub two_factor_enrolment_required: bool,
}

#[derive(Object, Debug)]
pub struct MeOk {
    pub success: bool,
    pub data: MeData,
}

#[derive(Object, Debug)]
pub struct KvMessage {
    pub message: String,
}

#[derive(Object, Debug)]
pub struct KvMessageOk {
    pub success: bool,
    pub data: KvMessage,
}

#[derive(Object, Debug)]
pub struct UsersData {
    pub users: Vec<OperatorView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct UsersOk {
    pub success: bool,
    pub data: UsersData,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The operator was created (the first one is the ADMIN of the setup step).
    #[oai(status = 201)]
    Created(Json<UserOk>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SecondFactorData {
    /// Always true: send `challenge` with a code to `POST /api/auth/login/2fa`.
    pub two_factor_required: bool,
    /// Signed, valid for `expiresIn` seconds; not a session.
    pub challenge: String,
    pub expires_in: i64,
}

#[derive(Object, Debug)]
pub struct SecondFactorOk {
    pub success: bool,
    pub data: SecondFactorData,
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Logged in: the token is in the body and in the HttpOnly cookie.
    #[oai(status = 200)]
    Ok(Json<LoginOk>, #[oai(header = "Set-Cookie")] String),
    /// The password is right and the operator has two-factor login on: no session yet; the
    /// challenge and a code complete the sign-in at `POST /api/auth/login/2fa`.
    #[oai(status = 202)]
    SecondFactor(Json<SecondFactorOk>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SetupState {
    pub setup_required: bool,
}

#[derive(Object, Debug)]
pub struct SetupOk {
    pub success: bool,
    pub data: SetupState,
}

#[derive(ApiResponse)]
pub enum SetupResponse {
    /// Whether the first operator still has to be created.
    #[oai(status = 200)]
    Ok(Json<SetupOk>),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The token is unusable from now on and the cookie is cleared.
    #[oai(status = 200)]
    Ok(Json<KvMessageOk>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The caller.
    #[oai(status = 200)]
    Ok(Json<MeOk>),
}

#[derive(ApiResponse)]
pub enum UsersResponse {
    /// Operators within the caller's reach.
    #[oai(status = 200)]
    Ok(Json<UsersOk>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    /// The operator as it is now.
    #[oai(status = 200)]
    Ok(Json<UserOk>),
}

#[derive(ApiResponse)]
pub enum DeletedResponse {
    /// Deleted.
    #[oai(status = 200)]
    Ok(Json<KvMessageOk>),
}

/// A completed sign-in: the session token in the body and its cookie, and the device cookie.
pub fn signed_in(
    req: &Request,
    state: &AppState,
    outcome: LoginOutcome,
) -> KvResult<(Json<LoginOk>, String)> {
    let operator = outcome.operator;
    device_cookie::set(req, state, LOGIN_PATH, &outcome.device);
    let (token, _) = issue_token(state, &operator)?;
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={TOKEN_TTL_SECS}{}",
        if is_https(req, state) { "; Secure" } else { "" }
    );
    Ok((
        Json(LoginOk {
            success: true,
            data: LoginData {
                user: OperatorView::new(&operator),
                token,
            },
        }),
        cookie,
    ))
}

#[OpenApi(tag = "AdminTags::Auth")]
impl OperatorsApi {
    /// Create an operator
    ///
    /// While no operator exists this creates the first one, as ADMIN, without a session (the
    /// setup step), but only with the one-time `setupToken` the server printed at its start
    /// (or `keyward admin setup-url` printed): without it 401 `SETUP_TOKEN_REQUIRED`, with a
    /// wrong, used or replaced one 401 `SETUP_TOKEN_INVALID`, with one older than 24 hours
    /// 401 `SETUP_TOKEN_EXPIRED`. The token is consumed by the setup. Afterwards only an ADMIN
    /// operator may create operators, authenticated like any admin call (no token);
    /// API keys never administer operators, and self-registration is refused with 403. A new
    /// USER gets a workspace of its own unless `tenantId` names an existing one.
    #[oai(path = "/api/auth/register", method = "post")]
    async fn register(
        &self,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> KvResult<RegisterResponse> {
        let body = body.0;
        let caller = admin_from_request(req)?;
        let operator = operators::register(
            &self.state,
            caller.as_ref().map(|a| &a.ctx),
            ClientIp::of(req),
            NewOperator {
                email: body.email,
                password: body.password,
                role: body.role,
                tenant_id: body.tenant_id.map(TenantId::from),
                setup_token: body.setup_token,
            },
        )
        .await?;
        Ok(RegisterResponse::Created(Json(UserOk {
            success: true,
            data: UserData {
                user: OperatorView::new(&operator),
            },
        })))
    }

    /// Log in
    ///
    /// Answers a session token in the body and in an HttpOnly, SameSite=Strict cookie, and
    /// sets a device cookie (`kw_device_…`, HttpOnly, SameSite=Strict, Path=/api/auth/login)
    /// that marks this client as one that signed in to this account before. Limited per IP
    /// (every attempt) and per account (failed attempts only): once an account's failure
    /// budget is used up, 429 with `Retry-After` for every client except those presenting a
    /// device cookie of the account, which have a failure budget of their own. An unknown
    /// email and a wrong password get the same answer in about the same time.
    ///
    /// With two-factor login on, a right password answers 202 with a challenge instead of a
    /// session (and sets no cookie); `POST /api/auth/login/2fa` completes the sign-in.
    #[oai(path = "/api/auth/login", method = "post")]
    async fn login(&self, req: &Request, body: Json<LoginRequest>) -> KvResult<LoginResponse> {
        let step = operators::login(
            &self.state,
            ClientIp::of(req),
            &body.0.email,
            &body.0.password,
            &device_cookie::presented(req),
        )
        .await?;
        match step {
            LoginStep::SignedIn(outcome) => {
                let (body, cookie) = signed_in(req, &self.state, outcome)?;
                Ok(LoginResponse::Ok(body, cookie))
            }
            LoginStep::SecondFactor { operator, at_ms } => {
                Ok(LoginResponse::SecondFactor(Json(SecondFactorOk {
                    success: true,
                    data: SecondFactorData {
                        two_factor_required: true,
                        challenge: issue_challenge(&self.state, &operator, at_ms)?,
                        expires_in: CHALLENGE_TTL_SECS,
                    },
                })))
            }
        }
    }

    /// Log out
    ///
    /// The session token stops working at once; the cookie is cleared.
    #[oai(path = "/api/auth/logout", method = "post")]
    async fn logout(&self, req: &Request, auth: EnrolmentAuth) -> KvResult<LogoutResponse> {
        let admin = auth.admin();
        if let Some(claims) = &admin.session {
            operators::logout(&self.state, &admin.ctx, &claims.session_token()).await?;
        }
        let cookie = format!(
            "{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if is_https(req, &self.state) {
                "; Secure"
            } else {
                ""
            }
        );
        Ok(LogoutResponse::Ok(
            Json(KvMessageOk {
                success: true,
                data: KvMessage {
                    message: "Logged out".into(),
                },
            }),
            cookie,
        ))
    }

    /// Whether setup is still open
    ///
    /// `setupRequired` is true while no operator exists: the admin panel then shows its
    /// setup screen, and `POST /api/auth/register` creates the first ADMIN.
    #[oai(path = "/api/auth/setup", method = "get")]
    async fn setup(&self) -> KvResult<SetupResponse> {
        Ok(SetupResponse::Ok(Json(SetupOk {
            success: true,
            data: SetupState {
                setup_required: operators::setup_required(&self.state)?,
            },
        })))
    }

    /// The current operator (or API key)
    ///
    /// Also answers for a session that may only enrol in two-factor login
    /// (`twoFactorEnrolmentRequired`).
    #[oai(path = "/api/auth/me", method = "get")]
    async fn me(&self, auth: EnrolmentAuth) -> KvResult<MeResponse> {
        let admin = auth.admin();
        let (user, api_key) = match &admin.principal {
            Principal::Operator(o) => (Some(OperatorView::new(o)), None),
            Principal::ApiKey { id } => (
                None,
                Some(ApiKeyIdentity {
                    id: id.clone(),
                    scope: admin.ctx.api_key_scope().unwrap_or(Scope::FullAdmin),
                }),
            ),
        };
        Ok(MeResponse::Ok(Json(MeOk {
            success: true,
            data: MeData {
                user,
                api_key,
                tenant_id: admin.tenant_id,
                two_factor_enrolment_required: admin.must_enrol,
            },
        })))
    }

    /// List operators
    ///
    /// ADMIN operators only (they see every tenant's); API keys never list operators.
    #[oai(path = "/api/users", method = "get", tag = "AdminTags::Users")]
    async fn list_users(
        &self,
        auth: AdminAuth,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<UsersResponse> {
        let admin = auth.admin();
        // Rights before input: a caller that may not list learns nothing from its query.
        admin.ctx.require_operator_admin()?;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = operators::list(&self.state, &admin.ctx, limit, offset)?;
        Ok(UsersResponse::Ok(Json(UsersOk {
            success: true,
            data: UsersData {
                users: found.iter().map(OperatorView::new).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Disable, re-enable or reset the password of an operator
    #[oai(path = "/api/users/:id", method = "patch", tag = "AdminTags::Users")]
    async fn update_user(
        &self,
        auth: AdminAuth,
        /// Operator id.
        id: Path<String>,
        body: Json<UpdateOperatorRequest>,
    ) -> KvResult<UserResponse> {
        let admin = auth.admin();
        let change = OperatorChange {
            disabled: body.0.disabled,
            password: body.0.password,
        };
        let operator =
            operators::update(&self.state, &admin.ctx, &OperatorId::from(id.0), change).await?;
        Ok(UserResponse::Ok(Json(UserOk {
            success: true,
            data: UserData {
                user: OperatorView::new(&operator),
            },
        })))
    }

    /// Delete an operator
    #[oai(path = "/api/users/:id", method = "delete", tag = "AdminTags::Users")]
    async fn delete_user(&self, auth: AdminAuth, id: Path<String>) -> KvResult<DeletedResponse> {
        let admin = auth.admin();
        operators::delete(&self.state, &admin.ctx, &OperatorId::from(id.0)).await?;
        Ok(DeletedResponse::Ok(Json(KvMessageOk {
            success: true,
            data: KvMessage {
                message: "Operator deleted".into(),
            },
        })))
    }
}
