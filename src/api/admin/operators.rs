//! `/api/auth/*` (setup, login, logout, me) and `/api/users` (operator administration).

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::{
    Admin, AdminAuth, Principal, TOKEN_COOKIE, TOKEN_TTL_SECS, admin_from_request, issue_token,
};
use crate::api::ClientIp;
use crate::api::shared::csrf::is_https;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::v1::schemas::{Pagination, page_and_limit};
use crate::domain::api_keys::Scope;
use crate::domain::audit::{self, AuditEvent};
use crate::domain::operators::{self, Operator, Role};
use crate::domain::{ms_to_datetime, now_ms, tenants};
use crate::error::Error;
use crate::state::AppState;

const SELF_REGISTRATION_DISABLED: &str =
    "Self-registration is disabled: ask an ADMIN to create your account";

pub struct OperatorsApi {
    pub state: AppState,
}

crate::field_names!(
    EmailField = "email",
    PasswordField = "password",
    RoleField = "role",
    TenantIdField = "tenantId",
    DisabledField = "disabled",
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
    #[oai(deserialize_with = "named::<RoleField, _>")]
    pub role: Option<Role>,
    /// Put a USER into an existing workspace instead of a new one (ADMINs only).
    #[oai(
        deserialize_with = "named::<TenantIdField, _>",
        validator(max_length = 64)
    )]
    pub tenant_id: Option<String>,
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
    #[oai(deserialize_with = "named::<DisabledField, _>")]
    pub disabled: Option<bool>,
    /// Reset the password (8-128 characters).
    #[oai(
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
    pub user: Option<OperatorView>,
    /// The API key in use (null for an operator session).
    pub api_key: Option<ApiKeyIdentity>,
    pub tenant_id: String,
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

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Logged in: the token is in the body and in the HttpOnly cookie.
    #[oai(status = 200)]
    Ok(Json<LoginOk>, #[oai(header = "Set-Cookie")] String),
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

#[OpenApi(tag = "AdminTags::Auth")]
impl OperatorsApi {
    /// Create an operator
    ///
    /// While no operator exists this creates the first one, as ADMIN, without authentication
    /// (the setup step). Afterwards only an ADMIN operator (or a FULL_ADMIN API key, for USERs
    /// of its own tenant) may create operators, authenticated like any admin call;
    /// self-registration is refused with 403. A new USER gets a workspace of its own unless
    /// `tenantId` names an existing one.
    #[oai(path = "/api/auth/register", method = "post")]
    async fn register(
        &self,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> KvResult<RegisterResponse> {
        let body = body.0;
        let caller = admin_from_request(req)?;
        match &caller {
            Some(c) => c.require_operator_admin()?,
            // Rights before input: after setup a stranger learns nothing but "no".
            None if self.state.db.read(operators::repo::count)? > 0 => {
                return Err(Error::Forbidden(SELF_REGISTRATION_DISABLED.into()).into());
            }
            None => {}
        }
        let email = body.email.trim().to_ascii_lowercase();
        operators::validate_email(&email)?;
        operators::validate_password(&body.password)?;
        let role = body.role.unwrap_or(Role::User);
        if let Some(c) = &caller
            && !c.is_admin_operator()
            && (role == Role::Admin || body.tenant_id.as_deref().is_some_and(|t| t != c.tenant_id))
        {
            return Err(Error::Forbidden(
                "An API key may only create USER operators in its own tenant".into(),
            )
            .into());
        }
        let hash = self.hash(&body.password).await?;
        let ip = ClientIp::of(req).map(|i| i.to_string());
        let operator = self
            .state
            .db
            .write(move |c| {
                let first = operators::repo::count(c)? == 0;
                let actor = match (&caller, first) {
                    (_, true) => "setup".to_owned(),
                    (Some(a), false) => a.actor(),
                    (None, false) => {
                        return Err(Error::Forbidden(SELF_REGISTRATION_DISABLED.into()));
                    }
                };
                if operators::repo::find_by_email(c, &email)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "An operator with email {email} exists"
                    )));
                }
                let (role, tenant_id) = if first {
                    let default = tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
                        .ok_or(Error::NotFound("tenant"))?;
                    (Role::Admin, default.id)
                } else {
                    let tenant_id = match (&body.tenant_id, role, &caller) {
                        (Some(t), _, _) => {
                            tenants::repo::find(c, t)?
                                .ok_or(Error::NotFound("tenant"))?
                                .id
                        }
                        (None, Role::User, Some(a)) if !a.is_admin_operator() => {
                            a.tenant_id.clone()
                        }
                        (None, Role::User, _) => {
                            let slug = format!("ws-{}", crate::crypto::random_secret(10));
                            tenants::repo::create(c, &slug, &email)?.id
                        }
                        (None, Role::Admin, _) => {
                            tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
                                .ok_or(Error::NotFound("tenant"))?
                                .id
                        }
                    };
                    (role, tenant_id)
                };
                let now = now_ms();
                let operator = Operator {
                    id: crate::crypto::new_id("op"),
                    tenant_id,
                    email,
                    password_hash: hash,
                    role,
                    disabled_at: None,
                    sessions_valid_after: 0,
                    created_at: now,
                    updated_at: now,
                };
                operators::repo::insert(c, &operator)?;
                audit::repo::insert(
                    c,
                    &AuditEvent::new(
                        &operator.tenant_id,
                        &actor,
                        crate::domain::audit::AuditAction::OperatorCreate,
                    )
                    .ip(ip.as_deref())
                    .detail(json!({"operatorId": operator.id, "role": operator.role.as_str()})),
                )?;
                Ok(operator)
            })
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
    /// Answers a session token in the body and in an HttpOnly, SameSite=Strict cookie.
    /// Limited per IP and per account; an unknown email and a wrong password get the same
    /// answer in about the same time.
    #[oai(path = "/api/auth/login", method = "post")]
    async fn login(&self, req: &Request, body: Json<LoginRequest>) -> KvResult<LoginResponse> {
        let email = body.0.email.trim().to_ascii_lowercase();
        let ip = ClientIp::of(req);
        if let Some(ip) = ip {
            self.state.limits.login_per_ip.check(&ip)?;
        }
        self.state.limits.login_per_account.check(&email)?;
        let found = self
            .state
            .db
            .read(|c| operators::repo::find_by_email(c, &email))?;
        let hash = found
            .as_ref()
            .map(|o| o.password_hash.clone())
            .unwrap_or_else(|| operators::decoy_hash().to_owned());
        let password = body.0.password;
        let _permit = self
            .state
            .password_hashing
            .acquire()
            .await
            .map_err(|_| Error::Storage("password hashing unavailable".into()))?;
        let matches =
            tokio::task::spawn_blocking(move || operators::verify_password(&password, &hash))
                .await
                .map_err(|e| Error::Storage(e.to_string()))?;
        let ip_text = ip.map(|i| i.to_string());
        let operator = match found {
            Some(o) if matches && o.disabled_at.is_none() => o,
            other => {
                if let Some(o) = other {
                    self.state.db.writer().record(
                        AuditEvent::new(
                            &o.tenant_id,
                            &format!("operator:{}", o.id),
                            crate::domain::audit::AuditAction::OperatorLoginFailed,
                        )
                        .ip(ip_text.as_deref()),
                    );
                }
                return Err(Error::Unauthorized("Invalid email or password".into()).into());
            }
        };
        let (token, _) = issue_token(&self.state, &operator)?;
        self.state.db.writer().record(
            AuditEvent::new(
                &operator.tenant_id,
                &format!("operator:{}", operator.id),
                crate::domain::audit::AuditAction::OperatorLogin,
            )
            .ip(ip_text.as_deref()),
        );
        let cookie = format!(
            "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={TOKEN_TTL_SECS}{}",
            if is_https(req, &self.state) {
                "; Secure"
            } else {
                ""
            }
        );
        Ok(LoginResponse::Ok(
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

    /// Log out
    ///
    /// The session token stops working at once; the cookie is cleared.
    #[oai(path = "/api/auth/logout", method = "post")]
    async fn logout(&self, req: &Request, auth: AdminAuth) -> KvResult<LogoutResponse> {
        let admin = auth.admin();
        if let Some(claims) = admin.session.clone() {
            let caller = admin.caller();
            let tenant = admin.tenant_id.clone();
            self.state
                .db
                .write(move |c| {
                    operators::repo::revoke_token(c, &claims.jti, claims.exp)?;
                    audit::repo::insert(
                        c,
                        &caller.event(&tenant, crate::domain::audit::AuditAction::OperatorLogout),
                    )
                })
                .await?;
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
        let operators = self.state.db.read(operators::repo::count)?;
        Ok(SetupResponse::Ok(Json(SetupOk {
            success: true,
            data: SetupState {
                setup_required: operators == 0,
            },
        })))
    }

    /// The current operator (or API key)
    #[oai(path = "/api/auth/me", method = "get")]
    async fn me(&self, auth: AdminAuth) -> KvResult<MeResponse> {
        let admin = auth.admin();
        let (user, api_key) = match &admin.principal {
            Principal::Operator(o) => (Some(OperatorView::new(o)), None),
            Principal::ApiKey { id } => (
                None,
                Some(ApiKeyIdentity {
                    id: id.clone(),
                    scope: Scope::FullAdmin,
                }),
            ),
        };
        Ok(MeResponse::Ok(Json(MeOk {
            success: true,
            data: MeData {
                user,
                api_key,
                tenant_id: admin.tenant_id,
            },
        })))
    }

    /// List operators
    ///
    /// ADMIN operators see all; a FULL_ADMIN API key sees its tenant's.
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
        admin.require_operator_admin()?;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (found, total) = self
            .state
            .db
            .read(|c| operators::repo::list(c, admin.tenant_scope(), limit, offset))?;
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
        admin.require_operator_admin()?;
        let body = body.0;
        if body.disabled.is_none() && body.password.is_none() {
            return Err(
                Error::Invalid("nothing to change: send disabled and/or password".into()).into(),
            );
        }
        let hash = match &body.password {
            Some(p) => {
                operators::validate_password(p)?;
                Some(self.hash(p).await?)
            }
            None => None,
        };
        let id = id.0;
        let operator = self
            .state
            .db
            .write(move |c| {
                let target = reachable_operator(c, &admin, &id)?;
                if body.disabled == Some(true) && is_self(&admin, &target) {
                    return Err(Error::Invalid("you cannot disable yourself".into()));
                }
                let now = now_ms();
                if let Some(disabled) = body.disabled {
                    operators::repo::set_disabled(c, &target.id, disabled.then_some(now), now)?;
                }
                if let Some(hash) = &hash {
                    operators::repo::set_password_hash(c, &target.id, hash, now)?;
                }
                audit::repo::insert(
                    c,
                    &admin
                        .event(
                            &target.tenant_id,
                            crate::domain::audit::AuditAction::OperatorUpdate,
                        )
                        .detail(json!({
                            "operatorId": target.id,
                            "disabled": body.disabled,
                            "passwordReset": hash.is_some(),
                        })),
                )?;
                operators::repo::find(c, &target.id)?.ok_or(Error::NotFound("operator"))
            })
            .await?;
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
        admin.require_operator_admin()?;
        let id = id.0;
        self.state
            .db
            .write(move |c| {
                let target = reachable_operator(c, &admin, &id)?;
                if is_self(&admin, &target) {
                    return Err(Error::Invalid("you cannot delete yourself".into()));
                }
                operators::repo::delete(c, &target.id)?;
                audit::repo::insert(
                    c,
                    &admin
                        .event(
                            &target.tenant_id,
                            crate::domain::audit::AuditAction::OperatorDelete,
                        )
                        .detail(json!({"operatorId": target.id, "email": target.email})),
                )
            })
            .await?;
        Ok(DeletedResponse::Ok(Json(KvMessageOk {
            success: true,
            data: KvMessage {
                message: "Operator deleted".into(),
            },
        })))
    }
}

impl OperatorsApi {
    async fn hash(&self, password: &str) -> Result<String, Error> {
        let _permit = self
            .state
            .password_hashing
            .acquire()
            .await
            .map_err(|_| Error::Storage("password hashing unavailable".into()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || operators::hash_password(&password))
            .await
            .map_err(|e| Error::Storage(e.to_string()))?
    }
}

fn reachable_operator(
    c: &rusqlite::Connection,
    admin: &Admin,
    id: &str,
) -> Result<Operator, Error> {
    let target = operators::repo::find(c, id)?
        .filter(|o| admin.reaches(&o.tenant_id))
        .ok_or(Error::NotFound("operator"))?;
    // A FULL_ADMIN API key acts within its tenant, but an ADMIN operator reaches every
    // tenant: a key that could reset an ADMIN's password (or disable or delete one) could
    // take over every tenant. Only ADMIN operators administer ADMINs.
    if target.role == Role::Admin && !admin.is_admin_operator() {
        return Err(Error::Forbidden(
            "Only ADMIN operators may administer ADMIN operators".into(),
        ));
    }
    Ok(target)
}

fn is_self(admin: &Admin, target: &Operator) -> bool {
    matches!(&admin.principal, Principal::Operator(o) if o.id == target.id)
}
