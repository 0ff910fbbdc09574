//! What the cases read: files, answers and lists from a live server, and what only this test
//! can sign.

use std::path::Path;
use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use keyward::crypto;
use keyward::domain::license_files::{self, FileKind};
use serde_json::{Value, json};

pub const MACHINE: &str = "recipe-machine-0001";
pub const NONCE: &str = "5f0c1d2e3a4b5c6d7e8f901a2b3c4d5e";
pub const KEYGEN_KEY: &str = "B10760-1B177D-656D1F-C03298-9AF89E-V3";
const KEYGEN_PUBLIC_KEY_HEX: &str =
    "e8601e48b69383ba520245fd07971e983d06d22c4257cfd82304601479cee788";

/// Everything the cases read, written once into a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub license: String,
    pub revoked_license: String,
    pub kid: String,
    /// The validation answer's headers.
    pub answer_signature: String,
    /// The revocation lists' signatures, before and after the revocation, and their versions.
    pub list_signatures: [String; 2],
    pub list_versions: [i64; 2],
    /// Test-held keys: A is pinned, B endorsed by A, C by B.
    pub rotation: [SigningKey; 3],
    /// The product's key after the live rotation: its kid and base64 public key.
    pub live: [String; 2],
}

impl Fixture {
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(build_fixture())
    })
}

pub fn b64(bytes: &[u8]) -> String {
    crypto::base64(bytes)
}

pub fn public_b64(key: &SigningKey) -> String {
    b64(key.verifying_key().as_bytes())
}

pub fn kid_of(key: &SigningKey) -> String {
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
    let [a, b, c] = signed_here(d, &license);

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

/// What the server cannot make: Keygen's file, key lists of rotations (good and forged), and
/// files signed with skewed clocks or by a rotated-in key. Returns the keys A, B and C.
fn signed_here(d: &Path, license: &str) -> [SigningKey; 3] {
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
        crafted_file(&c, license, -60, json!(3600)),
    );
    write(
        d,
        "future.lic",
        crafted_file(&a, license, 3600, json!(7200)),
    );
    write(d, "skewed.lic", crafted_file(&a, license, 240, json!(3600)));
    write(
        d,
        "expired.lic",
        crafted_file(&a, license, -7200, json!(3600)),
    );
    write(
        d,
        "forever.lic",
        crafted_file(&a, license, -400 * 86400, Value::Null),
    );
    [a, b, c]
}
