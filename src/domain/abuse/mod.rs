//! Abuse detection: signals of key guessing, key sharing, seat pressure and scripted floods,
//! the per-product policy that says what to do about them, and the flags, IP blocks and
//! webhook deliveries that record what was found and done.
//!
//! The signals are computed in memory by [`detector::Detector`] from events the request
//! handlers report without waiting (see `crate::abuse`); this module holds the rules applied
//! when a finding is persisted: de-duplication while a flag is OPEN, automatic actions on a
//! new flag, and their reversal when a flag is dismissed.

pub mod detector;
pub mod repo;

use std::net::IpAddr;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::audit::{self, AuditEvent, Caller};
use super::licenses::{self, LicenseStatus};
use super::text_enum;
use crate::error::{Error, Result};

text_enum! {
    /// What kind of abuse a flag reports.
    pub enum AbuseKind {
        /// Many validations of unknown keys from one address or network range.
        KeyGuessing => "KEY_GUESSING",
        /// One license seen from many addresses, machines or machine names.
        KeySharing => "KEY_SHARING",
        /// Activate–deactivate cycles beyond what one customer does.
        ActivationChurn => "ACTIVATION_CHURN",
        /// HWID resets as often as the cooldown allows, again and again.
        HwidResetAbuse => "HWID_RESET_ABUSE",
        /// One session refreshed from several addresses at once.
        SessionSharing => "SESSION_SHARING",
        /// Repeated attempts past maxActivations / maxSessions.
        SeatPressure => "SEAT_PRESSURE",
        /// Rate-limit refusals per address or API key.
        Flood => "FLOOD",
    }
}

text_enum! {
    /// What a flag is about.
    pub enum SubjectType {
        License => "LICENSE",
        Ip => "IP",
        /// A /24 (IPv4) or /64 (IPv6) range, written as CIDR.
        Network => "NETWORK",
        ApiKey => "API_KEY",
    }
}

text_enum! {
    pub enum FlagState {
        Open => "OPEN",
        Resolved => "RESOLVED",
        Dismissed => "DISMISSED",
    }
}

/// At least `count` events within `window_secs` raise a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Threshold {
    /// 1-10000.
    pub count: u32,
    /// 1-2592000 (30 days).
    pub window_secs: u32,
}

impl Threshold {
    pub const fn new(count: u32, window_secs: u32) -> Self {
        Self { count, window_secs }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_secs as i64 * 1000
    }

    fn check(&self, name: &str) -> Result<()> {
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(Error::Invalid(format!(
                "{name}.count must be 1-{MAX_COUNT}"
            )));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&self.window_secs) {
            return Err(Error::Invalid(format!(
                "{name}.windowSecs must be 1-{MAX_WINDOW_SECS}"
            )));
        }
        Ok(())
    }
}

/// Thresholds are bounded so that every window the detector keeps stays small.
pub const MAX_COUNT: u32 = 10_000;
pub const MAX_WINDOW_SECS: u32 = 30 * 86_400;

