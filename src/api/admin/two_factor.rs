//! `/api/auth/login/2fa`, `/api/auth/2fa/*` (an operator's own two-factor login) and
//! `/api/workspace/2fa` (the workspace policy that requires it).

use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::AdminTags;
use super::auth::{AdminAuth, EnrolmentAuth, decode_challenge};
use super::operators::{KvMessage, KvMessageOk, LoginOk, signed_in};
use crate::api::ClientIp;
use crate::api::shared::device_cookie;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::TenantId;
use crate::domain::two_factor::Factor;
use crate::error::Error;
use crate::service::two_factor::{self, Proof, WorkspacePolicy};
use crate::state::AppState;

pub struct TwoFactorApi {
    pub state: AppState,
}

crate::field_names!(
    ChallengeField = "challenge",
    CodeField = "code",
    RecoveryCodeField = "recoveryCode",
    PasswordField = "password",
    RequiredField = "required",
    TenantIdField = "tenantId",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SecondFactorRequest {
    /// The `challenge` the password step answered (valid five minutes).
    #[oai(
        deserialize_with = "named::<ChallengeField, _>",
        validator(max_length = 2048)
    )]
    pub challenge: String,
    /// The 6-digit code of the authenticator app (each code works once). Send this or
    /// `recoveryCode`.
    #[oai(
        nullable,
        deserialize_with = "named::<CodeField, _>",
        validator(max_length = 32)
    )]
    pub code: Option<String>,
    /// One of the recovery codes (each works once).
    #[oai(
        nullable,
        deserialize_with = "named::<RecoveryCodeField, _>",
        validator(max_length = 64)
    )]
    pub recovery_code: Option<String>,
}

#[derive(Object, Debug)]
pub struct TwoFactorConfirmRequest {
    /// The code the authenticator app shows for the new secret.
    #[oai(deserialize_with = "named::<CodeField, _>", validator(max_length = 32))]
    pub code: String,
}

/// Proof that the operator is at the keyboard: a current code or the password.
#[derive(Object, Debug)]
pub struct TwoFactorProofRequest {
    /// A current 6-digit code (it is spent, as at sign-in).
    #[oai(
        nullable,
        deserialize_with = "named::<CodeField, _>",
        validator(max_length = 32)
    )]
    pub code: Option<String>,
    /// The operator's password.
    #[oai(
        nullable,
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 1024)
    )]
    pub password: Option<String>,
}

