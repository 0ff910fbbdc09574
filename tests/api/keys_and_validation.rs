//! The key/HWID face against a real server: `/api/keys`, `/api/api-keys`, `/api/validate`
//! (plain and AES-256-GCM envelope: HWID binding, plan clocks, sessions, nonce rotation,
//! signatures), `/api/telegram`, `/api/logs`, `/api/stats`, `/api/admin`, `/api/heartbeat`,
//! rate limits, bad input, the cross-face view (a key made here validates through the vendor
//! API and vice versa) and the contract's own Python example.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::*;
use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

const PROJECTS: &str = "/api/projects";
const KEYS: &str = "/api/keys";
const API_KEYS: &str = "/api/api-keys";
const VALIDATE: &str = "/api/validate";
const TELEGRAM: &str = "/api/telegram";
const LOGS: &str = "/api/logs";
const STATS: &str = "/api/stats";
const VENDOR_VALIDATE: &str = "/api/v1/license/validate";

// ---- harness ----------------------------------------------------------------------------

/// A server with its first operator (ADMIN) logged in.
struct Kv {
    srv: TestServer,
    /// The ADMIN's session token.
    admin: String,
}

impl Kv {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut keyward::Config)) -> Self {
        let srv = TestServer::start_with(tune).await;
        let admin = setup_admin(&srv).await.token;
        Self { srv, admin }
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        send(&self.srv, Method::GET, path, Cred::Bearer(token), None, &[]).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
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

    async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        send(
            &self.srv,
            Method::PATCH,
            path,
            Cred::Bearer(token),
            Some(body),
            &[],
        )
        .await
    }

    async fn delete(&self, path: &str, token: &str) -> Answer {
        send(
            &self.srv,
            Method::DELETE,
            path,
            Cred::Bearer(token),
            None,
            &[],
        )
        .await
    }

    /// An unauthenticated POST (what apps and bots send).
    async fn public(&self, path: &str, body: Value) -> Answer {
        send(&self.srv, Method::POST, path, Cred::None, Some(body), &[]).await
    }

    async fn validate(&self, body: Value) -> Answer {
        self.public(VALIDATE, body).await
    }

    async fn telegram(&self, body: Value) -> Answer {
        self.public(TELEGRAM, body).await
    }

    /// A USER operator in a workspace of its own, logged in.
    async fn user(&self, email: &str) -> String {
        let a = self
            .post(
                REGISTER,
                &self.admin,
                json!({"email": email, "password": PASSWORD, "role": "USER"}),
            )
            .await;
        assert_status(&a, 201);
        assert_eq!(a.body["data"]["user"]["role"], "USER");
        login(&self.srv, email, PASSWORD).await
    }

    /// Creates a project; returns `data.project` (with `id`, `secret`, `encryptionKey`,
    /// `publicKey`).
    async fn project(&self, token: &str, name: &str) -> Value {
        let a = self.post(PROJECTS, token, json!({"name": name})).await;
        assert_status(&a, 201);
        let p = a.body["data"]["project"].clone();
        assert!(
            p["id"].is_string() && p["secret"].is_string(),
            "project: {p}"
        );
        p
    }

    async fn patch_project(&self, token: &str, id: &str, body: Value) -> Value {
        let a = self.patch(&format!("{PROJECTS}/{id}"), token, body).await;
        assert_status(&a, 200);
        a.body["data"]["project"].clone()
    }

    /// Generates keys; returns `data.keys` (asserting 201).
    async fn keys(&self, token: &str, body: Value) -> Vec<Value> {
        let a = self.post(KEYS, token, body).await;
        assert_status(&a, 201);
        assert_eq!(a.body["success"], true);
        a.body["data"]["keys"].as_array().expect("keys").clone()
    }

    /// One key of `plan` in `project_id`.
    async fn key(&self, project_id: &str, plan: &str) -> Value {
        self.keys(&self.admin, json!({"plan": plan, "projectId": project_id}))
            .await
            .remove(0)
    }

    /// GET /api/keys/:id as the ADMIN; returns `data`.
    async fn detail(&self, key_id: &str) -> Value {
        let a = self.get(&format!("{KEYS}/{key_id}"), &self.admin).await;
        assert_status(&a, 200);
        a.body["data"].clone()
    }

    /// GET /api/keys with a query string; returns `data`.
    async fn list(&self, token: &str, query: &str) -> Value {
        let a = self.get(&format!("{KEYS}?{query}"), token).await;
        assert_status(&a, 200);
        a.body["data"].clone()
    }

    /// An API key of the ADMIN's workspace (through the admin API): (id, whole key).
    async fn api_key(&self, scope: &str) -> (String, String) {
        let a = self
            .post(
                API_KEYS,
                &self.admin,
                json!({"name": "app", "scope": scope}),
            )
            .await;
        assert_status(&a, 201);
        (
            str_of(&a.body["data"]["apiKey"]["id"]),
            str_of(&a.body["data"]["key"]),
        )
    }

    /// Validates `key` on `hwid` and asserts success; returns `data`.
    async fn validate_ok(&self, key: &str, hwid: &str) -> Value {
        let a = self.validate(json!({"key": key, "hwid": hwid})).await;
        assert_status(&a, 200);
        a.body["data"].clone()
    }

    fn db(&self) -> rusqlite::Connection {
        self.srv.db()
    }

    fn count(&self, sql: &str, params: impl rusqlite::Params) -> i64 {
        self.srv.count(sql, params)
    }
}

#[track_caller]
fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["success"], Value::Bool(false), "envelope: {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "a non-empty error string: {body}"
    );
    assert_eq!(body["code"], code, "error code: {body}");
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|k| str_of(&k["id"]))
        .collect()
}

/// `count` of the entry named `name` in a `[{name, count}]` list (0 when absent).
fn named_count(list: &Value, name: &str) -> u64 {
    list.as_array()
        .expect("an array")
        .iter()
        .find(|e| e["name"] == name)
        .map_or(0, |e| e["count"].as_u64().expect("a count"))
}

/// Polls `check` until it holds (audit events of refusals are written behind the answer).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..150 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---- envelope ---------------------------------------------------------------------------

/// base64(12-byte IV ‖ AES-256-GCM ciphertext ‖ 16-byte tag), no associated data.
fn seal(key_b64: &str, plaintext: &[u8]) -> String {
    let key = B64.decode(key_b64).expect("base64 key");
    let cipher = Aes256Gcm::new_from_slice(&key).expect("a 32-byte key");
    let iv: [u8; 12] = rand::random();
    let mut out = iv.to_vec();
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&iv), plaintext)
            .expect("encrypts"),
    );
    B64.encode(out)
}

/// Decrypts an answer's `payload` and parses the JSON inside.
#[track_caller]
fn unseal(key_b64: &str, payload: &Value) -> Value {
    let key = B64.decode(key_b64).expect("base64 key");
    let sealed = B64
        .decode(payload.as_str().expect("a payload string"))
        .expect("payload is base64");
    assert!(sealed.len() > 28, "IV + tag at least");
    let cipher = Aes256Gcm::new_from_slice(&key).expect("a 32-byte key");
    let plain = cipher
        .decrypt(Nonce::from_slice(&sealed[..12]), &sealed[12..])
        .expect("the answer decrypts with the project's key");
    serde_json::from_slice(&plain).expect("the decrypted answer is JSON")
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The plaintext of an envelope: `{key, hwid, timestamp, requestId}` plus `extra`.
fn envelope_plaintext(key: &str, hwid: &str, extra: Value) -> Value {
    let mut m = json!({
        "key": key,
        "hwid": hwid,
        "timestamp": OffsetDateTime::now_utc().unix_timestamp(),
        "requestId": request_id(),
    });
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

impl Kv {
    /// Sends an envelope for `project`; returns the answer and, when it carries a payload,
    /// the decrypted inner answer.
    async fn envelope(&self, project: &Value, plaintext: &Value) -> (Answer, Option<Value>) {
        let enc = str_of(&project["encryptionKey"]);
        let payload = seal(&enc, plaintext.to_string().as_bytes());
        let a = self
            .validate(json!({"projectId": project["id"], "payload": payload}))
            .await;
        let inner = a.body.get("payload").map(|p| unseal(&enc, p));
        (a, inner)
    }
}

// ---- /api/keys --------------------------------------------------------------------------

#[tokio::test]
async fn generating_keys_obeys_counts_plans_ranges_and_project_defaults() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let pid = str_of(&p["id"]);

    let keys = kv
        .keys(&kv.admin, json!({"plan": "WEEKLY", "projectId": pid}))
        .await;
    assert_eq!(keys.len(), 1, "count defaults to 1");
    let k = &keys[0];
    assert_eq!(k["status"], "ACTIVE");
    assert_eq!(k["plan"], "WEEKLY");
    assert_eq!(k["projectId"], pid.as_str());
    assert_eq!(k["maxActivations"], 1, "HWID locked by default: {k}");
    assert_eq!(k["hwidLocked"], true);
    assert_eq!(k["maxSessions"], 1);
    assert_eq!(k["expiresAt"], Value::Null, "the clock starts at first use");
    assert_eq!(k["hwid"], Value::Null);
    assert_eq!(k["activations"], 0);
    assert_eq!(k["note"], Value::Null);
    let key = str_of(&k["key"]);
    let groups: Vec<&str> = key.split('-').collect();
    assert!(
        groups.len() == 4
            && groups.iter().all(|g| g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())),
        "format XXXX-XXXX-XXXX-XXXX: {key}"
    );

    let fifty = kv
        .keys(
            &kv.admin,
            json!({"plan": "MONTHLY", "count": 50, "projectId": pid, "note": "batch"}),
        )
        .await;
    assert_eq!(fifty.len(), 50);
    let distinct: BTreeSet<String> = fifty.iter().map(|k| str_of(&k["key"])).collect();
    assert_eq!(distinct.len(), 50, "50 distinct keys");
    assert!(fifty.iter().all(|k| k["note"] == "batch"));

    let bad = [
        (json!({"plan": "WEEKLY", "count": 51}), "count"),
        (json!({"plan": "WEEKLY", "count": 0}), "count"),
        (json!({"plan": "CUSTOM"}), "customDays"),
        (json!({"plan": "CUSTOM", "customDays": 0}), "customDays"),
        (json!({"plan": "CUSTOM", "customDays": 3651}), "customDays"),
        (json!({"plan": "WEEKLY", "maxSessions": 0}), "maxSessions"),
        (json!({"plan": "WEEKLY", "maxSessions": 101}), "maxSessions"),
        (json!({"plan": "WEEKLY", "note": "n".repeat(501)}), "note"),
        (json!({"plan": "YEARLY"}), "plan"),
        (json!({"count": 1}), "plan"),
    ];
    for (mut body, field) in bad {
        body["projectId"] = json!(pid);
        let a = kv.post(KEYS, &kv.admin, body.clone()).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", field);
    }
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM licenses WHERE product_id = ?1",
            [&pid]
        ),
        51,
        "refused requests create nothing"
    );

    for plan in ["DAILY", "WEEKLY", "MONTHLY", "LIFETIME"] {
        let k = kv.key(&pid, plan).await;
        assert_eq!(k["plan"], plan);
        assert_eq!(k["customDays"], Value::Null);
        assert_eq!(k["expiresAt"], Value::Null);
    }
    let custom = kv
        .keys(
            &kv.admin,
            json!({"plan": "CUSTOM", "customDays": 90, "projectId": pid}),
        )
        .await;
    assert_eq!(custom[0]["plan"], "CUSTOM");
    assert_eq!(custom[0]["customDays"], 90);
    for days in [1, 3650] {
        let k = kv
            .keys(
                &kv.admin,
                json!({"plan": "CUSTOM", "customDays": days, "projectId": pid}),
            )
            .await;
        assert_eq!(k[0]["customDays"], days);
    }
    for n in [1, 100] {
        let k = kv
            .keys(
                &kv.admin,
                json!({"plan": "DAILY", "maxSessions": n, "projectId": pid}),
            )
            .await;
        assert_eq!(k[0]["maxSessions"], n);
    }
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "DAILY", "note": "x".repeat(500), "projectId": pid}),
        )
        .await;
    assert_eq!(k[0]["note"].as_str().map(str::len), Some(500));

    // A project allowing more machines makes keys that are not HWID locked.
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"defaultMaxActivations": 3}))
        .await;
    assert_eq!(p["defaultMaxActivations"], 3);
    let k = kv.key(&pid, "WEEKLY").await;
    assert_eq!(k["maxActivations"], 3);
    assert_eq!(k["hwidLocked"], false);

    let a = kv
        .post(
            KEYS,
            &kv.admin,
            json!({"plan": "WEEKLY", "projectId": "prd_doesnotexist0000000"}),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
}

