//! Air-gapped activation as the admin and portal faces speak it: the activation request in,
//! the machine file out (both faces use the key/HWID envelope).

use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;
use time::OffsetDateTime;

use crate::api::shared::fields::named;
use crate::domain::ms_to_datetime;
use crate::service::licensing::{CheckedOut, OfflineActivated};

crate::field_names!(RequestField = "request", TtlField = "ttl");

/// The lifetime a face was sent: absent (the default), null (no expiry) or seconds.
pub fn requested_ttl(ttl: MaybeUndefined<i64>) -> Option<Option<i64>> {
    match ttl {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(t) => Some(Some(t)),
    }
}

#[derive(Object, Debug)]
pub struct OfflineActivationRequest {
    /// The activation request the app shows: `-----BEGIN ACTIVATION REQUEST-----`, base64 of
    /// `{"v":1,"key":"…","fingerprint":"…","name":"…"}` in 60-character lines,
    /// `-----END ACTIVATION REQUEST-----`; or the bare base64 (whitespace is ignored).
    #[oai(
        deserialize_with = "named::<RequestField, _>",
        validator(max_length = 4096)
    )]
    pub request: String,
    /// The machine file's lifetime in seconds, 3600..=31536000 (default 2592000, 30 days);
    /// null for a file that never expires.
    #[oai(nullable, deserialize_with = "named::<TtlField, _>")]
    pub ttl: MaybeUndefined<i64>,
}

/// A machine file for the app to load.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MachineFileView {
    /// The encrypted machine file (`-----BEGIN MACHINE FILE-----`, Keygen's
    /// `aes-256-gcm+ed25519`): verify `sig` with the product's public key over `machine/` +
    /// `enc`, decrypt `enc` with SHA-256 of the license key followed by the fingerprint.
    pub certificate: String,
    /// The machine the file is for.
    pub fingerprint: String,
    /// The machine's name, if it has one.
    #[oai(nullable)]
    pub machine_name: Option<String>,
    /// A name to save the file under (`.lic`).
    pub file_name: String,
    /// False when the machine was activated already and only the file is new.
    pub new_activation: bool,
    pub issued: OffsetDateTime,
    /// When the file expires; null for a file without expiry.
    #[oai(nullable)]
    pub expiry: Option<OffsetDateTime>,
    /// The file's lifetime in seconds; null for a file without expiry.
    #[oai(nullable)]
    pub ttl: Option<i64>,
}

#[derive(Object, Debug)]
#[oai(rename = "MachineFileOk")]
pub struct MachineFileOk {
    pub success: bool,
    pub data: MachineFileView,
}

impl MachineFileOk {
    pub fn activated(done: OfflineActivated) -> Self {
        Self::new(
            done.file,
            done.fingerprint,
            done.machine_name,
            done.file_name,
            done.new,
        )
    }

    pub fn new(
        file: CheckedOut,
        fingerprint: String,
        machine_name: Option<String>,
        file_name: String,
        new_activation: bool,
    ) -> Self {
        Self {
            success: true,
            data: MachineFileView {
                certificate: file.certificate,
                fingerprint,
                machine_name,
                file_name,
                new_activation,
                issued: ms_to_datetime(file.issued),
                expiry: file.expiry.map(ms_to_datetime),
                ttl: file.ttl,
            },
        }
    }
}
