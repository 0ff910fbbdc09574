//! Regressions of the licensed app's use cases (`service::licensing`): signed answers stay
//! signed when no signing key is open yet, and a product-restricted API key reaches nothing of
//! another product on the machine-facing vendor operations.

use crate::helpers::*;
use base64::Engine;
use keyward::domain::api_keys::Scope;
use keyward::domain::products::Product;
use reqwest::Method;
use serde_json::{Value, json};

const VALIDATE: &str = "/api/v1/license/validate";
const DEACTIVATE: &str = "/api/v1/license/deactivate";
const HEARTBEAT: &str = "/api/v1/license/heartbeat";
const CLIENT_VALIDATE: &str = "/api/validate";

fn public_key(product: &Product) -> String {
    base64::engine::general_purpose::STANDARD.encode(&product.signing_public_key)
}

#[track_caller]
fn assert_signed(what: &str, a: &Answer, status: u16, product: &Product) {
    assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
    assert_eq!(
        a.header("X-Keyward-Product"),
        Some(product.id.as_str()),
        "{what}: names the signing product; body: {}",
        a.body
    );
    let signature = a
        .header("X-Signature")
        .unwrap_or_else(|| panic!("{what}: X-Signature header; body: {}", a.body));
    assert!(
        signature_verifies(&public_key(product), &a.raw, signature),
        "{what}: the signature verifies over the raw body"
    );
}

async fn client_validate(srv: &TestServer, body: Value) -> Answer {
    srv.call(Method::POST, CLIENT_VALIDATE, None, Some(body))
        .await
}

/// Every signed answer is signed even when it is the first request after a restart, when no
/// product key has been opened yet.
#[tokio::test]
async fn signed_answers_are_signed_on_the_first_request_after_a_restart() {
    let mut srv = TestServer::start().await;
    let product = srv.create_product("default", "signed");
    let admin = srv.create_api_key("default", Scope::CreateLicense, None);
    let app = srv.create_api_key("default", Scope::ValidateOnly, None);
    let license = srv
        .create_license(&admin, &product.id, json!({"maxActivations": 1}))
        .await;
    let key = license["key"].as_str().expect("key").to_owned();
    let machine = "machine-0001";

    srv.restart().await;
    let a = srv.activate(&app, &key, machine).await;
    assert_signed("activate", &a, 200, &product);

    srv.restart().await;
    let a = srv
        .post(
            VALIDATE,
            &app,
            json!({"licenseKey": key, "machineId": machine}),
        )
        .await;
    assert_signed("validate", &a, 200, &product);
    assert_eq!(a.body["code"], "VALID", "{}", a.body);

    srv.restart().await;
    let a = srv
        .post(HEARTBEAT, &app, json!({"key": key, "machineId": machine}))
        .await;
    assert_signed("heartbeat", &a, 200, &product);

    srv.restart().await;
    let a = srv
        .get(&format!("/api/v1/license/check/{key}?nonce=n-1"), &app)
        .await;
    assert_signed("check", &a, 200, &product);

    srv.restart().await;
    let a = client_validate(&srv, json!({"key": key, "hwid": machine})).await;
    assert_signed("/api/validate", &a, 200, &product);
    assert_eq!(a.body["data"]["valid"], true, "{}", a.body);

    srv.restart().await;
    let a = client_validate(&srv, json!({"key": key, "hwid": "machine-0002"})).await;
    assert_kv_error(&a, 403, "HWID_MISMATCH");
    assert_signed("/api/validate refusal", &a, 403, &product);
}