#[tokio::test]
async fn keys_without_a_project_go_to_one_default_project_per_workspace() {
    let kv = Kv::start().await;
    let first = kv.keys(&kv.admin, json!({"plan": "WEEKLY"})).await;
    let second = kv
        .keys(&kv.admin, json!({"plan": "DAILY", "count": 2}))
        .await;
    let default_id = str_of(&first[0]["projectId"]);
    assert!(second.iter().all(|k| k["projectId"] == default_id.as_str()));
    let a = kv.get(&format!("{PROJECTS}/{default_id}"), &kv.admin).await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["project"]["name"], "Default");
    assert_eq!(a.body["data"]["project"]["keyCount"], 3);
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM products WHERE name = 'Default'", []),
        1,
        "created once and reused"
    );
    assert_eq!(first[0]["maxActivations"], 1);
    assert_eq!(first[0]["hwidLocked"], true);

    // Another workspace gets a Default project of its own.
    let user = kv.user("user@example.com").await;
    let theirs = kv.keys(&user, json!({"plan": "WEEKLY"})).await;
    assert_ne!(theirs[0]["projectId"], default_id.as_str());
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM products WHERE name = 'Default'", []),
        2
    );
}

#[tokio::test]
async fn listing_keys_filters_searches_and_paginates() {
    let kv = Kv::start().await;
    let a = str_of(&kv.project(&kv.admin, "Alpha").await["id"]);
    let b = str_of(&kv.project(&kv.admin, "Beta").await["id"]);
    let weekly = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "count": 3, "projectId": a, "note": "VIP client alpha"}),
        )
        .await;
    let monthly = kv
        .keys(
            &kv.admin,
            json!({"plan": "MONTHLY", "count": 2, "projectId": a}),
        )
        .await;
    let lifetime = kv
        .keys(
            &kv.admin,
            json!({"plan": "LIFETIME", "projectId": b, "note": "reseller"}),
        )
        .await;

    let data = kv.list(&kv.admin, &format!("projectId={a}")).await;
    assert_eq!(data["keys"].as_array().unwrap().len(), 5);
    assert_eq!(data["pagination"]["total"], 5);
    assert_eq!(data["pagination"]["page"], 1);
    assert!(
        data["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["projectId"] == a.as_str())
    );
    let data = kv.list(&kv.admin, "plan=MONTHLY").await;
    assert_eq!(ids(&data["keys"]), ids(&json!(monthly)));
    let data = kv
        .list(&kv.admin, &format!("projectId={a}&plan=WEEKLY"))
        .await;
    assert_eq!(ids(&data["keys"]), ids(&json!(weekly)));
    let data = kv.list(&kv.admin, &format!("projectId={b}")).await;
    assert_eq!(ids(&data["keys"]), ids(&json!(lifetime)));

    // Status filter.
    let banned = str_of(&weekly[0]["id"]);
    let r = kv
        .patch(
            &format!("{KEYS}/{banned}"),
            &kv.admin,
            json!({"status": "BANNED"}),
        )
        .await;
    assert_status(&r, 200);
    let data = kv.list(&kv.admin, "status=BANNED").await;
    assert_eq!(ids(&data["keys"]), BTreeSet::from([banned.clone()]));
    let data = kv
        .list(&kv.admin, &format!("status=ACTIVE&projectId={a}"))
        .await;
    assert_eq!(data["pagination"]["total"], 4);
    assert!(!ids(&data["keys"]).contains(&banned));

    // Search by key prefix, in any case.
    let target = &monthly[1];
    let prefix = str_of(&target["key"])[..9].to_owned();
    for q in [prefix.clone(), prefix.to_lowercase()] {
        let data = kv.list(&kv.admin, &format!("search={q}")).await;
        assert_eq!(
            ids(&data["keys"]),
            BTreeSet::from([str_of(&target["id"])]),
            "search {q}"
        );
    }
    // Search by the prefix of a bound HWID.
    let hwid_key = &weekly[1];
    kv.validate_ok(&str_of(&hwid_key["key"]), "HWIDSEARCH-0001-abcdef")
        .await;
    let data = kv.list(&kv.admin, "search=HWIDSEARCH-00").await;
    assert_eq!(
        ids(&data["keys"]),
        BTreeSet::from([str_of(&hwid_key["id"])])
    );
    assert_eq!(data["keys"][0]["hwid"], "HWIDSEARCH-0001-abcdef");
    assert_eq!(data["keys"][0]["activations"], 1);
    // Search by a part of the note.
    let data = kv.list(&kv.admin, "search=client%20al").await;
    assert_eq!(ids(&data["keys"]), ids(&json!(weekly)));
    let data = kv.list(&kv.admin, "search=sell").await;
    assert_eq!(ids(&data["keys"]), ids(&json!(lifetime)));
    let data = kv.list(&kv.admin, "search=nothing-matches-this").await;
    assert_eq!(data["pagination"]["total"], 0);

    // Pagination: newest first, pages disjoint and complete.
    let mut seen = BTreeSet::new();
    for page in 1..=3 {
        let data = kv
            .list(&kv.admin, &format!("projectId={a}&limit=2&page={page}"))
            .await;
        let p = &data["pagination"];
        assert_eq!(p["page"], page);
        assert_eq!(p["limit"], 2);
        assert_eq!(p["total"], 5);
        assert_eq!(p["totalPages"], 3);
        let got = ids(&data["keys"]);
        assert_eq!(got.len(), if page < 3 { 2 } else { 1 });
        assert!(got.is_disjoint(&seen), "pages do not overlap");
        seen.extend(got);
    }
    assert_eq!(seen.len(), 5);
    let all = kv.list(&kv.admin, "").await;
    let created: Vec<OffsetDateTime> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| parse_time(&k["createdAt"]))
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    assert_eq!(created[0], parse_time(&lifetime[0]["createdAt"]));

    for q in [
        "limit=0",
        "limit=501",
        "page=0",
        "status=WHATEVER",
        "plan=YEARLY",
    ] {
        let r = kv.get(&format!("{KEYS}?{q}"), &kv.admin).await;
        assert_kv_error(&r, 400, "VALIDATION_ERROR");
    }
    let r = kv
        .get(&format!("{KEYS}?search={}", "a".repeat(101)), &kv.admin)
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "search");
}

#[tokio::test]
async fn key_details_updates_hwid_reset_and_revocation() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let k = kv.key(&pid, "WEEKLY").await;
    let (id, key) = (str_of(&k["id"]), str_of(&k["key"]));
    let path = format!("{KEYS}/{id}");
    let h1 = "machine-one-0001";
    let h2 = "machine-two-0002";

    kv.validate_ok(&key, h1).await;
    let d = kv.detail(&id).await;
    assert_eq!(d["key"]["id"], id.as_str());
    assert_eq!(d["key"]["hwid"], h1);
    assert_eq!(d["key"]["activations"], 1);
    assert!(d["key"]["expiresAt"].is_string(), "clock started: {d}");
    let acts = d["activations"].as_array().expect("activations");
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0]["hwid"], h1);
    assert_eq!(acts[0]["ip"], "127.0.0.1");
    let actions: Vec<&str> = d["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"license.create") && actions.contains(&"key.validate"),
        "recent logs: {actions:?}"
    );
    let validate_log = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "key.validate")
        .unwrap();
    assert_eq!(validate_log["hwid"], h1);
    assert_eq!(validate_log["ip"], "127.0.0.1");

    // Status changes take effect on validation at once, each with its own code.
    for (status, code) in [
        ("BANNED", "KEY_BANNED"),
        ("SUSPENDED", "KEY_SUSPENDED"),
        ("EXPIRED", "KEY_EXPIRED"),
    ] {
        let r = kv.patch(&path, &kv.admin, json!({"status": status})).await;
        assert_status(&r, 200);
        assert_eq!(r.body["data"]["key"]["status"], status);
        let v = kv.validate(json!({"key": key, "hwid": h1})).await;
        assert_kv_error(&v, 403, code);
    }
    let r = kv
        .patch(&path, &kv.admin, json!({"status": "ACTIVE"}))
        .await;
    assert_eq!(r.body["data"]["key"]["status"], "ACTIVE");
    kv.validate_ok(&key, h1).await;

    // maxSessions and note.
    let r = kv.patch(&path, &kv.admin, json!({"maxSessions": 5})).await;
    assert_eq!(r.body["data"]["key"]["maxSessions"], 5);
    for n in [0, 101] {
        let r = kv.patch(&path, &kv.admin, json!({"maxSessions": n})).await;
        assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "maxSessions");
    }
    let r = kv.patch(&path, &kv.admin, json!({"note": "hello"})).await;
    assert_eq!(r.body["data"]["key"]["note"], "hello");
    let r = kv.patch(&path, &kv.admin, json!({"note": null})).await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["key"]["note"], Value::Null);
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM licenses WHERE id = ?1 AND note IS NULL",
            [&id]
        ),
        1
    );
    let r = kv.patch(&path, &kv.admin, json!({})).await;
    assert_kv_error(&r, 400, "VALIDATION_ERROR");
    let r = kv.patch(&path, &kv.admin, json!({"status": "BOGUS"})).await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "status");

    // HWID reset: the key unbinds, and a new machine can bind.
    let v = kv.validate(json!({"key": key, "hwid": h2})).await;
    assert_kv_error(&v, 403, "HWID_MISMATCH");
    let r = kv.patch(&path, &kv.admin, json!({"resetHwid": true})).await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["key"]["hwid"], Value::Null);
    assert_eq!(r.body["data"]["activations"], json!([]));
    assert_eq!(
        r.body["data"]["sessions"],
        json!([]),
        "the reset ends sessions"
    );
    kv.validate_ok(&key, h2).await;
    let d = kv.detail(&id).await;
    assert_eq!(d["key"]["hwid"], h2);
    let v = kv.validate(json!({"key": key, "hwid": h1})).await;
    assert_kv_error(&v, 403, "HWID_MISMATCH");

    // DELETE revokes; the row and its history stay; REVOKED is final.
    let r = kv.delete(&path, &kv.admin).await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["key"]["status"], "REVOKED");
    let d = kv.detail(&id).await;
    assert_eq!(d["key"]["status"], "REVOKED");
    let list = kv.list(&kv.admin, &format!("projectId={pid}")).await;
    assert!(
        ids(&list["keys"]).contains(&id),
        "a revoked key stays listed"
    );
    let v = kv.validate(json!({"key": key, "hwid": h2})).await;
    assert_kv_error(&v, 403, "KEY_REVOKED");
    for status in ["ACTIVE", "SUSPENDED", "BANNED", "EXPIRED"] {
        let r = kv.patch(&path, &kv.admin, json!({"status": status})).await;
        assert_kv_error(&r, 400, "VALIDATION_ERROR");
    }
    let r = kv.delete(&path, &kv.admin).await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["key"]["status"], "REVOKED");
    let actions: Vec<String> = kv
        .detail(&id)
        .await
        .get("logs")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|l| str_of(&l["action"]))
        .collect();
    assert!(actions.iter().any(|a| a == "license.update"));
    assert_eq!(
        actions.iter().filter(|a| *a == "license.revoke").count(),
        1,
        "revoked once: {actions:?}"
    );

    let r = kv
        .get(&format!("{KEYS}/lic_doesnotexist00000000"), &kv.admin)
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
}

#[tokio::test]
async fn keys_of_another_workspace_are_invisible_and_auth_is_required() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let k = kv.key(&pid, "WEEKLY").await;
    let id = str_of(&k["id"]);
    let path = format!("{KEYS}/{id}");
    let user = kv.user("user@example.com").await;

    assert_kv_error(&kv.get(&path, &user).await, 404, "NOT_FOUND");
    assert_kv_error(
        &kv.patch(&path, &user, json!({"status": "BANNED"})).await,
        404,
        "NOT_FOUND",
    );
    assert_kv_error(&kv.delete(&path, &user).await, 404, "NOT_FOUND");
    let data = kv.list(&user, "").await;
    assert_eq!(data["keys"], json!([]));
    assert_eq!(data["pagination"]["total"], 0);
    let data = kv.list(&user, &format!("projectId={pid}")).await;
    assert_eq!(data["pagination"]["total"], 0);
    let data = kv
        .list(&user, &format!("search={}", &str_of(&k["key"])[..9]))
        .await;
    assert_eq!(data["pagination"]["total"], 0);
    let r = kv
        .post(KEYS, &user, json!({"plan": "WEEKLY", "projectId": pid}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    // Nothing changed.
    let d = kv.detail(&id).await;
    assert_eq!(d["key"]["status"], "ACTIVE");
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM licenses WHERE product_id = ?1",
            [&pid]
        ),
        1
    );

    // The USER's own keys are theirs; the ADMIN sees every workspace.
    let mine = kv.keys(&user, json!({"plan": "DAILY"})).await;
    let mine_id = str_of(&mine[0]["id"]);
    assert_eq!(
        ids(&kv.list(&user, "").await["keys"]),
        BTreeSet::from([mine_id.clone()])
    );
    assert_status(&kv.get(&format!("{KEYS}/{mine_id}"), &kv.admin).await, 200);
    assert_eq!(kv.list(&kv.admin, "").await["pagination"]["total"], 2);

    // No credential, or a bad one → 401.
    for (method, p) in [
        (Method::GET, KEYS.to_owned()),
        (Method::POST, KEYS.to_owned()),
        (Method::GET, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, API_KEYS.to_owned()),
        (Method::GET, LOGS.to_owned()),
        (Method::GET, STATS.to_owned()),
        (Method::GET, "/api/admin".to_owned()),
    ] {
        let body =
            matches!(method, Method::POST | Method::PATCH).then(|| json!({"plan": "WEEKLY"}));
        let a = send(&kv.srv, method.clone(), &p, Cred::None, body.clone(), &[]).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
        let a = send(&kv.srv, method, &p, Cred::Bearer("not-a-token"), body, &[]).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
}

