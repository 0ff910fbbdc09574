//! `GET /api/health`.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::ApiTags;
use super::error::VendorResult;
use crate::state::AppState;

pub struct HealthApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
pub struct Health {
    pub success: bool,
    /// `ok`, or `degraded` when the database is unreachable.
    pub status: String,
    pub version: String,
    pub timestamp: OffsetDateTime,
    /// `ok` or `unreachable`.
    pub database: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The service and its database work.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// Service degraded: the database is unreachable.
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[OpenApi]
impl HealthApi {
    /// Service and database status
    ///
    /// No authentication. Rate limited per IP like every API route (hence the error statuses).
    #[oai(path = "/api/health", method = "get", tag = "ApiTags::Health")]
    async fn health(&self) -> VendorResult<HealthResponse> {
        let db_ok = self.state.db.ping();
        let body = Json(Health {
            success: db_ok,
            status: if db_ok { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            timestamp: OffsetDateTime::now_utc(),
            database: if db_ok { "ok" } else { "unreachable" }.into(),
        });
        Ok(if db_ok {
            HealthResponse::Ok(body)
        } else {
            HealthResponse::Degraded(body)
        })
    }
}
