//! Issuing and managing licenses ("keys" on the key/HWID face): the vendor API's
//! create/revoke/renew/by-order, the admin API's `/api/keys`, and the bot's HWID reset.
//! Every look-up is scoped by the caller's [`Ctx`]: a license or product outside its reach is
//! "not found", exactly like a missing one.

mod import;
mod issue;
mod manage;
mod read;

/// A listed license with its activation count, as [`list`] returns it.
pub use crate::domain::licenses::repo::KeyRow;
pub use import::{ImportReport, ImportRow, import};
pub use issue::{Idempotency, LicenseOrder, PlanKeys, issue, issue_plan_keys};
pub use manage::{HwidReset, KeyChanges, delete, renew, reset_hwid, revoke, update};
pub use read::{KeyDetail, KeyFilter, by_order, find, get, list};

/// An audit event as read back (a key's recent logs): faces show it, never build one.
pub use crate::domain::audit::AuditEvent as LogEntry;

use rusqlite::Connection;

use crate::domain::LicenseId;
use crate::domain::licenses::{self, License};
use crate::error::Error;
use crate::service::Ctx;

pub(crate) use issue::issue_in;
pub(crate) use manage::{expire_at_in, renew_in, revoke_in, set_status_in};

/// Adds `extra`'s fields to an audit event's detail (an effect's cause, such as a payment).
fn merge_detail(detail: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
}

/// A license named by its id or by its key (the vendor API's revoke and renew accept both).
#[derive(Debug, Clone)]
pub enum KeyRef {
    Id(LicenseId),
    /// Normalized (see [`licenses::normalize_key`]).
    Key(String),
}

impl KeyRef {
    /// The id when given, else the key; neither is invalid input.
    pub fn from_parts(id: Option<String>, key: Option<String>) -> Result<Self, Error> {
        match (id, key) {
            (Some(id), _) => Ok(Self::Id(LicenseId::from(id))),
            (None, Some(key)) => Ok(Self::Key(licenses::normalize_key(&key))),
            (None, None) => Err(Error::Invalid("licenseId or licenseKey is required".into())),
        }
    }
}

/// The license `target` names, if the caller reaches it; `missing` names what is reported
/// not found ("license" on the vendor face, "key" on the admin face).
fn reachable(
    c: &Connection,
    ctx: &Ctx,
    target: &KeyRef,
    missing: &'static str,
) -> Result<License, Error> {
    let found = match target {
        KeyRef::Id(id) => licenses::repo::find_in(c, ctx.tenants.filter(), id)?,
        KeyRef::Key(key) => match ctx.tenants.filter() {
            Some(tenant) => licenses::repo::find_by_key(c, tenant, key)?,
            None => licenses::repo::find_by_key_everywhere(c, key)?,
        },
    };
    found
        .filter(|l| ctx.reaches(&l.tenant_id, &l.product_id))
        .ok_or(Error::NotFound(missing))
}
