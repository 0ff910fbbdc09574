//! `/api/customers/{email}`: everything of one customer address in the workspace.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use super::keys::{ActivationInfo, KeyView};
use super::mail::OutboxMessageView;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::{ms_to_datetime, now_ms};
use crate::service::mail::customers;
use crate::state::AppState;

pub struct CustomersApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
#[oai(rename = "CustomerKey", rename_all = "camelCase")]
pub struct CustomerKeyView {
    pub key: KeyView,
    /// The machines bound to the key.
    pub machines: Vec<ActivationInfo>,
}

#[derive(Object, Debug)]
#[oai(rename = "CustomerPayment", rename_all = "camelCase")]
pub struct CustomerPaymentView {
    /// STRIPE, PADDLE or LEMONSQUEEZY.
    pub provider: String,
    pub event_id: String,
    pub kind: String,
    pub at: OffsetDateTime,
    #[oai(nullable)]
    pub key_id: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CustomerData {
    pub email: String,
    #[oai(nullable)]
    pub name: Option<String>,
    /// Oldest first (at most 500).
    pub keys: Vec<CustomerKeyView>,
    /// How many keys the address has in all.
    pub key_total: u64,
    /// Payment events of the address (empty until payments are set up).
    pub payments: Vec<CustomerPaymentView>,
    /// Messages to the address, newest first (at most 100).
    pub messages: Vec<OutboxMessageView>,
}

#[derive(Object, Debug)]
pub struct CustomerOk {
    pub success: bool,
    pub data: CustomerData,
}

#[derive(ApiResponse)]
pub enum CustomerResponse {
    /// The customer's keys, machines, payments and messages.
    #[oai(status = 200)]
    Ok(Json<CustomerOk>),
}

#[OpenApi(tag = "AdminTags::Customers")]
impl CustomersApi {
    /// A customer
    ///
    /// All keys (with their machines), payments and e-mails of one address in the caller's
    /// workspace, ignoring case. 404 when the address has neither keys, payments nor messages.
    #[oai(path = "/api/customers/:email", method = "get")]
    async fn get(&self, auth: AdminAuth, email: Path<String>) -> KvResult<CustomerResponse> {
        let admin = auth.admin();
        let v = customers::view(&self.state, &admin.ctx, &email.0)?;
        let now = now_ms();
        Ok(CustomerResponse::Ok(Json(CustomerOk {
            success: true,
            data: CustomerData {
                email: v.email,
                name: v.name,
                keys: v
                    .licenses
                    .into_iter()
                    .map(|(l, machines)| CustomerKeyView {
                        key: KeyView::new(
                            &l,
                            machines.len() as u64,
                            machines.first().map(|a| a.machine_id.clone()),
                            now,
                        ),
                        machines: machines.iter().map(ActivationInfo::new).collect(),
                    })
                    .collect(),
                key_total: v.license_total,
                payments: v
                    .payments
                    .into_iter()
                    .map(|p| CustomerPaymentView {
                        provider: p.provider,
                        event_id: p.event_id,
                        kind: p.kind,
                        at: ms_to_datetime(p.at),
                        key_id: p.license_id,
                    })
                    .collect(),
                messages: v.messages.into_iter().map(OutboxMessageView::new).collect(),
            },
        })))
    }
}
