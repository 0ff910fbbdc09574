//! The client recipes under `examples/clients/` (Python, Node, Java 17, C) run against what a
//! live server hands out: license and machine files, a signed validation answer with its nonce,
//! revocation lists before and after a revocation. Files and key lists the server cannot make
//! (issued in the future, expired, signed by rotated keys) are signed here with keys this test
//! holds. Every recipe gets the same table of cases; a missing toolchain fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use keyward::crypto;
use keyward::domain::license_files::{self, FileKind};
use serde_json::{Value, json};

const MACHINE: &str = "recipe-machine-0001";
const NONCE: &str = "5f0c1d2e3a4b5c6d7e8f901a2b3c4d5e";
const KEYGEN_KEY: &str = "B10760-1B177D-656D1F-C03298-9AF89E-V3";
const KEYGEN_PUBLIC_KEY_HEX: &str =
    "e8601e48b69383ba520245fd07971e983d06d22c4257cfd82304601479cee788";

/// Everything the cases read, written once into a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    license: String,
    revoked_license: String,
    kid: String,
    /// The validation answer's headers.
    answer_signature: String,
    /// The revocation lists' signatures, before and after the revocation, and their versions.
    list_signatures: [String; 2],
    list_versions: [i64; 2],
    /// Test-held keys: A is pinned, B endorsed by A, C by B.
    rotation: [SigningKey; 3],
    /// The product's key after the live rotation: its kid and base64 public key.
    live: [String; 2],
}

impl Fixture {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(build_fixture())
    })
}

fn b64(bytes: &[u8]) -> String {
    crypto::base64(bytes)
}

fn public_b64(key: &SigningKey) -> String {
    b64(key.verifying_key().as_bytes())
}

fn kid_of(key: &SigningKey) -> String {
    license_files::kid(key.verifying_key().as_bytes())
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A license file signed by `key`, issued `issued_offset_secs` from now, with `ttl`.
fn crafted_file(
    key: &SigningKey,
    license_key: &str,
    issued_offset_secs: i64,
    ttl: Value,
) -> String {
    let issued = (time::OffsetDateTime::now_utc().unix_timestamp() + issued_offset_secs) * 1000;
    let payload = json!({
        "meta": {"issued": license_files::iso(issued), "expiry": null, "ttl": ttl, "kid": kid_of(key)},
        "data": {"type": "licenses", "id": "lic_crafted", "attributes": {"key": license_key, "status": "ACTIVE"}},
    });
    let aes_key = license_files::file_key(license_key, None);
    license_files::encode(
        FileKind::License,
        &payload,
        Some(&aes_key),
        &kid_of(key),
        |bytes| b64(&key.sign(bytes).to_bytes()),
    )
    .unwrap()
}

/// The same file with one character of its ciphertext changed (the armour stays valid).
fn tampered(file: &str) -> String {
    let lines: Vec<&str> = file.trim().lines().collect();
    let body: String = lines[1..lines.len() - 1].concat();
    let mut outer: Value = serde_json::from_slice(&crypto::from_base64(&body).unwrap()).unwrap();
    let enc = outer["enc"].as_str().unwrap().to_owned();
    let flipped = if enc.starts_with('A') { "B" } else { "A" };
    outer["enc"] = Value::String(format!("{flipped}{}", &enc[1..]));
    let armoured = b64(outer.to_string().as_bytes());
    let chunks: Vec<String> = armoured
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "{}\n{}\n{}\n",
        lines[0],
        chunks.join("\n"),
        lines[lines.len() - 1]
    )
}

/// An entry of a public-key answer's `keys`, endorsed by `endorser` over `endorsed_text`.
fn key_entry(
    key: &SigningKey,
    endorser: Option<(&SigningKey, &str)>,
    current: bool,
    retired: bool,
) -> Value {
    json!({
        "kid": kid_of(key),
        "publicKey": public_b64(key),
        "createdAt": "2026-01-01T00:00:00Z",
        "current": current,
        "retired": retired,
        "retiredAt": if retired { json!("2026-02-01T00:00:00Z") } else { Value::Null },
        "endorsement": endorser.map(|(by, text)| json!({
            "kid": kid_of(by),
            "signature": b64(&by.sign(format!("keyward-key-endorsement/{text}").as_bytes()).to_bytes()),
        })),
    })
}

