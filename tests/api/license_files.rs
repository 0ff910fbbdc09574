//! Offline licenses: Keygen-compatible license and machine files from
//! `POST /api/v1/license/checkout` (vendor face) and `POST /api/license-file` (key/HWID face).
//! Each file is read back by Keyward's own reader (`domain::license_files::decode`) and by an
//! independent one (`tests/fixtures/license_file_reader.py`, Python `cryptography`); the
//! reader itself is checked against Keygen's published example file.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use keyward::domain::license_files::{self, FileError, FileKind};
use keyward::domain::products::Product;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const CHECKOUT: &str = "/api/v1/license/checkout";
const LICENSE_FILE: &str = "/api/license-file";

struct Setup {
    srv: TestServer,
    product: Product,
    admin_key: String,
    app_key: String,
}

impl Setup {
    async fn new() -> Self {
        let srv = TestServer::start().await;
        let product = srv.create_product("default", "app");
        let admin_key = srv.create_api_key("default", Scope::CreateLicense, None);
        let app_key = srv.create_api_key("default", Scope::ValidateOnly, None);
        Self {
            srv,
            product,
            admin_key,
            app_key,
        }
    }

    async fn license(&self, extra: Value) -> String {
        let l = self
            .srv
            .create_license(&self.admin_key, &self.product.id, extra)
            .await;
        l["key"].as_str().expect("license key").to_owned()
    }

    async fn checkout(&self, body: Value) -> Answer {
        self.srv.post(CHECKOUT, &self.app_key, body).await
    }

    async fn license_file(&self, body: Value) -> Answer {
        send(
            &self.srv,
            Method::POST,
            LICENSE_FILE,
            Cred::None,
            Some(body),
            &[],
        )
        .await
    }

    fn public_key(&self) -> [u8; 32] {
        self.product
            .signing_public_key
            .as_slice()
            .try_into()
            .expect("a 32-byte public key")
    }

    /// Asserts the answer is signed by the product (`X-Signature` over the exact body).
    #[track_caller]
    fn assert_signed(&self, a: &Answer) {
        let sig = a.header("X-Signature").expect("X-Signature");
        assert!(
            signature_verifies(
                &keyward::crypto::base64(&self.product.signing_public_key),
                &a.raw,
                sig
            ),
            "the answer's signature verifies"
        );
        assert_eq!(
            a.header("X-Keyward-Product"),
            Some(self.product.id.as_str())
        );
    }

