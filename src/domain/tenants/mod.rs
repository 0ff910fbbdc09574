//! Tenants: isolated vendor namespaces. Every other row belongs to exactly one.

pub mod repo;

pub const DEFAULT_SLUG: &str = "default";

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
}

/// Slugs of tenants and products: 1–64 of `a-z`, `0-9`, `-`, starting with a letter or digit.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok_chars = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if slug.is_empty() || slug.len() > 64 || !ok_chars || slug.starts_with('-') {
        return Err(format!(
            "slug {slug:?} must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'"
        ));
    }
    Ok(())
}
