//! `POST /api/license-file`: an offline license for the key on this machine, a Keygen-compatible
//! machine file (the fingerprint is the HWID). Authenticated and refused like `/api/validate`.

use poem::Request;
use poem_openapi::payload::{Json, Response};
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::ClientTags;
use super::validate::{Refusal, declare_signed_refusals};
use crate::api::ClientIp;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvError;
use crate::api::shared::signed::SignedJson;
use crate::domain::ms_to_datetime;
use crate::error::Error;
use crate::service::licensing::{self, FileOptions, KeyClient, KeyLookup};
use crate::state::AppState;

pub struct LicenseFileApi {
    pub state: AppState,
}

crate::field_names!(
    KeyField = "key",
    HwidField = "hwid",
    SecretField = "secret",
    TtlField = "ttl",
    EncryptField = "encrypt",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct LicenseFileRequest {
    /// The license key.
    #[oai(
        deserialize_with = "named::<KeyField, _>",
        validator(min_length = 1, max_length = 100)
    )]
    pub key: String,
    /// Hardware fingerprint, as sent to `/api/validate`; the machine file's fingerprint.
    #[oai(
        deserialize_with = "named::<HwidField, _>",
        validator(min_length = 1, max_length = 255)
    )]
    pub hwid: String,
    /// The project's `kv_` secret: limits the search to that project's keys.
    #[oai(
        nullable,
        deserialize_with = "named::<SecretField, _>",
        validator(max_length = 100)
    )]
    pub secret: Option<String>,
    /// The file's lifetime in seconds, 3600..=31536000 (default 2592000, 30 days); null for a
    /// file that never expires.
    #[oai(nullable, deserialize_with = "named::<TtlField, _>")]
    pub ttl: MaybeUndefined<i64>,
    /// Encrypt the payload (`aes-256-gcm+ed25519`, the default) or only sign it
    /// (`base64+ed25519`).
    #[oai(nullable, deserialize_with = "named::<EncryptField, _>")]
    pub encrypt: Option<bool>,
}

#[derive(Object, Debug)]
pub struct LicenseFile {
    /// The machine file (`-----BEGIN MACHINE FILE-----`), Keygen's format: verify `sig` with
    /// the project's public key over `machine/` + `enc`, then decrypt `enc` with SHA-256 of
    /// the key (as the server stores it, upper-case) followed by the HWID.
    pub certificate: String,
    pub issued: OffsetDateTime,
    /// When the file expires; null for a file without expiry.
    #[oai(nullable)]
    pub expiry: Option<OffsetDateTime>,
    /// The file's lifetime in seconds; null for a file without expiry.
    #[oai(nullable)]
    pub ttl: Option<i64>,
}

#[derive(Object, Debug)]
pub struct LicenseFileOk {
    pub success: bool,
    pub data: LicenseFile,
}

impl crate::api::shared::signed::SignedBody for LicenseFileOk {}

#[derive(ApiResponse)]
pub enum LicenseFileResponse {
    /// The machine file. The answer is signed (`X-Signature`) like `/api/validate`'s; the file
    /// carries its own signature.
    #[oai(status = 200)]
    Ok(
        SignedJson<LicenseFileOk>,
        /// The project whose key signed the body and the file.
        #[oai(header = "X-Keyward-Product")]
        String,
    ),
}

#[OpenApi(tag = "ClientTags::Validation")]
impl LicenseFileApi {
    /// Check out an offline machine file
    ///
    /// The rules of `/api/validate`: an unbound key is bound to this HWID, a key bound to
    /// other machines → 403 HWID_MISMATCH; expired, suspended, banned and revoked keys → 403
    /// KEY_EXPIRED / KEY_SUSPENDED / KEY_BANNED / KEY_REVOKED; an unknown key → 404. No session
    /// is opened. `ttl` out of range → 400. Signed, and so are refusals about a known key.
    #[oai(path = "/api/license-file", method = "post")]
    async fn license_file(
        &self,
        req: &Request,
        body: Json<LicenseFileRequest>,
    ) -> Result<Response<LicenseFileResponse>, FileRefusal> {
        let body = body.0;
        if body.hwid.trim().is_empty() {
            return Err(
                Error::Invalid("field `hwid` is required (1-255 characters)".into()).into(),
            );
        }
        let client = KeyClient::app(ClientIp::of(req));
        let options = FileOptions {
            ttl: match body.ttl {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(t) => Some(Some(t)),
            },
            encrypt: body.encrypt.unwrap_or(true),
        };
        let lookup = KeyLookup::Key {
            key: body.key,
            secret: body.secret,
        };
        let signed =
            licensing::key_checkout(&self.state, &client, lookup, body.hwid, options).await?;
        let product_id = signed.signer.product_id().to_string();
        Ok(Response::new(LicenseFileResponse::Ok(
            SignedJson::from(signed.map(|f| LicenseFileOk {
                success: true,
                data: LicenseFile {
                    certificate: f.certificate,
                    issued: ms_to_datetime(f.issued),
                    expiry: f.expiry.map(ms_to_datetime),
                    ttl: f.ttl,
                },
            })),
            product_id,
        )))
    }
}

/// A refusal of `/api/license-file`: `/api/validate`'s, without its encrypted form (there is no
/// envelope here). Signed when the key's project is known.
#[derive(Debug)]
pub struct FileRefusal(Refusal);

impl<T: Into<Refusal>> From<T> for FileRefusal {
    fn from(refusal: T) -> Self {
        Self(refusal.into())
    }
}

impl ApiResponse for FileRefusal {
    fn meta() -> MetaResponses {
        let mut meta = KvError::meta();
        declare_signed_refusals(&mut meta);
        meta
    }

    fn register(registry: &mut Registry) {
        KvError::register(registry);
    }
}

impl poem::IntoResponse for FileRefusal {
    fn into_response(self) -> poem::Response {
        self.0.into_response()
    }
}

impl From<FileRefusal> for poem::Error {
    fn from(refusal: FileRefusal) -> Self {
        poem::Error::from_response(poem::IntoResponse::into_response(refusal))
    }
}
