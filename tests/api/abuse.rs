//! Abuse detection against a real server: each scenario is a scripted client (many client
//! addresses are simulated through a trusted proxy's X-Forwarded-For), and asserts the flag,
//! its evidence, the automatic action the policy asks for and its reversal. The detector's
//! own time-based behaviour (a simulated month of ordinary use) is replayed with explicit
//! timestamps at the end.

use std::time::{Duration, Instant};

use crate::helpers::*;
use keyward::domain::abuse::detector::{Detector, Event, SeatLimit, Seen};
use keyward::domain::abuse::{AbuseKind, AbusePolicy};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

const FLAGS: &str = "/api/abuse/flags";
const BLOCKS: &str = "/api/abuse/blocks";

/// A server that believes X-Forwarded-For from 127.0.0.1, so tests can speak as any address.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
        c.webhook_retry_base = Duration::from_millis(50);
        // The test receivers listen on 127.0.0.1.
        c.webhook_allow_private = true;
    })
    .await
}

fn random_key() -> String {
    let n: u64 = rand::random();
    format!(
        "TT-{:04X}-{:04X}-{:04X}-{:04X}",
        n & 0xFFFF,
        (n >> 16) & 0xFFFF,
        (n >> 32) & 0xFFFF,
        n >> 48
    )
}