    /// Audit rows `action` of the license `key`; queued events are committed in batches.
    async fn audit_count(&self, action: &str, key: &str, min: i64) -> i64 {
        let mut n = 0;
        for _ in 0..100 {
            n = self.srv.count(
                "SELECT COUNT(*) FROM audit_events e JOIN licenses l ON l.id = e.license_id
                 WHERE e.action = ?1 AND l.license_key = ?2",
                [action, key],
            );
            if n >= min {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    }
}

fn decode(
    file: &str,
    public_key: &[u8; 32],
    material: Option<&str>,
) -> Result<license_files::Decoded, FileError> {
    let key = material.map(|m| keyward::crypto::sha256(m.as_bytes()));
    license_files::decode(file, public_key, key.as_ref())
}

/// The independent reader: Python `cryptography`, as Keygen's own example reads files.
fn python_reader(file: &str, public_key: &[u8], material: &str) -> Result<Value, String> {
    use std::io::Write;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/license_file_reader.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(hex::encode(public_key))
        .arg(material)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (test.sh installs it with `cryptography`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(file.as_bytes())
        .expect("file written to the reader");
    let out = child.wait_with_output().expect("the reader finishes");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the reader prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn certificate(a: &Answer) -> String {
    a.body["certificate"]
        .as_str()
        .or_else(|| a.body["data"]["certificate"].as_str())
        .expect("a certificate")
        .to_owned()
}

// ---- the vendor face ------------------------------------------------------------------

#[tokio::test]
async fn checkout_writes_license_and_machine_files_that_verify_and_decrypt() {
    let s = Setup::new().await;
    let key = s
        .license(json!({"maxActivations": 2, "customerName": "Ada", "metadata": {"seats": 5}}))
        .await;
    assert_status(&s.srv.activate(&s.app_key, &key, "machine-0001").await, 200);
    let pk = s.public_key();
    // (machineId, encrypt, kind, alg)
    let cases = [
        (None, None, FileKind::License, license_files::ALG_ENCRYPTED),
        (
            None,
            Some(false),
            FileKind::License,
            license_files::ALG_PLAIN,
        ),
        (
            Some("machine-0001"),
            Some(true),
            FileKind::Machine,
            license_files::ALG_ENCRYPTED,
        ),
        (
            Some("machine-0001"),
            Some(false),
            FileKind::Machine,
            license_files::ALG_PLAIN,
        ),
    ];
    for (machine, encrypt, kind, alg) in cases {
        let mut body = json!({"licenseKey": key});
        if let Some(m) = machine {
            body["machineId"] = json!(m);
        }
        if let Some(e) = encrypt {
            body["encrypt"] = json!(e);
        }
        let a = s.checkout(body).await;
        assert_status(&a, 200);
        s.assert_signed(&a);
        assert_eq!(a.body["success"], true);
        assert_eq!(a.body["ttl"], 2_592_000);
        let issued = parse_time(&a.body["issued"]);
        let expiry = parse_time(&a.body["expiry"]);
        assert_eq!(expiry - issued, time::Duration::seconds(2_592_000));
        let file = certificate(&a);
        let label = match kind {
            FileKind::License => "LICENSE FILE",
            FileKind::Machine => "MACHINE FILE",
        };
        assert!(
            file.starts_with(&format!("-----BEGIN {label}-----\n")),
            "{file}"
        );
        assert!(
            file.ends_with(&format!("\n-----END {label}-----\n")),
            "{file}"
        );
        let lines: Vec<&str> = file.lines().collect();
        assert!(lines[1..lines.len() - 2].iter().all(|l| l.len() == 60));

        let material = match machine {
            Some(m) => format!("{key}{m}"),
            None => key.clone(),
        };
        let d = decode(&file, &pk, Some(&material)).expect("the file verifies and opens");
        assert_eq!((d.kind, d.alg.as_str()), (kind, alg));
        let kid = license_files::kid(&s.product.signing_public_key);
        assert_eq!(kid.len(), 16);
        assert_eq!(d.kid.as_deref(), Some(kid.as_str()));
        let p = &d.payload;
        assert_eq!(p["data"]["type"], "licenses");
        assert_eq!(p["data"]["attributes"]["key"], key.as_str());
        assert_eq!(p["data"]["attributes"]["name"], "Ada");
        assert_eq!(p["data"]["attributes"]["status"], "ACTIVE");
        assert_eq!(p["data"]["attributes"]["maxMachines"], 2);
        assert_eq!(p["data"]["attributes"]["metadata"], json!({"seats": 5}));
        for field in ["expiry", "created", "updated"] {
            assert!(p["data"]["attributes"].get(field).is_some(), "{field}");
        }
        assert_eq!(
            p["data"]["relationships"]["entitlements"]["data"],
            json!([])
        );
        assert_eq!(p["meta"]["ttl"], 2_592_000);
        assert_eq!(p["meta"]["kid"], kid.as_str());
        assert_eq!(parse_time(&p["meta"]["expiry"]), expiry);
        assert_eq!(parse_time(&p["meta"]["issued"]), issued);
        assert!(!d.is_expired(OffsetDateTime::now_utc()));
        let included = p["included"].as_array().expect("included");
        assert!(
            included
                .iter()
                .any(|i| i["type"] == "products" && i["id"] == s.product.id.as_str())
        );
        let machines: Vec<&Value> = included
            .iter()
            .filter(|i| i["type"] == "machines")
            .collect();
        match machine {
            Some(m) => {
                assert_eq!(machines.len(), 1);
                assert_eq!(machines[0]["attributes"]["fingerprint"], m);
                assert!(machines[0]["attributes"].get("name").is_some());
            }
            None => assert!(machines.is_empty()),
        }
        // No server secret in the file: only the license, its product and the machine.
        let text = p.to_string();
        assert!(!text.contains("kv_") && !text.contains("sealed"), "{text}");

        // The independent reader agrees.
        let read = python_reader(&file, &pk, &material).expect("the Python reader accepts it");
        assert_eq!(&read, p);

        // The wrong key material does not open an encrypted file.
        if alg == license_files::ALG_ENCRYPTED {
            assert_eq!(
                decode(&file, &pk, Some("WRONG-KEY")).unwrap_err(),
                FileError::Undecryptable
            );
            assert!(python_reader(&file, &pk, "WRONG-KEY").is_err());
        } else {
            decode(&file, &pk, None).expect("a plain file needs no key");
        }
    }
    assert_eq!(s.audit_count("license.checkout", &key, 4).await, 4);
}

#[tokio::test]
async fn checkout_refuses_unknown_keys_and_machines_not_activated_here() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    let other = s.license(json!({})).await;
    assert_status(
        &s.srv.activate(&s.app_key, &other, "machine-other").await,
        200,
    );
    s.checkout(json!({"licenseKey": "TT-NOPE-NOPE-NOPE-NOPE"}))
        .await
        .assert_error(404, "LICENSE_NOT_FOUND");
    for machine in ["machine-never", "machine-other"] {
        s.checkout(json!({"licenseKey": key, "machineId": machine}))
            .await
            .assert_error(400, "NOT_ACTIVATED");
    }
    assert_eq!(s.audit_count("license.checkout.refused", &key, 2).await, 2);

    // A license that may not be used now gets no file, as it could not be activated.
    let mut cases = Vec::new();
    for (status, valid_until, code) in [
        ("ACTIVE", Some(now_ms() - 60_000), "LICENSE_EXPIRED"),
        ("SUSPENDED", None, "LICENSE_SUSPENDED"),
        ("BANNED", None, "LICENSE_SUSPENDED"),
        ("REVOKED", None, "LICENSE_REVOKED"),
    ] {
        let key = s.license(json!({})).await;
        assert_status(&s.srv.activate(&s.app_key, &key, "machine-0001").await, 200);
        s.srv
            .db()
            .execute(
                "UPDATE licenses SET status = ?1, valid_until = ?2 WHERE license_key = ?3",
                rusqlite::params![status, valid_until, key],
            )
            .unwrap();
        cases.push((key, code));
    }
    for (key, code) in &cases {
        for body in [
            json!({"licenseKey": key}),
            json!({"licenseKey": key, "machineId": "machine-0001"}),
        ] {
            s.checkout(body).await.assert_error(400, code);
        }
    }
}

#[tokio::test]
async fn checkout_ttl_is_checked_and_null_means_no_expiry() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    for ttl in [
        json!(0),
        json!(3599),
        json!(31_536_001),
        json!(-3600),
        json!("3600"),
        json!(3600.5),
        json!(true),
        json!([3600]),
    ] {
        let a = s.checkout(json!({"licenseKey": key, "ttl": ttl})).await;
        a.assert_error(400, "VALIDATION_ERROR");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("ttl")),
            "names the field: {}",
            a.body
        );
    }
    for ttl in [3600, 31_536_000] {
        let a = s.checkout(json!({"licenseKey": key, "ttl": ttl})).await;
        assert_status(&a, 200);
        assert_eq!(a.body["ttl"], ttl);
        let d = decode(&certificate(&a), &s.public_key(), Some(&key)).unwrap();
        assert_eq!(d.payload["meta"]["ttl"], ttl);
    }
    let a = s.checkout(json!({"licenseKey": key, "ttl": null})).await;
    assert_status(&a, 200);
    assert_eq!(
        (&a.body["ttl"], &a.body["expiry"]),
        (&Value::Null, &Value::Null)
    );
    let d = decode(&certificate(&a), &s.public_key(), Some(&key)).unwrap();
    assert_eq!(d.payload["meta"]["expiry"], Value::Null);
    assert_eq!(d.payload["meta"]["ttl"], Value::Null);
    assert!(d.expiry().is_none());
    assert!(!d.is_expired(datetime!(2100-01-01 0:00 UTC)));
}

