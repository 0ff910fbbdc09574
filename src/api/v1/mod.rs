//! The vendor face (`/api/v1/*`, `/api/health`): server-to-server calls and licensed apps,
//! as `spec/vendor-api.md` defines them.

pub mod auth;
pub mod error;
pub mod feeds;
pub mod health;
pub mod license;
pub mod license_manage;
pub mod products;
pub mod schemas;
pub mod updates;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Activate, validate, deactivate, heartbeat, check; create, revoke, renew licenses.
    License,
    /// Products of the API key's tenant.
    Products,
    /// Software updates (the public key for verifying signatures).
    Updates,
    /// Service status.
    Health,
}
