//! Linking a license key to the account.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::api::shared::fields::named;
use crate::domain::licenses::{LicenseStatus, Plan};
use crate::service::portal::LinkedKey;

crate::field_names!(KeyField = "key");

#[derive(Object, Debug)]
pub struct PortalActivateRequest {
    /// The license key, as the user received it (case and spaces do not matter).
    #[oai(deserialize_with = "named::<KeyField, _>", validator(max_length = 100))]
    pub key: String,
}

#[derive(Object, Debug)]
#[oai(rename = "PortalActivatedKey")]
pub struct ActivatedKey {
    pub mask: String,
    #[oai(nullable)]
    pub plan: Option<Plan>,
    pub status: LicenseStatus,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalActivateData {
    pub message: String,
    pub key: ActivatedKey,
    /// True until the loader has bound the key to a machine.
    pub needs_hwid_binding: bool,
}

#[derive(Object, Debug)]
pub struct PortalActivateOk {
    pub success: bool,
    pub data: PortalActivateData,
}

impl PortalActivateOk {
    pub fn new(linked: LinkedKey) -> Json<Self> {
        Json(Self {
            success: true,
            data: PortalActivateData {
                message: "Key activated successfully!".into(),
                key: ActivatedKey {
                    mask: linked.mask,
                    plan: linked.plan,
                    status: linked.status,
                },
                needs_hwid_binding: linked.needs_hwid_binding,
            },
        })
    }
}

#[derive(ApiResponse)]
pub enum PortalActivateResponse {
    /// The key is linked to this account.
    #[oai(status = 200)]
    Ok(Json<PortalActivateOk>),
}
