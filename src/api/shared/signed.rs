//! [`SignedJson`]: the only payload a signed answer can take. It is built from a service's
//! [`Signed`] answer (which carries the product's open key), serializes the body once, and
//! signs those exact bytes: there is no way to make one without signing.

use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};

use crate::service::signing::{Signed, Signer};

/// The product whose key signed the body.
pub const SIGNED_BY_HEADER: &str = "X-Keyward-Product";
/// Ed25519 over the exact response body, base64.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The id of the key that made the signature (a license file's `meta.kid`).
pub const KEY_ID_HEADER: &str = "X-Keyward-Key-Id";

pub struct SignedJson<T> {
    value: T,
    signer: Signer,
}

impl<T> SignedJson<T> {
    pub fn new(value: T, signer: Signer) -> Self {
        Self { value, signer }
    }
}

impl<T> From<Signed<T>> for SignedJson<T> {
    fn from(s: Signed<T>) -> Self {
        Self::new(s.body, s.signer)
    }
}

impl<T: Type> Payload for SignedJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ToJSON> IntoResponse for SignedJson<T> {
    fn into_response(self) -> Response {
        let bytes = self.value.to_json_string().into_bytes();
        let signature = self.signer.sign(&bytes);
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header(SIGNED_BY_HEADER, self.signer.product_id().as_str())
            .header(SIGNATURE_HEADER, signature)
            .header(KEY_ID_HEADER, self.signer.kid())
            .body(bytes)
    }
}

/// A body signed when its product is known and plain when there is none: the answer about a
/// license that does not exist names no product, so nothing could sign it. Every answer that
/// names a product goes through [`SignedJson`].
pub enum SignedIfKnown<T> {
    Signed(SignedJson<T>),
    Plain(T),
}

impl<T> From<Signed<T>> for SignedIfKnown<T> {
    fn from(s: Signed<T>) -> Self {
        Self::Signed(s.into())
    }
}

impl<T: Type> Payload for SignedIfKnown<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ToJSON> IntoResponse for SignedIfKnown<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Signed(signed) => signed.into_response(),
            Self::Plain(value) => Response::builder()
                .content_type(Self::CONTENT_TYPE)
                .body(value.to_json_string()),
        }
    }
}
