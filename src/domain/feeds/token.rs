//! The two tokens of the feeds.
//!
//! - A **download token** is written into a feed's download URL: an HMAC-SHA256 (with a key
//!   derived from the master key) over the artifact it names, its expiry and the license it
//!   was issued to. The updater fetches the file with it, without the license key; it expires
//!   within minutes and opens that one file only. Nothing is stored: a restart keeps them
//!   valid, a new master key ends them all.
//! - A **feed token** stands for a license in a feed URL (`?token=`), for updaters that cannot
//!   send headers (Sparkle): random, stored as SHA-256 only, revocable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto;
use crate::error::{Error, Result};

/// What a download token grants: one artifact, until `expires_at` (seconds), for a license
/// (`None`: an anonymous client of a public feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    pub artifact_id: String,
    pub expires_at: i64,
    pub license_id: Option<String>,
}

/// The label the download-token key is derived from the master key with.
pub const DOWNLOAD_KEY_LABEL: &str = "keyward feed download tokens v1";

const MAX_TOKEN_CHARS: usize = 512;

fn mac(key: &[u8; 32], payload: &str) -> Result<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Storage(format!("download token key: {e}")))?;
    mac.update(payload.as_bytes());
    Ok(mac)
}

/// The token of `grant`: `base64url(artifact:expiry:license).base64url(hmac)`.
pub fn issue_download(key: &[u8; 32], grant: &DownloadGrant) -> Result<String> {
    let payload = B64URL.encode(format!(
        "{}:{}:{}",
        grant.artifact_id,
        grant.expires_at,
        grant.license_id.as_deref().unwrap_or("")
    ));
    let tag = mac(key, &payload)?.finalize().into_bytes();
    Ok(format!("{payload}.{}", B64URL.encode(tag)))
}

/// The grant of a token made with `key` that has not expired at `now` (seconds). Every
/// failure is the same answer, so a forger learns nothing from it.
pub fn verify_download(key: &[u8; 32], token: &str, now: i64) -> Result<DownloadGrant> {
    let refused = || Error::Unauthorized("the download link is invalid or has expired".into());
    if token.len() > MAX_TOKEN_CHARS {
        return Err(refused());
    }
    let (payload, tag) = token.split_once('.').ok_or_else(refused)?;
    let tag = B64URL.decode(tag).map_err(|_| refused())?;
    mac(key, payload)?
        .verify_slice(&tag)
        .map_err(|_| refused())?;
    let text =
        String::from_utf8(B64URL.decode(payload).map_err(|_| refused())?).map_err(|_| refused())?;
    let mut parts = text.splitn(3, ':');
    let (Some(artifact_id), Some(expires_at), Some(license)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let expires_at: i64 = expires_at.parse().map_err(|_| refused())?;
    if expires_at <= now {
        return Err(refused());
    }
    Ok(DownloadGrant {
        artifact_id: artifact_id.to_owned(),
        expires_at,
        license_id: (!license.is_empty()).then(|| license.to_owned()),
    })
}

pub const FEED_TOKEN_PREFIX: &str = "kwf_";

/// A new feed token and the SHA-256 it is stored as.
pub fn new_feed_token() -> (String, [u8; 32]) {
    let token = format!("{FEED_TOKEN_PREFIX}{}", crypto::random_secret(40));
    let hash = crypto::sha256(token.as_bytes());
    (token, hash)
}

/// The stored form of a presented feed token; `None` for what cannot be one.
pub fn feed_token_hash(presented: &str) -> Option<[u8; 32]> {
    let presented = presented.trim();
    (presented.starts_with(FEED_TOKEN_PREFIX) && presented.len() <= 128)
        .then(|| crypto::sha256(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_token_opens_its_artifact_until_it_expires() -> Result<()> {
        let key = [9u8; 32];
        let grant = DownloadGrant {
            artifact_id: "art_1".into(),
            expires_at: 1_000,
            license_id: Some("lic_1".into()),
        };
        let token = issue_download(&key, &grant)?;
        assert_eq!(verify_download(&key, &token, 999)?, grant);
        assert!(verify_download(&key, &token, 1_000).is_err());
        assert!(verify_download(&[8u8; 32], &token, 0).is_err());
        // Any other grant under the same tag is refused.
        let (_, tag) = token.split_once('.').unwrap_or_default();
        let forged = format!("{}.{tag}", B64URL.encode("art_2:1000:lic_1"));
        assert!(verify_download(&key, &forged, 0).is_err());
        assert!(verify_download(&key, "nonsense", 0).is_err());
        let anonymous = DownloadGrant {
            license_id: None,
            ..grant
        };
        let token = issue_download(&key, &anonymous)?;
        assert_eq!(verify_download(&key, &token, 0)?.license_id, None);
        Ok(())
    }

    #[test]
    fn feed_tokens_are_recognized_by_their_prefix() {
        let (token, hash) = new_feed_token();
        assert_eq!(feed_token_hash(&token), Some(hash));
        assert_eq!(feed_token_hash("ABCD-EFGH"), None);
    }
}