/// A product's abuse policy. Stored as JSON in `products.abuse_policy`; absent fields take
/// the defaults below (see README, "Abuse detection").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AbusePolicy {
    /// Detection on for this product.
    pub enabled: bool,
    /// Unknown keys validated from one address: 30 in 10 minutes.
    pub key_guessing_per_ip: Threshold,
    /// Unknown keys from one /24 or /64 range (from at least two of its addresses): 100 in 10
    /// minutes.
    pub key_guessing_per_network: Threshold,
    /// Distinct addresses using one license: 10 in an hour.
    pub sharing_ips: Threshold,
    /// Distinct machines (HWIDs) presenting one license: 10 in a day.
    pub sharing_hwids: Threshold,
    /// Distinct machine names activating one license: 10 in a day.
    pub sharing_machine_names: Threshold,
    /// Deactivations (ends of activate–deactivate cycles) of one license: 10 in a day.
    pub activation_churn: Threshold,
    /// HWID resets of one license by its user: 3 in 7 days.
    pub hwid_resets: Threshold,
    /// Distinct addresses refreshing one session: 3 in 5 minutes.
    pub session_ips: Threshold,
    /// Refusals past maxActivations / maxSessions of one license: 10 in an hour.
    pub seat_pressure: Threshold,
    /// Rate-limit refusals (429) per address or API key: 100 in 10 minutes.
    pub rate_limit_hits: Threshold,
    /// Suspend the license of a new license flag (sharing, churn, resets, seat pressure).
    pub suspend_license: bool,
    /// Block the address (or range) of a new key-guessing or flood flag.
    pub block_ip: bool,
    /// How long an automatic block lasts: 60-2592000 seconds (default one hour).
    pub block_secs: u32,
    /// URL that receives new flags (POST, signed; `abuse.flag.created` events); none by default.
    pub webhook_url: Option<String>,
}

impl Default for AbusePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            key_guessing_per_ip: Threshold::new(30, 600),
            key_guessing_per_network: Threshold::new(100, 600),
            sharing_ips: Threshold::new(10, 3_600),
            sharing_hwids: Threshold::new(10, 86_400),
            sharing_machine_names: Threshold::new(10, 86_400),
            activation_churn: Threshold::new(10, 86_400),
            hwid_resets: Threshold::new(3, 7 * 86_400),
            session_ips: Threshold::new(3, 300),
            seat_pressure: Threshold::new(10, 3_600),
            rate_limit_hits: Threshold::new(100, 600),
            suspend_license: false,
            block_ip: false,
            block_secs: 3_600,
            webhook_url: None,
        }
    }
}

impl AbusePolicy {
    /// The stored policy, or the defaults when there is none or it cannot be read (a policy
    /// is only ever stored after [`AbusePolicy::validate`], so that means a manual edit).
    pub fn from_stored(json: Option<&str>) -> Self {
        json.and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        for (name, t) in [
            ("keyGuessingPerIp", &self.key_guessing_per_ip),
            ("keyGuessingPerNetwork", &self.key_guessing_per_network),
            ("sharingIps", &self.sharing_ips),
            ("sharingHwids", &self.sharing_hwids),
            ("sharingMachineNames", &self.sharing_machine_names),
            ("activationChurn", &self.activation_churn),
            ("hwidResets", &self.hwid_resets),
            ("sessionIps", &self.session_ips),
            ("seatPressure", &self.seat_pressure),
            ("rateLimitHits", &self.rate_limit_hits),
        ] {
            t.check(name)?;
        }
        if !(60..=MAX_WINDOW_SECS).contains(&self.block_secs) {
            return Err(Error::Invalid(format!(
                "blockSecs must be 60-{MAX_WINDOW_SECS}"
            )));
        }
        if let Some(url) = &self.webhook_url {
            validate_webhook_url(url)?;
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL with a host, without credentials, at most 2048 characters
/// (the outgoing client's rule).
pub fn validate_webhook_url(url: &str) -> Result<()> {
    crate::outgoing::client::check_url(url)
        .map_err(|why| Error::Invalid(format!("webhookUrl {why}")))
}

/// The /24 (IPv4) or /64 (IPv6) range of an address.
pub fn network_of(ip: IpAddr) -> (IpAddr, u8) {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (IpAddr::from([o[0], o[1], o[2], 0]), 24)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0]), 64)
        }
    }
}

pub fn cidr(ip: IpAddr, prefix: u8) -> String {
    format!("{ip}/{prefix}")
}