// ---- cross-face and /api/api-keys -------------------------------------------------------

#[tokio::test]
async fn keys_and_vendor_licenses_are_one_domain() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let pid = str_of(&p["id"]);
    let k = kv.key(&pid, "WEEKLY").await;
    let key = str_of(&k["key"]);
    let hwid = "cross-face-machine-01";
    let (_, validator) = kv.api_key("VALIDATE_ONLY").await;

    // Bound through /api/validate, valid through the vendor API for that machine.
    kv.validate_ok(&key, hwid).await;
    let a = kv
        .srv
        .post(
            VENDOR_VALIDATE,
            &validator,
            json!({"licenseKey": key, "machineId": hwid}),
        )
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["valid"], true, "{}", a.body);
    assert_eq!(a.body["code"], "VALID");
    assert!(signature_verifies(
        &str_of(&p["publicKey"]),
        &a.raw,
        a.header("x-signature").expect("signed")
    ));
    let a = kv
        .srv
        .post(
            VENDOR_VALIDATE,
            &validator,
            json!({"licenseKey": key, "machineId": "another-machine-02"}),
        )
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["valid"], false);

    // A vendor license shows in /api/keys and validates on the key/HWID face.
    let (_, creator) = kv.api_key("CREATE_LICENSE").await;
    let lic = kv
        .srv
        .create_license(&creator, &pid, json!({"customerName": "Buyer"}))
        .await;
    let vendor_key = str_of(&lic["key"]);
    let data = kv.list(&kv.admin, &format!("projectId={pid}")).await;
    let listed = data["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == vendor_key.as_str())
        .unwrap_or_else(|| panic!("vendor license {vendor_key} in /api/keys: {data}"))
        .clone();
    assert_eq!(listed["status"], "ACTIVE");
    assert_eq!(listed["plan"], Value::Null);
    let data = kv
        .list(&kv.admin, &format!("search={}", &vendor_key[..9]))
        .await;
    assert_eq!(data["pagination"]["total"], 1);
    let v = kv.validate_ok(&vendor_key, "vendor-made-machine-1").await;
    assert_eq!(v["valid"], true);
    let d = kv.detail(&str_of(&listed["id"])).await;
    assert_eq!(d["key"]["hwid"], "vendor-made-machine-1");
}

#[tokio::test]
async fn api_keys_are_shown_once_revocable_and_tenant_scoped() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    kv.validate_ok(&key, "api-key-machine-01").await;

    let a = kv
        .post(
            API_KEYS,
            &kv.admin,
            json!({"name": "shop", "scope": "VALIDATE_ONLY"}),
        )
        .await;
    assert_status(&a, 201);
    let whole = str_of(&a.body["data"]["key"]);
    let info = &a.body["data"]["apiKey"];
    let id = str_of(&info["id"]);
    let prefix = str_of(&info["prefix"]);
    assert!(whole.starts_with("kw_"), "kw_ key: {whole}");
    assert!(
        whole.starts_with(&prefix) && prefix.len() < whole.len() && prefix.len() >= 6,
        "readable prefix {prefix} of {whole}"
    );
    assert_eq!(info["scope"], "VALIDATE_ONLY");
    assert_eq!(info["name"], "shop");
    assert_eq!(info["revokedAt"], Value::Null);

    let list = kv.get(API_KEYS, &kv.admin).await;
    assert_status(&list, 200);
    let text = String::from_utf8_lossy(&list.raw).into_owned();
    assert!(!text.contains(&whole), "the whole key is never listed");
    let entry = list.body["data"]["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(entry["prefix"], prefix.as_str());
    assert!(entry.get("key").is_none());

    let body = json!({"licenseKey": key, "machineId": "api-key-machine-01"});
    let a = kv.srv.post(VENDOR_VALIDATE, &whole, body.clone()).await;
    assert_status(&a, 200);
    assert_eq!(a.body["valid"], true);

    // Another workspace cannot see or revoke it.
    let user = kv.user("user@example.com").await;
    let r = kv.delete(&format!("{API_KEYS}/{id}"), &user).await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    let theirs = kv.get(API_KEYS, &user).await;
    assert_eq!(theirs.body["data"]["apiKeys"], json!([]));
    let a = kv.srv.post(VENDOR_VALIDATE, &whole, body.clone()).await;
    assert_status(&a, 200);

    // Revoked: refused at once.
    let r = kv.delete(&format!("{API_KEYS}/{id}"), &kv.admin).await;
    assert_status(&r, 200);
    assert!(r.body["data"]["apiKey"]["revokedAt"].is_string());
    let a = kv.srv.post(VENDOR_VALIDATE, &whole, body).await;
    assert_status(&a, 401);
    assert_eq!(a.body["success"], false);

    let r = kv
        .post(
            API_KEYS,
            &kv.admin,
            json!({"name": "x", "scope": "GOD_MODE"}),
        )
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "scope");
    let r = kv
        .post(API_KEYS, &kv.admin, json!({"scope": "VALIDATE_ONLY"}))
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "name");
}

// ---- /api/validate, plain ---------------------------------------------------------------

#[tokio::test]
async fn validate_binds_the_hwid_starts_the_clock_and_answers_the_contract() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let pid = str_of(&p["id"]);
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"serverVar": "srv-var-42"}))
        .await;
    assert_eq!(p["serverVar"], "srv-var-42");
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "projectId": pid, "note": "VIP client"}),
        )
        .await
        .remove(0);
    let key = str_of(&k["key"]);
    let hwid = "sha256-of-machine-one";

    let a = kv
        .validate(json!({"key": key, "hwid": hwid, "clientNonce": "client-nonce-123"}))
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    let d = &a.body["data"];
    assert_eq!(d["valid"], true);
    assert_eq!(d["plan"], "WEEKLY");
    assert_eq!(d["note"], "VIP client");
    assert_eq!(d["serverVar"], "srv-var-42");
    assert_eq!(d["clientNonce"], "client-nonce-123");
    assert!(d["nonce"].as_str().is_some_and(|n| n.len() >= 16), "{d}");
    let session = str_of(&d["sessionId"]);
    assert!(uuid::Uuid::parse_str(&session).is_ok(), "uuid: {session}");
    let expires = parse_time(&d["expiresAt"]);
    let week = OffsetDateTime::now_utc() + time::Duration::days(7);
    assert!(
        (expires - week).abs() < time::Duration::minutes(1),
        "expiresAt {expires} ≈ now + 7 days"
    );
    // Signed over the exact body with the project's key, and only over it.
    let public_key = str_of(&p["publicKey"]);
    let sig = a.header("x-signature").expect("X-Signature").to_owned();
    assert!(signature_verifies(&public_key, &a.raw, &sig));
    let mut tampered = a.raw.clone();
    let at = tampered.iter().position(|b| *b == b'7').unwrap_or(10);
    tampered[at] ^= 1;
    assert!(!signature_verifies(&public_key, &tampered, &sig));

    // The clock does not restart; the same machine keeps working.
    let again = kv.validate_ok(&key, hwid).await;
    assert_eq!(parse_time(&again["expiresAt"]), expires);
    assert!(again.get("clientNonce").is_none());
    let lower = kv.validate_ok(&key.to_lowercase(), hwid).await;
    assert_eq!(lower["valid"], true, "keys are matched case-insensitively");
    let d = kv.detail(&str_of(&k["id"])).await;
    assert_eq!(parse_time(&d["key"]["expiresAt"]), expires);

    // Another machine on a HWID-locked key.
    let a = kv
        .validate(json!({"key": key, "hwid": "some-other-machine"}))
        .await;
    assert_kv_error(&a, 403, "HWID_MISMATCH");
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            [str_of(&k["id"])]
        ),
        1
    );

    // LIFETIME never expires.
    let life = str_of(&kv.key(&pid, "LIFETIME").await["key"]);
    let d = kv.validate_ok(&life, hwid).await;
    assert_eq!(d["plan"], "LIFETIME");
    assert_eq!(d.get("expiresAt"), Some(&Value::Null));
    // CUSTOM runs its days.
    let custom = kv
        .keys(
            &kv.admin,
            json!({"plan": "CUSTOM", "customDays": 90, "projectId": pid}),
        )
        .await
        .remove(0);
    let d = kv.validate_ok(&str_of(&custom["key"]), hwid).await;
    let expected = OffsetDateTime::now_utc() + time::Duration::days(90);
    assert!((parse_time(&d["expiresAt"]) - expected).abs() < time::Duration::minutes(1));
    assert_eq!(d["customDays"], 90);

    let a = kv
        .validate(json!({"key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "hwid": hwid}))
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
}

#[tokio::test]
async fn plan_clocks_run_from_the_first_validation() {
    const DAY_MS: i64 = 86_400_000;
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Clocks").await["id"]);
    let hwid = "plan-clock-machine-01";
    for (plan, custom_days, days) in [
        ("DAILY", None, 1),
        ("WEEKLY", None, 7),
        ("MONTHLY", None, 30),
        ("CUSTOM", Some(45), 45),
    ] {
        let mut body = json!({"plan": plan, "projectId": pid});
        if let Some(n) = custom_days {
            body["customDays"] = json!(n);
        }
        let k = kv.keys(&kv.admin, body).await.remove(0);
        let id = str_of(&k["id"]);
        assert_eq!(
            kv.detail(&id).await["key"]["expiresAt"],
            Value::Null,
            "{plan}: generating the key starts no clock"
        );
        let before = now_ms();
        let d = kv.validate_ok(&str_of(&k["key"]), hwid).await;
        let after = now_ms();
        let expires = (parse_time(&d["expiresAt"]).unix_timestamp_nanos() / 1_000_000) as i64;
        let span = days * DAY_MS;
        assert!(
            (before + span..=after + span).contains(&expires),
            "{plan}: expiresAt {} is {days} d after the binding validation ({before}..{after} ms)",
            d["expiresAt"]
        );
        assert_eq!(kv.detail(&id).await["key"]["expiresAt"], d["expiresAt"]);
        let again = kv.validate_ok(&str_of(&k["key"]), hwid).await;
        assert_eq!(
            again["expiresAt"], d["expiresAt"],
            "{plan}: the clock does not restart"
        );
    }
}

#[tokio::test]
async fn a_regenerated_secret_retires_the_old_one() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Rotate").await;
    let pid = str_of(&p["id"]);
    let old = str_of(&p["secret"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let hwid = "rotated-secret-pc-01";
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "secret": old}))
        .await;
    assert_status(&r, 200);

    let new = str_of(
        &kv.patch_project(&kv.admin, &pid, json!({"regenerateSecret": true}))
            .await["secret"],
    );
    assert_ne!(new, old);
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "secret": old}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    let r = kv
        .telegram(json!({"action": "reset_hwid", "key": key, "secret": old}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "secret": new}))
        .await;
    assert_status(&r, 200);
}

