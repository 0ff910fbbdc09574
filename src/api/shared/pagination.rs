//! Paged lists, as every face pages them.

use poem_openapi::Object;

pub use crate::domain::Counted;

#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
    pub total: u64,
    pub total_pages: u64,
    /// Present and true when counting stopped at `total`: there are at least that many
    /// (exact counts over a million rows would cost more than the page itself).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub total_capped: Option<bool>,
}

impl Pagination {
    pub fn new(page: u32, limit: u32, total: u64) -> Self {
        Self {
            page,
            limit,
            total,
            total_pages: total.div_ceil(limit as u64),
            total_capped: None,
        }
    }

    /// A total that may be a lower bound (see `total_capped`).
    pub fn counted(page: u32, limit: u32, count: Counted) -> Self {
        Self {
            total_capped: count.capped.then_some(true),
            ..Self::new(page, limit, count.total)
        }
    }
}

/// Page and limit from the query, checked: page ≥ 1 (default 1), limit 1–500 (default 50).
pub fn page_and_limit(
    page: Option<u32>,
    limit: Option<u32>,
) -> Result<(u32, u32), crate::error::Error> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(50);
    if page == 0 {
        return Err(crate::error::Error::Invalid(
            "page must be 1 or more".into(),
        ));
    }
    if !(1..=500).contains(&limit) {
        return Err(crate::error::Error::Invalid("limit must be 1-500".into()));
    }
    Ok((page, limit))
}
