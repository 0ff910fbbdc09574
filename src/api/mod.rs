//! The HTTP faces, thin over the domain. Each face maps errors to its own envelope in one
//! place; this module holds what all faces share: client IP, per-IP limits, body limits,
//! error mapping and response signing.

pub mod admin;
pub mod client;
pub mod metrics;
pub mod payments;
pub mod portal;
pub mod shared;
pub mod v1;

pub use shared::client_ip::{ClientIp, client_ip};

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use std::sync::Arc;

use poem::PathPattern;
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::error::Error;
use crate::state::AppState;

pub use shared::signed::{KEY_ID_HEADER, SIGNATURE_HEADER, SIGNED_BY_HEADER};

/// Which contract a path belongs to, and so which error envelope it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `/api/v1/*`, `/api/health` and the API docs: the vendor contract.
    Vendor,
    /// Every other `/api/*` path: the key/HWID contract (admin, client, portal).
    KeyVault,
}

impl Face {
    pub fn of(path: &str) -> Self {
        let vendor = path.starts_with("/api/v1/")
            || path == "/api/v1"
            || path == "/api/health"
            || path == "/api/openapi.json"
            || path.starts_with("/api/docs");
        if vendor { Face::Vendor } else { Face::KeyVault }
    }

    pub fn error(self, err: &Error) -> Response {
        match self {
            Face::Vendor => v1::error::VendorError::from_error(err).into_response(),
            Face::KeyVault => shared::keyvault_error::KvError::from_error(err).into_response(),
        }
    }

    /// A framework-level refusal (unparsable body, missing header, unknown route…).
    pub fn framework_error(self, status: StatusCode, message: String) -> Response {
        match self {
            Face::Vendor => v1::error::VendorError::from_status(status, message).into_response(),
            Face::KeyVault => {
                shared::keyvault_error::KvError::from_status(status, message).into_response()
            }
        }
    }
}

/// Wraps every API route: per-IP limit, body size limit, one error envelope per face, and
/// response signing.
pub async fn guard<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    state: AppState,
) -> poem::Result<Response> {
    let face = Face::of(req.uri().path());
    let credential = if req.uri().path().starts_with("/api/v1/updates/") {
        "X-License-Key"
    } else {
        "X-API-Key"
    };
    let ip = client_ip(&req, &state.config);
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
        // Before any key lookup, and before the rate limit (a blocked client's requests need
        // not count against anything).
        if blockable(req.uri().path())
            && let Some(until) = state.abuse.blocks.blocked_until(ip)
        {
            let left = (until - crate::domain::now_ms()).max(1000) as u64;
            return Ok(face.error(&Error::IpBlocked {
                retry_after: std::time::Duration::from_millis(left),
            }));
        }
        if let Err(e) = state.limits.per_ip.check(&ip) {
            state.abuse.rate_limited(Some(ip), None);
            return Ok(face.error(&e));
        }
    }
    if !streams_its_body(&req)
        && let Err(resp) = limit_body(&mut req, state.config.max_body_bytes, face).await
    {
        return Ok(resp);
    }
    // A panic is a bug, but it must still answer the face's envelope, never a dropped socket.
    let outcome = AssertUnwindSafe(ep.call(req)).catch_unwind().await;
    let Ok(outcome) = outcome else {
        tracing::error!("a request handler panicked");
        return Ok(face.error(&Error::Storage("a request handler panicked".into())));
    };
    match outcome {
        Ok(resp) => {
            let resp = resp.into_response();
            // Every other 429 (per API key, per license key, failed credentials, HWID reset
            // cooldown) counts towards the address's flood signal.
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                state.abuse.rate_limited(ip, None);
            }
            Ok(sign_if_asked(resp, &state, face).await)
        }
        Err(e) if e.is_from_response() => {
            let resp = keep_route(e.data::<PathPattern>().cloned(), e.into_response());
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                state.abuse.rate_limited(ip, None);
            }
            // Refusals that name their product are signed like successes.
            Ok(sign_if_asked(resp, &state, face).await)
        }
        Err(e) => {
            let status = e.status();
            let message = framework_message(&e, status, face, credential);
            let route = e.data::<PathPattern>().cloned();
            Ok(keep_route(route, face.framework_error(status, message)))
        }
    }
}

/// An error turned into the face's answer keeps the route it matched, for the request metrics.
fn keep_route(route: Option<PathPattern>, mut resp: Response) -> Response {
    if let Some(route) = route {
        resp.set_data(route);
    }
    resp
}

