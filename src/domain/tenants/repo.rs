use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{DEFAULT_SLUG, Tenant};
use crate::crypto;
use crate::domain::now_ms;
use crate::error::{Error, Result};

fn from_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get("id")?,
        slug: r.get("slug")?,
        name: r.get("name")?,
        created_at: r.get("created_at")?,
    })
}

pub fn ensure_default(conn: &Connection) -> Result<()> {
    if find_by_slug(conn, DEFAULT_SLUG)?.is_none() {
        create(conn, DEFAULT_SLUG, "Default")?;
    }
    Ok(())
}

pub fn create(conn: &Connection, slug: &str, name: &str) -> Result<Tenant> {
    super::validate_slug(slug).map_err(Error::Invalid)?;
    if find_by_slug(conn, slug)?.is_some() {
        return Err(Error::Conflict(format!(
            "a tenant with slug {slug:?} exists"
        )));
    }
    let tenant = Tenant {
        id: crypto::new_id("ten"),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: now_ms(),
    };
    conn.execute(
        "INSERT INTO tenants (id, slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![tenant.id, tenant.slug, tenant.name, tenant.created_at],
    )?;
    Ok(tenant)
}

pub fn find_by_slug(conn: &Connection, slug: &str) -> Result<Option<Tenant>> {
    Ok(conn
        .prepare_cached("SELECT * FROM tenants WHERE slug = ?1")?
        .query_row([slug], from_row)
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Tenant>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM tenants ORDER BY created_at")?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find(conn: &Connection, id: &str) -> Result<Option<Tenant>> {
    Ok(conn
        .prepare_cached("SELECT * FROM tenants WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?)
}
