//! A product's signing key as both faces list it (`GET /api/v1/updates/public-key` and
//! `/api/projects/{id}/signing-keys`): one shape, so a client reads either the same way.

use poem_openapi::Object;
use time::OffsetDateTime;

use crate::domain::ms_to_datetime;
use crate::domain::signing_keys::SigningKeyRecord;

/// The previous current key's Ed25519 signature over the ASCII bytes
/// `keyward-key-endorsement/` followed by this key's `publicKey` text, exactly as listed.
#[derive(Object, Debug, Clone)]
#[oai(rename = "SigningKeyEndorsement", rename_all = "camelCase")]
pub struct EndorsementView {
    /// The kid of the endorsing key (the key current just before this one).
    pub kid: String,
    /// Ed25519 signature, base64.
    pub signature: String,
}

/// One Ed25519 key of a product.
#[derive(Object, Debug, Clone)]
#[oai(rename = "SigningKey", rename_all = "camelCase")]
pub struct SigningKeyView {
    /// First 16 hex characters of SHA-256 of the raw public key; signed answers name it in
    /// `X-Keyward-Key-Id`, license files in `meta.kid`.
    pub kid: String,
    /// Ed25519 public key: base64 of the raw 32 bytes.
    pub public_key: String,
    pub created_at: OffsetDateTime,
    /// The key that signs now (exactly one per product).
    pub current: bool,
    /// A retired key never signs again; clients drop it.
    pub retired: bool,
    #[oai(nullable)]
    pub retired_at: Option<OffsetDateTime>,
    /// `null` for a product's first key.
    #[oai(nullable)]
    pub endorsement: Option<EndorsementView>,
}

impl SigningKeyView {
    pub fn new(k: &SigningKeyRecord) -> Self {
        Self {
            kid: k.kid.clone(),
            public_key: k.public_key_b64(),
            created_at: ms_to_datetime(k.created_at),
            current: k.current,
            retired: k.retired_at.is_some(),
            retired_at: k.retired_at.map(ms_to_datetime),
            endorsement: k.endorsement.as_ref().map(|e| EndorsementView {
                kid: e.kid.clone(),
                signature: e.signature.clone(),
            }),
        }
    }
}
