//! The webhook admin API's reach (credentials, other tenants, product-restricted keys), the
//! secret shown once and rotated, and bad input.

use crate::helpers::*;
use crate::webhooks::{Case, ENDPOINTS, endpoint, get_endpoint, patch, server};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::json;

/// Reach (credentials, other tenants, product-restricted keys), the secret shown once and
/// rotated, and bad input: each refused with the key/HWID envelope, changing nothing.
#[tokio::test]
async fn admin_api_reach_secrets_and_bad_input() {
    let srv = server().await;
    srv.create_tenant("other");
    let one = srv.create_product("default", "one").id;
    let two = srv.create_product("default", "two").id;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let one_admin = srv.create_api_key("default", Scope::FullAdmin, Some(&one));
    let two_admin = srv.create_api_key("default", Scope::FullAdmin, Some(&two));
    let read_only = srv.create_api_key("default", Scope::ReadOnly, None);
    let stranger = srv.create_api_key("other", Scope::FullAdmin, None);
    let (wide, secret) = endpoint(
        &srv,
        &admin,
        json!({"url": "https://hooks.example.com/all"}),
    )
    .await;
    let (of_one, _) = endpoint(
        &srv,
        &one_admin,
        json!({"url": "https://hooks.example.com/one", "eventTypes": ["license.*", "payment.*"]}),
    )
    .await;
    let e = get_endpoint(&srv, &admin, &of_one).await;
    assert_eq!(
        e["projectId"],
        json!(one),
        "a restricted key's endpoint is its product's"
    );
    assert!(e.get("secret").is_none(), "the secret is shown once");

    // Rotation answers a new secret, once.
    let a = patch(
        &srv,
        &admin,
        &format!("{ENDPOINTS}/{wide}"),
        json!({"rotateSecret": true, "description": "rotated"}),
    )
    .await;
    assert_status(&a, 200);
    let rotated = str_field(&a.body["data"], "secret");
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert_eq!(a.body["data"]["description"], "rotated");

    let wide_path = format!("{ENDPOINTS}/{wide}");
    let one_path = format!("{ENDPOINTS}/{of_one}");
    let cases: Vec<Case> = vec![
        (
            "no credential",
            Method::GET,
            ENDPOINTS.into(),
            None,
            None,
            401,
            "UNAUTHORIZED",
        ),
        (
            "read-only key",
            Method::GET,
            ENDPOINTS.into(),
            Some(&read_only),
            None,
            403,
            "",
        ),
        (
            "other tenant",
            Method::GET,
            wide_path.clone(),
            Some(&stranger),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other tenant patch",
            Method::PATCH,
            one_path.clone(),
            Some(&stranger),
            Some(json!({"enabled": false})),
            404,
            "NOT_FOUND",
        ),
        (
            "other product",
            Method::GET,
            one_path.clone(),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "tenant-wide from a restricted key",
            Method::GET,
            wide_path.clone(),
            Some(&one_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other product's deliveries",
            Method::GET,
            format!("{one_path}/deliveries"),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "other product delete",
            Method::DELETE,
            one_path.clone(),
            Some(&two_admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "create for another product",
            Method::POST,
            ENDPOINTS.into(),
            Some(&two_admin),
            Some(json!({"url": "https://h.example.com/", "projectId": one})),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown endpoint",
            Method::GET,
            format!("{ENDPOINTS}/whep_nope"),
            Some(&admin),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "unknown delivery",
            Method::POST,
            "/api/webhooks/deliveries/dlv_nope/redeliver".into(),
            Some(&admin),
            Some(json!({})),
            404,
            "NOT_FOUND",
        ),
        (
            "unknown project",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "projectId": "prod_nope"})),
            404,
            "NOT_FOUND",
        ),
        (
            "missing url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"description": "x"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "url of a wrong type",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": 42})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "not http",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "ftp://h.example.com/"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "credentials in the url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://u:p@h.example.com/"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "oversize url",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": format!("https://h.example.com/{}", "a".repeat(2100))})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "oversize description",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "description": "d".repeat(501)})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "unknown event type",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": ["license.nope"]})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "event types not a list",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": "license.*"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "too many event types",
            Method::POST,
            ENDPOINTS.into(),
            Some(&admin),
            Some(json!({"url": "https://h.example.com/", "eventTypes": vec!["*"; 33]})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "enabled of a wrong type",
            Method::PATCH,
            wide_path.clone(),
            Some(&admin),
            Some(json!({"enabled": "yes"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad patch url",
            Method::PATCH,
            wide_path.clone(),
            Some(&admin),
            Some(json!({"url": "nope"})),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad status filter",
            Method::GET,
            format!("{wide_path}/deliveries?status=LOST"),
            Some(&admin),
            None,
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad limit",
            Method::GET,
            format!("{ENDPOINTS}?limit=0"),
            Some(&admin),
            None,
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, method, path, key, body, status, code) in cases {
        let a = srv.call(method, &path, key, body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_eq!(a.body["success"], false, "{name}: {}", a.body);
        if !code.is_empty() {
            assert_eq!(a.body["code"], code, "{name}: {}", a.body);
        }
    }
    let a = srv
        .call_raw(
            Method::POST,
            ENDPOINTS,
            Some(&admin),
            "application/json",
            b"{\"url\":".to_vec(),
        )
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");

    // Nothing above changed anything.
    let e = get_endpoint(&srv, &admin, &of_one).await;
    assert_eq!(e["enabled"], true);
    assert_eq!(e["eventTypes"], json!(["license.*", "payment.*"]));
    let a = srv.get(ENDPOINTS, &admin).await;
    assert_eq!(a.body["data"]["pagination"]["total"], 2, "{}", a.body);
    // A restricted key lists only its product's endpoints.
    let a = srv.get(ENDPOINTS, &one_admin).await;
    let listed: Vec<&str> = a.body["data"]["endpoints"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, vec![of_one.as_str()]);

    // An operator's session works too, and deletes.
    let op = setup_admin(&srv).await;
    let a = send(
        &srv,
        Method::DELETE,
        &one_path,
        Cred::Bearer(&op.token),
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    let a = srv.get(&one_path, &admin).await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let logged = srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'webhook.endpoint.%'",
        [],
    );
    assert_eq!(logged, 4, "two creations, one update, one deletion");
}
