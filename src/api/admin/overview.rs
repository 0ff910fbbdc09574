//! `/api/logs`, `/api/stats`, `/api/admin` and `/api/heartbeat`.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use super::keys::LogView;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::domain::{LicenseId, ProductId, datetime_to_ms, ms_to_datetime, now_ms};
use crate::error::Error;
use crate::service::reports::{self, LogQuery, OverviewPages};
use crate::state::AppState;

pub struct OverviewApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
#[oai(rename = "LogEntry", rename_all = "camelCase")]
pub struct LogEntry {
    #[oai(flatten)]
    pub log: LogView,
    #[oai(nullable)]
    pub project_id: Option<String>,
    #[oai(nullable)]
    pub key_id: Option<String>,
}

#[derive(Object, Debug)]
pub struct LogsData {
    pub logs: Vec<LogEntry>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct LogsOk {
    pub success: bool,
    pub data: LogsData,
}

#[derive(Object, Debug)]
pub struct CountByName {
    pub name: String,
    pub count: u64,
}

#[derive(Object, Debug)]
pub struct DailyActivity {
    /// UTC day (midnight).
    pub day: OffsetDateTime,
    pub validations: u64,
    pub activations: u64,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct Stats {
    pub total_keys: u64,
    pub keys_by_status: Vec<CountByName>,
    /// Keys without a plan (made through the vendor API) count as NONE.
    pub keys_by_plan: Vec<CountByName>,
    /// The last 30 days, oldest first; days without activity are included with zeros.
    pub daily: Vec<DailyActivity>,
    /// Refused validations and activations of the last 30 days, by reason code.
    pub failures_by_reason: Vec<CountByName>,
    pub projects: u64,
    /// Abuse flags still OPEN (the dashboard badge).
    pub open_abuse_flags: u64,
}

#[derive(Object, Debug)]
pub struct StatsOk {
    pub success: bool,
    pub data: Stats,
}

/// The contract names three lists; each is a page (of `limit` rows), so the answer stays
/// bounded however many operators, projects and keys a server holds.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AdminOverview {
    /// Page `usersPage` of the operators, oldest first.
    pub users: Vec<super::operators::OperatorView>,
    /// Page `projectsPage` of the projects, newest first.
    pub projects: Vec<super::projects::ProjectView>,
    /// Page `page` of the keys, newest first.
    pub keys: Vec<super::keys::KeyView>,
    /// Pagination of `keys`.
    pub pagination: Pagination,
    pub users_pagination: Pagination,
    pub projects_pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct AdminOk {
    pub success: bool,
    pub data: AdminOverview,
}

#[derive(Object, Debug)]
pub struct HeartbeatBody {
    pub success: bool,
    /// `ok`, or `degraded` when the database is unreachable.
    pub status: String,
    pub database: String,
    pub version: String,
    pub timestamp: OffsetDateTime,
}

#[derive(ApiResponse)]
pub enum LogsResponse {
    /// Matching log entries, newest first.
    #[oai(status = 200)]
    Ok(Json<LogsOk>),
}

#[derive(ApiResponse)]
pub enum StatsResponse {
    /// Dashboard figures.
    #[oai(status = 200)]
    Ok(Json<StatsOk>),
}

#[derive(ApiResponse)]
pub enum AdminResponse {
    /// A page of the operators, of the projects and of the keys.
    #[oai(status = 200)]
    Ok(Json<AdminOk>),
}

#[derive(ApiResponse)]
pub enum HeartbeatResponse {
    /// The service and its database work.
    #[oai(status = 200)]
    Ok(Json<HeartbeatBody>),
    /// The database is unreachable.
    #[oai(status = 503)]
    Degraded(Json<HeartbeatBody>),
}

#[OpenApi]
impl OverviewApi {
    /// Audit logs
    ///
    /// Every action with its actor, IP and HWID. Filter by project, key, action (exact, or a
    /// prefix ending in '.', e.g. `license.`) and time.
    #[oai(path = "/api/logs", method = "get", tag = "AdminTags::Logs")]
    #[allow(clippy::too_many_arguments)]
    async fn logs(
        &self,
        auth: AdminAuth,
        #[oai(name = "projectId")] project_id: Query<Option<String>>,
        #[oai(name = "keyId")] key_id: Query<Option<String>>,
        action: Query<Option<String>>,
        /// From this instant (RFC 3339).
        from: Query<Option<OffsetDateTime>>,
        /// Before this instant (RFC 3339).
        to: Query<Option<OffsetDateTime>>,
        page: Query<Option<u32>>,
        limit: Query<Option<u32>>,
    ) -> KvResult<LogsResponse> {
        let ctx = auth.admin().ctx;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let query = LogQuery {
            product_id: project_id.0.map(ProductId::from),
            license_id: key_id.0.map(LicenseId::from),
            action: action.0,
            from: from.0.map(datetime_to_ms),
            to: to.0.map(datetime_to_ms),
        };
        let offset = (page as u64 - 1) * limit as u64;
        let (events, total) = reports::logs(&self.state, &ctx, query, limit, offset).await?;
        Ok(LogsResponse::Ok(Json(LogsOk {
            success: true,
            data: LogsData {
                logs: events
                    .iter()
                    .map(|e| LogEntry {
                        log: LogView::new(e),
                        project_id: e.product_id.clone(),
                        key_id: e.license_id.clone(),
                    })
                    .collect(),
                pagination: Pagination::counted(page, limit, total),
            },
        })))
    }

