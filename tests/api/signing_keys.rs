//! Signing keys that can change: `POST /api/projects/{id}/signing-keys` makes a new current key
//! endorsed by the previous one, old keys keep verifying what they signed until retired, and
//! every answer and file signed after a rotation names and uses the new key, at once.

use std::time::Duration;

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use keyward::domain::api_keys::Scope;
use keyward::domain::license_files;
use keyward::domain::products::Product;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::*;

const ENDORSEMENT_PREFIX: &str = "keyward-key-endorsement/";

struct Setup {
    srv: TestServer,
    product: Product,
    /// FULL_ADMIN, every product of the default tenant.
    admin_key: String,
    /// VALIDATE_ONLY: what an app's server holds.
    app_key: String,
}

impl Setup {
    async fn new() -> Self {
        let srv = TestServer::start().await;
        let product = srv.create_product("default", "app");
        let admin_key = srv.create_api_key("default", Scope::FullAdmin, None);
        let app_key = srv.create_api_key("default", Scope::ValidateOnly, None);
        Self {
            srv,
            product,
            admin_key,
            app_key,
        }
    }

    fn keys_path(&self) -> String {
        format!("/api/projects/{}/signing-keys", self.product.id)
    }

    async fn rotate(&self) -> Value {
        let a = send(
            &self.srv,
            Method::POST,
            &self.keys_path(),
            Cred::ApiKey(&self.admin_key),
            None,
            &[],
        )
        .await;
        assert_status(&a, 201);
        assert_eq!(a.body["success"], true);
        a.body["data"]["key"].clone()
    }

    async fn retire(&self, kid: &str) -> Answer {
        send(
            &self.srv,
            Method::POST,
            &format!("{}/{kid}/retire", self.keys_path()),
            Cred::ApiKey(&self.admin_key),
            None,
            &[],
        )
        .await
    }

    /// The admin listing's keys.
    async fn listed(&self) -> Vec<Value> {
        let a = self.srv.get(&self.keys_path(), &self.admin_key).await;
        assert_status(&a, 200);
        a.body["data"]["keys"].as_array().expect("keys").clone()
    }

    /// The public key endpoint's answer.
    async fn public(&self) -> Value {
        let a = self
            .srv
            .call(
                Method::GET,
                "/api/v1/updates/public-key?product=app",
                None,
                None,
            )
            .await;
        assert_status(&a, 200);
        a.body
    }

    async fn license(&self) -> String {
        let l = self
            .srv
            .create_license(
                &self.admin_key,
                &self.product.id,
                json!({"maxActivations": 5}),
            )
            .await;
        str_of(&l["key"])
    }

    async fn vendor_validate(&self, key: &str) -> Answer {
        let a = self
            .srv
            .post(
                "/api/v1/license/validate",
                &self.app_key,
                json!({"licenseKey": key, "machineId": "machine-0001", "nonce": "n-1"}),
            )
            .await;
        assert_status(&a, 200);
        a
    }

