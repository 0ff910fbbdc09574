//! The caller context: who acts, and what it may reach. Each face's authentication builds one
//! (an operator's session, an API key, a portal user's token, a licensed app's key); every
//! service takes it and scopes every look-up by it. An object outside its reach is answered
//! exactly like a missing one (404), so reach is decided here once, not remembered per handler.

use std::net::IpAddr;

use crate::domain::api_keys::Scope;
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::operators::Role;
use crate::domain::{
    ApiKeyId, OperatorId, PaymentEndpointId, PortalUserId, ProductId, ProductScope, TenantId,
    TenantScope,
};
use crate::error::Error;

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person signed in to the admin panel.
    Operator { id: OperatorId, role: Role },
    /// A server-to-server credential with its scope.
    ApiKey { id: ApiKeyId, scope: Scope },
    /// An end user of a product's portal.
    PortalUser { id: PortalUserId },
    /// A licensed app or bot that proved itself with a project secret or a license key.
    App,
    /// The operator's shell (`keyward …` on the server's own data directory).
    Cli,
    /// Background jobs: expiry, culling, abuse detection.
    System,
    /// A payment provider's webhook, proven by its signature, on one payment endpoint.
    PaymentProvider { endpoint: PaymentEndpointId },
}

#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Actor,
    /// The caller's own tenant: where what it creates belongs.
    pub tenant: TenantId,
    /// The tenants it reaches (only ADMIN operators, the CLI and the system reach all).
    pub tenants: TenantScope,
    /// The products it reaches within them.
    pub products: ProductScope,
    /// The client address (trusted-proxy aware), for the audit trail and abuse detection.
    pub ip: Option<IpAddr>,
}

impl Ctx {
    pub fn operator(id: OperatorId, role: Role, tenant: TenantId, ip: Option<IpAddr>) -> Self {
        let tenants = match role {
            Role::Admin => TenantScope::All,
            Role::User => TenantScope::Only(tenant.clone()),
        };
        Self {
            actor: Actor::Operator { id, role },
            tenant,
            tenants,
            products: ProductScope::All,
            ip,
        }
    }

    pub fn api_key(
        id: ApiKeyId,
        scope: Scope,
        tenant: TenantId,
        product: Option<ProductId>,
        ip: Option<IpAddr>,
    ) -> Self {
        Self {
            actor: Actor::ApiKey { id, scope },
            tenants: TenantScope::Only(tenant.clone()),
            tenant,
            products: product.map_or(ProductScope::All, ProductScope::Only),
            ip,
        }
    }

    pub fn portal_user(
        id: PortalUserId,
        tenant: TenantId,
        product: ProductId,
        ip: Option<IpAddr>,
    ) -> Self {
        Self {
            actor: Actor::PortalUser { id },
            tenants: TenantScope::Only(tenant.clone()),
            tenant,
            products: ProductScope::Only(product),
            ip,
        }
    }

    /// A licensed app of one product (the key/HWID face: a project secret or a license key
    /// proved it).
    pub fn app(tenant: TenantId, product: ProductId, ip: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::App,
            tenants: TenantScope::Only(tenant.clone()),
            tenant,
            products: ProductScope::Only(product),
            ip,
        }
    }

    /// The operator's shell, acting in `tenant` (it reaches every tenant, as the server's
    /// owner does).
    pub fn cli(tenant: TenantId) -> Self {
        Self {
            actor: Actor::Cli,
            tenant,
            tenants: TenantScope::All,
            products: ProductScope::All,
            ip: None,
        }
    }

    pub fn system(tenant: TenantId) -> Self {
        Self {
            actor: Actor::System,
            tenant,
            tenants: TenantScope::All,
            products: ProductScope::All,
            ip: None,
        }
    }

    /// A payment provider's webhook on `endpoint`: it reaches its endpoint's tenant, every
    /// product there (its mappings name them).
    pub fn payment_provider(
        endpoint: PaymentEndpointId,
        tenant: TenantId,
        ip: Option<IpAddr>,
    ) -> Self {
        Self {
            actor: Actor::PaymentProvider { endpoint },
            tenants: TenantScope::Only(tenant.clone()),
            tenant,
            products: ProductScope::All,
            ip,
        }
    }

    /// True when an object of `tenant_id` and `product_id` is within reach.
    pub fn reaches(&self, tenant_id: &str, product_id: &str) -> bool {
        self.tenants.reaches(tenant_id) && self.products.reaches(product_id)
    }

    pub fn reaches_tenant(&self, tenant_id: &str) -> bool {
        self.tenants.reaches(tenant_id)
    }

    /// True when the caller is restricted to one product.
    pub fn product_restricted(&self) -> bool {
        matches!(self.products, ProductScope::Only(_))
    }

    /// The actor as the audit trail names it.
    pub fn actor_label(&self) -> String {
        match &self.actor {
            Actor::Operator { id, .. } => format!("operator:{id}"),
            Actor::ApiKey { id, .. } => format!("api_key:{id}"),
            Actor::PortalUser { id } => format!("portal:{id}"),
            Actor::App => "app".into(),
            Actor::Cli => "cli".into(),
            Actor::System => "system".into(),
            Actor::PaymentProvider { endpoint } => format!("payment:{endpoint}"),
        }
    }

    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(|i| i.to_string())
    }

    /// An audit event by this caller, with its address: every service starts its events here.
    pub fn event(&self, tenant_id: &str, action: AuditAction) -> AuditEvent {
        AuditEvent::new(tenant_id, &self.actor_label(), action).ip(self.ip_text().as_deref())
    }

    /// The API-key scope the caller holds, if it is an API key; operators and the CLI hold
    /// every scope of the admin API (roles limit them elsewhere).
    pub fn api_key_scope(&self) -> Option<Scope> {
        match &self.actor {
            Actor::ApiKey { scope, .. } => Some(*scope),
            _ => None,
        }
    }

    /// Refuses callers that may not administer operators: only ADMIN operators and the CLI
    /// may. API keys never manage operators, whatever their scope.
    pub fn require_operator_admin(&self) -> Result<(), Error> {
        match &self.actor {
            Actor::Operator {
                role: Role::Admin, ..
            }
            | Actor::Cli => Ok(()),
            Actor::ApiKey { .. } => Err(Error::Forbidden(
                "API keys cannot administer operators; sign in as an ADMIN operator".into(),
            )),
            _ => Err(Error::Forbidden(
                "Only ADMIN operators may administer operators".into(),
            )),
        }
    }
}
