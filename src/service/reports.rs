//! What the dashboard reads: the audit log, the figures, the admin overview. Read-only, and
//! scoped like everything else: a product-restricted caller sees its product's events and
//! figures, nothing of the rest of its tenant.

use super::{Actor, Ctx};
use crate::domain::audit::AuditEvent;
use crate::domain::audit::repo::LogFilter;
use crate::domain::licenses::repo::{CountColumn, KeyRow, Search};
use crate::domain::operators::{Operator, Role};
use crate::domain::products::Product;
use crate::domain::{Counted, DAY_MS, LicenseId, ProductId, abuse, audit, licenses, now_ms};
use crate::domain::{operators, products};
use crate::error::Error;
use crate::state::AppState;

/// Days of activity the dashboard shows.
const ACTIVITY_DAYS: i64 = 30;

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub product_id: Option<ProductId>,
    pub license_id: Option<LicenseId>,
    /// Exact action, or a prefix ending in '.' (e.g. `license.`).
    pub action: Option<String>,
    /// From this instant (ms).
    pub from: Option<i64>,
    /// Before this instant (ms).
    pub to: Option<i64>,
}

/// One UTC day of activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayActivity {
    /// Midnight UTC, in ms.
    pub day: i64,
    pub validations: u64,
    pub activations: u64,
}

/// The dashboard's figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Keys by status; `None` never occurs here but the column allows it.
    pub keys_by_status: Vec<(Option<String>, u64)>,
    /// Keys by plan; `None` for keys without one.
    pub keys_by_plan: Vec<(Option<String>, u64)>,
    /// The last 30 days, oldest first, days without activity included with zeros.
    pub daily: Vec<DayActivity>,
    /// Refused validations and activations of the last 30 days, by reason code.
    pub failures_by_reason: Vec<(String, u64)>,
    pub products: u64,
    pub open_abuse_flags: u64,
}

impl Figures {
    pub fn total_keys(&self) -> u64 {
        self.keys_by_status.iter().map(|(_, n)| n).sum()
    }
}

/// Which pages of the admin overview to read; `limit` rows each.
#[derive(Debug, Clone, Copy)]
pub struct OverviewPages {
    pub limit: u32,
    pub keys_offset: u64,
    pub operators_offset: u64,
    pub products_offset: u64,
}

/// A page of the operators, of the products and of the keys, each with its total.
#[derive(Debug)]
pub struct Overview {
    pub operators: Vec<Operator>,
    pub operators_total: u64,
    pub products: Vec<(Product, u64)>,
    pub products_total: u64,
    pub keys: Vec<KeyRow>,
    pub keys_total: Counted,
}

/// The product filter a report runs with: what the caller asked for, within what it reaches.
/// `None` when the two do not meet (the report is then empty, as for a product that does not
/// exist).
fn product_filter(ctx: &Ctx, asked: Option<&ProductId>) -> Option<Option<String>> {
    match (ctx.products.filter(), asked) {
        (None, asked) => Some(asked.map(|p| p.to_string())),
        (Some(only), None) => Some(Some(only.to_owned())),
        (Some(only), Some(asked)) if only == asked.as_str() => Some(Some(only.to_owned())),
        (Some(_), Some(_)) => None,
    }
}

/// One page of the audit events within reach, newest first, and the total.
pub async fn logs(
    state: &AppState,
    ctx: &Ctx,
    query: LogQuery,
    limit: u32,
    offset: u64,
) -> Result<(Vec<AuditEvent>, Counted), Error> {
    if query.action.as_ref().is_some_and(|a| a.len() > 64) {
        return Err(Error::Invalid(
            "action must be at most 64 characters".into(),
        ));
    }
    let Some(product) = product_filter(ctx, query.product_id.as_ref()) else {
        return Ok((
            Vec::new(),
            Counted {
                total: 0,
                capped: false,
            },
        ));
    };
    let tenant_scope = ctx.tenants.filter().map(str::to_owned);
    state
        .db
        .read_blocking(move |c| {
            let filter = LogFilter {
                tenant_scope: tenant_scope.as_deref(),
                product_id: product.as_deref(),
                license_id: query.license_id.as_deref(),
                action: query.action.as_deref(),
                from: query.from,
                to: query.to,
            };
            audit::repo::search(c, &filter, limit, offset)
        })
        .await
}