#[tokio::test]
async fn a_project_secret_limits_validation_to_that_projects_keys() {
    let kv = Kv::start().await;
    let a = kv.project(&kv.admin, "Alpha").await;
    let b = kv.project(&kv.admin, "Beta").await;
    let ka = str_of(&kv.key(&str_of(&a["id"]), "WEEKLY").await["key"]);
    let kb = str_of(&kv.key(&str_of(&b["id"]), "WEEKLY").await["key"]);
    let hwid = "secret-scope-machine";

    let r = kv
        .validate(json!({"key": ka, "hwid": hwid, "secret": a["secret"]}))
        .await;
    assert_status(&r, 200);
    let r = kv
        .validate(json!({"key": kb, "hwid": hwid, "secret": a["secret"]}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    let r = kv
        .validate(json!({"key": ka, "hwid": hwid, "secret": "kv_wrong_secret_value"}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    // The key of B was not touched by the refused lookup.
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id
             WHERE l.license_key = ?1",
            [&kb]
        ),
        0
    );
    // Without a secret every key is searched.
    let r = kv.validate(json!({"key": kb, "hwid": hwid})).await;
    assert_status(&r, 200);
}

#[tokio::test]
async fn unusable_keys_are_refused_with_distinct_codes() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let hwid = "status-codes-machine";
    let mut codes = BTreeSet::new();

    // Expired: the plan ran out.
    let k = kv.key(&pid, "DAILY").await;
    kv.validate_ok(&str_of(&k["key"]), hwid).await;
    kv.db()
        .execute(
            "UPDATE licenses SET valid_until = ?2 WHERE id = ?1",
            rusqlite::params![str_of(&k["id"]), now_ms() - 60_000],
        )
        .unwrap();
    let r = kv.validate(json!({"key": k["key"], "hwid": hwid})).await;
    assert_kv_error(&r, 403, "KEY_EXPIRED");
    codes.insert("KEY_EXPIRED");
    assert_eq!(
        kv.detail(&str_of(&k["id"])).await["key"]["status"],
        "EXPIRED"
    );

    for (status, code) in [
        ("SUSPENDED", "KEY_SUSPENDED"),
        ("BANNED", "KEY_BANNED"),
        ("REVOKED", "KEY_REVOKED"),
    ] {
        let k = kv.key(&pid, "WEEKLY").await;
        kv.validate_ok(&str_of(&k["key"]), hwid).await;
        let r = kv
            .patch(
                &format!("{KEYS}/{}", str_of(&k["id"])),
                &kv.admin,
                json!({"status": status}),
            )
            .await;
        assert_status(&r, 200);
        let r = kv.validate(json!({"key": k["key"], "hwid": hwid})).await;
        assert_kv_error(&r, 403, code);
        codes.insert(code);
    }
    assert_eq!(codes.len(), 4, "four distinct codes");
    // A revoked key never bound is refused as revoked too (not bound by the attempt).
    let k = kv.key(&pid, "WEEKLY").await;
    let r = kv
        .delete(&format!("{KEYS}/{}", str_of(&k["id"])), &kv.admin)
        .await;
    assert_status(&r, 200);
    let r = kv.validate(json!({"key": k["key"], "hwid": hwid})).await;
    assert_kv_error(&r, 403, "KEY_REVOKED");
    assert_eq!(
        kv.detail(&str_of(&k["id"])).await["key"]["hwid"],
        Value::Null
    );
}

#[tokio::test]
async fn the_nonce_rotates_and_an_old_one_is_a_replay() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let hwid = "nonce-machine-0001";

    let n1 = str_of(&kv.validate_ok(&key, hwid).await["nonce"]);
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "nonce": n1}))
        .await;
    assert_status(&r, 200);
    let n2 = str_of(&r.body["data"]["nonce"]);
    assert_ne!(n1, n2, "rotated");
    for stale in [n1.as_str(), "made-up-nonce"] {
        let r = kv
            .validate(json!({"key": key, "hwid": hwid, "nonce": stale}))
            .await;
        assert_kv_error(&r, 403, "REPLAY");
    }
    // Refusals do not rotate it: the last one handed out still works.
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "nonce": n2}))
        .await;
    assert_status(&r, 200);
    let n3 = str_of(&r.body["data"]["nonce"]);
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "nonce": n2}))
        .await;
    assert_kv_error(&r, 403, "REPLAY");
    let r = kv
        .validate(json!({"key": key, "hwid": hwid, "nonce": n3}))
        .await;
    assert_status(&r, 200);
}

#[tokio::test]
async fn refusals_for_a_known_project_are_signed_like_successes() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Signed").await;
    let (pid, secret) = (str_of(&p["id"]), str_of(&p["secret"]));
    let public_key = str_of(&p["publicKey"]);
    let other_key = str_of(&kv.project(&kv.admin, "Other").await["publicKey"]);
    let k = kv.key(&pid, "WEEKLY").await;
    let key = str_of(&k["key"]);
    kv.validate_ok(&key, "signed-machine-01").await;

    #[track_caller]
    fn assert_signed(a: &Answer, public_key: &str, pid: &str) {
        let sig = a
            .header("x-signature")
            .unwrap_or_else(|| panic!("a signed refusal: {}", a.body));
        assert!(signature_verifies(public_key, &a.raw, sig), "{}", a.body);
        assert_eq!(a.header("x-keyward-product"), Some(pid));
    }

    let a = kv
        .validate(json!({"key": key, "hwid": "signed-machine-02"}))
        .await;
    assert_kv_error(&a, 403, "HWID_MISMATCH");
    assert_signed(&a, &public_key, &pid);
    // Over the exact body, with this project's key only.
    let sig = a.header("x-signature").unwrap_or_default();
    let mut tampered = a.raw.clone();
    tampered[2] ^= 1;
    assert!(!signature_verifies(&public_key, &tampered, sig));
    assert!(!signature_verifies(&other_key, &a.raw, sig));

    let a = kv
        .validate(json!({"key": key, "hwid": "signed-machine-01", "nonce": "made-up-nonce"}))
        .await;
    assert_kv_error(&a, 403, "REPLAY");
    assert_signed(&a, &public_key, &pid);

    let r = kv
        .patch(
            &format!("{KEYS}/{}", str_of(&k["id"])),
            &kv.admin,
            json!({"status": "BANNED"}),
        )
        .await;
    assert_status(&r, 200);
    let a = kv
        .validate(json!({"key": key, "hwid": "signed-machine-01", "secret": secret}))
        .await;
    assert_kv_error(&a, 403, "KEY_BANNED");
    assert_signed(&a, &public_key, &pid);

    // A 404 inside the project a valid secret names is that project's answer.
    let a = kv
        .validate(
            json!({"key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "hwid": "signed-machine-01", "secret": secret}),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    assert_signed(&a, &public_key, &pid);
    // Without a usable secret no project is known, so nothing can sign.
    for body in [
        json!({"key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "hwid": "signed-machine-01"}),
        json!({"key": key, "hwid": "signed-machine-01", "secret": "kv_wrong_secret_value"}),
        json!({"key": key}),
    ] {
        let a = kv.validate(body).await;
        assert!(a.status.is_client_error(), "{}", a.body);
        assert!(a.header("x-signature").is_none(), "{}", a.body);
        assert!(a.header("x-keyward-product").is_none(), "{}", a.body);
    }
}

#[tokio::test]
async fn sessions_are_limited_refreshed_and_expire_under_refuse_new() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"sessionLimit": "REFUSE_NEW"}))
        .await;
    assert_eq!(p["sessionLimit"], "REFUSE_NEW");

    // A key allowing 2 machines and 2 sessions: a third machine is refused by the machine
    // limit, which is checked first.
    kv.patch_project(&kv.admin, &pid, json!({"defaultMaxActivations": 2}))
        .await;
    let two = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "maxSessions": 2, "projectId": pid}),
        )
        .await
        .remove(0);
    assert_eq!(two["maxActivations"], 2);
    kv.validate_ok(&str_of(&two["key"]), "machine-AAAA-0001")
        .await;
    kv.validate_ok(&str_of(&two["key"]), "machine-BBBB-0002")
        .await;
    let r = kv
        .validate(json!({"key": two["key"], "hwid": "machine-CCCC-0003"}))
        .await;
    assert_kv_error(&r, 403, "HWID_MISMATCH");

    // A key allowing 3 machines but 2 sessions.
    kv.patch_project(&kv.admin, &pid, json!({"defaultMaxActivations": 3}))
        .await;
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "maxSessions": 2, "projectId": pid}),
        )
        .await
        .remove(0);
    let (id, key) = (str_of(&k["id"]), str_of(&k["key"]));
    let (a, b, c) = (
        "machine-AAAA-0001",
        "machine-BBBB-0002",
        "machine-CCCC-0003",
    );
    let sa = str_of(&kv.validate_ok(&key, a).await["sessionId"]);
    let sb = str_of(&kv.validate_ok(&key, b).await["sessionId"]);
    assert_ne!(sa, sb);
    let r = kv.validate(json!({"key": key, "hwid": c})).await;
    assert_kv_error(&r, 403, "MAX_SESSIONS");
    let sessions = |kv: &Kv| kv.count("SELECT COUNT(*) FROM sessions WHERE license_id = ?1", [&id]);
    assert_eq!(sessions(&kv), 2);
    // A refused validation binds nothing.
    let d = kv.detail(&id).await;
    let bound: BTreeSet<String> = d["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| str_of(&x["hwid"]))
        .collect();
    assert_eq!(
        bound,
        BTreeSet::from([a.to_owned(), b.to_owned()]),
        "the machine refused for MAX_SESSIONS is not bound"
    );

    // Presenting a live sessionId refreshes it.
    let r = kv
        .validate(json!({"key": key, "hwid": a, "sessionId": sa}))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["sessionId"], sa.as_str());
    // A session belongs to its machine: another machine presenting it gets no place.
    let r = kv
        .validate(json!({"key": key, "hwid": c, "sessionId": sa}))
        .await;
    assert_kv_error(&r, 403, "MAX_SESSIONS");
    // The same machine without its sessionId is another instance: at the limit it is
    // refused too (it never shares a running session).
    for m in [a, b] {
        let r = kv.validate(json!({"key": key, "hwid": m})).await;
        assert_kv_error(&r, 403, "MAX_SESSIONS");
    }
    assert_eq!(sessions(&kv), 2);

    // Sessions not refreshed within the TTL free their places.
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"sessionTtlSeconds": 30}))
        .await;
    assert_eq!(p["sessionTtlSeconds"], 30);
    kv.db()
        .execute(
            "UPDATE sessions SET last_seen_at = last_seen_at - 60000 WHERE license_id = ?1",
            [&id],
        )
        .unwrap();
    let r = kv.validate(json!({"key": key, "hwid": c})).await;
    assert_status(&r, 200);
    let sc = str_of(&r.body["data"]["sessionId"]);
    assert!(sc != sa && sc != sb);
    // A's session died: presenting it opens a new one.
    let r = kv
        .validate(json!({"key": key, "hwid": a, "sessionId": sa}))
        .await;
    assert_status(&r, 200);
    assert_ne!(r.body["data"]["sessionId"], sa.as_str());
    assert_eq!(sessions(&kv), 2);
    let r = kv.validate(json!({"key": key, "hwid": b})).await;
    assert_kv_error(&r, 403, "MAX_SESSIONS");
}

#[tokio::test]
async fn concurrent_validations_never_double_book_machines_or_sessions() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    kv.patch_project(
        &kv.admin,
        &pid,
        json!({"defaultMaxActivations": 3, "sessionLimit": "REFUSE_NEW"}),
    )
    .await;
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "maxSessions": 2, "projectId": pid}),
        )
        .await
        .remove(0);
    let id = str_of(&k["id"]);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..12 {
        let client = kv.srv.client.clone();
        let url = format!("{}{VALIDATE}", kv.srv.url);
        let body = json!({"key": k["key"], "hwid": format!("racing-machine-{i:04}")});
        set.spawn(async move {
            TestServer::decode(client.post(url).json(&body).send().await.expect("sent")).await
        });
    }
    let mut ok = 0;
    while let Some(a) = set.join_next().await {
        let a = a.expect("task");
        match a.status.as_u16() {
            200 => ok += 1,
            _ => {
                assert_status(&a, 403);
                let code = a.body["code"].as_str().unwrap_or_default();
                assert!(
                    code == "MAX_SESSIONS" || code == "HWID_MISMATCH",
                    "{}",
                    a.body
                );
            }
        }
    }
    assert_eq!(ok, 2, "exactly maxSessions validations win");
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM sessions WHERE license_id = ?1", [&id]),
        2
    );
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            [&id]
        ),
        2,
        "only the machines that got a session are bound"
    );
}

#[tokio::test]
async fn a_project_requiring_encryption_refuses_plain_requests() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Secure").await;
    let pid = str_of(&p["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let p2 = kv
        .patch_project(&kv.admin, &pid, json!({"requireEncryption": true}))
        .await;
    assert_eq!(p2["requireEncryption"], true);
    let r = kv
        .validate(json!({"key": key, "hwid": "plain-machine-0001"}))
        .await;
    assert_kv_error(&r, 403, "FORBIDDEN");
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM activations", []),
        0,
        "the plain request bound nothing"
    );
    let r = kv
        .telegram(json!({"action": "validate", "key": key, "hwid": "plain-machine-0001"}))
        .await;
    assert_kv_error(&r, 403, "FORBIDDEN");

    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext(&key, "sealed-machine-0001", json!({})),
        )
        .await;
    assert_status(&a, 200);
    let inner = inner.expect("an encrypted answer");
    assert_eq!(inner["success"], true);
    assert_eq!(inner["data"]["valid"], true);
}

// ---- /api/validate, envelope ------------------------------------------------------------

