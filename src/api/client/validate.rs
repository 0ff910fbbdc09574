//! `POST /api/validate`.

use poem::Request;
use poem_openapi::payload::{Json, Response};
use poem_openapi::registry::{MetaHeader, MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{ClientTags, envelope};
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::{KvError, KvErrorBody, KvResult};
use crate::api::shared::signed::SignedJson;
use crate::api::{ClientIp, SIGNED_BY_HEADER};
use crate::domain::licenses::Plan;
use crate::domain::ms_to_datetime;
use crate::error::Error;
use crate::service::licensing::{
    self, EnvelopeProject, KeyClient, KeyLookup, KeyRefusal, KeyRequest, KeyValidation,
    SealedRequest,
};
use crate::state::AppState;

pub struct ValidateApi {
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

/// Either a plain request (`key`, `hwid`, optional `secret`, `nonce`, `sessionId`,
/// `clientNonce`) or an encrypted envelope (`projectId`, `payload`).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ValidateRequest {
    #[oai(
        nullable,
        deserialize_with = "named::<KeyField, _>",
        validator(max_length = 100)
    )]
    pub key: Option<String>,
    /// Hardware fingerprint, e.g. SHA256(MotherboardUUID + ":" + DiskSerial).
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
    /// The nonce the previous validation of this session returned; a different one is a replay
    /// (403 REPLAY). Without `sessionId` it names the session it continues.
    #[oai(
        nullable,
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
    /// A live session to refresh instead of opening a new one.
    #[oai(
        nullable,
        deserialize_with = "named::<SessionIdField, _>",
        validator(max_length = 64)
    )]
    pub session_id: Option<String>,
    /// Any value: echoed inside the signed answer, so a recorded answer cannot be replayed.
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
    /// Envelope: base64(12-byte IV ‖ AES-256-GCM ciphertext ‖ 16-byte tag) of the JSON
    /// request plus `timestamp` (Unix seconds) and `requestId`.
    #[oai(
        nullable,
        deserialize_with = "named::<PayloadField, _>",
        validator(max_length = 65536)
    )]
    pub payload: Option<String>,
}

/// The plaintext inside an envelope: the plain request plus `timestamp` and `requestId`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvelopeRequest {
    key: String,
    hwid: String,
    /// Optional, as in a plain request; the envelope already names the project, so a secret
    /// that is not that project's is answered like a plain request's wrong secret.
    secret: Option<String>,
    nonce: Option<String>,
    session_id: Option<String>,
    client_nonce: Option<String>,
    /// Unix seconds when the client sealed the envelope.
    timestamp: i64,
    /// Random, unique per request (16-128 characters).
    request_id: String,
}

#[derive(Object, serde::Serialize, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub valid: bool,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    /// Days of a CUSTOM plan.
    #[oai(nullable, skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_days: Option<u32>,
    /// null for keys that never expire.
    #[oai(nullable)]
    #[serde(serialize_with = "crate::api::shared::signed::rfc3339_or_null")]
    pub expires_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub note: Option<String>,
    /// The project's server variable.
    #[oai(nullable)]
    pub server_var: Option<String>,
    /// The entitlement codes the key carries.
    pub entitlements: Vec<String>,
    /// Present this nonce on the next validation.
    pub nonce: String,
    pub session_id: String,
    #[oai(nullable, skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_nonce: Option<String>,
}

#[derive(Object, serde::Serialize, Debug)]
pub struct ValidationOk {
    pub success: bool,
    pub data: Validation,
}

/// Sealed on every encrypted validation: straight to JSON (see `SignedBody`).
impl crate::api::shared::signed::SignedBody for ValidationOk {
    fn body_bytes(&self) -> Vec<u8> {
        crate::api::shared::signed::serde_body(self)
    }
}

/// The answer to an envelope: the plain answer (success or error envelope) encrypted the same
/// way. Errors keep their HTTP status.
#[derive(Object, serde::Serialize, Debug)]
pub struct EncryptedReply {
    pub success: bool,
    /// base64(12-byte IV ‖ ciphertext ‖ tag) of the plain JSON answer.
    pub payload: String,
}

#[derive(Union, serde::Serialize, Debug)]
#[oai(one_of)]
#[serde(untagged)]
pub enum ValidateBody {
    Plain(ValidationOk),
    Encrypted(EncryptedReply),
}

/// Written on every validation: straight to JSON (see `SignedBody`).
impl crate::api::shared::signed::SignedBody for ValidateBody {
    fn body_bytes(&self) -> Vec<u8> {
        crate::api::shared::signed::serde_body(self)
    }
}

