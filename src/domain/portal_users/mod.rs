//! The per-project user portal: end users of a product register (no key needed), sign in,
//! link a license key to their account, and see a dashboard made of the blocks the vendor
//! arranged. What they may see and download depends on their access level.

pub mod repo;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::licenses::License;
use super::products::Product;
use super::{DAY_MS, now_ms, text_enum};
use crate::crypto;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PortalUser {
    pub id: String,
    pub tenant_id: String,
    pub product_id: String,
    pub username: String,
    pub password_hash: String,
    pub license_id: Option<String>,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    /// Where password-reset links go (lower-cased); none: the password cannot be reset by
    /// e-mail.
    pub email: Option<String>,
}

/// Portal sessions last a week; logging out ends one at once.
pub const SESSION_TTL_MS: i64 = 7 * DAY_MS;
pub const TOKEN_COOKIE: &str = "portal_token";

pub fn validate_username(username: &str) -> Result<()> {
    let n = username.chars().count();
    let allowed = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=32).contains(&n) || !allowed {
        return Err(Error::Invalid(
            "username must be 3-32 characters: letters, digits, `_`, `-` or `.`".into(),
        ));
    }
    Ok(())
}

/// Registers a user of `product` (the password is already hashed).
pub fn register(
    conn: &Connection,
    product: &Product,
    username: &str,
    password_hash: String,
    email: Option<String>,
) -> Result<PortalUser> {
    if repo::find_by_username(conn, &product.id, username)?.is_some() {
        return Err(Error::Conflict(format!(
            "the username {username:?} is taken in this portal"
        )));
    }
    let user = PortalUser {
        id: crypto::new_id("pu"),
        tenant_id: product.tenant_id.clone(),
        product_id: product.id.clone(),
        username: username.to_owned(),
        password_hash,
        license_id: None,
        created_at: now_ms(),
        last_login_at: None,
        email,
    };
    repo::insert(conn, &user)?;
    Ok(user)
}

/// A new session: the token goes to the user once, only its SHA-256 is stored.
pub fn open_session(conn: &Connection, user: &PortalUser) -> Result<String> {
    let token = format!("pt_{}", crypto::random_secret(40));
    let now = now_ms();
    repo::insert_session(
        conn,
        &crypto::sha256(token.as_bytes()),
        &user.id,
        now,
        now + SESSION_TTL_MS,
    )?;
    repo::set_last_login(conn, &user.id, now)?;
    Ok(token)
}

/// Links `license` to `user`. A key belongs to one portal account; it must be of the portal's
/// product and usable (not expired, suspended, banned or revoked).
pub fn link_license(conn: &Connection, user: &PortalUser, license: &License) -> Result<()> {
    if license.product_id != user.product_id {
        return Err(Error::NotFound("key"));
    }
    if let Some(owner) = repo::owner_of_license(conn, &license.id)?
        && owner != user.id
    {
        return Err(Error::Conflict(
            "this key is already linked to another account".into(),
        ));
    }
    if let Some(problem) = license.problem(now_ms()) {
        return Err(Error::License(problem));
    }
    repo::set_license(conn, &user.id, Some(&license.id))?;
    Ok(())
}

/// `A1B2-****-****-G7H8`: the first and last groups stay, the middle is hidden. Keys without
/// groups keep four symbols at each end.
pub fn mask_key(key: &str) -> String {
    let groups: Vec<&str> = key.split('-').collect();
    if groups.len() >= 3 {
        let last = groups.len() - 1;
        return groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if i == 0 || i == last {
                    (*g).to_owned()
                } else {
                    "*".repeat(g.chars().count())
                }
            })
            .collect::<Vec<_>>()
            .join("-");
    }
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

text_enum! {
    /// The portal's blocks, as the portal dashboard editor arranges them.
    pub enum BlockType {
        KeyInfo => "key_info",
        CopyKey => "copy_key",
        DownloadLoader => "download_loader",
        HwidStatus => "hwid_status",
        CustomButton => "custom_button",
        CustomText => "custom_text",
        /// Offline licensing: the bound machine's file, and air-gapped activation.
        LicenseFile => "license_file",
    }
}