impl TwoFactorProofRequest {
    fn proof(self) -> Result<Proof, Error> {
        match (self.code, self.password) {
            (Some(code), None) => Ok(Proof::Code(code)),
            (None, Some(password)) => Ok(Proof::Password(password)),
            _ => Err(Error::Invalid(
                "send either code (a current code of your authenticator app) or password".into(),
            )),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TwoFactorPolicyRequest {
    /// Whether the workspace's operators must sign in with two-factor login.
    #[oai(deserialize_with = "named::<RequiredField, _>")]
    pub required: bool,
    /// The workspace (tenant id); default the caller's own.
    #[oai(
        nullable,
        deserialize_with = "named::<TenantIdField, _>",
        validator(max_length = 64)
    )]
    pub tenant_id: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TwoFactorStatusView {
    pub enabled: bool,
    /// An enrolment was started and waits for its first code.
    pub pending: bool,
    pub recovery_codes_left: u32,
    /// The operator's workspace requires two-factor login.
    pub required_by_workspace: bool,
}

#[derive(Object, Debug)]
pub struct TwoFactorStatusOk {
    pub success: bool,
    pub data: TwoFactorStatusView,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TwoFactorEnrolment {
    /// The secret in base32, to type into an authenticator app (shown this once).
    pub secret: String,
    /// The `otpauth://` URI, what the QR code holds.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

#[derive(Object, Debug)]
pub struct TwoFactorEnrolmentOk {
    pub success: bool,
    pub data: TwoFactorEnrolment,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TwoFactorRecoveryCodes {
    /// Ten codes, each good for one sign-in without the authenticator app. Shown this once:
    /// only their hashes are kept.
    pub recovery_codes: Vec<String>,
}

#[derive(Object, Debug)]
pub struct TwoFactorRecoveryCodesOk {
    pub success: bool,
    pub data: TwoFactorRecoveryCodes,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TwoFactorPolicyView {
    pub tenant_id: String,
    /// Operators of this workspace must sign in with two-factor login; one who has not turned
    /// it on gets a session that may only enrol.
    pub required: bool,
}

impl TwoFactorPolicyView {
    fn new(p: WorkspacePolicy) -> Self {
        Self {
            tenant_id: p.tenant_id,
            required: p.required,
        }
    }
}

#[derive(Object, Debug)]
pub struct TwoFactorPolicyOk {
    pub success: bool,
    pub data: TwoFactorPolicyView,
}

#[derive(ApiResponse)]
pub enum SecondFactorResponse {
    /// Signed in: the token is in the body and in the HttpOnly cookie.
    #[oai(status = 200)]
    Ok(Json<LoginOk>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum StatusResponse {
    /// The caller's two-factor state.
    #[oai(status = 200)]
    Ok(Json<TwoFactorStatusOk>),
}

#[derive(ApiResponse)]
pub enum EnrolResponse {
    /// A new secret; two-factor login is on once a first code confirms it.
    #[oai(status = 200)]
    Ok(Json<TwoFactorEnrolmentOk>),
}

#[derive(ApiResponse)]
pub enum RecoveryCodesResponse {
    /// The recovery codes, shown this once.
    #[oai(status = 200)]
    Ok(Json<TwoFactorRecoveryCodesOk>),
}

#[derive(ApiResponse)]
pub enum DisabledResponse {
    /// Two-factor login is off; the password alone signs in.
    #[oai(status = 200)]
    Ok(Json<KvMessageOk>),
}

#[derive(ApiResponse)]
pub enum TwoFactorPolicyResponse {
    /// The workspace's policy as it is now.
    #[oai(status = 200)]
    Ok(Json<TwoFactorPolicyOk>),
}

#[OpenApi(tag = "AdminTags::Auth")]
impl TwoFactorApi {
    /// Complete a two-factor sign-in
    ///
    /// The `challenge` of the password step (202 from `POST /api/auth/login`) with a current
    /// code, or with a recovery code. Each code and each recovery code works once. Limited like
    /// the password step: a wrong code spends the account's failure budget (429 once it is
    /// used up, except for a client with a device cookie of the account). A wrong, used or
    /// replayed code answers 401, as does an expired challenge.
    #[oai(path = "/api/auth/login/2fa", method = "post")]
    async fn complete_sign_in(
        &self,
        req: &Request,
        body: Json<SecondFactorRequest>,
    ) -> KvResult<SecondFactorResponse> {
        let body = body.0;
        let factor = match (body.code, body.recovery_code) {
            (Some(code), None) => Factor::Code(code),
            (None, Some(code)) => Factor::RecoveryCode(code),
            _ => {
                return Err(Error::Invalid(
                    "send either code (from your authenticator app) or recoveryCode".into(),
                )
                .into());
            }
        };
        let challenge = decode_challenge(&self.state, &body.challenge)?;
        let outcome = two_factor::complete_sign_in(
            &self.state,
            ClientIp::of(req),
            &challenge,
            factor,
            &device_cookie::presented(req),
        )
        .await?;
        let (body, cookie) = signed_in(req, &self.state, outcome)?;
        Ok(SecondFactorResponse::Ok(body, cookie))
    }

    /// Two-factor login: the caller's state
    #[oai(path = "/api/auth/2fa", method = "get")]
    async fn status(&self, auth: EnrolmentAuth) -> KvResult<StatusResponse> {
        let s = two_factor::status(&self.state, &auth.admin().ctx)?;
        Ok(StatusResponse::Ok(Json(TwoFactorStatusOk {
            success: true,
            data: TwoFactorStatusView {
                enabled: s.enabled,
                pending: s.pending,
                recovery_codes_left: s.recovery_codes_left,
                required_by_workspace: s.required_by_workspace,
            },
        })))
    }

    /// Two-factor login: start an enrolment
    ///
    /// Answers a new secret, its `otpauth://` URI and a QR code of it, replacing an enrolment
    /// not yet confirmed. Nothing changes at sign-in until `POST /api/auth/2fa/confirm` sees a
    /// first code. 409 when two-factor login is on already.
    #[oai(path = "/api/auth/2fa/enroll", method = "post")]
    async fn enrol(&self, auth: EnrolmentAuth) -> KvResult<EnrolResponse> {
        let e = two_factor::start_enrolment(&self.state, &auth.admin().ctx).await?;
        Ok(EnrolResponse::Ok(Json(TwoFactorEnrolmentOk {
            success: true,
            data: TwoFactorEnrolment {
                secret: e.secret,
                otpauth_uri: e.uri,
                qr_svg: e.qr_svg,
            },
        })))
    }

    /// Two-factor login: confirm the enrolment
    ///
    /// A first code of the new secret turns two-factor login on and answers ten recovery
    /// codes, shown this once. 400 when the code does not match or no enrolment was started.
    #[oai(path = "/api/auth/2fa/confirm", method = "post")]
    async fn confirm(
        &self,
        auth: EnrolmentAuth,
        body: Json<TwoFactorConfirmRequest>,
    ) -> KvResult<RecoveryCodesResponse> {
        let codes =
            two_factor::confirm_enrolment(&self.state, &auth.admin().ctx, &body.0.code).await?;
        Ok(recovery_codes(codes))
    }

    /// Two-factor login: turn it off
    ///
    /// Needs a current code or the password (a wrong one answers 403 and spends the account's
    /// sign-in failure budget). 409 when it is not on.
    #[oai(path = "/api/auth/2fa/disable", method = "post")]
    async fn disable(
        &self,
        auth: AdminAuth,
        body: Json<TwoFactorProofRequest>,
    ) -> KvResult<DisabledResponse> {
        let proof = body.0.proof()?;
        two_factor::disable(&self.state, &auth.admin().ctx, proof).await?;
        Ok(DisabledResponse::Ok(Json(KvMessageOk {
            success: true,
            data: KvMessage {
                message: "Two-factor login is off".into(),
            },
        })))
    }

    /// Two-factor login: new recovery codes
    ///
    /// Replaces every recovery code (the old ones stop working); needs a current code or the
    /// password, as turning it off does.
    #[oai(path = "/api/auth/2fa/recovery-codes", method = "post")]
    async fn regenerate(
        &self,
        auth: AdminAuth,
        body: Json<TwoFactorProofRequest>,
    ) -> KvResult<RecoveryCodesResponse> {
        let proof = body.0.proof()?;
        let codes =
            two_factor::regenerate_recovery_codes(&self.state, &auth.admin().ctx, proof).await?;
        Ok(recovery_codes(codes))
    }

    /// Workspace: is two-factor login required?
    ///
    /// The caller's own workspace, or `tenantId` (ADMINs reach every workspace; another's
    /// answers 404 for anyone else).
    #[oai(path = "/api/workspace/2fa", method = "get", tag = "AdminTags::Users")]
    async fn policy(
        &self,
        auth: AdminAuth,
        /// The workspace (tenant id); default the caller's own.
        #[oai(name = "tenantId", validator(max_length = 64))]
        tenant_id: Query<Option<String>>,
    ) -> KvResult<TwoFactorPolicyResponse> {
        let tenant = tenant_id.0.map(TenantId::from);
        let p = two_factor::policy(&self.state, &auth.admin().ctx, tenant.as_ref())?;
        Ok(TwoFactorPolicyResponse::Ok(Json(TwoFactorPolicyOk {
            success: true,
            data: TwoFactorPolicyView::new(p),
        })))
    }

    /// Workspace: require two-factor login
    ///
    /// ADMIN operators only. While required, an operator of the workspace without two-factor
    /// login gets a session that may only enrol: every other admin call answers 403
    /// `TWO_FACTOR_ENROLMENT_REQUIRED`.
    #[oai(path = "/api/workspace/2fa", method = "put", tag = "AdminTags::Users")]
    async fn set_policy(
        &self,
        auth: AdminAuth,
        body: Json<TwoFactorPolicyRequest>,
    ) -> KvResult<TwoFactorPolicyResponse> {
        let body = body.0;
        let tenant = body.tenant_id.map(TenantId::from);
        let p = two_factor::set_policy(
            &self.state,
            &auth.admin().ctx,
            tenant.as_ref(),
            body.required,
        )
        .await?;
        Ok(TwoFactorPolicyResponse::Ok(Json(TwoFactorPolicyOk {
            success: true,
            data: TwoFactorPolicyView::new(p),
        })))
    }
}

fn recovery_codes(codes: Vec<String>) -> RecoveryCodesResponse {
    RecoveryCodesResponse::Ok(Json(TwoFactorRecoveryCodesOk {
        success: true,
        data: TwoFactorRecoveryCodes {
            recovery_codes: codes,
        },
    }))
}
