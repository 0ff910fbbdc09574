//! `/api/payment-endpoints`: where a payment provider's webhooks arrive, what its ids sell,
//! and the events received; `/api/keys/{id}/payments`: a license's payment timeline.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::api::shared::pagination::{Pagination, page_and_limit};
use crate::domain::licenses::{LicenseTier, LicenseType, Plan};
use crate::domain::payments::{Effect, EndpointSummary, Mapping, Outcome, Provider, StoredEvent};
use crate::domain::{LicenseId, PaymentEndpointId, ProductId, ms_to_datetime};
use crate::error::Error;
use crate::service::payments;
use crate::state::AppState;

pub struct PaymentEndpointsApi {
    pub state: AppState,
}

crate::field_names!(
    ProviderField = "provider",
    NameField = "name",
    SecretField = "secret",
    ProviderRefField = "providerRef",
    ProjectIdField = "projectId",
    LicenseTypeField = "licenseType",
    TierField = "tier",
    PlanField = "plan",
    MaxActivationsField = "maxActivations",
    EntitlementsField = "entitlements",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CreatePaymentEndpointRequest {
    /// STRIPE, PADDLE or LEMONSQUEEZY.
    #[oai(deserialize_with = "named::<ProviderField, _>")]
    pub provider: Provider,
    /// A name for people, 1-100 characters.
    #[oai(
        deserialize_with = "named::<NameField, _>",
        validator(min_length = 1, max_length = 100)
    )]
    pub name: String,
    /// The provider's signing secret (Stripe `whsec_…`, Paddle `pdl_ntfset_…`, the one you
    /// chose for Lemon Squeezy), 8-500 characters. Stored sealed; never shown again.
    #[oai(
        deserialize_with = "named::<SecretField, _>",
        validator(min_length = 8, max_length = 500)
    )]
    pub secret: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UpdatePaymentEndpointRequest {
    #[oai(
        nullable,
        deserialize_with = "named::<NameField, _>",
        validator(min_length = 1, max_length = 100)
    )]
    pub name: Option<String>,
    /// A new signing secret (after rolling it at the provider).
    #[oai(
        nullable,
        deserialize_with = "named::<SecretField, _>",
        validator(min_length = 8, max_length = 500)
    )]
    pub secret: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PutMappingRequest {
    /// The provider's id of what is sold: a Stripe price (`price_…`), product (`prod_…`) or
    /// payment link (`plink_…`); a Paddle price (`pri_…`) or product (`pro_…`); a Lemon
    /// Squeezy variant or product id.
    #[oai(
        deserialize_with = "named::<ProviderRefField, _>",
        validator(min_length = 1, max_length = 200)
    )]
    pub provider_ref: String,
    /// The project whose licenses it sells.
    #[oai(
        deserialize_with = "named::<ProjectIdField, _>",
        validator(min_length = 1, max_length = 64)
    )]
    pub project_id: String,
    /// Default: LIFETIME plans PERPETUAL, other plans SUBSCRIPTION, else the project's default.
    #[oai(nullable, deserialize_with = "named::<LicenseTypeField, _>")]
    pub license_type: Option<LicenseType>,
    /// Default PERSONAL.
    #[oai(nullable, deserialize_with = "named::<TierField, _>")]
    pub tier: Option<LicenseTier>,
    /// DAILY, WEEKLY, MONTHLY or LIFETIME: without a period from the provider, the clock
    /// starts at the first activation.
    #[oai(nullable, deserialize_with = "named::<PlanField, _>")]
    pub plan: Option<Plan>,
    /// Machines per license, 1-1000 (default: the project's).
    #[oai(
        nullable,
        deserialize_with = "named::<MaxActivationsField, _>",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub max_activations: Option<u32>,
    /// Entitlement codes each license carries, each one of the project's.
    #[oai(nullable, deserialize_with = "named::<EntitlementsField, _>")]
    pub entitlements: Option<Vec<String>>,
}

