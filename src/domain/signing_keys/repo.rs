use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Endorsement, SigningKeyRecord};
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<SigningKeyRecord> {
    let endorsed_by: Option<String> = r.get("endorsed_by_kid")?;
    let endorsement: Option<String> = r.get("endorsement")?;
    Ok(SigningKeyRecord {
        product_id: r.get("product_id")?,
        serial: r.get("serial")?,
        kid: r.get("kid")?,
        public_key: r.get("public_key")?,
        secret_sealed: r.get("secret_sealed")?,
        current: r.get("is_current")?,
        created_at: r.get("created_at")?,
        retired_at: r.get("retired_at")?,
        endorsement: match (endorsed_by, endorsement) {
            (Some(kid), Some(signature)) => Some(Endorsement { kid, signature }),
            _ => None,
        },
    })
}

pub fn insert(conn: &Connection, k: &SigningKeyRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO signing_keys (product_id, serial, kid, public_key, secret_sealed,
            is_current, created_at, retired_at, endorsed_by_kid, endorsement)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            k.product_id,
            k.serial,
            k.kid,
            k.public_key,
            k.secret_sealed,
            k.current,
            k.created_at,
            k.retired_at,
            k.endorsement.as_ref().map(|e| &e.kid),
            k.endorsement.as_ref().map(|e| &e.signature),
        ],
    )?;
    Ok(())
}

/// Inserts `k` as its product's current key; the previous current key stops being current.
pub fn make_current(conn: &Connection, k: &SigningKeyRecord) -> Result<()> {
    conn.execute(
        "UPDATE signing_keys SET is_current = 0 WHERE product_id = ?1 AND is_current = 1",
        [&k.product_id],
    )?;
    insert(conn, k)
}

/// A product's keys, oldest first.
pub fn list(conn: &Connection, product_id: &str) -> Result<Vec<SigningKeyRecord>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM signing_keys WHERE product_id = ?1 ORDER BY serial")?;
    let rows = stmt.query_map([product_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn current(conn: &Connection, product_id: &str) -> Result<Option<SigningKeyRecord>> {
    Ok(conn
        .prepare_cached("SELECT * FROM signing_keys WHERE product_id = ?1 AND is_current = 1")?
        .query_row([product_id], from_row)
        .optional()?)
}

pub fn find(conn: &Connection, product_id: &str, kid: &str) -> Result<Option<SigningKeyRecord>> {
    Ok(conn
        .prepare_cached("SELECT * FROM signing_keys WHERE product_id = ?1 AND kid = ?2")?
        .query_row([product_id, kid], from_row)
        .optional()?)
}

pub fn retire(conn: &Connection, product_id: &str, kid: &str, at: i64) -> Result<()> {
    conn.execute(
        "UPDATE signing_keys SET retired_at = ?3
         WHERE product_id = ?1 AND kid = ?2 AND retired_at IS NULL AND is_current = 0",
        params![product_id, kid, at],
    )?;
    Ok(())
}

/// Every product's key as its first signing key, and every bundle's `signature_kid`, for a
/// database made before signing keys could change (schema version 11); the product columns
/// held its only key, so that key signed every bundle.
pub fn copy_product_keys(conn: &Connection) -> Result<()> {
    let products: Vec<(String, Vec<u8>, Vec<u8>, i64)> = conn
        .prepare(
            "SELECT id, signing_public_key, signing_secret_sealed, created_at FROM products
             WHERE id NOT IN (SELECT product_id FROM signing_keys)",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, public, sealed, created_at) in products {
        let key = SigningKeyRecord::first(&id, &public, sealed, created_at);
        insert(conn, &key)?;
    }
    conn.execute_batch(
        "UPDATE releases SET signature_kid = COALESCE((SELECT kid FROM signing_keys
            WHERE signing_keys.product_id = releases.product_id AND is_current = 1), '')
         WHERE signature_kid = '';
         UPDATE release_deltas SET signature_kid = COALESCE((SELECT signature_kid FROM releases
            WHERE releases.id = release_deltas.release_id), '')
         WHERE signature_kid = '';",
    )?;
    Ok(())
}
