//! Air-gapped activation: an app without network shows an activation request; the vendor
//! (`POST /api/keys/activate-offline`) or the user (`POST /api/portal/license-file/activate`)
//! posts it, the machine is activated under the usual seat rules, and the answer is the
//! machine file the app loads, read back here with `domain::license_files::decode`. The portal's
//! `license_file` block also hands out the bound machine's file (`POST /api/portal/license-file`).

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use keyward::domain::license_files::{self, ActivationRequest, FileKind};
use keyward::domain::products::Product;
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN_PATH: &str = "/api/keys/activate-offline";
const PORTAL_ACTIVATE: &str = "/api/portal/license-file/activate";
const PORTAL_FILE: &str = "/api/portal/license-file";

struct Fixture {
    srv: TestServer,
    product: Product,
    admin: String,
}

async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
    let product = srv.create_product_with("default", "studio", |p| {
        p.entitlements = vec!["OFFLINE".into()];
        // Keys of the admin API are HWID locked (one machine) on such a project.
        p.default_max_activations = 1;
    });
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    Fixture {
        srv,
        product,
        admin,
    }
}

/// The armoured request an app shows.
fn request(key: &str, fingerprint: &str, name: Option<&str>) -> String {
    ActivationRequest {
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        name: name.map(str::to_owned),
    }
    .armoured()
}

/// Bare base64 of `json`, as `printf … | base64 -w0` makes it.
fn bare(json: &str) -> String {
    keyward::crypto::base64(json.as_bytes())
}

impl Fixture {
    /// A HWID-locked MONTHLY key of the product, made in the admin API: (id, key).
    async fn key(&self) -> (String, String) {
        let a = self
            .srv
            .post(
                "/api/keys",
                &self.admin,
                json!({"plan": "MONTHLY", "projectId": self.product.id}),
            )
            .await;
        assert_status(&a, 201);
        let k = &a.body["data"]["keys"][0];
        (
            str_field(k, "id").to_owned(),
            str_field(k, "key").to_owned(),
        )
    }

    async fn admin_activate(&self, api_key: &str, body: Value) -> Answer {
        send(
            &self.srv,
            Method::POST,
            ADMIN_PATH,
            Cred::ApiKey(api_key),
            Some(body),
            &[],
        )
        .await
    }

    fn activations(&self, key: &str) -> i64 {
        self.srv.count(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id \
             WHERE l.license_key = ?1",
            [key],
        )
    }

    fn offline_events(&self, key: &str) -> i64 {
        self.srv.count(
            "SELECT COUNT(*) FROM audit_events e JOIN licenses l ON l.id = e.license_id \
             WHERE l.license_key = ?1 AND e.action = 'license.activate.offline'",
            [key],
        )
    }

    /// Asserts `a` is a machine file for `fingerprint` on `key`, signed by the product and
    /// encrypted for that key and fingerprint.
    #[track_caller]
    fn assert_machine_file(&self, a: &Answer, key: &str, fingerprint: &str) {
        assert_status(a, 200);
        let data = &a.body["data"];
        assert_eq!(data["fingerprint"], fingerprint, "{}", a.body);
        assert!(str_field(data, "fileName").ends_with(".lic"), "{}", a.body);
        let public: [u8; 32] = self
            .product
            .signing_public_key
            .as_slice()
            .try_into()
            .expect("32-byte key");
        let file_key = license_files::file_key(key, Some(fingerprint));
        let decoded =
            license_files::decode(str_field(data, "certificate"), &public, Some(&file_key))
                .expect("the machine file verifies and decrypts");
        assert_eq!(decoded.kind, FileKind::Machine);
        assert_eq!(decoded.alg, license_files::ALG_ENCRYPTED);
        assert_eq!(decoded.payload["data"]["attributes"]["key"], key);
        let machine = decoded.payload["included"]
            .as_array()
            .and_then(|i| i.iter().find(|r| r["type"] == "machines"))
            .expect("the machine in `included`");
        assert_eq!(machine["attributes"]["fingerprint"], fingerprint);
    }
}