#[derive(Object, Debug)]
#[oai(rename = "PaymentEndpoint", rename_all = "camelCase")]
pub struct EndpointView {
    pub id: String,
    pub provider: Provider,
    pub name: String,
    /// Paste this path, after the server's public address, into the provider's dashboard.
    pub receiving_path: String,
    pub mappings: u64,
    pub events: u64,
    /// Events that could not be acted on (unmapped, no license, refused).
    pub flagged: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl EndpointView {
    fn new(s: &EndpointSummary) -> Self {
        let e = &s.endpoint;
        Self {
            id: e.id.clone(),
            provider: e.provider,
            name: e.name.clone(),
            receiving_path: e.receiving_path(),
            mappings: s.mappings,
            events: s.events,
            flagged: s.flagged,
            created_at: ms_to_datetime(e.created_at),
            updated_at: ms_to_datetime(e.updated_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "PaymentMapping", rename_all = "camelCase")]
pub struct MappingView {
    pub provider_ref: String,
    pub project_id: String,
    #[oai(nullable)]
    pub license_type: Option<LicenseType>,
    pub tier: LicenseTier,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    #[oai(nullable)]
    pub max_activations: Option<u32>,
    pub entitlements: Vec<String>,
    pub created_at: OffsetDateTime,
}

impl MappingView {
    fn new(m: &Mapping) -> Self {
        Self {
            provider_ref: m.provider_ref.clone(),
            project_id: m.product_id.clone(),
            license_type: m.license_type,
            tier: m.tier,
            plan: m.plan,
            max_activations: m.max_activations,
            entitlements: m.entitlements.clone(),
            created_at: ms_to_datetime(m.created_at),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "PaymentEvent", rename_all = "camelCase")]
pub struct EventView {
    pub endpoint_id: String,
    /// The provider's event id.
    pub event_id: String,
    pub event_type: String,
    #[oai(nullable)]
    pub provider: Option<Provider>,
    pub received_at: OffsetDateTime,
    pub effect: Effect,
    pub outcome: Outcome,
    /// True when Keyward could not act on it: look at `message`.
    pub flagged: bool,
    pub message: String,
    #[oai(nullable)]
    pub customer_id: Option<String>,
    #[oai(nullable)]
    pub customer_email: Option<String>,
    /// The payment's ids (`order:…`, `subscription:…`, `payment:…`, `charge:…`…).
    pub refs: Vec<String>,
    #[oai(nullable)]
    pub period_end: Option<OffsetDateTime>,
    /// The licenses it made or changed.
    pub license_ids: Vec<String>,
}

impl EventView {
    pub fn new(e: &StoredEvent, provider: Option<Provider>) -> Self {
        Self {
            endpoint_id: e.endpoint_id.clone(),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            provider,
            received_at: ms_to_datetime(e.received_at),
            effect: e.effect,
            outcome: e.outcome,
            flagged: e.outcome.flagged(),
            message: e.message.clone(),
            customer_id: e.customer_id.clone(),
            customer_email: e.customer_email.clone(),
            refs: e.refs.clone(),
            period_end: e.period_end.map(ms_to_datetime),
            license_ids: e.license_ids.clone(),
        }
    }
}

#[derive(Object, Debug)]
pub struct EndpointsData {
    pub endpoints: Vec<EndpointView>,
}

#[derive(Object, Debug)]
pub struct EndpointsOk {
    pub success: bool,
    pub data: EndpointsData,
}

#[derive(Object, Debug)]
pub struct EndpointData {
    pub endpoint: EndpointView,
    pub mappings: Vec<MappingView>,
}

#[derive(Object, Debug)]
pub struct EndpointOk {
    pub success: bool,
    pub data: EndpointData,
}

#[derive(Object, Debug)]
pub struct MappingsData {
    pub mappings: Vec<MappingView>,
}

#[derive(Object, Debug)]
pub struct MappingsOk {
    pub success: bool,
    pub data: MappingsData,
}

#[derive(Object, Debug)]
pub struct PaymentEventsData {
    pub events: Vec<EventView>,
    pub pagination: Pagination,
}

#[derive(Object, Debug)]
pub struct PaymentEventsOk {
    pub success: bool,
    pub data: PaymentEventsData,
}

#[derive(Object, Debug)]
pub struct PaymentEventData {
    pub event: EventView,
}

#[derive(Object, Debug)]
pub struct PaymentEventOk {
    pub success: bool,
    pub data: PaymentEventData,
}

#[derive(Object, Debug)]
pub struct KeyPaymentsData {
    /// Oldest first.
    pub payments: Vec<EventView>,
}

#[derive(Object, Debug)]
pub struct KeyPaymentsOk {
    pub success: bool,
    pub data: KeyPaymentsData,
}

#[derive(Object, Debug)]
pub struct PaymentDeletedOk {
    pub success: bool,
}

#[derive(ApiResponse)]
pub enum ListPaymentEndpointsResponse {
    /// The payment endpoints in reach, newest first.
    #[oai(status = 200)]
    Ok(Json<EndpointsOk>),
}

#[derive(ApiResponse)]
pub enum CreatePaymentEndpointResponse {
    /// The new endpoint, with its mappings (none yet).
    #[oai(status = 201)]
    Created(Json<EndpointOk>),
}

#[derive(ApiResponse)]
pub enum PaymentEndpointResponse {
    /// The endpoint with its mappings.
    #[oai(status = 200)]
    Ok(Json<EndpointOk>),
}

#[derive(ApiResponse)]
pub enum DeletePaymentEndpointResponse {
    /// Deleted with its mappings and events; the licenses it made stay.
    #[oai(status = 200)]
    Ok(Json<PaymentDeletedOk>),
}

#[derive(ApiResponse)]
pub enum PutMappingResponse {
    /// The mapping is saved (created, or replaced for the same providerRef); all of the
    /// endpoint's mappings.
    #[oai(status = 200)]
    Ok(Json<MappingsOk>),
}

#[derive(ApiResponse)]
pub enum DeleteMappingResponse {
    /// The mapping is gone; the endpoint's remaining mappings.
    #[oai(status = 200)]
    Ok(Json<MappingsOk>),
}

#[derive(ApiResponse)]
pub enum ListPaymentEventsResponse {
    /// The endpoint's received events, newest first.
    #[oai(status = 200)]
    Ok(Json<PaymentEventsOk>),
}

#[derive(ApiResponse)]
pub enum ApplyPaymentEventResponse {
    /// The event applied again, with its new outcome: APPLIED (its licenses made or changed,
    /// e-mailed and announced), IGNORED, or still flagged (UNMAPPED while no mapping names what
    /// was bought, LICENSE_NOT_FOUND, FAILED), in which case no license changed.
    #[oai(status = 200)]
    Ok(Json<PaymentEventOk>),
}

#[derive(ApiResponse)]
pub enum KeyPaymentsResponse {
    /// The payment events that made or changed the key, oldest first.
    #[oai(status = 200)]
    Ok(Json<KeyPaymentsOk>),
}

fn endpoint_ok(d: payments::EndpointDetail) -> EndpointOk {
    EndpointOk {
        success: true,
        data: EndpointData {
            endpoint: EndpointView::new(&d.summary),
            mappings: d.mappings.iter().map(MappingView::new).collect(),
        },
    }
}

fn mappings_ok(mappings: Vec<Mapping>) -> MappingsOk {
    MappingsOk {
        success: true,
        data: MappingsData {
            mappings: mappings.iter().map(MappingView::new).collect(),
        },
    }
}

#[OpenApi(tag = "AdminTags::Payments")]
impl PaymentEndpointsApi {
    /// List payment endpoints
    #[oai(path = "/api/payment-endpoints", method = "get")]
    async fn list(&self, auth: AdminAuth) -> KvResult<ListPaymentEndpointsResponse> {
        let admin = auth.admin();
        let endpoints = payments::list_endpoints(&self.state, &admin.ctx)?;
        Ok(ListPaymentEndpointsResponse::Ok(Json(EndpointsOk {
            success: true,
            data: EndpointsData {
                endpoints: endpoints.iter().map(EndpointView::new).collect(),
            },
        })))
    }

    /// Create a payment endpoint
    ///
    /// Answers its `receivingPath`: paste the server's address followed by it into the
    /// provider's webhook settings.
    #[oai(path = "/api/payment-endpoints", method = "post")]
    async fn create(
        &self,
        auth: AdminAuth,
        body: Json<CreatePaymentEndpointRequest>,
    ) -> KvResult<CreatePaymentEndpointResponse> {
        let admin = auth.admin();
        let body = body.0;
        let new = payments::NewEndpoint {
            provider: body.provider,
            name: body.name,
            secret: body.secret,
        };
        let summary = payments::create_endpoint(&self.state, &admin.ctx, new).await?;
        Ok(CreatePaymentEndpointResponse::Created(Json(EndpointOk {
            success: true,
            data: EndpointData {
                endpoint: EndpointView::new(&summary),
                mappings: Vec::new(),
            },
        })))
    }

    /// A payment endpoint with its mappings
    #[oai(path = "/api/payment-endpoints/:id", method = "get")]
    async fn get(&self, auth: AdminAuth, id: Path<String>) -> KvResult<PaymentEndpointResponse> {
        let admin = auth.admin();
        let detail =
            payments::get_endpoint(&self.state, &admin.ctx, &PaymentEndpointId::from(id.0))?;
        Ok(PaymentEndpointResponse::Ok(Json(endpoint_ok(detail))))
    }

    /// Rename a payment endpoint or replace its signing secret
    #[oai(path = "/api/payment-endpoints/:id", method = "patch")]
    async fn update(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdatePaymentEndpointRequest>,
    ) -> KvResult<PaymentEndpointResponse> {
        let admin = auth.admin();
        let body = body.0;
        if body.name.is_none() && body.secret.is_none() {
            return Err(Error::Invalid("nothing to change: send name or secret".into()).into());
        }
        let changes = payments::EndpointChanges {
            name: body.name,
            secret: body.secret,
        };
        let detail = payments::update_endpoint(
            &self.state,
            &admin.ctx,
            PaymentEndpointId::from(id.0),
            changes,
        )
        .await?;
        Ok(PaymentEndpointResponse::Ok(Json(endpoint_ok(detail))))
    }

    /// Delete a payment endpoint
    ///
    /// Its mappings and received events go; the licenses it made stay.
    #[oai(path = "/api/payment-endpoints/:id", method = "delete")]
    async fn delete(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<DeletePaymentEndpointResponse> {
        let admin = auth.admin();
        payments::delete_endpoint(&self.state, &admin.ctx, PaymentEndpointId::from(id.0)).await?;
        Ok(DeletePaymentEndpointResponse::Ok(Json(PaymentDeletedOk {
            success: true,
        })))
    }

    /// Map a provider id to a project and license settings
    ///
    /// Creates the mapping, or replaces the one of the same `providerRef`.
    #[oai(path = "/api/payment-endpoints/:id/mappings", method = "post")]
    async fn put_mapping(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<PutMappingRequest>,
    ) -> KvResult<PutMappingResponse> {
        let admin = auth.admin();
        let body = body.0;
        if body.plan == Some(Plan::Custom) {
            return Err(Error::Invalid(
                "plan CUSTOM needs a number of days: map DAILY, WEEKLY, MONTHLY or LIFETIME, or \
                 let the provider's period set the expiry"
                    .into(),
            )
            .into());
        }
        let new = payments::NewMapping {
            provider_ref: body.provider_ref,
            product: ProductId::from(body.project_id),
            license_type: body.license_type,
            tier: body.tier,
            plan: body.plan,
            max_activations: body.max_activations,
            entitlements: body.entitlements.unwrap_or_default(),
        };
        let mappings =
            payments::put_mapping(&self.state, &admin.ctx, PaymentEndpointId::from(id.0), new)
                .await?;
        Ok(PutMappingResponse::Ok(Json(mappings_ok(mappings))))
    }

    /// Remove a mapping
    #[oai(
        path = "/api/payment-endpoints/:id/mappings/:provider_ref",
        method = "delete"
    )]
    async fn delete_mapping(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        #[oai(name = "provider_ref")] provider_ref: Path<String>,
    ) -> KvResult<DeleteMappingResponse> {
        let admin = auth.admin();
        let mappings = payments::delete_mapping(
            &self.state,
            &admin.ctx,
            PaymentEndpointId::from(id.0),
            provider_ref.0,
        )
        .await?;
        Ok(DeleteMappingResponse::Ok(Json(mappings_ok(mappings))))
    }

    /// Events a payment endpoint received
    ///
    /// Newest first; `flagged=true` lists only those Keyward could not act on.
    #[oai(path = "/api/payment-endpoints/:id/events", method = "get")]
    async fn events(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        /// Only the events Keyward could not act on.
        flagged: Query<Option<bool>>,
        /// Page number, from 1.
        page: Query<Option<u32>>,
        /// Items per page, 1-500 (default 50).
        limit: Query<Option<u32>>,
    ) -> KvResult<ListPaymentEventsResponse> {
        let admin = auth.admin();
        let (page, limit) = page_and_limit(page.0, limit.0)?;
        let offset = (page as u64 - 1) * limit as u64;
        let (events, total) = payments::list_events(
            &self.state,
            &admin.ctx,
            &PaymentEndpointId::from(id.0),
            flagged.0 == Some(true),
            limit,
            offset,
        )?;
        Ok(ListPaymentEventsResponse::Ok(Json(PaymentEventsOk {
            success: true,
            data: PaymentEventsData {
                events: events.iter().map(|e| EventView::new(e, None)).collect(),
                pagination: Pagination::new(page, limit, total),
            },
        })))
    }

    /// Apply a flagged payment event again
    ///
    /// Reads the event's stored body again with the endpoint's mappings of now and applies it
    /// exactly as receiving it would have (licenses, the license-delivered e-mail,
    /// `payment.*` webhook events, audit), then stores the new outcome on the event. Only a
    /// flagged event (UNMAPPED, LICENSE_NOT_FOUND, FAILED) may be applied again: an APPLIED
    /// or IGNORED one is 409 CONFLICT. One that is still flagged (its price still unmapped)
    /// is 200 with that outcome, and no license changed. `eventId` is the provider's event
    /// id, as the event list shows it; an unknown event or endpoint, or another tenant's, is
    /// 404.
    #[oai(
        path = "/api/payment-endpoints/:id/events/:eventId/apply",
        method = "post"
    )]
    async fn apply_event(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        /// The provider's event id (`eventId` of the listed event).
        #[oai(name = "eventId")]
        event_id: Path<String>,
    ) -> KvResult<ApplyPaymentEventResponse> {
        let admin = auth.admin();
        let (provider, event) = payments::apply_event(
            &self.state,
            &admin.ctx,
            PaymentEndpointId::from(id.0),
            event_id.0,
        )
        .await?;
        Ok(ApplyPaymentEventResponse::Ok(Json(PaymentEventOk {
            success: true,
            data: PaymentEventData {
                event: EventView::new(&event, Some(provider)),
            },
        })))
    }

    /// A key's payment timeline
    ///
    /// The payment events that made or changed the key: purchase, renewals, cancellation,
    /// refund, disputes.
    #[oai(
        path = "/api/keys/:id/payments",
        method = "get",
        tag = "AdminTags::Keys"
    )]
    async fn key_payments(
        &self,
        auth: AdminAuth,
        id: Path<String>,
    ) -> KvResult<KeyPaymentsResponse> {
        let admin = auth.admin();
        let timeline = payments::license_timeline(&self.state, &admin.ctx, &LicenseId::from(id.0))?;
        Ok(KeyPaymentsResponse::Ok(Json(KeyPaymentsOk {
            success: true,
            data: KeyPaymentsData {
                payments: timeline
                    .iter()
                    .map(|(p, e)| EventView::new(e, Some(*p)))
                    .collect(),
            },
        })))
    }
}
