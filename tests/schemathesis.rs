//! The OpenAPI document against the bytes the server sends: schemathesis (PyPI; `./test.sh`
//! installs the pinned version) runs every operation of `/api/openapi.json` against the real
//! executable, once with each kind of credential the document declares and once without any,
//! and fails on any answer that is a server error, has an undeclared status or content type, or
//! does not match its declared schema.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The server's `--metrics-token`, the credential of `GET /metrics`.
const METRICS_TOKEN: &str = "schemathesis-metrics-token-0001";

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const SCHEMATHESIS: &str = "schemathesis";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Test cases per operation in the fuzzing phase (the coverage phase adds its own).
const MAX_EXAMPLES: u32 = 5;
/// Schemathesis processes at once; each runs one worker (its thread pool is not reliable on
/// Python 3.11: hypothesis's lambda cache races).
const PARALLEL_RUNS: usize = 2;

/// `keyward serve` on a free port with every rate limit off and abuse detection off, so tens of
/// thousands of generated requests are answered on their merits, not refused as a flood.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Server {
    let init = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("init")
        .output()
        .expect("run keyward init");
    assert!(init.status.success(), "keyward init: {init:?}");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("KEYWARD_RATE_LIMIT_PER_IP", "0")
        .env("KEYWARD_RATE_LIMIT_PER_API_KEY", "0")
        .env("KEYWARD_RATE_LIMIT_FAILED_AUTH", "0")
        .env("KEYWARD_RATE_LIMIT_LOGIN", "0")
        .env("KEYWARD_RATE_LIMIT_PER_LICENSE_KEY", "0")
        .env("KEYWARD_RATE_LIMIT_UPDATE_CHECKS", "0")
        .env("KEYWARD_RATE_LIMIT_DOWNLOADS", "0")
        .env("KEYWARD_ABUSE_DETECTION", "off")
        .env("KEYWARD_METRICS_TOKEN", METRICS_TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// What the runs need: one credential of each kind, and real objects for the path and query
/// parameters that name one.
struct Seeded {
    operator_token: String,
    cookie_token: String,
    api_key: String,
    restricted_api_key: String,
    portal_token: String,
    portal_cookie_token: String,
    license_key: String,
    /// Sessions of their own for the logout runs, which end the session they are sent with.
    logout_operator_tokens: [String; 2],
    logout_portal_tokens: [String; 2],
    /// `schemathesis.toml`: fixed values for the parameters naming an object.
    config: String,
}

async fn call(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
    expect: u16,
    what: &str,
) -> Value {
    let _ = client;
    let resp = req.send().await.expect(what);
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, expect, "{what}: {body}");
    body
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("a string, found {v}"))
        .to_owned()
}

/// A setup token from `keyward admin setup-url`, as the server's owner gets one in a shell.
fn setup_token(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["admin", "setup-url"])
        .output()
        .expect("run keyward admin setup-url");
    assert!(out.status.success(), "setup-url: {out:?}");
    let url = String::from_utf8(out.stdout).unwrap();
    url.trim()
        .split_once("/setup?token=")
        .unwrap_or_else(|| panic!("a setup URL: {url:?}"))
        .1
        .to_owned()
}

