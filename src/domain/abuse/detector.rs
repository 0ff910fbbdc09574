//! The in-memory detector: sliding windows keyed by address, network range, license, session
//! and API key, fed one event at a time with the event's own timestamp (so tests replay a
//! month in milliseconds). Pure: no clock, no I/O, no locks — `crate::abuse` owns the single
//! instance on one task.
//!
//! Memory is bounded three ways: a window never holds more than its threshold (crossing the
//! threshold raises a finding and starts the window afresh), each map tracks at most
//! [`MAX_TRACKED`] keys (beyond that, new keys are ignored until a sweep frees room), and
//! [`Detector::sweep`] forgets every key whose last event is older than its longest window.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::{AbuseKind, AbusePolicy, Finding, SubjectType, Threshold, cidr, network_of};

/// Addresses, ranges, sessions and flood subjects tracked per map at most.
pub const MAX_TRACKED: usize = 50_000;
/// Licenses tracked at most (a license in use stays tracked for its longest window, a day
/// with the defaults; a few hundred bytes each).
pub const MAX_TRACKED_LICENSES: usize = 100_000;
/// Values listed in a finding's evidence at most.
const EVIDENCE_SAMPLES: usize = 20;

/// Something a request handler saw.
#[derive(Debug, Clone)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub tenant_id: String,
    pub product_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A validation (or activation, check…) of a key that does not exist.
    UnknownKey,
    /// A license presented for a machine, whatever the answer.
    LicenseUsed {
        license_id: String,
        hwid: Option<String>,
        machine_name: Option<String>,
        session_id: Option<String>,
    },
    /// A machine deactivated: one activate–deactivate cycle completed.
    Deactivated { license_id: String, hwid: String },
    /// The license's user reset its HWID binding.
    HwidReset { license_id: String },
    /// Refused for want of a free activation or session.
    SeatRefused {
        license_id: String,
        hwid: Option<String>,
        limit: SeatLimit,
    },
    /// A 429: per address, or per API key when one was identified.
    RateLimited { api_key_id: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatLimit {
    Activations,
    Sessions,
}

/// Times of events within a window; never longer than the threshold being counted.
#[derive(Debug, Default)]
struct Times(VecDeque<i64>);

impl Times {
    /// Records an event; returns how many fall within the window ending at `at`.
    fn hit(&mut self, at: i64, t: &Threshold) -> usize {
        let since = at - t.window_ms();
        while self.0.front().is_some_and(|&first| first <= since) {
            self.0.pop_front();
        }
        while self.0.len() >= t.count as usize {
            self.0.pop_front();
        }
        self.0.push_back(at);
        self.0.len()
    }

    fn first(&self) -> Option<i64> {
        self.0.front().copied()
    }
}

/// Distinct values seen within a window, each with when it was last seen.
#[derive(Debug)]
struct Distinct<K>(HashMap<K, i64>);

impl<K> Default for Distinct<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Hash + Eq + Clone + ToString> Distinct<K> {
    /// Records `value` at `at`. Returns the number of distinct values within the window when
    /// `value` is new in it (only then can the count cross a threshold), else None.
    fn see<Q>(&mut self, value: &Q, at: i64, t: &Threshold) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let since = at - t.window_ms();
        if let Some(last) = self.0.get_mut(value)
            && *last > since
        {
            *last = (*last).max(at);
            return None;
        }
        self.0.retain(|_, last| *last > since);
        // The window restarts when it crosses the threshold, so it never holds more.
        if self.0.len() >= t.count as usize {
            return None;
        }
        self.0.insert(value.to_owned(), at);
        Some(self.0.len())
    }

    fn sample(&self) -> Vec<String> {
        let mut v: Vec<(&K, &i64)> = self.0.iter().collect();
        v.sort_by_key(|(_, at)| **at);
        v.iter()
            .rev()
            .take(EVIDENCE_SAMPLES)
            .map(|(k, _)| k.to_string())
            .collect()
    }
}

#[derive(Debug, Default)]
struct GuessWindow {
    times: Times,
    last_at: i64,
    horizon_ms: i64,
}

#[derive(Debug, Default)]
struct NetworkWindow {
    times: Times,
    ips: Distinct<IpAddr>,
    last_at: i64,
    horizon_ms: i64,
}

#[derive(Debug, Default)]
struct LicenseWindows {
    ips: Distinct<IpAddr>,
    hwids: Distinct<String>,
    names: Distinct<String>,
    deactivations: Times,
    deactivated_hwids: VecDeque<String>,
    resets: Times,
    refusals: Times,
    refused_activations: u32,
    refused_sessions: u32,
    refused_hwids: VecDeque<String>,
    last_at: i64,
    horizon_ms: i64,
}

