//! Revocation lists for offline licenses: the public, signed list of a product's licenses an
//! app must refuse (see `domain::revocations` for what is on it and how its version grows).

use super::Signed;
use super::Signer;
use super::catalog;
use crate::domain::products::Product;
use crate::domain::revocations::{self, Page};
use crate::error::Error;
use crate::state::AppState;

/// A page of a product's revocation list, signed with the product's key.
#[derive(Debug, Clone)]
pub struct RevocationList {
    pub product: Product,
    pub page: u32,
    pub list: Page,
}

/// Page `page` (from 1) of the revocation list of product `product_slug` of tenant
/// `tenant_slug`. No credential: like the public key, anyone may read it (it names licenses only
/// by id and the SHA-256 of their key). An unknown product is `NotFound`.
pub fn list(
    state: &AppState,
    tenant_slug: &str,
    product_slug: &str,
    page: u32,
) -> Result<Signed<RevocationList>, Error> {
    if product_slug.is_empty() {
        return Err(Error::Invalid(
            "product is required (the product's slug)".into(),
        ));
    }
    if page == 0 {
        return Err(Error::Invalid("page must be 1 or more".into()));
    }
    let product = catalog::find_public(state, tenant_slug, product_slug)?;
    let list = state.db.read(|c| revocations::page(c, &product.id, page))?;
    let signer = Signer::of(state, &product)?;
    Ok(Signed::new(
        RevocationList {
            product,
            page,
            list,
        },
        signer,
    ))
}