/// A finding of the detector, about to be persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub kind: AbuseKind,
    pub subject_type: SubjectType,
    pub subject: String,
    pub license_id: Option<String>,
    /// Counts, addresses, machines and the window that crossed the threshold.
    pub evidence: Value,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct Flag {
    pub id: String,
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub kind: AbuseKind,
    pub subject_type: SubjectType,
    pub subject: String,
    pub license_id: Option<String>,
    pub state: FlagState,
    pub evidence: String,
    pub actions: String,
    pub occurrences: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IpBlock {
    pub id: String,
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub flag_id: Option<String>,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub reason: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub lifted_at: Option<i64>,
    pub lifted_by: Option<String>,
}

impl IpBlock {
    pub fn target(&self) -> String {
        if self.prefix_len == full_prefix(self.ip) {
            self.ip.to_string()
        } else {
            cidr(self.ip, self.prefix_len)
        }
    }

    pub fn active(&self, now: i64) -> bool {
        self.lifted_at.is_none() && self.expires_at > now
    }
}

pub fn full_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// What persisting a finding did.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub flag_id: String,
    /// False when an OPEN flag of the same kind and subject was updated instead.
    pub new: bool,
    /// A block now in force (also to be added to the in-memory block list).
    pub block: Option<IpBlock>,
    pub suspended_license: bool,
    /// Webhook deliveries were queued (event endpoints or the policy's URL).
    pub webhook_queued: bool,
}

/// Persists a finding inside a writer job (`on_new_flag` emits its webhook events and answers
/// how many deliveries it queued): updates the OPEN flag of the same kind and subject
/// if there is one (an ongoing attack keeps one flag), otherwise opens a new flag and applies
/// the policy's automatic actions, each audited. Actions run only for a new flag, so lifting a
/// block while its flag stays open is not undone by the attack's next finding.
pub fn record_finding(
    conn: &Connection,
    finding: &Finding,
    policy: &AbusePolicy,
    on_new_flag: impl FnOnce(&Connection, &Flag, &AbusePolicy) -> Result<usize>,
) -> Result<Recorded> {
    let now = finding.at;
    if let Some(open) = repo::find_open(conn, &finding.tenant_id, finding.kind, &finding.subject)? {
        repo::touch_open(conn, &open.id, &finding.evidence.to_string(), now)?;
        return Ok(Recorded {
            flag_id: open.id,
            new: false,
            block: None,
            suspended_license: false,
            webhook_queued: false,
        });
    }
    let mut flag = Flag {
        id: crate::crypto::new_id("flag"),
        tenant_id: finding.tenant_id.clone(),
        product_id: finding.product_id.clone(),
        kind: finding.kind,
        subject_type: finding.subject_type,
        subject: finding.subject.clone(),
        license_id: finding.license_id.clone(),
        state: FlagState::Open,
        evidence: finding.evidence.to_string(),
        actions: "[]".into(),
        occurrences: 1,
        created_at: now,
        updated_at: now,
        resolved_at: None,
        resolved_by: None,
    };
    repo::insert_flag(conn, &flag)?;
    let audit_base = |action: crate::domain::audit::AuditAction| {
        let mut e = AuditEvent::new(&finding.tenant_id, "system", action);
        e.at = now;
        e.product_id = finding.product_id.clone();
        e.license_id = finding.license_id.clone();
        e
    };
    audit::repo::insert(
        conn,
        &audit_base(crate::domain::audit::AuditAction::AbuseFlag).detail(json!({
            "flagId": flag.id,
            "kind": finding.kind.as_str(),
            "subject": finding.subject,
        })),
    )?;
    let mut actions = Vec::new();
    let mut suspended_license = false;
    if policy.suspend_license
        && finding.subject_type == SubjectType::License
        && let Some(license_id) = &finding.license_id
        && let Some(license) = licenses::repo::find(conn, &finding.tenant_id, license_id)?
        && license.status == LicenseStatus::Active
    {
        licenses::repo::set_status(conn, &license.id, LicenseStatus::Suspended, now)?;
        audit::repo::insert(
            conn,
            &audit_base(crate::domain::audit::AuditAction::AbuseLicenseSuspend)
                .detail(json!({"flagId": flag.id, "kind": finding.kind.as_str()})),
        )?;
        actions.push(json!({"action": "LICENSE_SUSPENDED", "licenseId": license.id, "at": now}));
        suspended_license = true;
    }
    let mut block = None;
    if policy.block_ip
        && matches!(finding.subject_type, SubjectType::Ip | SubjectType::Network)
        && let Some((ip, prefix_len)) = parse_target(&finding.subject)
    {
        let b = IpBlock {
            id: crate::crypto::new_id("blk"),
            tenant_id: finding.tenant_id.clone(),
            product_id: finding.product_id.clone(),
            flag_id: Some(flag.id.clone()),
            ip,
            prefix_len,
            reason: Some(format!("{} flag {}", finding.kind, flag.id)),
            created_at: now,
            expires_at: now + policy.block_secs as i64 * 1000,
            lifted_at: None,
            lifted_by: None,
        };
        repo::insert_block(conn, &b)?;
        audit::repo::insert(
            conn,
            &audit_base(crate::domain::audit::AuditAction::AbuseIpBlock)
                .ip(Some(&b.target()))
                .detail(json!({"flagId": flag.id, "blockId": b.id, "expiresAt": b.expires_at})),
        )?;
        actions.push(
            json!({"action": "IP_BLOCKED", "blockId": b.id, "target": b.target(), "at": now}),
        );
        block = Some(b);
    }
    if !actions.is_empty() {
        flag.actions = Value::Array(actions).to_string();
        repo::set_actions(conn, &flag.id, &flag.actions)?;
    }
    // The webhook events of the new flag (and of the suspension it caused) go out with it.
    let webhook_queued = on_new_flag(conn, &flag, policy)? > 0;
    Ok(Recorded {
        flag_id: flag.id,
        new: true,
        block,
        suspended_license,
        webhook_queued,
    })
}

