//! E-mail to customers: a tenant's SMTP settings, the outbox of messages waiting to be sent
//! (or sent, or given up), and the templates each kind of message is written from. Messages
//! are rendered when they are queued, so the outbox shows exactly what went out.

pub mod repo;
pub mod templates;

use std::net::IpAddr;

use crate::error::{Error, Result};

super::text_enum! {
    /// How the SMTP connection is secured.
    pub enum SmtpSecurity {
        /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
        StartTls => "starttls",
        /// TLS from the first byte (implicit TLS, port 465).
        Tls => "tls",
        /// No encryption: only to a loopback or private host, and only when the server is
        /// started with `--smtp-allow-plaintext` (a relay on the same host or LAN).
        None => "none",
    }
}

super::text_enum! {
    /// The kinds of message Keyward sends.
    pub enum MailKind {
        /// A license key for its customer: key, product, expiry, portal link.
        LicenseDelivered => "LICENSE_DELIVERED",
        /// Every license of an address, asked for on the portal ("send me my keys").
        SendKeys => "SEND_KEYS",
        /// A signed, single-use link to choose a new portal password.
        PasswordReset => "PASSWORD_RESET",
        /// A subscription license expires soon.
        ExpiryReminder => "EXPIRY_REMINDER",
        /// The settings page's "Send a test e-mail".
        Test => "TEST",
    }
}

super::text_enum! {
    /// Where a message of the outbox stands.
    pub enum OutboxStatus {
        /// Waiting for its (next) attempt.
        Pending => "PENDING",
        /// Accepted by the SMTP server.
        Sent => "SENT",
        /// Given up: a permanent refusal, or every attempt failed.
        Failed => "FAILED",
    }
}

/// A tenant's SMTP settings; the password stays sealed until a message is sent.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub tenant_id: String,
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password_sealed: Option<Vec<u8>>,
    pub from_address: String,
    pub from_name: Option<String>,
    /// Where links in this workspace's messages point; none: the server's `--public-url`.
    pub public_url: Option<String>,
    pub updated_at: i64,
}

/// One message of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: String,
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub license_id: Option<String>,
    pub kind: MailKind,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// A rendered message, ready to queue.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A new message: rendered, addressed, and tied to what it is about.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub license_id: Option<String>,
    pub kind: MailKind,
    pub recipient: String,
    pub rendered: Rendered,
}

/// Longest e-mail address accepted (RFC 5321's path limit).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Whether `address` (already trimmed) is an e-mail address: the one rule for every address
/// Keyward stores or sends to (a key's customer, an operator, a portal account, a recipient).
/// One `@`-separated local part and a dotted domain, without spaces, control characters or
/// the characters that would make a header hold several addresses or a display name.
pub fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\@".contains(c);
    a.len() <= MAX_ADDRESS_LEN
        && !local.is_empty()
        && !domain.is_empty()
        && !local.chars().any(bad)
        && !domain.chars().any(bad)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// `address` trimmed and lower-cased, if it is an e-mail address ([`is_address`]); `field`
/// names it in the error.
pub fn normalize_address(field: &str, address: &str) -> Result<String> {
    let a = address.trim();
    let fail = |why: &str| Err(Error::Invalid(format!("{field} {why}")));
    if a.is_empty() {
        return fail("is required");
    }
    if a.len() > MAX_ADDRESS_LEN {
        return fail(&format!("must be at most {MAX_ADDRESS_LEN} characters"));
    }
    if !is_address(a) {
        return fail("must be an e-mail address (name@example.com)");
    }
    Ok(a.to_ascii_lowercase())
}

/// A host name or address to connect to: letters, digits, `.`, `-`, `:` (IPv6), at most 253.
pub fn validate_host(host: &str) -> Result<String> {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || h.len() > 253 {
        return Err(Error::Invalid(
            "host must be 1-253 characters (a host name or IP address)".into(),
        ));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return Err(Error::Invalid(
            "host must be a host name or IP address (letters, digits, '.', '-', ':')".into(),
        ));
    }
    Ok(h.to_ascii_lowercase())
}

/// True for addresses plaintext SMTP may go to: loopback, private (RFC 1918, unique local)
/// and link-local. A host name counts only as `localhost`; other names are not resolved here.
pub fn is_private_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// The wait before attempt `attempts + 1` of a message: `base` doubled per failed attempt,
/// at most a day.
pub fn backoff_ms(base_ms: i64, attempts: u32) -> i64 {
    let factor = 1i64 << attempts.saturating_sub(1).min(20);
    base_ms.saturating_mul(factor).min(super::DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        assert_eq!(
            normalize_address("email", " Ana@Example.COM ")
                .ok()
                .as_deref(),
            Some("ana@example.com")
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.com",
            "a b@x.com",
            "a@x",
            "<a@x.com>",
            "a@x.com,b@y.com",
        ] {
            assert!(normalize_address("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plaintext_goes_only_to_private_hosts() {
        assert!(is_private_host("127.0.0.1"));
        assert!(is_private_host("10.1.2.3"));
        assert!(is_private_host("::1"));
        assert!(is_private_host("localhost"));
        assert!(!is_private_host("smtp.example.com"));
        assert!(!is_private_host("8.8.8.8"));
    }

    #[test]
    fn backoff_doubles_up_to_a_day() {
        assert_eq!(backoff_ms(1000, 1), 1000);
        assert_eq!(backoff_ms(1000, 2), 2000);
        assert_eq!(backoff_ms(1000, 4), 8000);
        assert_eq!(backoff_ms(60_000_000, 30), super::super::DAY_MS);
    }
}
