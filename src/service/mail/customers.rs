//! Finding customers: everything of one e-mail address in the caller's workspace.

use crate::domain::activations::{self, Activation};
use crate::domain::licenses::{self, License};
use crate::domain::mail::{self, OutboxMessage};
use crate::domain::payments;
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// Licenses shown per customer at most (a reseller's address may hold thousands).
pub const MAX_LICENSES: u32 = 500;
/// Messages shown per customer, newest first.
pub const MAX_MESSAGES: u32 = 100;

/// One payment event of the customer (named by its address, or changing one of its keys).
#[derive(Debug, Clone)]
pub struct CustomerPayment {
    pub provider: String,
    pub event_id: String,
    pub kind: String,
    pub at: i64,
    pub license_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CustomerView {
    pub email: String,
    /// The customer's name as its newest license gives it.
    pub name: Option<String>,
    /// Oldest first, each with its machines.
    pub licenses: Vec<(License, Vec<Activation>)>,
    /// How many licenses the address has in all (the list stops at [`MAX_LICENSES`]).
    pub license_total: u64,
    /// Newest first.
    pub payments: Vec<CustomerPayment>,
    /// Newest first.
    pub messages: Vec<OutboxMessage>,
}

/// The customer of `email` in the caller's workspace (a product-restricted caller sees its
/// product's licenses and no other's messages). 404 when the address has neither licenses,
/// payments nor messages.
pub fn view(state: &AppState, ctx: &Ctx, email: &str) -> Result<CustomerView, Error> {
    let email = mail::normalize_address("email", email)?;
    let tenant = ctx.tenant.to_string();
    let (rows, total, messages, url, payments) = state.db.read(|c| {
        let (found, total) = licenses::repo::list_by_email(
            c,
            &tenant,
            &email,
            ctx.products.filter(),
            MAX_LICENSES,
            0,
        )?;
        let mut rows = Vec::with_capacity(found.len());
        for l in found {
            let machines = activations::repo::for_license(c, &l.id)?;
            rows.push((l, machines));
        }
        // Filtered in the query, not after its limit: a product-restricted caller sees its
        // product's newest messages however many the customer got from other products.
        let filter = mail::repo::OutboxFilter {
            tenant_id: &tenant,
            status: None,
            recipient: Some(&email),
            product_id: ctx.products.filter(),
        };
        let messages = mail::repo::newest(c, &filter, MAX_MESSAGES, 0)?;
        let url = mail::repo::settings(c, &tenant)?.and_then(|s| s.public_url);
        let ids: Vec<String> = rows.iter().map(|(l, _)| l.id.clone()).collect();
        let payments = payments::repo::events_for_customer(c, &tenant, &email, &ids, MAX_MESSAGES)?
            .into_iter()
            .filter(|(_, e)| {
                // A product-restricted caller sees the payments of its own keys only.
                ctx.products.filter().is_none() || e.license_ids.iter().any(|id| ids.contains(id))
            })
            .map(|(provider, e)| CustomerPayment {
                provider: provider.as_str().to_owned(),
                license_id: e.license_ids.iter().find(|id| ids.contains(id)).cloned(),
                event_id: e.event_id,
                kind: e.effect.as_str().to_owned(),
                at: e.received_at,
            })
            .collect::<Vec<_>>();
        Ok((rows, total, messages, url, payments))
    })?;
    if rows.is_empty() && messages.is_empty() && payments.is_empty() {
        return Err(Error::NotFound("customer"));
    }
    let url = super::public_url(state, url.as_deref());
    let name = rows
        .iter()
        .rev()
        .find_map(|(l, _)| l.customer_name.clone().filter(|n| !n.trim().is_empty()));
    Ok(CustomerView {
        email,
        name,
        licenses: rows,
        license_total: total,
        payments,
        messages: messages
            .into_iter()
            .map(|m| super::outbox::resolved(m, &url))
            .collect(),
    })
}

/// One page of the licenses of a customer e-mail, oldest first, and the total (the vendor
/// API's `by-email`, like `by-order`).
pub fn licenses_by_email(
    state: &AppState,
    ctx: &Ctx,
    email: &str,
    limit: u32,
    offset: u64,
) -> Result<(Vec<License>, u64), Error> {
    let email = mail::normalize_address("email", email)?;
    state.db.read(|c| {
        licenses::repo::list_by_email(c, &ctx.tenant, &email, ctx.products.filter(), limit, offset)
    })
}
