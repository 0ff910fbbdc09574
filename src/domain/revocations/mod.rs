//! Revocation lists for offline licenses. An app that validates offline cannot ask whether its
//! license still holds; it downloads its product's signed list of the licenses it must refuse.
//!
//! The rule, in one place: a license is on its product's list while its stored status is
//! SUSPENDED, BANNED or REVOKED ([`listed`]). Expired licenses are not listed (they expire by
//! themselves). Every change of a list (a license enters, leaves, or changes its listed status)
//! increments the product's version in the same transaction as the status change, so versions
//! only grow. The status writers in `licenses::repo` call [`follow`] after each write, so no
//! path that sets a status can forget the list.

pub mod repo;

use rusqlite::Connection;

use super::licenses::LicenseStatus;
use crate::error::Result;

/// Entries a page of a list holds at most, so one answer stays small (about 150 KB).
pub const PAGE_SIZE: u32 = 1000;

/// Whether a license with this stored status is on its product's revocation list.
pub fn listed(status: LicenseStatus) -> bool {
    matches!(
        status,
        LicenseStatus::Suspended | LicenseStatus::Banned | LicenseStatus::Revoked
    )
}

/// One license on a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub license_id: String,
    /// Hex SHA-256 of the normalized license key: names the license without revealing it.
    pub key_sha256: String,
    pub status: LicenseStatus,
    /// When the license entered the list with this status, ms.
    pub revoked_at: i64,
}

/// Hex SHA-256 of a license key as an app holds it, normalized like every key comparison.
pub fn key_sha256(key: &str) -> String {
    hex::encode(crate::crypto::sha256(
        super::licenses::normalize_key(key).as_bytes(),
    ))
}

/// One page of a product's list, with the version it belongs to.
#[derive(Debug, Clone)]
pub struct Page {
    pub version: u64,
    pub entries: Vec<Entry>,
    pub total: u64,
}

/// Brings the list in step with license `license_id` of `product_id`, whose stored status is now
/// `status`: it enters (or changes its status on) the list when [`listed`], leaves it otherwise.
/// Any change increments the product's version. Called in the transaction of the status change.
pub fn follow(
    conn: &Connection,
    product_id: &str,
    license_id: &str,
    status: LicenseStatus,
    now: i64,
) -> Result<()> {
    let current = repo::status_of(conn, license_id)?;
    let changed = match (current, listed(status)) {
        (Some(on_list), true) if on_list == status => false,
        (_, true) => {
            repo::upsert(conn, product_id, license_id, status, now)?;
            true
        }
        (Some(_), false) => {
            repo::remove(conn, license_id)?;
            true
        }
        (None, false) => false,
    };
    if changed {
        repo::bump_version(conn, product_id, now)?;
    }
    Ok(())
}

/// Page `page` (from 1) of the product's list, in license id order, and its version.
pub fn page(conn: &Connection, product_id: &str, page: u32) -> Result<Page> {
    let offset = u64::from(page.saturating_sub(1)) * u64::from(PAGE_SIZE);
    // One snapshot: the version always describes exactly the entries read with it.
    let tx = conn.unchecked_transaction()?;
    let page = Page {
        version: repo::version(&tx, product_id)?,
        entries: repo::entries(&tx, product_id, PAGE_SIZE, offset)?,
        total: repo::count(&tx, product_id)?,
    };
    tx.finish()?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::licenses;

    /// Every status write, whichever writer makes it, keeps the list in step and moves the
    /// version only when the list changes.
    #[test]
    fn every_status_writer_follows_the_rule() -> std::result::Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let conn = crate::storage::open_and_migrate(&dir.path().join("k.db"))?;
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier,
                status, max_activations, created_at, updated_at)
             VALUES ('lic_1', 't', 'prod_1', 'TT-AAAA', 'PERPETUAL', 'PERSONAL', 'ACTIVE', 1, 0, 0);",
        )?;
        use LicenseStatus::*;
        // (status written, version after, listed with)
        let steps: &[(LicenseStatus, u64, Option<LicenseStatus>)] = &[
            (Active, 0, None),
            (Expired, 0, None),
            (Active, 0, None),
            (Suspended, 1, Some(Suspended)),
            (Suspended, 1, Some(Suspended)),
            (Banned, 2, Some(Banned)),
            (Active, 3, None),
            (Suspended, 4, Some(Suspended)),
            (Revoked, 5, Some(Revoked)),
        ];
        for (i, (status, version, on_list)) in steps.iter().enumerate() {
            let now = i as i64 + 1;
            if *status == Revoked {
                licenses::repo::set_revoked(&conn, "lic_1", None, now)?;
            } else {
                licenses::repo::set_status(&conn, "lic_1", *status, now)?;
            }
            assert_eq!(
                repo::version(&conn, "prod_1")?,
                *version,
                "step {i}: {status:?}"
            );
            assert_eq!(
                repo::status_of(&conn, "lic_1")?,
                *on_list,
                "step {i}: {status:?}"
            );
        }
        // A renewal keeps the status, and so the list.
        licenses::repo::set_valid_until(&conn, "lic_1", 99, Revoked, 20)?;
        assert_eq!(repo::version(&conn, "prod_1")?, 5);
        let page = page(&conn, "prod_1", 1)?;
        assert_eq!(page.total, 1);
        assert_eq!(page.entries[0].key_sha256, key_sha256(" tt-aaaa "));
        assert_eq!(
            page.entries[0].revoked_at, 9,
            "when it took its listed status"
        );
        // An unknown license changes nothing.
        licenses::repo::set_status(&conn, "lic_none", Suspended, 30)?;
        assert_eq!(repo::version(&conn, "prod_1")?, 5);
        Ok(())
    }
}
