//! The key/HWID face's use cases: `/api/validate` (plain or in an encrypted envelope) and the
//! Telegram bot's validate and info. The key is the credential, optionally narrowed to one
//! project by its `kv_` secret or by the envelope's project: nothing else is reached.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;

use crate::crypto;
use crate::domain::abuse::detector::SeatLimit;
use crate::domain::activations;
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::licenses::{self, License};
use crate::domain::products::{self, Product};
use crate::domain::sessions::{self, KeyCheck};
use crate::domain::{ProductId, now_ms};
use crate::error::{Error, LicenseProblem};
use crate::service::{Signed, Signer};
use crate::state::AppState;

/// How far an envelope's timestamp may be from the server's clock.
pub const ENVELOPE_WINDOW_SECS: i64 = 60;

/// Who presents a key: the licensed app itself, or a Telegram bot on its behalf (the audit
/// trail names the bot's user).
#[derive(Debug, Clone)]
pub struct KeyClient {
    actor: Cow<'static, str>,
    ip: Option<IpAddr>,
    /// Only the app itself moves its anti-replay chain (see [`KeyCheck::rotates_nonce`]).
    rotates_nonce: bool,
}

impl KeyClient {
    pub fn app(ip: Option<IpAddr>) -> Self {
        Self {
            actor: Cow::Borrowed("client"),
            ip,
            rotates_nonce: true,
        }
    }

    pub fn telegram(id: Option<&str>, username: Option<&str>, ip: Option<IpAddr>) -> Self {
        Self {
            actor: Cow::Owned(format!(
                "telegram:{}:{}",
                id.unwrap_or("-"),
                username.unwrap_or("-")
            )),
            ip,
            rotates_nonce: false,
        }
    }

    pub fn actor_label(&self) -> &str {
        &self.actor
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    fn ip_text(&self) -> Option<String> {
        self.ip.map(|i| i.to_string())
    }
}

/// How the key is found.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// By key, within the project named by `secret` when given, else among all keys.
    Key { key: String, secret: Option<String> },
    /// By key within a known project (envelopes); a `secret`, if given, must be that
    /// project's.
    InProject {
        key: String,
        product_id: ProductId,
        secret: Option<String>,
    },
}

/// A validation request: the key, the machine and the app's session and nonce chain.
#[derive(Debug)]
pub struct KeyRequest {
    pub lookup: KeyLookup,
    pub hwid: String,
    /// The nonce the previous validation handed out.
    pub nonce: Option<String>,
    /// A live session to refresh instead of opening a new one.
    pub session_id: Option<String>,
    /// Present when the request came in an encrypted envelope.
    pub sealed: Option<SealedRequest>,
}

/// What an envelope adds against replays: when it was sealed and a unique id.
#[derive(Debug)]
pub struct SealedRequest {
    /// Unix seconds when the client sealed the envelope.
    pub timestamp: i64,
    pub request_id: String,
}

/// A key valid on the machine.
#[derive(Debug)]
pub struct KeyValidation {
    /// The key as it is now (a first validation may have started its plan's clock).
    pub license: License,
    /// Present this nonce on the next validation.
    pub nonce: String,
    pub session_id: String,
    /// The project's server variable.
    pub server_var: Option<String>,
}

/// A refused validation. When the key's project is known it names it, so the refusal is
/// signed like a success: an app can tell a genuine "banned" from a forged one.
#[derive(Debug)]
pub struct KeyRefusal {
    pub error: Error,
    pub signed_by: Option<ProductId>,
}

impl From<Error> for KeyRefusal {
    fn from(error: Error) -> Self {
        Self {
            error,
            signed_by: None,
        }
    }
}

/// A key's state for a bot: read-only.
#[derive(Debug)]
pub struct KeyInfo {
    pub license: License,
    /// Whether a machine is bound.
    pub hwid_bound: bool,
    /// With a HWID: whether it is a bound machine.
    pub hwid_match: Option<bool>,
    /// When it was read (the status is as of then).
    pub at: i64,
}

