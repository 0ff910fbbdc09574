//! Regression tests for access findings on operators, sessions and API keys: a
//! product-restricted key mints nothing beyond its product and scope, API keys never manage
//! operators, and a USER operator cannot mint a key that outranks it.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const API_KEYS: &str = "/api/api-keys";
const USERS: &str = "/api/users";
const REGISTER: &str = "/api/auth/register";

enum Cred<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

async fn send(
    srv: &TestServer,
    method: Method,
    path: &str,
    cred: Cred<'_>,
    body: Option<Value>,
) -> Answer {
    let mut req = srv.client.request(method, format!("{}{path}", srv.url));
    req = match cred {
        Cred::None => req,
        Cred::Bearer(t) => req.bearer_auth(t),
        Cred::ApiKey(k) => req.header("X-API-Key", k),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestServer::decode(req.send().await.expect("request sent")).await
}

async fn login(srv: &TestServer, email: &str) -> String {
    let a = send(
        srv,
        Method::POST,
        "/api/auth/login",
        Cred::None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status.as_u16(), 200, "login: {}", a.body);
    a.body["data"]["token"].as_str().expect("token").to_owned()
}

/// A server whose first operator (ADMIN) is set up: (server, admin token).
async fn server_with_admin() -> (TestServer, String) {
    let srv = TestServer::start().await;
    let a = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::None,
        Some(
            json!({"email": "admin@example.com", "password": PASSWORD, "setupToken": srv.setup_token()}),
        ),
    )
    .await;
    assert_eq!(a.status.as_u16(), 201, "setup: {}", a.body);
    let token = login(&srv, "admin@example.com").await;
    (srv, token)
}

fn operators(srv: &TestServer) -> i64 {
    srv.db()
        .query_row("SELECT COUNT(*) FROM operators", [], |r| r.get(0))
        .expect("count")
}

/// Finding 1: a FULL_ADMIN key restricted to product alpha mints only keys restricted to
/// alpha, with a scope no higher than its own; an unrestricted key is 403, one for another
/// product 404. It neither lists nor revokes keys of other products.
#[tokio::test]
async fn a_product_restricted_key_mints_and_sees_only_keys_of_its_product() {
    let srv = TestServer::start().await;
    let alpha = srv.create_product("default", "alpha");
    let beta = srv.create_product("default", "beta");
    let restricted = srv.create_api_key("default", Scope::FullAdmin, Some(&alpha.id));

    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::ApiKey(&restricted),
        Some(json!({"name": "everything", "scope": "FULL_ADMIN"})),
    )
    .await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::ApiKey(&restricted),
        Some(json!({"name": "other", "scope": "VALIDATE_ONLY", "projectId": beta.id})),
    )
    .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::ApiKey(&restricted),
        Some(json!({"name": "own", "scope": "CREATE_LICENSE", "projectId": alpha.id})),
    )
    .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.body);
    assert_eq!(a.body["data"]["apiKey"]["projectId"], alpha.id.as_str());
    let own_id = a.body["data"]["apiKey"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Keys of another product, or of none, are out of its reach.
    let beta_key = srv.create_api_key("default", Scope::ReadOnly, Some(&beta.id));
    let unrestricted = srv.create_api_key("default", Scope::ReadOnly, None);
    let listed = send(&srv, Method::GET, API_KEYS, Cred::ApiKey(&restricted), None).await;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.body);
    let keys = listed.body["data"]["apiKeys"]
        .as_array()
        .expect("keys")
        .clone();
    assert!(!keys.is_empty());
    for k in &keys {
        assert_eq!(k["projectId"], alpha.id.as_str(), "only alpha's keys: {k}");
    }
    assert!(keys.iter().any(|k| k["id"] == own_id.as_str()));
    for (name, other) in [
        ("beta's key", &beta_key),
        ("an unrestricted key", &unrestricted),
    ] {
        let id: String = srv
            .db()
            .query_row(
                "SELECT id FROM api_keys WHERE prefix = ?1",
                [&other[..11]],
                |r| r.get(0),
            )
            .expect("key row");
        let a = send(
            &srv,
            Method::DELETE,
            &format!("{API_KEYS}/{id}"),
            Cred::ApiKey(&restricted),
            None,
        )
        .await;
        assert_eq!(a.status.as_u16(), 404, "{name}: {}", a.body);
        let still: Option<i64> = srv
            .db()
            .query_row(
                "SELECT revoked_at FROM api_keys WHERE id = ?1",
                [&id],
                |r| r.get(0),
            )
            .expect("key row");
        assert!(still.is_none(), "{name} stays live");
    }
    // Its own product's key it may revoke.
    let a = send(
        &srv,
        Method::DELETE,
        &format!("{API_KEYS}/{own_id}"),
        Cred::ApiKey(&restricted),
        None,
    )
    .await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.body);
}

