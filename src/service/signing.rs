//! Signed answers. A service that answers about a license returns [`Signed`]: the answer and
//! the [`Signer`] of its product, whose key is already open. A face can only turn it into a
//! response through a payload that signs (see `api::shared::signed`), so an answer that should
//! be signed cannot go out unsigned: without a key there is no `Signer`, and the service fails
//! with the face's error instead.

use std::sync::Arc;

use crate::domain::ProductId;
use crate::domain::products::Product;
use crate::error::Error;
use crate::state::{AppState, OpenSigningKey};

/// A product's open signing key.
#[derive(Clone)]
pub struct Signer {
    product_id: ProductId,
    key: Arc<OpenSigningKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("product_id", &self.product_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of `product`, opening its sealed key on first use.
    pub fn of(state: &AppState, product: &Product) -> Result<Self, Error> {
        let key = state.signing_keys.for_product(&state.master, product)?;
        Ok(Self {
            product_id: ProductId::from(product.id.as_str()),
            key,
        })
    }

    /// The signer of the product with this id (refusals name only the product).
    pub fn of_product_id(state: &AppState, product_id: &str) -> Result<Self, Error> {
        if let Some(key) = state.signing_keys.get(product_id) {
            return Ok(Self {
                product_id: ProductId::from(product_id),
                key,
            });
        }
        let product = state
            .db
            .read(|c| crate::domain::products::repo::find_any(c, product_id))?
            .ok_or_else(|| Error::Storage(format!("cannot sign: product {product_id} is gone")))?;
        Self::of(state, &product)
    }

    pub fn product_id(&self) -> &ProductId {
        &self.product_id
    }

    /// The id of the key that signs (`X-Keyward-Key-Id`, a license file's `meta.kid`), so an
    /// app that pins several keys knows which one verifies.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// Ed25519 over `bytes`, base64.
    pub fn sign(&self, bytes: &[u8]) -> String {
        self.key.answers.sign(bytes)
    }
}

/// An answer that must go out signed by its product's key.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    pub body: T,
    pub signer: Signer,
}

impl<T> Signed<T> {
    pub fn new(body: T, signer: Signer) -> Self {
        Self { body, signer }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Signed<U> {
        Signed {
            body: f(self.body),
            signer: self.signer,
        }
    }
}
