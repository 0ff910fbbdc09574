//! Event webhooks against a real server and real receivers: every event type emitted by its
//! real trigger and verified with the Standard Webhooks library, product restriction and type
//! filters. Delivery mechanics are in `webhooks_delivery`, the admin API's reach and input in
//! `webhooks_admin`; the helpers here serve all three.

use std::time::Duration;

use crate::helpers::*;
use crate::webhook_receiver::{Receiver, verify_with_standard_webhooks};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

pub const ENDPOINTS: &str = "/api/webhooks/endpoints";

/// name, method, path, API key, body, expected status, expected code ("" for any).
pub type Case<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Option<Value>,
    u16,
    &'a str,
);

pub async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.webhook_retry_base = Duration::from_millis(50);
        // The receivers listen on 127.0.0.1.
        c.webhook_allow_private = true;
        c.maintenance_interval = Duration::from_millis(200);
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    })
    .await
}

/// Creates an endpoint; returns (id, secret).
pub async fn endpoint(srv: &TestServer, admin: &str, body: Value) -> (String, String) {
    let a = srv.post(ENDPOINTS, admin, body).await;
    assert_status(&a, 201);
    let data = &a.body["data"];
    let secret = str_field(data, "secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{}", a.body);
    (str_field(data, "id").to_owned(), secret)
}

