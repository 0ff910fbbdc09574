use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{HeartbeatPolicy, KeyFormat, Product, ProjectSettings};
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Product> {
    let interval: Option<u32> = r.get("heartbeat_interval_secs")?;
    let key_format: String = r.get("key_format")?;
    Ok(Product {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        name: r.get("name")?,
        slug: r.get("slug")?,
        product_type: r.get("product_type")?,
        status: r.get("status")?,
        default_license_type: r.get("default_license_type")?,
        default_max_activations: r.get("default_max_activations")?,
        // Stored formats were validated on the way in.
        key_format: KeyFormat(key_format),
        heartbeat: match interval {
            Some(interval_secs) => Some(HeartbeatPolicy {
                interval_secs,
                grace_secs: r.get("heartbeat_grace_secs")?,
                cull_dead: r.get("heartbeat_cull_dead")?,
            }),
            None => None,
        },
        signing_public_key: r.get("signing_public_key")?,
        signing_secret_sealed: r.get("signing_secret_sealed")?,
        client_secret_sha256: r.get("client_secret_sha256")?,
        client_secret_sealed: r.get("client_secret_sealed")?,
        payload_key_sealed: r.get("payload_key_sealed")?,
        settings: ProjectSettings {
            description: r.get("description")?,
            server_var: r.get("server_var")?,
            require_encryption: r.get("require_encryption")?,
            session_ttl_secs: r.get("session_ttl_secs")?,
            session_limit: r.get("session_limit")?,
            hwid_reset_cooldown_secs: r.get("hwid_reset_cooldown_secs")?,
            portal_settings: r.get("portal_settings")?,
        },
        entitlements: crate::domain::entitlements::from_column(
            &r.get::<_, String>("entitlements")?,
        ),
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

pub fn insert(conn: &Connection, p: &Product) -> Result<()> {
    conn.execute(
        "INSERT INTO products (id, tenant_id, name, slug, product_type, status,
            default_license_type, default_max_activations, key_format,
            heartbeat_interval_secs, heartbeat_grace_secs, heartbeat_cull_dead,
            signing_public_key, signing_secret_sealed, client_secret_sha256,
            client_secret_sealed, payload_key_sealed, description, server_var,
            require_encryption, session_ttl_secs, hwid_reset_cooldown_secs, portal_settings,
            created_at, updated_at, session_limit, entitlements)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
        params![
            p.id,
            p.tenant_id,
            p.name,
            p.slug,
            p.product_type,
            p.status,
            p.default_license_type,
            p.default_max_activations,
            p.key_format.as_str(),
            p.heartbeat.map(|h| h.interval_secs),
            p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
            p.heartbeat.map(|h| h.cull_dead).unwrap_or(true),
            p.signing_public_key,
            p.signing_secret_sealed,
            p.client_secret_sha256,
            p.client_secret_sealed,
            p.payload_key_sealed,
            p.settings.description,
            p.settings.server_var,
            p.settings.require_encryption,
            p.settings.session_ttl_secs,
            p.settings.hwid_reset_cooldown_secs,
            p.settings.portal_settings,
            p.created_at,
            p.updated_at,
            p.settings.session_limit,
            crate::domain::entitlements::to_column(&p.entitlements),
        ],
    )?;
    Ok(())
}

pub fn find(conn: &Connection, tenant_id: &str, id: &str) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE tenant_id = ?1 AND id = ?2")?
        .query_row([tenant_id, id], from_row)
        .optional()?)
}

pub fn find_by_slug(conn: &Connection, tenant_id: &str, slug: &str) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE tenant_id = ?1 AND slug = ?2")?
        .query_row([tenant_id, slug], from_row)
        .optional()?)
}

/// A product named by its id or, for convenience in scripts, its slug.
pub fn find_by_id_or_slug(
    conn: &Connection,
    tenant_id: &str,
    id_or_slug: &str,
) -> Result<Option<Product>> {
    match find(conn, tenant_id, id_or_slug)? {
        Some(p) => Ok(Some(p)),
        None => find_by_slug(conn, tenant_id, id_or_slug),
    }
}

/// One page of a tenant's products (optionally only ACTIVE ones, optionally just one) and
/// the total count.
pub fn list(
    conn: &Connection,
    tenant_id: &str,
    only_active: bool,
    only_id: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Product>, u64)> {
    let filter = "tenant_id = ?1 AND (?2 = 0 OR status = 'ACTIVE') AND (?3 IS NULL OR id = ?3)";
    let total: u64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM products WHERE {filter}"))?
        .query_row(params![tenant_id, only_active, only_id], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM products WHERE {filter} ORDER BY created_at, id LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt.query_map(
        params![tenant_id, only_active, only_id, limit, offset as i64],
        from_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Products whose policy culls machines that stopped sending heartbeats.
pub fn with_cull_policy(conn: &Connection) -> Result<Vec<Product>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM products WHERE heartbeat_interval_secs IS NOT NULL AND heartbeat_cull_dead = 1",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A product within `tenant_scope` (None: any tenant, for ADMIN operators).
pub fn find_in(conn: &Connection, tenant_scope: Option<&str>, id: &str) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)")?
        .query_row(params![id, tenant_scope], from_row)
        .optional()?)
}

