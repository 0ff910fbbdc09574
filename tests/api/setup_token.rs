//! The first administrator: only whoever holds the one-time setup token the server issued at
//! its start (or `keyward admin setup-url` issued) creates it; nobody else who reaches the
//! server first.

use keyward::domain::tenants;
use keyward::error::Error;
use keyward::service::{Ctx, operators};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn operators_count(srv: &TestServer) -> i64 {
    srv.count("SELECT COUNT(*) FROM operators", [])
}

async fn register(srv: &TestServer, body: Value) -> Answer {
    send(srv, Method::POST, REGISTER, Cred::None, Some(body), &[]).await
}

/// `keyward admin setup-url`'s service call, as the shell makes it.
async fn issue_from_shell(srv: &TestServer) -> Result<String, Error> {
    let state = &srv.running.as_ref().expect("running").state;
    let tenant = tenants::repo::find_by_slug(&srv.db(), tenants::DEFAULT_SLUG)
        .unwrap()
        .expect("default tenant");
    let ctx = Ctx::cli(tenant.id.as_str().into());
    operators::issue_setup_token(state, &ctx)
        .await
        .map(|t| t.token)
}

#[tokio::test]
async fn setup_without_the_right_token_is_refused_and_creates_nothing() {
    let srv = TestServer::start().await;
    let token = srv.setup_token().to_owned();
    let cases: [(&str, Value, &str); 6] = [
        ("no token", json!(null), "SETUP_TOKEN_REQUIRED"),
        ("an empty token", json!(""), "SETUP_TOKEN_REQUIRED"),
        ("blanks", json!("   "), "SETUP_TOKEN_REQUIRED"),
        (
            "a wrong token",
            json!("0123456789abcdefghij0123456789abcdefghij"),
            "SETUP_TOKEN_INVALID",
        ),
        (
            "the token upper-cased",
            json!(token.to_uppercase()),
            "SETUP_TOKEN_INVALID",
        ),
        (
            "a prefix of the token",
            json!(&token[..20]),
            "SETUP_TOKEN_INVALID",
        ),
    ];
    for (what, setup_token, code) in cases {
        let mut body = json!({"email": "first@example.com", "password": PASSWORD});
        if !setup_token.is_null() {
            body["setupToken"] = setup_token;
        }
        let a = register(&srv, body).await;
        assert_kv_error_naming(&a, 401, code, "setup");
        assert_eq!(operators_count(&srv), 0, "{what}: nothing created");
    }
    // A token too long to be one is bad input, named as such.
    let long = "x".repeat(129);
    let a = register(
        &srv,
        json!({"email": "first@example.com", "password": PASSWORD, "setupToken": long}),
    )
    .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "setupToken");
    // Refusals did not spend the token: the right one still works, once.
    let a = register(&srv, setup_body(&srv, "first@example.com")).await;
    assert_status(&a, 201);
    assert_eq!(a.body["data"]["user"]["role"], "ADMIN");
    let a = register(&srv, setup_body(&srv, "second@example.com")).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    assert_eq!(operators_count(&srv), 1);
}

#[tokio::test]
async fn only_the_tokens_hash_is_stored_and_setup_consumes_it() {
    let srv = TestServer::start().await;
    let token = srv.setup_token().to_owned();
    let sha = keyward::crypto::sha256(token.as_bytes()).to_vec();
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM setup_token WHERE token_sha256 = ?1",
            [&sha]
        ),
        1
    );
    let stored: Vec<u8> = srv
        .db()
        .query_row("SELECT token_sha256 FROM setup_token", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, token.as_bytes(), "not the token itself");
    let expires_at = srv.count("SELECT expires_at FROM setup_token", []);
    let in_24h = now_ms() + 24 * 3600 * 1000;
    assert!(
        (in_24h - 60_000..=in_24h).contains(&expires_at),
        "expires in 24 h: {expires_at}"
    );
    setup_admin(&srv).await;
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM setup_token", []),
        0,
        "consumed"
    );
}

#[tokio::test]
async fn an_expired_setup_token_is_refused() {
    let srv = TestServer::start().await;
    srv.db()
        .execute("UPDATE setup_token SET expires_at = ?1", [now_ms() - 1])
        .unwrap();
    let a = register(&srv, setup_body(&srv, "late@example.com")).await;
    assert_kv_error_naming(&a, 401, "SETUP_TOKEN_EXPIRED", "keyward admin setup-url");
    assert_eq!(operators_count(&srv), 0);
}

#[tokio::test]
async fn a_new_token_from_the_shell_or_a_restart_replaces_the_old_one() {
    let mut srv = TestServer::start().await;
    let printed = srv.setup_token().to_owned();
    let from_shell = issue_from_shell(&srv).await.expect("a new token");
    assert_ne!(from_shell, printed);
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM audit_events WHERE action = 'setup.token.issue' AND actor = 'cli'", []),
        1
    );
    let with = |token: &str| json!({"email": "boss@example.com", "password": PASSWORD, "setupToken": token});
    assert_kv_error(
        &register(&srv, with(&printed)).await,
        401,
        "SETUP_TOKEN_INVALID",
    );

    // A restart while no operator exists issues (and would print) a fresh token.
    srv.restart().await;
    let fresh = srv.setup_token().to_owned();
    assert_ne!(fresh, from_shell);
    assert_kv_error(
        &register(&srv, with(&from_shell)).await,
        401,
        "SETUP_TOKEN_INVALID",
    );
    assert_status(&register(&srv, with(&fresh)).await, 201);

    // Setup is done: the shell gets no token, and a restart issues none.
    let refused = issue_from_shell(&srv).await;
    assert!(
        matches!(&refused, Err(Error::Conflict(m)) if m.contains("operator exists")),
        "{refused:?}"
    );
    srv.restart().await;
    assert!(srv.setup_token.is_none());
    assert_eq!(srv.count("SELECT COUNT(*) FROM setup_token", []), 0);
}

#[tokio::test]
async fn a_signed_in_admin_creates_operators_without_a_token_and_the_setup_page_is_served() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let a = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::Bearer(&admin.token),
        Some(json!({"email": "second@example.com", "password": PASSWORD, "role": "ADMIN"})),
        &[],
    )
    .await;
    assert_status(&a, 201);
    // The printed URL opens the admin panel (its setup screen while setup is open).
    let page = srv
        .client
        .get(format!("{}/setup?token=abc", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/static/admin/app.js"));
}

#[tokio::test]
async fn the_openapi_document_declares_the_setup_token_and_its_refusals() {
    let srv = TestServer::start().await;
    let doc = srv
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let op = &doc["paths"]["/api/auth/register"]["post"];
    assert!(op["responses"]["401"].is_object(), "register declares 401");
    let schema_ref =
        op["requestBody"]["content"]["application/json; charset=utf-8"]["schema"]["$ref"]
            .as_str()
            .or_else(|| op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str())
            .expect("a body schema");
    let name = schema_ref.rsplit('/').next().unwrap();
    let field = &doc["components"]["schemas"][name]["properties"]["setupToken"];
    assert_eq!(field["type"], "string", "setupToken is documented: {field}");
    assert!(
        field["description"]
            .as_str()
            .unwrap_or("")
            .contains("setup-url"),
        "{field}"
    );
    let errors = doc.to_string();
    for code in [
        "SETUP_TOKEN_REQUIRED",
        "SETUP_TOKEN_INVALID",
        "SETUP_TOKEN_EXPIRED",
    ] {
        assert!(errors.contains(code), "{code} is documented");
    }
}