/// Paths an IP block applies to: licensing and client traffic. The admin API and its login
/// stay reachable, so an operator behind a blocked address can still lift the block; so do the
/// public key and the revocation lists (public, and a revocation list only ever takes rights
/// away, so even a blocked address should learn of it).
fn blockable(path: &str) -> bool {
    (path.starts_with("/api/v1/")
        && path != "/api/v1/updates/public-key"
        && path != "/api/v1/license/revocations")
        || path == "/api/validate"
        || path == "/api/session/end"
        || path == "/api/telegram"
        || path.starts_with("/api/portal/")
}

fn framework_message(e: &poem::Error, status: StatusCode, face: Face, credential: &str) -> String {
    match status {
        StatusCode::UNAUTHORIZED if face == Face::Vendor => {
            format!("Missing or invalid {credential} header")
        }
        StatusCode::UNAUTHORIZED => {
            "Authentication required: log in, or send Authorization: Bearer <token>".into()
        }
        StatusCode::NOT_FOUND => "No such endpoint".into(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed on this endpoint".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "Unsupported media type: send the body as application/json".into()
        }
        StatusCode::BAD_REQUEST => tidy_parse_error(&e.to_string()),
        _ => e.to_string(),
    }
}

/// poem-openapi's parse errors nest "(occurred while parsing …)" for every level; keep the
/// part that names the field and the rule.
fn tidy_parse_error(raw: &str) -> String {
    let mut text = raw
        .trim_start_matches("parse request payload error: ")
        .to_owned();
    while let Some(start) = text.find(" (occurred while parsing \"") {
        let end = text[start..]
            .find("\")")
            .map_or(text.len(), |e| start + e + 2);
        text.replace_range(start..end, "");
    }
    while let Some(start) = text.find("failed to parse \"") {
        let end = text[start..]
            .find("\": ")
            .map_or(text.len(), |e| start + e + 3);
        text.replace_range(start..end, "");
    }
    // Never echo the offending value: it may hold a license key and be 256 KiB long.
    // `fields::named` already says "found a boolean" (no value); no JSON value starts with
    // "a " or "an ", so such a phrase is kept rather than misread as the number `a…`.
    if let Some(at) = text.find(", found ")
        && !(text[at + 8..].starts_with("a ") || text[at + 8..].starts_with("an "))
    {
        let kind = match text[at + 8..].chars().next() {
            Some('[') => "an array",
            Some('{') => "an object",
            Some('"') => "a string",
            Some('t' | 'f') => "a boolean",
            Some('n') => "null",
            _ => "a number",
        };
        text.replace_range(at.., &format!(", found {kind}"));
    }
    format!("Invalid request: {text}")
}

/// Bundle uploads are streamed to disk by their handlers, which enforce the bundle size limit
/// themselves; every other body is buffered under the JSON limit.
fn streams_its_body(req: &Request) -> bool {
    if req.method() != Method::POST {
        return false;
    }
    let parts: Vec<&str> = req.uri().path().trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "api", "projects", _, "releases"]
            | ["", "api", "releases", _, "deltas"]
            | ["", "api", "releases", _, "artifacts"]
    )
}

/// Buffers a JSON body up to `max` bytes, refusing larger ones with 413 whether or not the
/// client declared a Content-Length.
async fn limit_body(req: &mut Request, max: usize, face: Face) -> Result<(), Response> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let too_large = || {
        face.framework_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match req.take_body().into_bytes_limit(max).await {
        Ok(bytes) => {
            req.set_body(bytes);
            Ok(())
        }
        Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(too_large()),
        Err(e) => Err(face.framework_error(
            StatusCode::BAD_REQUEST,
            format!("Cannot read the request body: {e}"),
        )),
    }
}

/// Signs a refusal that names its product (a service's error carrying the product id). Success
/// answers are signed by their [`shared::signed::SignedJson`] payload and pass through. A
/// response that asks to be signed and cannot be is replaced by the face's error: never sent
/// unsigned.
async fn sign_if_asked(resp: Response, state: &AppState, face: Face) -> Response {
    if resp.headers().contains_key(SIGNATURE_HEADER) {
        return resp;
    }
    let Some(product_id) = resp
        .headers()
        .get(SIGNED_BY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return resp;
    };
    let signer = match crate::service::Signer::of_product_id(state, &product_id) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot sign an answer of product {product_id}: {e}");
            return face.error(&e);
        }
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("cannot read a response body to sign it: {e}");
            return face.error(&Error::Storage("response lost".into()));
        }
    };
    match (signer.sign(&bytes).parse(), signer.kid().parse()) {
        (Ok(signature), Ok(kid)) => {
            parts.headers.insert(SIGNATURE_HEADER, signature);
            parts.headers.insert(KEY_ID_HEADER, kid);
            Response::from_parts(parts, bytes.into())
        }
        _ => face.error(&Error::Storage("a signature is not a header value".into())),
    }
}