/// A FULL_ADMIN key restricted to product alpha (`keyward apikey create --scope FULL_ADMIN
/// --product alpha`) finds nothing of product beta: every machine-facing operation answers as
/// for a key that does not exist (404 LICENSE_NOT_FOUND; validate: 200 `NOT_FOUND`, unsigned),
/// and nothing changes.
#[tokio::test]
async fn a_product_restricted_key_reaches_nothing_of_another_product() {
    let srv = TestServer::start().await;
    let alpha = srv.create_product("default", "alpha");
    let beta = srv.create_product("default", "beta");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let restricted = srv.create_api_key("default", Scope::FullAdmin, Some(&alpha.id));
    let beta_key = srv.create_license(&admin, &beta.id, json!({})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let alpha_key = srv.create_license(&admin, &alpha.id, json!({})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let missing = "TT-NONE-NONE-NONE-NONE";
    let machine = "machine-0001";
    // Beta's machine is activated by an unrestricted key, so deactivate/heartbeat/validate
    // would find something if the restriction were not applied.
    let a = srv.activate(&admin, &beta_key, machine).await;
    assert_eq!(a.status, 200, "{}", a.body);

    for (name, key) in [
        ("another product's key", &beta_key),
        ("a missing key", &missing.to_owned()),
    ] {
        let a = srv.activate(&restricted, key, "machine-0002").await;
        a.assert_error(404, "LICENSE_NOT_FOUND");

        let a = srv
            .post(
                VALIDATE,
                &restricted,
                json!({"licenseKey": key, "machineId": machine}),
            )
            .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        assert_eq!(a.body["code"], "NOT_FOUND", "{name}: {}", a.body);
        assert_eq!(a.body["license"], Value::Null, "{name}: {}", a.body);
        assert_eq!(a.header("X-Keyward-Product"), None, "{name}");

        let a = srv
            .post(
                HEARTBEAT,
                &restricted,
                json!({"key": key, "machineId": machine}),
            )
            .await;
        a.assert_error(404, "LICENSE_NOT_FOUND");

        let a = srv
            .get(&format!("/api/v1/license/check/{key}"), &restricted)
            .await;
        a.assert_error(404, "LICENSE_NOT_FOUND");

        let a = srv
            .post(
                DEACTIVATE,
                &restricted,
                json!({"licenseKey": key, "machineId": machine}),
            )
            .await;
        a.assert_error(404, "LICENSE_NOT_FOUND");
    }
    let activations: i64 = srv
        .db()
        .query_row(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id
             WHERE l.license_key = ?1",
            [&beta_key],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(activations, 1, "beta's activation is untouched");

    // Its own product stays within reach.
    let a = srv.activate(&restricted, &alpha_key, machine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = srv
        .get(&format!("/api/v1/license/check/{alpha_key}"), &restricted)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// Unknown keys are audited on every face that knows whose they would be: `/api/v1` under the
/// API key's tenant, `/api/validate` and `/api/telegram` under the project their secret names
/// (they were not audited at all, so the dashboard's refusals undercounted them). Without a
/// secret nothing names a tenant, and nothing is recorded.
#[tokio::test]
async fn unknown_keys_are_audited_on_the_key_hwid_faces_too() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "audited");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let project = srv
        .get(&format!("/api/projects/{}", product.id), &admin)
        .await;
    let secret = project.body["data"]["project"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let refused = |srv: &TestServer| {
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate.refused'
               AND json_extract(detail, '$.code') = 'NOT_FOUND' AND product_id = ?1",
            [&product.id],
        )
    };
    for n in 0..3 {
        let a = client_validate(
            &srv,
            json!({"key": format!("NOPE-NOPE-NOPE-000{n}"), "hwid": "machine-0001", "secret": secret}),
        )
        .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    let a = srv
        .call(
            Method::POST,
            "/api/telegram",
            None,
            Some(
                json!({"action": "validate", "key": "NOPE-NOPE-NOPE-0009", "hwid": "machine-0001",
                        "secret": secret, "telegram_id": "42", "telegram_username": "ana"}),
            ),
        )
        .await;
    assert_eq!(a.status.as_u16(), 404, "{}", a.body);
    // Without a secret the key is searched everywhere: no tenant to record it in.
    let a = client_validate(
        &srv,
        json!({"key": "NOPE-NOPE-NOPE-0010", "hwid": "machine-0001"}),
    )
    .await;
    assert_kv_error(&a, 404, "NOT_FOUND");

    // The audit writer batches; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while refused(&srv) < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refused(&srv), 4);
    let by_bot = srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate.refused'
           AND actor = 'telegram:42:ana'",
        [],
    );
    assert_eq!(by_bot, 1);
    let stats = srv.get("/api/stats", &admin).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert!(
        stats.body.to_string().contains("NOT_FOUND"),
        "the dashboard's refusals count them: {}",
        stats.body
    );
}
