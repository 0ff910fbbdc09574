//! `POST /api/validate`.

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::payload::{Json, Response};
use poem_openapi::registry::{MetaHeader, MetaResponses, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::ClientTags;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::{KvError, KvResult};
use crate::api::{ClientIp, SIGNED_BY_HEADER};
use crate::crypto;
use crate::domain::abuse::detector::SeatLimit;
use crate::domain::audit::{self, AuditEvent};
use crate::domain::licenses::{self, License, Plan};
use crate::domain::products::{self, Product};
use crate::domain::sessions::{self, KeyCheck};
use crate::domain::{ms_to_datetime, now_ms};
use crate::error::{Error, LicenseProblem};
use crate::state::AppState;

pub struct ValidateApi {
    pub state: AppState,
}

/// How far an envelope's timestamp may be from the server's clock.
const ENVELOPE_WINDOW_SECS: i64 = 60;

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
    #[oai(deserialize_with = "named::<KeyField, _>", validator(max_length = 100))]
    pub key: Option<String>,
    /// Hardware fingerprint, e.g. SHA256(MotherboardUUID + ":" + DiskSerial).
    #[oai(
        deserialize_with = "named::<HwidField, _>",
        validator(max_length = 255)
    )]
    pub hwid: Option<String>,
    /// The project's `kv_` secret: limits the search to that project's keys.
    #[oai(
        deserialize_with = "named::<SecretField, _>",
        validator(max_length = 100)
    )]
    pub secret: Option<String>,
    /// The nonce the previous validation returned; a different one is a replay (403 REPLAY).
    #[oai(
        deserialize_with = "named::<NonceField, _>",
        validator(max_length = 128)
    )]
    pub nonce: Option<String>,
    /// A live session to refresh instead of opening a new one.
    #[oai(
        deserialize_with = "named::<SessionIdField, _>",
        validator(max_length = 64)
    )]
    pub session_id: Option<String>,
    /// Any value: echoed inside the signed answer, so a recorded answer cannot be replayed.
    #[oai(
        deserialize_with = "named::<ClientNonceField, _>",
        validator(max_length = 128)
    )]
    pub client_nonce: Option<String>,
    /// Envelope: the project whose payload key encrypted `payload`.
    #[oai(
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
    /// Envelope: base64(12-byte IV ‖ AES-256-GCM ciphertext ‖ 16-byte tag) of the JSON
    /// request plus `timestamp` (Unix seconds) and `requestId`.
    #[oai(
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

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct Validation {
    pub valid: bool,
    pub plan: Option<Plan>,
    /// Days of a CUSTOM plan.
    #[oai(skip_serializing_if_is_none)]
    pub custom_days: Option<u32>,
    /// null for keys that never expire.
    pub expires_at: Option<OffsetDateTime>,
    pub note: Option<String>,
    /// The project's server variable.
    pub server_var: Option<String>,
    /// Present this nonce on the next validation.
    pub nonce: String,
    pub session_id: String,
    #[oai(skip_serializing_if_is_none)]
    pub client_nonce: Option<String>,
}

#[derive(Object, Debug)]
pub struct ValidationOk {
    pub success: bool,
    pub data: Validation,
}

/// The answer to an envelope: the plain answer (success or error envelope) encrypted the same
/// way. Errors keep their HTTP status.
#[derive(Object, Debug)]
pub struct EncryptedReply {
    pub success: bool,
    /// base64(12-byte IV ‖ ciphertext ‖ tag) of the plain JSON answer.
    pub payload: String,
}

#[derive(Union, Debug)]
#[oai(one_of)]
pub enum ValidateBody {
    Plain(ValidationOk),
    Encrypted(EncryptedReply),
}

