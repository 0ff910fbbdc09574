//! The key/HWID contract's error envelope, built here and nowhere else:
//! `{"success": false, "error": "…", "code": "…"}`. The admin, client and portal faces speak it.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::error::{Error, LicenseProblem};

#[derive(Object, Debug, Clone)]
pub struct KvErrorBody {
    /// Always false.
    pub success: bool,
    /// For people: what was wrong, naming the field or rule.
    pub error: String,
    /// Machine-readable: VALIDATION_ERROR, UNAUTHORIZED, SETUP_TOKEN_REQUIRED,
    /// SETUP_TOKEN_INVALID, SETUP_TOKEN_EXPIRED, FORBIDDEN, TWO_FACTOR_ENROLMENT_REQUIRED,
    /// NOT_FOUND, CONFLICT,
    /// KEY_EXPIRED, KEY_SUSPENDED, KEY_REVOKED, IP_BLOCKED, RATE_LIMITED, INTERNAL_ERROR…
    pub code: String,
}

fn body(code: &str, message: impl Into<String>) -> Json<KvErrorBody> {
    Json(KvErrorBody {
        success: false,
        error: message.into(),
        code: code.to_owned(),
    })
}

/// Every error a key/HWID-face operation can answer.
#[derive(ApiResponse, Debug)]
pub enum KvError {
    /// Missing fields, invalid values, bad payload (`VALIDATION_ERROR`).
    #[oai(status = 400)]
    BadRequest(Json<KvErrorBody>),
    /// Missing, invalid, expired or revoked token or credentials (`UNAUTHORIZED`); the first
    /// administrator's setup without its one-time token (`SETUP_TOKEN_REQUIRED`), with a wrong
    /// or used one (`SETUP_TOKEN_INVALID`) or an expired one (`SETUP_TOKEN_EXPIRED`).
    #[oai(status = 401)]
    Unauthorized(Json<KvErrorBody>),
    /// Not allowed for this caller or this key (`FORBIDDEN`, `KEY_*`, `HWID_MISMATCH`,
    /// `MAX_SESSIONS`, `SESSION_ENDED`, `REPLAY`, `REQUEST_REPLAYED`), the client's address
    /// is blocked for suspected abuse (`IP_BLOCKED`), or the operator's workspace requires
    /// two-factor login and the session may only enrol (`TWO_FACTOR_ENROLMENT_REQUIRED`).
    #[oai(status = 403)]
    Forbidden(Json<KvErrorBody>),
    /// No such object in the caller's reach (`NOT_FOUND`; `SESSION_NOT_FOUND` for a session
    /// id that names no session of the key on the machine).
    #[oai(status = 404)]
    NotFound(Json<KvErrorBody>),
    /// The path exists, but not with this method (`METHOD_NOT_ALLOWED`).
    #[oai(status = 405)]
    MethodNotAllowed(Json<KvErrorBody>),
    /// A unique value is taken, a project would drop an entitlement code its keys still
    /// carry, the current signing key was to be retired, or a payment event that is not
    /// flagged was to be applied again (`CONFLICT`).
    #[oai(status = 409)]
    Conflict(Json<KvErrorBody>),
    /// The body exceeds the size limit (`PAYLOAD_TOO_LARGE`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<KvErrorBody>),
    /// Wrong Content-Type (`UNSUPPORTED_MEDIA_TYPE`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<KvErrorBody>),
    /// Too many requests from this IP or for this key or account (`RATE_LIMITED`).
    #[oai(status = 429)]
    TooManyRequests(
        Json<KvErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u64,
        /// Requests allowed per window (a minute, unless the operation says otherwise).
        #[oai(header = "X-RateLimit-Limit")]
        u32,
    ),
    /// Internal error (`INTERNAL_ERROR`).
    #[oai(status = 500)]
    Internal(Json<KvErrorBody>),
}

impl KvError {
    pub fn from_error(err: &Error) -> Self {
        let msg = err.to_string();
        match err {
            Error::Invalid(_) => Self::BadRequest(body("VALIDATION_ERROR", msg)),
            Error::NotFound(_) => {
                let mut m = msg;
                if let Some(first) = m.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                Self::NotFound(body("NOT_FOUND", m))
            }
            Error::Unauthorized(_) => Self::Unauthorized(body("UNAUTHORIZED", msg)),
            Error::SetupToken(problem) => Self::Unauthorized(body(problem.code(), msg)),
            Error::Forbidden(_) => Self::Forbidden(body("FORBIDDEN", msg)),
            Error::IpBlocked { .. } => Self::Forbidden(body("IP_BLOCKED", msg)),
            Error::Conflict(_) => Self::Conflict(body("CONFLICT", msg)),
            // A session the request names that is not there: the key is fine, the session is not.
            Error::License(problem @ LicenseProblem::SessionUnknown) => {
                Self::NotFound(body(license_code(*problem), msg))
            }
            Error::License(problem) => Self::Forbidden(body(license_code(*problem), msg)),
            Error::LicenseRefused(problem) => Self::Forbidden(body(license_code(*problem), msg)),
            Error::TooLarge(_) => Self::PayloadTooLarge(body("PAYLOAD_TOO_LARGE", msg)),
            Error::IdempotencyMismatch(_) => Self::Conflict(body("CONFLICT", msg)),
            Error::RateLimited { retry_after, limit } => Self::TooManyRequests(
                body("RATE_LIMITED", msg),
                retry_after.as_secs_f64().ceil().max(1.0) as u64,
                *limit,
            ),
            Error::Storage(detail) => {
                tracing::error!("storage failure: {detail}");
                Self::Internal(body(
                    "INTERNAL_ERROR",
                    "The server could not complete the request; nothing was changed",
                ))
            }
        }
    }

    /// A session whose workspace requires two-factor login, used for anything but enrolling.
    pub fn two_factor_enrolment_required(message: &str) -> Self {
        Self::Forbidden(body("TWO_FACTOR_ENROLMENT_REQUIRED", message))
    }

    /// Refusals raised by the framework before a handler ran.
    pub fn from_status(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body("UNAUTHORIZED", message)),
            StatusCode::FORBIDDEN => Self::Forbidden(body("FORBIDDEN", message)),
            StatusCode::NOT_FOUND => Self::NotFound(body("NOT_FOUND", message)),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::MethodNotAllowed(body("METHOD_NOT_ALLOWED", message))
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge(body("PAYLOAD_TOO_LARGE", message))
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::UnsupportedMediaType(body("UNSUPPORTED_MEDIA_TYPE", message))
            }
            s if s.is_server_error() => {
                tracing::error!("framework error: {message}");
                Self::Internal(body("INTERNAL_ERROR", "Internal error"))
            }
            _ => Self::BadRequest(body("VALIDATION_ERROR", message)),
        }
    }
}

impl From<Error> for KvError {
    fn from(err: Error) -> Self {
        Self::from_error(&err)
    }
}

pub fn license_code(problem: LicenseProblem) -> &'static str {
    problem.key_code()
}

pub type KvResult<T> = Result<T, KvError>;
