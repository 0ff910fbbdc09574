//! `GET /metrics`, the Prometheus scrape: an operator's monitoring face, outside `/api` and
//! outside the OpenAPI document (it is not part of either contract, and its answer is the
//! Prometheus text format, not JSON). Errors are plain text, which is what a scraper logs.

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use crate::api::shared::client_ip::client_ip;
use crate::error::Error;
use crate::service::metrics::{self, Access};
use crate::state::AppState;

/// The Prometheus text exposition format, version 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// On the main listener: behind the bearer token (`--metrics-token`).
#[handler]
pub fn scrape_with_token(req: &Request, state: Data<&AppState>) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ip = client_ip(req, &state.config);
    answer(metrics::read(&state, Access::Token { presented, ip }))
}

/// On the `--metrics-bind` listener: no token.
#[handler]
pub fn scrape_private(state: Data<&AppState>) -> Response {
    answer(metrics::read(&state, Access::PrivateListener))
}

fn answer(outcome: Result<String, Error>) -> Response {
    match outcome {
        Ok(text) => Response::builder()
            .content_type(EXPOSITION)
            .header(header::CACHE_CONTROL, "no-store")
            .body(text),
        Err(e) => refusal(&e),
    }
}

fn refusal(e: &Error) -> Response {
    let plain = |status: StatusCode, text: String| {
        Response::builder()
            .status(status)
            .content_type("text/plain; charset=utf-8")
            .body(text)
    };
    match e {
        Error::NotFound(_) => plain(StatusCode::NOT_FOUND, "Not found".into()),
        Error::Unauthorized(msg) => {
            let mut resp = plain(StatusCode::UNAUTHORIZED, msg.clone());
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            resp
        }
        Error::RateLimited { retry_after, .. } => {
            let secs = retry_after.as_secs().max(1);
            let mut resp = plain(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        other => {
            tracing::error!("metrics scrape failed: {other}");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Metrics are unavailable (see the server log)".into(),
            )
        }
    }
}
