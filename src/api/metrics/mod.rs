//! `GET /metrics`, the Prometheus scrape: an operator's monitoring face, outside `/api`. It is
//! declared in the OpenAPI document (its answer is the Prometheus text format, not JSON, and its
//! errors are plain text, which is what a scraper logs), and on the main listener the document's
//! operation is what serves it. The `--metrics-bind` listener answers the same way, without the
//! token.

use poem::http::header;
use poem::web::Data;
use poem::{IntoResponse, Request, Response, handler};
use poem_openapi::auth::Bearer;
use poem_openapi::payload::{Payload, PlainText};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use poem_openapi::{ApiResponse, OpenApi, OpenApiService, Tags};

use crate::api::shared::client_ip::client_ip;
use crate::error::Error;
use crate::service::metrics::{self, Access};
use crate::state::AppState;

/// The Prometheus text exposition format, version 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The scrape's body, sent with the exposition format's own content type.
pub struct Exposition(pub String);

impl Payload for Exposition {
    const CONTENT_TYPE: &'static str = EXPOSITION;

    fn schema_ref() -> MetaSchemaRef {
        <String as poem_openapi::types::Type>::schema_ref()
    }
}

impl IntoResponse for Exposition {
    fn into_response(self) -> Response {
        Response::builder().content_type(EXPOSITION).body(self.0)
    }
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Every series, in the Prometheus text exposition format (version 0.0.4).
    #[oai(status = 200)]
    Ok(
        Exposition,
        /// Always `no-store`: each scrape is read fresh.
        #[oai(header = "Cache-Control")]
        String,
    ),
    /// No bearer token, or not the metrics token (`--metrics-token`).
    #[oai(status = 401)]
    Unauthorized(
        PlainText<String>,
        /// `Bearer realm="metrics"`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// Metrics are off, or this listener has no token configured (they are then served on
    /// `--metrics-bind` only, if anywhere): the endpoint does not exist here.
    #[oai(status = 404)]
    NotFound(PlainText<String>),
    /// Too many wrong tokens from this address (the failed-credential budget).
    #[oai(status = 429)]
    TooManyRequests(
        PlainText<String>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// The metrics could not be read (see the server log).
    #[oai(status = 503)]
    Unavailable(PlainText<String>),
}

/// The metrics token (`--metrics-token` or `--metrics-token-file`), as a bearer token.
#[allow(dead_code)]
#[derive(SecurityScheme)]
#[oai(rename = "MetricsToken", ty = "bearer")]
pub struct MetricsBearer(Bearer);

/// The token the scraper presented, if any: checked by the service (a missing one answers
/// 401 or 404 like a wrong one), so extracting it never refuses.
pub struct MetricsAuth(Option<String>);

impl<'a> ApiExtractor<'a> for MetricsAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <MetricsBearer as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["MetricsToken"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        Ok(MetricsAuth(presented))
    }
}

#[derive(Tags)]
enum MetricsTags {
    /// Prometheus metrics for the operator's monitoring.
    Metrics,
}

pub struct MetricsApi {
    pub state: AppState,
}

#[OpenApi(tag = "MetricsTags::Metrics")]
impl MetricsApi {
    /// Prometheus metrics
    ///
    /// Requests by route and status with a latency histogram, validations and activations by
    /// result, the writer's queue, batch size and commit latency, database and WAL size, abuse
    /// flags and rate-limit refusals. On the main listener only with `--metrics-token` (a
    /// bearer token; wrong tokens spend the address's failed-credential budget); on
    /// `--metrics-bind` without a token.
    #[oai(path = "/metrics", method = "get")]
    async fn scrape(&self, req: &Request, auth: MetricsAuth) -> MetricsResponse {
        let ip = client_ip(req, &self.state.config);
        answer(metrics::read(
            &self.state,
            Access::Token {
                presented: auth.0.as_deref(),
                ip,
            },
        ))
    }
}

/// What serves `/metrics` on the main listener: the document's own operation.
pub fn service(state: &AppState) -> OpenApiService<MetricsApi, ()> {
    OpenApiService::new(
        MetricsApi {
            state: state.clone(),
        },
        "Keyward metrics",
        env!("CARGO_PKG_VERSION"),
    )
}

/// On the `--metrics-bind` listener: no token.
#[handler]
pub fn scrape_private(state: Data<&AppState>) -> Response {
    answer(metrics::read(&state, Access::PrivateListener)).into_response()
}

fn answer(outcome: Result<String, Error>) -> MetricsResponse {
    match outcome {
        Ok(text) => MetricsResponse::Ok(Exposition(text), "no-store".into()),
        Err(Error::NotFound(_)) => MetricsResponse::NotFound(PlainText("Not found".into())),
        Err(Error::Unauthorized(msg)) => {
            MetricsResponse::Unauthorized(PlainText(msg), "Bearer realm=\"metrics\"".into())
        }
        Err(e @ Error::RateLimited { retry_after, .. }) => {
            let secs = retry_after.as_secs().max(1);
            MetricsResponse::TooManyRequests(PlainText(e.to_string()), secs)
        }
        Err(other) => {
            tracing::error!("metrics scrape failed: {other}");
            MetricsResponse::Unavailable(PlainText(
                "Metrics are unavailable (see the server log)".into(),
            ))
        }
    }
}
