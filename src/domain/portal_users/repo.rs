use rusqlite::{Connection, OptionalExtension, Row, params};

use super::PortalUser;
use crate::error::Result;

fn from_row(r: &Row<'_>) -> rusqlite::Result<PortalUser> {
    Ok(PortalUser {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        product_id: r.get("product_id")?,
        username: r.get("username")?,
        password_hash: r.get("password_hash")?,
        license_id: r.get("license_id")?,
        created_at: r.get("created_at")?,
        last_login_at: r.get("last_login_at")?,
        email: r.get("email")?,
    })
}

pub fn insert(conn: &Connection, u: &PortalUser) -> Result<()> {
    conn.execute(
        "INSERT INTO portal_users (id, tenant_id, product_id, username, password_hash,
            license_id, created_at, last_login_at, email)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            u.id,
            u.tenant_id,
            u.product_id,
            u.username,
            u.password_hash,
            u.license_id,
            u.created_at,
            u.last_login_at,
            u.email
        ],
    )?;
    Ok(())
}

/// Usernames are unique per product, ignoring case.
pub fn find_by_username(
    conn: &Connection,
    product_id: &str,
    username: &str,
) -> Result<Option<PortalUser>> {
    Ok(conn
        .prepare_cached("SELECT * FROM portal_users WHERE product_id = ?1 AND username = ?2")?
        .query_row(params![product_id, username], from_row)
        .optional()?)
}

pub fn find(conn: &Connection, id: &str) -> Result<Option<PortalUser>> {
    Ok(conn
        .prepare_cached("SELECT * FROM portal_users WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?)
}

/// The user of a live session token (by its SHA-256).
pub fn find_by_session(
    conn: &Connection,
    token_sha256: &[u8],
    now: i64,
) -> Result<Option<PortalUser>> {
    Ok(conn
        .prepare_cached(
            "SELECT u.* FROM portal_sessions s JOIN portal_users u ON u.id = s.portal_user_id
             WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
        )?
        .query_row(params![token_sha256, now], from_row)
        .optional()?)
}

pub fn insert_session(
    conn: &Connection,
    token_sha256: &[u8],
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO portal_sessions (token_sha256, portal_user_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![token_sha256, user_id, now, expires_at],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, token_sha256: &[u8]) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM portal_sessions WHERE token_sha256 = ?1",
        [token_sha256],
    )? > 0)
}

pub fn purge_expired_sessions(conn: &Connection, now: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM portal_sessions WHERE expires_at <= ?1", [now])?)
}

pub fn set_last_login(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE portal_users SET last_login_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn set_license(conn: &Connection, id: &str, license_id: Option<&str>) -> Result<()> {
    conn.execute(
        "UPDATE portal_users SET license_id = ?2 WHERE id = ?1",
        params![id, license_id],
    )?;
    Ok(())
}

/// The portal account a license is linked to, if any.
pub fn owner_of_license(conn: &Connection, license_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM portal_users WHERE license_id = ?1")?
        .query_row([license_id], |r| r.get(0))
        .optional()?)
}

/// Products whose slug is `slug`, in any tenant (portal addresses are `/p/<slug>`).
pub fn products_with_slug(conn: &Connection, slug: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.tenant_id, p.id FROM products p WHERE p.slug = ?1 ORDER BY p.created_at",
    )?;
    let rows = stmt.query_map([slug], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Ends one session of one account (a token never ends another account's session).
pub fn delete_session_of(conn: &Connection, token_sha256: &[u8], user_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM portal_sessions WHERE token_sha256 = ?1 AND portal_user_id = ?2",
        params![token_sha256, user_id],
    )? > 0)
}

pub fn set_email(conn: &Connection, id: &str, email: Option<&str>) -> Result<()> {
    conn.execute(
        "UPDATE portal_users SET email = ?2 WHERE id = ?1",
        params![id, email],
    )?;
    Ok(())
}

/// The users of a product's portal with this e-mail address (ignoring case).
pub fn find_by_email(conn: &Connection, product_id: &str, email: &str) -> Result<Vec<PortalUser>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM portal_users WHERE product_id = ?1 AND lower(email) = lower(?2)
           AND email IS NOT NULL LIMIT 10",
    )?;
    let rows = stmt.query_map(params![product_id, email], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replaces a user's password hash and ends all of its sessions (a reset signs out every
/// browser that knew the old password).
pub fn set_password(conn: &Connection, id: &str, password_hash: &str) -> Result<()> {
    conn.execute(
        "UPDATE portal_users SET password_hash = ?2 WHERE id = ?1",
        params![id, password_hash],
    )?;
    conn.execute(
        "DELETE FROM portal_sessions WHERE portal_user_id = ?1",
        [id],
    )?;
    Ok(())
}