/// The project an encrypted envelope names, with its payload key and signer: the face opens
/// and seals envelopes with it and signs the sealed answer, success or refusal.
pub struct EnvelopeProject {
    pub product_id: ProductId,
    payload_key: Vec<u8>,
    pub signer: Signer,
}

impl EnvelopeProject {
    /// The plaintext of an envelope's `payload`.
    pub fn open(&self, payload: &str) -> Result<Vec<u8>, Error> {
        crypto::envelope_open(&self.payload_key, payload)
    }

    /// `plaintext` sealed for the client, base64.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, Error> {
        crypto::envelope_seal(&self.payload_key, plaintext)
    }
}

/// The project named by an envelope's `projectId`, its payload key open.
pub fn envelope_project(state: &AppState, project_id: &str) -> Result<EnvelopeProject, Error> {
    let product = state
        .db
        .read(|c| products::repo::find_by_id(c, project_id))?
        .ok_or(Error::NotFound("project"))?;
    let payload_key = state.master.open(&product.payload_key_sealed)?;
    let signer = Signer::of(state, &product)?;
    Ok(EnvelopeProject {
        product_id: ProductId::from(product.id),
        payload_key,
        signer,
    })
}

/// Validates a key for the app on a machine: binds the HWID on first use, opens or refreshes
/// a session, rotates the nonce; audited, reported to abuse detection, signed by the key's
/// project.
pub async fn validate_key(
    state: &AppState,
    client: &KeyClient,
    request: KeyRequest,
) -> Result<Signed<KeyValidation>, KeyRefusal> {
    let (product, validation) = run_validation(state, client, request).await?;
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(validation, signer))
}

/// Validates a key for a bot on the app's behalf: as [`validate_key`], but the app's nonce
/// chain stays intact (with a bot client) and the answer is not signed.
pub async fn telegram_validate(
    state: &AppState,
    client: &KeyClient,
    key: String,
    secret: Option<String>,
    hwid: String,
) -> Result<KeyValidation, Error> {
    let request = KeyRequest {
        lookup: KeyLookup::Key { key, secret },
        hwid,
        nonce: None,
        session_id: None,
        sealed: None,
    };
    run_validation(state, client, request)
        .await
        .map(|(_, v)| v)
        // Bot answers are not signed: the refusal drops its project.
        .map_err(|refusal| refusal.error)
}

/// A key's state, read-only; audited as the bot's look-up.
pub fn key_info(
    state: &AppState,
    client: &KeyClient,
    key: String,
    secret: Option<String>,
    hwid: Option<String>,
) -> Result<KeyInfo, Error> {
    let normalized = licenses::normalize_key(&key);
    state.limits.per_license_key.check(&normalized)?;
    let lookup = KeyLookup::Key { key, secret };
    let found = state.db.read(|c| {
        let (license, _) = find_key(state, c, &lookup, &normalized)?;
        let machines = activations::repo::for_license(c, &license.id)?;
        Ok((license, machines))
    });
    if let Err(Error::NotFound("key")) = &found {
        state
            .abuse
            .unknown_key(client.ip, lookup.abuse_scope_hint().resolve());
    }
    let (license, machines) = found?;
    let mut event = AuditEvent::new(
        &license.tenant_id,
        client.actor_label(),
        AuditAction::KeyInfo,
    )
    .license(&license.product_id, &license.id)
    .ip(client.ip_text().as_deref());
    if let Some(hwid) = hwid.as_deref().filter(|h| !h.is_empty()) {
        event = event.machine(hwid);
    }
    state.db.writer().record(event);
    Ok(KeyInfo {
        hwid_bound: !machines.is_empty(),
        hwid_match: hwid.map(|h| machines.iter().any(|m| m.machine_id == h)),
        license,
        at: now_ms(),
    })
}