#[tokio::test]
async fn tampered_and_misdirected_files_are_refused() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    assert_status(&s.srv.activate(&s.app_key, &key, "machine-0001").await, 200);
    let pk = s.public_key();
    let file = certificate(&s.checkout(json!({"licenseKey": key})).await);

    // Re-armour the file with one change to its inner fields.
    let rewrap = |edit: &dyn Fn(&mut Value), label: &str| {
        let body: String = file.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut outer: Value =
            serde_json::from_slice(&keyward::crypto::from_base64(&body).unwrap()).unwrap();
        edit(&mut outer);
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            keyward::crypto::base64(outer.to_string().as_bytes())
        )
    };
    let flip_enc = rewrap(
        &|o| {
            let enc = o["enc"].as_str().unwrap();
            let first = if enc.starts_with('A') { "B" } else { "A" };
            o["enc"] = json!(format!("{first}{}", &enc[1..]));
        },
        "LICENSE FILE",
    );
    let plain_alg = rewrap(&|o| o["alg"] = json!("base64+ed25519"), "LICENSE FILE");
    let as_machine = rewrap(&|_| {}, "MACHINE FILE");
    let unchanged = rewrap(&|_| {}, "LICENSE FILE");
    decode(&unchanged, &pk, Some(&key)).expect("re-armouring alone changes nothing");
    // `alg` is not signed (as in Keygen's format), but a ciphertext read as plain text is
    // no payload.
    assert!(matches!(
        decode(&plain_alg, &pk, Some(&key)),
        Err(FileError::Malformed(_))
    ));
    assert!(python_reader(&plain_alg, &pk, &key).is_err());
    for tampered in [&flip_enc, &as_machine] {
        assert_eq!(
            decode(tampered, &pk, Some(&key)).unwrap_err(),
            FileError::BadSignature
        );
        assert!(python_reader(tampered, &pk, &key).is_err());
    }
    // Another product's key does not verify it.
    let other = s.srv.create_product("default", "other");
    let other_pk: [u8; 32] = other.signing_public_key.as_slice().try_into().unwrap();
    assert_eq!(
        decode(&file, &other_pk, Some(&key)).unwrap_err(),
        FileError::BadSignature
    );
    // Not a file at all.
    for junk in [
        "",
        "hello",
        "-----BEGIN LICENSE FILE-----\n!!!\n-----END LICENSE FILE-----",
    ] {
        assert!(matches!(
            decode(junk, &pk, Some(&key)),
            Err(FileError::Malformed(_))
        ));
    }

    // A machine file opens only with its own fingerprint.
    let machine_file = certificate(
        &s.checkout(json!({"licenseKey": key, "machineId": "machine-0001"}))
            .await,
    );
    decode(&machine_file, &pk, Some(&format!("{key}machine-0001"))).unwrap();
    for material in [format!("{key}machine-0002"), key.clone()] {
        assert_eq!(
            decode(&machine_file, &pk, Some(&material)).unwrap_err(),
            FileError::Undecryptable
        );
        assert!(python_reader(&machine_file, &pk, &material).is_err());
    }
}