#[tokio::test]
async fn the_encrypted_envelope_round_trips_and_refuses_replays() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let pid = str_of(&p["id"]);
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"serverVar": "sealed-var"}))
        .await;
    assert_eq!(p["serverVar"], "sealed-var");
    let p = kv.get(&format!("{PROJECTS}/{pid}"), &kv.admin).await.body["data"]["project"].clone();
    let enc = str_of(&p["encryptionKey"]);
    assert_eq!(B64.decode(&enc).unwrap().len(), 32, "AES-256 key");
    let public_key = str_of(&p["publicKey"]);
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "projectId": pid, "note": "sealed note"}),
        )
        .await
        .remove(0);
    let key = str_of(&k["key"]);
    let hwid = "envelope-machine-01";

    let plain = envelope_plaintext(&key, hwid, json!({"clientNonce": "cn-1"}));
    let (a, inner) = kv.envelope(&p, &plain).await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    assert!(a.body.get("data").is_none(), "nothing in clear: {}", a.body);
    assert!(signature_verifies(
        &public_key,
        &a.raw,
        a.header("x-signature").expect("the reply is signed")
    ));
    let inner = inner.expect("encrypted answer");
    assert_eq!(inner["success"], true);
    let d = &inner["data"];
    assert_eq!(d["valid"], true);
    assert_eq!(d["plan"], "WEEKLY");
    assert_eq!(d["note"], "sealed note");
    assert_eq!(d["serverVar"], "sealed-var");
    assert_eq!(d["clientNonce"], "cn-1");
    assert!(d["expiresAt"].is_string());
    let nonce = str_of(&d["nonce"]);
    let session = str_of(&d["sessionId"]);

    // The next call presents the rotated nonce and the session.
    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext(
                &key,
                hwid,
                json!({"nonce": nonce, "sessionId": session, "clientNonce": "cn-2"}),
            ),
        )
        .await;
    assert_status(&a, 200);
    let inner = inner.unwrap();
    assert_eq!(inner["data"]["sessionId"], session.as_str());
    assert_eq!(inner["data"]["clientNonce"], "cn-2");
    assert_ne!(inner["data"]["nonce"], nonce.as_str());
    // The old nonce is a replay, answered encrypted with its status.
    let (a, inner) = kv
        .envelope(&p, &envelope_plaintext(&key, hwid, json!({"nonce": nonce})))
        .await;
    assert_status(&a, 403);
    assert_eq!(a.body["success"], false);
    assert_error_body(&inner.unwrap(), "REPLAY");

    // A stale timestamp.
    let mut stale = envelope_plaintext(&key, hwid, json!({}));
    stale["timestamp"] = json!(OffsetDateTime::now_utc().unix_timestamp() - 120);
    let (a, inner) = kv.envelope(&p, &stale).await;
    assert_status(&a, 403);
    assert_eq!(a.body["success"], false);
    assert!(
        a.body.get("error").is_none(),
        "the refusal is encrypted: {}",
        a.body
    );
    let inner = inner.expect("encrypted refusal");
    assert_error_body(&inner, "FORBIDDEN");
    assert!(
        inner["error"].as_str().unwrap().contains("stale"),
        "mentions stale: {inner}"
    );
    assert!(signature_verifies(
        &public_key,
        &a.raw,
        a.header("x-signature").expect("refusals are signed too")
    ));
    // A timestamp from the future is just as stale.
    stale["timestamp"] = json!(OffsetDateTime::now_utc().unix_timestamp() + 120);
    stale["requestId"] = json!(request_id());
    let (a, _) = kv.envelope(&p, &stale).await;
    assert_status(&a, 403);

    // A repeated request id.
    let once = envelope_plaintext(&key, hwid, json!({}));
    let (a, _) = kv.envelope(&p, &once).await;
    assert_status(&a, 200);
    let (a, inner) = kv.envelope(&p, &once).await;
    assert_status(&a, 403);
    // Its own code and a message naming the real cause (it used to read as a nonce mismatch).
    let inner = inner.unwrap();
    assert_error_body(&inner, "REQUEST_REPLAYED");
    assert!(
        inner["error"].as_str().unwrap().contains("requestId"),
        "names the request id: {inner}"
    );

    // Errors keep their HTTP status inside the envelope.
    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext("ZZZZ-ZZZZ-ZZZZ-ZZZZ", hwid, json!({})),
        )
        .await;
    assert_status(&a, 404);
    assert_error_body(&inner.unwrap(), "NOT_FOUND");
    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext(&key, "another-machine-99", json!({})),
        )
        .await;
    assert_status(&a, 403);
    assert_error_body(&inner.unwrap(), "HWID_MISMATCH");
    let mut short_id = envelope_plaintext(&key, hwid, json!({}));
    short_id["requestId"] = json!("short");
    let (a, inner) = kv.envelope(&p, &short_id).await;
    assert_status(&a, 400);
    assert_error_body(&inner.unwrap(), "VALIDATION_ERROR");
    // A key of another project is not found through this project's envelope.
    let other = kv.project(&kv.admin, "Other").await;
    let other_key = str_of(&kv.key(&str_of(&other["id"]), "WEEKLY").await["key"]);
    let (a, _) = kv
        .envelope(&p, &envelope_plaintext(&other_key, hwid, json!({})))
        .await;
    assert_status(&a, 404);

    // Envelopes the server cannot open are refused in clear.
    let wrong_key = B64.encode([7u8; 32]);
    let payload = seal(
        &wrong_key,
        envelope_plaintext(&key, hwid, json!({}))
            .to_string()
            .as_bytes(),
    );
    let a = kv
        .validate(json!({"projectId": pid, "payload": payload}))
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    assert!(a.body.get("payload").is_none());
    let a = kv
        .validate(json!({"projectId": pid, "payload": "%%% not base64 %%%"}))
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    let a = kv
        .validate(json!({"projectId": pid, "payload": B64.encode([1u8; 10])}))
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    let payload = seal(
        &enc,
        envelope_plaintext(&key, hwid, json!({}))
            .to_string()
            .as_bytes(),
    );
    let a = kv
        .validate(json!({"projectId": "prd_doesnotexist0000000", "payload": payload}))
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
}

#[tokio::test]
async fn an_envelope_may_carry_its_projects_secret() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Sealed").await;
    let other = kv.project(&kv.admin, "Other").await;
    let k = kv.key(&str_of(&p["id"]), "WEEKLY").await;
    let key = str_of(&k["key"]);
    let hwid = "envelope-secret-pc-01";

    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext(&key, hwid, json!({"secret": p["secret"]})),
        )
        .await;
    assert_status(&a, 200);
    let inner = inner.expect("encrypted answer");
    assert_eq!(inner["success"], true, "{inner}");
    assert_eq!(inner["data"]["valid"], true);

    // Any other secret is answered exactly as a plain request with a wrong secret.
    let plain = kv
        .validate(json!({"key": key, "hwid": hwid, "secret": "kv_wrong_secret_value"}))
        .await;
    assert_kv_error(&plain, 404, "NOT_FOUND");
    let plain_other = kv
        .validate(json!({"key": key, "hwid": hwid, "secret": other["secret"]}))
        .await;
    assert_eq!(plain_other.status, plain.status);
    assert_eq!(plain_other.body, plain.body);
    for wrong in [
        other["secret"].clone(),
        json!("kv_wrong_secret_value"),
        json!(""),
    ] {
        let (a, inner) = kv
            .envelope(
                &p,
                &envelope_plaintext(&key, hwid, json!({"secret": wrong})),
            )
            .await;
        assert_eq!(a.status, plain.status, "{wrong}: {}", a.body);
        assert_eq!(a.body["success"], false);
        assert_eq!(inner.expect("encrypted refusal"), plain.body, "{wrong}");
    }
    // Too long a secret is bad input, as in the plain request.
    let (a, inner) = kv
        .envelope(
            &p,
            &envelope_plaintext(&key, hwid, json!({"secret": "k".repeat(101)})),
        )
        .await;
    assert_status(&a, 400);
    assert_error_body(&inner.expect("encrypted refusal"), "VALIDATION_ERROR");
    // Fields outside the plain request are still refused.
    let (a, inner) = kv
        .envelope(&p, &envelope_plaintext(&key, hwid, json!({"admin": true})))
        .await;
    assert_status(&a, 400);
    assert_error_body(&inner.expect("encrypted refusal"), "VALIDATION_ERROR");
}

// ---- /api/telegram ----------------------------------------------------------------------

#[tokio::test]
async fn telegram_validates_informs_and_resets_the_hwid_within_the_cooldown() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Bot").await;
    let pid = str_of(&p["id"]);
    let secret = str_of(&p["secret"]);
    let k = kv
        .keys(
            &kv.admin,
            json!({"plan": "MONTHLY", "projectId": pid, "note": "tg"}),
        )
        .await
        .remove(0);
    let (id, key) = (str_of(&k["id"]), str_of(&k["key"]));
    let pc = "telegram-pc-hwid-01";
    let who = json!({"telegram_id": "123456789", "telegram_username": "johndoe"});
    let with = |mut body: Value| {
        for (k, v) in who.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };

    let r = kv
        .telegram(with(json!({"action": "validate", "key": key})))
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "hwid");
    let r = kv
        .telegram(with(
            json!({"action": "validate", "key": key, "hwid": pc, "secret": secret}),
        ))
        .await;
    assert_status(&r, 200);
    let d = &r.body["data"];
    assert_eq!(d["valid"], true);
    assert_eq!(d["plan"], "MONTHLY");
    assert_eq!(d["note"], "tg");
    assert!(d["expires_at"].is_string(), "clock started: {d}");
    assert!(d.get("customDays").is_some(), "{d}");
    assert!(d["nonce"].is_string());
    assert_eq!(kv.detail(&id).await["key"]["hwid"], pc);
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate'
             AND actor = 'telegram:123456789:johndoe' AND license_id = ?1",
            [&id]
        ),
        1,
        "the Telegram user is the audit actor"
    );

    // info is read-only.
    let nonce_before: Option<String> = kv
        .db()
        .query_row(
            "SELECT current_nonce FROM licenses WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    let r = kv
        .telegram(json!({"action": "info", "key": key, "hwid": pc}))
        .await;
    assert_status(&r, 200);
    let d = &r.body["data"];
    assert_eq!(d["valid"], true);
    assert_eq!(d["status"], "ACTIVE");
    assert_eq!(d["hwidBound"], true);
    assert_eq!(d["hwidMatch"], true);
    assert!(d.get("nonce").is_none(), "info hands out no nonce: {d}");
    let r = kv
        .telegram(json!({"action": "info", "key": key, "hwid": "not-this-pc-0001"}))
        .await;
    assert_eq!(r.body["data"]["hwidMatch"], false);
    let r = kv.telegram(json!({"action": "info", "key": key})).await;
    assert!(r.body["data"].get("hwidMatch").is_none());
    let nonce_after: Option<String> = kv
        .db()
        .query_row(
            "SELECT current_nonce FROM licenses WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nonce_before, nonce_after, "info rotates nothing");
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            [&id]
        ),
        1
    );
    let r = kv
        .telegram(json!({"action": "info", "key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ"}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");

    // reset_hwid: needs the secret; once per cooldown.
    let r = kv
        .telegram(with(json!({"action": "reset_hwid", "key": key})))
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "secret");
    let r = kv
        .telegram(json!({"action": "reset_hwid", "key": key, "secret": "kv_wrong"}))
        .await;
    assert_kv_error(&r, 404, "NOT_FOUND");
    assert_eq!(kv.detail(&id).await["key"]["hwid"], pc, "nothing reset yet");
    let r = kv
        .telegram(with(
            json!({"action": "reset_hwid", "key": key, "secret": secret}),
        ))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["hwidBound"], false);
    assert_eq!(kv.detail(&id).await["key"]["hwid"], Value::Null);
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.reset_hwid'
             AND actor = 'telegram:123456789:johndoe' AND license_id = ?1",
            [&id]
        ),
        1
    );
    // A new PC can bind now.
    let r = kv
        .telegram(json!({"action": "validate", "key": key, "hwid": "telegram-pc-hwid-02"}))
        .await;
    assert_status(&r, 200);
    let r = kv
        .telegram(json!({"action": "reset_hwid", "key": key, "secret": secret}))
        .await;
    assert_kv_error(&r, 429, "RATE_LIMITED");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(
        (86_000..=86_400).contains(&retry),
        "the default cooldown is a day: {retry}"
    );
    assert_eq!(
        kv.detail(&id).await["key"]["hwid"],
        "telegram-pc-hwid-02",
        "the refused reset changed nothing"
    );

    // Without a cooldown a second reset works.
    let p = kv
        .patch_project(&kv.admin, &pid, json!({"hwidResetCooldownSeconds": 0}))
        .await;
    assert_eq!(p["hwidResetCooldownSeconds"], 0);
    let r = kv
        .telegram(json!({"action": "reset_hwid", "key": key, "secret": secret}))
        .await;
    assert_status(&r, 200);
    let r = kv
        .telegram(json!({"action": "reset_hwid", "key": key, "secret": secret}))
        .await;
    assert_status(&r, 200);

    // The anonymous actor is still recorded.
    assert!(
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE actor = 'telegram:-:-' AND license_id = ?1",
            [&id]
        ) >= 1
    );

    let r = kv
        .telegram(json!({"action": "explode", "key": key, "hwid": pc}))
        .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "action");
    let r = kv.telegram(json!({"key": key, "hwid": pc})).await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "action");
}

#[tokio::test]
async fn a_telegram_validate_leaves_the_apps_nonce_chain_intact() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Chain").await;
    let secret = str_of(&p["secret"]);
    let key = str_of(&kv.key(&str_of(&p["id"]), "WEEKLY").await["key"]);
    let pc = "nonce-chain-pc-0001";
    let bot = json!({"action": "validate", "key": key, "hwid": pc, "secret": secret});

    // The bot's first check binds the PC and starts a chain the app can pick up.
    let r = kv.telegram(bot.clone()).await;
    assert_status(&r, 200);
    let n0 = str_of(&r.body["data"]["nonce"]);
    let r = kv
        .validate(json!({"key": key, "hwid": pc, "nonce": n0}))
        .await;
    assert_status(&r, 200);
    let n1 = str_of(&r.body["data"]["nonce"]);
    assert_ne!(n1, n0);

    // Later checks read the chain without moving it.
    for _ in 0..2 {
        let r = kv.telegram(bot.clone()).await;
        assert_status(&r, 200);
        assert_eq!(r.body["data"]["nonce"], n1.as_str());
    }
    let r = kv
        .validate(json!({"key": key, "hwid": pc, "nonce": n1}))
        .await;
    assert_status(&r, 200);
    let n2 = str_of(&r.body["data"]["nonce"]);
    assert_ne!(n2, n1);
    // The app's own rotation still refuses the nonce it has used.
    let r = kv
        .validate(json!({"key": key, "hwid": pc, "nonce": n1}))
        .await;
    assert_kv_error(&r, 403, "REPLAY");
}

