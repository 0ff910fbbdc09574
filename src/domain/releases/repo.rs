use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Bundle, Delta, Release};
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        product_id: r.get("product_id")?,
        version: r.get("version")?,
        channel: r.get("channel")?,
        changelog: r.get("changelog")?,
        is_critical: r.get("is_critical")?,
        requires_migration: r.get("requires_migration")?,
        status: r.get("status")?,
        bundle: match r.get::<_, String>("bundle_sha256")? {
            // '' marks a release served through its artifacts only (see schema.sql).
            sha256 if sha256.is_empty() => None,
            sha256 => Some(Bundle {
                filename: r.get("bundle_filename")?,
                size: r.get::<_, i64>("bundle_size")?.max(0) as u64,
                sha256,
                signature: r.get("signature")?,
                signature_kid: r.get("signature_kid")?,
            }),
        },
        rollout_percentage: r.get::<_, i64>("rollout_percentage")?.clamp(0, 100) as u8,
        created_at: r.get("created_at")?,
        published_at: r.get("published_at")?,
        yanked_at: r.get("yanked_at")?,
    })
}

fn delta_from_row(r: &Row<'_>) -> rusqlite::Result<Delta> {
    Ok(Delta {
        release_id: r.get("release_id")?,
        from_version: r.get("from_version")?,
        bundle: Bundle {
            filename: r.get("bundle_filename")?,
            size: r.get::<_, i64>("bundle_size")?.max(0) as u64,
            sha256: r.get("bundle_sha256")?,
            signature: r.get("signature")?,
            signature_kid: r.get("signature_kid")?,
        },
        created_at: r.get("created_at")?,
    })
}

pub fn insert(conn: &Connection, r: &Release) -> Result<()> {
    let none = Bundle {
        filename: String::new(),
        size: 0,
        sha256: String::new(),
        signature: String::new(),
        signature_kid: String::new(),
    };
    let bundle = r.bundle.as_ref().unwrap_or(&none);
    conn.execute(
        "INSERT INTO releases (id, tenant_id, product_id, version, channel, changelog,
            is_critical, requires_migration, status, bundle_filename, bundle_size,
            bundle_sha256, signature, created_at, published_at, yanked_at, signature_kid,
            rollout_percentage)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18)",
        params![
            r.id,
            r.tenant_id,
            r.product_id,
            r.version,
            r.channel,
            r.changelog,
            r.is_critical,
            r.requires_migration,
            r.status,
            bundle.filename,
            bundle.size as i64,
            bundle.sha256,
            bundle.signature,
            r.created_at,
            r.published_at,
            r.yanked_at,
            bundle.signature_kid,
            r.rollout_percentage
        ],
    )?;
    Ok(())
}

/// A release within reach of an operator (`None` = every tenant).
pub fn find_in(conn: &Connection, tenant_scope: Option<&str>, id: &str) -> Result<Option<Release>> {
    Ok(conn
        .prepare_cached("SELECT * FROM releases WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)")?
        .query_row(params![id, tenant_scope], from_row)
        .optional()?)
}

/// A release of one product (what a license may see).
pub fn find_in_product(conn: &Connection, product_id: &str, id: &str) -> Result<Option<Release>> {
    Ok(conn
        .prepare_cached("SELECT * FROM releases WHERE id = ?1 AND product_id = ?2")?
        .query_row(params![id, product_id], from_row)
        .optional()?)
}

/// Every release of a product, newest first.
pub fn list_for_product(conn: &Connection, product_id: &str) -> Result<Vec<Release>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM releases WHERE product_id = ?1 ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([product_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The published releases of a product: what an update check chooses from.
pub fn published_for_product(conn: &Connection, product_id: &str) -> Result<Vec<Release>> {
    let mut stmt = conn
        .prepare_cached("SELECT * FROM releases WHERE product_id = ?1 AND status = 'PUBLISHED'")?;
    let rows = stmt.query_map([product_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn versions_of(conn: &Connection, product_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT version FROM releases WHERE product_id = ?1")?;
    let rows = stmt.query_map([product_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn mark_published(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE releases SET status = 'PUBLISHED', published_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn mark_yanked(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE releases SET status = 'YANKED', yanked_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn update_details(conn: &Connection, r: &Release) -> Result<()> {
    conn.execute(
        "UPDATE releases SET channel = ?2, changelog = ?3, is_critical = ?4,
            requires_migration = ?5, rollout_percentage = ?6
         WHERE id = ?1",
        params![
            r.id,
            r.channel,
            r.changelog,
            r.is_critical,
            r.requires_migration,
            r.rollout_percentage
        ],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM releases WHERE id = ?1", [id])?;
    Ok(())
}

pub fn insert_delta(conn: &Connection, d: &Delta) -> Result<()> {
    conn.execute(
        "INSERT INTO release_deltas (release_id, from_version, bundle_filename, bundle_size,
            bundle_sha256, signature, created_at, signature_kid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            d.release_id,
            d.from_version,
            d.bundle.filename,
            d.bundle.size as i64,
            d.bundle.sha256,
            d.bundle.signature,
            d.created_at,
            d.bundle.signature_kid
        ],
    )?;
    Ok(())
}

pub fn find_delta(
    conn: &Connection,
    release_id: &str,
    from_version: &str,
) -> Result<Option<Delta>> {
    Ok(conn
        .prepare_cached("SELECT * FROM release_deltas WHERE release_id = ?1 AND from_version = ?2")?
        .query_row(params![release_id, from_version], delta_from_row)
        .optional()?)
}

pub fn deltas_of(conn: &Connection, release_id: &str) -> Result<Vec<Delta>> {
    let mut stmt = conn
        .prepare_cached("SELECT * FROM release_deltas WHERE release_id = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map([release_id], delta_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The bundle hashes a release (with its deltas and artifacts) or a whole product refers to.
pub fn bundles_of_release(conn: &Connection, release_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT bundle_sha256 FROM releases WHERE id = ?1 AND bundle_sha256 <> ''
         UNION SELECT bundle_sha256 FROM release_deltas WHERE release_id = ?1
         UNION SELECT sha256 FROM release_artifacts WHERE release_id = ?1",
    )?;
    let rows = stmt.query_map([release_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn bundles_of_product(conn: &Connection, product_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT bundle_sha256 FROM releases WHERE product_id = ?1 AND bundle_sha256 <> ''
         UNION SELECT d.bundle_sha256 FROM release_deltas d
               JOIN releases r ON r.id = d.release_id WHERE r.product_id = ?1
         UNION SELECT a.sha256 FROM release_artifacts a
               JOIN releases r ON r.id = a.release_id WHERE r.product_id = ?1",
    )?;
    let rows = stmt.query_map([product_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether any release, delta or artifact (of any tenant: the store is shared) still uses a
/// bundle.
pub fn bundle_in_use(conn: &Connection, sha256: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM releases WHERE bundle_sha256 = ?1)
                 OR EXISTS (SELECT 1 FROM release_deltas WHERE bundle_sha256 = ?1)
                 OR EXISTS (SELECT 1 FROM release_artifacts WHERE sha256 = ?1)",
        )?
        .query_row([sha256], |r| r.get(0))?)
}

/// The product's minimum version (`products.minimum_version`): a client below it is told its
/// update is critical.
pub fn minimum_version(conn: &Connection, product_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT minimum_version FROM products WHERE id = ?1")?
        .query_row([product_id], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn set_minimum_version(
    conn: &Connection,
    product_id: &str,
    version: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE products SET minimum_version = ?2 WHERE id = ?1",
        params![product_id, version],
    )?;
    Ok(())
}
