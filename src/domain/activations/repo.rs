use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Activation;
use crate::error::Result;

/// Column positions of `SELECT *` (see `licenses::repo::COLUMNS`).
pub const COLUMNS: [&str; 11] = [
    "id",
    "tenant_id",
    "license_id",
    "machine_id",
    "machine_name",
    "os_name",
    "os_version",
    "app_version",
    "ip",
    "activated_at",
    "last_seen_at",
];

fn from_row(r: &Row<'_>) -> rusqlite::Result<Activation> {
    columns_from(r, 0)
}

/// An activation whose `SELECT *` columns start at `base` of a joined row; None when the
/// (left) join found none.
pub fn from_row_at(r: &Row<'_>, base: usize) -> rusqlite::Result<Option<Activation>> {
    if r.get_ref(base)?.data_type() == rusqlite::types::Type::Null {
        return Ok(None);
    }
    columns_from(r, base).map(Some)
}

fn columns_from(r: &Row<'_>, base: usize) -> rusqlite::Result<Activation> {
    Ok(Activation {
        id: r.get(base)?,
        tenant_id: r.get(base + 1)?,
        license_id: r.get(base + 2)?,
        machine_id: r.get(base + 3)?,
        machine_name: r.get(base + 4)?,
        os_name: r.get(base + 5)?,
        os_version: r.get(base + 6)?,
        app_version: r.get(base + 7)?,
        ip: r.get(base + 8)?,
        activated_at: r.get(base + 9)?,
        last_seen_at: r.get(base + 10)?,
    })
}

pub fn insert(conn: &Connection, a: &Activation) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO activations (id, tenant_id, license_id, machine_id, machine_name, os_name,
            os_version, app_version, ip, activated_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        a.id,
        a.tenant_id,
        a.license_id,
        a.machine_id,
        a.machine_name,
        a.os_name,
        a.os_version,
        a.app_version,
        a.ip,
        a.activated_at,
        a.last_seen_at,
    ])?;
    Ok(())
}

pub fn find(conn: &Connection, license_id: &str, machine_id: &str) -> Result<Option<Activation>> {
    Ok(conn
        .prepare_cached("SELECT * FROM activations WHERE license_id = ?1 AND machine_id = ?2")?
        .query_row([license_id, machine_id], from_row)
        .optional()?)
}

pub fn count(conn: &Connection, license_id: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM activations WHERE license_id = ?1")?
        .query_row([license_id], |r| r.get::<_, i64>(0))? as u64)
}

pub fn touch(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE activations SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Removes one machine's activation; true if there was one.
pub fn delete(conn: &Connection, license_id: &str, machine_id: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM activations WHERE license_id = ?1 AND machine_id = ?2")?
        .execute([license_id, machine_id])?;
    Ok(n > 0)
}

/// Deletes the product's machines last seen before `dead_before` and returns them.
pub fn cull_dead(conn: &Connection, product_id: &str, dead_before: i64) -> Result<Vec<Activation>> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM activations
         WHERE last_seen_at < ?2
           AND license_id IN (SELECT id FROM licenses WHERE product_id = ?1)
         RETURNING *",
    )?;
    let rows = stmt.query_map(params![product_id, dead_before], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The machines bound to a license, oldest first.
pub fn for_license(conn: &Connection, license_id: &str) -> Result<Vec<Activation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM activations WHERE license_id = ?1 ORDER BY activated_at, id",
    )?;
    let rows = stmt.query_map([license_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Unbinds every machine of a license (an HWID reset); returns how many there were.
pub fn delete_all(conn: &Connection, license_id: &str) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM activations WHERE license_id = ?1",
        [license_id],
    )?)
}