#[tokio::test]
async fn the_vendor_activates_an_air_gapped_machine_and_gets_its_machine_file() {
    let f = fixture().await;
    let (_, key) = f.key().await;
    let a = f
        .admin_activate(
            &f.admin,
            json!({"request": request(&key, "lab-pc-01", Some("Lab PC"))}),
        )
        .await;
    f.assert_machine_file(&a, &key, "lab-pc-01");
    assert_eq!(a.body["data"]["newActivation"], true);
    assert_eq!(a.body["data"]["machineName"], "Lab PC");
    assert_eq!(a.body["data"]["ttl"], 2_592_000, "the default lifetime");
    assert_eq!(f.activations(&key), 1);
    // Carried again: the same machine, a new file, no second seat.
    let bare_request = bare(&format!(
        r#"{{"v":1,"key":"{}","fingerprint":"lab-pc-01","name":"Lab PC"}}"#,
        key.to_lowercase()
    ));
    let again = f
        .admin_activate(&f.admin, json!({"request": bare_request, "ttl": 3600}))
        .await;
    f.assert_machine_file(&again, &key, "lab-pc-01");
    assert_eq!(again.body["data"]["newActivation"], false);
    assert_eq!(again.body["data"]["ttl"], 3600);
    assert_eq!(f.activations(&key), 1);
    assert_eq!(f.offline_events(&key), 2);
    // The key is HWID locked: another machine is refused, and not bound.
    let other = f
        .admin_activate(
            &f.admin,
            json!({"request": request(&key, "lab-pc-02", None)}),
        )
        .await;
    assert_kv_error(&other, 403, "HWID_MISMATCH");
    assert_eq!(f.activations(&key), 1);
    // Refusals reach the trail through the writer's batches: wait for this one.
    let mut refused = 0;
    for _ in 0..50 {
        refused = f.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.activate.refused' \
             AND machine_id = 'lab-pc-02' AND json_extract(detail, '$.offline') = 1",
            [],
        );
        if refused > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refused, 1, "the refusal is audited as offline");
}

#[tokio::test]
async fn a_vendor_license_takes_machines_up_to_its_activation_limit() {
    let f = fixture().await;
    let creator = f.srv.create_api_key("default", Scope::CreateLicense, None);
    let license = f
        .srv
        .create_license(&creator, &f.product.id, json!({"maxActivations": 2}))
        .await;
    let key = str_field(&license, "key").to_owned();
    for fp in ["machine-aaaa", "machine-bbbb"] {
        let a = f
            .admin_activate(&f.admin, json!({"request": request(&key, fp, None)}))
            .await;
        f.assert_machine_file(&a, &key, fp);
    }
    // An online activation sees the offline ones: the seats are the same.
    let online = f.srv.activate(&creator, &key, "machine-cccc").await;
    online.assert_error(400, "ACTIVATION_LIMIT_REACHED");
    let third = f
        .admin_activate(
            &f.admin,
            json!({"request": request(&key, "machine-cccc", None)}),
        )
        .await;
    assert_kv_error(&third, 403, "HWID_MISMATCH");
    assert_eq!(f.activations(&key), 2);
}

