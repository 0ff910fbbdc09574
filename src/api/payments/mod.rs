//! The payment providers' face: `/api/payments/{stripe,paddle,lemonsqueezy}/{endpointId}`.
//! Public (no key): each request proves itself with its provider's signature over the raw
//! body, which is why the body is taken as bytes, never parsed before the check. Errors use the
//! key/HWID envelope (`api::shared::keyvault_error`); the guard caps the body size and applies
//! the per-address limit, and a wrong signature spends the address's failed-credential
//! allowance.

use poem::Request;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::api::ClientIp;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::PaymentEndpointId;
use crate::domain::payments::{Effect, Outcome, Provider};
use crate::service::payments;
use crate::state::AppState;

#[derive(Tags)]
pub enum PaymentWebhookTags {
    /// Webhooks from Stripe, Paddle Billing and Lemon Squeezy, verified by each provider's own
    /// signature scheme.
    PaymentWebhooks,
}

pub struct PaymentWebhooksApi {
    pub state: AppState,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ReceivedData {
    /// The provider's event id (for Lemon Squeezy, which sends none, `<event>:<digest>`).
    pub event_id: String,
    pub event_type: String,
    pub effect: Effect,
    pub outcome: Outcome,
    /// True when Keyward could not act on it (it is kept, and shown in the admin panel).
    pub flagged: bool,
    pub message: String,
    /// True when this event had been received before: nothing changed now.
    pub replayed: bool,
    /// The licenses it made or changed.
    pub license_ids: Vec<String>,
}

#[derive(Object, Debug)]
pub struct ReceivedOk {
    pub success: bool,
    pub data: ReceivedData,
}

#[derive(ApiResponse)]
pub enum ReceiveResponse {
    /// The event is stored (once: a redelivery answers the same and changes nothing), and
    /// applied or flagged.
    #[oai(status = 200)]
    Ok(Json<ReceivedOk>),
}

fn received(r: payments::Received) -> ReceiveResponse {
    let e = r.event;
    ReceiveResponse::Ok(Json(ReceivedOk {
        success: true,
        data: ReceivedData {
            flagged: e.outcome.flagged(),
            event_id: e.event_id,
            event_type: e.event_type,
            effect: e.effect,
            outcome: e.outcome,
            message: e.message,
            replayed: r.replayed,
            license_ids: e.license_ids,
        },
    }))
}

impl PaymentWebhooksApi {
    async fn receive(
        &self,
        req: &Request,
        provider: Provider,
        id: String,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> KvResult<ReceiveResponse> {
        let outcome = payments::receive(
            &self.state,
            ClientIp::of(req),
            provider,
            PaymentEndpointId::from(id),
            signature,
            body,
        )
        .await?;
        Ok(received(outcome))
    }
}

#[OpenApi(tag = "PaymentWebhookTags::PaymentWebhooks")]
impl PaymentWebhooksApi {
    /// Receive a Stripe webhook
    ///
    /// `Stripe-Signature: t=<unix>,v1=<hex>`: HMAC-SHA256 of `<t>.<raw body>` with the
    /// endpoint's signing secret (`whsec_…`); any `v1` may match; the timestamp within 300 s.
    /// Acts on `checkout.session.completed`, `invoice.paid`, `customer.subscription.updated`
    /// and `.deleted`, `charge.refunded`, `charge.dispute.created` and `.closed`.
    #[oai(path = "/api/payments/stripe/:endpoint_id", method = "post")]
    async fn stripe(
        &self,
        req: &Request,
        endpoint_id: Path<String>,
        #[oai(name = "Stripe-Signature")] signature: Header<Option<String>>,
        body: Binary<Vec<u8>>,
    ) -> KvResult<ReceiveResponse> {
        self.receive(req, Provider::Stripe, endpoint_id.0, signature.0, body.0)
            .await
    }

    /// Receive a Paddle Billing webhook
    ///
    /// `Paddle-Signature: ts=<unix>;h1=<hex>`: HMAC-SHA256 of `<ts>:<raw body>` with the
    /// notification destination's secret key (`pdl_ntfset_…`); the timestamp within 5 s, as
    /// Paddle's SDKs check. Acts on `transaction.completed`, `subscription.updated`,
    /// `.activated`, `.resumed` and `.canceled`, and refund and chargeback adjustments.
    #[oai(path = "/api/payments/paddle/:endpoint_id", method = "post")]
    async fn paddle(
        &self,
        req: &Request,
        endpoint_id: Path<String>,
        #[oai(name = "Paddle-Signature")] signature: Header<Option<String>>,
        body: Binary<Vec<u8>>,
    ) -> KvResult<ReceiveResponse> {
        self.receive(req, Provider::Paddle, endpoint_id.0, signature.0, body.0)
            .await
    }

    /// Receive a Lemon Squeezy webhook
    ///
    /// `X-Signature: <hex>`: HMAC-SHA256 of the raw body with the webhook's signing secret.
    /// Acts on `order_created`, `order_refunded`, `subscription_created`, `_updated`,
    /// `_resumed`, `_cancelled`, `_expired`, `_payment_success` and `_payment_refunded`.
    #[oai(path = "/api/payments/lemonsqueezy/:endpoint_id", method = "post")]
    async fn lemon_squeezy(
        &self,
        req: &Request,
        endpoint_id: Path<String>,
        #[oai(name = "X-Signature")] signature: Header<Option<String>>,
        body: Binary<Vec<u8>>,
    ) -> KvResult<ReceiveResponse> {
        self.receive(
            req,
            Provider::LemonSqueezy,
            endpoint_id.0,
            signature.0,
            body.0,
        )
        .await
    }
}