#[derive(ApiResponse)]
pub enum ValidateResponse {
    /// The key is valid on this machine (plain, or encrypted for an envelope request; an
    /// encrypted error keeps its 4xx status). Signed: `X-Signature` over the exact body.
    #[oai(status = 200)]
    Ok(
        SignedJson<ValidateBody>,
        /// The project whose key signed the body.
        #[oai(header = "X-Keyward-Product")]
        Option<String>,
    ),
}

#[OpenApi(tag = "ClientTags::Validation")]
impl ValidateApi {
    /// Validate a key on a machine
    ///
    /// The first call binds the HWID (and starts a plan's clock); another HWID is refused
    /// (403 HWID_MISMATCH) once the key's machines are taken. Expired, suspended, banned and
    /// revoked keys → 403 KEY_EXPIRED / KEY_SUSPENDED / KEY_BANNED / KEY_REVOKED; an unknown
    /// key → 404. Sessions are limited to `maxSessions`: present `sessionId` to refresh yours;
    /// a validation that would open one more gets, by the project's `sessionLimit`, 403
    /// MAX_SESSIONS (`REFUSE_NEW`) or a session while the oldest one ends (`END_OLDEST`, the
    /// default; the ended session's next refresh → 403 SESSION_ENDED). Each session has its
    /// own nonce chain: each call rotates the session's nonce, and a `nonce` that is not the
    /// current one of the session it continues → 403 REPLAY. Answers are signed (`X-Signature`, the project's Ed25519 key, over the exact body), and
    /// so are refusals whenever the key's project is known.
    #[oai(path = "/api/validate", method = "post")]
    async fn validate(
        &self,
        req: &Request,
        body: Json<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Refusal> {
        let body = body.0;
        let client = KeyClient::app(ClientIp::of(req));
        if let Some(payload) = body.payload {
            let project_id = body
                .project_id
                .ok_or_else(|| Error::Invalid("projectId is required with payload".into()))?;
            return Ok(self
                .validate_envelope(&client, &project_id, &payload)
                .await?);
        }
        let key = body
            .key
            .ok_or_else(|| Error::Invalid("field `key` is required".into()))?;
        let hwid = body
            .hwid
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| Error::Invalid("field `hwid` is required (1-255 characters)".into()))?;
        let request = KeyRequest {
            lookup: KeyLookup::Key {
                key,
                secret: body.secret,
            },
            hwid,
            nonce: body.nonce,
            session_id: body.session_id,
            sealed: None,
        };
        let signed = licensing::validate_key(&self.state, &client, request).await?;
        let product_id = signed.signer.product_id().to_string();
        let client_nonce = body.client_nonce;
        Ok(Response::new(ValidateResponse::Ok(
            SignedJson::from(signed.map(|v| {
                ValidateBody::Plain(ValidationOk {
                    success: true,
                    data: validation(v, client_nonce),
                })
            })),
            Some(product_id),
        )))
    }
}

/// A refusal of `/api/validate` in the key/HWID error envelope. When the key's project is
/// known it names it, so the guard signs the refusal like a success: an app can then tell a
/// genuine "banned" or "HWID mismatch" from one forged by whoever sits on its network path.
#[derive(Debug)]
pub struct Refusal {
    pub error: KvError,
    /// The project whose key signs the body (`X-Keyward-Product`).
    pub signed_by: Option<String>,
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        KvError::from_error(&err).into()
    }
}

impl From<KvError> for Refusal {
    fn from(error: KvError) -> Self {
        Self {
            error,
            signed_by: None,
        }
    }
}

impl From<KeyRefusal> for Refusal {
    fn from(refusal: KeyRefusal) -> Self {
        Self {
            error: KvError::from_error(&refusal.error),
            signed_by: refusal.signed_by.map(|p| p.to_string()),
        }
    }
}

impl ApiResponse for Refusal {
    fn meta() -> MetaResponses {
        let mut meta = KvError::meta();
        // An envelope request's refusals are answered encrypted, with the refusal's status.
        let either = MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "The key/HWID error envelope; for an envelope request (`payload`), the same \
                 answer encrypted (`EncryptedReply`, `success` false)",
            ),
            one_of: vec![KvErrorBody::schema_ref(), EncryptedReply::schema_ref()],
            ..MetaSchema::ANY
        }));
        for response in &mut meta.responses {
            for content in &mut response.content {
                content.schema = either.clone();
            }
        }
        declare_signed_refusals(&mut meta);
        meta
    }

    fn register(registry: &mut Registry) {
        KvError::register(registry);
        EncryptedReply::register(registry);
    }
}

/// Declares the header that names the signing project on the refusals that can be signed:
/// those about a key (403) or within a named project (404).
pub(super) fn declare_signed_refusals(meta: &mut MetaResponses) {
    for response in &mut meta.responses {
        if matches!(response.status, Some(403 | 404)) {
            response.headers.push(MetaHeader {
                name: SIGNED_BY_HEADER.to_owned(),
                description: Some(
                    "The project whose key signed the body (X-Signature), when the key's \
                     project is known"
                        .to_owned(),
                ),
                required: false,
                deprecated: false,
                schema: String::schema_ref(),
            });
        }
    }
}

