use rusqlite::{Connection, params};

use crate::error::Result;

/// How many licenses of the product carry `code`. An admin-path count: it walks the product's
/// licenses (by the `licenses_tenant_product` index), never a validation.
pub fn licenses_carrying(conn: &Connection, product_id: &str, code: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM licenses
             WHERE product_id = ?1 AND instr(',' || entitlements || ',', ',' || ?2 || ',') > 0",
        )?
        .query_row(params![product_id, code], |r| r.get::<_, i64>(0))? as u64)
}

/// Replaces a license's set (already checked against its product).
pub fn set_for_license(conn: &Connection, license_id: &str, codes: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE licenses SET entitlements = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![license_id, codes, now])?;
    Ok(())
}
