//! `POST /api/session/end`: an app ends its own session on exit, so its place is free at once
//! (instead of after the project's session TTL). Authenticated like `/api/validate`: the key
//! and HWID, optionally the project's `kv_` secret, or the same encrypted envelope.

use poem::Request;
use poem_openapi::payload::{Json, Response};
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use serde::Deserialize;
use time::OffsetDateTime;

use super::validate::{EncryptedReply, Refusal};
use super::{ClientTags, envelope};
use crate::api::ClientIp;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::{KvError, KvResult};
use crate::api::shared::signed::SignedJson;
use crate::domain::ms_to_datetime;
use crate::error::Error;
use crate::service::licensing::{
    self, EndSessionRequest, EnvelopeProject, KeyClient, KeyLookup, SealedRequest, SessionEnded,
};
use crate::state::AppState;

pub struct SessionApi {
    pub state: AppState,
}

crate::field_names!(
    KeyField = "key",
    HwidField = "hwid",
    SecretField = "secret",
    NonceField = "nonce",
    SessionIdField = "sessionId",
    ClientNonceField = "clientNonce",
    ProjectIdField = "projectId",
    PayloadField = "payload",
);

/// Either a plain request (`key`, `hwid`, `sessionId`, optional `secret`, `nonce`,
/// `clientNonce`) or an encrypted envelope (`projectId`, `payload`) whose plaintext has the
/// same fields plus `timestamp` and `requestId`.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct EndSessionBody {
    #[oai(
        nullable,
        deserialize_with = "named::<KeyField, _>",
        validator(max_length = 100)
    )]
    pub key: Option<String>,
    /// The machine the session runs on (as sent to `/api/validate`).
    #[oai(
        nullable,
        deserialize_with = "named::<HwidField, _>",
        validator(max_length = 255)
    )]
    pub hwid: Option<String>,
    /// The project's `kv_` secret: limits the search to that project's keys.
    #[oai(
        nullable,
        deserialize_with = "named::<SecretField, _>",
        validator(max_length = 100)
    )]
    pub secret: Option<String>,
    /// The session to end (the `sessionId` a validation answered).
    #[oai(
        nullable,
        deserialize_with = "named::<SessionIdField, _>",
        validator(max_length = 64)
    )]
    pub session_id: Option<String>,
    /// The session's current nonce (optional); another one is a replay (403 REPLAY).
    #[oai(
        nullable,
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
    /// Any value: echoed inside the signed answer.
    #[oai(
        nullable,
        deserialize_with = "named::<ClientNonceField, _>",
        validator(max_length = 128)
    )]
    pub client_nonce: Option<String>,
    /// Envelope: the project whose payload key encrypted `payload`.
    #[oai(
        nullable,
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
    /// Envelope: base64(12-byte IV ‖ AES-256-GCM ciphertext ‖ 16-byte tag).
    #[oai(
        nullable,
        deserialize_with = "named::<PayloadField, _>",
        validator(max_length = 65536)
    )]
    pub payload: Option<String>,
}

/// The plaintext inside an envelope.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvelopeEndSession {
    key: String,
    hwid: String,
    secret: Option<String>,
    session_id: String,
    nonce: Option<String>,
    client_nonce: Option<String>,
    timestamp: i64,
    request_id: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SessionEndedView {
    /// Always true: the session is over and its place is free.
    pub ended: bool,
    pub session_id: String,
    pub ended_at: OffsetDateTime,
    #[oai(nullable, skip_serializing_if_is_none)]
    pub client_nonce: Option<String>,
}

#[derive(Object, Debug)]
pub struct SessionEndedOk {
    pub success: bool,
    pub data: SessionEndedView,
}

impl crate::api::shared::signed::SignedBody for SessionEndedOk {}

#[derive(Union, Debug)]
#[oai(one_of)]
pub enum EndSessionReply {
    Plain(SessionEndedOk),
    Encrypted(EncryptedReply),
}

impl crate::api::shared::signed::SignedBody for EndSessionReply {}

#[derive(ApiResponse)]
pub enum EndSessionResponse {
    /// The session ended (plain, or encrypted for an envelope request; an encrypted error
    /// keeps its 4xx status). Signed: `X-Signature` over the exact body.
    #[oai(status = 200)]
    Ok(
        SignedJson<EndSessionReply>,
        /// The project whose key signed the body.
        #[oai(header = "X-Keyward-Product")]
        Option<String>,
    ),
}

