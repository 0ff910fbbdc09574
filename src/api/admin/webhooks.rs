//! `/api/webhooks/*`: event webhook endpoints (Standard Webhooks) and their deliveries. A new
//! or rotated endpoint secret is shown once.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::domain::webhooks::{Delivery, DeliveryStatus, Endpoint};
use crate::domain::{ProductId, ms_to_datetime};
use crate::service;
use crate::service::webhooks::{EndpointChanges, EndpointWithSecret, NewEndpoint};
use crate::state::AppState;

pub struct WebhooksApi {
    pub state: AppState,
}

crate::field_names!(
    UrlField = "url",
    DescriptionField = "description",
    ProjectIdField = "projectId",
);

#[derive(Object, Debug)]
#[oai(rename = "WebhookEndpoint", rename_all = "camelCase")]
pub struct EndpointView {
    pub id: String,
    /// Only this project's events; null: every project of the workspace.
    #[oai(nullable)]
    pub project_id: Option<String>,
    pub url: String,
    #[oai(nullable)]
    pub description: Option<String>,
    /// Subscribed event types: `*`, a type such as `license.created`, or a prefix such as
    /// `license.*`.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// True when the server disabled the endpoint because its deliveries failed for longer
    /// than `--webhook-disable-after`; enabling it clears the flag.
    pub disabled_for_failures: bool,
    #[oai(nullable)]
    pub disabled_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts; null when the last attempt succeeded.
    #[oai(nullable)]
    pub failing_since: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The signing secret (`whsec_…`): present only in the answer that generated it.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub secret: Option<String>,
}

impl EndpointView {
    fn new(e: &Endpoint, secret: Option<String>) -> Self {
        Self {
            id: e.id.clone(),
            project_id: e.product_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            enabled: e.enabled,
            disabled_for_failures: e.disabled_at.is_some(),
            disabled_at: e.disabled_at.map(ms_to_datetime),
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since.map(ms_to_datetime),
            created_at: ms_to_datetime(e.created_at),
            updated_at: ms_to_datetime(e.updated_at),
            secret,
        }
    }

    fn with_secret(found: EndpointWithSecret) -> Self {
        Self::new(&found.endpoint, found.secret)
    }
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookDelivery", rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    /// The event's id: the `webhook-id` header, the same on every attempt and redelivery.
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[oai(nullable)]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The HTTP status of the last answer; null when none came.
    #[oai(nullable)]
    pub last_status_code: Option<u16>,
    /// The start of the last answer's body (at most 500 characters).
    #[oai(nullable)]
    pub last_response: Option<String>,
    /// Why the last attempt failed (no answer, TLS, a non-2xx status).
    #[oai(nullable)]
    pub last_error: Option<String>,
    #[oai(nullable)]
    pub delivered_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl DeliveryView {
    fn new(d: &Delivery) -> Self {
        Self {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            endpoint_id: d.endpoint_id.clone().unwrap_or_default(),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(ms_to_datetime),
            last_attempt_at: d.last_attempt_at.map(ms_to_datetime),
            last_status_code: d.last_status_code,
            last_response: d.last_response.clone(),
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at.map(ms_to_datetime),
            created_at: ms_to_datetime(d.created_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "CreateWebhookEndpoint", rename_all = "camelCase")]
pub struct CreateEndpointRequest {
    /// An https:// (or http://) URL receiving the events by POST.
    #[oai(
        deserialize_with = "named::<UrlField, _>",
        validator(min_length = 1, max_length = 2048)
    )]
    pub url: String,
    #[oai(
        nullable,
        deserialize_with = "named::<DescriptionField, _>",
        validator(max_length = 500)
    )]
    pub description: Option<String>,
    /// Only this project's events (an API key restricted to a project gets its project).
    #[oai(
        nullable,
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: Option<String>,
    /// Default `["*"]`.
    #[oai(nullable, validator(max_items = 32))]
    pub event_types: Option<Vec<String>>,
    /// Default true.
    #[oai(nullable)]
    pub enabled: Option<bool>,
}

