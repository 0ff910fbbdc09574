//! The vendor contract's error envelope, built here and nowhere else:
//! `{"success": false, "error": {"code": "…", "message": "…"}}`.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::error::{Error, LicenseProblem};

#[derive(Object, Debug, Clone)]
pub struct ErrorDetail {
    /// Machine-readable: VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, LICENSE_NOT_FOUND,
    /// LICENSE_EXPIRED, LICENSE_SUSPENDED, LICENSE_REVOKED, ACTIVATION_LIMIT_REACHED,
    /// NOT_ACTIVATED, IDEMPOTENCY_KEY_REUSED, RATE_LIMITED, INTERNAL_ERROR…
    pub code: String,
    /// For people: what was wrong, naming the field or rule.
    pub message: String,
}

#[derive(Object, Debug, Clone)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub error: ErrorDetail,
}

impl ErrorEnvelope {
    pub fn new(code: &str, message: impl Into<String>) -> Json<Self> {
        Json(Self {
            success: false,
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        })
    }
}

/// Every error a vendor-API operation can answer.
#[derive(ApiResponse, Debug)]
pub enum VendorError {
    /// Invalid input (`VALIDATION_ERROR`), or the license cannot be used for this:
    /// `LICENSE_EXPIRED`, `LICENSE_SUSPENDED`, `LICENSE_REVOKED`, `ACTIVATION_LIMIT_REACHED`,
    /// `NOT_ACTIVATED`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorEnvelope>),
    /// Missing, unknown or revoked API key (`UNAUTHORIZED`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorEnvelope>),
    /// The API key's scope does not allow this operation (`FORBIDDEN`), the license
    /// presented in `X-License-Key` is not active (`LICENSE_EXPIRED`, `LICENSE_SUSPENDED`,
    /// `LICENSE_REVOKED`), or the client's address is blocked for suspected abuse
    /// (`IP_BLOCKED`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorEnvelope>),
    /// No such license, product or machine in the API key's tenant (`*_NOT_FOUND`).
    #[oai(status = 404)]
    NotFound(Json<ErrorEnvelope>),
    /// The path exists, but not with this HTTP method (`METHOD_NOT_ALLOWED`).
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorEnvelope>),
    /// The body exceeds the size limit (`PAYLOAD_TOO_LARGE`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorEnvelope>),
    /// The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorEnvelope>),
    /// An idempotency key was reused with a different body (`IDEMPOTENCY_KEY_REUSED`).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorEnvelope>),
    /// Too many requests from this IP or with this API key (`RATE_LIMITED`).
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorEnvelope>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u64,
        /// Requests allowed per window (a minute, unless the operation says otherwise).
        #[oai(header = "X-RateLimit-Limit")]
        u32,
    ),
    /// The server could not read or write its database (`INTERNAL_ERROR`).
    #[oai(status = 500)]
    Internal(Json<ErrorEnvelope>),
}

impl VendorError {
    pub fn from_error(err: &Error) -> Self {
        let msg = err.to_string();
        match err {
            Error::Invalid(_) => Self::BadRequest(ErrorEnvelope::new("VALIDATION_ERROR", msg)),
            Error::NotFound(what) => Self::NotFound(ErrorEnvelope::new(
                &format!("{}_NOT_FOUND", what.to_ascii_uppercase().replace(' ', "_")),
                capitalize(&msg),
            )),
            Error::Unauthorized(_) => Self::Unauthorized(ErrorEnvelope::new("UNAUTHORIZED", msg)),
            // Raised by the admin face's setup step only; mapped for completeness.
            Error::SetupToken(problem) => {
                Self::Unauthorized(ErrorEnvelope::new(problem.code(), msg))
            }
            Error::Forbidden(_) => Self::Forbidden(ErrorEnvelope::new("FORBIDDEN", msg)),
            Error::IpBlocked { .. } => Self::Forbidden(ErrorEnvelope::new("IP_BLOCKED", msg)),
            Error::Conflict(_) => Self::BadRequest(ErrorEnvelope::new("CONFLICT", msg)),
            Error::License(problem) => {
                Self::BadRequest(ErrorEnvelope::new(license_code(*problem), msg))
            }
            Error::LicenseRefused(problem) => {
                Self::Forbidden(ErrorEnvelope::new(license_code(*problem), msg))
            }
            Error::TooLarge(_) => {
                Self::PayloadTooLarge(ErrorEnvelope::new("PAYLOAD_TOO_LARGE", msg))
            }
            Error::IdempotencyMismatch(_) => {
                Self::Unprocessable(ErrorEnvelope::new("IDEMPOTENCY_KEY_REUSED", msg))
            }
            Error::RateLimited { retry_after, limit } => Self::TooManyRequests(
                ErrorEnvelope::new("RATE_LIMITED", msg),
                retry_after.as_secs_f64().ceil().max(1.0) as u64,
                *limit,
            ),
            Error::Storage(detail) => {
                tracing::error!("storage failure: {detail}");
                Self::Internal(ErrorEnvelope::new(
                    "INTERNAL_ERROR",
                    "The server could not complete the request; nothing was changed",
                ))
            }
        }
    }

    /// Refusals raised by the framework before a handler ran.
    pub fn from_status(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => {
                Self::Unauthorized(ErrorEnvelope::new("UNAUTHORIZED", message))
            }
            StatusCode::FORBIDDEN => Self::Forbidden(ErrorEnvelope::new("FORBIDDEN", message)),
            StatusCode::NOT_FOUND => Self::NotFound(ErrorEnvelope::new("NOT_FOUND", message)),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::MethodNotAllowed(ErrorEnvelope::new("METHOD_NOT_ALLOWED", message))
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge(ErrorEnvelope::new("PAYLOAD_TOO_LARGE", message))
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::UnsupportedMediaType(ErrorEnvelope::new("UNSUPPORTED_MEDIA_TYPE", message))
            }
            s if s.is_server_error() => {
                tracing::error!("framework error: {message}");
                Self::Internal(ErrorEnvelope::new("INTERNAL_ERROR", "Internal error"))
            }
            _ => Self::BadRequest(ErrorEnvelope::new("VALIDATION_ERROR", message)),
        }
    }
}

impl From<Error> for VendorError {
    fn from(err: Error) -> Self {
        Self::from_error(&err)
    }
}

pub fn license_code(problem: LicenseProblem) -> &'static str {
    problem.vendor_code()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub type VendorResult<T> = Result<T, VendorError>;