#[tokio::test]
async fn telegram_validate_and_reset_hwid_are_rate_limited_per_key() {
    let kv = Kv::start_with(|c| c.rate_limits.per_license_key = 2).await;
    let p = kv.project(&kv.admin, "Limited").await;
    let pid = str_of(&p["id"]);
    let secret = str_of(&p["secret"]);
    // No reset cooldown: only the per-key limit can refuse.
    kv.patch_project(&kv.admin, &pid, json!({"hwidResetCooldownSeconds": 0}))
        .await;
    let limited = |r: &Answer| {
        assert_kv_error(r, 429, "RATE_LIMITED");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(
            r.header("x-ratelimit-limit"),
            Some("2"),
            "the per-key limit"
        );
    };

    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let validate = json!({"action": "validate", "key": key, "hwid": "tg-limit-pc-01"});
    for _ in 0..2 {
        assert_status(&kv.telegram(validate.clone()).await, 200);
    }
    limited(&kv.telegram(validate).await);
    // One allowance per key, whoever spends it.
    limited(
        &kv.validate(json!({"key": key, "hwid": "tg-limit-pc-01"}))
            .await,
    );

    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let reset = json!({"action": "reset_hwid", "key": key, "secret": secret});
    for _ in 0..2 {
        assert_status(&kv.telegram(reset.clone()).await, 200);
    }
    limited(&kv.telegram(reset).await);
}

/// An envelope's refusal is encrypted but keeps its status and its rate-limit headers, as the
/// document declares (the 429 with `Retry-After`; the body is the encrypted reply).
#[tokio::test]
async fn an_encrypted_rate_limit_refusal_keeps_retry_after() {
    let kv = Kv::start_with(|c| c.rate_limits.per_license_key = 1).await;
    let p = kv.project(&kv.admin, "Sealed limit").await;
    let pid = str_of(&p["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let (a, _) = kv
        .envelope(&p, &envelope_plaintext(&key, "sealed-pc-01", json!({})))
        .await;
    assert_status(&a, 200);
    let (a, inner) = kv
        .envelope(&p, &envelope_plaintext(&key, "sealed-pc-01", json!({})))
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.body["success"], json!(false), "{}", a.body);
    let inner = inner.expect("an encrypted refusal");
    assert_eq!(inner["code"], "RATE_LIMITED", "{inner}");
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(a.header("x-ratelimit-limit"), Some("1"));
}

/// Ending a session by envelope seals its refusals the same way: the status and the rate-limit
/// headers stay outside the encryption.
#[tokio::test]
async fn an_encrypted_end_session_refusal_keeps_retry_after() {
    let kv = Kv::start_with(|c| c.rate_limits.per_license_key = 1).await;
    let p = kv.project(&kv.admin, "Sealed end").await;
    let pid = str_of(&p["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let (a, inner) = kv
        .envelope(&p, &envelope_plaintext(&key, "sealed-pc-02", json!({})))
        .await;
    assert_status(&a, 200);
    let session = str_of(&inner.expect("an encrypted answer")["data"]["sessionId"]);
    let enc = str_of(&p["encryptionKey"]);
    let plaintext = envelope_plaintext(&key, "sealed-pc-02", json!({"sessionId": session}));
    let a = kv
        .public(
            "/api/session/end",
            json!({"projectId": pid, "payload": seal(&enc, plaintext.to_string().as_bytes())}),
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.body["success"], json!(false), "{}", a.body);
    assert_eq!(unseal(&enc, &a.body["payload"])["code"], "RATE_LIMITED");
    assert!(a.header("retry-after").is_some(), "{:?}", a.body);
    assert_eq!(a.header("x-ratelimit-limit"), Some("1"));
}

// ---- /api/logs, /api/stats, /api/admin, /api/heartbeat ---------------------------------

#[tokio::test]
async fn logs_filter_by_project_key_action_and_time_and_paginate() {
    let kv = Kv::start().await;
    let start = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let p1 = str_of(&kv.project(&kv.admin, "One").await["id"]);
    let p2 = str_of(&kv.project(&kv.admin, "Two").await["id"]);
    let k1 = kv.key(&p1, "WEEKLY").await;
    let _k1b = kv.key(&p1, "WEEKLY").await;
    let k2 = kv.key(&p2, "WEEKLY").await;
    let (k1_id, k1_key) = (str_of(&k1["id"]), str_of(&k1["key"]));
    kv.validate_ok(&k1_key, "logs-machine-0001").await;
    kv.validate_ok(&k1_key, "logs-machine-0001").await;
    kv.validate_ok(&str_of(&k2["key"]), "logs-machine-0001")
        .await;
    let r = kv
        .validate(json!({"key": k1_key, "hwid": "logs-machine-0002"}))
        .await;
    assert_kv_error(&r, 403, "HWID_MISMATCH");
    eventually("the refusal's audit event", || {
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate.refused'",
            [],
        ) == 1
    })
    .await;

    let logs = |query: String| {
        let kv = &kv;
        async move {
            let a = kv.get(&format!("{LOGS}?{query}"), &kv.admin).await;
            assert_status(&a, 200);
            a.body["data"].clone()
        }
    };
    let data = logs(format!("projectId={p1}&limit=500")).await;
    let entries = data["logs"].as_array().unwrap();
    assert!(entries.iter().all(|l| l["projectId"] == p1.as_str()));
    let count_of = |entries: &Vec<Value>, action: &str| {
        entries.iter().filter(|l| l["action"] == action).count()
    };
    assert_eq!(count_of(entries, "license.create"), 2);
    assert_eq!(count_of(entries, "key.validate"), 2);
    assert_eq!(count_of(entries, "project.create"), 1);
    assert_eq!(data["pagination"]["total"], entries.len());

    let data = logs(format!("keyId={k1_id}")).await;
    let entries = data["logs"].as_array().unwrap();
    assert!(entries.iter().all(|l| l["keyId"] == k1_id.as_str()));
    assert_eq!(count_of(entries, "license.create"), 1);
    assert_eq!(count_of(entries, "key.validate"), 2);
    assert_eq!(count_of(entries, "key.validate.refused"), 1);
    let refused = entries
        .iter()
        .find(|l| l["action"] == "key.validate.refused")
        .unwrap();
    assert_eq!(refused["hwid"], "logs-machine-0002");
    assert_eq!(refused["ip"], "127.0.0.1");
    assert_eq!(refused["detail"]["code"], "HWID_MISMATCH");
    assert_eq!(refused["actor"], "client");
    let created = entries
        .iter()
        .find(|l| l["action"] == "license.create")
        .unwrap();
    assert!(created["actor"].as_str().unwrap().starts_with("operator:"));

    // Action: exact, or a prefix ending in '.'.
    let data = logs("action=key.validate".into()).await;
    let entries = data["logs"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|l| l["action"] == "key.validate"));
    let data = logs("action=key.".into()).await;
    let entries = data["logs"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(
        entries
            .iter()
            .all(|l| l["action"].as_str().unwrap().starts_with("key."))
    );
    let data = logs("action=license.create".into()).await;
    assert_eq!(data["pagination"]["total"], 3);
    let data = logs("action=key".into()).await;
    assert_eq!(
        data["pagination"]["total"], 0,
        "no prefix match without the dot"
    );

    // Time.
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    assert_eq!(
        logs(format!("from={later}")).await["pagination"]["total"],
        0
    );
    let data = logs(format!("to={}&limit=500", rfc3339(start))).await;
    assert!(
        data["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] != "license.create"),
        "nothing after `to`"
    );
    let data = logs(format!("from={}&action=license.create", rfc3339(start))).await;
    assert_eq!(data["pagination"]["total"], 3);
    let all_total = logs(String::new()).await["pagination"]["total"]
        .as_u64()
        .unwrap();

    // Pagination: newest first, disjoint pages.
    let first = logs("limit=3&page=1".into()).await;
    let second = logs("limit=3&page=2".into()).await;
    assert_eq!(first["logs"].as_array().unwrap().len(), 3);
    assert_eq!(first["pagination"]["total"], all_total);
    assert_eq!(
        first["pagination"]["totalPages"],
        all_total.div_ceil(3),
        "{}",
        first["pagination"]
    );
    let t0 = parse_time(&first["logs"][0]["at"]);
    let t_last = parse_time(&second["logs"][0]["at"]);
    assert!(t0 >= t_last, "newest first");
    assert_ne!(first["logs"], second["logs"]);

    for q in ["from=yesterday", "limit=0", "page=0"] {
        let a = kv.get(&format!("{LOGS}?{q}"), &kv.admin).await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    let a = kv
        .get(&format!("{LOGS}?action={}", "a".repeat(65)), &kv.admin)
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");

    // Another workspace sees none of it.
    let user = kv.user("user@example.com").await;
    for q in [
        String::new(),
        format!("projectId={p1}"),
        format!("keyId={k1_id}"),
        "action=key.".into(),
    ] {
        let a = kv.get(&format!("{LOGS}?{q}"), &user).await;
        assert_status(&a, 200);
        assert!(
            a.body["data"]["logs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["projectId"] != p1.as_str()
                    && l["projectId"] != p2.as_str()
                    && l["keyId"].is_null()),
            "{q}: {}",
            a.body
        );
    }
    let a = kv.get(&format!("{LOGS}?projectId={p1}"), &user).await;
    assert_eq!(a.body["data"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn admin_actions_are_audited_with_the_callers_ip() {
    // The operator works through a trusted proxy (127.0.0.1) that names the client in
    // X-Forwarded-For: the trail records that client, as the rate limits see it.
    let kv = Kv::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    // One admin action from `ip`, which must answer `status`.
    let call = |method: Method,
                path: String,
                token: String,
                body: Option<Value>,
                ip: &'static str,
                status: u16| {
        let kv = &kv;
        async move {
            let via = [("X-Forwarded-For", ip)];
            let a = send(&kv.srv, method, &path, Cred::Bearer(&token), body, &via).await;
            assert_status(&a, status);
            a
        }
    };
    let admin = kv.admin.clone();

    let a = call(
        Method::POST,
        PROJECTS.into(),
        admin.clone(),
        Some(json!({"name": "Audited"})),
        "203.0.113.1",
        201,
    )
    .await;
    let pid = str_of(&a.body["data"]["project"]["id"]);
    let a = call(
        Method::POST,
        KEYS.into(),
        admin.clone(),
        Some(json!({"plan": "WEEKLY", "count": 2, "projectId": pid})),
        "203.0.113.2",
        201,
    )
    .await;
    let keys = a.body["data"]["keys"].as_array().expect("keys").clone();
    let (k0, k1) = (str_of(&keys[0]["id"]), str_of(&keys[1]["id"]));
    call(
        Method::PATCH,
        format!("{PROJECTS}/{pid}"),
        admin.clone(),
        Some(json!({"name": "Audited 2"})),
        "203.0.113.3",
        200,
    )
    .await;
    call(
        Method::PATCH,
        format!("{KEYS}/{k0}"),
        admin.clone(),
        Some(json!({"status": "BANNED"})),
        "203.0.113.4",
        200,
    )
    .await;
    call(
        Method::DELETE,
        format!("{KEYS}/{k1}"),
        admin.clone(),
        None,
        "203.0.113.5",
        200,
    )
    .await;
    let a = call(
        Method::POST,
        API_KEYS.into(),
        admin.clone(),
        Some(json!({"name": "ci", "scope": "READ_ONLY"})),
        "203.0.113.6",
        201,
    )
    .await;
    let api_key_id = str_of(&a.body["data"]["apiKey"]["id"]);
    call(
        Method::DELETE,
        format!("{API_KEYS}/{api_key_id}"),
        admin.clone(),
        None,
        "203.0.113.7",
        200,
    )
    .await;
    let a = call(
        Method::POST,
        REGISTER.into(),
        admin.clone(),
        Some(json!({"email": "user@example.com", "password": PASSWORD, "role": "USER"})),
        "203.0.113.8",
        201,
    )
    .await;
    let user_id = str_of(&a.body["data"]["user"]["id"]);
    call(
        Method::PATCH,
        format!("/api/users/{user_id}"),
        admin.clone(),
        Some(json!({"disabled": true})),
        "203.0.113.9",
        200,
    )
    .await;
    call(
        Method::DELETE,
        format!("/api/users/{user_id}"),
        admin.clone(),
        None,
        "203.0.113.10",
        200,
    )
    .await;
    let doomed = kv.project(&kv.admin, "Doomed").await;
    call(
        Method::DELETE,
        format!(
            "{PROJECTS}/{}?confirm={}",
            str_of(&doomed["id"]),
            str_of(&doomed["slug"])
        ),
        admin.clone(),
        None,
        "203.0.113.11",
        200,
    )
    .await;
    let second = login(&kv.srv, ADMIN_EMAIL, PASSWORD).await;
    call(
        Method::POST,
        "/api/auth/logout".into(),
        second,
        None,
        "203.0.113.12",
        200,
    )
    .await;
    // A bot's info call records the HWID it was given.
    let a = send(
        &kv.srv,
        Method::POST,
        TELEGRAM,
        Cred::None,
        Some(json!({"action": "info", "key": keys[0]["key"], "hwid": "tg-info-pc-01"})),
        &[("X-Forwarded-For", "203.0.113.13")],
    )
    .await;
    assert_status(&a, 200);

    eventually("the info call's audit event", || {
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.info'",
            [],
        ) == 1
    })
    .await;

    let logs = kv.get(&format!("{LOGS}?limit=500"), &kv.admin).await;
    assert_status(&logs, 200);
    let entries = logs.body["data"]["logs"].as_array().expect("logs").clone();
    let find = |action: &str, ip: &str| {
        entries
            .iter()
            .find(|l| l["action"] == action && l["ip"] == ip)
            .unwrap_or_else(|| panic!("{action} from {ip} in {entries:#?}"))
            .clone()
    };
    for (action, ip) in [
        ("project.create", "203.0.113.1"),
        ("license.create", "203.0.113.2"),
        ("project.update", "203.0.113.3"),
        ("license.update", "203.0.113.4"),
        ("license.revoke", "203.0.113.5"),
        ("apikey.create", "203.0.113.6"),
        ("apikey.revoke", "203.0.113.7"),
        ("operator.create", "203.0.113.8"),
        ("operator.update", "203.0.113.9"),
        ("operator.delete", "203.0.113.10"),
        ("project.delete", "203.0.113.11"),
        ("operator.logout", "203.0.113.12"),
    ] {
        let e = find(action, ip);
        assert!(
            e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("operator:")),
            "{e}"
        );
    }
    // Without a forwarding header the peer itself is the client.
    find("project.create", "127.0.0.1");
    let info = find("key.info", "203.0.113.13");
    assert_eq!(info["hwid"], "tg-info-pc-01");
    // No admin action is left without an address.
    assert!(
        entries.iter().all(|l| !l["ip"].is_null()),
        "every event has an IP: {entries:#?}"
    );
}

#[tokio::test]
async fn stats_count_keys_validations_and_failures() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let weekly = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "count": 3, "projectId": pid}),
        )
        .await;
    let lifetime = kv
        .keys(
            &kv.admin,
            json!({"plan": "LIFETIME", "count": 2, "projectId": pid}),
        )
        .await;
    let custom = kv
        .keys(
            &kv.admin,
            json!({"plan": "CUSTOM", "customDays": 90, "projectId": pid}),
        )
        .await;
    let r = kv
        .patch(
            &format!("{KEYS}/{}", str_of(&weekly[0]["id"])),
            &kv.admin,
            json!({"status": "BANNED"}),
        )
        .await;
    assert_status(&r, 200);
    let r = kv
        .delete(&format!("{KEYS}/{}", str_of(&lifetime[0]["id"])), &kv.admin)
        .await;
    assert_status(&r, 200);

    let h = "stats-machine-0001";
    kv.validate_ok(&str_of(&weekly[1]["key"]), h).await;
    kv.validate_ok(&str_of(&weekly[1]["key"]), h).await;
    kv.validate_ok(&str_of(&custom[0]["key"]), h).await;
    let r = kv
        .validate(json!({"key": weekly[1]["key"], "hwid": "stats-machine-0002"}))
        .await;
    assert_kv_error(&r, 403, "HWID_MISMATCH");
    let r = kv
        .validate(json!({"key": weekly[0]["key"], "hwid": h}))
        .await;
    assert_kv_error(&r, 403, "KEY_BANNED");
    eventually("the refusals' audit events", || {
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate.refused'",
            [],
        ) == 2
    })
    .await;

    for query in [String::new(), format!("?projectId={pid}")] {
        let a = kv.get(&format!("{STATS}{query}"), &kv.admin).await;
        assert_status(&a, 200);
        let s = &a.body["data"];
        assert_eq!(s["totalKeys"], 6, "{s}");
        assert_eq!(named_count(&s["keysByStatus"], "ACTIVE"), 4, "{s}");
        assert_eq!(named_count(&s["keysByStatus"], "BANNED"), 1);
        assert_eq!(named_count(&s["keysByStatus"], "REVOKED"), 1);
        assert_eq!(named_count(&s["keysByPlan"], "WEEKLY"), 3);
        assert_eq!(named_count(&s["keysByPlan"], "LIFETIME"), 2);
        assert_eq!(named_count(&s["keysByPlan"], "CUSTOM"), 1);
        assert_eq!(named_count(&s["keysByPlan"], "MONTHLY"), 0);
        let daily = s["daily"].as_array().expect("daily");
        assert_eq!(daily.len(), 30);
        let today = daily.last().unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(parse_time(&today["day"]).date(), now.date(), "ends today");
        assert_eq!(
            parse_time(&daily[0]["day"]).date(),
            now.date() - time::Duration::days(29)
        );
        assert_eq!(today["validations"], 3, "{today}");
        assert_eq!(today["activations"], 2, "{today}");
        assert!(daily[..29].iter().all(|d| d["validations"] == 0));
        assert_eq!(
            named_count(&s["failuresByReason"], "HWID_MISMATCH"),
            1,
            "{s}"
        );
        assert_eq!(named_count(&s["failuresByReason"], "KEY_BANNED"), 1);
        assert_eq!(s["projects"], 1);
    }

    let user = kv.user("user@example.com").await;
    let a = kv.get(STATS, &user).await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["totalKeys"], 0);
    assert_eq!(a.body["data"]["failuresByReason"], json!([]));
}