#[derive(ApiResponse)]
pub enum ValidateResponse {
    /// The key is valid on this machine (plain, or encrypted for an envelope request; an
    /// encrypted error keeps its 4xx status). Signed: `X-Signature` over the exact body.
    #[oai(status = 200)]
    Ok(
        Json<ValidateBody>,
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
    /// key → 404. Each call rotates the key's nonce; sessions are limited to `maxSessions`.
    /// Answers are signed (`X-Signature`, the project's Ed25519 key, over the exact body), and
    /// so are refusals whenever the key's project is known.
    #[oai(path = "/api/validate", method = "post")]
    async fn validate(
        &self,
        req: &Request,
        body: Json<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Refusal> {
        let body = body.0;
        let ip = ClientIp::of(req).map(|i| i.to_string());
        if let Some(payload) = body.payload {
            let project_id = body
                .project_id
                .ok_or_else(|| Error::Invalid("projectId is required with payload".into()))?;
            return Ok(self.validate_envelope(&project_id, &payload, ip).await?);
        }
        let key = body
            .key
            .ok_or_else(|| Error::Invalid("field `key` is required".into()))?;
        let hwid = body
            .hwid
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| Error::Invalid("field `hwid` is required (1-255 characters)".into()))?;
        let check = KeyCheck {
            hwid,
            nonce: body.nonce,
            session_id: body.session_id,
            ip,
            rotates_nonce: true,
        };
        let lookup = Lookup::Key {
            key,
            secret: body.secret,
        };
        let (product, validation) = validate_key_request(
            &self.state,
            "client",
            lookup,
            check,
            body.client_nonce,
            false,
            None,
        )
        .await?;
        Ok(Response::new(ValidateResponse::Ok(
            Json(ValidateBody::Plain(ValidationOk {
                success: true,
                data: validation,
            })),
            Some(product.id),
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

/// Telegram answers are not signed: its refusals drop the project.
impl From<Refusal> for KvError {
    fn from(refusal: Refusal) -> Self {
        refusal.error
    }
}

impl ApiResponse for Refusal {
    fn meta() -> MetaResponses {
        let mut meta = KvError::meta();
        // Only refusals about a key (403) or within a named project (404) can be signed.
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
        meta
    }

    fn register(registry: &mut Registry) {
        KvError::register(registry);
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

/// How the key is found.
pub(crate) enum Lookup {
    /// By key, within the project named by `secret` when given, else among all keys.
    Key { key: String, secret: Option<String> },
    /// By key within a known project (envelopes); a `secret`, if given, must be that
    /// project's.
    InProject {
        key: String,
        product_id: String,
        secret: Option<String>,
    },
}

impl ValidateApi {
    async fn validate_envelope(
        &self,
        project_id: &str,
        payload: &str,
        ip: Option<String>,
    ) -> KvResult<Response<ValidateResponse>> {
        let product = self
            .state
            .db
            .read(|c| products::repo::find_by_id(c, project_id))?
            .ok_or(Error::NotFound("project"))?;
        let key = self.state.master.open(&product.payload_key_sealed)?;
        let plaintext = crypto::envelope_open(&key, payload)?;
        let outcome = self.envelope_outcome(&product, &plaintext, ip).await;
        // From here on every answer, success or error, is encrypted for the client.
        let (status, plain) = match outcome {
            Ok(validation) => {
                let ok = ValidationOk {
                    success: true,
                    data: validation,
                };
                let bytes = ok.to_json_string().into_bytes();
                (StatusCode::OK, bytes)
            }
            Err(e) => {
                let resp = poem::IntoResponse::into_response(e);
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .into_vec()
                    .await
                    .map_err(|e| Error::Storage(e.to_string()))?;
                (status, bytes)
            }
        };
        self.state
            .signing_keys
            .for_product(&self.state.master, &product)?;
        let sealed = crypto::envelope_seal(&key, &plain)?;
        Ok(Response::new(ValidateResponse::Ok(
            Json(ValidateBody::Encrypted(EncryptedReply {
                success: status == StatusCode::OK,
                payload: sealed,
            })),
            Some(product.id),
        ))
        .status(status))
    }

    async fn envelope_outcome(
        &self,
        product: &Product,
        plaintext: &[u8],
        ip: Option<String>,
    ) -> Result<Validation, KvError> {
        let request: EnvelopeRequest = serde_json::from_slice(plaintext).map_err(|e| {
            Error::Invalid(format!("the decrypted payload is not a valid request: {e}"))
        })?;
        if request.key.len() > 100 || request.hwid.is_empty() || request.hwid.len() > 255 {
            return Err(Error::Invalid(
                "key (1-100) and hwid (1-255 characters) are required".into(),
            )
            .into());
        }
        if request.secret.as_ref().is_some_and(|s| s.len() > 100) {
            return Err(Error::Invalid("secret must be at most 100 characters".into()).into());
        }
        if !(16..=128).contains(&request.request_id.len()) {
            return Err(Error::Invalid("requestId must be 16-128 characters".into()).into());
        }
        let now = now_ms();
        if (request.timestamp - now / 1000).abs() > ENVELOPE_WINDOW_SECS {
            return Err(Error::Forbidden(format!(
                "stale request: timestamp must be within {ENVELOPE_WINDOW_SECS} s of the server clock"
            ))
            .into());
        }
        let check = KeyCheck {
            hwid: request.hwid,
            nonce: request.nonce,
            session_id: request.session_id,
            ip,
            rotates_nonce: true,
        };
        let lookup = Lookup::InProject {
            key: request.key,
            product_id: product.id.clone(),
            secret: request.secret,
        };
        // The request id is remembered in the same transaction as the validation.
        let seen = (
            request.request_id,
            (now / 1000 + ENVELOPE_WINDOW_SECS + 1) * 1000,
        );
        validate_key_request(
            &self.state,
            "client",
            lookup,
            check,
            request.client_nonce,
            true,
            Some(seen),
        )
        .await
        .map(|(_, v)| v)
        // The envelope is signed as a whole by `validate_envelope`.
        .map_err(|refusal| refusal.error)
    }
}

/// Validates a key for a machine in one writer job (see `sessions::validate_key`), audits the
/// outcome and opens the project's signing key for the answer, or for the refusal when the
/// key's project is known. Shared by `/api/validate` and `/api/telegram`.
pub(crate) async fn validate_key_request(
    state: &AppState,
    actor: &str,
    lookup: Lookup,
    check: KeyCheck,
    client_nonce: Option<String>,
    encrypted: bool,
    seen_request: Option<(String, i64)>,
) -> Result<(Product, Validation), Refusal> {
    let raw_key = match &lookup {
        Lookup::Key { key, .. } | Lookup::InProject { key, .. } => licenses::normalize_key(key),
    };
    state.limits.per_license_key.check(&raw_key)?;
    let ip = check.ip.clone();
    let client_ip: Option<std::net::IpAddr> = ip.as_deref().and_then(|i| i.parse().ok());
    let hwid = check.hwid.clone();
    let unknown_scope = lookup.abuse_scope_hint();
    let job_actor = actor.to_owned();
    let outcome = state
        .db
        .write(move |c| {
            let (license, product) = find(c, &lookup, &raw_key)?;
            if product.settings.require_encryption && !encrypted {
                return Ok(Err((
                    license,
                    product,
                    Error::Forbidden(
                        "This project accepts only encrypted requests (projectId + payload)".into(),
                    ),
                )));
            }
            if let Some((request_id, expires_at)) = &seen_request
                && !sessions::repo::remember_request(c, &product.id, request_id, *expires_at)?
            {
                return Ok(Err((
                    license,
                    product,
                    Error::License(LicenseProblem::NonceMismatch),
                )));
            }
            let now = now_ms();
            // A refusal is audited and committed, but nothing the refused validation wrote
            // (a newly bound machine, a started plan clock) is kept.
            let validated = crate::storage::undo_on_error(c, |c| {
                sessions::validate_key(c, &license, &product, &check, now)
            });
            match validated {
                Ok(v) => {
                    audit::repo::insert(
                        c,
                        &AuditEvent::new(&license.tenant_id, &job_actor, crate::domain::audit::AuditAction::KeyValidate)
                            .license(&product.id, &license.id)
                            .machine(&check.hwid)
                            .ip(check.ip.as_deref())
                            .detail(json!({"code": "VALID", "hwidBound": v.bound_now, "encrypted": encrypted})),
                    )?;
                    Ok(Ok((product, v)))
                }
                Err(e @ Error::License(_)) => Ok(Err((license, product, e))),
                Err(e) => Err(e),
            }
        })
        .await;
    let outcome = match outcome {
        Err(e @ Error::NotFound("key")) => {
            let scope = unknown_scope.resolve();
            // A secret naming a real project makes the 404 that project's answer.
            let project = match &scope {
                crate::abuse::Scope::ClientSecret(hash) => state
                    .db
                    .read(|c| products::repo::find_by_client_secret(c, hash))
                    .ok()
                    .flatten(),
                _ => None,
            };
            state.abuse.unknown_key(client_ip, scope);
            return Err(refusal(state, e, project.as_ref()));
        }
        other => other?,
    };
    let (product, validated) = match outcome {
        Ok(ok) => {
            state.abuse.license_used(
                client_ip,
                &ok.1.license,
                Some(&hwid),
                None,
                Some(&ok.1.session_id),
            );
            ok
        }
        Err((license, product, e)) => {
            state
                .abuse
                .license_used(client_ip, &license, Some(&hwid), None, None);
            let seat = match &e {
                Error::License(LicenseProblem::HwidMismatch) => Some(SeatLimit::Activations),
                Error::License(LicenseProblem::SessionLimitReached) => Some(SeatLimit::Sessions),
                _ => None,
            };
            if let Some(limit) = seat {
                state
                    .abuse
                    .seat_refused(client_ip, &license, Some(&hwid), limit);
            }
            let code = match &e {
                Error::License(p) => crate::api::shared::keyvault_error::license_code(*p),
                _ => "FORBIDDEN",
            };
            state.db.writer().record(
                AuditEvent::new(
                    &license.tenant_id,
                    actor,
                    crate::domain::audit::AuditAction::KeyValidateRefused,
                )
                .license(&license.product_id, &license.id)
                .machine(&hwid)
                .ip(ip.as_deref())
                .detail(json!({"code": code})),
            );
            return Err(refusal(state, e, Some(&product)));
        }
    };
    state.signing_keys.for_product(&state.master, &product)?;
    let l = &validated.license;
    Ok((
        product.clone(),
        Validation {
            valid: true,
            plan: l.plan,
            custom_days: (l.plan == Some(Plan::Custom))
                .then_some(l.plan_days)
                .flatten(),
            expires_at: l.valid_until.map(ms_to_datetime),
            note: l.note.clone(),
            server_var: product.settings.server_var.clone(),
            nonce: validated.nonce,
            session_id: validated.session_id,
            client_nonce,
        },
    ))
}

/// The refusal of `err`, to be signed with `project`'s key when the project is known. If the
/// key cannot be opened the refusal goes out unsigned rather than as a 500: a client that
/// checks signatures rejects it either way.
fn refusal(state: &AppState, err: Error, project: Option<&Product>) -> Refusal {
    let signed_by = project.and_then(|p| match state.signing_keys.for_product(&state.master, p) {
        Ok(_) => Some(p.id.clone()),
        Err(e) => {
            tracing::error!("cannot open the signing key of product {}: {e}", p.id);
            None
        }
    });
    Refusal {
        error: KvError::from_error(&err),
        signed_by,
    }
}

/// Where a report of an unknown key belongs, kept cheap until it is needed.
pub(crate) enum ScopeHint {
    Secret(String),
    Product(String),
    Nothing,
}

impl ScopeHint {
    pub(crate) fn resolve(self) -> crate::abuse::Scope {
        match self {
            // Hashed only on the failure path; the project is looked up off the request path.
            Self::Secret(s) => {
                crate::abuse::Scope::ClientSecret(crypto::sha256(s.trim().as_bytes()))
            }
            Self::Product(p) => crate::abuse::Scope::ProductId(p),
            Self::Nothing => crate::abuse::Scope::Unknown,
        }
    }
}

impl Lookup {
    pub(crate) fn abuse_scope_hint(&self) -> ScopeHint {
        match self {
            Lookup::Key {
                secret: Some(s), ..
            } => ScopeHint::Secret(s.clone()),
            Lookup::Key { secret: None, .. } => ScopeHint::Nothing,
            Lookup::InProject { product_id, .. } => ScopeHint::Product(product_id.clone()),
        }
    }
}

/// The key and its project, or 404 when the key is unknown (or not in the named project).
pub(crate) fn find(
    c: &rusqlite::Connection,
    lookup: &Lookup,
    key: &str,
) -> Result<(License, Product), Error> {
    let license = match lookup {
        Lookup::Key {
            secret: Some(secret),
            ..
        } => {
            let product =
                products::repo::find_by_secret(c, secret)?.ok_or(Error::NotFound("key"))?;
            licenses::repo::find_by_key_in_product(c, &product.id, key)?
        }
        Lookup::Key { secret: None, .. } => licenses::repo::find_by_key_everywhere(c, key)?,
        Lookup::InProject {
            product_id, secret, ..
        } => {
            if let Some(secret) = secret {
                let named = products::repo::find_by_secret(c, secret)?;
                if named.is_none_or(|p| p.id != *product_id) {
                    return Err(Error::NotFound("key"));
                }
            }
            licenses::repo::find_by_key_in_product(c, product_id, key)?
        }
    }
    .ok_or(Error::NotFound("key"))?;
    let product = products::repo::find(c, &license.tenant_id, &license.product_id)?
        .ok_or(Error::NotFound("key"))?;
    Ok((license, product))
}