    async fn checkout(&self, key: &str) -> Answer {
        let a = self
            .srv
            .post(
                "/api/v1/license/checkout",
                &self.app_key,
                json!({"licenseKey": key, "encrypt": false}),
            )
            .await;
        assert_status(&a, 200);
        a
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn raw_key(public_key_b64: &str) -> [u8; 32] {
    base64::engine::general_purpose::STANDARD
        .decode(public_key_b64)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// Whether `endorsement` of the listed key `endorsed` verifies under `endorser`'s public key.
fn endorsement_verifies(endorser_b64: &str, endorsed: &Value) -> bool {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(str_field(&endorsed["endorsement"], "signature"))
        .expect("base64 signature");
    let Ok(signature) = <[u8; 64]>::try_from(signature.as_slice()) else {
        return false;
    };
    let message = format!("{ENDORSEMENT_PREFIX}{}", str_field(endorsed, "publicKey"));
    VerifyingKey::from_bytes(&raw_key(endorser_b64))
        .expect("a valid key")
        .verify(message.as_bytes(), &Signature::from_bytes(&signature))
        .is_ok()
}

/// The answer is signed (`X-Signature` over the exact body) by `public_key` and names `kid`.
#[track_caller]
fn assert_signed_by(a: &Answer, public_key: &str, kid: &str) {
    assert_eq!(a.header("x-keyward-key-id"), Some(kid), "{}", a.body);
    let sig = a.header("x-signature").expect("X-Signature");
    assert!(
        signature_verifies(public_key, &a.raw, sig),
        "signed by {kid}"
    );
}

fn certificate(a: &Answer) -> String {
    a.body["certificate"]
        .as_str()
        .or_else(|| a.body["data"]["certificate"].as_str())
        .expect("a certificate")
        .to_owned()
}

/// The listed key named `kid`.
#[track_caller]
fn key_named<'a>(keys: &'a [Value], kid: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} is listed: {keys:?}"))
}

async fn audit_rows(srv: &TestServer, action: &str, min: i64) -> i64 {
    let mut n = 0;
    for _ in 0..100 {
        n = srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = ?1",
            [action],
        );
        if n >= min {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n
}

#[tokio::test]
async fn a_rotation_makes_a_new_current_key_endorsed_by_the_previous_one() {
    let s = Setup::new().await;
    let first_pk = b64(&s.product.signing_public_key);
    let first_kid = license_files::kid(&s.product.signing_public_key);

    // Before any rotation: one key, current, unendorsed, the one the product always had.
    let keys = s.listed().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["kid"], first_kid.as_str());
    assert_eq!(keys[0]["publicKey"], first_pk.as_str());
    assert_eq!(keys[0]["current"], true);
    assert_eq!(keys[0]["retired"], false);
    assert_eq!(keys[0]["retiredAt"], Value::Null);
    assert_eq!(keys[0]["endorsement"], Value::Null);
    parse_time(&keys[0]["createdAt"]);
    let public = s.public().await;
    assert_eq!(public["publicKey"], first_pk.as_str());
    assert_eq!(
        public["public_key"],
        first_pk.as_str(),
        "the field it always had"
    );
    assert_eq!(public["kid"], first_kid.as_str());
    assert_eq!(public["keys"], json!(keys));

    let second = s.rotate().await;
    let second_pk = str_of(&second["publicKey"]);
    let second_kid = str_of(&second["kid"]);
    assert_eq!(
        second_kid,
        license_files::kid(&raw_key(&second_pk)),
        "kid = SHA-256 of the raw key, 16 hex"
    );
    assert_ne!(second_kid, first_kid);
    assert_eq!(second["current"], true);
    assert_eq!(second["retired"], false);
    assert_eq!(second["endorsement"]["kid"], first_kid.as_str());
    assert!(endorsement_verifies(&first_pk, &second), "{second}");

    // A second rotation: each key is endorsed by its predecessor, not by an older key.
    let third = s.rotate().await;
    let third_pk = str_of(&third["publicKey"]);
    assert_eq!(third["endorsement"]["kid"], second_kid.as_str());
    assert!(endorsement_verifies(&second_pk, &third));
    assert!(!endorsement_verifies(&first_pk, &third));

    // Listed oldest first, one current; the public endpoint agrees and leads with the current.
    let keys = s.listed().await;
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(
        kids,
        [
            first_kid.as_str(),
            second_kid.as_str(),
            third["kid"].as_str().unwrap()
        ]
    );
    let currents: Vec<bool> = keys.iter().map(|k| k["current"] == true).collect();
    assert_eq!(currents, [false, false, true]);
    let mut was_current = second.clone();
    was_current["current"] = json!(false);
    assert_eq!(
        keys[1], was_current,
        "listed as rotate answered, no longer current"
    );
    assert_eq!(keys[1]["endorsement"], second["endorsement"]);
    let public = s.public().await;
    assert_eq!(public["publicKey"], third_pk.as_str());
    assert_eq!(public["public_key"], third_pk.as_str());
    assert_eq!(public["kid"], third["kid"]);
    assert_eq!(public["keys"], json!(keys));

    // The project's and the product's publicKey are the current key.
    let project = s
        .srv
        .get(&format!("/api/projects/{}", s.product.id), &s.admin_key)
        .await;
    assert_status(&project, 200);
    assert_eq!(
        project.body["data"]["project"]["publicKey"],
        third_pk.as_str()
    );
    let products = s.srv.get("/api/v1/products", &s.admin_key).await;
    assert_status(&products, 200);
    assert_eq!(products.body["products"][0]["publicKey"], third_pk.as_str());

    assert_eq!(audit_rows(&s.srv, "project.signing_key.rotate", 2).await, 2);
}

#[tokio::test]
async fn after_a_rotation_every_signed_answer_uses_the_new_key_at_once() {
    let s = Setup::new().await;
    let key = s.license().await;
    let old_pk = b64(&s.product.signing_public_key);
    let old_kid = license_files::kid(&s.product.signing_public_key);
    // Both faces sign with the old key first, so this process holds it open.
    let before = s.vendor_validate(&key).await;
    assert_signed_by(&before, &old_pk, &old_kid);
    let client = send(
        &s.srv,
        Method::POST,
        "/api/validate",
        Cred::None,
        Some(json!({"key": key, "hwid": "HWID-1"})),
        &[],
    )
    .await;
    assert_status(&client, 200);
    assert_signed_by(&client, &old_pk, &old_kid);

    let new = s.rotate().await;
    let new_pk = str_of(&new["publicKey"]);
    let new_kid = str_of(&new["kid"]);

    // No restart: the very next answers are the new key's.
    let after = s.vendor_validate(&key).await;
    assert_signed_by(&after, &new_pk, &new_kid);
    assert!(
        !signature_verifies(&old_pk, &after.raw, after.header("x-signature").unwrap()),
        "the old key does not sign any more"
    );
    let client = send(
        &s.srv,
        Method::POST,
        "/api/validate",
        Cred::None,
        Some(json!({"key": key, "hwid": "HWID-1"})),
        &[],
    )
    .await;
    assert_status(&client, 200);
    assert_signed_by(&client, &new_pk, &new_kid);
    // A signed refusal too: a key locked to another machine.
    let locked = s
        .srv
        .create_license(&s.admin_key, &s.product.id, json!({"maxActivations": 1}))
        .await;
    let locked = str_of(&locked["key"]);
    for (hwid, status) in [("HWID-A", 200), ("HWID-B", 403)] {
        let a = send(
            &s.srv,
            Method::POST,
            "/api/validate",
            Cred::None,
            Some(json!({"key": locked, "hwid": hwid})),
            &[],
        )
        .await;
        assert_status(&a, status);
        assert_signed_by(&a, &new_pk, &new_kid);
    }
    // The key/HWID face's license file.
    let file = send(
        &s.srv,
        Method::POST,
        "/api/license-file",
        Cred::None,
        Some(json!({"key": key, "hwid": "HWID-1"})),
        &[],
    )
    .await;
    assert_status(&file, 200);
    assert_eq!(file.header("x-keyward-key-id"), Some(new_kid.as_str()));
    let decoded = license_files::decode(
        &certificate(&file),
        &raw_key(&new_pk),
        Some(&keyward::crypto::sha256(format!("{key}HWID-1").as_bytes())),
    )
    .expect("the machine file verifies with the new key");
    assert_eq!(decoded.kid.as_deref(), Some(new_kid.as_str()));
    assert_eq!(decoded.payload["meta"]["kid"], new_kid.as_str());
    // The revocation list.
    let list = s
        .srv
        .call(
            Method::GET,
            "/api/v1/license/revocations?product=app",
            None,
            None,
        )
        .await;
    assert_status(&list, 200);
    assert_signed_by(&list, &new_pk, &new_kid);

    // A restart keeps the rotation: the key is stored, not only cached.
    let mut srv = s.srv;
    srv.restart().await;
    let again = srv
        .post(
            "/api/v1/license/validate",
            &s.app_key,
            json!({"licenseKey": key, "machineId": "machine-0001", "nonce": "n-2"}),
        )
        .await;
    assert_status(&again, 200);
    assert_signed_by(&again, &new_pk, &new_kid);
}

/// A key rotation in the middle of a file's life: the file checked out before it still
/// verifies with the key its `kid` names (found in the public list), the one checked out after
/// it names the new key.
#[tokio::test]
async fn a_key_rotation_in_the_middle_of_a_files_life() {
    let s = Setup::new().await;
    let key = s.license().await;
    let early = s.checkout(&key).await;
    let early_file = certificate(&early);
    let early_kid = early.header("x-keyward-key-id").expect("kid").to_owned();

    let new = s.rotate().await;
    let late = s.checkout(&key).await;
    let late_file = certificate(&late);
    assert_eq!(late.header("x-keyward-key-id"), new["kid"].as_str());
    assert_signed_by(
        &late,
        new["publicKey"].as_str().unwrap(),
        new["kid"].as_str().unwrap(),
    );

    // An app that holds the early file finds its key by kid in the public list.
    let public = s.public().await;
    let keys = public["keys"].as_array().unwrap();
    let read = |file: &str, kid: &str| {
        let listed = key_named(keys, kid);
        license_files::decode(file, &raw_key(listed["publicKey"].as_str().unwrap()), None)
    };
    let d = read(&early_file, &early_kid).expect("the early file verifies with its key");
    assert_eq!(d.kid.as_deref(), Some(early_kid.as_str()));
    assert_eq!(d.payload["meta"]["kid"], early_kid.as_str());
    let late_kid = str_of(&new["kid"]);
    let d = read(&late_file, &late_kid).expect("the late file verifies with the new key");
    assert_eq!(d.payload["meta"]["kid"], late_kid.as_str());
    // Each file verifies only with its own key.
    assert!(read(&early_file, &late_kid).is_err());
    assert!(read(&late_file, &early_kid).is_err());
    // The old key is still listed (not retired) and reachable from the pinned one: the new key
    // carries its endorsement.
    assert_eq!(key_named(keys, &early_kid)["retired"], false);
    assert_eq!(
        key_named(keys, &late_kid)["endorsement"]["kid"],
        early_kid.as_str()
    );

    // Once the old key is retired the list says so, and apps drop files it signed.
    assert_status(&s.retire(&early_kid).await, 200);
    let public = s.public().await;
    let old = key_named(public["keys"].as_array().unwrap(), &early_kid);
    assert_eq!(old["retired"], true);
    parse_time(&old["retiredAt"]);
}

#[tokio::test]
async fn retiring_a_key_is_final_and_never_the_current_one() {
    let s = Setup::new().await;
    let first_kid = license_files::kid(&s.product.signing_public_key);

    // The current key cannot be retired.
    let a = s.retire(&first_kid).await;
    assert_kv_error_naming(&a, 409, "CONFLICT", "rotate");
    assert_eq!(s.listed().await[0]["retired"], false);

    let second = s.rotate().await;
    let a = s.retire(&first_kid).await;
    assert_status(&a, 200);
    let retired = &a.body["data"]["key"];
    assert_eq!(retired["kid"], first_kid.as_str());
    assert_eq!(retired["retired"], true);
    assert_eq!(retired["current"], false);
    let retired_at = parse_time(&retired["retiredAt"]);
    // The endorsement chain stays readable: the new key still names the retired endorser.
    let keys = s.listed().await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["retired"], true);
    assert_eq!(keys[1]["endorsement"]["kid"], first_kid.as_str());

