use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Whether the product's feeds answer without a license.
pub fn is_public(conn: &Connection, product_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT feeds_public FROM products WHERE id = ?1")?
        .query_row([product_id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

pub fn set_public(conn: &Connection, product_id: &str, public: bool) -> Result<()> {
    conn.execute(
        "UPDATE products SET feeds_public = ?2 WHERE id = ?1",
        params![product_id, public],
    )?;
    Ok(())
}

/// A stored feed token: whose license it stands for.
#[derive(Debug, Clone)]
pub struct FeedToken {
    pub tenant_id: String,
    pub product_id: String,
    pub license_id: String,
    pub prefix: String,
    pub created_at: i64,
}

pub fn insert_token(conn: &Connection, hash: &[u8; 32], t: &FeedToken) -> Result<()> {
    conn.execute(
        "INSERT INTO feed_tokens (token_sha256, tenant_id, product_id, license_id, prefix,
            created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            hash.as_slice(),
            t.tenant_id,
            t.product_id,
            t.license_id,
            t.prefix,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn find_token(conn: &Connection, hash: &[u8; 32]) -> Result<Option<FeedToken>> {
    Ok(conn
        .prepare_cached(
            "SELECT tenant_id, product_id, license_id, prefix, created_at FROM feed_tokens
             WHERE token_sha256 = ?1",
        )?
        .query_row([hash.as_slice()], |r| {
            Ok(FeedToken {
                tenant_id: r.get(0)?,
                product_id: r.get(1)?,
                license_id: r.get(2)?,
                prefix: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Revokes every feed token of a license; how many there were.
pub fn delete_tokens_of(conn: &Connection, license_id: &str) -> Result<u64> {
    Ok(conn.execute(
        "DELETE FROM feed_tokens WHERE license_id = ?1",
        [license_id],
    )? as u64)
}

/// Records the SHA-1 of an artifact uploaded before SHA-1s were recorded.
pub fn set_sha1(conn: &Connection, artifact_id: &str, sha1: &str) -> Result<()> {
    conn.execute(
        "UPDATE release_artifacts SET sha1 = ?2 WHERE id = ?1 AND sha1 = ''",
        params![artifact_id, sha1],
    )?;
    Ok(())
}

/// An artifact by id with its release, for a download token.
pub fn find_artifact(
    conn: &Connection,
    artifact_id: &str,
) -> Result<Option<crate::domain::artifacts::Artifact>> {
    let release_id: Option<String> = conn
        .prepare_cached("SELECT release_id FROM release_artifacts WHERE id = ?1")?
        .query_row([artifact_id], |r| r.get(0))
        .optional()?;
    match release_id {
        Some(release_id) => crate::domain::artifacts::repo::find(conn, &release_id, artifact_id),
        None => Ok(None),
    }
}