/// Validates a key in one writer job (see `sessions::validate_key`), audits the outcome and
/// reports it to abuse detection. A refusal names the key's project when it is known.
async fn run_validation(
    state: &AppState,
    client: &KeyClient,
    request: KeyRequest,
) -> Result<(Arc<Product>, KeyValidation), KeyRefusal> {
    let hwid = request.hwid.clone();
    let check = KeyCheck {
        hwid: request.hwid,
        nonce: request.nonce,
        session_id: request.session_id,
        ip: client.ip_text(),
        rotates_nonce: client.rotates_nonce,
    };
    let actor = client.actor.clone();
    let outcome = run_key_request(
        state,
        client,
        request.lookup,
        request.sealed,
        &hwid,
        AuditAction::KeyValidateRefused,
        move |c, license, product, encrypted, now| {
            let v = sessions::validate_key(c, license, product, &check, now)?;
            if v.bound_now
                && let Some(m) =
                    crate::domain::activations::repo::find(c, &license.id, &check.hwid)?
            {
                crate::service::events::emit(
                    c,
                    &license.tenant_id,
                    Some(&license.product_id),
                    crate::domain::webhooks::EventType::MachineActivated,
                    crate::service::events::machine_data(&v.license, &m, None),
                )?;
            }
            let mut detail =
                json!({"code": "VALID", "hwidBound": v.bound_now, "encrypted": encrypted});
            if !v.ended.is_empty() {
                // END_OLDEST made room: the sessions it ended are named in the trail.
                detail["endedSessions"] = json!(v.ended);
            }
            let event = AuditEvent::new(&license.tenant_id, &actor, AuditAction::KeyValidate)
                .license(&product.id, &license.id)
                .machine(&check.hwid)
                .ip(check.ip.as_deref())
                .detail(detail);
            Ok((v, event))
        },
    )
    .await;
    count_validation(state, &outcome);
    if outcome.as_ref().is_ok_and(|(_, v)| v.bound_now) {
        state.webhooks.wake();
    }
    let (product, validated) = outcome?;
    state.abuse.license_used(
        client.ip,
        &validated.license,
        Some(&hwid),
        None,
        Some(&validated.session_id),
    );
    let validation = KeyValidation {
        license: validated.license,
        nonce: validated.nonce,
        session_id: validated.session_id,
        server_var: product.settings.server_var.clone(),
    };
    Ok((product, validation))
}

/// A key/HWID validation's result code in the metrics, as the face answers it; a HWID bound
/// on first use (or refused for the activation limit) is that face's activation.
fn count_validation(
    state: &AppState,
    outcome: &Result<(Arc<Product>, sessions::KeyValidated), KeyRefusal>,
) {
    use crate::telemetry::Face;
    match outcome {
        Ok((_, v)) => {
            state.telemetry.validation(Face::KeyHwid, "VALID");
            if v.bound_now {
                state.telemetry.activation(Face::KeyHwid, "ACTIVATED");
            }
        }
        Err(refusal) => {
            let code = match &refusal.error {
                Error::License(p) => p.key_code(),
                Error::NotFound(_) => "NOT_FOUND",
                Error::Forbidden(_) => "FORBIDDEN",
                Error::RateLimited { .. } => "RATE_LIMITED",
                Error::Invalid(_) => "INVALID",
                _ => "ERROR",
            };
            state.telemetry.validation(Face::KeyHwid, code);
            if let Error::License(
                LicenseProblem::HwidMismatch | LicenseProblem::ActivationLimitReached,
            ) = &refusal.error
            {
                state.telemetry.activation(Face::KeyHwid, code);
            }
        }
    }
}

/// An app's request to end its own session, authenticated like a validation (the key, an
/// optional project secret, or an encrypted envelope).
#[derive(Debug)]
pub struct EndSessionRequest {
    pub lookup: KeyLookup,
    pub hwid: String,
    pub session_id: String,
    /// The session's current nonce; a different one is a replay.
    pub nonce: Option<String>,
    pub sealed: Option<SealedRequest>,
}

/// A session the app ended.
#[derive(Debug)]
pub struct SessionEnded {
    pub session_id: String,
    pub at: i64,
}

