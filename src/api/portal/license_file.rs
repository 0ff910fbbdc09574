//! The `license_file` block's operations: the bound machine's file, and air-gapped
//! activation from an activation request.

use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object};

use crate::api::shared::fields::named;
use crate::api::shared::offline::MachineFileOk;
use crate::service::portal::MachineFile;

crate::field_names!(FingerprintField = "fingerprint", TtlField = "ttl");

#[derive(Object, Debug)]
pub struct PortalMachineFileRequest {
    /// One of the machines the key is bound to; by default the one seen last.
    #[oai(
        nullable,
        deserialize_with = "named::<FingerprintField, _>",
        validator(max_length = 255)
    )]
    pub fingerprint: Option<String>,
    /// The file's lifetime in seconds, 3600..=31536000 (default 2592000, 30 days); null for a
    /// file that never expires.
    #[oai(nullable, deserialize_with = "named::<TtlField, _>")]
    pub ttl: MaybeUndefined<i64>,
}

#[derive(ApiResponse)]
pub enum PortalMachineFileResponse {
    /// The machine file, to save as `fileName` and load into the app.
    #[oai(status = 200)]
    Ok(Json<MachineFileOk>),
}

impl PortalMachineFileResponse {
    pub fn new(file: MachineFile) -> Self {
        Self::Ok(Json(MachineFileOk::new(
            file.file,
            file.fingerprint,
            file.machine_name,
            file.file_name,
            false,
        )))
    }
}

#[derive(ApiResponse)]
pub enum PortalOfflineActivationResponse {
    /// The machine is activated on the user's key (or was already); its machine file, to save
    /// as `fileName` and carry to the app.
    #[oai(status = 200)]
    Ok(Json<MachineFileOk>),
}