text_enum! {
    /// Access levels, lowest first: no key; an active key; an active key bound to a machine.
    pub enum AccessLevel {
        Anyone => "none",
        Key => "key",
        Full => "full",
    }
}

impl AccessLevel {
    pub fn rank(self) -> u8 {
        match self {
            AccessLevel::Anyone => 0,
            AccessLevel::Key => 1,
            AccessLevel::Full => 2,
        }
    }

    pub fn reaches(self, needed: AccessLevel) -> bool {
        self.rank() >= needed.rank()
    }
}

impl BlockType {
    /// What a block needs unless the vendor says otherwise: key facts need a key; links and
    /// text are public.
    pub fn default_access(self) -> AccessLevel {
        match self {
            BlockType::KeyInfo
            | BlockType::CopyKey
            | BlockType::DownloadLoader
            | BlockType::HwidStatus
            | BlockType::LicenseFile => AccessLevel::Key,
            BlockType::CustomButton | BlockType::CustomText => AccessLevel::Anyone,
        }
    }
}

/// One block of the portal dashboard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Block {
    #[serde(rename = "type")]
    pub block_type: BlockType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The access level the block needs (HWID gating: `full` shows it only once the user's key
    /// is bound to a machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<AccessLevel>,
    /// An entitlement code the user's key must carry (besides the access level) for the block
    /// to unlock; one of the project's entitlements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_entitlement: Option<String>,
}

impl Block {
    pub fn needs(&self) -> AccessLevel {
        self.requires
            .unwrap_or_else(|| self.block_type.default_access())
    }
}

/// A project's portal configuration (`portalSettings` of the project).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub welcome: Option<String>,
    /// An external loader download; without it the product's newest published stable
    /// release is the loader.
    #[serde(default)]
    pub loader_url: Option<String>,
    #[serde(default = "default_blocks")]
    pub blocks: Vec<Block>,
}

fn yes() -> bool {
    true
}

fn default_blocks() -> Vec<Block> {
    [
        BlockType::KeyInfo,
        BlockType::HwidStatus,
        BlockType::CopyKey,
        BlockType::DownloadLoader,
    ]
    .into_iter()
    .map(|block_type| Block {
        block_type,
        label: None,
        url: None,
        text: None,
        requires: None,
        requires_entitlement: None,
    })
    .collect()
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            title: None,
            welcome: None,
            loader_url: None,
            blocks: default_blocks(),
        }
    }
}

pub const MAX_BLOCKS: usize = 30;

/// Reads and checks a `portalSettings` object, naming the offending field.
pub fn parse_settings(value: &serde_json::Value) -> Result<PortalSettings> {
    let settings: PortalSettings = serde_json::from_value(value.clone())
        .map_err(|e| Error::Invalid(format!("portalSettings: {e}")))?;
    check_len("portalSettings.title", settings.title.as_deref(), 100)?;
    check_len("portalSettings.welcome", settings.welcome.as_deref(), 2000)?;
    if let Some(url) = settings.loader_url.as_deref().filter(|u| !u.is_empty()) {
        check_url("portalSettings.loaderUrl", url)?;
    }
    if settings.blocks.len() > MAX_BLOCKS {
        return Err(Error::Invalid(format!(
            "portalSettings.blocks holds at most {MAX_BLOCKS} blocks"
        )));
    }
    for (i, block) in settings.blocks.iter().enumerate() {
        let at = |field: &str| format!("portalSettings.blocks[{i}].{field}");
        check_len(&at("label"), block.label.as_deref(), 60)?;
        check_len(&at("text"), block.text.as_deref(), 2000)?;
        if let Some(code) = &block.requires_entitlement
            && !crate::domain::entitlements::valid_code(code)
        {
            return Err(Error::Invalid(format!(
                "{}: {code:?} is not a valid entitlement code",
                at("requiresEntitlement")
            )));
        }
        match block.block_type {
            BlockType::CustomButton => {
                if block.label.as_deref().is_none_or(|l| l.trim().is_empty()) {
                    return Err(Error::Invalid(format!(
                        "{} is required for a custom_button",
                        at("label")
                    )));
                }
                let url = block.url.as_deref().unwrap_or_default();
                check_url(&at("url"), url)?;
            }
            BlockType::CustomText if block.text.as_deref().is_none_or(|t| t.trim().is_empty()) => {
                return Err(Error::Invalid(format!(
                    "{} is required for a custom_text",
                    at("text")
                )));
            }
            _ => {}
        }
    }
    Ok(settings)
}