/// Flags matching `query`, as the admin API lists them.
async fn flags(srv: &TestServer, admin: &str, query: &str) -> Vec<Value> {
    // From an address of its own each time, so polling never meets a per-address limit.
    let ip = format!(
        "10.{}.{}.{}",
        rand::random::<u8>(),
        rand::random::<u8>(),
        rand::random::<u8>()
    );
    let a = send_from(
        srv,
        Method::GET,
        &format!("{FLAGS}?{query}"),
        Some(admin),
        &ip,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["data"]["flags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (detection is asynchronous) until at least `n` flags match `query`.
async fn wait_flags(srv: &TestServer, admin: &str, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = flags(srv, admin, query).await;
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the flags matching `query` satisfy `done`.
async fn wait_until(
    srv: &TestServer,
    admin: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = flags(srv, admin, query).await;
        if done(&found) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets the detector drain its queue and the writer commit.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

struct Fixture {
    admin: String,
    api_key: String,
    product_id: String,
    client_secret: String,
}

/// A product in the default tenant with a FULL_ADMIN key (admin API) and a VALIDATE_ONLY
/// key restricted to the product (so every vendor request is tied to its policy).
async fn fixture(srv: &TestServer, slug: &str) -> Fixture {
    let product = srv.create_product("default", slug);
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let api_key = srv.create_api_key("default", Scope::CreateLicense, Some(&product.id));
    let project = srv
        .get(&format!("/api/projects/{}", product.id), &admin)
        .await;
    assert_eq!(project.status, 200, "{}", project.body);
    let client_secret = project.body["data"]["project"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Fixture {
        admin,
        api_key,
        product_id: product.id,
        client_secret,
    }
}

async fn set_policy(srv: &TestServer, f: &Fixture, policy: Value) -> Answer {
    let a = srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}/abuse-policy", f.product_id),
            Some(&f.admin),
            Some(policy),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a
}

async fn license_status(srv: &TestServer, f: &Fixture, key: &str) -> String {
    let a = srv
        .post(
            "/api/v1/license/validate",
            &f.api_key,
            json!({"licenseKey": key, "machineId": "status-probe-machine"}),
        )
        .await;
    a.body["status"].as_str().unwrap_or_default().to_owned()
}

// ---- key guessing ------------------------------------------------------------------------

#[tokio::test]
async fn key_guessing_is_flagged_on_both_faces() {
    let srv = server().await;
    let f = fixture(&srv, "guess").await;
    // (face, address, how one guess is sent)
    let cases: [(&str, &str); 4] = [
        ("vendor /api/v1/license/validate", "198.51.100.1"),
        ("key/HWID /api/validate", "198.51.100.2"),
        (
            "key/HWID /api/validate with the project secret",
            "198.51.100.3",
        ),
        ("telegram info", "198.51.100.4"),
    ];
    for (i, (face, ip)) in cases.iter().enumerate() {
        for _ in 0..200 {
            let key = random_key();
            let a =
                match i {
                    0 => {
                        send_from(
                            &srv,
                            Method::POST,
                            "/api/v1/license/validate",
                            Some(&f.api_key),
                            ip,
                            Some(json!({"licenseKey": key, "machineId": "guesser-machine"})),
                        )
                        .await
                    }
                    1 => {
                        send_from(
                            &srv,
                            Method::POST,
                            "/api/validate",
                            None,
                            ip,
                            Some(json!({"key": key, "hwid": "guesser-hwid"})),
                        )
                        .await
                    }
                    2 => send_from(
                        &srv,
                        Method::POST,
                        "/api/validate",
                        None,
                        ip,
                        Some(
                            json!({"key": key, "hwid": "guesser-hwid", "secret": f.client_secret}),
                        ),
                    )
                    .await,
                    _ => {
                        send_from(
                            &srv,
                            Method::POST,
                            "/api/telegram",
                            None,
                            ip,
                            Some(json!({"action": "info", "key": key})),
                        )
                        .await
                    }
                };
            assert!(
                a.status == 200 || a.status == 404,
                "{face}: {} {}",
                a.status,
                a.body
            );
        }
        let found = wait_until(&srv, &f.admin, "kind=KEY_GUESSING&state=OPEN", |fl| {
            fl.iter().any(|x| x["subject"] == *ip)
        })
        .await;
        let flag = found
            .iter()
            .find(|fl| fl["subject"] == *ip)
            .unwrap_or_else(|| panic!("{face}: a KEY_GUESSING flag about {ip}: {found:?}"));
        assert_eq!(flag["subjectType"], "IP", "{face}");
        assert_eq!(flag["evidence"]["signal"], "unknownKeysPerIp", "{face}");
        assert_eq!(
            flag["evidence"]["count"], 30,
            "{face}: threshold crossed at 30"
        );
        assert_eq!(flag["evidence"]["windowSecs"], 600, "{face}");
        assert_eq!(flag["evidence"]["ip"], *ip, "{face}");
        // Tied to the product whenever the request names it (API key, secret).
        let expected_project = if i == 0 || i == 2 {
            json!(f.product_id)
        } else {
            Value::Null
        };
        assert_eq!(flag["projectId"], expected_project, "{face}");
    }
    settle().await;
    // An ongoing attack updates its one OPEN flag: 200 guesses = 6 crossings, 1 flag.
    let all = flags(&srv, &f.admin, "kind=KEY_GUESSING").await;
    for (_, ip) in cases {
        let mine: Vec<_> = all.iter().filter(|fl| fl["subject"] == ip).collect();
        assert_eq!(mine.len(), 1, "{ip}: {all:?}");
        assert_eq!(mine[0]["occurrences"], 6, "{ip}");
    }
    // The four addresses share a /24: the range is flagged too, with its addresses.
    let net = flags(&srv, &f.admin, "kind=KEY_GUESSING").await;
    assert!(
        net.iter().any(|fl| fl["subject"] == "198.51.100.0/24"
            && fl["subjectType"] == "NETWORK"
            && fl["evidence"]["distinctIps"].as_u64().unwrap_or(0) >= 2),
        "{net:?}"
    );
}

// ---- key sharing, churn, seat pressure, floods -------------------------------------------

#[tokio::test]
async fn one_license_from_thirty_addresses_is_key_sharing() {
    let srv = server().await;
    let f = fixture(&srv, "share").await;
    let license = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let key = license["key"].as_str().unwrap_or_default();
    assert_eq!(
        srv.activate(&f.api_key, key, "shared-machine-01")
            .await
            .status,
        200
    );
    for i in 0..30 {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&f.api_key),
            &format!("203.0.113.{}", i + 1),
            Some(json!({"licenseKey": key, "machineId": "shared-machine-01"})),
        )
        .await;
        assert_eq!(a.body["valid"], true, "{}", a.body);
    }
    let found = wait_flags(&srv, &f.admin, "kind=KEY_SHARING", 1).await;
    assert_eq!(found.len(), 1, "one flag for the license: {found:?}");
    let flag = &found[0];
    assert_eq!(flag["subjectType"], "LICENSE");
    assert_eq!(flag["subject"], license["id"]);
    assert_eq!(flag["keyId"], license["id"]);
    assert_eq!(flag["projectId"], json!(f.product_id));
    assert_eq!(flag["evidence"]["signal"], "distinctIps");
    assert_eq!(flag["evidence"]["threshold"], 10);
    assert_eq!(flag["evidence"]["ips"].as_array().map(Vec::len), Some(10));
    assert_eq!(flag["evidence"]["hwids"], json!(["shared-machine-01"]));
    settle().await;
    let again = flags(&srv, &f.admin, "kind=KEY_SHARING").await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0]["occurrences"], 3,
        "30 addresses: three crossings of 10"
    );
}

#[tokio::test]
async fn churn_seat_pressure_and_floods_are_flagged() {
    let srv = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
        c.rate_limits = rate_limits(5, 0, 0);
    })
    .await;
    let f = fixture(&srv, "churn").await;
    // Churn: activate–deactivate cycles on one license (each from a fresh address so the
    // per-address limit of 5/minute does not get in the way).
    let churned = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let churn_key = churned["key"].as_str().unwrap_or_default();
    for i in 0..10 {
        let ip = format!("192.0.2.{}", i + 1);
        let machine = format!("churn-machine-{i:02}");
        let body = json!({"licenseKey": churn_key, "machineId": machine});
        let a = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/activate",
            Some(&f.api_key),
            &ip,
            Some(body.clone()),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let d = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/deactivate",
            Some(&f.api_key),
            &ip,
            Some(body),
        )
        .await;
        assert_eq!(d.status, 200, "{}", d.body);
    }
    let churn = wait_flags(&srv, &f.admin, "kind=ACTIVATION_CHURN", 1).await;
    assert_eq!(churn.len(), 1, "{churn:?}");
    assert_eq!(churn[0]["subject"], churned["id"]);
    assert_eq!(churn[0]["evidence"]["count"], 10);
    assert_eq!(
        churn[0]["evidence"]["hwids"].as_array().map(Vec::len),
        Some(10)
    );

    // Seat pressure: one seat, taken; ten more machines try.
    let seat = srv
        .create_license(&f.api_key, &f.product_id, json!({"maxActivations": 1}))
        .await;
    let seat_key = seat["key"].as_str().unwrap_or_default();
    assert_eq!(
        srv.activate(&f.api_key, seat_key, "seat-holder-machine")
            .await
            .status,
        200
    );
    for i in 0..10 {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/activate",
            Some(&f.api_key),
            &format!("192.0.2.{}", 100 + i),
            Some(json!({"licenseKey": seat_key, "machineId": format!("seat-taker-{i:02}")})),
        )
        .await;
        a.assert_error(400, "ACTIVATION_LIMIT_REACHED");
    }
    let pressure = wait_flags(&srv, &f.admin, "kind=SEAT_PRESSURE", 1).await;
    assert_eq!(pressure.len(), 1, "{pressure:?}");
    assert_eq!(pressure[0]["subject"], seat["id"]);
    assert_eq!(pressure[0]["evidence"]["activationRefusals"], 10);
    assert_eq!(pressure[0]["evidence"]["sessionRefusals"], 0);

    // Floods: 120 requests from one address at 5/minute: 115 refusals, over the 100 default.
    for _ in 0..120 {
        send_from(&srv, Method::GET, "/api/health", None, "198.18.0.9", None).await;
    }
    let flood = wait_flags(&srv, &f.admin, "kind=FLOOD", 1).await;
    assert_eq!(flood.len(), 1, "{flood:?}");
    assert_eq!(flood[0]["subjectType"], "IP");
    assert_eq!(flood[0]["subject"], "198.18.0.9");
    assert_eq!(flood[0]["evidence"]["count"], 100);
}