fn key_list(current: &SigningKey, keys: Vec<Value>) -> Value {
    json!({"success": true, "publicKey": public_b64(current), "kid": kid_of(current), "keys": keys})
}

async fn build_fixture() -> Fixture {
    use keyward::domain::api_keys::{self, Scope};
    use keyward::domain::licenses::{self, LicenseTier, LicenseType, NewLicense};
    use keyward::domain::products::{self, KeyFormat, NewProduct, ProductType};
    use keyward::domain::tenants;

    let data = tempfile::tempdir().unwrap();
    let running = keyward::start(keyward::Config::for_data_dir(data.path()))
        .await
        .unwrap();
    let master = running.state.master.clone();
    let (api_key, admin_key, product_id, license, revoked_license) = running
        .state
        .db
        .write(move |c| {
            let tenant = tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
                .ok_or(keyward::error::Error::NotFound("default tenant"))?;
            let product = products::create(
                c,
                &master,
                &tenant.id,
                NewProduct {
                    name: "Recipe App".into(),
                    slug: "recipe-app".into(),
                    product_type: ProductType::Desktop,
                    default_license_type: LicenseType::Perpetual,
                    default_max_activations: 2,
                    key_format: KeyFormat::parse("RCP-XXXX-XXXX-XXXX-XXXX")?,
                    heartbeat: None,
                    entitlements: Vec::new(),
                },
            )?;
            let (_, api_key) = api_keys::create(
                c,
                &tenant.id,
                "recipes",
                Scope::CreateLicense,
                Some(&product.id),
            )?;
            // Rotating keys is an admin action: a FULL_ADMIN key, held to this product.
            let (_, admin_key) = api_keys::create(
                c,
                &tenant.id,
                "recipes admin",
                Scope::FullAdmin,
                Some(&product.id),
            )?;
            let new = || NewLicense {
                license_type: LicenseType::Perpetual,
                tier: LicenseTier::Personal,
                max_activations: 2,
                max_sessions: None,
                valid_until: None,
                plan: None,
                plan_days: None,
                customer_email: Some("buyer@example.com".into()),
                customer_name: Some("Recipe Buyer".into()),
                order_id: None,
                metadata: None,
                note: None,
                entitlements: Vec::new(),
            };
            let license = licenses::create(c, &product, &new())?;
            let revoked = licenses::create(c, &product, &new())?;
            Ok((
                api_key,
                admin_key,
                product.id.to_string(),
                license.key,
                revoked.key,
            ))
        })
        .await
        .unwrap();

    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("X-API-Key", &api_key)
            .json(&body)
            .send()
    };
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public: Value = get("/api/v1/updates/public-key?product=recipe-app")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_key = public["publicKey"]
        .as_str()
        .or(public["public_key"].as_str())
        .expect("the public key")
        .to_owned();
    let kid = license_files::kid(&crypto::from_base64(&public_key).unwrap());
    write(d, "trusted.json", json!([public_key]).to_string());

    let activated = post(
        "/api/v1/license/activate",
        json!({"licenseKey": license, "machineId": MACHINE, "machineName": "recipes"}),
    )
    .await
    .unwrap();
    assert_eq!(
        activated.status(),
        200,
        "{}",
        activated.text().await.unwrap()
    );

    for (name, body) in [
        ("license.lic", json!({"licenseKey": license})),
        (
            "license-plain.lic",
            json!({"licenseKey": license, "encrypt": false}),
        ),
        (
            "machine.lic",
            json!({"licenseKey": license, "machineId": MACHINE, "ttl": 604800}),
        ),
        (
            "machine-plain.lic",
            json!({"licenseKey": license, "machineId": MACHINE, "encrypt": false}),
        ),
    ] {
        let answer = post("/api/v1/license/checkout", body).await.unwrap();
        assert_eq!(answer.status(), 200, "checkout of {name}");
        let answer: Value = answer.json().await.unwrap();
        write(d, name, answer["certificate"].as_str().unwrap());
    }
    write(
        d,
        "license-tampered.lic",
        tampered(&std::fs::read_to_string(d.join("license.lic")).unwrap()),
    );

    let validated = post(
        "/api/v1/license/validate",
        json!({"licenseKey": license, "machineId": MACHINE, "nonce": NONCE}),
    )
    .await
    .unwrap();
    assert_eq!(validated.status(), 200);
    let answer_signature = header(&validated, "X-Signature");
    assert_eq!(header(&validated, "X-Keyward-Key-Id"), kid);
    let body = validated.bytes().await.unwrap().to_vec();
    // One bit of the license key inside the body: still JSON, no longer what was signed.
    let mut flipped = body.clone();
    let at = String::from_utf8_lossy(&body).find(&license).unwrap();
    flipped[at] ^= 0x01;
    write(d, "answer.json", &body);
    write(d, "answer-flipped.json", &flipped);

    let mut list_signatures = [String::new(), String::new()];
    let mut list_versions = [0, 0];
    for (i, step) in ["before", "after"].into_iter().enumerate() {
        if step == "after" {
            let revoked = post(
                "/api/v1/license/revoke",
                json!({"licenseKey": revoked_license, "reason": "refund"}),
            )
            .await
            .unwrap();
            assert_eq!(revoked.status(), 200);
        }
        let list = get("/api/v1/license/revocations?product=recipe-app")
            .await
            .unwrap();
        assert_eq!(list.status(), 200);
        list_signatures[i] = header(&list, "X-Signature");
        assert_eq!(header(&list, "X-Keyward-Key-Id"), kid);
        let body = list.bytes().await.unwrap().to_vec();
        list_versions[i] = serde_json::from_slice::<Value>(&body).unwrap()["version"]
            .as_i64()
            .unwrap();
        write(d, &format!("revocations-{step}.json"), &body);
    }
    assert!(list_versions[1] > list_versions[0], "{list_versions:?}");
    // A list whose version was raised by someone other than the server.
    let mut tampered_list = std::fs::read(d.join("revocations-after.json")).unwrap();
    let at = String::from_utf8_lossy(&tampered_list)
        .find("\"version\":")
        .unwrap();
    tampered_list[at + "\"version\":".len()] = b'9';
    write(d, "revocations-tampered.json", &tampered_list);

    // A live rotation: the product gets a new current key (endorsed by the pinned one), signs a
    // file with it, and retires the pinned key.
    let admin = |path: String| {
        http.post(format!("{base}{path}"))
            .header("X-API-Key", &admin_key)
            .send()
    };
    let rotated = admin(format!("/api/projects/{product_id}/signing-keys"))
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201, "{}", rotated.text().await.unwrap());
    let rotated: Value = rotated.json().await.unwrap();
    let live_kid = rotated["data"]["key"]["kid"].as_str().unwrap().to_owned();
    let checkout = post("/api/v1/license/checkout", json!({"licenseKey": license}))
        .await
        .unwrap();
    assert_eq!(checkout.status(), 200);
    let checkout: Value = checkout.json().await.unwrap();
    write(
        d,
        "live-rotated.lic",
        checkout["certificate"].as_str().unwrap(),
    );
    let retired = admin(format!(
        "/api/projects/{product_id}/signing-keys/{kid}/retire"
    ))
    .await
    .unwrap();
    assert_eq!(retired.status(), 200, "{}", retired.text().await.unwrap());
    let keys = get("/api/v1/updates/public-key?product=recipe-app")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(listed["kid"], json!(live_kid), "{keys}");
    let live_public_key = listed["publicKey"].as_str().unwrap().to_owned();
    write(d, "keys-live.json", &keys);
    write(d, "trusted-live.json", json!([live_public_key]).to_string());
    running.stop().await.unwrap();
    drop(data);

    // Keygen's published file and its account key.
    write(
        d,
        "keygen-trusted.json",
        json!([b64(&hex::decode(KEYGEN_PUBLIC_KEY_HEX).unwrap())]).to_string(),
    );
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keygen-example-license.lic"),
        d.join("keygen.lic"),
    )
    .unwrap();

    // Rotation: A pinned; B endorsed by A; C by B; D listed without endorsement; E "endorsed"
    // by A over another key's text; F endorsed by D, which nobody trusts; G endorsed by A but
    // listed under a kid that is not its own.
    let key = |seed: u8| SigningKey::from_bytes(&[seed; 32]);
    let [a, b, c, dk, e, f, g] = [1, 2, 3, 4, 5, 6, 7].map(key);
    write(d, "trusted-a.json", json!([public_b64(&a)]).to_string());
    write(d, "trusted-c.json", json!([public_b64(&c)]).to_string());
    let lists = [
        (
            "keys-chain.json",
            key_list(
                &c,
                vec![
                    key_entry(&a, None, false, true),
                    key_entry(&b, Some((&a, &public_b64(&b))), false, true),
                    key_entry(&c, Some((&b, &public_b64(&c))), true, false),
                ],
            ),
        ),
        (
            "keys-unchanged.json",
            key_list(&a, vec![key_entry(&a, None, true, false)]),
        ),
        (
            "keys-unendorsed.json",
            key_list(
                &dk,
                vec![
                    key_entry(&a, None, false, false),
                    key_entry(&dk, None, true, false),
                ],
            ),
        ),
        (
            "keys-bad-endorsement.json",
            key_list(
                &e,
                vec![
                    key_entry(&a, None, false, false),
                    key_entry(&e, Some((&a, &public_b64(&dk))), true, false),
                ],
            ),
        ),
        (
            "keys-untrusted-endorser.json",
            key_list(
                &f,
                vec![
                    key_entry(&a, None, false, false),
                    key_entry(&dk, None, false, false),
                    key_entry(&f, Some((&dk, &public_b64(&f))), true, false),
                ],
            ),
        ),
        ("keys-wrong-kid.json", {
            let mut entry = key_entry(&g, Some((&a, &public_b64(&g))), true, false);
            entry["kid"] = json!(kid_of(&a));
            key_list(&g, vec![key_entry(&a, None, false, false), entry])
        }),
    ];
    for (name, list) in lists {
        write(d, name, list.to_string());
    }

    // Files signed by C (after the rotation) and by A with skewed clocks.
    write(
        d,
        "rotated.lic",
        crafted_file(&c, &license, -60, json!(3600)),
    );
    write(
        d,
        "future.lic",
        crafted_file(&a, &license, 3600, json!(7200)),
    );
    write(
        d,
        "skewed.lic",
        crafted_file(&a, &license, 240, json!(3600)),
    );
    write(
        d,
        "expired.lic",
        crafted_file(&a, &license, -7200, json!(3600)),
    );
    write(
        d,
        "forever.lic",
        crafted_file(&a, &license, -400 * 86400, Value::Null),
    );

    Fixture {
        dir,
        license,
        revoked_license,
        kid,
        answer_signature,
        list_signatures,
        list_versions,
        rotation: [a, b, c],
        live: [live_kid, live_public_key],
    }
}

