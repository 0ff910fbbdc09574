//! By e-mail: "send me my keys", the password-reset link and its confirmation, and the
//! account's e-mail address.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use super::account::PortalUserView;
use crate::api::shared::fields::named;

crate::field_names!(
    ProjectIdField = "projectId",
    EmailField = "email",
    TokenField = "token",
    PasswordField = "password",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalEmailRequest {
    /// The project whose portal this is.
    #[oai(
        deserialize_with = "named::<ProjectIdField, _>",
        validator(max_length = 64)
    )]
    pub project_id: String,
    /// The customer's e-mail address.
    #[oai(
        deserialize_with = "named::<EmailField, _>",
        validator(max_length = 254)
    )]
    pub email: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalResetConfirmRequest {
    /// The `reset` parameter of the link in the message.
    #[oai(
        deserialize_with = "named::<TokenField, _>",
        validator(max_length = 512)
    )]
    pub token: String,
    /// The new password, 8-128 characters.
    #[oai(
        deserialize_with = "named::<PasswordField, _>",
        validator(max_length = 256)
    )]
    pub password: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PortalAccountEmailRequest {
    /// The new address; null or blank removes it.
    #[oai(
        nullable,
        deserialize_with = "named::<EmailField, _>",
        validator(max_length = 254)
    )]
    pub email: Option<String>,
}

#[derive(Object, Debug)]
pub struct PortalMessageData {
    pub message: String,
}

#[derive(Object, Debug)]
pub struct PortalMessageOk {
    pub success: bool,
    pub data: PortalMessageData,
}

impl PortalMessageOk {
    pub fn new(message: &str) -> Json<Self> {
        Json(Self {
            success: true,
            data: PortalMessageData {
                message: message.to_owned(),
            },
        })
    }
}

#[derive(Object, Debug)]
pub struct PortalAccountOk {
    pub success: bool,
    pub data: PortalUserView,
}

#[derive(ApiResponse)]
pub enum PortalMailRequestResponse {
    /// Accepted: if the address is known, a message is on its way (the same answer either
    /// way).
    #[oai(status = 202)]
    Accepted(Json<PortalMessageOk>),
}

#[derive(ApiResponse)]
pub enum PortalResetConfirmResponse {
    /// The password is changed; every session of the account ended. Sign in again.
    #[oai(status = 200)]
    Ok(Json<PortalMessageOk>),
}

#[derive(ApiResponse)]
pub enum PortalAccountEmailResponse {
    /// The account with its new address.
    #[oai(status = 200)]
    Ok(Json<PortalAccountOk>),
}