#[tokio::test]
async fn checkout_respects_scope_tenant_and_product_restriction() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    let body = json!({"licenseKey": key});
    for scope in SCOPES {
        let api_key = s.srv.create_api_key("default", scope, None);
        assert_status(&s.srv.post(CHECKOUT, &api_key, body.clone()).await, 200);
    }
    let own = s
        .srv
        .create_api_key("default", Scope::ValidateOnly, Some(&s.product.id));
    assert_status(&s.srv.post(CHECKOUT, &own, body.clone()).await, 200);
    let other_product = s.srv.create_product("default", "other");
    let restricted = s
        .srv
        .create_api_key("default", Scope::ValidateOnly, Some(&other_product.id));
    s.srv
        .post(CHECKOUT, &restricted, body.clone())
        .await
        .assert_error(404, "LICENSE_NOT_FOUND");
    s.srv.create_tenant("acme");
    let foreign = s.srv.create_api_key("acme", Scope::FullAdmin, None);
    s.srv
        .post(CHECKOUT, &foreign, body.clone())
        .await
        .assert_error(404, "LICENSE_NOT_FOUND");
    s.srv
        .call(Method::POST, CHECKOUT, None, Some(body.clone()))
        .await
        .assert_error(401, "UNAUTHORIZED");
    s.srv
        .post(CHECKOUT, "kw_not-a-real-key", body)
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn checkout_bad_input_is_400_never_500() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    for body in [
        json!({}),
        json!({"licenseKey": null}),
        json!({"licenseKey": 1234567890}),
        json!({"licenseKey": "short"}),
        json!({"licenseKey": key, "machineId": "short"}),
        json!({"licenseKey": key, "machineId": 12_345_678}),
        json!({"licenseKey": key, "encrypt": "yes"}),
        json!([]),
    ] {
        s.checkout(body).await.assert_error(400, "VALIDATION_ERROR");
    }
    let a = s
        .srv
        .call_raw(
            Method::POST,
            CHECKOUT,
            Some(&s.app_key),
            "application/json",
            b"{\"licenseKey\":".to_vec(),
        )
        .await;
    a.assert_error(400, "VALIDATION_ERROR");
    let a = s
        .srv
        .call_raw(
            Method::POST,
            CHECKOUT,
            Some(&s.app_key),
            "text/plain",
            b"licenseKey".to_vec(),
        )
        .await;
    assert_eq!(a.status.as_u16(), 415, "{}", a.body);
}

