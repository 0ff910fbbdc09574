//! Webhook delivery mechanics: HTTPS to a receiver with a private CA (`--extra-ca-file`),
//! retries with backoff, disabling after failing, re-enabling, redelivery by hand, and private
//! targets refused without `--webhook-allow-private`.

use std::time::Duration;

use crate::helpers::*;
use crate::webhook_receiver::{Receiver, private_ca, verify_with_standard_webhooks};
use crate::webhooks::{
    ENDPOINTS, deliveries, endpoint, get_endpoint, patch, server, wait_delivery,
};
use keyward::domain::api_keys::Scope;
use serde_json::{Value, json};

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
    // Another workspace cannot redeliver it.
    srv.create_tenant("other");
    let theirs = srv.create_api_key("other", Scope::FullAdmin, None);
    let a = srv
        .post(
            &format!(
                "/api/webhooks/deliveries/{}/redeliver",
                str_field(&first, "id")
            ),
            &theirs,
            json!({}),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    assert_eq!(deliveries(&srv, &admin, &id).await.len(), 2);

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