/// One page of products within `tenant_scope`, newest first, each with its license count.
pub fn list_in(
    conn: &Connection,
    tenant_scope: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<(Product, u64)>, u64)> {
    list_within(conn, tenant_scope, None, limit, offset)
}

/// [`list_in`], optionally only the one product a restricted caller reaches.
pub fn list_within(
    conn: &Connection,
    tenant_scope: Option<&str>,
    only_id: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<(Product, u64)>, u64)> {
    let filter = "(?1 IS NULL OR p.tenant_id = ?1) AND (?2 IS NULL OR p.id = ?2)";
    let total = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM products p WHERE {filter}"))?
        .query_row(params![tenant_scope, only_id], |r| r.get::<_, i64>(0))? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.*, (SELECT COALESCE(SUM(c.count), 0) FROM license_counts c
                      WHERE c.tenant_id = p.tenant_id AND c.product_id = p.id) AS key_count
         FROM products p WHERE {filter}
         ORDER BY p.created_at DESC, p.id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt.query_map(params![tenant_scope, only_id, limit, offset as i64], |r| {
        Ok((from_row(r)?, r.get::<_, i64>("key_count")? as u64))
    })?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// The product's licenses, from the counts triggers keep (`license_counts`): counting the
/// licenses themselves reads every key of every product (no index starts with the product).
pub fn license_count(conn: &Connection, product_id: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(SUM(count), 0) FROM license_counts WHERE product_id = ?1")?
        .query_row([product_id], |r| r.get::<_, i64>(0))? as u64)
}

/// Writes every mutable column of `p` (identity, keys and creation time never change here).
pub fn update(conn: &Connection, p: &Product) -> Result<()> {
    conn.execute(
        "UPDATE products SET name = ?2, product_type = ?3, status = ?4,
            default_license_type = ?5, default_max_activations = ?6, key_format = ?7,
            heartbeat_interval_secs = ?8, heartbeat_grace_secs = ?9, heartbeat_cull_dead = ?10,
            client_secret_sha256 = ?11, client_secret_sealed = ?12, description = ?13,
            server_var = ?14, require_encryption = ?15, session_ttl_secs = ?16,
            hwid_reset_cooldown_secs = ?17, portal_settings = ?18, updated_at = ?19,
            session_limit = ?20, entitlements = ?21
         WHERE id = ?1",
        params![
            p.id,
            p.name,
            p.product_type,
            p.status,
            p.default_license_type,
            p.default_max_activations,
            p.key_format.as_str(),
            p.heartbeat.map(|h| h.interval_secs),
            p.heartbeat.map(|h| h.grace_secs).unwrap_or(0),
            p.heartbeat.map(|h| h.cull_dead).unwrap_or(true),
            p.client_secret_sha256,
            p.client_secret_sealed,
            p.settings.description,
            p.settings.server_var,
            p.settings.require_encryption,
            p.settings.session_ttl_secs,
            p.settings.hwid_reset_cooldown_secs,
            p.settings.portal_settings,
            p.updated_at,
            p.settings.session_limit,
            crate::domain::entitlements::to_column(&p.entitlements),
        ],
    )?;
    Ok(())
}

/// Mirrors a new current signing key into the product row (see `domain::signing_keys`).
pub fn set_signing_key(
    conn: &Connection,
    id: &str,
    public_key: &[u8],
    secret_sealed: &[u8],
    now: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE products SET signing_public_key = ?2, signing_secret_sealed = ?3, updated_at = ?4
         WHERE id = ?1",
        params![id, public_key, secret_sealed, now],
    )?;
    Ok(())
}

/// Deletes the product; its licenses, activations and API keys go with it (cascade).
pub fn delete(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM products WHERE id = ?1", [id])? > 0)
}

/// The product whose kv_ client secret hashes to `sha256`.
pub fn find_by_client_secret(conn: &Connection, sha256: &[u8]) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE client_secret_sha256 = ?1")?
        .query_row([sha256], from_row)
        .optional()?)
}

/// The product whose kv_ client secret is `secret` as a client sent it (surrounding
/// whitespace ignored).
pub fn find_by_secret(conn: &Connection, secret: &str) -> Result<Option<Product>> {
    find_by_client_secret(conn, &crate::crypto::sha256(secret.trim().as_bytes()))
}

/// The id of the product whose kv_ client secret is `secret` (surrounding whitespace ignored):
/// what the key/HWID face needs to find a key, without decoding the product row (the product
/// itself comes from the cache).
pub fn id_by_secret(conn: &Connection, secret: &str) -> Result<Option<String>> {
    let sha256 = crate::crypto::sha256(secret.trim().as_bytes());
    Ok(conn
        .prepare_cached("SELECT id FROM products WHERE client_secret_sha256 = ?1")?
        .query_row([sha256.as_slice()], |r| r.get(0))
        .optional()?)
}

/// A product by id alone, for callers that proved their right to it another way (a license
/// key found through its secret, an encrypted envelope that opened with its key).
pub fn find_by_id(conn: &Connection, id: &str) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?)
}

/// A product by id in any tenant: for signing a refusal that names only its product id (the
/// id was put there by a service that had already scoped the look-up).
pub fn find_any(conn: &Connection, id: &str) -> Result<Option<Product>> {
    Ok(conn
        .prepare_cached("SELECT * FROM products WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?)
}