    /// Dashboard statistics
    ///
    /// Keys by status and plan, validations and activations per day for the last 30 days,
    /// failures by reason. Optionally for one project. Audit rows pruned after their retention
    /// are still counted (from their daily aggregates).
    #[oai(path = "/api/stats", method = "get", tag = "AdminTags::Logs")]
    async fn stats(
        &self,
        auth: AdminAuth,
        #[oai(name = "projectId")] project_id: Query<Option<String>>,
    ) -> KvResult<StatsResponse> {
        let ctx = auth.admin().ctx;
        let figures =
            reports::figures(&self.state, &ctx, project_id.0.map(ProductId::from)).await?;
        let named = |rows: &[(Option<String>, u64)]| {
            rows.iter()
                .map(|(n, count)| CountByName {
                    name: n.clone().unwrap_or_else(|| "NONE".into()),
                    count: *count,
                })
                .collect::<Vec<_>>()
        };
        let stats = Stats {
            total_keys: figures.total_keys(),
            keys_by_status: named(&figures.keys_by_status),
            keys_by_plan: named(&figures.keys_by_plan),
            daily: figures
                .daily
                .iter()
                .map(|d| DailyActivity {
                    day: ms_to_datetime(d.day),
                    validations: d.validations,
                    activations: d.activations,
                })
                .collect(),
            failures_by_reason: figures
                .failures_by_reason
                .iter()
                .map(|(name, count)| CountByName {
                    name: name.clone(),
                    count: *count,
                })
                .collect(),
            projects: figures.products,
            open_abuse_flags: figures.open_abuse_flags,
        };
        Ok(StatsResponse::Ok(Json(StatsOk {
            success: true,
            data: stats,
        })))
    }

    /// Admin overview (ADMIN operators only)
    ///
    /// Operators, projects and keys of every workspace, each list paged on its own: `page`
    /// for keys, `usersPage` and `projectsPage` for the others, `limit` rows each (1-500,
    /// default 50).
    #[oai(path = "/api/admin", method = "get", tag = "AdminTags::Users")]
    async fn admin(
        &self,
        auth: AdminAuth,
        page: Query<Option<u32>>,
        limit: Query<Option<u32>>,
        #[oai(name = "usersPage")] users_page: Query<Option<u32>>,
        #[oai(name = "projectsPage")] projects_page: Query<Option<u32>>,
    ) -> KvResult<AdminResponse> {
        let ctx = auth.admin().ctx;
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let users_page = page_number(users_page.0, "usersPage")?;
        let projects_page = page_number(projects_page.0, "projectsPage")?;
        let offset_of = |page: u32| (page as u64 - 1) * limit as u64;
        let pages = OverviewPages {
            limit,
            keys_offset: offset_of(page),
            operators_offset: offset_of(users_page),
            products_offset: offset_of(projects_page),
        };
        let o = reports::overview(&self.state, &ctx, pages).await?;
        let now = now_ms();
        Ok(AdminResponse::Ok(Json(AdminOk {
            success: true,
            data: AdminOverview {
                users: o
                    .operators
                    .iter()
                    .map(super::operators::OperatorView::new)
                    .collect(),
                projects: o
                    .products
                    .iter()
                    .map(|(p, n)| super::projects::ProjectView::new(p, *n))
                    .collect(),
                keys: o
                    .keys
                    .into_iter()
                    .map(|r| {
                        super::keys::KeyView::new(
                            &r.license,
                            r.activation_count,
                            r.first_machine,
                            now,
                        )
                    })
                    .collect(),
                pagination: Pagination::counted(page, limit, o.keys_total),
                users_pagination: Pagination::new(users_page, limit, o.operators_total),
                projects_pagination: Pagination::new(projects_page, limit, o.products_total),
            },
        })))
    }

    /// Health check
    ///
    /// Service and database status; no authentication.
    #[oai(path = "/api/heartbeat", method = "get", tag = "AdminTags::Logs")]
    async fn heartbeat(&self) -> KvResult<HeartbeatResponse> {
        let ok = reports::database_reachable(&self.state);
        let body = Json(HeartbeatBody {
            success: ok,
            status: if ok { "ok" } else { "degraded" }.into(),
            database: if ok { "ok" } else { "unreachable" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            timestamp: OffsetDateTime::now_utc(),
        });
        Ok(if ok {
            HeartbeatResponse::Ok(body)
        } else {
            HeartbeatResponse::Degraded(body)
        })
    }
}

/// A 1-based page number from the query (default 1).
fn page_number(page: Option<u32>, name: &str) -> Result<u32, Error> {
    match page.unwrap_or(1) {
        0 => Err(Error::Invalid(format!("{name} must be 1 or more"))),
        n => Ok(n),
    }
}
