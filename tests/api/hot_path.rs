//! Issue 16 (validation at its cost floor): what was taken off the validation hot path must not
//! take the contract with it. Under a concurrent burst on both validate faces, every answer is
//! signed over exactly the bytes that were sent (by a key kept ready in memory, not re-derived
//! per answer), carries its nonce, and every validation still leaves its own audit row.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use keyward::domain::api_keys::Scope;

const VENDOR_VALIDATE: &str = "/api/v1/license/validate";
const KV_VALIDATE: &str = "/api/validate";
const BURST: usize = 120;

fn audit_rows(srv: &TestServer, action: &str) -> i64 {
    srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action = ?1",
        [action],
    )
}

/// Waits until `action` has `expected` audit rows (they are committed with the writer's next
/// batch, after the answer), then checks that no more arrive.
async fn assert_audited(srv: &TestServer, action: &str, expected: i64) {
    for _ in 0..250 {
        if audit_rows(srv, action) >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        audit_rows(srv, action),
        expected,
        "one `{action}` audit row per validation"
    );
}

#[track_caller]
fn assert_signed_over_sent_bytes(a: &Answer, public_key: &str, what: &str) {
    assert_status(a, 200);
    let signature = a
        .header("x-signature")
        .unwrap_or_else(|| panic!("{what}: signed; body {}", a.body));
    assert!(
        signature_verifies(public_key, &a.raw, signature),
        "{what}: the signature is over the exact bytes sent: {}",
        String::from_utf8_lossy(&a.raw)
    );
    let mut tampered = a.raw.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    assert!(
        !signature_verifies(public_key, &tampered, signature),
        "{what}: and over nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_vendor_validations_is_signed_over_the_sent_bytes_and_audited_once_each() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "burst-app");
    let public_key = keyward::crypto::base64(&product.signing_public_key);
    let seller = srv.create_api_key("default", Scope::CreateLicense, None);
    let app = srv.create_api_key("default", Scope::ValidateOnly, None);
    let mut licenses = Vec::new();
    for i in 0..8 {
        let key = str_of(&srv.create_license(&seller, &product.id, json!({})).await["key"]);
        let machine = format!("burst-machine-{i:02}");
        assert_status(&srv.activate(&app, &key, &machine).await, 200);
        licenses.push((key, machine));
    }
    let before = audit_rows(&srv, "license.validate");

    let answers = join_all((0..BURST).map(|i| {
        let (key, machine) = &licenses[i % licenses.len()];
        let body =
            json!({"licenseKey": key, "machineId": machine, "nonce": format!("burst-{i:04}")});
        srv.post(VENDOR_VALIDATE, &app, body)
    }))
    .await;
    for (i, a) in answers.iter().enumerate() {
        let what = format!("vendor validation {i}");
        assert_signed_over_sent_bytes(a, &public_key, &what);
        assert_eq!(a.body["valid"], true, "{what}: {}", a.body);
        assert_eq!(
            a.body["nonce"],
            format!("burst-{i:04}"),
            "{what}: its nonce"
        );
        assert_eq!(
            a.header("x-keyward-product"),
            Some(product.id.as_str()),
            "{what}"
        );
    }
    assert_audited(&srv, "license.validate", before + BURST as i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_key_hwid_validations_is_signed_over_the_sent_bytes_and_audited_once_each() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await.token;
    let created = send(
        &srv,
        Method::POST,
        "/api/projects",
        Cred::Bearer(&admin),
        Some(json!({"name": "Burst game"})),
        &[],
    )
    .await;
    assert_status(&created, 201);
    let project = created.body["data"]["project"].clone();
    let public_key = str_of(&project["publicKey"]);
    let made = send(
        &srv,
        Method::POST,
        "/api/keys",
        Cred::Bearer(&admin),
        Some(json!({"plan": "LIFETIME", "count": 8, "projectId": project["id"]})),
        &[],
    )
    .await;
    assert_status(&made, 201);
    let keys: Vec<String> = made.body["data"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| str_of(&k["key"]))
        .collect();
    // A running app: its first validation binds the HWID and opens a session it then refreshes.
    let mut apps = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let hwid = format!("burst-hwid-{i:02}");
        let first = send(
            &srv,
            Method::POST,
            KV_VALIDATE,
            Cred::None,
            Some(json!({"key": key, "hwid": hwid, "secret": project["secret"]})),
            &[],
        )
        .await;
        assert_signed_over_sent_bytes(&first, &public_key, "first validation");
        apps.push((key.clone(), hwid, str_of(&first.body["data"]["sessionId"])));
    }
    let before = audit_rows(&srv, "key.validate");

    let answers = join_all((0..BURST).map(|i| {
        let (key, hwid, session) = &apps[i % apps.len()];
        let body: Value = json!({"key": key, "hwid": hwid, "secret": project["secret"],
                                 "sessionId": session, "clientNonce": format!("burst-{i:04}")});
        send(&srv, Method::POST, KV_VALIDATE, Cred::None, Some(body), &[])
    }))
    .await;
    for (i, a) in answers.iter().enumerate() {
        let what = format!("key/HWID validation {i}");
        assert_signed_over_sent_bytes(a, &public_key, &what);
        assert_eq!(a.body["data"]["valid"], true, "{what}: {}", a.body);
        assert_eq!(
            a.body["data"]["clientNonce"],
            format!("burst-{i:04}"),
            "{what}: its client nonce, inside the signed bytes"
        );
    }
    assert_audited(&srv, "key.validate", before + BURST as i64).await;
}
