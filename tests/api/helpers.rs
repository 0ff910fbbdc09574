//! Test harness: a real Keyward server on 127.0.0.1:0 with its own temporary data directory,
//! fixtures made through the domain (as the CLI makes them), a small JSON client, and the
//! helpers more than one test module needs.
#![allow(dead_code)]

use std::path::Path;

use keyward::config::{Config, RateLimits};
use keyward::crypto::MasterKey;
use keyward::domain::api_keys::{self, Scope};
use keyward::domain::licenses::LicenseType;
use keyward::domain::products::{
    self, HeartbeatPolicy, KeyFormat, NewProduct, Product, ProductType,
};
use keyward::domain::tenants;
use keyward::{Running, storage};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub struct TestServer {
    pub url: String,
    pub running: Option<Running>,
    /// The one-time setup token the server issued at its (latest) start, as `keyward serve`
    /// prints it in the setup URL; `None` once an operator existed at start.
    pub setup_token: Option<String>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// One HTTP answer, decoded.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The vendor envelope's error code (`error.code`).
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the vendor error envelope with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.body);
        assert_eq!(
            self.body["success"],
            Value::Bool(false),
            "envelope: {}",
            self.body
        );
        assert_eq!(self.error_code(), code, "error code; body: {}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error message; body: {}",
            self.body
        );
    }
}

impl TestServer {
    /// A server with rate limits off.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `tune` may change first.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_data_dir(dir.path());
        tune(&mut config);
        let running = keyward::start(config).await.expect("server starts");
        Self {
            url: format!("http://{}", running.addr),
            setup_token: running.setup_token.as_ref().map(|t| t.token.clone()),
            running: Some(running),
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// The setup token of this start (panics once setup was done before it).
    #[track_caller]
    pub fn setup_token(&self) -> &str {
        self.setup_token
            .as_deref()
            .expect("a setup token: no operator existed when the server started")
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("graceful stop");
        }
        let config = Config::for_data_dir(self.dir.path());
        let running = keyward::start(config).await.expect("server restarts");
        self.url = format!("http://{}", running.addr);
        self.setup_token = running.setup_token.as_ref().map(|t| t.token.clone());
        self.running = Some(running);
    }

    pub fn db(&self) -> rusqlite::Connection {
        storage::open_and_migrate(&storage::database_path(self.dir.path())).expect("open db")
    }

    pub fn create_tenant(&self, slug: &str) {
        tenants::repo::create(&self.db(), slug, slug).expect("tenant");
    }

    /// A product in `tenant` (slug) with defaults: DESKTOP, PERPETUAL, 3 activations,
    /// format `TT-XXXX-XXXX-XXXX-XXXX`, no heartbeat policy. `tune` may change the defaults.
    pub fn create_product_with(
        &self,
        tenant: &str,
        slug: &str,
        tune: impl FnOnce(&mut NewProduct),
    ) -> Product {
        let conn = self.db();
        let tenant = tenants::repo::find_by_slug(&conn, tenant)
            .unwrap()
            .expect("tenant exists");
        let master = MasterKey::load_or_create(self.dir.path()).unwrap();
        let mut new = NewProduct {
            name: format!("Product {slug}"),
            slug: slug.to_owned(),
            product_type: ProductType::Desktop,
            default_license_type: LicenseType::Perpetual,
            default_max_activations: 3,
            key_format: KeyFormat::parse("TT-XXXX-XXXX-XXXX-XXXX").unwrap(),
            heartbeat: None,
            entitlements: Vec::new(),
        };
        tune(&mut new);
        products::create(&conn, &master, &tenant.id, new).expect("product")
    }

    pub fn create_product(&self, tenant: &str, slug: &str) -> Product {
        self.create_product_with(tenant, slug, |_| {})
    }

    pub fn heartbeat_policy(
        interval_secs: u32,
        grace_secs: u32,
        cull_dead: bool,
    ) -> Option<HeartbeatPolicy> {
        Some(HeartbeatPolicy {
            interval_secs,
            grace_secs,
            cull_dead,
        })
    }