#[tokio::test]
async fn admin_overview_is_for_admins_and_heartbeat_is_public() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let key = kv.key(&pid, "WEEKLY").await;
    let user = kv.user("user@example.com").await;
    let theirs = kv.keys(&user, json!({"plan": "DAILY"})).await;

    let a = kv.get("/api/admin", &kv.admin).await;
    assert_status(&a, 200);
    let d = &a.body["data"];
    let emails: BTreeSet<String> = d["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| str_of(&u["email"]))
        .collect();
    assert_eq!(
        emails,
        BTreeSet::from([ADMIN_EMAIL.to_owned(), "user@example.com".to_owned()])
    );
    assert!(ids(&d["projects"]).contains(&pid));
    assert!(ids(&d["projects"]).contains(&str_of(&theirs[0]["projectId"])));
    assert_eq!(
        ids(&d["keys"]),
        BTreeSet::from([str_of(&key["id"]), str_of(&theirs[0]["id"])])
    );
    assert_eq!(d["pagination"]["total"], 2);
    let a = kv.get("/api/admin?limit=1&page=2", &kv.admin).await;
    assert_eq!(a.body["data"]["keys"].as_array().unwrap().len(), 1);
    assert!(
        !String::from_utf8_lossy(&a.raw).contains("passwordHash"),
        "no password hashes"
    );

    let a = kv.get("/api/admin", &user).await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    let a = send(
        &kv.srv,
        Method::GET,
        "/api/heartbeat",
        Cred::None,
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["status"], "ok");
    assert_eq!(a.body["database"], "ok");
}

