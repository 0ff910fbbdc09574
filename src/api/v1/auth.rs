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