#[OpenApi(tag = "ClientTags::Validation")]
impl SessionApi {
    /// End the app's own session
    ///
    /// Call it when the app exits: the session's place is free at once, instead of after the
    /// project's session TTL. Authenticated like `/api/validate` (key and HWID, optional
    /// `secret`, or the encrypted envelope; a project requiring encryption refuses plain
    /// requests). A session already ended → 403 SESSION_ENDED (the message says why); a
    /// `sessionId` that names no live session of the key on this machine → 404
    /// SESSION_NOT_FOUND; a `nonce` other than the session's current one → 403 REPLAY; an
    /// unknown key → 404 NOT_FOUND. Answers are signed, and so are refusals whenever the key's
    /// project is known.
    #[oai(path = "/api/session/end", method = "post")]
    async fn end(
        &self,
        req: &Request,
        body: Json<EndSessionBody>,
    ) -> Result<Response<EndSessionResponse>, Refusal> {
        let body = body.0;
        let client = KeyClient::app(ClientIp::of(req));
        if let Some(payload) = body.payload {
            let project_id = body
                .project_id
                .ok_or_else(|| Error::Invalid("projectId is required with payload".into()))?;
            return Ok(self.end_envelope(&client, &project_id, &payload).await?);
        }
        let key = body
            .key
            .ok_or_else(|| Error::Invalid("field `key` is required".into()))?;
        let hwid = body
            .hwid
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| Error::Invalid("field `hwid` is required (1-255 characters)".into()))?;
        let session_id = body
            .session_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Invalid("field `sessionId` is required".into()))?;
        let request = EndSessionRequest {
            lookup: KeyLookup::Key {
                key,
                secret: body.secret,
            },
            hwid,
            session_id,
            nonce: body.nonce,
            sealed: None,
        };
        let signed = licensing::end_session(&self.state, &client, request).await?;
        let product_id = signed.signer.product_id().to_string();
        let client_nonce = body.client_nonce;
        Ok(Response::new(EndSessionResponse::Ok(
            SignedJson::from(signed.map(|e| {
                EndSessionReply::Plain(SessionEndedOk {
                    success: true,
                    data: view(e, client_nonce),
                })
            })),
            Some(product_id),
        )))
    }
}

impl SessionApi {
    async fn end_envelope(
        &self,
        client: &KeyClient,
        project_id: &str,
        payload: &str,
    ) -> KvResult<Response<EndSessionResponse>> {
        let project = licensing::envelope_project(&self.state, project_id)?;
        let plaintext = project.open(payload)?;
        let outcome = envelope_outcome(&self.state, client, &project, &plaintext)
            .await
            .map(|data| SessionEndedOk {
                success: true,
                data,
            });
        // From here on every answer, success or error, is encrypted for the client.
        let sealed = envelope::seal(&project, outcome).await?;
        let product_id = project.product_id.to_string();
        Ok(sealed.answer(|reply| {
            Response::new(EndSessionResponse::Ok(
                SignedJson::new(EndSessionReply::Encrypted(reply), project.signer),
                Some(product_id),
            ))
        }))
    }
}

async fn envelope_outcome(
    state: &AppState,
    client: &KeyClient,
    project: &EnvelopeProject,
    plaintext: &[u8],
) -> Result<SessionEndedView, KvError> {
    let request: EnvelopeEndSession = serde_json::from_slice(plaintext).map_err(|e| {
        Error::Invalid(format!("the decrypted payload is not a valid request: {e}"))
    })?;
    envelope::check_fields(
        &request.key,
        &request.hwid,
        request.secret.as_deref(),
        &request.request_id,
    )?;
    if request.session_id.is_empty() || request.session_id.len() > 64 {
        return Err(Error::Invalid("sessionId must be 1-64 characters".into()).into());
    }
    let end = EndSessionRequest {
        lookup: KeyLookup::InProject {
            key: request.key,
            product_id: project.product_id.clone(),
            secret: request.secret,
        },
        hwid: request.hwid,
        session_id: request.session_id,
        nonce: request.nonce,
        sealed: Some(SealedRequest {
            timestamp: request.timestamp,
            request_id: request.request_id,
        }),
    };
    licensing::end_session(state, client, end)
        .await
        .map(|signed| view(signed.body, request.client_nonce))
        .map_err(|refusal| KvError::from_error(&refusal.error))
}

fn view(e: SessionEnded, client_nonce: Option<String>) -> SessionEndedView {
    SessionEndedView {
        ended: true,
        session_id: e.session_id,
        ended_at: ms_to_datetime(e.at),
        client_nonce,
    }
}