#[tokio::test]
async fn admin_overview_pages_users_and_projects_too() {
    let kv = Kv::start().await;
    kv.user("one@example.com").await;
    kv.user("two@example.com").await;
    for name in ["P1", "P2", "P3"] {
        kv.project(&kv.admin, name).await;
    }
    let overview = |query: &str| {
        let kv = &kv;
        let path = format!("/api/admin?{query}");
        async move {
            let a = kv.get(&path, &kv.admin).await;
            assert_status(&a, 200);
            a.body["data"].clone()
        }
    };
    let d = overview("").await;
    assert_eq!(d["users"].as_array().unwrap().len(), 3);
    assert_eq!(d["projects"].as_array().unwrap().len(), 3);
    assert_eq!(d["usersPagination"]["total"], 3);
    assert_eq!(d["projectsPagination"]["total"], 3);
    assert_eq!(d["usersPagination"]["limit"], 50, "the default page size");

    let first = overview("limit=2").await;
    let second = overview("limit=2&usersPage=2&projectsPage=2").await;
    for (list, pagination) in [
        ("users", "usersPagination"),
        ("projects", "projectsPagination"),
    ] {
        assert_eq!(first[list].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(second[list].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(first[pagination]["totalPages"], 2, "{list}");
        assert_eq!(second[pagination]["page"], 2, "{list}");
        let mut all = ids(&first[list]);
        all.extend(ids(&second[list]));
        assert_eq!(all, ids(&d[list]), "{list}: the pages cover the list");
    }
    // Keys keep their own `page`.
    assert_eq!(second["pagination"]["page"], 1);

    for q in ["usersPage=0", "projectsPage=0", "limit=501", "usersPage=x"] {
        let a = kv.get(&format!("/api/admin?{q}"), &kv.admin).await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
}

// ---- rate limits and bad input ----------------------------------------------------------

#[tokio::test]
async fn validations_are_rate_limited_per_key() {
    let kv = Kv::start_with(|c| c.rate_limits.per_license_key = 3).await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let other = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    for _ in 0..3 {
        kv.validate_ok(&key, "limited-machine-01").await;
    }
    let r = kv
        .validate(json!({"key": key, "hwid": "limited-machine-01"}))
        .await;
    assert_kv_error(&r, 429, "RATE_LIMITED");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    // Written any other way, it is the same key.
    let r = kv
        .validate(json!({"key": format!(" {} ", key.to_lowercase()), "hwid": "limited-machine-01"}))
        .await;
    assert_kv_error(&r, 429, "RATE_LIMITED");
    let r = kv.telegram(json!({"action": "info", "key": key})).await;
    assert_kv_error(&r, 429, "RATE_LIMITED");
    // Other keys are not affected.
    kv.validate_ok(&other, "limited-machine-02").await;
}

#[tokio::test]
async fn validate_and_telegram_are_rate_limited_per_ip() {
    // The operator sets up from the proxy itself; apps and bots come through it as other
    // addresses, each with an allowance of its own.
    let kv = Kv::start_with(|c| {
        c.rate_limits.per_ip = 10;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let pid = str_of(&kv.project(&kv.admin, "Flooded").await["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);
    let from = |path: &'static str, body: Value, ip: &'static str| {
        let kv = &kv;
        async move {
            send(
                &kv.srv,
                Method::POST,
                path,
                Cred::None,
                Some(body),
                &[("X-Forwarded-For", ip)],
            )
            .await
        }
    };
    let limited = |r: &Answer| {
        assert_kv_error(r, 429, "RATE_LIMITED");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    };
    let validate = json!({"key": key, "hwid": "per-ip-machine-01"});
    let telegram = json!({"action": "validate", "key": key, "hwid": "per-ip-machine-01"});

    for _ in 0..10 {
        assert_status(&from(VALIDATE, validate.clone(), "203.0.113.20").await, 200);
    }
    limited(&from(VALIDATE, validate.clone(), "203.0.113.20").await);
    // The allowance is the address's: its bot calls are refused too.
    limited(&from(TELEGRAM, telegram.clone(), "203.0.113.20").await);

    for _ in 0..10 {
        assert_status(&from(TELEGRAM, telegram.clone(), "203.0.113.21").await, 200);
    }
    limited(&from(TELEGRAM, telegram.clone(), "203.0.113.21").await);
    // Other addresses are served.
    assert_status(&from(VALIDATE, validate, "203.0.113.22").await, 200);
}

#[tokio::test]
async fn bad_input_gets_the_error_envelope_never_a_500() {
    let kv = Kv::start().await;
    let pid = str_of(&kv.project(&kv.admin, "Game").await["id"]);
    let key = str_of(&kv.key(&pid, "WEEKLY").await["key"]);

    let json_cases = [
        (json!({"hwid": "machine-0001"}), "key"),
        (json!({"key": key}), "hwid"),
        (json!({"key": 1234, "hwid": "machine-0001"}), "key"),
        (json!({"key": key, "hwid": ["x"]}), "hwid"),
        (json!({"payload": "abcd"}), "projectId"),
        (
            json!({"key": "K".repeat(101), "hwid": "machine-0001"}),
            "key",
        ),
        (json!({"key": key, "hwid": "h".repeat(256)}), "hwid"),
        (
            json!({"key": key, "hwid": "machine-0001", "nonce": 5}),
            "nonce",
        ),
        (json!({}), "key"),
        (json!({"key": key, "hwid": ""}), "hwid"),
    ];
    for (body, field) in json_cases {
        let a = kv.validate(body.clone()).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", field);
    }
    let raw = |path: &'static str, ct: &'static str, body: Vec<u8>| {
        let kv = &kv;
        async move { kv.srv.call_raw(Method::POST, path, None, ct, body).await }
    };
    for body in [&b"{\"key\": "[..], b"not json", b"[1,2,3]", b"null", b""] {
        let a = raw(VALIDATE, "application/json", body.to_vec()).await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    let a = raw(
        VALIDATE,
        "text/plain",
        json!({"key": key, "hwid": "machine-0001"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_kv_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
    let huge = json!({"key": key, "hwid": "h".repeat(300 * 1024)}).to_string();
    let a = raw(VALIDATE, "application/json", huge.into_bytes()).await;
    assert_kv_error(&a, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM activations", []),
        0,
        "nothing bound"
    );

    // /api/keys
    for (body, field) in [
        (json!({"plan": "FOREVER"}), "plan"),
        (json!({"plan": "WEEKLY", "count": "5"}), "count"),
        (json!({"plan": "WEEKLY", "count": -1}), "count"),
        (json!({"plan": "WEEKLY", "count": 2.5}), "count"),
        (
            json!({"plan": "WEEKLY", "maxSessions": "two"}),
            "maxSessions",
        ),
        (json!({"plan": "WEEKLY", "note": 12}), "note"),
        (json!({"plan": 7}), "plan"),
    ] {
        let a = kv.post(KEYS, &kv.admin, body).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", field);
    }
    let a = send(
        &kv.srv,
        Method::POST,
        KEYS,
        Cred::Bearer(&kv.admin),
        None,
        &[],
    )
    .await;
    assert!(
        matches!(a.status.as_u16(), 400 | 415),
        "no body: {}",
        a.body
    );
    assert_eq!(a.body["success"], false);
    assert_eq!(
        kv.count("SELECT COUNT(*) FROM licenses", []),
        1,
        "no key was made by bad input"
    );

    // /api/telegram
    for (body, field) in [
        (json!({"key": key, "hwid": "machine-0001"}), "action"),
        (json!({"action": "validate", "hwid": "machine-0001"}), "key"),
        (json!({"action": 3, "key": key}), "action"),
    ] {
        let a = kv.telegram(body).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", field);
    }
    let a = raw(TELEGRAM, "application/json", b"{oops".to_vec()).await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    let a = raw(TELEGRAM, "text/plain", b"action=validate".to_vec()).await;
    assert_kv_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
}

// ---- the contract's Python example ------------------------------------------------------

#[tokio::test]
async fn the_contracts_python_example_works_unchanged() {
    // `cargo test` sets up what it needs on a fresh machine: the example's one dependency.
    let import = || {
        std::process::Command::new("python3")
            .args(["-c", "import requests"])
            .output()
    };
    match import() {
        Ok(out) if out.status.success() => {}
        Ok(_) => {
            let install = std::process::Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--user", "requests"])
                .output()
                .expect("python3 -m pip runs");
            let again = import().expect("python3 runs");
            assert!(
                again.status.success(),
                "the contract's Python example needs `requests`, and `pip install requests` \
                 failed: {}",
                String::from_utf8_lossy(&install.stderr)
            );
        }
        Err(e) => panic!("python3 is required to run the contract's Python example: {e}"),
    }

    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let k = kv.key(&str_of(&p["id"]), "WEEKLY").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract_example.py");
    let run = |key: String| {
        let url = format!("{}/api/validate", kv.srv.url);
        let secret = str_of(&p["secret"]);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg(script)
                .args([url, secret, key])
                .env("PYTHONIOENCODING", "utf-8")
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env("no_proxy", "127.0.0.1,localhost")
                .output()
                .expect("python3 runs")
        })
    };
    let out = run(str_of(&k["key"])).await.expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("License valid! Plan: WEEKLY"),
        "stdout: {stdout}"
    );
    assert!(stdout.contains("Server Nonce: "), "stdout: {stdout}");
    // The example's fallback HWID is now bound to the key.
    let d = kv.detail(&str_of(&k["id"])).await;
    assert_eq!(d["key"]["activations"], 1);

    // A key the server does not know: the example reports the failure.
    let out = run("ZZZZ-ZZZZ-ZZZZ-ZZZZ".into()).await.expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success());
    assert!(stdout.contains("Validation failed"), "stdout: {stdout}");
}

/// Fails (never skips) unless python3 can import `modules`: the envelope examples are what a
/// vendor copies, so they must run. `.ci/run` installs them.
fn require_python_modules(modules: &str) {
    let out = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the envelope examples need the Python modules {modules} \
             (pip install {}; .ci/run installs them): {}",
            modules.replace(',', ""),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is required to run the envelope examples: {e}"),
    }
}

/// Runs `python3 args…` off the runtime, with local addresses kept off any proxy.
async fn python(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("joined")
}

/// `envelope_client.py` prints one line per validation: `<status> <decrypted JSON answer>`.
fn envelope_lines(stdout: &str) -> Vec<(u16, Value)> {
    stdout
        .lines()
        .map(|line| {
            let (status, json) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("`<status> <json>`: {line:?}"));
            (
                status.parse().expect("an HTTP status"),
                serde_json::from_str(json).expect("a JSON answer"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_python_envelope_client_validates_then_presents_the_rotated_nonce() {
    require_python_modules("cryptography");
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Game").await;
    let pid = str_of(&p["id"]);
    let k = kv.key(&pid, "WEEKLY").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/envelope_client.py");
    let args = |hwid: &str| {
        vec![
            script.to_owned(),
            kv.srv.url.clone(),
            pid.clone(),
            str_of(&p["encryptionKey"]),
            str_of(&k["key"]),
            hwid.to_owned(),
        ]
    };

    let out = python(args("py-envelope-pc-01")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = envelope_lines(&stdout);
    assert_eq!(lines.len(), 2, "two validations: {stdout}");
    let (first, second) = (&lines[0], &lines[1]);
    assert_eq!(first.0, 200);
    assert_eq!(first.1["data"]["valid"], true, "{stdout}");
    assert_eq!(first.1["data"]["plan"], "WEEKLY");
    assert_eq!(second.0, 200, "the rotated nonce is accepted: {stdout}");
    assert_eq!(second.1["data"]["sessionId"], first.1["data"]["sessionId"]);
    assert_ne!(second.1["data"]["nonce"], first.1["data"]["nonce"]);
    assert_eq!(
        kv.detail(&str_of(&k["id"])).await["key"]["hwid"],
        "py-envelope-pc-01"
    );
    assert_eq!(
        kv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'key.validate'
             AND license_id = ?1 AND json_extract(detail, '$.encrypted') = 1",
            [str_of(&k["id"])]
        ),
        2,
        "both calls went through the envelope"
    );

    // A refusal arrives encrypted with its status, and the script exits non-zero.
    let out = python(args("py-envelope-pc-02")).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}");
    let lines = envelope_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0].0, 403);
    assert_error_body(&lines[0].1, "HWID_MISMATCH");
}

#[tokio::test]
async fn the_readmes_python_envelope_example_runs_as_written() {
    require_python_modules("cryptography, requests");
    let readme = include_str!("../../README.md");
    let start = readme
        .find("In Python with `cryptography`")
        .expect("the README's Python envelope example");
    let block = &readme[start..];
    let code_start = block.find("```python\n").expect("a python block") + "```python\n".len();
    let code = &block[code_start..];
    let code = &code[..code.find("\n```").expect("the block ends")];

    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Readme").await;
    let k = kv.key(&str_of(&p["id"]), "WEEKLY").await;
    // The example reads what the README's shell examples set, from the environment.
    assert_eq!(code.matches("http://localhost:3002").count(), 1, "{code}");
    let program = format!(
        "import os\nos.environ.update({{'PROJECT_ID': '{}', 'ENCRYPTION_KEY': '{}', 'GAME_KEY': '{}'}})\n{}",
        str_of(&p["id"]),
        str_of(&p["encryptionKey"]),
        str_of(&k["key"]),
        code.replace("http://localhost:3002", &kv.srv.url)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("readme_envelope.py");
    std::fs::write(&path, program).expect("write");
    let out = python(vec![path.display().to_string()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("200 {") && stdout.contains("'valid': True"),
        "stdout: {stdout}"
    );
    assert_eq!(
        kv.detail(&str_of(&k["id"])).await["key"]["hwid"],
        "sha256-of-hardware-id"
    );
}

#[tokio::test]
async fn lists_and_stats_report_expiry_as_of_now_before_the_sweep() {
    let kv = Kv::start().await;
    let p = kv.project(&kv.admin, "Clock").await;
    let pid = str_of(&p["id"]);
    let overdue = kv.key(&pid, "WEEKLY").await;
    let fine = kv.key(&pid, "WEEKLY").await;
    // Past its expiry, but the maintenance sweep has not rewritten its stored status yet.
    kv.srv
        .db()
        .execute(
            "UPDATE licenses SET valid_until = 1000 WHERE id = ?1",
            [str_of(&overdue["id"])],
        )
        .unwrap();
    let expired = kv
        .list(&kv.admin, &format!("projectId={pid}&status=EXPIRED"))
        .await;
    let ids: Vec<String> = expired["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(&k["id"]))
        .collect();
    assert_eq!(ids, vec![str_of(&overdue["id"])]);
    let active = kv
        .list(&kv.admin, &format!("projectId={pid}&status=ACTIVE"))
        .await;
    let ids: Vec<String> = active["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(&k["id"]))
        .collect();
    assert_eq!(ids, vec![str_of(&fine["id"])]);
    let stats = kv
        .get(&format!("/api/stats?projectId={pid}"), &kv.admin)
        .await;
    assert_status(&stats, 200);
    let by_status = &stats.body["data"]["keysByStatus"];
    let count = |name: &str| {
        by_status
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["count"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!((count("ACTIVE"), count("EXPIRED")), (1, 1), "{by_status}");
}

/// Counting every match over a large table would cost more than the page: the count stops a
/// good way past the page asked for and says so (`totalCapped`).
#[tokio::test]
async fn key_counts_stop_at_a_cap_past_the_page() {
    use keyward::domain::licenses::{self, LicenseTier, LicenseType, NewLicense};
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "many");
    let admin = srv.create_api_key("default", keyward::domain::api_keys::Scope::FullAdmin, None);
    let mut conn = srv.db();
    let tx = conn.transaction().expect("tx");
    let new = NewLicense {
        license_type: LicenseType::Perpetual,
        tier: LicenseTier::Personal,
        max_activations: 1,
        max_sessions: None,
        valid_until: None,
        plan: None,
        plan_days: None,
        customer_email: None,
        customer_name: None,
        order_id: None,
        metadata: None,
        note: None,
        entitlements: Vec::new(),
    };
    for _ in 0..10_050 {
        licenses::create(&tx, &product, &new).expect("license");
    }
    tx.commit().expect("commit");

    let first = srv.get("/api/keys?limit=50", &admin).await;
    let p = &first.body["data"]["pagination"];
    assert_eq!(p["total"], 10_000, "{p}");
    assert_eq!(p["totalCapped"], true, "{p}");
    assert_eq!(
        first.body["data"]["keys"].as_array().map(Vec::len),
        Some(50)
    );
    // Far out, the count reaches the end and is exact again.
    let far = srv.get("/api/keys?limit=50&page=200", &admin).await;
    let p = &far.body["data"]["pagination"];
    assert_eq!(p["total"], 10_050, "{p}");
    assert!(p.get("totalCapped").is_none(), "{p}");
    let last = srv.get("/api/keys?limit=50&page=202", &admin).await;
    assert_eq!(last.body["data"]["keys"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        srv.get("/api/keys?limit=50&page=201", &admin).await.body["data"]["keys"]
            .as_array()
            .map(Vec::len),
        Some(50)
    );
}

/// Notes are found through their trigram index: any substring, any case, quotes included;
/// an edited note is found by its new text only, and a deleted key leaves nothing behind.
#[tokio::test]
async fn note_search_follows_edits_and_deletions() {
    let kv = Kv::start().await;
    let p = str_of(&kv.project(&kv.admin, "Notes").await["id"]);
    let keys = kv
        .keys(
            &kv.admin,
            json!({"plan": "WEEKLY", "count": 2, "projectId": p, "note": "Reseller \"North\" batch-7"}),
        )
        .await;
    let first = str_of(&keys[0]["id"]);
    let found = |q: &'static str| {
        let kv = &kv;
        async move { ids(&kv.list(&kv.admin, &format!("search={q}")).await["keys"]) }
    };
    assert_eq!(found("batch-7").await, ids(&json!(keys)));
    assert_eq!(
        found("%22north%22").await,
        ids(&json!(keys)),
        "quotes are literal"
    );
    assert_eq!(
        found("H-").await,
        ids(&json!(keys)),
        "two characters: matched without trigrams"
    );
    assert!(found("batch_7").await.is_empty(), "`_` is not a wildcard");

    let r = kv
        .patch(
            &format!("{KEYS}/{first}"),
            &kv.admin,
            json!({"note": "Gift for Ada"}),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(found("gift%20for").await, BTreeSet::from([first.clone()]));
    assert_eq!(
        found("batch-7").await.len(),
        1,
        "the old note is gone from the index"
    );

    let r = send(
        &kv.srv,
        Method::DELETE,
        &format!("/api/projects/{p}?confirm=notes"),
        Cred::Bearer(&kv.admin),
        None,
        &[],
    )
    .await;
    assert_status(&r, 200);
    let rows: i64 = kv
        .srv
        .db()
        .query_row("SELECT COUNT(*) FROM license_note_rows", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0, "deleted keys leave no note rows");
    assert!(found("gift").await.is_empty());
}