#[derive(Debug, Default)]
struct SessionWindow {
    ips: Distinct<IpAddr>,
    last_at: i64,
    horizon_ms: i64,
}

#[derive(Debug, Default)]
struct FloodWindow {
    times: Times,
    last_at: i64,
    horizon_ms: i64,
}

/// The detector's state. Feed it with [`Detector::observe`], trim it with
/// [`Detector::sweep`].
#[derive(Debug, Default)]
pub struct Detector {
    guesses: HashMap<(IpAddr, String), GuessWindow>,
    networks: HashMap<(IpAddr, String), NetworkWindow>,
    licenses: HashMap<String, LicenseWindows>,
    sessions: HashMap<String, SessionWindow>,
    floods: HashMap<(String, String), FloodWindow>,
}

/// The entry of `key`, unless the map is full and `key` new (then the event is not tracked).
fn entry<K: Hash + Eq, V: Default>(map: &mut HashMap<K, V>, key: K, max: usize) -> Option<&mut V> {
    if map.len() >= max && !map.contains_key(&key) {
        return None;
    }
    Some(map.entry(key).or_default())
}

fn push_sample(list: &mut VecDeque<String>, value: &str) {
    if list.len() >= EVIDENCE_SAMPLES {
        list.pop_front();
    }
    list.push_back(value.to_owned());
}

fn window_evidence(
    signal: &str,
    count: usize,
    t: &Threshold,
    first: Option<i64>,
    at: i64,
) -> Value {
    json!({
        "signal": signal,
        "count": count,
        "threshold": t.count,
        "windowSecs": t.window_secs,
        "firstSeen": first.unwrap_or(at),
        "lastSeen": at,
    })
}