/// The dashboard's figures within reach, optionally for one product.
pub async fn figures(
    state: &AppState,
    ctx: &Ctx,
    product_id: Option<ProductId>,
) -> Result<Figures, Error> {
    let today = now_ms() / DAY_MS * DAY_MS;
    let since = today - (ACTIVITY_DAYS - 1) * DAY_MS;
    let Some(product) = product_filter(ctx, product_id.as_ref()) else {
        return Ok(Figures {
            daily: days_since(since, &[]),
            ..Figures::default()
        });
    };
    let tenant_scope = ctx.tenants.filter().map(str::to_owned);
    // The products counted are those within reach, whatever one the figures are about.
    let reachable_product = ctx.products.filter().map(str::to_owned);
    state
        .db
        .read_blocking(move |c| {
            let scope = tenant_scope.as_deref();
            let project = product.as_deref();
            let activity = audit::daily::daily_activity(c, scope, project, since)?;
            let (_, products) =
                products::repo::list_within(c, scope, reachable_product.as_deref(), 1, 0)?;
            Ok(Figures {
                keys_by_status: licenses::repo::count_by(c, CountColumn::Status, scope, project)?,
                keys_by_plan: licenses::repo::count_by(c, CountColumn::Plan, scope, project)?,
                daily: days_since(since, &activity),
                failures_by_reason: audit::daily::failures_by_reason(c, scope, project, since)?,
                products,
                open_abuse_flags: abuse::repo::count_open(c, scope, project)?,
            })
        })
        .await
}

/// Every day from `since`, with the activity recorded for it (zeros when none).
fn days_since(since: i64, activity: &[(i64, u64, u64)]) -> Vec<DayActivity> {
    (0..ACTIVITY_DAYS)
        .map(|i| {
            let day = since + i * DAY_MS;
            let (validations, activations) = activity
                .iter()
                .find(|(d, _, _)| *d == day)
                .map(|(_, v, a)| (*v, *a))
                .unwrap_or((0, 0));
            DayActivity {
                day,
                validations,
                activations,
            }
        })
        .collect()
}

/// Operators, products and keys of every workspace within reach, each paged on its own. For
/// ADMIN operators only: it lists people.
pub async fn overview(
    state: &AppState,
    ctx: &Ctx,
    pages: OverviewPages,
) -> Result<Overview, Error> {
    if !matches!(
        ctx.actor,
        Actor::Operator {
            role: Role::Admin,
            ..
        }
    ) {
        return Err(Error::Forbidden(
            "Only ADMIN operators may see the admin overview".into(),
        ));
    }
    let tenant_scope = ctx.tenants.filter().map(str::to_owned);
    let product = ctx.products.filter().map(str::to_owned);
    state
        .db
        .read_blocking(move |c| {
            let scope = tenant_scope.as_deref();
            let (operators, operators_total) =
                operators::repo::list(c, scope, pages.limit, pages.operators_offset)?;
            let (products, products_total) = products::repo::list_within(
                c,
                scope,
                product.as_deref(),
                pages.limit,
                pages.products_offset,
            )?;
            let search = Search {
                tenant_scope: scope,
                product_id: product.as_deref(),
                ..Search::default()
            };
            let (keys, keys_total) =
                licenses::repo::search(c, &search, pages.limit, pages.keys_offset)?;
            Ok(Overview {
                operators,
                operators_total,
                products,
                products_total,
                keys,
                keys_total,
            })
        })
        .await
}

/// True when the database answers: the health endpoints' check.
pub fn database_reachable(state: &AppState) -> bool {
    state.db.ping()
}