#[tokio::test]
async fn session_sharing_and_hwid_resets_on_the_key_hwid_face() {
    let srv = server().await;
    let f = fixture(&srv, "sessions").await;
    set_policy(&srv, &f, json!({"hwidResets": {"count": 3}})).await;
    let a = srv
        .call(
            Method::POST,
            "/api/keys",
            Some(&f.admin),
            Some(json!({"plan": "LIFETIME", "projectId": f.product_id})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let key = a.body["data"]["keys"][0]["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = a.body["data"]["keys"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // One session, refreshed from three addresses within minutes.
    let first = send_from(
        &srv,
        Method::POST,
        "/api/validate",
        None,
        "100.64.0.1",
        Some(json!({"key": key, "hwid": "kv-hwid-1"})),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let session = first.body["data"]["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for ip in ["100.64.0.2", "100.64.0.3"] {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/validate",
            None,
            ip,
            Some(json!({"key": key, "hwid": "kv-hwid-1", "sessionId": session})),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let shared = wait_flags(&srv, &f.admin, "kind=SESSION_SHARING", 1).await;
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0]["subject"], id.as_str());
    assert_eq!(shared[0]["evidence"]["sessionId"], session.as_str());
    // HWID resets as often as the cooldown (here none) allows.
    srv.call(
        Method::PATCH,
        &format!("/api/projects/{}", f.product_id),
        Some(&f.admin),
        Some(json!({"hwidResetCooldownSeconds": 0})),
    )
    .await;
    for _ in 0..3 {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/telegram",
            None,
            "100.64.0.9",
            Some(json!({"action": "reset_hwid", "key": key, "secret": f.client_secret})),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let resets = wait_flags(&srv, &f.admin, "kind=HWID_RESET_ABUSE", 1).await;
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(resets[0]["evidence"]["count"], 3);
}

// ---- automatic actions and their reversal --------------------------------------------------

#[tokio::test]
async fn policy_suspends_a_shared_license_and_dismissing_reactivates_it() {
    let srv = server().await;
    let f = fixture(&srv, "suspend").await;
    set_policy(
        &srv,
        &f,
        json!({"suspendLicense": true, "sharingIps": {"count": 5, "windowSecs": 600}}),
    )
    .await;
    let license = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let key = license["key"].as_str().unwrap_or_default();
    assert_eq!(
        srv.activate(&f.api_key, key, "suspend-machine-1")
            .await
            .status,
        200
    );
    for i in 0..5 {
        send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&f.api_key),
            &format!("203.0.113.{}", 50 + i),
            Some(json!({"licenseKey": key, "machineId": "suspend-machine-1"})),
        )
        .await;
    }
    let found = wait_flags(&srv, &f.admin, "kind=KEY_SHARING", 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let flag_id = found[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(found[0]["actions"][0]["action"], "LICENSE_SUSPENDED");
    assert_eq!(license_status(&srv, &f, key).await, "SUSPENDED");
    // On the product's revocation list, and off it again once dismissed (see revocations.rs).
    let revocations = || async {
        srv.call(
            Method::GET,
            "/api/v1/license/revocations?product=suspend",
            None,
            None,
        )
        .await
        .body
    };
    let listed = revocations().await;
    assert_eq!(listed["version"], 1, "{listed}");
    assert_eq!(listed["revoked"][0]["licenseId"], license["id"], "{listed}");
    assert_eq!(listed["revoked"][0]["status"], "SUSPENDED", "{listed}");
    // Audited.
    let logs = srv.get("/api/logs?action=abuse.", &f.admin).await;
    let actions: Vec<&str> = logs.body["data"]["logs"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(actions.contains(&"abuse.flag"), "{actions:?}");
    assert!(actions.contains(&"abuse.license.suspend"), "{actions:?}");
    // A false positive: dismissing undoes the suspension.
    let a = srv
        .call(
            Method::PATCH,
            &format!("{FLAGS}/{flag_id}"),
            Some(&f.admin),
            Some(json!({"state": "DISMISSED"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["state"], "DISMISSED");
    assert!(
        a.body["data"]["resolvedBy"]
            .as_str()
            .is_some_and(|b| b.starts_with("api_key:"))
    );
    assert_eq!(license_status(&srv, &f, key).await, "ACTIVE");
    let unlisted = revocations().await;
    assert_eq!(unlisted["version"], 2, "{unlisted}");
    assert_eq!(unlisted["revoked"], json!([]), "{unlisted}");
}

#[tokio::test]
async fn policy_blocks_a_guessing_address_before_any_key_lookup_until_lifted() {
    let srv = server().await;
    let f = fixture(&srv, "block").await;
    set_policy(
        &srv,
        &f,
        json!({"blockIp": true, "blockSecs": 600, "keyGuessingPerIp": {"count": 5}}),
    )
    .await;
    let license = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let good_key = license["key"].as_str().unwrap_or_default();
    let attacker = "198.51.100.66";
    for _ in 0..5 {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&f.api_key),
            attacker,
            Some(json!({"licenseKey": random_key(), "machineId": "attacker-machine"})),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let found = wait_flags(&srv, &f.admin, "kind=KEY_GUESSING", 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["actions"][0]["action"], "IP_BLOCKED");
    // The block is in memory as soon as the flag is committed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let blocked = loop {
        let a = send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&f.api_key),
            attacker,
            Some(json!({"licenseKey": good_key, "machineId": "attacker-machine"})),
        )
        .await;
        if a.status == 403 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    blocked.assert_error(403, "IP_BLOCKED");
    // Before any lookup: even without a valid API key, and on the key/HWID face's envelope.
    send_from(
        &srv,
        Method::POST,
        "/api/v1/license/validate",
        Some("kw_bogus"),
        attacker,
        Some(json!({"licenseKey": good_key, "machineId": "attacker-machine"})),
    )
    .await
    .assert_error(403, "IP_BLOCKED");
    assert_kv_error(
        &send_from(
            &srv,
            Method::POST,
            "/api/validate",
            None,
            attacker,
            Some(json!({"key": good_key, "hwid": "x"})),
        )
        .await,
        403,
        "IP_BLOCKED",
    );
    // Its /24 neighbours and everyone else are served; the admin API stays reachable.
    let other = send_from(
        &srv,
        Method::POST,
        "/api/v1/license/validate",
        Some(&f.api_key),
        "198.51.100.67",
        Some(json!({"licenseKey": good_key, "machineId": "other-machine-1"})),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.body);
    let list = send_from(
        &srv,
        Method::GET,
        &format!("{BLOCKS}?active=true"),
        Some(&f.admin),
        attacker,
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let blocks = list.body["data"]["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["target"], attacker);
    assert_eq!(blocks[0]["active"], true);
    assert_eq!(blocks[0]["flagId"], found[0]["id"]);
    // Lifted: served again at once; lifting again changes nothing.
    let id = blocks[0]["id"].as_str().unwrap_or_default();
    let lifted = srv
        .call(
            Method::DELETE,
            &format!("{BLOCKS}/{id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert_eq!(lifted.body["data"]["active"], false);
    assert!(lifted.body["data"]["liftedBy"].as_str().is_some());
    let again = srv
        .call(
            Method::DELETE,
            &format!("{BLOCKS}/{id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let served = send_from(
        &srv,
        Method::POST,
        "/api/v1/license/validate",
        Some(&f.api_key),
        attacker,
        Some(json!({"licenseKey": good_key, "machineId": "attacker-machine"})),
    )
    .await;
    assert_eq!(served.status, 200, "{}", served.body);
    let active = srv.get(&format!("{BLOCKS}?active=true"), &f.admin).await;
    assert_eq!(active.body["data"]["pagination"]["total"], 0);
    let logs = srv.get("/api/logs?action=abuse.", &f.admin).await;
    let text = logs.body.to_string();
    assert!(
        text.contains("abuse.ip.block") && text.contains("abuse.ip.unblock"),
        "{text}"
    );
}

#[tokio::test]
async fn blocks_survive_a_restart() {
    let mut srv = server().await;
    let f = fixture(&srv, "restart").await;
    set_policy(
        &srv,
        &f,
        json!({"blockIp": true, "keyGuessingPerIp": {"count": 3}}),
    )
    .await;
    for _ in 0..3 {
        srv.post(
            "/api/v1/license/validate",
            &f.api_key,
            json!({"licenseKey": random_key(), "machineId": "restart-machine"}),
        )
        .await;
    }
    wait_flags(&srv, &f.admin, "kind=KEY_GUESSING", 1).await;
    settle().await;
    srv.restart().await;
    // After the restart the peer is 127.0.0.1 again (no trusted proxies configured).
    srv.post(
        "/api/v1/license/validate",
        &f.api_key,
        json!({"licenseKey": random_key(), "machineId": "restart-machine"}),
    )
    .await
    .assert_error(403, "IP_BLOCKED");
}

// ---- the admin API -------------------------------------------------------------------------

#[tokio::test]
async fn flags_are_listed_filtered_resolved_and_tenant_scoped() {
    let srv = server().await;
    let f = fixture(&srv, "admin").await;
    set_policy(
        &srv,
        &f,
        json!({"keyGuessingPerIp": {"count": 3}, "sharingIps": {"count": 3}}),
    )
    .await;
    for ip in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..3 {
            send_from(
                &srv,
                Method::POST,
                "/api/v1/license/validate",
                Some(&f.api_key),
                ip,
                Some(json!({"licenseKey": random_key(), "machineId": "admin-machine"})),
            )
            .await;
        }
    }
    let license = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let key = license["key"].as_str().unwrap_or_default();
    for ip in ["203.0.113.7", "203.0.113.8", "203.0.113.9"] {
        send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&f.api_key),
            ip,
            Some(json!({"licenseKey": key, "machineId": "admin-machine"})),
        )
        .await;
    }
    let all = wait_flags(&srv, &f.admin, "", 3).await;
    assert_eq!(all.len(), 3, "{all:?}");
    // Filters and pagination.
    let cases = [
        ("kind=KEY_GUESSING", 2),
        ("kind=KEY_SHARING", 1),
        ("state=OPEN", 3),
        ("state=RESOLVED", 0),
        (&*format!("projectId={}", f.product_id), 3),
        ("projectId=prod_nope", 0),
        ("kind=KEY_GUESSING&limit=1", 1),
    ];
    for (query, n) in cases {
        assert_eq!(flags(&srv, &f.admin, query).await.len(), n, "{query}");
    }
    let page = srv.get(&format!("{FLAGS}?limit=1&page=2"), &f.admin).await;
    assert_eq!(page.body["data"]["pagination"]["total"], 3);
    assert_eq!(page.body["data"]["pagination"]["totalPages"], 3);
    assert_eq!(page.body["data"]["flags"].as_array().map(Vec::len), Some(1));
    // Detail with evidence; the dashboard badge.
    let id = all[0]["id"].as_str().unwrap_or_default().to_owned();
    let one = srv.get(&format!("{FLAGS}/{id}"), &f.admin).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.body["data"]["evidence"]["count"].as_u64().is_some());
    let stats = srv.get("/api/stats", &f.admin).await;
    assert_eq!(stats.body["data"]["openAbuseFlags"], 3, "{}", stats.body);
    // Resolve, reopen, dismiss.
    for (state, open_left) in [("RESOLVED", 2), ("OPEN", 3), ("DISMISSED", 2)] {
        let a = srv
            .call(
                Method::PATCH,
                &format!("{FLAGS}/{id}"),
                Some(&f.admin),
                Some(json!({"state": state})),
            )
            .await;
        assert_eq!(a.status, 200, "{state}: {}", a.body);
        assert_eq!(a.body["data"]["state"], state);
        assert_eq!(
            a.body["data"]["resolvedBy"].is_null(),
            state == "OPEN",
            "{state}: {}",
            a.body
        );
        let stats = srv.get("/api/stats", &f.admin).await;
        assert_eq!(stats.body["data"]["openAbuseFlags"], open_left, "{state}");
    }
    // Another tenant sees none of it: 404 like a missing flag.
    srv.create_tenant("other");
    let other = srv.create_api_key("other", Scope::FullAdmin, None);
    assert!(flags(&srv, &other, "").await.is_empty());
    for (method, path, body) in [
        (Method::GET, format!("{FLAGS}/{id}"), None),
        (
            Method::PATCH,
            format!("{FLAGS}/{id}"),
            Some(json!({"state": "RESOLVED"})),
        ),
        (
            Method::GET,
            format!("/api/projects/{}/abuse-policy", f.product_id),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/projects/{}/abuse-policy", f.product_id),
            Some(json!({"blockIp": true})),
        ),
        (Method::DELETE, format!("{BLOCKS}/blk_nope"), None),
        (Method::GET, format!("{FLAGS}/flag_nope"), None),
    ] {
        let a = srv.call(method.clone(), &path, Some(&other), body).await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    let stats = srv.get("/api/stats", &other).await;
    assert_eq!(stats.body["data"]["openAbuseFlags"], 0);
    // Without credentials: 401.
    let anon = srv.call(Method::GET, FLAGS, None, None).await;
    assert_kv_error(&anon, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_envelope_never_a_500() {
    let srv = server().await;
    let f = fixture(&srv, "bad").await;
    let policy = format!("/api/projects/{}/abuse-policy", f.product_id);
    let json_cases: Vec<(Method, String, Value)> = vec![
        (
            Method::PATCH,
            format!("{FLAGS}/flag_x"),
            json!({"state": "CLOSED"}),
        ),
        (
            Method::PATCH,
            format!("{FLAGS}/flag_x"),
            json!({"state": 3}),
        ),
        (Method::PATCH, format!("{FLAGS}/flag_x"), json!({})),
        (
            Method::PATCH,
            policy.clone(),
            json!({"sharingIps": {"count": 0}}),
        ),
        (
            Method::PATCH,
            policy.clone(),
            json!({"sharingIps": {"count": "ten"}}),
        ),
        (Method::PATCH, policy.clone(), json!({"sharingIps": 5})),
        (
            Method::PATCH,
            policy.clone(),
            json!({"sharingIps": {"windowSecs": 99999999}}),
        ),
        (Method::PATCH, policy.clone(), json!({"blockSecs": 5})),
        (Method::PATCH, policy.clone(), json!({"blockIp": "yes"})),
        (
            Method::PATCH,
            policy.clone(),
            json!({"webhookUrl": "ftp://example.com/hook"}),
        ),
        (
            Method::PATCH,
            policy.clone(),
            json!({"webhookUrl": "not a url"}),
        ),
        (Method::PATCH, policy.clone(), json!({"webhookUrl": 42})),
        (
            Method::PATCH,
            policy.clone(),
            json!({"rotateWebhookSecret": true}),
        ),
        (
            Method::PATCH,
            policy.clone(),
            json!({"enabled": null, "hwidResets": {"count": -1}}),
        ),
    ];
    for (method, path, body) in json_cases {
        let a = srv
            .call(method, &path, Some(&f.admin), Some(body.clone()))
            .await;
        // An unknown flag id may answer 404 once the body parsed; never a 500.
        assert!(
            a.status == 400 || a.status == 404,
            "{path} {body}: {} {}",
            a.status,
            a.body
        );
        assert_eq!(a.body["success"], false, "{path} {body}");
        assert!(a.body["code"].is_string(), "{path} {body}: {}", a.body);
    }
    for path in [format!("{FLAGS}/flag_x"), policy.clone()] {
        let a = srv
            .call_raw(
                Method::PATCH,
                &path,
                Some(&f.admin),
                "application/json",
                b"{\"state\":".to_vec(),
            )
            .await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    for query in ["kind=NOPE", "state=open", "page=0", "limit=501", "limit=x"] {
        let a = srv.get(&format!("{FLAGS}?{query}"), &f.admin).await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    let a = srv.get(&format!("{BLOCKS}?active=maybe"), &f.admin).await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    let a = srv
        .get("/api/projects/prod_nope/abuse-policy", &f.admin)
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    // Nothing changed: the defaults are still there.
    let a = srv.get(&policy, &f.admin).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["data"]["sharingIps"],
        json!({"count": 10, "windowSecs": 3600})
    );
    assert_eq!(a.body["data"]["blockIp"], false);
    assert_eq!(a.body["data"]["webhookSecretSet"], false);
    assert!(a.body["data"].get("webhookSecret").is_none());
}

// ---- webhook -------------------------------------------------------------------------------

/// A minimal HTTP receiver: answers the first request 500 and later ones 204, and sends each
/// request's signature header and body on the channel.
async fn receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/hooks/abuse",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    break (0, 0);
                };
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + length {
                let Ok(n) = sock.read(&mut chunk).await else {
                    break;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let signature = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("x-keyward-signature")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            let _ = tx.send((signature, buf[head_end..].to_vec()));
            let status = if served == 0 {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            served += 1;
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, rx)
}

#[tokio::test]
async fn new_flags_are_posted_signed_and_retried() {
    use hmac::{Hmac, Mac};
    let srv = server().await;
    let f = fixture(&srv, "hook").await;
    let (url, mut rx) = receiver().await;
    let a = set_policy(
        &srv,
        &f,
        json!({"webhookUrl": url, "keyGuessingPerIp": {"count": 3}}),
    )
    .await;
    let secret = a.body["data"]["webhookSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "shown once: {}", a.body);
    // Shown once only.
    let again = srv
        .get(
            &format!("/api/projects/{}/abuse-policy", f.product_id),
            &f.admin,
        )
        .await;
    assert!(again.body["data"].get("webhookSecret").is_none());
    assert_eq!(again.body["data"]["webhookSecretSet"], true);
    assert_eq!(again.body["data"]["webhookUrl"], url.as_str());
    for _ in 0..3 {
        srv.post(
            "/api/v1/license/validate",
            &f.api_key,
            json!({"licenseKey": random_key(), "machineId": "hook-machine"}),
        )
        .await;
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        got.push(item.ok().flatten().expect("a webhook request"));
    }
    // The first attempt was answered 500; the retry carries the same signed body.
    assert_eq!(got[0], got[1]);
    let (signature, body) = &got[1];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    assert_eq!(
        signature,
        &format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let payload: Value = serde_json::from_slice(body).expect("json body");
    assert_eq!(payload["event"], "abuse.flag.created");
    assert_eq!(payload["flag"]["kind"], "KEY_GUESSING");
    assert_eq!(payload["flag"]["projectId"], json!(f.product_id));
    assert_eq!(payload["flag"]["evidence"]["count"], 3);
    settle().await;
    let (attempts, delivered): (i64, Option<i64>) = srv
        .db()
        .query_row(
            "SELECT attempts, delivered_at FROM webhook_deliveries WHERE endpoint_id IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("one delivery");
    assert_eq!(attempts, 2);
    assert!(delivered.is_some());
    // Rotating the secret shows a new one; clearing the URL removes both.
    let rotated = set_policy(&srv, &f, json!({"rotateWebhookSecret": true})).await;
    let new_secret = rotated.body["data"]["webhookSecret"]
        .as_str()
        .unwrap_or_default();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let cleared = set_policy(&srv, &f, json!({"webhookUrl": null})).await;
    assert_eq!(cleared.body["data"]["webhookUrl"], Value::Null);
    assert_eq!(cleared.body["data"]["webhookSecretSet"], false);
}

// ---- ordinary use and switches ---------------------------------------------------------------

#[tokio::test]
async fn ordinary_use_raises_nothing_and_detection_can_be_off() {
    let srv = server().await;
    let f = fixture(&srv, "ordinary").await;
    let license = srv
        .create_license(&f.api_key, &f.product_id, json!({}))
        .await;
    let key = license["key"].as_str().unwrap_or_default();
    // A customer with three machines at home and at the office.
    for m in 0..3 {
        let a = send_from(&srv, Method::POST, "/api/v1/license/activate", Some(&f.api_key), "192.0.2.10",
            Some(json!({"licenseKey": key, "machineId": format!("customer-machine-{m}"), "machineName": format!("PC {m}")}))).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    for round in 0..20 {
        for m in 0..3 {
            let ip = if m == 2 {
                "198.51.100.200"
            } else {
                "192.0.2.10"
            };
            let a = send_from(
                &srv,
                Method::POST,
                "/api/v1/license/validate",
                Some(&f.api_key),
                ip,
                Some(json!({"licenseKey": key, "machineId": format!("customer-machine-{m}")})),
            )
            .await;
            assert_eq!(a.body["valid"], true, "round {round}: {}", a.body);
        }
    }
    settle().await;
    assert!(flags(&srv, &f.admin, "").await.is_empty());

    let off = TestServer::start_with(|c| c.abuse_detection = false).await;
    let fo = fixture(&off, "off").await;
    for _ in 0..100 {
        off.post(
            "/api/v1/license/validate",
            &fo.api_key,
            json!({"licenseKey": random_key(), "machineId": "off-machine"}),
        )
        .await;
    }
    settle().await;
    assert!(flags(&off, &fo.admin, "").await.is_empty());
}

/// The detector replayed with explicit timestamps: a month takes milliseconds.
#[test]
fn detector_scenarios_over_simulated_time() {
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    let ev = |at: i64, ip: &str, seen: Seen| Event {
        at,
        tenant_id: "ten".into(),
        product_id: Some("prod".into()),
        ip: ip.parse().ok(),
        seen,
    };
    let used = |hwid: &str, session: Option<&str>| Seen::LicenseUsed {
        license_id: "lic".into(),
        hwid: Some(hwid.into()),
        machine_name: None,
        session_id: session.map(str::to_owned),
    };
    type Script = Box<dyn Fn() -> Vec<Event>>;
    let cases: Vec<(&str, Script, Vec<AbuseKind>)> = vec![
        (
            "3 machines validating hourly for 30 days, weekly address changes, a reset, a replaced machine",
            Box::new(move || {
                let mut out = Vec::new();
                for hour in 0..30 * 24 {
                    for m in 0..3 {
                        let ip = format!("192.0.2.{}", 10 + m + 3 * (hour / (24 * 7)));
                        out.push(ev(
                            hour * HOUR + m * MIN,
                            &ip,
                            used(&format!("hwid-{m}"), Some(&format!("s-{m}"))),
                        ));
                    }
                }
                out.push(ev(
                    300 * HOUR,
                    "192.0.2.10",
                    Seen::HwidReset {
                        license_id: "lic".into(),
                    },
                ));
                out.push(ev(
                    400 * HOUR,
                    "192.0.2.10",
                    Seen::Deactivated {
                        license_id: "lic".into(),
                        hwid: "hwid-2".into(),
                    },
                ));
                out
            }),
            vec![],
        ),
        (
            "one license from 30 addresses in 10 minutes",
            Box::new(move || {
                (0..30)
                    .map(|i| ev(i * 20_000, &format!("203.0.113.{i}"), used("hwid-1", None)))
                    .collect()
            }),
            vec![AbuseKind::KeySharing; 3],
        ),
        (
            "a reset at every cooldown expiry, daily for a week",
            Box::new(move || {
                (0..7)
                    .map(|d| {
                        ev(
                            d * DAY + HOUR,
                            "192.0.2.1",
                            Seen::HwidReset {
                                license_id: "lic".into(),
                            },
                        )
                    })
                    .collect()
            }),
            vec![AbuseKind::HwidResetAbuse; 2],
        ),
        (
            "resets a month apart",
            Box::new(move || {
                (0..3)
                    .map(|m| {
                        ev(
                            m * 30 * DAY,
                            "192.0.2.1",
                            Seen::HwidReset {
                                license_id: "lic".into(),
                            },
                        )
                    })
                    .collect()
            }),
            vec![],
        ),
        (
            "seat refusals hourly (one a stale app) never reach 10 in an hour",
            Box::new(move || {
                (0..200)
                    .map(|h| {
                        ev(
                            h * HOUR,
                            "192.0.2.1",
                            Seen::SeatRefused {
                                license_id: "lic".into(),
                                hwid: Some("old".into()),
                                limit: SeatLimit::Sessions,
                            },
                        )
                    })
                    .collect()
            }),
            vec![],
        ),
        (
            "a farm hammering a full license",
            Box::new(move || {
                (0..25)
                    .map(|i| {
                        ev(
                            i * 1000,
                            "198.51.100.9",
                            Seen::SeatRefused {
                                license_id: "lic".into(),
                                hwid: Some(format!("farm-{i}")),
                                limit: SeatLimit::Activations,
                            },
                        )
                    })
                    .collect()
            }),
            vec![AbuseKind::SeatPressure; 2],
        ),
        (
            "one session from three addresses at once",
            Box::new(move || {
                ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| ev(i as i64 * 1000, ip, used("hwid-1", Some("sess-1"))))
                    .collect()
            }),
            vec![AbuseKind::SessionSharing],
        ),
        (
            "a laptop moving between two networks keeps its session",
            Box::new(move || {
                (0..100)
                    .map(|i| {
                        ev(
                            i * 10 * MIN,
                            if i % 2 == 0 {
                                "192.0.2.1"
                            } else {
                                "198.51.100.1"
                            },
                            used("hwid-1", Some("sess-1")),
                        )
                    })
                    .collect()
            }),
            vec![],
        ),
    ];
    let policy = AbusePolicy::default();
    for (name, script, expected) in cases {
        let mut d = Detector::new();
        let mut kinds = Vec::new();
        for (i, e) in script().into_iter().enumerate() {
            let at = e.at;
            kinds.extend(d.observe(e, &policy).into_iter().map(|f| f.kind));
            if i % 100 == 0 {
                d.sweep(at);
            }
        }
        assert_eq!(kinds, expected, "{name}");
    }
}

/// A webhook URL must not reach the server's own network (cloud metadata, a local Redis, SSH)
/// unless the operator allows it; a host name is checked again after resolution at delivery.
#[tokio::test]
async fn webhook_urls_to_internal_addresses_are_refused_unless_allowed() {
    let srv = TestServer::start().await;
    let f = fixture(&srv, "ssrf").await;
    let policy = format!("/api/projects/{}/abuse-policy", f.product_id);
    for (url, address) in [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://10.0.0.1:6379/", "10.0.0.1"),
        ("http://[::1]:22/", "::1"),
        ("http://127.0.0.1:3002/api/health", "127.0.0.1"),
        ("http://192.168.1.1/", "192.168.1.1"),
        ("http://[fd00::1]/", "fd00::1"),
    ] {
        let a = srv
            .call(
                Method::PATCH,
                &policy,
                Some(&f.admin),
                Some(json!({"webhookUrl": url})),
            )
            .await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", address);
        assert!(
            a.body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("--webhook-allow-private"),
            "says how to allow it: {}",
            a.body
        );
    }
    // Nothing was stored by the refusals.
    let a = srv.get(&policy, &f.admin).await;
    assert_eq!(a.body["data"]["webhookUrl"], Value::Null, "{}", a.body);
    // A public address is accepted.
    set_policy(&srv, &f, json!({"webhookUrl": "http://93.184.216.34/hook"})).await;

    // The operator may allow internal targets (a relay on the same host).
    let open = TestServer::start_with(|c| c.webhook_allow_private = true).await;
    let g = fixture(&open, "relay").await;
    set_policy(&open, &g, json!({"webhookUrl": "http://127.0.0.1:9/hook"})).await;
}