#[tokio::test]
async fn unusable_keys_are_refused_with_their_codes_and_bind_nothing() {
    let f = fixture().await;
    let cases: [(&str, &str); 4] = [
        ("suspended", "KEY_SUSPENDED"),
        ("banned", "KEY_BANNED"),
        ("revoked", "KEY_REVOKED"),
        ("expired", "KEY_EXPIRED"),
    ];
    for (name, code) in cases {
        let (id, key) = f.key().await;
        let path = format!("/api/keys/{id}");
        let changed = match name {
            "suspended" => {
                f.srv
                    .call(
                        Method::PATCH,
                        &path,
                        Some(&f.admin),
                        Some(json!({"status": "SUSPENDED"})),
                    )
                    .await
            }
            "banned" => {
                f.srv
                    .call(
                        Method::PATCH,
                        &path,
                        Some(&f.admin),
                        Some(json!({"status": "BANNED"})),
                    )
                    .await
            }
            "revoked" => {
                f.srv
                    .call(Method::DELETE, &path, Some(&f.admin), None)
                    .await
            }
            _ => {
                f.srv
                    .db()
                    .execute(
                        "UPDATE licenses SET valid_until = ?1 WHERE id = ?2",
                        rusqlite::params![now_ms() - 60_000, id],
                    )
                    .expect("expire the key");
                continue_with_ok()
            }
        };
        assert_status(&changed, 200);
        let a = f
            .admin_activate(&f.admin, json!({"request": request(&key, "fp-x", None)}))
            .await;
        assert_kv_error(&a, 403, code);
        assert_eq!(f.activations(&key), 0, "{name}: nothing bound");
    }
}