/// Ends the app's own session (its place is free at once): one writer job, audited as
/// `key.session.end`, signed by the key's project. An ended or unknown session is refused
/// (403 `SESSION_ENDED`, 404 `SESSION_NOT_FOUND`), and so is a stale nonce (`REPLAY`).
pub async fn end_session(
    state: &AppState,
    client: &KeyClient,
    request: EndSessionRequest,
) -> Result<Signed<SessionEnded>, KeyRefusal> {
    let hwid = request.hwid;
    let session_id = request.session_id;
    let nonce = request.nonce;
    let actor = client.actor.clone();
    let ip = client.ip_text();
    let job_hwid = hwid.clone();
    let (product, ended) = run_key_request(
        state,
        client,
        request.lookup,
        request.sealed,
        &hwid,
        AuditAction::KeySessionEndRefused,
        move |c, license, product, encrypted, now| {
            sessions::end_session(
                c,
                license,
                product,
                &job_hwid,
                &session_id,
                nonce.as_deref(),
                now,
            )?;
            let event = AuditEvent::new(&license.tenant_id, &actor, AuditAction::KeySessionEnd)
                .license(&product.id, &license.id)
                .machine(&job_hwid)
                .ip(ip.as_deref())
                .detail(json!({"sessionId": session_id, "encrypted": encrypted}));
            Ok((
                SessionEnded {
                    session_id,
                    at: now,
                },
                event,
            ))
        },
    )
    .await?;
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(ended, signer))
}

/// One request of the key/HWID face in one writer job: finds the key (see [`find_key`]),
/// applies the project's encryption rule and the envelope's time window and request-id rule,
/// then runs `job` with the key, its project, whether the request was encrypted and the time.
/// `job` answers its result and the event to audit with it, in the same transaction; its
/// refusal undoes whatever it wrote, is audited as `refused` (with its code) and reported to
/// abuse detection. An unknown key is audited in the project the request named, and reported.
/// A refusal names the key's project when it is known, so the face can sign it.
pub(super) async fn run_key_request<T, F>(
    state: &AppState,
    client: &KeyClient,
    lookup: KeyLookup,
    sealed: Option<SealedRequest>,
    hwid: &str,
    refused: AuditAction,
    job: F,
) -> Result<(Arc<Product>, T), KeyRefusal>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &License, &Product, bool, i64) -> Result<(T, AuditEvent), Error>
        + Send
        + 'static,
{
    let now = now_ms();
    // The request id is remembered in the same transaction as the request.
    let seen_request = match sealed {
        Some(sealed) => {
            if (sealed.timestamp - now / 1000).abs() > ENVELOPE_WINDOW_SECS {
                return Err(Error::Forbidden(format!(
                    "stale request: timestamp must be within {ENVELOPE_WINDOW_SECS} s of the server clock"
                ))
                .into());
            }
            Some((
                sealed.request_id,
                (now / 1000 + ENVELOPE_WINDOW_SECS + 1) * 1000,
            ))
        }
        None => None,
    };
    let encrypted = seen_request.is_some();
    let raw_key = match &lookup {
        KeyLookup::Key { key, .. } | KeyLookup::InProject { key, .. } => {
            licenses::normalize_key(key)
        }
    };
    state.limits.per_license_key.check(&raw_key)?;
    let unknown_scope = lookup.abuse_scope_hint();
    let job_state = state.clone();
    let outcome = state
        .db
        .write(move |c| {
            let (license, product) = find_key(&job_state, c, &lookup, &raw_key)?;
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
                    Error::License(LicenseProblem::RequestReplayed),
                )));
            }
            let now = now_ms();
            // A refusal is audited and committed, but nothing the refused request wrote (a
            // newly bound machine, a started plan clock, an ended session) is kept.
            let done =
                crate::storage::undo_on_error(c, |c| job(c, &license, &product, encrypted, now));
            match done {
                Ok((answer, event)) => {
                    crate::domain::audit::repo::insert(c, &event)?;
                    Ok(Ok((product, answer)))
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
            // Audited like the vendor face's unknown keys, in the tenant of the project the
            // request named (by secret or envelope). Without one nothing names a tenant; abuse
            // detection still counts the guess.
            let named = match (&project, &scope) {
                (Some(p), _) => Some(p.clone()),
                (None, crate::abuse::Scope::ProductId(id)) => state
                    .db
                    .read(|c| products::repo::find_any(c, id))
                    .ok()
                    .flatten(),
                _ => None,
            };
            if let Some(p) = named {
                state.db.writer().record(
                    AuditEvent::new(&p.tenant_id, client.actor_label(), refused)
                        .product(&p.id)
                        .machine(hwid)
                        .ip(client.ip_text().as_deref())
                        .detail(json!({"code": "NOT_FOUND"})),
                );
            }
            state.abuse.unknown_key(client.ip, scope);
            return Err(KeyRefusal {
                error: e,
                signed_by: project.map(|p| ProductId::from(p.id)),
            });
        }
        other => other?,
    };
    match outcome {
        Ok(done) => Ok(done),
        Err((license, product, e)) => {
            state
                .abuse
                .license_used(client.ip, &license, Some(hwid), None, None);
            let seat = match &e {
                Error::License(LicenseProblem::HwidMismatch) => Some(SeatLimit::Activations),
                Error::License(LicenseProblem::SessionLimitReached) => Some(SeatLimit::Sessions),
                _ => None,
            };
            if let Some(limit) = seat {
                state
                    .abuse
                    .seat_refused(client.ip, &license, Some(hwid), limit);
            }
            let code = match &e {
                Error::License(p) => p.key_code(),
                _ => "FORBIDDEN",
            };
            state.db.writer().record(
                AuditEvent::new(&license.tenant_id, client.actor_label(), refused)
                    .license(&license.product_id, &license.id)
                    .machine(hwid)
                    .ip(client.ip_text().as_deref())
                    .detail(json!({"code": code})),
            );
            Err(KeyRefusal {
                error: e,
                signed_by: Some(ProductId::from(product.id.as_str())),
            })
        }
    }
}