/// One case: the recipe's arguments, the clock it runs at, and what it must print.
struct Case {
    name: &'static str,
    args: Vec<String>,
    now: Option<&'static str>,
    /// `Some(code)`: refused with that `error`; `None`: accepted.
    refused: Option<&'static str>,
    /// JSON pointer → expected value in the printed line.
    expect: Vec<(&'static str, Value)>,
}

fn cases(fx: &Fixture) -> Vec<Case> {
    let p = |name: &str| fx.path(name);
    let s = |v: &str| v.to_owned();
    let lic = fx.license.clone();
    let [a, b, c] = &fx.rotation;
    let accepted = |name, args: Vec<String>, expect| Case {
        name,
        args,
        now: None,
        refused: None,
        expect,
    };
    let refused = |name, args: Vec<String>, code| Case {
        name,
        args,
        now: None,
        refused: Some(code),
        expect: Vec::new(),
    };
    let file = |trust: &str, name: &str, key: &str, fp: Option<&str>| {
        let mut args = vec![s("file"), p(trust), p(name), s(key)];
        args.extend(fp.map(s));
        args
    };
    let answer = |trust: &str, body: &str, nonce: &str| {
        vec![
            s("answer"),
            p(trust),
            p(body),
            fx.answer_signature.clone(),
            fx.kid.clone(),
            s(nonce),
        ]
    };
    let rotate = |trust: &str, list: &str| vec![s("rotate"), p(trust), p(list)];
    let revoked = |list: &str, sig: usize, key: &str, last_seen: i64| {
        vec![
            s("revoked"),
            p("trusted.json"),
            p(list),
            fx.list_signatures[sig].clone(),
            fx.kid.clone(),
            s(key),
            last_seen.to_string(),
        ]
    };
    let data_key = "/payload/data/attributes/key";
    vec![
        accepted(
            "license file (encrypted) is verified and decrypted",
            file("trusted.json", "license.lic", &lic, None),
            vec![
                ("/kind", json!("license")),
                ("/kid", json!(fx.kid)),
                (data_key, json!(lic)),
                ("/payload/data/attributes/status", json!("ACTIVE")),
                ("/payload/meta/kid", json!(fx.kid)),
                ("/payload/meta/ttl", json!(2_592_000)),
            ],
        ),
        accepted(
            "license file (plain) is verified",
            file("trusted.json", "license-plain.lic", &lic, None),
            vec![("/kind", json!("license")), (data_key, json!(lic))],
        ),
        accepted(
            "machine file is decrypted with key + fingerprint",
            file("trusted.json", "machine.lic", &lic, Some(MACHINE)),
            vec![
                ("/kind", json!("machine")),
                (data_key, json!(lic)),
                ("/payload/included/1/type", json!("machines")),
                ("/payload/included/1/attributes/fingerprint", json!(MACHINE)),
                ("/payload/meta/ttl", json!(604_800)),
            ],
        ),
        accepted(
            "machine file (plain) is verified",
            file("trusted.json", "machine-plain.lic", &lic, Some(MACHINE)),
            vec![("/kind", json!("machine"))],
        ),
        refused(
            "machine file for another machine does not decrypt",
            file(
                "trusted.json",
                "machine.lic",
                &lic,
                Some("another-machine-0002"),
            ),
            "UNDECRYPTABLE",
        ),
        refused(
            "machine file without its fingerprint does not decrypt",
            file("trusted.json", "machine.lic", &lic, None),
            "UNDECRYPTABLE",
        ),
        refused(
            "license file with another license key does not decrypt",
            file("trusted.json", "license.lic", &fx.revoked_license, None),
            "UNDECRYPTABLE",
        ),
        refused(
            "plain license file of another license",
            file(
                "trusted.json",
                "license-plain.lic",
                &fx.revoked_license,
                None,
            ),
            "WRONG_LICENSE",
        ),
        refused(
            "plain machine file of another machine",
            file(
                "trusted.json",
                "machine-plain.lic",
                &lic,
                Some("another-machine-0002"),
            ),
            "WRONG_MACHINE",
        ),
        refused(
            "tampered license file is refused",
            file("trusted.json", "license-tampered.lic", &lic, None),
            "BAD_SIGNATURE",
        ),
        refused(
            "license file signed by a key that is not trusted",
            file("trusted-a.json", "license.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        Case {
            now: Some("2025-09-01T00:00:00Z"),
            ..accepted(
                "Keygen's published file is verified and decrypted (at a date within its TTL)",
                file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
                vec![("/kind", json!("license")), (data_key, json!(KEYGEN_KEY))],
            )
        },
        refused(
            "Keygen's published file is expired today",
            file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
            "EXPIRED",
        ),
        Case {
            now: Some("2025-08-27T21:00:00Z"),
            ..refused(
                "Keygen's file before its issue date (beyond 5 minutes of skew)",
                file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
                "NOT_YET_VALID",
            )
        },
        refused(
            "file issued an hour in the future",
            file("trusted-a.json", "future.lic", &lic, None),
            "NOT_YET_VALID",
        ),
        accepted(
            "file issued 4 minutes in the future (within the skew)",
            file("trusted-a.json", "skewed.lic", &lic, None),
            vec![("/kid", json!(kid_of(a)))],
        ),
        refused(
            "file whose TTL has passed",
            file("trusted-a.json", "expired.lic", &lic, None),
            "EXPIRED",
        ),
        accepted(
            "file without TTL never expires",
            file("trusted-a.json", "forever.lic", &lic, None),
            vec![("/payload/meta/ttl", Value::Null)],
        ),
        accepted(
            "signed validation answer with its nonce",
            answer("trusted.json", "answer.json", NONCE),
            vec![
                ("/body/valid", json!(true)),
                ("/body/nonce", json!(NONCE)),
                ("/body/code", json!("VALID")),
            ],
        ),
        refused(
            "validation answer for another nonce (a replay)",
            answer("trusted.json", "answer.json", "another-nonce-0001"),
            "NONCE_MISMATCH",
        ),
        refused(
            "validation answer with one flipped byte",
            answer("trusted.json", "answer-flipped.json", NONCE),
            "BAD_SIGNATURE",
        ),
        refused(
            "validation answer from a key that is not trusted",
            answer("trusted-a.json", "answer.json", NONCE),
            "UNKNOWN_KID",
        ),
        accepted(
            "rotation A → B → C followed through the endorsements; retired keys dropped",
            rotate("trusted-a.json", "keys-chain.json"),
            vec![
                ("/trusted", json!([public_b64(c)])),
                ("/accepted", json!([kid_of(b), kid_of(c)])),
                ("/dropped", json!([kid_of(a), kid_of(b)])),
            ],
        ),
        accepted(
            "a key list without a new key changes nothing",
            rotate("trusted-a.json", "keys-unchanged.json"),
            vec![
                ("/trusted", json!([public_b64(a)])),
                ("/accepted", json!([])),
            ],
        ),
        refused(
            "a key the server lists without endorsement is not trusted",
            rotate("trusted-a.json", "keys-unendorsed.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "an endorsement over another key's text is not trusted",
            rotate("trusted-a.json", "keys-bad-endorsement.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "an endorsement by an untrusted listed key is not trusted",
            rotate("trusted-a.json", "keys-untrusted-endorser.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "a key listed under another kid is not trusted",
            rotate("trusted-a.json", "keys-wrong-kid.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "a file signed by the rotated-in key, before the rotation",
            file("trusted-a.json", "rotated.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        accepted(
            "a file signed by the rotated-in key, after the rotation",
            file("trusted-c.json", "rotated.lic", &lic, None),
            vec![("/kid", json!(kid_of(c))), (data_key, json!(lic))],
        ),
        refused(
            "live: a file signed after the server rotated its key, with the pinned key alone",
            file("trusted.json", "live-rotated.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        accepted(
            "live: the server's key list moves the trust set to the endorsed key, dropping the retired one",
            rotate("trusted.json", "keys-live.json"),
            vec![
                ("/trusted", json!([fx.live[1]])),
                ("/accepted", json!([fx.live[0]])),
                ("/dropped", json!([fx.kid])),
            ],
        ),
        accepted(
            "live: the file signed after the rotation verifies with the rotated trust set",
            file("trusted-live.json", "live-rotated.lic", &lic, None),
            vec![
                ("/kid", json!(fx.live[0])),
                ("/payload/meta/kid", json!(fx.live[0])),
                (data_key, json!(lic)),
            ],
        ),
        accepted(
            "a license not on the revocation list",
            revoked("revocations-after.json", 1, &lic, fx.list_versions[1]),
            vec![
                ("/version", json!(fx.list_versions[1])),
                ("/revoked", json!(false)),
            ],
        ),
        refused(
            "a revoked license is refused",
            revoked(
                "revocations-after.json",
                1,
                &fx.revoked_license,
                fx.list_versions[0],
            ),
            "REVOKED",
        ),
        refused(
            "a revoked license typed in lower case is refused",
            revoked(
                "revocations-after.json",
                1,
                &format!(" {} ", fx.revoked_license.to_lowercase()),
                0,
            ),
            "REVOKED",
        ),
        refused(
            "an older list (replayed) is refused once a newer one was seen",
            revoked(
                "revocations-before.json",
                0,
                &fx.revoked_license,
                fx.list_versions[1],
            ),
            "STALE_LIST",
        ),
        accepted(
            "the older list is accepted before the newer one was seen",
            revoked(
                "revocations-before.json",
                0,
                &fx.revoked_license,
                fx.list_versions[0],
            ),
            vec![("/version", json!(fx.list_versions[0]))],
        ),
        refused(
            "a tampered revocation list is refused",
            revoked("revocations-tampered.json", 1, &fx.revoked_license, 0),
            "BAD_SIGNATURE",
        ),
    ]
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clients")
}

/// Runs a tool's `--version` (or similar); the test fails, never skips, when it is missing.
fn require(program: &str, args: &[&str], install: &str) {
    let ok = Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{program} {}` failed: install {install} (./test.sh does)",
        args.join(" ")
    );
}

fn run_cases(language: &str, program: &str, prefix: &[String]) {
    let fx = fixture();
    let mut failures = Vec::new();
    for case in cases(fx) {
        let mut command = Command::new(program);
        command.args(prefix).args(&case.args);
        match case.now {
            Some(now) => command.env("KEYWARD_CLIENT_NOW", now),
            None => command.env_remove("KEYWARD_CLIENT_NOW"),
        };
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = |why: String| {
            format!(
                "{language}: {}: {why}\n  args: {:?}\n  stdout: {stdout}\n  stderr: {}",
                case.name,
                case.args,
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let printed: Value = match stdout.lines().last().map(serde_json::from_str) {
            Some(Ok(v)) => v,
            _ => {
                failures.push(report("did not print one JSON line".into()));
                continue;
            }
        };
        let code = out.status.code();
        let problem = match case.refused {
            None if code != Some(0) || printed["ok"] != json!(true) => {
                Some(format!("expected acceptance, got exit {code:?}"))
            }
            Some(error) if code != Some(1) || printed["error"] != json!(error) => Some(format!(
                "expected refusal {error} with exit 1, got exit {code:?}"
            )),
            _ => case.expect.iter().find_map(|(pointer, want)| {
                let got = printed.pointer(pointer);
                (got != Some(want)).then(|| format!("{pointer}: expected {want}, got {got:?}"))
            }),
        };
        failures.extend(problem.map(report));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn python_recipe() {
    require(
        "python3",
        &["-c", "import cryptography"],
        "python3 and its `cryptography` package",
    );
    let script = examples_dir().join("python/keyward_client.py");
    run_cases("python", "python3", &[script.display().to_string()]);
}

#[test]
fn node_recipe() {
    require(
        "node",
        &["--version"],
        "Node.js 18 or later (Debian: nodejs)",
    );
    let script = examples_dir().join("node/keyward_client.mjs");
    run_cases("node", "node", &[script.display().to_string()]);
}

#[test]
fn java_recipe() {
    require(
        "javac",
        &["-version"],
        "a JDK 17 (Debian: openjdk-17-jdk-headless)",
    );
    let source = examples_dir().join("java/KeywardClient.java");
    // The README runs it with the source launcher; the cases run the compiled class, which
    // starts several times faster.
    let classes = tempfile::tempdir().unwrap();
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let fx = fixture();
    let launched = Command::new("java")
        .arg(&source)
        .args([
            "file",
            &fx.path("trusted.json"),
            &fx.path("license.lic"),
            &fx.license,
        ])
        .output()
        .unwrap();
    assert!(
        launched.status.success()
            && String::from_utf8_lossy(&launched.stdout).contains(&fx.license),
        "java KeywardClient.java: {}{}",
        String::from_utf8_lossy(&launched.stdout),
        String::from_utf8_lossy(&launched.stderr)
    );
    run_cases(
        "java",
        "java",
        &[
            "-XX:TieredStopAtLevel=1".into(),
            "-cp".into(),
            classes.path().display().to_string(),
            "KeywardClient".into(),
        ],
    );
}

#[test]
fn c_recipe() {
    require("cc", &["--version"], "a C compiler (Debian: gcc)");
    require(
        "pkg-config",
        &["--exists", "libcrypto", "libcjson"],
        "pkg-config, libssl-dev and libcjson-dev",
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("keyward_client");
    // The build command the recipe's header gives.
    let built = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cc -O2 -Wall -Werror -o '{}' keyward_client.c $(pkg-config --cflags --libs libcrypto libcjson)",
            binary.display()
        ))
        .current_dir(examples_dir().join("c"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    run_cases("c", &binary.display().to_string(), &[]);
}