/// A stand-in answer for a change made in the database directly.
fn continue_with_ok() -> Answer {
    Answer {
        status: reqwest::StatusCode::OK,
        headers: Default::default(),
        raw: Vec::new(),
        body: Value::Null,
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_precisely_and_change_nothing() {
    let f = fixture().await;
    let (_, key) = f.key().await;
    let long_fp = "f".repeat(256);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "not base64",
            json!({"request": "this is not base64!"}),
            "not base64",
        ),
        (
            "not JSON",
            json!({"request": bare("hello there")}),
            "not a JSON object",
        ),
        (
            "wrong version",
            json!({"request": bare(&format!(r#"{{"v":2,"key":"{key}","fingerprint":"fp"}}"#))}),
            "unsupported version",
        ),
        (
            "no version",
            json!({"request": bare(&format!(r#"{{"key":"{key}","fingerprint":"fp"}}"#))}),
            "`v` is missing",
        ),
        (
            "no key",
            json!({"request": bare(r#"{"v":1,"fingerprint":"fp"}"#)}),
            "`key` is missing",
        ),
        (
            "no fingerprint",
            json!({"request": bare(&format!(r#"{{"v":1,"key":"{key}"}}"#))}),
            "`fingerprint` is missing",
        ),
        (
            "fingerprint not a string",
            json!({"request": bare(&format!(r#"{{"v":1,"key":"{key}","fingerprint":42}}"#))}),
            "must be a string",
        ),
        (
            "oversize fingerprint",
            json!({"request": bare(&format!(r#"{{"v":1,"key":"{key}","fingerprint":"{long_fp}"}}"#))}),
            "at most 255",
        ),
        (
            "armour without its end",
            json!({"request": "-----BEGIN ACTIVATION REQUEST-----\nAAAA"}),
            "-----END ACTIVATION REQUEST-----",
        ),
        (
            "oversize request",
            json!({"request": "A".repeat(5000)}),
            "request",
        ),
        ("empty request", json!({"request": "  "}), "empty"),
        ("request missing", json!({}), "field `request` is required"),
        (
            "request a number",
            json!({"request": 12}),
            "expected a string",
        ),
        (
            "ttl out of range",
            json!({"request": request(&key, "fp-1", None), "ttl": 10}),
            "ttl",
        ),
    ];
    for (name, body, needle) in cases {
        let a = f.admin_activate(&f.admin, body).await;
        assert_eq!(a.status.as_u16(), 400, "{name}: {}", a.body);
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", needle);
    }
    let raw = f
        .srv
        .call_raw(
            Method::POST,
            ADMIN_PATH,
            Some(&f.admin),
            "application/json",
            b"{\"request\": ".to_vec(),
        )
        .await;
    assert_kv_error(&raw, 400, "VALIDATION_ERROR");
    assert_eq!(f.activations(&key), 0, "no request activated anything");
}

#[tokio::test]
async fn keys_out_of_the_callers_reach_are_not_found() {
    let f = fixture().await;
    let (_, key) = f.key().await;
    f.srv.create_tenant("rival");
    let rival = f.srv.create_api_key("rival", Scope::FullAdmin, None);
    let other_product = f.srv.create_product("default", "other");
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&other_product.id));
    let body = json!({"request": request(&key, "fp-1", None)});
    assert_kv_error(
        &f.admin_activate(&rival, body.clone()).await,
        404,
        "NOT_FOUND",
    );
    assert_kv_error(
        &f.admin_activate(&restricted, body.clone()).await,
        404,
        "NOT_FOUND",
    );
    let unknown = json!({"request": request("TT-NOPE-NOPE-NOPE-NOPE", "fp-1", None)});
    assert_kv_error(&f.admin_activate(&f.admin, unknown).await, 404, "NOT_FOUND");
    let anonymous = send(
        &f.srv,
        Method::POST,
        ADMIN_PATH,
        Cred::None,
        Some(body),
        &[],
    )
    .await;
    assert_kv_error(&anonymous, 401, "UNAUTHORIZED");
    let weak = f.srv.create_api_key("default", Scope::ReadOnly, None);
    let weak_answer = f
        .admin_activate(&weak, json!({"request": request(&key, "fp-1", None)}))
        .await;
    assert!(
        matches!(weak_answer.status.as_u16(), 401 | 403),
        "{}",
        weak_answer.body
    );
    assert_eq!(f.activations(&key), 0);
}

// ---- the portal's license_file block ---------------------------------------------------

impl Fixture {
    async fn portal_blocks(&self, blocks: Value) {
        let a = self
            .srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{}", self.product.id),
                Some(&self.admin),
                Some(json!({"portalSettings": {"blocks": blocks}})),
            )
            .await;
        assert_status(&a, 200);
    }

    /// A portal user with `key` linked: its token.
    async fn portal_user(&self, name: &str, key: Option<&str>) -> String {
        let a = send(
            &self.srv,
            Method::POST,
            "/api/portal/register",
            Cred::None,
            Some(json!({"username": name, "password": "correct horse", "projectId": self.product.id})),
            &[],
        )
        .await;
        assert_status(&a, 201);
        let token = str_field(&a.body["data"], "token").to_owned();
        if let Some(key) = key {
            let linked = send(
                &self.srv,
                Method::POST,
                "/api/portal/activate",
                Cred::Bearer(&token),
                Some(json!({"key": key})),
                &[],
            )
            .await;
            assert_status(&linked, 200);
        }
        token
    }

    async fn portal(&self, path: &str, token: &str, body: Value) -> Answer {
        send(
            &self.srv,
            Method::POST,
            path,
            Cred::Bearer(token),
            Some(body),
            &[],
        )
        .await
    }
}

#[tokio::test]
async fn a_portal_user_activates_a_machine_offline_and_downloads_its_file() {
    let f = fixture().await;
    f.portal_blocks(json!([{"type": "key_info"}, {"type": "license_file"}]))
        .await;
    let (_, key) = f.key().await;
    let token = f.portal_user("alice", Some(&key)).await;
    let me = send(
        &f.srv,
        Method::GET,
        "/api/portal/me",
        Cred::Bearer(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(me.body["data"]["blocks"][1]["type"], "license_file");
    assert_eq!(me.body["data"]["blocks"][1]["locked"], false);
    // Nothing bound yet: there is no machine file to download.
    let none = f.portal(PORTAL_FILE, &token, json!({})).await;
    assert_kv_error_naming(&none, 409, "CONFLICT", "no machine is bound");
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&key, "air-gapped-1", Some("Vault"))}),
        )
        .await;
    f.assert_machine_file(&a, &key, "air-gapped-1");
    assert_eq!(a.body["data"]["newActivation"], true);
    assert!(str_field(&a.body["data"], "fileName").starts_with("studio-"));
    // Idempotent: the same machine again.
    let again = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&key, "air-gapped-1", Some("Vault"))}),
        )
        .await;
    assert_eq!(again.body["data"]["newActivation"], false, "{}", again.body);
    // The bound machine's file, by default and by name.
    let file = f.portal(PORTAL_FILE, &token, json!({})).await;
    f.assert_machine_file(&file, &key, "air-gapped-1");
    let named = f
        .portal(
            PORTAL_FILE,
            &token,
            json!({"fingerprint": "air-gapped-1", "ttl": 7200}),
        )
        .await;
    f.assert_machine_file(&named, &key, "air-gapped-1");
    assert_eq!(named.body["data"]["ttl"], 7200);
    let unbound = f
        .portal(
            PORTAL_FILE,
            &token,
            json!({"fingerprint": "somewhere-else"}),
        )
        .await;
    assert_kv_error(&unbound, 404, "NOT_FOUND");
    // The key is HWID locked.
    let other = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&key, "air-gapped-2", None)}),
        )
        .await;
    assert_kv_error(&other, 403, "HWID_MISMATCH");
    // A malformed request is refused before anything happens.
    let bad = f
        .portal(PORTAL_ACTIVATE, &token, json!({"request": bare("[1]")}))
        .await;
    assert_kv_error_naming(&bad, 400, "VALIDATION_ERROR", "not a JSON object");
    assert_eq!(f.activations(&key), 1);
}

#[tokio::test]
async fn the_portal_reaches_only_the_users_own_key() {
    let f = fixture().await;
    f.portal_blocks(json!([{"type": "license_file"}])).await;
    let (_, mine) = f.key().await;
    let (_, theirs) = f.key().await;
    let token = f.portal_user("alice", Some(&mine)).await;
    let _bob = f.portal_user("bobby", Some(&theirs)).await;
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&theirs, "fp-1", None)}),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    assert_eq!(f.activations(&theirs), 0);
    // A user without a key has nothing to activate.
    let keyless = f.portal_user("carol", None).await;
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &keyless,
            json!({"request": request(&mine, "fp-1", None)}),
        )
        .await;
    assert_kv_error_naming(&a, 403, "FORBIDDEN", "link a license key");
    // Unauthenticated.
    for path in [PORTAL_ACTIVATE, PORTAL_FILE] {
        let a = send(
            &f.srv,
            Method::POST,
            path,
            Cred::None,
            Some(json!({"request": request(&mine, "fp-1", None)})),
            &[],
        )
        .await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    // An expired key is refused with its code.
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET valid_until = ?1 WHERE license_key = ?2",
            rusqlite::params![now_ms() - 60_000, mine],
        )
        .expect("expire");
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&mine, "fp-1", None)}),
        )
        .await;
    assert_kv_error(&a, 403, "KEY_EXPIRED");
    assert_eq!(f.activations(&mine), 0);
}

#[tokio::test]
async fn without_a_license_file_block_the_portal_offers_no_files() {
    let f = fixture().await;
    f.portal_blocks(json!([{"type": "key_info"}])).await;
    let (_, key) = f.key().await;
    let token = f.portal_user("alice", Some(&key)).await;
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&key, "fp-1", None)}),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = f.portal(PORTAL_FILE, &token, json!({})).await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    // A block that needs an entitlement the key lacks stays shut.
    f.portal_blocks(json!([{"type": "license_file", "requiresEntitlement": "OFFLINE"}]))
        .await;
    let a = f
        .portal(
            PORTAL_ACTIVATE,
            &token,
            json!({"request": request(&key, "fp-1", None)}),
        )
        .await;
    assert_kv_error_naming(&a, 403, "FORBIDDEN", "OFFLINE");
    assert_eq!(f.activations(&key), 0);
}