pub async fn deliveries(srv: &TestServer, admin: &str, endpoint: &str) -> Vec<Value> {
    let a = srv
        .get(&format!("{ENDPOINTS}/{endpoint}/deliveries"), admin)
        .await;
    assert_status(&a, 200);
    a.body["data"]["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until a delivery of the endpoint satisfies `done`.
pub async fn wait_delivery(
    srv: &TestServer,
    admin: &str,
    endpoint: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list = deliveries(srv, admin, endpoint).await;
        if let Some(d) = list.iter().find(|d| done(d)) {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such delivery: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get_endpoint(srv: &TestServer, admin: &str, id: &str) -> Value {
    let a = srv.get(&format!("{ENDPOINTS}/{id}"), admin).await;
    assert_status(&a, 200);
    a.body["data"].clone()
}

pub async fn patch(srv: &TestServer, key: &str, path: &str, body: Value) -> Answer {
    srv.call(Method::PATCH, path, Some(key), Some(body)).await
}

/// Every event type, each from its real trigger, delivered signed: the Standard Webhooks
/// library verifies every delivery (and refuses them with another secret).
#[tokio::test]
async fn every_event_type_is_delivered_and_verifies_with_standard_webhooks() {
    let srv = server().await;
    let product = srv.create_product_with("default", "evt", |p| {
        p.heartbeat = TestServer::heartbeat_policy(1, 0, true);
    });
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let scoped = srv.create_api_key("default", Scope::FullAdmin, Some(&product.id));
    let rx = Receiver::http().await;
    let (_, secret) = endpoint(
        &srv,
        &admin,
        json!({"url": rx.url("/hooks"), "description": "all events"}),
    )
    .await;

    // Licenses: created, suspended, reinstated, renewed, revoked, expired.
    let license = srv.create_license(&admin, &product.id, json!({})).await;
    let key = str_field(&license, "key").to_owned();
    let id = str_field(&license, "id").to_owned();
    let created = rx.wait_type("license.created").await;
    assert_eq!(created.json()["data"]["license"]["key"], key.as_str());
    for status in ["SUSPENDED", "ACTIVE"] {
        let a = patch(
            &srv,
            &admin,
            &format!("/api/keys/{id}"),
            json!({"status": status}),
        )
        .await;
        assert_status(&a, 200);
    }
    rx.wait_type("license.suspended").await;
    rx.wait_type("license.reinstated").await;
    let a = srv
        .post(
            "/api/v1/license/renew",
            &admin,
            json!({"licenseKey": key, "validUntil": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_status(&a, 200);
    rx.wait_type("license.renewed").await;

    // Machines: activated, deactivated, culled (no heartbeat within 1 s).
    assert_status(&srv.activate(&admin, &key, "machine-one").await, 200);
    let activated = rx.wait_type("machine.activated").await;
    assert_eq!(
        activated.json()["data"]["machine"]["machineId"],
        "machine-one"
    );
    let a = srv
        .post(
            "/api/v1/license/deactivate",
            &admin,
            json!({"licenseKey": key, "machineId": "machine-one"}),
        )
        .await;
    assert_status(&a, 200);
    rx.wait_type("machine.deactivated").await;
    assert_status(&srv.activate(&admin, &key, "machine-two").await, 200);
    let culled = rx.wait_type("machine.culled").await;
    assert_eq!(culled.json()["data"]["machine"]["machineId"], "machine-two");
    // An HWID reset unbinds each machine: one machine.deactivated apiece, with its reason.
    assert_status(&srv.activate(&admin, &key, "machine-three").await, 200);
    let a = patch(
        &srv,
        &admin,
        &format!("/api/keys/{id}"),
        json!({"resetHwid": true}),
    )
    .await;
    assert_status(&a, 200);
    let reset = rx
        .wait("the HWID reset", |got| {
            got.iter()
                .any(|r| r.json()["data"]["reason"] == "HWID_RESET")
        })
        .await;
    let reset = reset
        .iter()
        .find(|r| r.json()["data"]["reason"] == "HWID_RESET")
        .expect("found");
    assert_eq!(reset.event_type(), "machine.deactivated");
    assert_eq!(
        reset.json()["data"]["machine"]["machineId"],
        "machine-three"
    );

    let a = srv
        .post("/api/v1/license/revoke", &admin, json!({"licenseKey": key}))
        .await;
    assert_status(&a, 200);
    rx.wait_type("license.revoked").await;
    let soon = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::seconds(1));
    srv.create_license(&admin, &product.id, json!({"validUntil": soon}))
        .await;
    let expired = rx.wait_type("license.expired").await;
    assert_eq!(expired.json()["data"]["license"]["status"], "EXPIRED");

    // Releases: published, yanked.
    let form = reqwest::multipart::Form::new()
        .text("version", "1.0.0")
        .part(
            "bundle",
            reqwest::multipart::Part::bytes(b"bundle".to_vec()).file_name("app.bin".to_owned()),
        );
    let up = TestServer::decode(
        srv.client
            .post(format!("{}/api/projects/{}/releases", srv.url, product.id))
            .header("X-API-Key", &admin)
            .multipart(form)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_status(&up, 201);
    let release = str_of(&up.body["data"]["release"]["id"]);
    for step in ["publish", "yank"] {
        let a = srv
            .post(
                &format!("/api/releases/{release}/{step}"),
                &admin,
                json!({}),
            )
            .await;
        assert_status(&a, 200);
    }
    let published = rx.wait_type("release.published").await;
    assert_eq!(published.json()["data"]["release"]["version"], "1.0.0");
    rx.wait_type("release.yanked").await;

    // Abuse: a key-guessing flag (three unknown keys with a threshold of three).
    let a = patch(
        &srv,
        &admin,
        &format!("/api/projects/{}/abuse-policy", product.id),
        json!({"keyGuessingPerIp": {"count": 3}}),
    )
    .await;
    assert_status(&a, 200);
    for n in 0..3 {
        send_from(
            &srv,
            Method::POST,
            "/api/v1/license/validate",
            Some(&scoped),
            "203.0.113.9",
            Some(json!({"licenseKey": format!("TT-AAAA-BBBB-CCCC-{n:04}"), "machineId": "machine-guess"})),
        )
        .await;
    }
    let flag = rx.wait_type("abuse.flag.created").await;
    assert_eq!(flag.json()["data"]["flag"]["kind"], "KEY_GUESSING");

    // Each delivery carries the Standard Webhooks headers and body, and verifies.
    let got = rx.received();
    for r in &got {
        assert!(
            r.header("webhook-id").starts_with("msg_"),
            "{:?}",
            r.headers
        );
        assert!(r.header("webhook-signature").starts_with("v1,"));
        let body = r.json();
        assert!(
            body["timestamp"].is_string() && body["data"].is_object(),
            "{body}"
        );
    }
    let verified = verify_with_standard_webhooks(&secret, &got).expect("all verify");
    for t in [
        "license.created",
        "license.renewed",
        "license.revoked",
        "license.suspended",
        "license.reinstated",
        "license.expired",
        "machine.activated",
        "machine.deactivated",
        "machine.culled",
        "release.published",
        "release.yanked",
        "abuse.flag.created",
    ] {
        assert!(
            verified.iter().any(|v| v == t),
            "{t} verified: {verified:?}"
        );
    }
    let forged = verify_with_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &got[..1]);
    assert!(forged.is_err(), "another secret must not verify");
}

/// An endpoint restricted to one product hears only that product; subscriptions filter types,
/// also with prefix wildcards.
#[tokio::test]
async fn product_restriction_and_event_type_filters() {
    let srv = server().await;
    let one = srv.create_product("default", "one").id;
    let two = srv.create_product("default", "two").id;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let rx = Receiver::http().await;
    endpoint(
        &srv,
        &admin,
        json!({"url": rx.url("/one-licenses"), "projectId": one, "eventTypes": ["license.*"]}),
    )
    .await;
    endpoint(
        &srv,
        &admin,
        json!({"url": rx.url("/machines"), "eventTypes": ["machine.activated"]}),
    )
    .await;
    let (_, _) = endpoint(
        &srv,
        &admin,
        json!({"url": rx.url("/off"), "enabled": false}),
    )
    .await;
    let l1 = srv.create_license(&admin, &one, json!({})).await;
    let l2 = srv.create_license(&admin, &two, json!({})).await;
    assert_status(
        &srv.activate(&admin, str_field(&l2, "key"), "machine-2")
            .await,
        200,
    );
    let got = rx.wait("two deliveries", |got| got.len() >= 2).await;
    // Let anything that should not come have its chance to.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got_now = rx.received();
    assert_eq!(
        got_now.len(),
        2,
        "{:?}",
        got_now
            .iter()
            .map(|r| (&r.path, r.event_type()))
            .collect::<Vec<_>>()
    );
    let by_path = |p: &str| got.iter().find(|r| r.path == p).expect(p).json();
    let licenses = by_path("/one-licenses");
    assert_eq!(licenses["type"], "license.created");
    assert_eq!(licenses["data"]["license"]["id"], l1["id"]);
    let machines = by_path("/machines");
    assert_eq!(machines["type"], "machine.activated");
    assert_eq!(machines["data"]["license"]["productId"], json!(two));
}

/// The key/HWID face binds machines too: a key's first validation on a HWID and another key's
/// first license-file checkout each send `machine.activated`, once; validating again on a bound
/// HWID sends nothing.
#[tokio::test]
async fn key_hwid_first_binds_send_machine_activated_once() {
    let srv = server().await;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let rx = Receiver::http().await;
    let (endpoint_id, _) = endpoint(
        &srv,
        &admin,
        json!({"url": rx.url("/machines"), "eventTypes": ["machine.activated"]}),
    )
    .await;
    let project = srv
        .post("/api/projects", &admin, json!({"name": "Bound game"}))
        .await;
    assert_status(&project, 201);
    let project = project.body["data"]["project"].clone();
    let secret = str_of(&project["secret"]);
    let made = srv
        .post(
            "/api/keys",
            &admin,
            json!({"plan": "LIFETIME", "count": 2, "projectId": project["id"]}),
        )
        .await;
    assert_status(&made, 201);
    let key = str_of(&made.body["data"]["keys"][0]["key"]);
    let other_key = str_of(&made.body["data"]["keys"][1]["key"]);
    let validate = |hwid: &'static str| {
        let (srv, key, secret) = (&srv, key.clone(), secret.clone());
        async move {
            send(
                srv,
                Method::POST,
                "/api/validate",
                Cred::None,
                Some(json!({"key": key, "hwid": hwid, "secret": secret})),
                &[],
            )
            .await
        }
    };
    let first = validate("kv-bind-one").await;
    assert_status(&first, 200);
    let got = rx.wait_type("machine.activated").await;
    assert_eq!(got.json()["data"]["machine"]["machineId"], "kv-bind-one");
    assert_status(&validate("kv-bind-one").await, 200);

    let file = send(
        &srv,
        Method::POST,
        "/api/license-file",
        Cred::None,
        Some(json!({"key": other_key, "hwid": "kv-bind-two", "secret": secret})),
        &[],
    )
    .await;
    assert_status(&file, 200);
    rx.wait("two machine.activated", |got| got.len() >= 2).await;
    // Nothing more arrives: the second validation of the bound HWID was no activation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let machines: Vec<String> = rx
        .received()
        .iter()
        .map(|r| str_of(&r.json()["data"]["machine"]["machineId"]))
        .collect();
    assert_eq!(
        machines,
        ["kv-bind-one", "kv-bind-two"],
        "one event per bind"
    );
    let listed = deliveries(&srv, &admin, &endpoint_id).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
}