/// Finding 2: no API key, whatever its scope, manages operators.
#[tokio::test]
async fn api_keys_never_manage_operators() {
    let (srv, admin) = server_with_admin().await;
    let staff = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::Bearer(&admin),
        Some(json!({"email": "staff@example.com", "password": PASSWORD, "role": "USER"})),
    )
    .await;
    assert_eq!(staff.status.as_u16(), 201, "{}", staff.body);
    let tenant = staff.body["data"]["user"]["tenantId"]
        .as_str()
        .expect("tenant")
        .to_owned();
    let staff_path = format!(
        "{USERS}/{}",
        staff.body["data"]["user"]["id"].as_str().expect("id")
    );
    let tenant_slug: String = srv
        .db()
        .query_row("SELECT slug FROM tenants WHERE id = ?1", [&tenant], |r| {
            r.get(0)
        })
        .expect("tenant");
    let product = srv.create_product("default", "gamma");

    let keys = [
        (
            "default FULL_ADMIN",
            srv.create_api_key("default", Scope::FullAdmin, None),
        ),
        (
            "staff's tenant FULL_ADMIN",
            srv.create_api_key(&tenant_slug, Scope::FullAdmin, None),
        ),
        (
            "product FULL_ADMIN",
            srv.create_api_key("default", Scope::FullAdmin, Some(&product.id)),
        ),
        (
            "READ_ONLY",
            srv.create_api_key("default", Scope::ReadOnly, None),
        ),
    ];
    for (name, key) in &keys {
        let calls = [
            (Method::GET, USERS.to_owned(), None),
            (
                Method::POST,
                REGISTER.to_owned(),
                Some(json!({"email": "new@example.com", "password": PASSWORD})),
            ),
            (
                Method::PATCH,
                staff_path.clone(),
                Some(json!({"disabled": true})),
            ),
            (
                Method::PATCH,
                staff_path.clone(),
                Some(json!({"password": "taken over by a key"})),
            ),
            (Method::DELETE, staff_path.clone(), None),
        ];
        for (method, path, body) in calls {
            let label = format!("{name}: {method} {path}");
            let a = send(&srv, method, &path, Cred::ApiKey(key), body).await;
            assert_eq!(a.status.as_u16(), 403, "{label}: {}", a.body);
            assert_kv_error(&a, 403, "FORBIDDEN");
        }
    }
    assert_eq!(operators(&srv), 2, "nobody created or deleted");
    // The staff operator is untouched: same password, enabled.
    login(&srv, "staff@example.com").await;
}

/// Finding 3: a USER session mints API keys of at most READ_ONLY scope, and such a key
/// cannot reach operators.
#[tokio::test]
async fn a_user_operator_mints_keys_of_at_most_read_only_scope() {
    let (srv, admin) = server_with_admin().await;
    let a = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::Bearer(&admin),
        Some(json!({"email": "user@example.com", "password": PASSWORD, "role": "USER"})),
    )
    .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.body);
    let user = login(&srv, "user@example.com").await;

    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::Bearer(&user),
        Some(json!({"name": "takeover", "scope": "FULL_ADMIN"})),
    )
    .await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::Bearer(&user),
        Some(json!({"name": "reports", "scope": "READ_ONLY"})),
    )
    .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.body);
    let key = a.body["data"]["key"].as_str().expect("key").to_owned();
    let a = send(&srv, Method::GET, USERS, Cred::ApiKey(&key), None).await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    // An ADMIN still mints FULL_ADMIN keys.
    let a = send(
        &srv,
        Method::POST,
        API_KEYS,
        Cred::Bearer(&admin),
        Some(json!({"name": "automation", "scope": "FULL_ADMIN"})),
    )
    .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.body);
}