impl Detector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys tracked across every map (for tests and logs).
    pub fn tracked(&self) -> usize {
        self.guesses.len()
            + self.networks.len()
            + self.licenses.len()
            + self.sessions.len()
            + self.floods.len()
    }

    /// Takes one event under `policy` (the event's product's, or the defaults); returns the
    /// findings whose threshold it crossed.
    pub fn observe(&mut self, event: Event, policy: &AbusePolicy) -> Vec<Finding> {
        let mut found = Vec::new();
        if !policy.enabled {
            return found;
        }
        let Event {
            at,
            tenant_id,
            product_id,
            ip,
            seen,
        } = event;
        let finding = |kind, subject_type, subject: String, license_id, evidence| Finding {
            tenant_id: tenant_id.clone(),
            product_id: product_id.clone(),
            kind,
            subject_type,
            subject,
            license_id,
            evidence,
            at,
        };
        match seen {
            Seen::UnknownKey => {
                let Some(ip) = ip else { return found };
                let t = &policy.key_guessing_per_ip;
                let horizon = t
                    .window_ms()
                    .max(policy.key_guessing_per_network.window_ms());
                if let Some(w) = entry(&mut self.guesses, (ip, tenant_id.clone()), MAX_TRACKED) {
                    w.last_at = at;
                    w.horizon_ms = horizon;
                    let count = w.times.hit(at, t);
                    if count >= t.count as usize {
                        let mut ev =
                            window_evidence("unknownKeysPerIp", count, t, w.times.first(), at);
                        ev["ip"] = json!(ip.to_string());
                        w.times = Times::default();
                        found.push(finding(
                            AbuseKind::KeyGuessing,
                            SubjectType::Ip,
                            ip.to_string(),
                            None,
                            ev,
                        ));
                    }
                }
                let (net, prefix) = network_of(ip);
                let t = &policy.key_guessing_per_network;
                if let Some(w) = entry(&mut self.networks, (net, tenant_id.clone()), MAX_TRACKED) {
                    w.last_at = at;
                    w.horizon_ms = horizon;
                    w.ips.see(
                        &ip,
                        at,
                        &Threshold {
                            count: t.count.max(2),
                            ..*t
                        },
                    );
                    let count = w.times.hit(at, t);
                    // One address alone is the per-address signal; a range needs two.
                    let distinct = w.ips.0.len();
                    if count >= t.count as usize && distinct >= 2 {
                        let subject = cidr(net, prefix);
                        let mut ev =
                            window_evidence("unknownKeysPerNetwork", count, t, w.times.first(), at);
                        ev["network"] = json!(subject);
                        ev["distinctIps"] = json!(distinct);
                        ev["ips"] = json!(w.ips.sample());
                        *w = NetworkWindow::default();
                        found.push(finding(
                            AbuseKind::KeyGuessing,
                            SubjectType::Network,
                            subject,
                            None,
                            ev,
                        ));
                    }
                }
            }
            Seen::LicenseUsed {
                license_id,
                hwid,
                machine_name,
                session_id,
            } => {
                if let (Some(session), Some(ip)) = (&session_id, ip) {
                    let t = &policy.session_ips;
                    if let Some(w) = entry(&mut self.sessions, session.clone(), MAX_TRACKED) {
                        w.last_at = at;
                        w.horizon_ms = t.window_ms();
                        if let Some(n) = w.ips.see(&ip, at, t)
                            && n >= t.count as usize
                        {
                            let mut ev = window_evidence("sessionIps", n, t, None, at);
                            ev["sessionId"] = json!(session);
                            ev["ips"] = json!(w.ips.sample());
                            w.ips = Distinct::default();
                            found.push(finding(
                                AbuseKind::SessionSharing,
                                SubjectType::License,
                                license_id.clone(),
                                Some(license_id.clone()),
                                ev,
                            ));
                        }
                    }
                }
                let Some(w) = entry(&mut self.licenses, license_id.clone(), MAX_TRACKED_LICENSES)
                else {
                    return found;
                };
                w.last_at = at;
                w.horizon_ms = w.horizon_ms.max(
                    policy
                        .sharing_ips
                        .window_ms()
                        .max(policy.sharing_hwids.window_ms())
                        .max(policy.sharing_machine_names.window_ms()),
                );
                // Every signal that crossed on this event goes into one finding, and each
                // crossed window restarts (a full window that is not restarted stops counting).
                let mut crossed = Vec::new();
                if let Some(ip) = ip
                    && let Some(n) = w.ips.see(&ip, at, &policy.sharing_ips)
                    && n >= policy.sharing_ips.count as usize
                {
                    crossed.push(("distinctIps", n, policy.sharing_ips));
                }
                if let Some(hwid) = &hwid
                    && let Some(n) = w.hwids.see(hwid.as_str(), at, &policy.sharing_hwids)
                    && n >= policy.sharing_hwids.count as usize
                {
                    crossed.push(("distinctHwids", n, policy.sharing_hwids));
                }
                if let Some(name) = &machine_name
                    && let Some(n) = w
                        .names
                        .see(name.as_str(), at, &policy.sharing_machine_names)
                    && n >= policy.sharing_machine_names.count as usize
                {
                    crossed.push(("distinctMachineNames", n, policy.sharing_machine_names));
                }
                if let Some((signal, n, t)) = crossed.first().copied() {
                    let mut ev = window_evidence(signal, n, &t, None, at);
                    ev["signals"] = json!(crossed.iter().map(|c| c.0).collect::<Vec<_>>());
                    ev["ips"] = json!(w.ips.sample());
                    ev["hwids"] = json!(w.hwids.sample());
                    ev["machineNames"] = json!(w.names.sample());
                    for (signal, _, _) in &crossed {
                        match *signal {
                            "distinctIps" => w.ips = Distinct::default(),
                            "distinctHwids" => w.hwids = Distinct::default(),
                            _ => w.names = Distinct::default(),
                        }
                    }
                    found.push(finding(
                        AbuseKind::KeySharing,
                        SubjectType::License,
                        license_id.clone(),
                        Some(license_id),
                        ev,
                    ));
                }
            }
            Seen::Deactivated { license_id, hwid } => {
                let t = &policy.activation_churn;
                let Some(w) = entry(&mut self.licenses, license_id.clone(), MAX_TRACKED_LICENSES)
                else {
                    return found;
                };
                w.last_at = at;
                w.horizon_ms = w.horizon_ms.max(t.window_ms());
                push_sample(&mut w.deactivated_hwids, &hwid);
                let count = w.deactivations.hit(at, t);
                if count >= t.count as usize {
                    let mut ev =
                        window_evidence("deactivations", count, t, w.deactivations.first(), at);
                    ev["hwids"] = json!(w.deactivated_hwids);
                    w.deactivations = Times::default();
                    w.deactivated_hwids.clear();
                    found.push(finding(
                        AbuseKind::ActivationChurn,
                        SubjectType::License,
                        license_id.clone(),
                        Some(license_id),
                        ev,
                    ));
                }
            }
            Seen::HwidReset { license_id } => {
                let t = &policy.hwid_resets;
                let Some(w) = entry(&mut self.licenses, license_id.clone(), MAX_TRACKED_LICENSES)
                else {
                    return found;
                };
                w.last_at = at;
                w.horizon_ms = w.horizon_ms.max(t.window_ms());
                let count = w.resets.hit(at, t);
                if count >= t.count as usize {
                    let ev = window_evidence("hwidResets", count, t, w.resets.first(), at);
                    w.resets = Times::default();
                    found.push(finding(
                        AbuseKind::HwidResetAbuse,
                        SubjectType::License,
                        license_id.clone(),
                        Some(license_id),
                        ev,
                    ));
                }
            }
            Seen::SeatRefused {
                license_id,
                hwid,
                limit,
            } => {
                let t = &policy.seat_pressure;
                let Some(w) = entry(&mut self.licenses, license_id.clone(), MAX_TRACKED_LICENSES)
                else {
                    return found;
                };
                w.last_at = at;
                w.horizon_ms = w.horizon_ms.max(t.window_ms());
                match limit {
                    SeatLimit::Activations => w.refused_activations += 1,
                    SeatLimit::Sessions => w.refused_sessions += 1,
                }
                if let Some(h) = &hwid {
                    push_sample(&mut w.refused_hwids, h);
                }
                let count = w.refusals.hit(at, t);
                if count >= t.count as usize {
                    let mut ev =
                        window_evidence("refusedPastLimits", count, t, w.refusals.first(), at);
                    ev["activationRefusals"] = json!(w.refused_activations);
                    ev["sessionRefusals"] = json!(w.refused_sessions);
                    ev["hwids"] = json!(w.refused_hwids);
                    w.refusals = Times::default();
                    w.refused_activations = 0;
                    w.refused_sessions = 0;
                    w.refused_hwids.clear();
                    found.push(finding(
                        AbuseKind::SeatPressure,
                        SubjectType::License,
                        license_id.clone(),
                        Some(license_id),
                        ev,
                    ));
                }
            }
            Seen::RateLimited { api_key_id } => {
                let t = &policy.rate_limit_hits;
                let mut subjects = Vec::with_capacity(2);
                if let Some(ip) = ip {
                    subjects.push((SubjectType::Ip, ip.to_string()));
                }
                if let Some(key) = api_key_id {
                    subjects.push((SubjectType::ApiKey, key));
                }
                for (subject_type, subject) in subjects {
                    let key = (tenant_id.clone(), format!("{subject_type}:{subject}"));
                    let Some(w) = entry(&mut self.floods, key, MAX_TRACKED) else {
                        continue;
                    };
                    w.last_at = at;
                    w.horizon_ms = t.window_ms();
                    let count = w.times.hit(at, t);
                    if count >= t.count as usize {
                        let mut ev = window_evidence("rateLimited", count, t, w.times.first(), at);
                        ev[if subject_type == SubjectType::Ip {
                            "ip"
                        } else {
                            "apiKeyId"
                        }] = json!(subject);
                        w.times = Times::default();
                        found.push(finding(AbuseKind::Flood, subject_type, subject, None, ev));
                    }
                }
            }
        }
        found
    }

    /// Forgets every key whose last event is older than the longest window it was counted
    /// with. Run by the maintenance task.
    pub fn sweep(&mut self, now: i64) {
        self.guesses.retain(|_, w| w.last_at + w.horizon_ms > now);
        self.networks.retain(|_, w| w.last_at + w.horizon_ms > now);
        self.licenses.retain(|_, w| w.last_at + w.horizon_ms > now);
        self.sessions.retain(|_, w| w.last_at + w.horizon_ms > now);
        self.floods.retain(|_, w| w.last_at + w.horizon_ms > now);
        self.guesses.shrink_to_fit();
        self.networks.shrink_to_fit();
        self.licenses.shrink_to_fit();
        self.sessions.shrink_to_fit();
        self.floods.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    fn used(at: i64, from: &str, hwid: &str) -> Event {
        Event {
            at,
            tenant_id: "ten".into(),
            product_id: Some("prod".into()),
            ip: ip(from),
            seen: Seen::LicenseUsed {
                license_id: "lic".into(),
                hwid: Some(hwid.into()),
                machine_name: None,
                session_id: None,
            },
        }
    }

    #[test]
    fn windows_slide_and_restart_after_a_finding() {
        let policy = AbusePolicy::default();
        let mut d = Detector::new();
        let unknown = |at, from: &str| Event {
            at,
            tenant_id: "ten".into(),
            product_id: None,
            ip: ip(from),
            seen: Seen::UnknownKey,
        };
        // 29 guesses spread wider than the window never cross 30 in 10 minutes.
        for i in 0..100 {
            assert!(
                d.observe(unknown(i * MIN, "198.51.100.1"), &policy)
                    .is_empty()
            );
        }
        let mut found = Vec::new();
        for i in 0..60 {
            found.extend(d.observe(unknown(200 * MIN + i, "198.51.100.1"), &policy));
        }
        // 60 quick guesses: two crossings of 30 (the window restarts after each).
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].kind, AbuseKind::KeyGuessing);
        assert_eq!(found[0].subject, "198.51.100.1");
        assert_eq!(found[0].evidence["count"], 30);
        d.sweep(300 * MIN);
        assert_eq!(d.tracked(), 0, "everything idle is forgotten");
    }

    #[test]
    fn a_range_needs_two_addresses() {
        let policy = AbusePolicy::default();
        let mut d = Detector::new();
        let mut found = Vec::new();
        for i in 0..100 {
            let from = format!("203.0.113.{}", i % 5 + 1);
            found.extend(d.observe(
                Event {
                    at: i,
                    tenant_id: "ten".into(),
                    product_id: None,
                    ip: ip(&from),
                    seen: Seen::UnknownKey,
                },
                &policy,
            ));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subject_type, SubjectType::Network);
        assert_eq!(found[0].subject, "203.0.113.0/24");
        assert_eq!(found[0].evidence["distinctIps"], 5);
    }

    #[test]
    fn ordinary_customer_raises_nothing_for_a_month() {
        // Three machines validate hourly for 30 days; their home addresses change weekly;
        // one machine is replaced (deactivate + activate) and one HWID reset happens.
        let policy = AbusePolicy::default();
        let mut d = Detector::new();
        let mut found = Vec::new();
        for hour in 0..30 * 24 {
            let week = hour / (24 * 7);
            for m in 0..3 {
                let at = hour * HOUR + m * 7 * MIN;
                let from = format!("192.0.2.{}", 10 + m + 3 * week);
                found.extend(d.observe(used(at, &from, &format!("hwid-{m}")), &policy));
            }
            if hour == 200 {
                for seen in [
                    Seen::Deactivated {
                        license_id: "lic".into(),
                        hwid: "hwid-2".into(),
                    },
                    Seen::HwidReset {
                        license_id: "lic".into(),
                    },
                ] {
                    found.extend(d.observe(
                        Event {
                            at: hour * HOUR,
                            tenant_id: "ten".into(),
                            product_id: Some("prod".into()),
                            ip: ip("192.0.2.99"),
                            seen,
                        },
                        &policy,
                    ));
                }
            }
            if hour % 24 == 0 {
                d.sweep(hour * HOUR);
            }
        }
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn sharing_from_many_addresses_is_found() {
        let policy = AbusePolicy::default();
        let mut d = Detector::new();
        let mut found = Vec::new();
        for i in 0..30 {
            found.extend(d.observe(
                used(i * 20_000, &format!("198.51.100.{i}"), "hwid-1"),
                &policy,
            ));
        }
        // 30 addresses in 10 minutes: crossings at 10, 20 and 30 distinct addresses.
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|f| f.kind == AbuseKind::KeySharing));
        assert_eq!(found[0].evidence["signal"], "distinctIps");
        assert_eq!(found[0].evidence["ips"].as_array().map(Vec::len), Some(10));
    }

    #[test]
    fn signals_crossing_together_make_one_finding_and_all_restart() {
        let policy = AbusePolicy {
            sharing_ips: Threshold::new(3, 600),
            sharing_hwids: Threshold::new(3, 600),
            ..AbusePolicy::default()
        };
        let mut d = Detector::new();
        let mut found = Vec::new();
        for i in 0..9 {
            found.extend(d.observe(
                used(i * 1000, &format!("10.0.0.{i}"), &format!("h-{i}")),
                &policy,
            ));
        }
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            found[0].evidence["signals"],
            json!(["distinctIps", "distinctHwids"])
        );
    }

    #[test]
    fn disabled_policies_find_nothing_and_full_maps_stop_growing() {
        let off = AbusePolicy {
            enabled: false,
            ..AbusePolicy::default()
        };
        let mut d = Detector::new();
        for i in 0..100 {
            assert!(
                d.observe(used(i, &format!("10.0.0.{i}"), "h"), &off)
                    .is_empty()
            );
        }
        assert_eq!(d.tracked(), 0);
        let policy = AbusePolicy::default();
        for i in 0..(MAX_TRACKED_LICENSES + 10) {
            let mut e = used(1, "10.0.0.1", "h");
            e.seen = Seen::HwidReset {
                license_id: format!("lic-{i}"),
            };
            d.observe(e, &policy);
        }
        assert_eq!(d.tracked(), MAX_TRACKED_LICENSES);
        assert_eq!(DAY, 24 * HOUR);
    }
}