// ---- the key/HWID face ------------------------------------------------------------------

#[tokio::test]
async fn key_face_gives_a_machine_file_for_the_bound_hwid_only() {
    let s = Setup::new().await;
    let key = s.license(json!({"maxActivations": 1})).await;
    let pk = s.public_key();
    let a = s
        .license_file(json!({"key": key, "hwid": "HWID-A", "encrypt": true}))
        .await;
    assert_status(&a, 200);
    s.assert_signed(&a);
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["data"]["ttl"], 2_592_000);
    let file = certificate(&a);
    assert!(file.starts_with("-----BEGIN MACHINE FILE-----\n"));
    let material = format!("{key}HWID-A");
    let d = decode(&file, &pk, Some(&material)).expect("verifies and opens");
    assert_eq!(d.kind, FileKind::Machine);
    let machine = d.payload["included"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "machines")
        .expect("the machine")
        .clone();
    assert_eq!(machine["attributes"]["fingerprint"], "HWID-A");
    assert_eq!(
        python_reader(&file, &pk, &material).expect("the Python reader accepts it"),
        d.payload
    );
    // The first file bound the key, as a first validation does.
    assert_eq!(
        s.srv.count(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id
             WHERE l.license_key = ?1 AND a.machine_id = 'HWID-A'",
            [&key],
        ),
        1
    );
    // Plain, no expiry, and the same machine again.
    let a = s
        .license_file(json!({"key": key, "hwid": "HWID-A", "encrypt": false, "ttl": null}))
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["expiry"], Value::Null);
    let d = decode(&certificate(&a), &pk, None).unwrap();
    assert_eq!(d.alg, license_files::ALG_PLAIN);
    // The key is bound elsewhere now: refused like /api/validate, and signed.
    let a = s.license_file(json!({"key": key, "hwid": "HWID-B"})).await;
    assert_kv_error(&a, 403, "HWID_MISMATCH");
    s.assert_signed(&a);
    assert!(s.audit_count("license.checkout", &key, 2).await >= 2);
    assert!(s.audit_count("license.checkout.refused", &key, 1).await >= 1);
}

#[tokio::test]
async fn key_face_refuses_like_validate() {
    let s = Setup::new().await;
    let key = s.license(json!({})).await;
    let expired = s.license(json!({})).await;
    s.srv
        .db()
        .execute(
            "UPDATE licenses SET valid_until = ?1 WHERE license_key = ?2",
            rusqlite::params![now_ms() - 60_000, expired],
        )
        .unwrap();
    assert_kv_error(
        &s.license_file(json!({"key": expired, "hwid": "HWID-A"}))
            .await,
        403,
        "KEY_EXPIRED",
    );
    let a = s
        .license_file(json!({"key": "TT-NOPE-NOPE-NOPE-NOPE", "hwid": "HWID-A"}))
        .await;
    assert_eq!(a.status.as_u16(), 404, "{}", a.body);
    let a = s
        .license_file(json!({"key": key, "hwid": "HWID-A", "secret": "kv_wrong"}))
        .await;
    assert_eq!(a.status.as_u16(), 404, "{}", a.body);
    // With the project's own secret it is found.
    let master = keyward::crypto::MasterKey::load_or_create(s.srv.data_dir()).unwrap();
    let secret = String::from_utf8(master.open(&s.product.client_secret_sealed).unwrap()).unwrap();
    assert_status(
        &s.license_file(json!({"key": key, "hwid": "HWID-A", "secret": secret}))
            .await,
        200,
    );
    for body in [
        json!({"key": key, "hwid": "HWID-A", "ttl": 0}),
        json!({"key": key, "hwid": "HWID-A", "ttl": 31_536_001}),
        json!({"key": key, "hwid": "HWID-A", "ttl": "long"}),
        json!({"key": key}),
        json!({"hwid": "HWID-A"}),
        json!({"key": key, "hwid": ""}),
        json!({"key": key, "hwid": "   "}),
        json!({"key": 12, "hwid": "HWID-A"}),
    ] {
        assert_kv_error(&s.license_file(body).await, 400, "VALIDATION_ERROR");
    }
}

