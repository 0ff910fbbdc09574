//! What the client face's envelope endpoints (`/api/validate`, `/api/session/end`) share: the
//! checks on a decrypted request's common fields, and the sealing of an outcome, success or
//! refusal, for the client.

use poem::http::{HeaderValue, StatusCode};
use poem_openapi::payload::Response;

use super::validate::EncryptedReply;
use crate::api::shared::keyvault_error::{KvError, KvResult};
use crate::error::Error;
use crate::service::licensing::EnvelopeProject;

/// The limits a plain request's validators enforce, applied to the fields every decrypted
/// envelope carries.
pub(super) fn check_fields(
    key: &str,
    hwid: &str,
    secret: Option<&str>,
    request_id: &str,
) -> Result<(), Error> {
    if key.len() > 100 || hwid.is_empty() || hwid.len() > 255 {
        return Err(Error::Invalid(
            "key (1-100) and hwid (1-255 characters) are required".into(),
        ));
    }
    if secret.is_some_and(|s| s.len() > 100) {
        return Err(Error::Invalid(
            "secret must be at most 100 characters".into(),
        ));
    }
    if !(16..=128).contains(&request_id.len()) {
        return Err(Error::Invalid("requestId must be 16-128 characters".into()));
    }
    Ok(())
}

/// An envelope's outcome, encrypted for the client: a refusal keeps its status and its
/// rate-limit headers (`Retry-After`, …) outside the encryption.
pub(super) struct Sealed {
    status: StatusCode,
    reply: EncryptedReply,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl Sealed {
    /// The face's answer made by `wrap` from the encrypted reply, with the outcome's status and
    /// headers.
    pub fn answer<T>(self, wrap: impl FnOnce(EncryptedReply) -> Response<T>) -> Response<T> {
        let mut answer = wrap(self.reply).status(self.status);
        for (name, value) in self.headers {
            answer = answer.header(name, value);
        }
        answer
    }
}

/// Seals `outcome` (the plain success body, or the refusal) with the project's payload key.
pub(super) async fn seal<T: crate::api::shared::signed::SignedBody>(
    project: &EnvelopeProject,
    outcome: Result<T, KvError>,
) -> KvResult<Sealed> {
    let (status, plain, headers) = match outcome {
        Ok(ok) => (StatusCode::OK, ok.body_bytes(), Vec::new()),
        Err(e) => {
            let resp = poem::IntoResponse::into_response(e);
            let status = resp.status();
            let headers: Vec<_> = ["Retry-After", "X-RateLimit-Limit"]
                .into_iter()
                .filter_map(|name| Some((name, resp.headers().get(name)?.clone())))
                .collect();
            let bytes = resp
                .into_body()
                .into_vec()
                .await
                .map_err(|e| Error::Storage(e.to_string()))?;
            (status, bytes, headers)
        }
    };
    Ok(Sealed {
        status,
        reply: EncryptedReply {
            success: status == StatusCode::OK,
            payload: project.seal(&plain)?,
        },
        headers,
    })
}