/// "1.2.3.4" or "1.2.3.0/24" as an address and prefix length.
pub fn parse_target(text: &str) -> Option<(IpAddr, u8)> {
    match text.split_once('/') {
        Some((ip, prefix)) => {
            let ip: IpAddr = ip.parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            (prefix <= full_prefix(ip)).then_some((ip, prefix))
        }
        None => {
            let ip: IpAddr = text.parse().ok()?;
            Some((ip, full_prefix(ip)))
        }
    }
}

/// What changing a flag's state undid.
#[derive(Debug, Default)]
pub struct StateChange {
    /// Blocks lifted because their flag was dismissed (to drop from memory).
    pub lifted_blocks: usize,
    pub reactivated_license: bool,
}

/// Moves a flag to `state`. Dismissing (a false positive) undoes the flag's automatic
/// actions: its blocks are lifted and the license it suspended is active again (unless
/// someone changed its status since). Resolving keeps them. Reopening a flag is refused
/// while another OPEN flag holds its kind and subject. Must run in a writer job.
pub fn change_state(
    conn: &Connection,
    flag: &Flag,
    state: FlagState,
    by: &Caller,
    now: i64,
) -> Result<StateChange> {
    let actor = by.actor.as_str();
    let mut change = StateChange::default();
    if flag.state == state {
        return Ok(change);
    }
    if state == FlagState::Open
        && repo::find_open(conn, &flag.tenant_id, flag.kind, &flag.subject)?.is_some()
    {
        return Err(Error::Conflict(format!(
            "another OPEN {} flag about {} exists; update that one",
            flag.kind, flag.subject
        )));
    }
    let resolved = (state != FlagState::Open).then_some(now);
    repo::set_state(
        conn,
        &flag.id,
        state,
        resolved,
        resolved.map(|_| actor),
        now,
    )?;
    let mut detail = json!({"flagId": flag.id, "from": flag.state.as_str(), "to": state.as_str()});
    if state == FlagState::Dismissed {
        change.lifted_blocks = repo::lift_blocks_of_flag(conn, &flag.id, actor, now)?;
        let suspended_by_flag = serde_json::from_str::<Value>(&flag.actions)
            .ok()
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|a| a["action"] == "LICENSE_SUSPENDED");
        if suspended_by_flag
            && let Some(license_id) = &flag.license_id
            && let Some(license) = licenses::repo::find(conn, &flag.tenant_id, license_id)?
            && license.status == LicenseStatus::Suspended
        {
            licenses::repo::set_status(conn, &license.id, LicenseStatus::Active, now)?;
            change.reactivated_license = true;
        }
        detail["liftedBlocks"] = json!(change.lifted_blocks);
        detail["reactivatedLicense"] = json!(change.reactivated_license);
    }
    let mut event = by
        .event(
            &flag.tenant_id,
            crate::domain::audit::AuditAction::AbuseFlagUpdate,
        )
        .detail(detail);
    event.at = now;
    event.product_id = flag.product_id.clone();
    event.license_id = flag.license_id.clone();
    audit::repo::insert(conn, &event)?;
    Ok(change)
}