// ---- Keygen's own file ------------------------------------------------------------------

#[test]
fn keygen_example_file_verifies_decrypts_and_is_expired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::read_to_string(root.join("tests/fixtures/keygen-example-license.lic"))
        .expect("the fixture");
    let pk: [u8; 32] =
        hex::decode("e8601e48b69383ba520245fd07971e983d06d22c4257cfd82304601479cee788")
            .unwrap()
            .try_into()
            .unwrap();
    let key = "B10760-1B177D-656D1F-C03298-9AF89E-V3";
    let d = decode(&file, &pk, Some(key)).expect("Keygen's file verifies and decrypts");
    assert_eq!(d.kind, FileKind::License);
    assert_eq!(d.alg, "aes-256-gcm+ed25519");
    assert_eq!(d.kid, None);
    assert_eq!(d.payload["data"]["type"], "licenses");
    assert_eq!(d.payload["data"]["attributes"]["key"], key);
    assert_eq!(d.payload["meta"]["ttl"], 2_592_000);
    assert_eq!(d.expiry(), Some(datetime!(2025-09-26 21:10:47.535 UTC)));
    assert!(
        d.is_expired(OffsetDateTime::now_utc()),
        "expired against today's clock"
    );
    assert!(!d.is_expired(datetime!(2025-09-01 0:00 UTC)));
    assert_eq!(
        decode(&file, &pk, Some("B10760-WRONG")).unwrap_err(),
        FileError::Undecryptable
    );
    // The independent reader reads it too, so both readers agree on the format.
    assert_eq!(python_reader(&file, &pk, key).unwrap(), d.payload);
}

#[tokio::test]
async fn a_file_carries_the_licenses_entitlements_as_keygen_includes_them() {
    let srv = TestServer::start().await;
    let product = srv.create_product_with("default", "pro", |p| {
        p.entitlements = vec!["PRO_EXPORT".into(), "CLOUD_SYNC".into()];
    });
    let admin_key = srv.create_api_key("default", Scope::CreateLicense, None);
    let l = srv
        .create_license(
            &admin_key,
            &product.id,
            json!({"entitlements": ["PRO_EXPORT"]}),
        )
        .await;
    let key = str_of(&l["key"]);
    let a = srv
        .post(
            CHECKOUT,
            &admin_key,
            json!({"licenseKey": key, "encrypt": false}),
        )
        .await;
    assert_status(&a, 200);
    let pk: [u8; 32] = product.signing_public_key.as_slice().try_into().unwrap();
    let d = decode(&certificate(&a), &pk, None).expect("the file verifies");
    assert_eq!(
        d.payload["data"]["relationships"]["entitlements"]["data"],
        json!([{"type": "entitlements", "id": "PRO_EXPORT"}])
    );
    let included: Vec<&Value> = d.payload["included"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "entitlements")
        .collect();
    assert_eq!(included.len(), 1, "{included:?}");
    assert_eq!(included[0]["attributes"]["code"], "PRO_EXPORT");
}

#[tokio::test]
async fn every_signed_answer_names_the_key_that_signed_it() {
    let s = Setup::new().await;
    let key = s.license(json!({"maxActivations": 1})).await;
    let kid = license_files::kid(&s.product.signing_public_key);
    // A success signed by its payload: the header and the file's meta.kid agree.
    let ok = s
        .checkout(json!({"licenseKey": key, "encrypt": false}))
        .await;
    assert_status(&ok, 200);
    assert_eq!(ok.header("x-keyward-key-id"), Some(kid.as_str()));
    let d = decode(&certificate(&ok), &s.public_key(), None).expect("verifies");
    assert_eq!(d.payload["meta"]["kid"], kid.as_str());
    // A refusal signed by the guard (it names its product) carries it too.
    let bound = s.license_file(json!({"key": key, "hwid": "HWID-A"})).await;
    assert_status(&bound, 200);
    assert_eq!(bound.header("x-keyward-key-id"), Some(kid.as_str()));
    let refused = s.license_file(json!({"key": key, "hwid": "HWID-B"})).await;
    assert_kv_error(&refused, 403, "HWID_MISMATCH");
    s.assert_signed(&refused);
    assert_eq!(refused.header("x-keyward-key-id"), Some(kid.as_str()));
}