    /// A live API key of `tenant` with `scope`, optionally restricted to a product id.
    pub fn create_api_key(&self, tenant: &str, scope: Scope, product_id: Option<&str>) -> String {
        let conn = self.db();
        let tenant = tenants::repo::find_by_slug(&conn, tenant)
            .unwrap()
            .expect("tenant exists");
        api_keys::create(&conn, &tenant.id, "test", scope, product_id)
            .expect("api key")
            .1
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(k) = api_key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::decode(req.send().await.expect("request sent")).await
    }

    /// Sends a raw body with an explicit content type (for malformed-input tests).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(k) = api_key {
            req = req.header("X-API-Key", k);
        }
        Self::decode(req.send().await.expect("request sent")).await
    }

    pub async fn post(&self, path: &str, api_key: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(api_key), Some(body))
            .await
    }

    pub async fn get(&self, path: &str, api_key: &str) -> Answer {
        self.call(Method::GET, path, Some(api_key), None).await
    }

    pub async fn decode(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp.bytes().await.expect("body").to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            raw,
            body,
        }
    }

    /// Creates a license through the API and returns its `license` object.
    pub async fn create_license(&self, api_key: &str, product_id: &str, extra: Value) -> Value {
        let mut body =
            serde_json::json!({"productId": product_id, "customerEmail": "buyer@example.com"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let a = self.post("/api/v1/license/create", api_key, body).await;
        assert_eq!(a.status, StatusCode::CREATED, "create license: {}", a.body);
        a.body["license"].clone()
    }

    /// Activates `machine_id` on `key`; returns the answer.
    pub async fn activate(&self, api_key: &str, key: &str, machine_id: &str) -> Answer {
        self.post(
            "/api/v1/license/activate",
            api_key,
            serde_json::json!({"licenseKey": key, "machineId": machine_id}),
        )
        .await
    }
}

/// Verifies an `X-Signature` header against the raw body with a base64 Ed25519 public key.
pub fn signature_verifies(public_key_b64: &str, body: &[u8], signature_b64: &str) -> bool {
    use base64::Engine;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(pk) = b64.decode(public_key_b64) else {
        return false;
    };
    let Ok(sig) = b64.decode(signature_b64) else {
        return false;
    };
    let Ok(pk) = <[u8; 32]>::try_from(pk.as_slice()) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    vk.verify(body, &Signature::from_bytes(&sig)).is_ok()
}

/// Convenience: all scopes, lowest first.
pub const SCOPES: [Scope; 4] = [
    Scope::ValidateOnly,
    Scope::CreateLicense,
    Scope::ReadOnly,
    Scope::FullAdmin,
];

pub fn rate_limits(per_ip: u32, per_api_key: u32, failed_auth_per_ip: u32) -> RateLimits {
    RateLimits {
        per_ip,
        per_api_key,
        failed_auth_per_ip,
        login_per_minute: 0,
        per_license_key: 0,
        update_checks_per_15_min: 0,
        downloads_per_hour: 0,
    }
}

/// Asserts the key/HWID envelope: `{"success":false,"error":"<non-empty>","code":<code>}`.
#[track_caller]
pub fn assert_kv_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "status; body: {}", a.body);
    assert_eq!(
        a.body["success"],
        Value::Bool(false),
        "envelope: {}",
        a.body
    );
    assert!(
        a.body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "a non-empty error string; body: {}",
        a.body
    );
    assert_eq!(a.body["code"], code, "error code; body: {}", a.body);
}

/// As [`assert_kv_error`], and the message names `needle` (a field or rule).
#[track_caller]
pub fn assert_kv_error_naming(a: &Answer, status: u16, code: &str, needle: &str) {
    assert_kv_error(a, status, code);
    let message = a.body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "the message names {needle:?}: {message:?}"
    );
}

impl TestServer {
    /// The single number a `SELECT COUNT(*) ...` (or any one-value query) answers.
    pub fn count(&self, sql: &str, params: impl rusqlite::Params) -> i64 {
        self.db()
            .query_row(sql, params, |r| r.get(0))
            .expect("count query")
    }
}