/// Every block's `requiresEntitlement` must be one of the project's entitlement codes.
pub fn check_block_entitlements(settings: &PortalSettings, codes: &[String]) -> Result<()> {
    for (i, block) in settings.blocks.iter().enumerate() {
        if let Some(code) = &block.requires_entitlement
            && !codes.contains(code)
        {
            return Err(Error::Invalid(format!(
                "portalSettings.blocks[{i}].requiresEntitlement: {code} is not an entitlement of \
                 this project"
            )));
        }
    }
    Ok(())
}

/// The settings stored for a product, or the defaults (every project has a portal).
pub fn settings_of(product: &Product) -> PortalSettings {
    product
        .settings
        .portal_settings
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| parse_settings(&v).ok())
        .unwrap_or_default()
}

fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<()> {
    if value.is_some_and(|v| v.chars().count() > max) {
        return Err(Error::Invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(())
}

/// Only http(s) links: a `javascript:` URL in a button would run in the portal's origin.
fn check_url(field: &str, url: &str) -> Result<()> {
    let lower = url.trim().to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    if !scheme_ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Invalid(format!(
            "{field} must be an http:// or https:// URL of at most 2048 characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_in_the_middle() {
        assert_eq!(mask_key("A1B2-C3D4-E5F6-G7H8"), "A1B2-****-****-G7H8");
        assert_eq!(mask_key("TT-ABCD-EFGH-IJKL-MNOP"), "TT-****-****-****-MNOP");
        assert_eq!(mask_key("ABCDEFGHIJKLMNOP"), "ABCD********MNOP");
        assert_eq!(mask_key("SHORT"), "*****");
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let ok = serde_json::json!({
            "title": "My portal",
            "blocks": [
                {"type": "key_info"},
                {"type": "custom_button", "label": "Discord", "url": "https://discord.gg/x", "requires": "full"},
                {"type": "custom_text", "text": "Welcome!"}
            ]
        });
        let parsed = parse_settings(&ok).map_err(|e| e.to_string());
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|s| s.enabled && s.blocks.len() == 3),
            "{parsed:?}"
        );
        let cases = [
            (serde_json::json!({"blocks": [{"type": "bogus"}]}), "bogus"),
            (
                serde_json::json!({"blocks": [{"type": "custom_button", "label": "x", "url": "javascript:alert(1)"}]}),
                "blocks[0].url",
            ),
            (
                serde_json::json!({"blocks": [{"type": "custom_button", "url": "https://x"}]}),
                "blocks[0].label",
            ),
            (
                serde_json::json!({"blocks": [{"type": "custom_text"}]}),
                "blocks[0].text",
            ),
            (serde_json::json!({"loaderUrl": "ftp://x"}), "loaderUrl"),
            (serde_json::json!({"colour": "red"}), "colour"),
            (
                serde_json::json!({"blocks": [{"type": "key_info", "requires": "root"}]}),
                "root",
            ),
        ];
        for (value, needle) in cases {
            let err = parse_settings(&value)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|m| m.contains(needle)),
                "{value}: {err:?}"
            );
        }
    }
}
