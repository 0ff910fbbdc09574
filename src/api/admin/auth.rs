//! Who may use the admin API: an operator with a session token (Bearer header or the
//! HttpOnly cookie), or a FULL_ADMIN API key acting within its tenant. The [`AdminAuth`]
//! extractor in a handler's signature proves it; [`Admin`] says what the caller may reach.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::{IntoResponse, Request};

use poem::RequestBody;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use serde::{Deserialize, Serialize};

use crate::api::ClientIp;
use crate::api::shared::api_key::authenticate;
pub use crate::api::shared::csrf::refuse_cross_site;
use crate::api::shared::keyvault_error::KvError;
use crate::domain::api_keys::Scope;
use crate::domain::now_ms;
use crate::domain::operators::Operator;
use crate::domain::{OperatorId, TenantId};
use crate::error::Error;
use crate::service::{Ctx, operators, two_factor};
use crate::state::AppState;

/// The session cookie's name.
pub const TOKEN_COOKIE: &str = "keyward_token";
/// Admin sessions last 12 hours.
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Operator id.
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Issue time in milliseconds: compared with the operator's `sessions_valid_after`.
    #[serde(rename = "iatMs", default)]
    pub iat_ms: i64,
}

impl Claims {
    /// What the session check needs from the token.
    pub fn session_token(&self) -> operators::SessionToken {
        operators::SessionToken {
            operator_id: OperatorId::from(self.sub.as_str()),
            token_id: self.jti.clone(),
            issued_at_ms: self.iat_ms,
            expires_at: self.exp,
        }
    }
}

/// Signs a session token for `operator`; returns it with its claims.
pub fn issue_token(state: &AppState, operator: &Operator) -> Result<(String, Claims), Error> {
    let now_ms = now_ms();
    let now = now_ms / 1000;
    let claims = Claims {
        sub: operator.id.clone(),
        jti: crate::crypto::new_id("tok"),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
        iat_ms: now_ms,
    };
    let key = EncodingKey::from_secret(&state.master.derive("admin-session-tokens"));
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| Error::Storage(format!("cannot sign a session token: {e}")))?;
    Ok((token, claims))
}

fn decode_token(state: &AppState, token: &str) -> Result<Claims, Error> {
    let key = DecodingKey::from_secret(&state.master.derive("admin-session-tokens"));
    // The algorithm is pinned: a token claiming any other (or "none") is refused.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|_| Error::Unauthorized("Invalid or expired session token; log in again".into()))
}

/// Who is calling the admin API.
#[derive(Debug, Clone)]
pub enum Principal {
    Operator(Operator),
    ApiKey { id: String },
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub principal: Principal,
    /// The caller's own tenant.
    pub tenant_id: String,
    /// Set when the caller came with a session token (logout revokes it).
    pub session: Option<Claims>,
    /// The client IP the request came from (trusted-proxy aware), for the audit trail.
    pub ip: Option<String>,
    /// What services see: who acts and what it reaches (a product-restricted FULL_ADMIN key
    /// reaches its product only).
    pub ctx: Ctx,
    /// The operator's workspace requires two-factor login and the operator has not turned it
    /// on: the session may only enrol ([`EnrolmentAuth`]); [`AdminAuth`] refuses it.
    pub must_enrol: bool,
}

/// Bearer session token (from `POST /api/auth/login`). Only declares the scheme: the
/// checking is [`AdminAuth`]'s.
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(rename = "BearerToken", ty = "bearer", bearer_format = "JWT")]
pub struct BearerSession(Bearer);

/// Session token in the HttpOnly `keyward_token` cookie (set by login).
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(
    rename = "SessionCookie",
    ty = "api_key",
    key_name = "keyward_token",
    key_in = "cookie"
)]
pub struct CookieSession(ApiKey);

/// A FULL_ADMIN API key, acting within its tenant.
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header"
)]
pub struct AdminApiKey(ApiKey);

/// Any admin credential, checked in a fixed order (Bearer, X-API-Key, cookie) so that the
/// answer names what was wrong with the credential actually sent. Declared in the OpenAPI
/// document as the three schemes above.
pub struct AdminAuth(pub Admin);

impl AdminAuth {
    pub fn admin(self) -> Admin {
        self.0
    }
}

impl<'a> ApiExtractor<'a> for AdminAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <BearerSession as ApiExtractor>::register(registry);
        <CookieSession as ApiExtractor>::register(registry);
        <AdminApiKey as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["BearerToken", "SessionCookie", "ApiKey"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let admin = required_admin(req)?;
        if admin.must_enrol {
            return Err(poem::Error::from_response(
                KvError::two_factor_enrolment_required(ENROL_FIRST).into_response(),
            ));
        }
        Ok(AdminAuth(admin))
    }
}

const ENROL_FIRST: &str = "Your workspace requires two-factor login and yours is not on yet:      this session may only enrol (Account → Security in the panel; POST /api/auth/2fa/enroll,      then POST /api/auth/2fa/confirm with a first code)";

fn required_admin(req: &Request) -> poem::Result<Admin> {
    match admin_from_request(req) {
        Ok(Some(admin)) => Ok(admin),
        Ok(None) => Err(refuse(Error::Unauthorized(
            "Authentication required: log in, or send Authorization: Bearer <token>".into(),
        ))),
        Err(e) => Err(refuse(e)),
    }
}