    // Again: unchanged, not audited twice. A kid in capitals names the same key.
    let again = s.retire(&first_kid.to_uppercase()).await;
    assert_status(&again, 200);
    assert_eq!(
        parse_time(&again.body["data"]["key"]["retiredAt"]),
        retired_at
    );
    assert_eq!(audit_rows(&s.srv, "project.signing_key.retire", 1).await, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'project.signing_key.retire'",
            []
        ),
        1
    );

    // The new current key still cannot be retired; the answers are still signed by it.
    assert_kv_error(
        &s.retire(second["kid"].as_str().unwrap()).await,
        409,
        "CONFLICT",
    );
    let key = s.license().await;
    let a = s.vendor_validate(&key).await;
    assert_signed_by(
        &a,
        second["publicKey"].as_str().unwrap(),
        second["kid"].as_str().unwrap(),
    );
}

#[tokio::test]
async fn signing_key_requests_with_bad_input_change_nothing() {
    let s = Setup::new().await;
    let base = s.keys_path();
    // (name, method, path, expected status, code)
    let cases: Vec<(&str, Method, String, u16, &str)> = vec![
        (
            "kid too short",
            Method::POST,
            format!("{base}/abc/retire"),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "kid not hex",
            Method::POST,
            format!("{base}/0123456789abcdeg/retire"),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "kid oversize",
            Method::POST,
            format!("{base}/{}/retire", "a".repeat(5000)),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "kid with a quote",
            Method::POST,
            format!("{base}/'%20OR%201=1/retire"),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "unknown kid",
            Method::POST,
            format!("{base}/0123456789abcdef/retire"),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown project (list)",
            Method::GET,
            "/api/projects/prod_nope/signing-keys".into(),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown project (rotate)",
            Method::POST,
            "/api/projects/prod_nope/signing-keys".into(),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown project (retire)",
            Method::POST,
            "/api/projects/prod_nope/signing-keys/0123456789abcdef/retire".into(),
            404,
            "NOT_FOUND",
        ),
    ];
    for (name, method, path, status, code) in cases {
        let a = send(&s.srv, method, &path, Cred::ApiKey(&s.admin_key), None, &[]).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error(&a, status, code);
    }
    // A body on rotate is not read; malformed JSON there changes nothing either way.
    let a = s
        .srv
        .call_raw(
            Method::POST,
            &base,
            Some(&s.admin_key),
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert!(
        a.status.as_u16() == 201 || a.status.as_u16() == 400,
        "{}: {}",
        a.status,
        a.body
    );
    let expected = if a.status.as_u16() == 201 { 2 } else { 1 };
    assert_eq!(s.listed().await.len(), expected);
    assert_eq!(
        s.listed()
            .await
            .iter()
            .filter(|k| k["retired"] == true)
            .count(),
        0
    );

    // The public endpoint: product required, slugs bounded, unknown → 404.
    for (query, status, code) in [
        ("", 400, "VALIDATION_ERROR"),
        ("?product=nope", 404, "PRODUCT_NOT_FOUND"),
        ("?product=app&tenant=nope", 404, "PRODUCT_NOT_FOUND"),
    ] {
        let a = s
            .srv
            .call(
                Method::GET,
                &format!("/api/v1/updates/public-key{query}"),
                None,
                None,
            )
            .await;
        a.assert_error(status, code);
    }
    let long = "a".repeat(65);
    let a = s
        .srv
        .call(
            Method::GET,
            &format!("/api/v1/updates/public-key?product={long}"),
            None,
            None,
        )
        .await;
    a.assert_error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn only_callers_that_manage_the_project_reach_its_signing_keys() {
    let s = Setup::new().await;
    s.srv.create_tenant("other");
    let other_product = s.srv.create_product("other", "theirs");
    let other_admin = s.srv.create_api_key("other", Scope::FullAdmin, None);
    let sibling = s.srv.create_product("default", "sibling");
    let restricted = s
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&sibling.id));
    let read_only = s.srv.create_api_key("default", Scope::ReadOnly, None);
    let kid = license_files::kid(&s.product.signing_public_key);
    let base = s.keys_path();
    let calls = [
        (Method::GET, base.clone()),
        (Method::POST, base.clone()),
        (Method::POST, format!("{base}/{kid}/retire")),
    ];
    // (name, credential, expected status, code)
    let callers: [(&str, Cred<'_>, u16, &str); 6] = [
        ("unauthenticated", Cred::None, 401, "UNAUTHORIZED"),
        ("bad bearer", Cred::Bearer("nope"), 401, "UNAUTHORIZED"),
        (
            "VALIDATE_ONLY key",
            Cred::ApiKey(&s.app_key),
            403,
            "FORBIDDEN",
        ),
        ("READ_ONLY key", Cred::ApiKey(&read_only), 403, "FORBIDDEN"),
        (
            "other tenant's FULL_ADMIN",
            Cred::ApiKey(&other_admin),
            404,
            "NOT_FOUND",
        ),
        (
            "key restricted to another product",
            Cred::ApiKey(&restricted),
            404,
            "NOT_FOUND",
        ),
    ];
    for (name, cred, status, code) in callers {
        for (method, path) in &calls {
            let a = send(&s.srv, method.clone(), path, cred, None, &[]).await;
            assert_eq!(
                a.status.as_u16(),
                status,
                "{name}: {method} {path}: {}",
                a.body
            );
            assert_kv_error(&a, status, code);
        }
    }
    assert_eq!(s.listed().await.len(), 1, "nothing rotated");
    // The other tenant's admin manages its own product, and a restricted key its own.
    let own = send(
        &s.srv,
        Method::POST,
        &format!("/api/projects/{}/signing-keys", other_product.id),
        Cred::ApiKey(&other_admin),
        None,
        &[],
    )
    .await;
    assert_status(&own, 201);
    let own = send(
        &s.srv,
        Method::POST,
        &format!("/api/projects/{}/signing-keys", sibling.id),
        Cred::ApiKey(&restricted),
        None,
        &[],
    )
    .await;
    assert_status(&own, 201);
    assert_eq!(
        s.listed().await.len(),
        1,
        "the rotations stayed in their products"
    );

    // An operator session rotates too.
    let admin = setup_admin(&s.srv).await;
    let a = send(
        &s.srv,
        Method::POST,
        &base,
        Cred::Bearer(&admin.token),
        None,
        &[],
    )
    .await;
    assert_status(&a, 201);
    assert_eq!(s.listed().await.len(), 2);
}

/// A bundle keeps the signature of the key current when it was uploaded, and says which.
#[tokio::test]
async fn bundles_name_the_key_that_signed_them_across_a_rotation() {
    let s = Setup::new().await;
    let old_pk = b64(&s.product.signing_public_key);
    let old_kid = license_files::kid(&s.product.signing_public_key);
    let license = s.license().await;
    let v1 = release(&s, "1.1.0", vec![1u8; 2048]).await;
    assert_eq!(v1["signatureKid"], old_kid.as_str());
    let new = s.rotate().await;
    let new_pk = str_of(&new["publicKey"]);
    let new_kid = str_of(&new["kid"]);
    let v2 = release(&s, "1.2.0", vec![2u8; 2048]).await;
    assert_eq!(v2["signatureKid"], new_kid.as_str());
    assert!(signature_verifies(
        &new_pk,
        &[2u8; 2048],
        v2["signature"].as_str().unwrap()
    ));
    // The old bundle's signature is unchanged and verifies with the old key.
    assert!(signature_verifies(
        &old_pk,
        &[1u8; 2048],
        v1["signature"].as_str().unwrap()
    ));

    let get = |path: String| {
        let srv = &s.srv;
        let license = license.clone();
        async move {
            let resp = srv
                .client
                .get(format!("{}{path}", srv.url))
                .header("X-License-Key", license)
                .send()
                .await
                .expect("sent");
            TestServer::decode(resp).await
        }
    };
    let check = get("/api/v1/updates/check?current_version=1.0.0".into()).await;
    assert_status(&check, 200);
    assert_eq!(check.body["version"], "1.2.0");
    assert_eq!(check.body["signature_kid"], new_kid.as_str());
    assert_signed_by(&check, &new_pk, &new_kid);
    assert_eq!(
        check.header("x-keyward-product"),
        Some(s.product.id.as_str())
    );
    let manifest = get(format!(
        "/api/v1/updates/manifest?release_id={}",
        str_of(&v1["id"])
    ))
    .await;
    assert_status(&manifest, 200);
    assert_eq!(manifest.body["release"]["signatureKid"], old_kid.as_str());
    let download = get(format!(
        "/api/v1/updates/download?release_id={}",
        str_of(&v1["id"])
    ))
    .await;
    assert_status(&download, 200);
    assert_eq!(download.header("x-keyward-key-id"), Some(old_kid.as_str()));
    assert!(signature_verifies(
        &old_pk,
        &download.raw,
        download.header("x-bundle-signature").unwrap()
    ));
}

/// Uploads and publishes `version`; returns the published release.
async fn release(s: &Setup, version: &str, bytes: Vec<u8>) -> Value {
    let form = Form::new()
        .text("version", version.to_owned())
        .text("channel", "stable")
        .part("bundle", Part::bytes(bytes).file_name("app.bin"));
    let resp = s
        .srv
        .client
        .post(format!(
            "{}/api/projects/{}/releases",
            s.srv.url, s.product.id
        ))
        .header("X-API-Key", &s.admin_key)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    let up = TestServer::decode(resp).await;
    assert_status(&up, 201);
    let id = str_of(&up.body["data"]["release"]["id"]);
    let published = s
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{id}/publish"),
            Some(&s.admin_key),
            None,
        )
        .await;
    assert_status(&published, 200);
    published.body["data"]["release"].clone()
}

/// Rotations at the same moment are serialized: each new key is endorsed by the one current
/// just before it, exactly one key is current, and this process signs with that one.
#[tokio::test]
async fn concurrent_rotations_keep_one_chain_and_sign_with_its_last_key() {
    let s = Setup::new().await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let client = s.srv.client.clone();
        let url = format!("{}{}", s.srv.url, s.keys_path());
        let key = s.admin_key.clone();
        set.spawn(async move {
            let resp = client
                .post(url)
                .header("X-API-Key", key)
                .send()
                .await
                .expect("sent");
            resp.status().as_u16()
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let keys = s.listed().await;
    assert_eq!(keys.len(), 7);
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    assert_eq!(keys[6]["current"], true, "the newest key is current");
    for pair in keys.windows(2) {
        assert_eq!(pair[1]["endorsement"]["kid"], pair[0]["kid"]);
        assert!(endorsement_verifies(
            pair[0]["publicKey"].as_str().unwrap(),
            &pair[1]
        ));
    }
    let license = s.license().await;
    let a = s.vendor_validate(&license).await;
    assert_signed_by(
        &a,
        keys[6]["publicKey"].as_str().unwrap(),
        keys[6]["kid"].as_str().unwrap(),
    );
}