async fn seed(url: &str, setup_token: &str) -> Seeded {
    let c = reqwest::Client::new();
    let password = "a long passphrase";
    call(
        &c,
        c.post(format!("{url}/api/auth/register")).json(
            &json!({"email": "admin@example.com", "password": password, "setupToken": setup_token}),
        ),
        201,
        "setup",
    )
    .await;
    let login = |email: &'static str| {
        c.post(format!("{url}/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
    };
    let operator_token =
        s(&call(&c, login("admin@example.com"), 200, "login").await["data"]["token"]);
    let cookie_token =
        s(&call(&c, login("admin@example.com"), 200, "login").await["data"]["token"]);
    let mut logout_operator_tokens = [String::new(), String::new()];
    for t in &mut logout_operator_tokens {
        *t = s(&call(&c, login("admin@example.com"), 200, "login").await["data"]["token"]);
    }
    let bearer = format!("Bearer {operator_token}");

    // An operator for `/api/users/{id}` to act on.
    let victim_operator = call(
        &c,
        c.post(format!("{url}/api/auth/register"))
            .header("Authorization", &bearer)
            .json(&json!({"email": "user@example.com", "password": password, "role": "USER"})),
        201,
        "register a USER",
    )
    .await;

    // The app's project: portal users, license keys and a published release.
    let app = call(
        &c,
        c.post(format!("{url}/api/projects"))
            .header("Authorization", &bearer)
            .json(&json!({"name": "Fuzz App", "slug": "fuzz-app"})),
        201,
        "create project",
    )
    .await;
    let app_id = s(&app["data"]["project"]["id"]);
    // A second project the generated requests may change and delete things in.
    let target = call(
        &c,
        c.post(format!("{url}/api/projects"))
            .header("Authorization", &bearer)
            .json(&json!({"name": "Fuzz Target", "slug": "fuzz-target"})),
        201,
        "create project",
    )
    .await;
    let target_id = s(&target["data"]["project"]["id"]);

    let keys = |project: &str| {
        c.post(format!("{url}/api/keys"))
            .header("Authorization", &bearer)
            .json(&json!({"plan": "LIFETIME", "count": 2, "projectId": project}))
    };
    let app_keys = call(&c, keys(&app_id), 201, "generate keys").await;
    let license_key = s(&app_keys["data"]["keys"][0]["key"]);
    let portal_key = s(&app_keys["data"]["keys"][1]["key"]);
    let target_keys = call(&c, keys(&target_id), 201, "generate keys").await;
    let target_key_id = s(&target_keys["data"]["keys"][0]["id"]);
    let target_key = s(&target_keys["data"]["keys"][1]["key"]);

    let new_api_key = |name: &str, project: Option<&str>| {
        c.post(format!("{url}/api/api-keys"))
            .header("Authorization", &bearer)
            .json(&json!({"name": name, "scope": "FULL_ADMIN", "projectId": project}))
    };
    let api_key = s(&call(&c, new_api_key("fuzz", None), 201, "api key").await["data"]["key"]);
    let restricted_api_key = s(&call(
        &c,
        new_api_key("fuzz-restricted", Some(&target_id)),
        201,
        "restricted api key",
    )
    .await["data"]["key"]);
    let victim_api_key = call(&c, new_api_key("victim", None), 201, "api key").await;

    // A webhook endpoint of the target project, with one delivery (a test event), for
    // `/api/webhooks/endpoints/{id}…` and `/api/webhooks/deliveries/{id}/redeliver`.
    let hook = call(
        &c,
        c.post(format!("{url}/api/webhooks/endpoints"))
            .header("Authorization", &bearer)
            .json(&json!({"url": "https://hooks.example.com/fuzz", "projectId": target_id})),
        201,
        "webhook endpoint",
    )
    .await;
    let webhook_id = s(&hook["data"]["id"]);
    let hook_test = call(
        &c,
        c.post(format!("{url}/api/webhooks/endpoints/{webhook_id}/test"))
            .header("Authorization", &bearer),
        202,
        "webhook test event",
    )
    .await;
    let delivery_id = s(&hook_test["data"]["id"]);

    // A vendor license with an order id, for `/api/v1/license/by-order/{orderId}`.
    call(
        &c,
        c.post(format!("{url}/api/v1/license/create"))
            .header("X-API-Key", &api_key)
            .json(
                &json!({"productId": target_id, "customerEmail": "buyer@example.com",
                          "orderId": "order-1001"}),
            ),
        201,
        "vendor license",
    )
    .await;

    let upload = |project: &str, version: &str| {
        let form = reqwest::multipart::Form::new()
            .text("version", version.to_owned())
            .text("changelog", "Fixes.")
            .part(
                "bundle",
                reqwest::multipart::Part::bytes(b"a tiny bundle".to_vec()).file_name("app.bin"),
            );
        c.post(format!("{url}/api/projects/{project}/releases"))
            .header("Authorization", &bearer)
            .multipart(form)
    };
    let published = call(&c, upload(&app_id, "1.0.0"), 201, "upload").await;
    let published_id = s(&published["data"]["release"]["id"]);
    call(
        &c,
        c.post(format!("{url}/api/releases/{published_id}/publish"))
            .header("Authorization", &bearer),
        200,
        "publish",
    )
    .await;
    let draft = call(&c, upload(&target_id, "2.0.0"), 201, "upload").await;
    let draft_id = s(&draft["data"]["release"]["id"]);

    // A portal user with a linked key, signed in twice (Bearer and cookie).
    let portal = call(
        &c,
        c.post(format!("{url}/api/portal/register"))
            .json(&json!({"username": "enduser", "password": password, "projectId": app_id})),
        201,
        "portal register",
    )
    .await;
    let portal_token = s(&portal["data"]["token"]);
    call(
        &c,
        c.post(format!("{url}/api/portal/activate"))
            .header("Authorization", format!("Bearer {portal_token}"))
            .json(&json!({"key": portal_key})),
        200,
        "portal activate",
    )
    .await;
    let portal_login = || {
        c.post(format!("{url}/api/portal/login"))
            .json(&json!({"username": "enduser", "password": password, "projectId": app_id}))
    };
    let portal_cookie_token =
        s(&call(&c, portal_login(), 200, "portal login").await["data"]["token"]);
    let mut logout_portal_tokens = [String::new(), String::new()];
    for t in &mut logout_portal_tokens {
        *t = s(&call(&c, portal_login(), 200, "portal login").await["data"]["token"]);
    }

    // An encrypted envelope request (`/api/validate` with `payload`): its refusals are
    // answered encrypted, with the refusal's status.
    let encryption_key =
        keyward::crypto::from_base64(&s(&app["data"]["project"]["encryptionKey"])).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sealed = json!({"key": "NOT-A-KEY-OF-THIS-PROJECT", "hwid": "fuzz-machine",
                        "timestamp": now, "requestId": "schemathesis-envelope-0001"});
    let envelope =
        keyward::crypto::envelope_seal(&encryption_key, sealed.to_string().as_bytes()).unwrap();

    let user_id = s(&victim_operator["data"]["user"]["id"]);
    let victim_tenant = s(&victim_operator["data"]["user"]["tenantId"]);
    let api_key_id = s(&victim_api_key["data"]["apiKey"]["id"]);
    let config = format!(
        r#"[auth]
# The document's register and login operations are not a sign-up flow to follow.
auto-signup = false

[generation]
max-examples = {MAX_EXAMPLES}

# Generated sequences of calls would end the credentials' own sessions and keys half-way.
[phases.stateful]
enabled = false

[[operations]]
include-path-regex = "^/api/projects/\\{{id\\}}"
parameters = {{ "path.id" = "{target_id}" }}

[[operations]]
include-path-regex = "^/api/keys/\\{{id\\}}"
parameters = {{ "path.id" = "{target_key_id}" }}

[[operations]]
include-path-regex = "^/api/releases/\\{{id\\}}"
parameters = {{ "path.id" = "{draft_id}" }}

[[operations]]
include-path-regex = "^/api/users/\\{{id\\}}"
parameters = {{ "path.id" = "{user_id}" }}

[[operations]]
include-path-regex = "^/api/api-keys/\\{{id\\}}"
parameters = {{ "path.id" = "{api_key_id}" }}

[[operations]]
include-path = "/api/v1/license/check/{{key}}"
parameters = {{ "path.key" = "{target_key}" }}

[[operations]]
include-path = "/api/v1/license/by-order/{{orderId}}"
parameters = {{ "path.orderId" = "order-1001" }}

[[operations]]
include-path-regex = "^/api/v1/updates/(download|manifest)$"
parameters = {{ "query.release_id" = "{published_id}" }}

[[operations]]
include-path = "/api/v1/updates/public-key"
parameters = {{ "query.product" = "fuzz-app" }}

[[operations]]
include-path = "/api/portal/info"
parameters = {{ "query.slug" = "fuzz-app" }}

# Requiring two-factor login of the credentials' own workspace would leave their sessions
# able to enrol only: the policy is fuzzed on another workspace.
[[operations]]
include-path = "/api/workspace/2fa"
parameters = {{ "body.tenantId" = "{victim_tenant}" }}

[[operations]]
include-path-regex = "^/api/webhooks/endpoints/\\{{id\\}}"
parameters = {{ "path.id" = "{webhook_id}" }}

[[operations]]
include-path = "/api/webhooks/deliveries/{{id}}/redeliver"
parameters = {{ "path.id" = "{delivery_id}" }}

[[operations]]
include-path = "/api/validate"
parameters = {{ "body.projectId" = "{app_id}", "body.payload" = "{envelope}" }}
"#
    );
    Seeded {
        operator_token,
        cookie_token,
        api_key,
        restricted_api_key,
        portal_token,
        portal_cookie_token,
        license_key,
        logout_operator_tokens,
        logout_portal_tokens,
        config,
    }
}

/// One schemathesis run: `headers` carry the credential; `operations` are the names
/// (`GET /api/keys`) it covers, or every operation when empty.
struct Run {
    name: String,
    headers: Vec<String>,
    operations: Vec<String>,
    /// The configuration file, in the run's directory.
    config: &'static str,
}

/// What one run saw: its output, and how many answers were 2xx (real objects reached).
struct Outcome {
    output: Output,
    successes: usize,
}

fn schemathesis(dir: &Path, url: &str, n: usize, run: &Run) -> Outcome {
    let report = dir.join(format!("run-{n}.ndjson"));
    let mut cmd = Command::new(SCHEMATHESIS);
    cmd.current_dir(dir)
        .arg("--config-file")
        .arg(dir.join(run.config))
        .arg("run")
        .arg(format!("{url}/api/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .args(["--seed", "20261130"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .arg("--no-color");
    for h in &run.headers {
        cmd.args(["--header", h]);
    }
    for op in &run.operations {
        cmd.args(["--include-name", op]);
    }
    let output = cmd
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{SCHEMATHESIS}` ({e}): ./test.sh installs it (PyPI, pinned)")
        });
    let events = std::fs::read_to_string(&report).unwrap_or_default();
    let successes = events.matches("\"status_code\":2").count();
    Outcome { output, successes }
}

/// The operations of the document, each with the security schemes it declares.
fn operations(doc: &Value) -> Vec<(String, Vec<String>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let schemes = op["security"]
                .as_array()
                .map(|alternatives| {
                    alternatives
                        .iter()
                        .filter_map(|a| a.as_object())
                        .flat_map(|a| a.keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            ops.push((format!("{} {path}", method.to_uppercase()), schemes));
        }
    }
    ops
}

/// Runs `runs` two at a time; returns each failure's report.
fn run_all(dir: &Path, url: &str, runs: Vec<Run>) -> Vec<String> {
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // Longest first (the queue is popped from its end), so both lanes finish together.
    let mut runs: Vec<_> = runs.into_iter().enumerate().collect();
    runs.sort_by_key(|(_, run)| run.operations.len());
    let queue = Arc::new(Mutex::new(runs));
    let workers: Vec<_> = (0..PARALLEL_RUNS)
        .map(|_| {
            let (queue, failures) = (queue.clone(), failures.clone());
            let (dir, url) = (dir.to_owned(), url.to_owned());
            std::thread::spawn(move || {
                loop {
                    let Some((n, run)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let t = Instant::now();
                    let out = schemathesis(&dir, &url, n, &run);
                    let ops = format!("{} operations", run.operations.len());
                    eprintln!(
                        "schemathesis, {} ({ops}): {:.0} s, {} answers 2xx, {}",
                        run.name,
                        t.elapsed().as_secs_f64(),
                        out.successes,
                        out.output.status
                    );
                    if !out.output.status.success() {
                        failures.lock().unwrap().push(format!(
                            "==== schemathesis with {} failed ({}):\n{}\n{}",
                            run.name,
                            out.output.status,
                            String::from_utf8_lossy(&out.output.stdout),
                            String::from_utf8_lossy(&out.output.stderr)
                        ));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    failures.clone()
}

#[test]
fn every_operation_answers_as_the_document_says_with_each_credential() {
    let version = Command::new(SCHEMATHESIS).arg("--version").output();
    let version = version.unwrap_or_else(|e| {
        panic!("cannot run `{SCHEMATHESIS}` ({e}): ./test.sh installs it (PyPI, pinned)")
    });
    assert!(
        version.status.success(),
        "schemathesis --version: {version:?}"
    );
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert!(
        version.contains(" 4."),
        "schemathesis 4.x is required (flags differ in 3.x), found {version}"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let token = setup_token(&data);
    let seeded = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(seed(&server.url, &token));
    std::fs::write(dir.path().join("schemathesis.toml"), &seeded.config).unwrap();

    let doc: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{}/api/openapi.json", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let ops = operations(&doc);
    let declared: BTreeSet<String> = ops
        .iter()
        .flat_map(|(_, schemes)| schemes.iter().cloned())
        .collect();
    let all: Vec<String> = ops.iter().map(|(name, _)| name.clone()).collect();
    let secured: Vec<String> = ops
        .iter()
        .filter(|(_, schemes)| !schemes.is_empty())
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    // Without a credential an operation that needs one answers 401 whatever the input: a few
    // cases each are enough there, the public operations get the full run.
    std::fs::write(
        dir.path().join("anonymous.toml"),
        format!(
            "{}\n[[operations]]\ninclude-name = [{}]\nphases.coverage.enabled = false\n\
             generation.max-examples = 2\n",
            seeded.config,
            secured.join(", ")
        ),
    )
    .unwrap();

    // Each credential kind, by the security scheme that declares it; session credentials
    // have a second session of their kind for logout, which ends the session it is sent with.
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let operator_cookie = |t: &str| format!("Cookie: keyward_token={t}");
    let portal_cookie = |t: &str| format!("Cookie: portal_token={t}");
    let [op_logout_1, op_logout_2] = &seeded.logout_operator_tokens;
    let [portal_logout_1, portal_logout_2] = &seeded.logout_portal_tokens;
    let credentials: Vec<(&str, &str, String, Option<String>)> = vec![
        (
            "operator session, Bearer",
            "BearerToken",
            bearer(&seeded.operator_token),
            Some(bearer(op_logout_1)),
        ),
        (
            "operator session, cookie",
            "SessionCookie",
            operator_cookie(&seeded.cookie_token),
            Some(operator_cookie(op_logout_2)),
        ),
        (
            "API key, FULL_ADMIN",
            "ApiKey",
            format!("X-API-Key: {}", seeded.api_key),
            None,
        ),
        (
            "API key, FULL_ADMIN, one product",
            "ApiKey",
            format!("X-API-Key: {}", seeded.restricted_api_key),
            None,
        ),
        (
            "portal session, Bearer",
            "PortalBearer",
            bearer(&seeded.portal_token),
            Some(bearer(portal_logout_1)),
        ),
        (
            "portal session, cookie",
            "PortalCookie",
            portal_cookie(&seeded.portal_cookie_token),
            Some(portal_cookie(portal_logout_2)),
        ),
        (
            "license key",
            "LicenseKey",
            format!("X-License-Key: {}", seeded.license_key),
            None,
        ),
        ("metrics token", "MetricsToken", bearer(METRICS_TOKEN), None),
    ];
    let covered: BTreeSet<String> = credentials
        .iter()
        .map(|(_, scheme, _, _)| (*scheme).to_owned())
        .collect();
    assert_eq!(
        covered, declared,
        "every security scheme of the document has a credential here"
    );

    // Without a credential: every operation. With one: every operation that declares its
    // scheme, and the public ones (some act on an optional credential, e.g. register).
    let mut runs = vec![Run {
        name: "no credential".into(),
        headers: vec![],
        operations: all,
        config: "anonymous.toml",
    }];
    for (name, scheme, header, logout_header) in &credentials {
        // The metrics token opens `/metrics` alone: the public operations need no run with it.
        let theirs = |(_, schemes): &&(String, Vec<String>)| {
            (schemes.is_empty() && *scheme != "MetricsToken") || schemes.iter().any(|s| s == scheme)
        };
        let is_logout = |op: &str| op.ends_with("/logout");
        let (logout, rest): (Vec<String>, Vec<String>) = ops
            .iter()
            .filter(theirs)
            .map(|(op, _)| op.clone())
            .partition(|op| logout_header.is_some() && is_logout(op));
        runs.push(Run {
            name: (*name).to_owned(),
            headers: vec![header.clone()],
            operations: rest,
            config: "schemathesis.toml",
        });
        if let Some(logout_header) = logout_header {
            runs.push(Run {
                name: format!("{name}, logout (a session of its own)"),
                headers: vec![logout_header.clone()],
                operations: logout,
                config: "schemathesis.toml",
            });
        }
    }

    let started = Instant::now();
    let failures = run_all(dir.path(), &server.url, runs);
    let took = started.elapsed();
    eprintln!("schemathesis: every run in {:.0} s", took.as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        took < Duration::from_secs(600),
        "the schemathesis runs took {took:?}: keep them bounded"
    );
}