/// Fields left out keep their value.
#[derive(Object, Debug)]
#[oai(rename = "UpdateWebhookEndpoint", rename_all = "camelCase")]
pub struct UpdateEndpointRequest {
    #[oai(nullable, validator(min_length = 1, max_length = 2048))]
    pub url: Option<String>,
    /// null clears it.
    #[oai(nullable, validator(max_length = 500))]
    pub description: MaybeUndefined<String>,
    #[oai(nullable, validator(max_items = 32))]
    pub event_types: Option<Vec<String>>,
    /// true also clears the flag of an endpoint the server disabled for failing.
    #[oai(nullable)]
    pub enabled: Option<bool>,
    /// Generate a new secret (shown once in the answer); the old one stops signing at once.
    #[oai(nullable)]
    pub rotate_secret: Option<bool>,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookEndpointsPage", rename_all = "camelCase")]
pub struct EndpointsData {
    pub endpoints: Vec<EndpointView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookEndpointsOk")]
pub struct EndpointsOk {
    pub success: bool,
    pub data: EndpointsData,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookEndpointOk")]
pub struct EndpointOk {
    pub success: bool,
    pub data: EndpointView,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookDeliveriesPage", rename_all = "camelCase")]
pub struct DeliveriesData {
    pub deliveries: Vec<DeliveryView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookDeliveriesOk")]
pub struct DeliveriesOk {
    pub success: bool,
    pub data: DeliveriesData,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookDeliveryOk")]
pub struct DeliveryOk {
    pub success: bool,
    pub data: DeliveryView,
}

#[derive(Object, Debug)]
#[oai(rename = "WebhookEndpointDeleted")]
pub struct DeletedOk {
    pub success: bool,
}

#[derive(ApiResponse)]
pub enum ListEndpointsResponse {
    /// Endpoints within reach, newest first.
    #[oai(status = 200)]
    Ok(Json<EndpointsOk>),
}

#[derive(ApiResponse)]
pub enum CreateEndpointResponse {
    /// Created; `secret` is shown this once.
    #[oai(status = 201)]
    Created(Json<EndpointOk>),
}

#[derive(ApiResponse)]
pub enum EndpointResponse {
    /// The endpoint (with `secret` only when this answer rotated it).
    #[oai(status = 200)]
    Ok(Json<EndpointOk>),
}

#[derive(ApiResponse)]
pub enum DeleteEndpointResponse {
    /// Deleted, with its deliveries.
    #[oai(status = 200)]
    Ok(Json<DeletedOk>),
}

#[derive(ApiResponse)]
pub enum DeliveriesResponse {
    /// The endpoint's deliveries, newest first.
    #[oai(status = 200)]
    Ok(Json<DeliveriesOk>),
}

#[derive(ApiResponse)]
pub enum QueuedDeliveryResponse {
    /// Queued: the delivery worker sends it at once.
    #[oai(status = 202)]
    Accepted(Json<DeliveryOk>),
}

#[OpenApi(tag = "AdminTags::Webhooks")]
impl WebhooksApi {
    /// List webhook endpoints
    ///
    /// A project-restricted API key sees only its project's endpoints.
    #[oai(path = "/api/webhooks/endpoints", method = "get")]
    async fn list_endpoints(
        &self,
        auth: AdminAuth,
        /// Only endpoints restricted to this project.
        #[oai(name = "projectId")]
        project_id: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<ListEndpointsResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (endpoints, total) = service::webhooks::list_endpoints(
            &self.state,
            &admin.ctx,
            project_id.0.map(ProductId::from),
            limit,
            offset,
        )
        .await?;
        Ok(ListEndpointsResponse::Ok(Json(EndpointsOk {
            success: true,
            data: EndpointsData {
                endpoints: endpoints
                    .iter()
                    .map(|e| EndpointView::new(e, None))
                    .collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Create a webhook endpoint
    ///
    /// The answer holds the signing secret (`whsec_…`), once. Deliveries carry the Standard
    /// Webhooks headers `webhook-id`, `webhook-timestamp` and `webhook-signature`. A URL
    /// naming a loopback, private or link-local address is refused unless the server allows
    /// it (`--webhook-allow-private`). Audited.
    #[oai(path = "/api/webhooks/endpoints", method = "post")]
    async fn create_endpoint(
        &self,
        auth: AdminAuth,
        body: Json<CreateEndpointRequest>,
    ) -> KvResult<CreateEndpointResponse> {
        let admin = auth.admin();
        let b = body.0;
        let created = service::webhooks::create_endpoint(
            &self.state,
            &admin.ctx,
            NewEndpoint {
                url: b.url,
                description: b.description,
                product_id: b.project_id.map(ProductId::from),
                event_types: b.event_types,
                enabled: b.enabled,
            },
        )
        .await?;
        Ok(CreateEndpointResponse::Created(Json(EndpointOk {
            success: true,
            data: EndpointView::with_secret(created),
        })))
    }

    /// A webhook endpoint
    #[oai(path = "/api/webhooks/endpoints/:id", method = "get")]
    async fn get_endpoint(&self, auth: AdminAuth, id: Path<String>) -> KvResult<EndpointResponse> {
        let admin = auth.admin();
        let e = service::webhooks::get_endpoint(&self.state, &admin.ctx, &id.0)?;
        Ok(EndpointResponse::Ok(Json(EndpointOk {
            success: true,
            data: EndpointView::new(&e, None),
        })))
    }

    /// Change a webhook endpoint
    ///
    /// Fields left out keep their value. `enabled: true` re-enables an endpoint the server
    /// disabled for failing (its pending deliveries go out again); `rotateSecret: true`
    /// answers a new secret, once. Audited.
    #[oai(path = "/api/webhooks/endpoints/:id", method = "patch")]
    async fn update_endpoint(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateEndpointRequest>,
    ) -> KvResult<EndpointResponse> {
        let admin = auth.admin();
        let b = body.0;
        let changes = EndpointChanges {
            url: b.url,
            description: match b.description {
                MaybeUndefined::Value(d) => Some(Some(d)),
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Undefined => None,
            },
            event_types: b.event_types,
            enabled: b.enabled,
            rotate_secret: b.rotate_secret == Some(true),
        };
        let changed =
            service::webhooks::update_endpoint(&self.state, &admin.ctx, id.0, changes).await?;
        Ok(EndpointResponse::Ok(Json(EndpointOk {
            success: true,
            data: EndpointView::with_secret(changed),
        })))
    }

    /// Delete a webhook endpoint
    ///
    /// Its pending deliveries are dropped. Audited.
    #[oai(path = "/api/webhooks/endpoints/:id", method = "delete")]
    async fn delete_endpoint(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<DeleteEndpointResponse> {
        let admin = auth.admin();
        service::webhooks::delete_endpoint(&self.state, &admin.ctx, id.0).await?;
        Ok(DeleteEndpointResponse::Ok(Json(DeletedOk {
            success: true,
        })))
    }

    /// List an endpoint's deliveries
    ///
    /// Each with its status, attempts, the last answer's status code and start, and the next
    /// attempt's time.
    #[oai(path = "/api/webhooks/endpoints/:id/deliveries", method = "get")]
    async fn list_deliveries(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        status: Query<Option<DeliveryStatus>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<DeliveriesResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (deliveries, total) = service::webhooks::list_deliveries(
            &self.state,
            &admin.ctx,
            id.0,
            status.0,
            limit,
            offset,
        )
        .await?;
        Ok(DeliveriesResponse::Ok(Json(DeliveriesOk {
            success: true,
            data: DeliveriesData {
                deliveries: deliveries.iter().map(DeliveryView::new).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Send an endpoint a test event
    ///
    /// A `webhook.test` event, whatever the endpoint subscribes to. 409 when it is disabled.
    /// Audited.
    #[oai(path = "/api/webhooks/endpoints/:id/test", method = "post")]
    async fn send_test(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<QueuedDeliveryResponse> {
        let admin = auth.admin();
        let d = service::webhooks::send_test(&self.state, &admin.ctx, id.0).await?;
        Ok(QueuedDeliveryResponse::Accepted(Json(DeliveryOk {
            success: true,
            data: DeliveryView::new(&d),
        })))
    }

    /// Redeliver an event
    ///
    /// Sends the delivery's event to its endpoint again, as a new delivery with the same
    /// `webhook-id`. 409 when the endpoint is disabled. Audited.
    #[oai(path = "/api/webhooks/deliveries/:id/redeliver", method = "post")]
    async fn redeliver(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<QueuedDeliveryResponse> {
        let admin = auth.admin();
        let d = service::webhooks::redeliver(&self.state, &admin.ctx, id.0).await?;
        Ok(QueuedDeliveryResponse::Accepted(Json(DeliveryOk {
            success: true,
            data: DeliveryView::new(&d),
        })))
    }
}
