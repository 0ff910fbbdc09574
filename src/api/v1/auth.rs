//! `X-API-Key` authentication. Each scope is its own extractor type, so a handler's signature
//! states the access it needs and no handler body can forget to check it.

use poem::{IntoResponse, Request};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::ApiKey;

use super::error::VendorError;
use crate::api::shared::api_key::authenticate;
use crate::domain::api_keys::Scope;
use crate::error::Error;
use crate::service::Ctx;

/// A request proven to come with a live API key of `tenant_id`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub api_key_id: String,
    pub scope: Scope,
    /// Keys restricted to one product see nothing of the others.
    pub product_id: Option<String>,
    pub ip: Option<String>,
    /// The same address, parsed (for abuse reports).
    pub client_ip: Option<std::net::IpAddr>,
}

impl From<crate::service::Ctx> for Caller {
    fn from(ctx: crate::service::Ctx) -> Self {
        let (api_key_id, scope) = match &ctx.actor {
            crate::service::Actor::ApiKey { id, scope } => (id.to_string(), *scope),
            _ => (String::new(), Scope::ValidateOnly),
        };
        Self {
            tenant_id: ctx.tenant.to_string(),
            api_key_id,
            scope,
            product_id: ctx.products.filter().map(str::to_owned),
            ip: ctx.ip_text(),
            client_ip: ctx.ip,
        }
    }
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.api_key_id)
    }

    /// Where an abuse report about this caller's request belongs.
    pub fn abuse_scope(&self) -> crate::abuse::Scope {
        crate::abuse::Scope::Tenant {
            tenant_id: self.tenant_id.clone(),
            product_id: self.product_id.clone(),
        }
    }

    pub fn sees_product(&self, product_id: &str) -> bool {
        self.product_id.as_deref().is_none_or(|p| p == product_id)
    }
}

/// Any live API key (VALIDATE_ONLY and above).
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "validate_only"
)]
pub struct ValidateScope(pub Ctx);

/// An API key with CREATE_LICENSE scope or above.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "create_license"
)]
pub struct CreateScope(pub Ctx);

/// An API key with READ_ONLY scope or above.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "read_only"
)]
pub struct ReadScope(pub Ctx);

async fn validate_only(req: &Request, key: ApiKey) -> poem::Result<Ctx> {
    authenticate(req, &key.key, Scope::ValidateOnly).map_err(refuse)
}

async fn create_license(req: &Request, key: ApiKey) -> poem::Result<Ctx> {
    authenticate(req, &key.key, Scope::CreateLicense).map_err(refuse)
}

async fn read_only(req: &Request, key: ApiKey) -> poem::Result<Ctx> {
    authenticate(req, &key.key, Scope::ReadOnly).map_err(refuse)
}

fn refuse(err: Error) -> poem::Error {
    poem::Error::from_response(VendorError::from_error(&err).into_response())
}
