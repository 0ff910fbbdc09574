use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Arch, Artifact};
use crate::domain::releases::Bundle;
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        id: r.get("id")?,
        release_id: r.get("release_id")?,
        platform: r.get("platform")?,
        arch: r.get("arch")?,
        filetype: r.get("filetype")?,
        file: Bundle {
            filename: r.get("filename")?,
            size: r.get::<_, i64>("size")?.max(0) as u64,
            sha256: r.get("sha256")?,
            signature: r.get("signature")?,
            signature_kid: r.get("signature_kid")?,
        },
        sha512: r.get("sha512")?,
        minisign_signature: r.get("minisign_signature")?,
        created_at: r.get("created_at")?,
        sha1: r.get("sha1")?,
        minimum_system_version: r.get("minimum_system_version")?,
    })
}

pub fn insert(conn: &Connection, a: &Artifact) -> Result<()> {
    conn.execute(
        "INSERT INTO release_artifacts (id, release_id, platform, arch, filetype, filename, size,
            sha256, sha512, signature, signature_kid, minisign_signature, created_at, sha1,
            minimum_system_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            a.id,
            a.release_id,
            a.platform,
            a.arch,
            a.filetype,
            a.file.filename,
            a.file.size as i64,
            a.file.sha256,
            a.sha512,
            a.file.signature,
            a.file.signature_kid,
            a.minisign_signature,
            a.created_at,
            a.sha1,
            a.minimum_system_version
        ],
    )?;
    Ok(())
}

/// A release's artifacts, in a stable order (platform, arch, filetype).
pub fn of_release(conn: &Connection, release_id: &str) -> Result<Vec<Artifact>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM release_artifacts WHERE release_id = ?1
         ORDER BY platform, arch, filetype",
    )?;
    let rows = stmt.query_map([release_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The artifacts of a product's published releases, for the feeds (one query, not one per
/// release).
pub fn of_published(conn: &Connection, product_id: &str) -> Result<Vec<Artifact>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.* FROM release_artifacts a JOIN releases r ON r.id = a.release_id
         WHERE r.product_id = ?1 AND r.status = 'PUBLISHED'
         ORDER BY a.release_id, a.platform, a.arch, a.filetype",
    )?;
    let rows = stmt.query_map([product_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find(conn: &Connection, release_id: &str, id: &str) -> Result<Option<Artifact>> {
    Ok(conn
        .prepare_cached("SELECT * FROM release_artifacts WHERE id = ?1 AND release_id = ?2")?
        .query_row(params![id, release_id], from_row)
        .optional()?)
}

pub fn find_slot(
    conn: &Connection,
    release_id: &str,
    platform: &str,
    arch: Arch,
    filetype: &str,
) -> Result<Option<Artifact>> {
    Ok(conn
        .prepare_cached(
            "SELECT * FROM release_artifacts
             WHERE release_id = ?1 AND platform = ?2 AND arch = ?3 AND filetype = ?4",
        )?
        .query_row(params![release_id, platform, arch, filetype], from_row)
        .optional()?)
}

pub fn count_of_release(conn: &Connection, release_id: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM release_artifacts WHERE release_id = ?1")?
        .query_row([release_id], |r| r.get::<_, i64>(0))?
        .max(0) as u64)
}

pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM release_artifacts WHERE id = ?1", [id])?;
    Ok(())
}