// ---- requests with any credential ------------------------------------------------------

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Cred<'a> {
    None,
    Bearer(&'a str),
    /// An operator session token sent as the `keyward_token` cookie, as a browser would.
    Cookie(&'a str),
    /// A portal session token sent as the `portal_token` cookie.
    PortalCookie(&'a str),
    ApiKey(&'a str),
}

/// A request with `cred`, an optional JSON body and extra headers.
pub async fn send(
    srv: &TestServer,
    method: Method,
    path: &str,
    cred: Cred<'_>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = srv.client.request(method, format!("{}{}", srv.url, path));
    req = match cred {
        Cred::None => req,
        Cred::Bearer(t) => req.header("Authorization", format!("Bearer {t}")),
        Cred::Cookie(t) => req.header("Cookie", format!("keyward_token={t}")),
        Cred::PortalCookie(t) => req.header("Cookie", format!("portal_token={t}")),
        Cred::ApiKey(k) => req.header("X-API-Key", k),
    };
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestServer::decode(req.send().await.expect("request sent")).await
}

/// A request from client address `ip`, told through `X-Forwarded-For` (the server must trust
/// 127.0.0.1 as a proxy), with an optional X-API-Key.
pub async fn send_from(
    srv: &TestServer,
    method: Method,
    path: &str,
    api_key: Option<&str>,
    ip: &str,
    body: Option<Value>,
) -> Answer {
    let cred = api_key.map_or(Cred::None, Cred::ApiKey);
    send(srv, method, path, cred, body, &[("X-Forwarded-For", ip)]).await
}

#[track_caller]
pub fn assert_status(a: &Answer, status: u16) {
    assert_eq!(a.status.as_u16(), status, "status; body: {}", a.body);
}

// ---- operators ------------------------------------------------------------------------

pub const REGISTER: &str = "/api/auth/register";
pub const LOGIN: &str = "/api/auth/login";

/// The first operator's email; every operator made by the tests shares [`PASSWORD`].
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

/// Logs in; returns the whole answer (asserting 200).
pub async fn login_answer(srv: &TestServer, email: &str, password: &str) -> Answer {
    let body = serde_json::json!({"email": email, "password": password});
    let a = send(srv, Method::POST, LOGIN, Cred::None, Some(body), &[]).await;
    assert_status(&a, 200);
    a
}

/// Logs in; returns the session token.
pub async fn login(srv: &TestServer, email: &str, password: &str) -> String {
    login_answer(srv, email, password).await.body["data"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// The first operator (the setup step), logged in.
pub struct Admin {
    pub id: String,
    pub tenant_id: String,
    pub token: String,
}

/// The body that creates the first operator: `email`, [`PASSWORD`] and the setup token the
/// server printed at its start.
pub fn setup_body(srv: &TestServer, email: &str) -> Value {
    serde_json::json!({"email": email, "password": PASSWORD, "setupToken": srv.setup_token()})
}

/// Registers the first operator (ADMIN, with the server's setup token) and logs it in.
pub async fn setup_admin(srv: &TestServer) -> Admin {
    let body = setup_body(srv, ADMIN_EMAIL);
    let a = send(srv, Method::POST, REGISTER, Cred::None, Some(body), &[]).await;
    assert_status(&a, 201);
    let user = &a.body["data"]["user"];
    Admin {
        id: user["id"].as_str().expect("id").to_owned(),
        tenant_id: user["tenantId"].as_str().expect("tenantId").to_owned(),
        token: login(srv, ADMIN_EMAIL, PASSWORD).await,
    }
}

// ---- JSON values and times ------------------------------------------------------------

/// A JSON string value, owned (panics on anything else).
#[track_caller]
pub fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("a string, found {v}"))
        .to_owned()
}

/// The string field `field` of the object `v` (panics when absent or not a string).
#[track_caller]
pub fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("string field {field:?} in {v}"))
}

/// An RFC 3339 timestamp from a JSON string (panics on anything else).
#[track_caller]
pub fn parse_time(v: &Value) -> OffsetDateTime {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("a date-time string, got {v}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formats")
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
