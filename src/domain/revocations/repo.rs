use rusqlite::{Connection, OptionalExtension, params};

use super::Entry;
use crate::domain::licenses::LicenseStatus;
use crate::error::Result;

/// The status the license is listed with, if it is on its list.
pub fn status_of(conn: &Connection, license_id: &str) -> Result<Option<LicenseStatus>> {
    Ok(conn
        .prepare_cached("SELECT status FROM revocations WHERE license_id = ?1")?
        .query_row([license_id], |r| r.get(0))
        .optional()?)
}

pub fn upsert(
    conn: &Connection,
    product_id: &str,
    license_id: &str,
    status: LicenseStatus,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO revocations (license_id, product_id, status, revoked_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (license_id) DO UPDATE SET status = excluded.status,
             revoked_at = excluded.revoked_at",
    )?
    .execute(params![license_id, product_id, status, now])?;
    Ok(())
}

pub fn remove(conn: &Connection, license_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM revocations WHERE license_id = ?1")?
        .execute([license_id])?;
    Ok(())
}

/// Increments the product's version (the first change makes it 1).
pub fn bump_version(conn: &Connection, product_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO revocation_lists (product_id, version, updated_at) VALUES (?1, 1, ?2)
         ON CONFLICT (product_id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at",
    )?
    .execute(params![product_id, now])?;
    Ok(())
}

/// The product's version: 0 while its list never changed.
pub fn version(conn: &Connection, product_id: &str) -> Result<u64> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM revocation_lists WHERE product_id = ?1")?
        .query_row([product_id], |r| r.get(0))
        .optional()?;
    Ok(version.map_or(0, |v| v.max(0) as u64))
}

pub fn count(conn: &Connection, product_id: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM revocations WHERE product_id = ?1")?
        .query_row([product_id], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

pub fn entries(conn: &Connection, product_id: &str, limit: u32, offset: u64) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.license_id, l.license_key, r.status, r.revoked_at
         FROM revocations r JOIN licenses l ON l.id = r.license_id
         WHERE r.product_id = ?1 ORDER BY r.license_id LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt.query_map(params![product_id, limit, offset as i64], |r| {
        Ok(Entry {
            license_id: r.get(0)?,
            key_sha256: super::key_sha256(&r.get::<_, String>(1)?),
            status: r.get(2)?,
            revoked_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
