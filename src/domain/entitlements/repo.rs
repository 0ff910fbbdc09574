use rusqlite::{Connection, params};

use crate::error::Result;

/// How many licenses of the product carry `code`. An admin-path count: it walks the product's
/// licenses (by the `licenses_tenant_product` index, which needs the tenant: no index starts
/// with the product), never a validation.
pub fn licenses_carrying(
    conn: &Connection,
    tenant_id: &str,
    product_id: &str,
    code: &str,
) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM licenses
             WHERE tenant_id = ?1 AND product_id = ?2
               AND instr(',' || entitlements || ',', ',' || ?3 || ',') > 0",
        )?
        .query_row(params![tenant_id, product_id, code], |r| r.get::<_, i64>(0))? as u64)
}

/// Replaces a license's set (already checked against its product).
pub fn set_for_license(conn: &Connection, license_id: &str, codes: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE licenses SET entitlements = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![license_id, codes, now])?;
    Ok(())
}
