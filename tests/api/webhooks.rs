//! Event webhooks against a real server and real receivers: every event type emitted by its
//! real trigger and verified with the Standard Webhooks library, HTTPS to a receiver with a
//! private CA (`--extra-ca-file`), retries with backoff, redelivery, disabling after failing,
//! product restriction and type filters, private targets, and the admin API's reach and input.

use std::time::Duration;

use crate::helpers::*;
use crate::webhook_receiver::{Receiver, private_ca, verify_with_standard_webhooks};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

const ENDPOINTS: &str = "/api/webhooks/endpoints";

/// name, method, path, API key, body, expected status, expected code ("" for any).
type Case<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Option<Value>,
    u16,
    &'a str,
);

async fn server() -> TestServer {
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
async fn endpoint(srv: &TestServer, admin: &str, body: Value) -> (String, String) {
    let a = srv.post(ENDPOINTS, admin, body).await;
    assert_status(&a, 201);
    let data = &a.body["data"];
    let secret = str_field(data, "secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{}", a.body);
    (str_field(data, "id").to_owned(), secret)
}

async fn deliveries(srv: &TestServer, admin: &str, endpoint: &str) -> Vec<Value> {
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
async fn wait_delivery(
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

async fn get_endpoint(srv: &TestServer, admin: &str, id: &str) -> Value {
    let a = srv.get(&format!("{ENDPOINTS}/{id}"), admin).await;
    assert_status(&a, 200);
    a.body["data"].clone()
}

async fn patch(srv: &TestServer, key: &str, path: &str, body: Value) -> Answer {
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

/// HTTPS to a receiver whose certificate comes from a private CA: refused by default (the CA
/// is not trusted), delivered once the CA is given with `--extra-ca-file`.
#[tokio::test]
async fn https_receivers_with_a_private_ca_need_the_extra_ca_file() {
    let ca = private_ca();
    let rx = Receiver::https(ca.server.clone()).await;

    let plain = server().await;
    let admin = plain.create_api_key("default", Scope::FullAdmin, None);
    let (id, _) = endpoint(&plain, &admin, json!({"url": rx.url("/tls")})).await;
    let a = plain
        .post(&format!("{ENDPOINTS}/{id}/test"), &admin, json!({}))
        .await;
    assert_status(&a, 202);
    let failed = wait_delivery(&plain, &admin, &id, |d| d["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(failed["status"], "PENDING", "{failed}");
    let why = failed["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("TLS") || why.contains("certificate"), "{why}");
    assert!(rx.received().is_empty());

    let dir = tempfile::tempdir().expect("tmp");
    let ca_file = dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("write CA");
    let trusting = TestServer::start_with(|c| {
        c.webhook_allow_private = true;
        c.extra_ca_file = Some(ca_file.clone());
    })
    .await;
    let admin = trusting.create_api_key("default", Scope::FullAdmin, None);
    let (id, secret) = endpoint(&trusting, &admin, json!({"url": rx.url("/tls")})).await;
    let a = trusting
        .post(&format!("{ENDPOINTS}/{id}/test"), &admin, json!({}))
        .await;
    assert_status(&a, 202);
    let got = rx.wait_type("webhook.test").await;
    assert_eq!(got.path, "/tls");
    assert_eq!(
        verify_with_standard_webhooks(&secret, &[got]).expect("verifies"),
        vec!["webhook.test"]
    );
    let done = wait_delivery(&trusting, &admin, &id, |d| d["status"] == "SUCCEEDED").await;
    assert_eq!(done["lastStatusCode"], 204);

    // A file that holds no certificate stops the server at start.
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello").expect("write");
    let mut config = keyward::Config::for_data_dir(dir.path().join("data"));
    config.extra_ca_file = Some(bad);
    let refused = keyward::start(config).await;
    assert!(
        refused.is_err(),
        "a bad --extra-ca-file is refused at start"
    );
}

/// A receiver answering 500 gets the delivery again with growing gaps; an endpoint failing for
/// longer than `--webhook-disable-after` is disabled, flagged and audited; re-enabling clears
/// the flag and lets the pending delivery through; a delivery can be redelivered by hand.
#[tokio::test]
async fn failing_endpoints_are_retried_with_backoff_then_disabled() {
    let srv = TestServer::start_with(|c| {
        c.webhook_retry_base = Duration::from_millis(100);
        c.webhook_allow_private = true;
        c.webhook_disable_after = Duration::from_millis(1_200);
    })
    .await;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let rx = Receiver::http().await;
    rx.answer(500);
    let (id, secret) = endpoint(&srv, &admin, json!({"url": rx.url("/failing")})).await;
    let a = srv
        .post(&format!("{ENDPOINTS}/{id}/test"), &admin, json!({}))
        .await;
    assert_status(&a, 202);
    assert_eq!(a.body["data"]["status"], "PENDING");

    let got = rx.wait("four attempts", |got| got.len() >= 4).await;
    // The same event each time (one webhook-id), at growing intervals (100, 200, 400 ms ±20 %).
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == got[0].header("webhook-id"))
    );
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[2] > gaps[0], "backoff grows: {gaps:?}");
    assert!(gaps[0] >= Duration::from_millis(70), "{gaps:?}");

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let disabled = loop {
        let e = get_endpoint(&srv, &admin, &id).await;
        if e["enabled"] == false {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "never disabled: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(disabled["disabledForFailures"], true, "{disabled}");
    assert!(
        disabled["disabledReason"]
            .as_str()
            .unwrap_or("")
            .contains("500")
    );
    let d = deliveries(&srv, &admin, &id).await;
    assert_eq!(d[0]["lastStatusCode"], 500);
    assert_eq!(d[0]["lastResponse"], "receiver answered 500");
    assert!(d[0]["nextAttemptAt"].is_string());
    let logged = srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'webhook.endpoint.disable'",
        [],
    );
    assert_eq!(logged, 1);
    // Disabled: nothing more is sent, and a test or redelivery is refused.
    let before = rx.received().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.received().len(), before);
    let a = srv
        .post(&format!("{ENDPOINTS}/{id}/test"), &admin, json!({}))
        .await;
    assert_kv_error(&a, 409, "CONFLICT");

    // Re-enabled: the flag clears and the pending delivery goes through.
    rx.answer(200);
    let a = patch(
        &srv,
        &admin,
        &format!("{ENDPOINTS}/{id}"),
        json!({"enabled": true}),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["disabledForFailures"], false);
    assert_eq!(a.body["data"]["disabledReason"], Value::Null);
    let first = wait_delivery(&srv, &admin, &id, |d| d["status"] == "SUCCEEDED").await;
    assert_eq!(first["lastStatusCode"], 200);

    // Redelivered by hand: a new delivery of the same event (same webhook-id).
    let a = srv
        .post(
            &format!(
                "/api/webhooks/deliveries/{}/redeliver",
                str_field(&first, "id")
            ),
            &admin,
            json!({}),
        )
        .await;
    assert_status(&a, 202);
    assert_eq!(a.body["data"]["eventId"], first["eventId"]);
    assert_ne!(a.body["data"]["id"], first["id"]);
    let n = rx.received().len();
    let got = rx.wait("the redelivery", |got| got.len() > n).await;
    let last = got.last().expect("one");
    assert_eq!(last.header("webhook-id"), str_field(&first, "eventId"));
    assert!(verify_with_standard_webhooks(&secret, std::slice::from_ref(last)).is_ok());
    let all = deliveries(&srv, &admin, &id).await;
    assert_eq!(all.len(), 2);

    // Filtered by status.
    let a = srv
        .get(
            &format!("{ENDPOINTS}/{id}/deliveries?status=SUCCEEDED"),
            &admin,
        )
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["pagination"]["total"], 2);
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

/// Without `--webhook-allow-private`, an endpoint naming an internal address is refused, and a
/// host name resolving inside fails at delivery.
#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let srv = TestServer::start().await;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    for url in [
        "http://127.0.0.1:9/x",
        "https://10.0.0.1/x",
        "http://169.254.169.254/latest",
        "https://[::1]/x",
    ] {
        let a = srv.post(ENDPOINTS, &admin, json!({"url": url})).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "--webhook-allow-private");
    }
    let rx = Receiver::http().await;
    let port = rx.base.rsplit(':').next().unwrap_or_default().to_owned();
    let (id, _) = endpoint(
        &srv,
        &admin,
        json!({"url": format!("http://localhost:{port}/inside")}),
    )
    .await;
    let a = srv
        .post(&format!("{ENDPOINTS}/{id}/test"), &admin, json!({}))
        .await;
    assert_status(&a, 202);
    let d = wait_delivery(&srv, &admin, &id, |d| d["attempts"].as_u64() >= Some(1)).await;
    assert!(
        d["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{d}"
    );
    assert!(rx.received().is_empty());
}

/// Reach (credentials, other tenants, product-restricted keys), the secret shown once and
/// rotated, and bad input: each refused with the key/HWID envelope, changing nothing.
#[tokio::test]
async fn admin_api_reach_secrets_and_bad_input() {
    let srv = server().await;
    srv.create_tenant("other");
    let one = srv.create_product("default", "one").id;
    let two = srv.create_product("default", "two").id;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let one_admin = srv.create_api_key("default", Scope::FullAdmin, Some(&one));
    let two_admin = srv.create_api_key("default", Scope::FullAdmin, Some(&two));
    let read_only = srv.create_api_key("default", Scope::ReadOnly, None);
    let stranger = srv.create_api_key("other", Scope::FullAdmin, None);
    let (wide, secret) = endpoint(
        &srv,
        &admin,
        json!({"url": "https://hooks.example.com/all"}),
    )
    .await;
    let (of_one, _) = endpoint(
        &srv,
        &one_admin,
        json!({"url": "https://hooks.example.com/one", "eventTypes": ["license.*", "payment.*"]}),
    )
    .await;
    let e = get_endpoint(&srv, &admin, &of_one).await;
    assert_eq!(
        e["projectId"],
        json!(one),
        "a restricted key's endpoint is its product's"
    );
    assert!(e.get("secret").is_none(), "the secret is shown once");

    // Rotation answers a new secret, once.
    let a = patch(
        &srv,
        &admin,
        &format!("{ENDPOINTS}/{wide}"),
        json!({"rotateSecret": true, "description": "rotated"}),
    )
    .await;
    assert_status(&a, 200);
    let rotated = str_field(&a.body["data"], "secret");
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert_eq!(a.body["data"]["description"], "rotated");

    let wide_path = format!("{ENDPOINTS}/{wide}");
    let one_path = format!("{ENDPOINTS}/{of_one}");
    let cases: Vec<Case> = vec![
        (
            "no credential",
            Method::GET,
            ENDPOINTS.into(),
            None,
            None,
            401,
            "UNAUTHORIZED",
        ),
        (
            "read-only key",
            Method::GET,
            ENDPOINTS.into(),
            Some(&read_only),
            None,
            403,
            "",
        ),
        (
            "other tenant",
            Method::GET,
            wide_path.clone(),
            Some(&stranger),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other tenant patch",
            Method::PATCH,
            one_path.clone(),
            Some(&stranger),
            Some(json!({"enabled": false})),
            404,
            "NOT_FOUND",
        ),
        (
            "other product",
            Method::GET,
            one_path.clone(),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "tenant-wide from a restricted key",
            Method::GET,
            wide_path.clone(),
            Some(&one_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other product's deliveries",
            Method::GET,
            format!("{one_path}/deliveries"),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other product delete",
            Method::DELETE,
            one_path.clone(),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "create for another product",
            Method::POST,
            ENDPOINTS.into(),
            Some(&two_admin),
            Some(json!({"url": "https://h.example.com/", "projectId": one})),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown endpoint",
            Method::GET,
            format!("{ENDPOINTS}/whep_nope"),
            Some(&admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "unknown delivery",
            Method::POST,
            "/api/webhooks/deliveries/dlv_nope/redeliver".into(),
            Some(&admin),
            Some(json!({})),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown project",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "projectId": "prod_nope"})),
            404,
            "NOT_FOUND",
        ),
        (
            "missing url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"description": "x"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "url of a wrong type",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": 42})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "not http",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "ftp://h.example.com/"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "credentials in the url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://u:p@h.example.com/"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "oversize url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": format!("https://h.example.com/{}", "a".repeat(2100))})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "oversize description",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "description": "d".repeat(501)})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "unknown event type",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": ["license.nope"]})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "event types not a list",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": "license.*"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "too many event types",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": vec!["*"; 33]})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "enabled of a wrong type",
            Method::PATCH,
            wide_path.clone(),
            Some(&admin),
            Some(json!({"enabled": "yes"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad patch url",
            Method::PATCH,
            wide_path.clone(),
            Some(&admin),
            Some(json!({"url": "nope"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad status filter",
            Method::GET,
            format!("{wide_path}/deliveries?status=LOST"),
            Some(&admin),
            None,
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad limit",
            Method::GET,
            format!("{ENDPOINTS}?limit=0"),
            Some(&admin),
            None,
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, method, path, key, body, status, code) in cases {
        let a = srv.call(method, &path, key, body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_eq!(a.body["success"], false, "{name}: {}", a.body);
        if !code.is_empty() {
            assert_eq!(a.body["code"], code, "{name}: {}", a.body);
        }
    }
    let a = srv
        .call_raw(
            Method::POST,
            ENDPOINTS,
            Some(&admin),
            "application/json",
            b"{\"url\":".to_vec(),
        )
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");

    // Nothing above changed anything.
    let e = get_endpoint(&srv, &admin, &of_one).await;
    assert_eq!(e["enabled"], true);
    assert_eq!(e["eventTypes"], json!(["license.*", "payment.*"]));
    let a = srv.get(ENDPOINTS, &admin).await;
    assert_eq!(a.body["data"]["pagination"]["total"], 2, "{}", a.body);
    // A restricted key lists only its product's endpoints.
    let a = srv.get(ENDPOINTS, &one_admin).await;
    let listed: Vec<&str> = a.body["data"]["endpoints"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, vec![of_one.as_str()]);

    // An operator's session works too, and deletes.
    let op = setup_admin(&srv).await;
    let a = send(
        &srv,
        Method::DELETE,
        &one_path,
        Cred::Bearer(&op.token),
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    let a = srv.get(&one_path, &admin).await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let logged = srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'webhook.endpoint.%'",
        [],
    );
    assert_eq!(logged, 4, "two creations, one update, one deletion");
}