/// Where a report of an unknown key belongs, kept cheap until it is needed.
pub enum ScopeHint {
    Secret(String),
    Product(String),
    Nothing,
}

impl ScopeHint {
    pub fn resolve(self) -> crate::abuse::Scope {
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

impl KeyLookup {
    pub fn abuse_scope_hint(&self) -> ScopeHint {
        match self {
            KeyLookup::Key {
                secret: Some(s), ..
            } => ScopeHint::Secret(s.clone()),
            KeyLookup::Key { secret: None, .. } => ScopeHint::Nothing,
            KeyLookup::InProject { product_id, .. } => ScopeHint::Product(product_id.to_string()),
        }
    }
}

/// The key and its project, or 404 when the key is unknown (or not in the named project).
fn find_key(
    state: &AppState,
    c: &Connection,
    lookup: &KeyLookup,
    key: &str,
) -> Result<(License, Arc<Product>), Error> {
    let license = match lookup {
        KeyLookup::Key {
            secret: Some(secret),
            ..
        } => {
            let product_id =
                products::repo::id_by_secret(c, secret)?.ok_or(Error::NotFound("key"))?;
            licenses::repo::find_by_key_in_product(c, &product_id, key)?
        }
        KeyLookup::Key { secret: None, .. } => licenses::repo::find_by_key_everywhere(c, key)?,
        KeyLookup::InProject {
            product_id, secret, ..
        } => {
            if let Some(secret) = secret {
                let named = products::repo::id_by_secret(c, secret)?;
                if named.is_none_or(|id| id != product_id.as_str()) {
                    return Err(Error::NotFound("key"));
                }
            }
            licenses::repo::find_by_key_in_product(c, product_id, key)?
        }
    }
    .ok_or(Error::NotFound("key"))?;
    let product = super::product_of(state, c, &license).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound("key"),
        e => e,
    })?;
    Ok((license, product))
}
