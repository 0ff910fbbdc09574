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

/// How an answer becomes the bytes that are signed and sent. The default goes through
/// poem-openapi's `Value` tree (a map and a string per field, then the text). The two
/// validate answers, written on every validation, override it to write their JSON straight
/// with serde; each face's tests check that both serializations give the same document.
pub trait SignedBody: ToJSON {
    fn body_bytes(&self) -> Vec<u8> {
        self.to_json_string().into_bytes()
    }
}

/// [`SignedBody::body_bytes`] for a type that also derives `serde::Serialize`: the JSON
/// written directly. Serializing plain data cannot fail; if it ever did, the `Value` tree
/// still gives the answer.
pub fn serde_body<T: ToJSON + serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| value.to_json_string().into_bytes())
}

/// RFC 3339, as poem-openapi writes an `OffsetDateTime` (for `serialize_with`).
pub fn rfc3339<S: serde::Serializer>(at: &time::OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// [`rfc3339`] of an optional time (null when absent).
pub fn rfc3339_or_null<S: serde::Serializer>(
    at: &Option<time::OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

/// Test helper: `value`'s direct bytes are the same JSON document as its `Value` tree's.
#[cfg(test)]
pub fn assert_same_document<T: SignedBody>(value: &T) {
    let direct: serde_json::Value =
        serde_json::from_slice(&value.body_bytes()).unwrap_or(serde_json::Value::Null);
    let tree = value.to_json().unwrap_or(serde_json::Value::Null);
    assert_eq!(
        direct, tree,
        "direct JSON and poem-openapi's Value tree differ"
    );
    assert!(!direct.is_null());
}

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

impl<T: SignedBody> IntoResponse for SignedJson<T> {
    fn into_response(self) -> Response {
        let bytes = self.value.body_bytes();
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

impl<T: SignedBody> IntoResponse for SignedIfKnown<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Signed(signed) => signed.into_response(),
            Self::Plain(value) => Response::builder()
                .content_type(Self::CONTENT_TYPE)
                .body(value.body_bytes()),
        }
    }
}
