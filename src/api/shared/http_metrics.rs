//! Counts and times every HTTP request by its route template (poem's matched pattern, e.g.
//! `/api/keys/:id`): the raw path would put license keys and ids into label values.

use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::state::AppState;

/// A path no route matched: one label value for all of them.
const UNMATCHED: &str = "unmatched";

pub async fn track<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    state: AppState,
) -> poem::Result<Response> {
    if !state.telemetry.enabled() {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let started = Instant::now();
    let method = method_label(req.method());
    let outcome = ep.call(req).await.map(IntoResponse::into_response);
    let (status, route) = match &outcome {
        Ok(resp) => (resp.status(), resp.data::<PathPattern>()),
        Err(e) => (e.status(), e.data::<PathPattern>()),
    };
    let route = route.map_or(UNMATCHED, |p| &p.0);
    state
        .telemetry
        .http_request(method, route, status.as_u16(), started.elapsed());
    outcome
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