/// Lifts a block (idempotent); audited. Must run in a writer job.
pub fn lift_block(conn: &Connection, block: &IpBlock, by: &Caller, now: i64) -> Result<bool> {
    if block.lifted_at.is_some() {
        return Ok(false);
    }
    repo::lift_block(conn, &block.id, &by.actor, now)?;
    // The event's IP is the operator's, like every admin action's; the unblocked address is
    // in the detail.
    let mut event = by
        .event(
            &block.tenant_id,
            crate::domain::audit::AuditAction::AbuseIpUnblock,
        )
        .detail(json!({"blockId": block.id, "flagId": block.flag_id, "address": block.target()}));
    event.at = now;
    event.product_id = block.product_id.clone();
    audit::repo::insert(conn, &event)?;
    Ok(true)
}

/// HMAC-SHA256 of a webhook body with the product's secret, as sent in
/// `X-Keyward-Signature: sha256=<hex>`.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // new_from_slice accepts keys of any length for HMAC; the error arm cannot happen.
    match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// A fresh webhook secret (`whsec_` + 32 symbols, ~165 bits).
pub fn new_webhook_secret() -> String {
    format!("whsec_{}", crate::crypto::random_secret(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_validate_and_default() {
        let p = AbusePolicy::default();
        assert!(p.validate().is_ok());
        assert_eq!(AbusePolicy::from_stored(None), p);
        assert_eq!(AbusePolicy::from_stored(Some("not json")), p);
        let partial = AbusePolicy::from_stored(Some(r#"{"blockIp":true}"#));
        assert!(partial.block_ip);
        assert_eq!(partial.sharing_ips, p.sharing_ips);
        for (url, ok) in [
            ("http://hooks.local:8080/abuse", true),
            ("http://127.0.0.1/x?y=1", true),
            ("https://example.com/x", true),
            ("ftp://example.com", false),
            ("http://", false),
            ("http://user:pw@example.com/", false),
            ("http://exa mple.com/", false),
        ] {
            assert_eq!(validate_webhook_url(url).is_ok(), ok, "{url}");
        }
        let bad = AbusePolicy {
            sharing_ips: Threshold::new(0, 60),
            ..AbusePolicy::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn networks_and_targets() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(cidr(network_of(v4).0, network_of(v4).1), "203.0.113.0/24");
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6"
            .parse()
            .unwrap_or(IpAddr::from([0u16; 8]));
        assert_eq!(
            cidr(network_of(v6).0, network_of(v6).1),
            "2001:db8:1:2::/64"
        );
        assert_eq!(parse_target("203.0.113.0/24"), Some(network_of(v4)));
        assert_eq!(parse_target("203.0.113.77"), Some((v4, 32)));
        assert_eq!(parse_target("203.0.113.0/33"), None);
        assert_eq!(parse_target("nope"), None);
    }

    #[test]
    fn webhook_signatures_are_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            webhook_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
