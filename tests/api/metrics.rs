//! `GET /metrics` (issue 14): who may scrape it, what traffic shows up in it and with which
//! labels, and that Prometheus's own checker accepts a real scrape.
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "metrics-token-0123456789abcdef";

fn with_token(config: &mut keyward::config::Config) {
    config.metrics.token = Some(TOKEN.into());
}

async fn scrape_at(url: &str, auth: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.expect("scrape sent");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        content_type,
        resp.text().await.expect("scrape body"),
    )
}

/// A scrape with the right token; panics unless it is a 200.
async fn scrape(srv: &TestServer) -> String {
    let (status, _, text) = scrape_at(&srv.url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[track_caller]
fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(
        sample(text, series),
        Some(expected),
        "{series} in the scrape:\n{text}"
    );
}

#[track_caller]
fn assert_positive(text: &str, series: &str) {
    assert!(
        sample(text, series).is_some_and(|v| v > 0.0),
        "{series} > 0 in the scrape:\n{text}"
    );
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_the_bearer_token() {
    let srv = TestServer::start_with(with_token).await;
    let cases: &[(&str, Option<String>, u16, &str)] = &[
        ("no credential", None, 401, "Bearer"),
        (
            "wrong token",
            Some("Bearer not-the-token".into()),
            401,
            "Bearer",
        ),
        (
            "token prefix",
            Some(format!("Bearer {}", &TOKEN[..10])),
            401,
            "Bearer",
        ),
        (
            "token and more",
            Some(format!("Bearer {TOKEN}x")),
            401,
            "Bearer",
        ),
        (
            "basic scheme",
            Some(format!("Basic {TOKEN}")),
            401,
            "Bearer",
        ),
        ("empty bearer", Some("Bearer ".into()), 401, "Bearer"),
        (
            "right token",
            Some(format!("Bearer {TOKEN}")),
            200,
            "# TYPE",
        ),
    ];
    for (name, auth, status, fragment) in cases {
        let mut req = srv.client.get(format!("{}/metrics", srv.url));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{name}");
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body = resp.text().await.unwrap();
        assert!(body.contains(fragment), "{name}: {body}");
        if *status == 401 {
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer realm=\"metrics\""),
                "{name}"
            );
            assert!(!body.contains(TOKEN), "{name}: the token is never echoed");
        } else {
            assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        }
    }
    // Only GET.
    let a = srv
        .call(Method::POST, "/metrics", None, Some(json!({})))
        .await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn metrics_do_not_exist_without_a_token_or_when_off() {
    // No token configured: /metrics is not there on the main listener, whatever is sent.
    let srv = TestServer::start().await;
    for auth in [None, Some("Bearer "), Some("Bearer anything")] {
        let (status, _, _) = scrape_at(&srv.url, auth).await;
        assert_eq!(status, 404, "{auth:?}");
    }
    // Metrics off: 404 even with the token, and on the private listener.
    let srv = TestServer::start_with(|c| {
        with_token(c);
        c.metrics.enabled = false;
        c.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (status, _, _) = scrape_at(&srv.url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 404);
    let private = srv.running.as_ref().unwrap().metrics_addr.unwrap();
    let (status, _, _) = scrape_at(&format!("http://{private}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_token_may_come_from_a_file_and_an_empty_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let srv = TestServer::start_with(|c| c.metrics.token_file = Some(file.clone())).await;
    scrape(&srv).await;

    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = keyward::config::Config::for_data_dir(data.path());
    config.metrics.token_file = Some(empty);
    let refused = keyward::start(config).await.err().expect("refused");
    assert!(refused.to_string().contains("is empty"), "{refused}");
    let mut config = keyward::config::Config::for_data_dir(data.path());
    config.metrics.token_file = Some(dir.path().join("missing.token"));
    let refused = keyward::start(config).await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("cannot read the metrics token file"),
        "{refused}"
    );
}

#[tokio::test]
async fn wrong_tokens_spend_the_failed_credential_budget() {
    let srv = TestServer::start_with(|c| {
        with_token(c);
        c.rate_limits = rate_limits(0, 0, 2);
    })
    .await;
    for _ in 0..2 {
        let (status, _, _) = scrape_at(&srv.url, Some("Bearer guess")).await;
        assert_eq!(status, 401);
    }
    let resp = srv
        .client
        .get(format!("{}/metrics", srv.url))
        .header("authorization", "Bearer guess")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // The right token still works, and the refusal is counted under its limiter.
    let text = scrape(&srv).await;
    assert_sample(
        &text,
        r#"keyward_rate_limit_refusals_total{limiter="failed_auth_per_ip"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"keyward_rate_limit_refusals_total{limiter="per_ip"}"#,
        0.0,
    );
}

#[tokio::test]
async fn the_private_listener_serves_metrics_alone_without_a_token() {
    let srv =
        TestServer::start_with(|c| c.metrics.bind = Some("127.0.0.1:0".parse().unwrap())).await;
    let private = format!(
        "http://{}",
        srv.running.as_ref().unwrap().metrics_addr.unwrap()
    );
    let (status, content_type, text) = scrape_at(&private, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.contains("keyward_database_size_bytes"), "{text}");
    // Nothing else is served there.
    for path in ["/api/health", "/", "/api/openapi.json"] {
        let resp = reqwest::get(format!("{private}{path}")).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    // And the main listener still has no /metrics (no token configured).
    let (status, _, _) = scrape_at(&srv.url, None).await;
    assert_eq!(status, 404);
}

/// Every kind of traffic the issue names shows up, labelled by route template and result code.
#[tokio::test]
async fn traffic_shows_up_by_route_template_and_result_code() {
    let srv = TestServer::start_with(with_token).await;
    let product = srv.create_product("default", "metered");
    let api_key = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv.create_license(&api_key, &product.id, json!({})).await;
    let key = license["key"].as_str().unwrap().to_owned();
    let license_id = license["id"].as_str().unwrap().to_owned();

    // Vendor face: two activations (new, repeated), validations VALID and NOT_FOUND.
    assert_eq!(srv.activate(&api_key, &key, "machine-1").await.status, 200);
    let again = srv.activate(&api_key, &key, "machine-1").await;
    assert!(again.status.is_success(), "{}", again.body);
    let validate = |key: String| {
        let srv = &srv;
        let api_key = api_key.clone();
        async move {
            srv.post(
                "/api/v1/license/validate",
                &api_key,
                json!({"licenseKey": key, "machineId": "machine-1"}),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(validate(key.clone()).await.status, 200);
    }
    let unknown = validate("TT-AAAA-BBBB-CCCC-DDDD".into()).await;
    assert_eq!(unknown.body["code"], "NOT_FOUND", "{}", unknown.body);
    // A path with an id in it (an order without licenses).
    let a = srv
        .get("/api/v1/license/by-order/order-secret-42", &api_key)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Key/HWID face: a first validation binds the HWID (its activation), another HWID is
    // refused.
    let a = srv
        .post("/api/projects", &api_key, json!({"name": "Metered app"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let project = a.body["data"]["project"]["id"].as_str().unwrap().to_owned();
    let a = srv
        .post(
            "/api/keys",
            &api_key,
            json!({"plan": "MONTHLY", "projectId": project}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let kv_key = a.body["data"]["keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let kv = |hwid: &'static str| {
        let srv = &srv;
        let kv_key = kv_key.clone();
        async move {
            srv.call(
                Method::POST,
                "/api/validate",
                None,
                Some(json!({"key": kv_key, "hwid": hwid})),
            )
            .await
        }
    };
    assert_eq!(kv("hwid-1").await.status, 200);
    let refused = kv("hwid-2").await;
    assert_kv_error(&refused, 403, "HWID_MISMATCH");

    // An open abuse flag and a pending webhook delivery.
    let tenant: String = srv
        .db()
        .query_row("SELECT id FROM tenants WHERE slug = 'default'", [], |r| {
            r.get(0)
        })
        .unwrap();
    srv.db()
        .execute(
            "INSERT INTO abuse_flags (id, tenant_id, product_id, kind, subject_type, subject,
                                      state, evidence, created_at, updated_at)
             VALUES ('flag_metrics', ?1, ?2, 'KEY_SHARING', 'LICENSE', ?3, 'OPEN', '{}', 1, 1)",
            [&tenant, &product.id, &license_id],
        )
        .unwrap();
    srv.db()
        .execute(
            "INSERT INTO webhook_events (id, tenant_id, product_id, type, body, created_at)
             VALUES ('msg_metrics', ?1, ?2, 'abuse.flag.created', '{}', 1)",
            [&tenant, &product.id],
        )
        .unwrap();
    // Due far in the future: the delivery worker leaves it queued.
    srv.db()
        .execute(
            "INSERT INTO webhook_deliveries (id, event_id, product_id, url, status,
                                             next_attempt_at, created_at)
             VALUES ('dlv_metrics', 'msg_metrics', ?1, 'https://hooks.example.com/', 'PENDING',
                     9000000000000000, 1)",
            [&product.id],
        )
        .unwrap();

    let text = scrape(&srv).await;
    // Requests by route template, method and status, with a latency histogram.
    assert_sample(
        &text,
        r#"keyward_http_requests_total{method="POST",route="/api/v1/license/validate",status="200"}"#,
        4.0,
    );
    assert_sample(
        &text,
        r#"keyward_http_requests_total{method="POST",route="/api/validate",status="403"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"keyward_http_request_duration_seconds_count{method="POST",route="/api/v1/license/validate"}"#,
        4.0,
    );
    assert_sample(
        &text,
        r#"keyward_http_request_duration_seconds_bucket{method="POST",route="/api/v1/license/validate",le="+Inf"}"#,
        4.0,
    );
    assert_sample(
        &text,
        r#"keyward_http_requests_total{method="GET",route="/api/v1/license/by-order/:param0",status="200"}"#,
        1.0,
    );
    let order = "order-secret-42".to_owned();
    for secret in [&key, &kv_key, &license_id, &product.id, &api_key, &order] {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} leaked into a label"
        );
    }
    // Validations and activations by face and result code.
    for (series, n) in [
        (
            r#"keyward_validations_total{face="vendor",result="VALID"}"#,
            3.0,
        ),
        (
            r#"keyward_validations_total{face="vendor",result="NOT_FOUND"}"#,
            1.0,
        ),
        (
            r#"keyward_validations_total{face="key_hwid",result="VALID"}"#,
            1.0,
        ),
        (
            r#"keyward_validations_total{face="key_hwid",result="HWID_MISMATCH"}"#,
            1.0,
        ),
        (
            r#"keyward_activations_total{face="vendor",result="ACTIVATED"}"#,
            1.0,
        ),
        (
            r#"keyward_activations_total{face="vendor",result="ALREADY_ACTIVATED"}"#,
            1.0,
        ),
        (
            r#"keyward_activations_total{face="key_hwid",result="ACTIVATED"}"#,
            1.0,
        ),
        (
            r#"keyward_activations_total{face="key_hwid",result="HWID_MISMATCH"}"#,
            1.0,
        ),
    ] {
        assert_sample(&text, series, n);
    }
    // The writer, the database, abuse, outgoing queues.
    assert_positive(&text, "keyward_writer_batch_size_count");
    assert_positive(&text, "keyward_writer_batch_size_sum");
    assert_positive(
        &text,
        r#"keyward_writer_commits_total{outcome="committed"}"#,
    );
    assert_positive(
        &text,
        r#"keyward_writer_commit_duration_seconds_bucket{le="+Inf"}"#,
    );
    assert!(
        sample(&text, "keyward_writer_queue_depth").is_some(),
        "{text}"
    );
    assert_positive(&text, "keyward_database_size_bytes");
    assert!(
        sample(&text, "keyward_database_wal_size_bytes").is_some(),
        "{text}"
    );
    assert_sample(
        &text,
        r#"keyward_abuse_flags_open{kind="KEY_SHARING"}"#,
        1.0,
    );
    assert_sample(&text, "keyward_abuse_ip_blocks_active", 0.0);
    assert_sample(
        &text,
        r#"keyward_outgoing_queue_depth{queue="webhooks"}"#,
        1.0,
    );
    // Every family has its help and type.
    for family in [
        "keyward_http_requests_total",
        "keyward_http_request_duration_seconds",
        "keyward_validations_total",
        "keyward_activations_total",
        "keyward_writer_batch_size",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_limiter() {
    let srv = TestServer::start_with(|c| {
        with_token(c);
        c.rate_limits = rate_limits(0, 0, 0);
        c.rate_limits.per_license_key = 2;
    })
    .await;
    let api_key = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = srv
        .post("/api/projects", &api_key, json!({"name": "Limited"}))
        .await;
    let project = a.body["data"]["project"]["id"].as_str().unwrap().to_owned();
    let a = srv
        .post(
            "/api/keys",
            &api_key,
            json!({"plan": "MONTHLY", "projectId": project}),
        )
        .await;
    let kv_key = a.body["data"]["keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let a = srv
            .call(
                Method::POST,
                "/api/validate",
                None,
                Some(json!({"key": kv_key, "hwid": "hwid-1"})),
            )
            .await;
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let text = scrape(&srv).await;
    assert_sample(
        &text,
        r#"keyward_rate_limit_refusals_total{limiter="per_license_key"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"keyward_http_requests_total{method="POST",route="/api/validate",status="429"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"keyward_validations_total{face="key_hwid",result="RATE_LIMITED"}"#,
        2.0,
    );
}

/// Switched off at runtime, nothing more is recorded (what the bench compares).
#[tokio::test]
async fn recording_can_be_switched_off_at_runtime() {
    let srv = TestServer::start_with(|c| {
        with_token(c);
        c.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let state = &srv.running.as_ref().unwrap().state;
    let health = r#"keyward_http_requests_total{method="GET",route="/api/health",status="200"}"#;
    srv.call(Method::GET, "/api/health", None, None).await;
    state.telemetry.set_enabled(false);
    srv.call(Method::GET, "/api/health", None, None).await;
    state.telemetry.set_enabled(true);
    assert_sample(&scrape(&srv).await, health, 1.0);
}

/// Prometheus's own checker (`promtool check metrics`, Debian package `prometheus`) accepts a
/// real scrape after mixed traffic: names, types, help texts, histogram buckets.
#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let srv = TestServer::start_with(with_token).await;
    let product = srv.create_product("default", "checked");
    let api_key = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv.create_license(&api_key, &product.id, json!({})).await;
    let key = license["key"].as_str().unwrap();
    srv.activate(&api_key, key, "machine-1").await;
    srv.post(
        "/api/v1/license/validate",
        &api_key,
        json!({"licenseKey": key, "machineId": "machine-1"}),
    )
    .await;
    srv.call(Method::GET, "/no/such/page", None, None).await;
    srv.call_raw(
        Method::POST,
        "/api/v1/license/validate",
        Some(&api_key),
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    let text = scrape(&srv).await;
    assert!(text.contains(r#"route="unmatched""#), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required (Debian package `prometheus`; test.sh installs it): {e}")
        });
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags as `keyward serve` parses them (and their refusals).
#[test]
fn the_metrics_flags_parse_into_the_configuration() {
    use clap::Parser;
    use keyward::cli::{Cli, Command};
    let serve = |args: &[&str]| {
        let mut argv = vec!["keyward", "serve"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Some(Command::Serve(args)) => args.into_config("./data".into()).metrics,
            other => panic!("not serve: {other:?}"),
        })
    };
    let defaults = serve(&[]).unwrap();
    assert!(defaults.enabled);
    assert_eq!(defaults.token, None);
    assert_eq!(defaults.bind, None);
    let set = serve(&[
        "--metrics",
        "off",
        "--metrics-token-file",
        "/etc/keyward/metrics.token",
        "--metrics-bind",
        "10.0.0.5:9912",
    ])
    .unwrap();
    assert!(!set.enabled);
    assert_eq!(
        set.token_file.as_deref(),
        Some(std::path::Path::new("/etc/keyward/metrics.token"))
    );
    assert_eq!(set.bind, Some("10.0.0.5:9912".parse().unwrap()));
    assert_eq!(
        serve(&["--metrics-token", "t0ken"])
            .unwrap()
            .token
            .as_deref(),
        Some("t0ken")
    );
    for (name, args) in [
        (
            "token and token file",
            &["--metrics-token", "a", "--metrics-token-file", "f"][..],
        ),
        ("not an address", &["--metrics-bind", "localhost"][..]),
        ("not on/off", &["--metrics", "maybe"][..]),
    ] {
        assert!(serve(args).is_err(), "{name}");
    }
}

/// `/metrics` is in the OpenAPI document with each status it answers, as plain text, behind
/// its own bearer scheme (schemathesis checks the answers against it).
#[tokio::test]
async fn the_openapi_document_declares_metrics() {
    let srv = TestServer::start().await;
    let doc = srv
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let op = &doc["paths"]["/metrics"]["get"];
    assert!(op.is_object(), "GET /metrics is declared");
    assert_eq!(op["security"], json!([{"MetricsToken": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["MetricsToken"]["scheme"],
        "bearer"
    );
    let responses = op["responses"].as_object().unwrap();
    let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
    assert_eq!(statuses, ["200", "401", "404", "429", "503"]);
    assert!(
        responses["200"]["content"]
            .get("text/plain; version=0.0.4; charset=utf-8")
            .is_some(),
        "{}",
        responses["200"]
    );
    for status in ["401", "404", "429", "503"] {
        assert!(
            responses[status]["content"]
                .as_object()
                .unwrap()
                .keys()
                .all(|t| t.starts_with("text/plain")),
            "{status}: {}",
            responses[status]
        );
    }
    let named = |status: &str, header: &str| {
        responses[status]["headers"]
            .as_object()
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(header)))
    };
    assert!(named("401", "WWW-Authenticate") && named("429", "Retry-After"));
}