/// Like [`AdminAuth`], but also admits a session that may only enrol in two-factor login (its
/// workspace requires it): for the enrolment itself, `me` and logout.
pub struct EnrolmentAuth(pub Admin);

impl EnrolmentAuth {
    pub fn admin(self) -> Admin {
        self.0
    }
}

impl<'a> ApiExtractor<'a> for EnrolmentAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <AdminAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <AdminAuth as ApiExtractor>::security_schemes()
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        required_admin(req).map(EnrolmentAuth)
    }
}

/// The admin caller of a request, if it brings a credential; an error if the credential is
/// wrong. Used directly by operations where authentication is optional (register).
pub fn admin_from_request(req: &Request) -> Result<Option<Admin>, Error> {
    let admin = credential_admin(req)?;
    let client_ip = ClientIp::of(req);
    let ip = client_ip.map(|i| i.to_string());
    Ok(admin.map(|a| Admin {
        ip,
        ctx: Ctx {
            ip: client_ip,
            ..a.ctx
        },
        ..a
    }))
}

fn credential_admin(req: &Request) -> Result<Option<Admin>, Error> {
    let state = state_of(req)?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(auth) = header("authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .ok_or_else(|| Error::Unauthorized("Authorization must be `Bearer <token>`".into()))?;
        return session_admin(state, token.trim()).map(Some);
    }
    if let Some(key) = header("x-api-key") {
        let ctx = authenticate(req, key, Scope::FullAdmin)?;
        let crate::service::Actor::ApiKey { id, .. } = &ctx.actor else {
            return Err(Error::Unauthorized("Invalid or revoked API key".into()));
        };
        return Ok(Some(Admin {
            principal: Principal::ApiKey { id: id.to_string() },
            tenant_id: ctx.tenant.to_string(),
            session: None,
            ip: None,
            ctx,
            must_enrol: false,
        }));
    }
    let cookie = req
        .cookie()
        .get(TOKEN_COOKIE)
        .map(|c| c.value_str().to_owned());
    match cookie {
        Some(token) => {
            refuse_cross_site(req)?;
            session_admin(state, &token).map(Some)
        }
        None => Ok(None),
    }
}

fn refuse(err: Error) -> poem::Error {
    poem::Error::from_response(KvError::from_error(&err).into_response())
}

fn state_of(req: &Request) -> Result<&AppState, Error> {
    req.data::<AppState>()
        .ok_or_else(|| Error::Storage("application state missing".into()))
}

/// The operator behind a session token, if the token is genuine, unexpired, not logged out,
/// and the operator still exists and is not disabled (so disabling takes effect at once).
pub fn session_admin(state: &AppState, token: &str) -> Result<Admin, Error> {
    let claims = decode_token(state, token)?;
    let operator = operators::session(state, &claims.session_token())?;
    let ctx = Ctx::operator(
        OperatorId::from(operator.id.as_str()),
        operator.role,
        TenantId::from(operator.tenant_id.as_str()),
        None,
    );
    Ok(Admin {
        must_enrol: two_factor::must_enrol(state, &operator)?,
        tenant_id: operator.tenant_id.clone(),
        principal: Principal::Operator(operator),
        session: Some(claims),
        // Filled in by `admin_from_request`, which has the request.
        ip: None,
        ctx,
    })
}

/// The sign-in challenge between the password and the code lasts five minutes.
pub const CHALLENGE_TTL_SECS: i64 = 300;

#[derive(Debug, Serialize, Deserialize)]
struct ChallengeClaims {
    sub: String,
    /// Says what the token is for: a challenge is never a session (its key differs too).
    purpose: String,
    iat: i64,
    exp: i64,
    #[serde(rename = "iatMs")]
    iat_ms: i64,
}

const CHALLENGE_PURPOSE: &str = "second-factor";

/// Signs the challenge a password step answers when the operator has two-factor login on.
pub fn issue_challenge(state: &AppState, operator: &Operator, at_ms: i64) -> Result<String, Error> {
    let claims = ChallengeClaims {
        sub: operator.id.clone(),
        purpose: CHALLENGE_PURPOSE.into(),
        iat: at_ms / 1000,
        exp: at_ms / 1000 + CHALLENGE_TTL_SECS,
        iat_ms: at_ms,
    };
    let key = EncodingKey::from_secret(&state.master.derive("admin-sign-in-challenges"));
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| Error::Storage(format!("cannot sign a sign-in challenge: {e}")))
}

/// What a genuine, unexpired challenge vouches for.
pub fn decode_challenge(state: &AppState, token: &str) -> Result<two_factor::Challenge, Error> {
    let key = DecodingKey::from_secret(&state.master.derive("admin-sign-in-challenges"));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let invalid = || {
        Error::Unauthorized(
            "The sign-in challenge is invalid or has expired: sign in with your password again"
                .into(),
        )
    };
    let claims = jsonwebtoken::decode::<ChallengeClaims>(token, &key, &validation)
        .map_err(|_| invalid())?
        .claims;
    if claims.purpose != CHALLENGE_PURPOSE {
        return Err(invalid());
    }
    Ok(two_factor::Challenge {
        operator_id: claims.sub,
        issued_at_ms: claims.iat_ms,
    })
}
