//! The per-project user portal: end users register and sign in to one product's portal, link a
//! key of that product, read their dashboard and download the loader. A signed-in user acts
//! through [`Ctx::portal_user`], which reaches its own tenant and product only: every look-up
//! below is scoped by it, so a portal of one project reaches nothing of another's.
//!
//! Public steps (the portal's face, register, login) happen before there is a portal user;
//! they take the client address instead of a context.

mod account;
mod dashboard;
mod keys;
mod license_file;
mod loader;
mod recovery;

pub use account::{PortalSession, authenticate, login, logout, register};
pub use dashboard::{
    Access, Dashboard, KeyFacts, LoaderLink, PortalFace, ShownBlock, dashboard, info,
};
pub use keys::{LinkedKey, link_key};
pub use license_file::{MachineFile, activate_offline, machine_file};
pub use loader::{LoaderDownload, download_loader};
pub use recovery::{request_password_reset, reset_password, send_my_keys, set_email};

use rusqlite::Connection;

use super::{Actor, Ctx};
use crate::domain::portal_users::{self, PortalUser};
use crate::domain::products::{self, Product};
use crate::error::Error;

/// The portal user the context speaks for, read again within its reach.
fn signed_in_user(c: &Connection, ctx: &Ctx) -> Result<PortalUser, Error> {
    let Actor::PortalUser { id } = &ctx.actor else {
        return Err(Error::Forbidden(
            "only a signed-in portal user has a portal account".into(),
        ));
    };
    portal_users::repo::find(c, id)?
        .filter(|u| ctx.reaches(&u.tenant_id, &u.product_id))
        .ok_or_else(|| Error::Unauthorized("The portal session has expired; sign in again".into()))
}

/// The user's product, while its portal is open. A portal the vendor disabled is not there
/// for anyone, signed in or not.
fn open_portal_of(c: &Connection, ctx: &Ctx, user: &PortalUser) -> Result<Product, Error> {
    products::repo::find(c, &user.tenant_id, &user.product_id)?
        .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
        .filter(|p| portal_users::settings_of(p).enabled)
        .ok_or(Error::NotFound("portal"))
}