impl poem::IntoResponse for Refusal {
    fn into_response(self) -> poem::Response {
        let mut resp = self.error.into_response();
        if let Some(value) = self.signed_by.and_then(|p| p.parse().ok()) {
            resp.headers_mut().insert(SIGNED_BY_HEADER, value);
        }
        resp
    }
}

impl From<Refusal> for poem::Error {
    fn from(refusal: Refusal) -> Self {
        poem::Error::from_response(poem::IntoResponse::into_response(refusal))
    }
}

impl ValidateApi {
    async fn validate_envelope(
        &self,
        client: &KeyClient,
        project_id: &str,
        payload: &str,
    ) -> KvResult<Response<ValidateResponse>> {
        let project = licensing::envelope_project(&self.state, project_id)?;
        let plaintext = project.open(payload)?;
        let outcome = envelope_outcome(&self.state, client, &project, &plaintext)
            .await
            .map(|data| ValidationOk {
                success: true,
                data,
            });
        // From here on every answer, success or error, is encrypted for the client.
        let sealed = envelope::seal(&project, outcome).await?;
        let product_id = project.product_id.to_string();
        Ok(sealed.answer(|reply| {
            Response::new(ValidateResponse::Ok(
                SignedJson::new(ValidateBody::Encrypted(reply), project.signer),
                Some(product_id),
            ))
        }))
    }
}

/// The validation an envelope asks for; its refusals are sealed, and the envelope is signed as
/// a whole by `validate_envelope`.
async fn envelope_outcome(
    state: &AppState,
    client: &KeyClient,
    project: &EnvelopeProject,
    plaintext: &[u8],
) -> Result<Validation, KvError> {
    let request: EnvelopeRequest = serde_json::from_slice(plaintext).map_err(|e| {
        Error::Invalid(format!("the decrypted payload is not a valid request: {e}"))
    })?;
    envelope::check_fields(
        &request.key,
        &request.hwid,
        request.secret.as_deref(),
        &request.request_id,
    )?;
    let key_request = KeyRequest {
        lookup: KeyLookup::InProject {
            key: request.key,
            product_id: project.product_id.clone(),
            secret: request.secret,
        },
        hwid: request.hwid,
        nonce: request.nonce,
        session_id: request.session_id,
        sealed: Some(SealedRequest {
            timestamp: request.timestamp,
            request_id: request.request_id,
        }),
    };
    licensing::validate_key(state, client, key_request)
        .await
        .map(|signed| validation(signed.body, request.client_nonce))
        .map_err(|refusal| KvError::from_error(&refusal.error))
}

/// The contract's view of a valid key.
fn validation(v: KeyValidation, client_nonce: Option<String>) -> Validation {
    let l = &v.license;
    Validation {
        valid: true,
        plan: l.plan,
        custom_days: licensing::custom_days(l),
        expires_at: l.valid_until.map(ms_to_datetime),
        entitlements: v.license.entitlements,
        note: v.license.note,
        server_var: v.server_var,
        nonce: v.nonce,
        session_id: v.session_id,
        client_nonce,
    }
}

#[cfg(test)]
mod tests {
    use super::{EncryptedReply, ValidateBody, Validation, ValidationOk};
    use crate::api::shared::signed::assert_same_document;
    use crate::domain::licenses::Plan;

    fn validation(full: bool) -> ValidationOk {
        let at = time::OffsetDateTime::from_unix_timestamp(1_764_547_200)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        ValidationOk {
            success: true,
            data: Validation {
                valid: true,
                plan: full.then_some(Plan::Monthly),
                custom_days: full.then_some(45),
                expires_at: full.then_some(at),
                note: full.then(|| "a \"note\"".into()),
                server_var: full.then(|| "v".into()),
                entitlements: if full { vec!["pro".into()] } else { Vec::new() },
                nonce: "n".into(),
                session_id: "s".into(),
                client_nonce: full.then(|| "c".into()),
            },
        }
    }

    /// The key/HWID answers (plain, sealed into an envelope, and the envelope) are written with
    /// serde: the same documents as poem-openapi's `Value` tree, optional fields included.
    #[test]
    fn key_hwid_answers_written_directly_are_the_documented_json() {
        for full in [true, false] {
            assert_same_document(&validation(full));
            assert_same_document(&ValidateBody::Plain(validation(full)));
        }
        assert_same_document(&ValidateBody::Encrypted(EncryptedReply {
            success: true,
            payload: "AAEC".into(),
        }));
    }
}
