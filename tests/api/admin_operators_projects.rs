//! The admin face of the key/HWID contract, against a real server: operators and their
//! sessions (`/api/auth/*`, `/api/users`) and projects (`/api/projects`) — setup, roles,
//! tokens and cookies, cross-site protection, tenant isolation, secrets at rest, confirmed
//! deletion, bad input and the OpenAPI document.

use std::collections::BTreeSet;

use crate::helpers::*;
use base64::Engine;
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const LOGOUT: &str = "/api/auth/logout";
const ME: &str = "/api/auth/me";
const USERS: &str = "/api/users";
const PROJECTS: &str = "/api/projects";

// ---- client helpers ---------------------------------------------------------------------

async fn get(srv: &TestServer, path: &str, cred: Cred<'_>) -> Answer {
    send(srv, Method::GET, path, cred, None, &[]).await
}

async fn post(srv: &TestServer, path: &str, cred: Cred<'_>, body: Value) -> Answer {
    send(srv, Method::POST, path, cred, Some(body), &[]).await
}

async fn patch(srv: &TestServer, path: &str, cred: Cred<'_>, body: Value) -> Answer {
    send(srv, Method::PATCH, path, cred, Some(body), &[]).await
}

async fn delete(srv: &TestServer, path: &str, cred: Cred<'_>) -> Answer {
    send(srv, Method::DELETE, path, cred, None, &[]).await
}

fn tenant_id(srv: &TestServer, slug: &str) -> String {
    srv.db()
        .query_row("SELECT id FROM tenants WHERE slug = ?1", [slug], |r| {
            r.get(0)
        })
        .expect("tenant exists")
}

fn b64_len(text: &str) -> usize {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|b| b.len())
        .unwrap_or_else(|e| panic!("{text:?} is base64: {e}"))
}

// ---- operator fixtures ------------------------------------------------------------------

/// Registers an operator with `cred`; returns the created `user` object (asserting 201).
async fn register(srv: &TestServer, cred: Cred<'_>, body: Value) -> Value {
    let a = post(srv, REGISTER, cred, body).await;
    assert_status(&a, 201);
    assert_eq!(a.body["success"], true);
    a.body["data"]["user"].clone()
}

/// A USER in a workspace of its own, logged in: (user object, token).
async fn user_with_token(srv: &TestServer, admin: &Admin, email: &str) -> (Value, String) {
    let user = register(
        srv,
        Cred::Bearer(&admin.token),
        json!({"email": email, "password": PASSWORD, "role": "USER"}),
    )
    .await;
    let token = login(srv, email, PASSWORD).await;
    (user, token)
}

async fn server_with_admin() -> (TestServer, Admin) {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    (srv, admin)
}

fn operators(srv: &TestServer) -> i64 {
    srv.count("SELECT COUNT(*) FROM operators", [])
}

// ---- setup ------------------------------------------------------------------------------

#[tokio::test]
async fn first_register_creates_an_admin_with_the_setup_token_then_self_registration_is_refused() {
    let srv = TestServer::start().await;
    assert_eq!(operators(&srv), 0);

    let a = post(
        &srv,
        REGISTER,
        Cred::None,
        json!({"email": "  Boss@Example.COM ", "password": PASSWORD, "setupToken": srv.setup_token()}),
    )
    .await;
    assert_status(&a, 201);
    assert_eq!(a.body["success"], true);
    let user = &a.body["data"]["user"];
    assert_eq!(user["role"], "ADMIN");
    assert_eq!(user["email"], "boss@example.com", "e-mail is lower-cased");
    assert_eq!(user["disabled"], false);
    assert_eq!(user["tenantId"], tenant_id(&srv, "default"));
    assert!(user.get("passwordHash").is_none() && user.get("password").is_none());
    let (role, hash): (String, String) = srv
        .db()
        .query_row(
            "SELECT role, password_hash FROM operators WHERE email = 'boss@example.com'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("stored operator");
    assert_eq!(role, "ADMIN");
    assert!(hash.starts_with("$argon2id$"), "argon2id hash: {hash}");
    assert!(!hash.contains(PASSWORD));

    // The setup step is over: anyone unauthenticated is refused, and nothing is created,
    // even with the (used) setup token.
    for role in [None, Some("USER"), Some("ADMIN")] {
        let mut body = json!({"email": "intruder@example.com", "password": PASSWORD,
            "setupToken": srv.setup_token()});
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        let a = post(&srv, REGISTER, Cred::None, body).await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    assert_eq!(operators(&srv), 1);
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM audit_events WHERE action = 'operator.create' AND actor = 'setup'",
            []
        ),
        1
    );
}

#[tokio::test]
async fn concurrent_first_registrations_create_exactly_one_admin() {
    let srv = TestServer::start().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..4 {
        let client = srv.client.clone();
        let url = format!("{}{REGISTER}", srv.url);
        let token = srv.setup_token().to_owned();
        set.spawn(async move {
            let resp = client
                .post(url)
                .json(
                    &json!({"email": format!("racer{i}@example.com"), "password": PASSWORD,
                    "setupToken": token}),
                )
                .send()
                .await
                .expect("sent");
            TestServer::decode(resp).await
        });
    }
    let mut created = 0;
    while let Some(answer) = set.join_next().await {
        let a = answer.expect("task");
        match a.status.as_u16() {
            201 => {
                created += 1;
                assert_eq!(a.body["data"]["user"]["role"], "ADMIN");
            }
            // The loser finds setup closed (or, if it checked before the winner's commit, its
            // token consumed).
            403 => assert_kv_error(&a, 403, "FORBIDDEN"),
            _ => assert_kv_error(&a, 401, "SETUP_TOKEN_INVALID"),
        }
    }
    assert_eq!(created, 1, "exactly one setup registration wins");
    assert_eq!(operators(&srv), 1);
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM operators WHERE role = 'ADMIN'", []),
        1
    );
}

// ---- registration after setup -----------------------------------------------------------

#[tokio::test]
async fn an_admin_creates_users_in_new_or_existing_workspaces_and_other_admins() {
    let (srv, admin) = server_with_admin().await;
    let tenants_before = srv.count("SELECT COUNT(*) FROM tenants", []);

    // A USER without tenantId gets a workspace of its own.
    let user = register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "User1@Example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(user["role"], "USER", "USER is the default role");
    assert_eq!(user["email"], "user1@example.com");
    let own = user["tenantId"].as_str().expect("tenantId").to_owned();
    assert_ne!(own, admin.tenant_id, "a new workspace");
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM tenants WHERE id = ?1", [&own]),
        1,
        "the workspace's tenants row"
    );
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM tenants", []),
        tenants_before + 1
    );

    // A USER assigned to an existing workspace shares it.
    let second = register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "user2@example.com", "password": PASSWORD, "role": "USER", "tenantId": own}),
    )
    .await;
    assert_eq!(second["tenantId"], own.as_str());
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM tenants", []),
        tenants_before + 1
    );

    // An unknown workspace is a 404, and creates nothing.
    let a = post(
        &srv,
        REGISTER,
        Cred::Bearer(&admin.token),
        json!({"email": "user3@example.com", "password": PASSWORD, "tenantId": "ten_nope"}),
    )
    .await;
    assert_kv_error(&a, 404, "NOT_FOUND");

    // Another ADMIN; it can log in and administer operators.
    let other = register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "admin2@example.com", "password": PASSWORD, "role": "ADMIN"}),
    )
    .await;
    assert_eq!(other["role"], "ADMIN");
    let token = login(&srv, "admin2@example.com", PASSWORD).await;
    assert_status(&get(&srv, USERS, Cred::Bearer(&token)).await, 200);
    assert_eq!(operators(&srv), 4);
}

#[tokio::test]
async fn a_user_operator_cannot_register_operators() {
    let (srv, admin) = server_with_admin().await;
    let (_, user_token) = user_with_token(&srv, &admin, "user@example.com").await;
    for role in ["USER", "ADMIN"] {
        let a = post(
            &srv,
            REGISTER,
            Cred::Bearer(&user_token),
            json!({"email": "friend@example.com", "password": PASSWORD, "role": role}),
        )
        .await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    assert_eq!(operators(&srv), 2);
}

#[tokio::test]
async fn api_keys_never_create_operators() {
    let (srv, _admin) = server_with_admin().await;
    srv.create_tenant("acme");
    srv.create_tenant("other");
    let key = srv.create_api_key("acme", Scope::FullAdmin, None);
    let read_only = srv.create_api_key("acme", Scope::ReadOnly, None);
    // API keys never manage operators, whatever their scope and whatever they ask for.
    let refused = [
        (
            "a USER in its own tenant",
            &key,
            json!({"email": "staff@acme.example", "password": PASSWORD}),
        ),
        (
            "an ADMIN",
            &key,
            json!({"email": "boss@acme.example", "password": PASSWORD, "role": "ADMIN"}),
        ),
        (
            "a USER in another tenant",
            &key,
            json!({"email": "spy@acme.example", "password": PASSWORD, "tenantId": tenant_id(&srv, "other")}),
        ),
        (
            "a lower scope",
            &read_only,
            json!({"email": "ro@acme.example", "password": PASSWORD}),
        ),
    ];
    for (name, key, body) in refused {
        let a = post(&srv, REGISTER, Cred::ApiKey(key), body).await;
        assert_eq!(a.status.as_u16(), 403, "{name}: {}", a.body);
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    assert_eq!(operators(&srv), 1);
}

#[tokio::test]
async fn duplicate_emails_conflict_regardless_of_case() {
    let (srv, admin) = server_with_admin().await;
    register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "dup@example.com", "password": PASSWORD}),
    )
    .await;
    for email in [
        "dup@example.com",
        "DUP@Example.Com",
        ADMIN_EMAIL,
        " Admin@EXAMPLE.com",
    ] {
        let a = post(
            &srv,
            REGISTER,
            Cred::Bearer(&admin.token),
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
        assert_eq!(a.status.as_u16(), 409, "{email}: {}", a.body);
        assert_kv_error(&a, 409, "CONFLICT");
    }
    assert_eq!(operators(&srv), 2);
}

#[tokio::test]
async fn register_refuses_bad_input_naming_the_field_or_rule() {
    struct Case {
        name: &'static str,
        body: Value,
        needle: &'static str,
    }
    let (srv, admin) = server_with_admin().await;
    let cases = [
        Case {
            name: "bad email",
            body: json!({"email": "not-an-email", "password": PASSWORD}),
            needle: "email",
        },
        Case {
            name: "password of 7 characters",
            body: json!({"email": "a@example.com", "password": "1234567"}),
            needle: "8-128",
        },
        Case {
            name: "password of 129 characters",
            body: json!({"email": "a@example.com", "password": "p".repeat(129)}),
            needle: "8-128",
        },
        Case {
            name: "missing email",
            body: json!({"password": PASSWORD}),
            needle: "email",
        },
        Case {
            name: "missing password",
            body: json!({"email": "a@example.com"}),
            needle: "password",
        },
        Case {
            name: "email of the wrong type",
            body: json!({"email": 42, "password": PASSWORD}),
            needle: "`email`: expected a string, found a number",
        },
        Case {
            name: "password of the wrong type",
            body: json!({"email": "a@example.com", "password": true}),
            needle: "`password`: expected a string, found a boolean",
        },
        Case {
            name: "unknown role",
            body: json!({"email": "a@example.com", "password": PASSWORD, "role": "ROOT"}),
            needle: "role",
        },
        Case {
            name: "body not an object",
            body: json!(["a@example.com", PASSWORD]),
            needle: "",
        },
    ];
    for case in cases {
        let a = post(&srv, REGISTER, Cred::Bearer(&admin.token), case.body).await;
        assert_eq!(a.status.as_u16(), 400, "{}: {}", case.name, a.body);
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", case.needle);
    }
    // Passwords of exactly 8 and 128 characters are fine.
    for (i, len) in [8usize, 128].into_iter().enumerate() {
        register(
            &srv,
            Cred::Bearer(&admin.token),
            json!({"email": format!("edge{i}@example.com"), "password": "p".repeat(len)}),
        )
        .await;
    }
    assert_eq!(operators(&srv), 3);

    let malformed = srv
        .client
        .post(format!("{}{REGISTER}", srv.url))
        .header("Authorization", format!("Bearer {}", admin.token))
        .header("content-type", "application/json")
        .body("{\"email\": \"x@example.com\", ")
        .send()
        .await
        .expect("sent");
    let a = TestServer::decode(malformed).await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");

    let a = srv
        .call_raw(
            Method::POST,
            REGISTER,
            None,
            "text/plain",
            b"email=x@example.com".to_vec(),
        )
        .await;
    assert_kv_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(operators(&srv), 3, "bad input changes nothing");
}

// ---- login ------------------------------------------------------------------------------

#[tokio::test]
async fn login_answers_a_token_and_a_strict_httponly_cookie() {
    let (srv, admin) = server_with_admin().await;
    let a = login_answer(&srv, "ADMIN@example.com", PASSWORD).await;
    assert_eq!(a.body["success"], true);
    let data = &a.body["data"];
    assert_eq!(data["user"]["id"], admin.id.as_str());
    assert_eq!(data["user"]["email"], ADMIN_EMAIL);
    assert_eq!(data["user"]["role"], "ADMIN");
    let token = data["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let cookie = a.header("set-cookie").expect("Set-Cookie");
    assert!(
        cookie.starts_with(&format!("keyward_token={token}")),
        "{cookie}"
    );
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Strict"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(
        !attributes.iter().any(|a| a.eq_ignore_ascii_case("Secure")),
        "no Secure over plain HTTP: {cookie}"
    );

    // The body's token works as a Bearer token.
    let me = get(&srv, ME, Cred::Bearer(token)).await;
    assert_status(&me, 200);
    assert_eq!(me.body["data"]["user"]["id"], admin.id.as_str());
    // Login audit events are queued; a write (here: logout) commits them before it answers.
    let a = send(&srv, Method::POST, LOGOUT, Cred::Bearer(token), None, &[]).await;
    assert_status(&a, 200);
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'operator.login' AND actor = ?1",
            [format!("operator:{}", admin.id)]
        ),
        2,
        "the setup login and this one"
    );
}

#[tokio::test]
async fn login_cookie_is_secure_behind_a_trusted_https_proxy_only() {
    let proxied =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    setup_admin(&proxied).await;
    let body = json!({"email": ADMIN_EMAIL, "password": PASSWORD});
    let cases = [
        ("trusted proxy says https", &proxied, "https", true),
        ("trusted proxy says http", &proxied, "http", false),
    ];
    for (name, srv, proto, secure) in cases {
        let a = send(
            srv,
            Method::POST,
            LOGIN,
            Cred::None,
            Some(body.clone()),
            &[("X-Forwarded-Proto", proto)],
        )
        .await;
        assert_eq!(a.status.as_u16(), 200, "{name}: {}", a.body);
        let cookie = a.header("set-cookie").expect("Set-Cookie");
        let has_secure = cookie.split(';').any(|a| a.trim() == "Secure");
        assert_eq!(has_secure, secure, "{name}: {cookie}");
    }

    // Without a trusted proxy, X-Forwarded-Proto is not believed.
    let direct = TestServer::start().await;
    setup_admin(&direct).await;
    let a = send(
        &direct,
        Method::POST,
        LOGIN,
        Cred::None,
        Some(body),
        &[("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_status(&a, 200);
    let cookie = a.header("set-cookie").expect("Set-Cookie");
    assert!(
        !cookie.split(';').any(|a| a.trim() == "Secure"),
        "untrusted peer: {cookie}"
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let (srv, admin) = server_with_admin().await;
    let wrong = post(
        &srv,
        LOGIN,
        Cred::None,
        json!({"email": ADMIN_EMAIL, "password": "not the password"}),
    )
    .await;
    let unknown = post(
        &srv,
        LOGIN,
        Cred::None,
        json!({"email": "nobody@example.com", "password": "not the password"}),
    )
    .await;
    assert_kv_error(&wrong, 401, "UNAUTHORIZED");
    assert_kv_error(&unknown, 401, "UNAUTHORIZED");
    assert_eq!(wrong.raw, unknown.raw, "identical bodies");
    assert!(wrong.header("set-cookie").is_none());
    assert!(unknown.header("set-cookie").is_none());
    // The failure on a real account is audited (committed by the next write).
    let a = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Bearer(&admin.token),
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM audit_events WHERE action = 'operator.login.failed' AND actor = ?1",
            [format!("operator:{}", admin.id)]
        ),
        1
    );
}

#[tokio::test]
async fn a_disabled_operator_cannot_log_in_until_re_enabled() {
    let (srv, admin) = server_with_admin().await;
    let (user, _) = user_with_token(&srv, &admin, "user@example.com").await;
    let path = format!("{USERS}/{}", user["id"].as_str().unwrap());
    let a = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"disabled": true}),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["user"]["disabled"], true);

    let refused = post(
        &srv,
        LOGIN,
        Cred::None,
        json!({"email": "user@example.com", "password": PASSWORD}),
    )
    .await;
    assert_kv_error(&refused, 401, "UNAUTHORIZED");
    assert!(refused.header("set-cookie").is_none());

    let a = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"disabled": false}),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["user"]["disabled"], false);
    let token = login(&srv, "user@example.com", PASSWORD).await;
    assert_status(&get(&srv, ME, Cred::Bearer(&token)).await, 200);
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let srv = TestServer::start_with(|c| {
        c.rate_limits.login_per_minute = 5;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    // A success spends nothing of the account's budget of failures.
    setup_admin(&srv).await;
    // Failures 1-5 from other IPs, in varying case: all count for the one account.
    for i in 1..=5 {
        let ip = format!("198.51.100.{i}");
        let a = send(
            &srv,
            Method::POST,
            LOGIN,
            Cred::None,
            Some(json!({"email": "Admin@Example.com", "password": "wrong password"})),
            &[("X-Forwarded-For", &ip)],
        )
        .await;
        assert_eq!(a.status.as_u16(), 401, "attempt {i}: {}", a.body);
    }
    // The 6th, from a fresh IP and with the right password but without the owner's device
    // cookie, is refused.
    let a = send(
        &srv,
        Method::POST,
        LOGIN,
        Cred::None,
        Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
        &[("X-Forwarded-For", "198.51.100.77")],
    )
    .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(a.header("x-ratelimit-limit"), Some("5"));
    assert!(a.header("set-cookie").is_none());

    // Another account from another IP is not affected.
    let a = send(
        &srv,
        Method::POST,
        LOGIN,
        Cred::None,
        Some(json!({"email": "someone@example.com", "password": "wrong password"})),
        &[("X-Forwarded-For", "198.51.100.78")],
    )
    .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn login_is_rate_limited_per_ip() {
    let srv = TestServer::start_with(|c| {
        c.rate_limits.login_per_minute = 5;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let headers = [("X-Forwarded-For", "203.0.113.9")];
    for i in 1..=5 {
        let a = send(
            &srv,
            Method::POST,
            LOGIN,
            Cred::None,
            Some(json!({"email": format!("guess{i}@example.com"), "password": "wrong password"})),
            &headers,
        )
        .await;
        assert_eq!(a.status.as_u16(), 401, "attempt {i}: {}", a.body);
    }
    let a = send(
        &srv,
        Method::POST,
        LOGIN,
        Cred::None,
        Some(json!({"email": "guess6@example.com", "password": "wrong password"})),
        &headers,
    )
    .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
    assert!(a.header("retry-after").is_some());
}

// ---- tokens -----------------------------------------------------------------------------

#[tokio::test]
async fn me_accepts_the_bearer_token_and_the_cookie() {
    let (srv, admin) = server_with_admin().await;
    for (name, cred) in [
        ("bearer", Cred::Bearer(&admin.token)),
        ("cookie", Cred::Cookie(&admin.token)),
    ] {
        let a = get(&srv, ME, cred).await;
        assert_eq!(a.status.as_u16(), 200, "{name}: {}", a.body);
        assert_eq!(a.body["success"], true);
        assert_eq!(a.body["data"]["user"]["id"], admin.id.as_str(), "{name}");
        assert_eq!(a.body["data"]["user"]["email"], ADMIN_EMAIL, "{name}");
        assert_eq!(a.body["data"]["tenantId"], admin.tenant_id.as_str());
        assert!(a.body["data"]["apiKey"].is_null(), "{name}");
    }
    // A FULL_ADMIN key answers as itself.
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = get(&srv, ME, Cred::ApiKey(&key)).await;
    assert_status(&a, 200);
    assert!(a.body["data"]["user"].is_null());
    assert_eq!(a.body["data"]["apiKey"]["scope"], "FULL_ADMIN");
    assert_eq!(a.body["data"]["tenantId"], admin.tenant_id.as_str());

    assert_kv_error(&get(&srv, ME, Cred::None).await, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let (srv, admin) = server_with_admin().await;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = admin.token.split('.').collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": admin.id, "jti": "tok_forged", "iat": now, "exp": now + 3600});

    // The genuine signature with a different payload (here: a later expiry).
    let mut payload: Value =
        serde_json::from_slice(&b64url.decode(parts[1]).expect("payload")).expect("json");
    payload["exp"] = json!(now + 365 * 86400);
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64url.encode(payload.to_string()),
        parts[2]
    );
    // One signature character changed.
    let mut sig = parts[2].to_owned();
    let last = sig.pop().expect("signature");
    sig.push(if last == 'A' { 'B' } else { 'A' });
    let tampered_signature = format!("{}.{}.{sig}", parts[0], parts[1]);
    // Well-formed HS256, signed with another secret.
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some other secret entirely"),
    )
    .expect("encode");
    // alg: none, no signature.
    let alg_none = format!(
        "{}.{}.",
        b64url.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64url.encode(claims.to_string())
    );

    let cases = [
        ("tampered payload", tampered_payload),
        ("tampered signature", tampered_signature),
        ("HS256 with another secret", other_secret),
        ("alg none", alg_none),
        ("not a JWT", "hello".to_owned()),
        ("empty", String::new()),
    ];
    for (name, token) in &cases {
        for (via, cred) in [
            ("bearer", Cred::Bearer(token)),
            ("cookie", Cred::Cookie(token)),
        ] {
            let a = get(&srv, ME, cred).await;
            assert_eq!(a.status.as_u16(), 401, "{name} via {via}: {}", a.body);
            assert_kv_error(&a, 401, "UNAUTHORIZED");
        }
    }
    // An Authorization header of another scheme.
    let a = send(
        &srv,
        Method::GET,
        ME,
        Cred::None,
        None,
        &[("Authorization", &format!("Basic {}", admin.token))],
    )
    .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
    // The genuine token still works.
    assert_status(&get(&srv, ME, Cred::Bearer(&admin.token)).await, 200);
}

/// Tokens signed with the server's own key (derived from the master key in the data
/// directory, as the server derives it) are still refused when expired, without `exp`, for
/// an operator who does not exist, or under another algorithm.
#[tokio::test]
async fn genuine_signatures_do_not_save_expired_orphaned_or_other_algorithm_tokens() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (srv, admin) = server_with_admin().await;
    let master = keyward::crypto::MasterKey::load_or_create(srv.data_dir()).expect("master key");
    let key = EncodingKey::from_secret(&master.derive("admin-session-tokens"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mint = |alg: Algorithm, claims: Value| {
        jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("encode")
    };

    // The minting is right: a fresh token for the admin is accepted.
    let good = mint(
        Algorithm::HS256,
        json!({"sub": admin.id, "jti": "tok_minted", "iat": now, "exp": now + 600}),
    );
    assert_status(&get(&srv, ME, Cred::Bearer(&good)).await, 200);

    let cases = [
        (
            "expired",
            mint(
                Algorithm::HS256,
                json!({"sub": admin.id, "jti": "tok_old", "iat": now - 7200, "exp": now - 60}),
            ),
        ),
        (
            "no exp",
            mint(
                Algorithm::HS256,
                json!({"sub": admin.id, "jti": "tok_forever", "iat": now}),
            ),
        ),
        (
            "unknown operator",
            mint(
                Algorithm::HS256,
                json!({"sub": "op_ghost", "jti": "tok_ghost", "iat": now, "exp": now + 600}),
            ),
        ),
        (
            "HS512 with the right key",
            mint(
                Algorithm::HS512,
                json!({"sub": admin.id, "jti": "tok_512", "iat": now, "exp": now + 600}),
            ),
        ),
    ];
    for (name, token) in &cases {
        for cred in [Cred::Bearer(token), Cred::Cookie(token)] {
            let a = get(&srv, ME, cred).await;
            assert_eq!(a.status.as_u16(), 401, "{name}: {}", a.body);
            assert_kv_error(&a, 401, "UNAUTHORIZED");
        }
    }
}

#[tokio::test]
async fn logout_revokes_the_token_and_clears_the_cookie() {
    let (srv, admin) = server_with_admin().await;
    let other_session = login(&srv, ADMIN_EMAIL, PASSWORD).await;

    let a = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Bearer(&admin.token),
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    let cookie = a.header("set-cookie").expect("Set-Cookie");
    assert!(cookie.starts_with("keyward_token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    for (via, cred) in [
        ("bearer", Cred::Bearer(&admin.token)),
        ("cookie", Cred::Cookie(&admin.token)),
    ] {
        let a = get(&srv, ME, cred).await;
        assert_eq!(
            a.status.as_u16(),
            401,
            "revoked token via {via}: {}",
            a.body
        );
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let again = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Bearer(&admin.token),
        None,
        &[],
    )
    .await;
    assert_kv_error(&again, 401, "UNAUTHORIZED");
    // Only that session ended.
    assert_status(&get(&srv, ME, Cred::Bearer(&other_session)).await, 200);
    assert_eq!(srv.count("SELECT COUNT(*) FROM revoked_tokens", []), 1);

    // Logging out through the cookie works the same way.
    let a = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Cookie(&other_session),
        None,
        &[("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_status(&a, 200);
    assert_kv_error(
        &get(&srv, ME, Cred::Cookie(&other_session)).await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn disabling_an_operator_invalidates_their_token_at_once() {
    let (srv, admin) = server_with_admin().await;
    let (user, token) = user_with_token(&srv, &admin, "user@example.com").await;
    assert_status(&get(&srv, ME, Cred::Bearer(&token)).await, 200);
    let path = format!("{USERS}/{}", user["id"].as_str().unwrap());

    assert_status(
        &patch(
            &srv,
            &path,
            Cred::Bearer(&admin.token),
            json!({"disabled": true}),
        )
        .await,
        200,
    );
    for cred in [Cred::Bearer(&token), Cred::Cookie(&token)] {
        assert_kv_error(&get(&srv, ME, cred).await, 401, "UNAUTHORIZED");
    }
    assert_kv_error(
        &get(&srv, PROJECTS, Cred::Bearer(&token)).await,
        401,
        "UNAUTHORIZED",
    );
    let disabled_at: Option<i64> = srv
        .db()
        .query_row(
            "SELECT disabled_at FROM operators WHERE id = ?1",
            [user["id"].as_str().unwrap()],
            |r| r.get(0),
        )
        .expect("row");
    assert!(disabled_at.is_some());

    assert_status(
        &patch(
            &srv,
            &path,
            Cred::Bearer(&admin.token),
            json!({"disabled": false}),
        )
        .await,
        200,
    );
    let fresh = login(&srv, "user@example.com", PASSWORD).await;
    assert_status(&get(&srv, ME, Cred::Bearer(&fresh)).await, 200);
}

#[tokio::test]
async fn a_password_reset_replaces_the_old_password() {
    let (srv, admin) = server_with_admin().await;
    let (user, _) = user_with_token(&srv, &admin, "user@example.com").await;
    let path = format!("{USERS}/{}", user["id"].as_str().unwrap());
    let new_password = "a brand new passphrase";

    let short = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"password": "short"}),
    )
    .await;
    assert_kv_error_naming(&short, 400, "VALIDATION_ERROR", "8-128");

    let a = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"password": new_password}),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["user"]["id"], user["id"]);

    let old = post(
        &srv,
        LOGIN,
        Cred::None,
        json!({"email": "user@example.com", "password": PASSWORD}),
    )
    .await;
    assert_kv_error(&old, 401, "UNAUTHORIZED");
    let token = login(&srv, "user@example.com", new_password).await;
    assert_status(&get(&srv, ME, Cred::Bearer(&token)).await, 200);
}

/// OWASP's argon2id recommendation, as `operators::argon2` sets it: 19 MiB, 2 passes, 1 lane.
const OWASP_ARGON2ID: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

#[tokio::test]
async fn passwords_are_stored_as_argon2id_with_owasp_parameters() {
    let (srv, admin) = server_with_admin().await;
    let (user, _) = user_with_token(&srv, &admin, "user@example.com").await;
    let user_id = user["id"].as_str().expect("id").to_owned();
    let hash_of = |id: &str| -> String {
        srv.db()
            .query_row(
                "SELECT password_hash FROM operators WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("operator row")
    };
    let (admin_hash, user_hash) = (hash_of(&admin.id), hash_of(&user_id));
    for hash in [&admin_hash, &user_hash] {
        assert!(hash.starts_with(OWASP_ARGON2ID), "parameters: {hash}");
        assert!(!hash.contains(PASSWORD));
    }
    assert_ne!(admin_hash, user_hash, "salted: one password, two hashes");

    // A reset hashes the new password the same way.
    let a = patch(
        &srv,
        &format!("{USERS}/{user_id}"),
        Cred::Bearer(&admin.token),
        json!({"password": "a brand new passphrase"}),
    )
    .await;
    assert_status(&a, 200);
    let reset = hash_of(&user_id);
    assert_ne!(reset, user_hash);
    assert!(reset.starts_with(OWASP_ARGON2ID), "parameters: {reset}");
}

// ---- cross-site protection --------------------------------------------------------------

#[tokio::test]
async fn cookie_authenticated_changes_are_refused_cross_site() {
    let (srv, admin) = server_with_admin().await;
    let project = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Site"})).await;
    let path = format!("{PROJECTS}/{}", project["id"].as_str().unwrap());
    let same_origin = srv.url.clone();

    struct Case<'a> {
        name: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        allowed: bool,
    }
    let cases = [
        Case {
            name: "Sec-Fetch-Site cross-site",
            headers: vec![("Sec-Fetch-Site", "cross-site")],
            allowed: false,
        },
        Case {
            name: "Sec-Fetch-Site same-site",
            headers: vec![("Sec-Fetch-Site", "same-site")],
            allowed: false,
        },
        Case {
            name: "foreign Origin, no Sec-Fetch-Site",
            headers: vec![("Origin", "http://evil.example")],
            allowed: false,
        },
        Case {
            name: "Origin null",
            headers: vec![("Origin", "null")],
            allowed: false,
        },
        Case {
            name: "cross-site even with our Origin",
            headers: vec![("Sec-Fetch-Site", "cross-site"), ("Origin", &same_origin)],
            allowed: false,
        },
        Case {
            name: "Sec-Fetch-Site same-origin",
            headers: vec![("Sec-Fetch-Site", "same-origin")],
            allowed: true,
        },
        Case {
            name: "Sec-Fetch-Site none (typed by the user)",
            headers: vec![("Sec-Fetch-Site", "none")],
            allowed: true,
        },
        Case {
            name: "our own Origin",
            headers: vec![("Origin", &same_origin)],
            allowed: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let name = format!("renamed {i}");
        let before: String = srv
            .db()
            .query_row(
                "SELECT name FROM products WHERE id = ?1",
                [project["id"].as_str().unwrap()],
                |r| r.get(0),
            )
            .expect("row");
        let a = send(
            &srv,
            Method::PATCH,
            &path,
            Cred::Cookie(&admin.token),
            Some(json!({"name": name})),
            &case.headers,
        )
        .await;
        let after: String = srv
            .db()
            .query_row(
                "SELECT name FROM products WHERE id = ?1",
                [project["id"].as_str().unwrap()],
                |r| r.get(0),
            )
            .expect("row");
        if case.allowed {
            assert_eq!(a.status.as_u16(), 200, "{}: {}", case.name, a.body);
            assert_eq!(after, name, "{}", case.name);
        } else {
            assert_eq!(a.status.as_u16(), 403, "{}: {}", case.name, a.body);
            assert_kv_error(&a, 403, "FORBIDDEN");
            assert_eq!(after, before, "{}: nothing changed", case.name);
        }
    }

    // Logout through the cookie from another site: refused, the session lives on.
    for headers in [
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "http://evil.example")],
    ] {
        let a = send(
            &srv,
            Method::POST,
            LOGOUT,
            Cred::Cookie(&admin.token),
            None,
            &headers,
        )
        .await;
        assert_kv_error(&a, 403, "FORBIDDEN");
        assert!(a.header("set-cookie").is_none());
        assert_status(&get(&srv, ME, Cred::Cookie(&admin.token)).await, 200);
    }
    // The most tempting target: creating an ADMIN with the victim's cookie.
    let a = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::Cookie(&admin.token),
        Some(json!({"email": "evil@example.com", "password": PASSWORD, "role": "ADMIN"})),
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    assert_eq!(operators(&srv), 1, "no operator created");
    // Reads are allowed cross-site.
    let a = send(
        &srv,
        Method::GET,
        ME,
        Cred::Cookie(&admin.token),
        None,
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ],
    )
    .await;
    assert_status(&a, 200);
    // Same-origin logout works.
    let a = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Cookie(&admin.token),
        None,
        &[("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_status(&a, 200);
    assert_kv_error(
        &get(&srv, ME, Cred::Cookie(&admin.token)).await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn bearer_and_api_key_auth_are_not_subject_to_the_cross_site_check() {
    let (srv, admin) = server_with_admin().await;
    let cross = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Origin", "http://evil.example"),
    ];
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = send(
        &srv,
        Method::POST,
        PROJECTS,
        Cred::ApiKey(&key),
        Some(json!({"name": "By key"})),
        &cross,
    )
    .await;
    assert_status(&a, 201);
    let a = send(
        &srv,
        Method::POST,
        LOGOUT,
        Cred::Bearer(&admin.token),
        None,
        &cross,
    )
    .await;
    assert_status(&a, 200);
    assert_kv_error(
        &get(&srv, ME, Cred::Bearer(&admin.token)).await,
        401,
        "UNAUTHORIZED",
    );
}

// ---- operator administration ------------------------------------------------------------

#[tokio::test]
async fn users_list_is_paginated_and_scoped_to_the_caller() {
    let (srv, admin) = server_with_admin().await;
    srv.create_tenant("acme");
    let acme = tenant_id(&srv, "acme");
    let (_, user_token) = user_with_token(&srv, &admin, "user@example.com").await;
    register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "staff@acme.example", "password": PASSWORD, "tenantId": acme}),
    )
    .await;

    // An ADMIN sees everyone, page by page.
    let a = get(&srv, USERS, Cred::Bearer(&admin.token)).await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    let all: BTreeSet<&str> = a.body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        all,
        BTreeSet::from([ADMIN_EMAIL, "user@example.com", "staff@acme.example"])
    );
    assert_eq!(
        a.body["data"]["pagination"],
        json!({"page": 1, "limit": 50, "total": 3, "totalPages": 1})
    );
    assert!(
        a.body["data"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("passwordHash").is_none())
    );

    let mut seen = BTreeSet::new();
    for page in 1..=2 {
        let a = get(
            &srv,
            &format!("{USERS}?page={page}&limit=2"),
            Cred::Bearer(&admin.token),
        )
        .await;
        assert_status(&a, 200);
        let users = a.body["data"]["users"].as_array().expect("users");
        assert_eq!(users.len(), if page == 1 { 2 } else { 1 }, "page {page}");
        assert_eq!(
            a.body["data"]["pagination"],
            json!({"page": page, "limit": 2, "total": 3, "totalPages": 2})
        );
        seen.extend(users.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 3, "pages do not overlap");
    assert_kv_error(
        &get(
            &srv,
            &format!("{USERS}?limit=0"),
            Cred::Bearer(&admin.token),
        )
        .await,
        400,
        "VALIDATION_ERROR",
    );

    // A USER may not list operators.
    assert_kv_error(
        &get(&srv, USERS, Cred::Bearer(&user_token)).await,
        403,
        "FORBIDDEN",
    );
    // Nor may any API key, FULL_ADMIN of the operator's own tenant included.
    let key = srv.create_api_key("acme", Scope::FullAdmin, None);
    let a = get(&srv, USERS, Cred::ApiKey(&key)).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    // No credential.
    assert_kv_error(&get(&srv, USERS, Cred::None).await, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn operator_administration_rules() {
    let (srv, admin) = server_with_admin().await;
    let (user, user_token) = user_with_token(&srv, &admin, "user@example.com").await;
    let user_path = format!("{USERS}/{}", user["id"].as_str().unwrap());
    let self_path = format!("{USERS}/{}", admin.id);

    struct Case {
        name: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
        status: u16,
        code: &'static str,
    }
    let cases = [
        Case {
            name: "PATCH with nothing to change",
            method: Method::PATCH,
            path: user_path.clone(),
            body: Some(json!({})),
            status: 400,
            code: "VALIDATION_ERROR",
        },
        Case {
            name: "disable yourself",
            method: Method::PATCH,
            path: self_path.clone(),
            body: Some(json!({"disabled": true})),
            status: 400,
            code: "VALIDATION_ERROR",
        },
        Case {
            name: "delete yourself",
            method: Method::DELETE,
            path: self_path.clone(),
            body: None,
            status: 400,
            code: "VALIDATION_ERROR",
        },
        Case {
            name: "PATCH an unknown id",
            method: Method::PATCH,
            path: format!("{USERS}/op_nope"),
            body: Some(json!({"disabled": true})),
            status: 404,
            code: "NOT_FOUND",
        },
        Case {
            name: "DELETE an unknown id",
            method: Method::DELETE,
            path: format!("{USERS}/op_nope"),
            body: None,
            status: 404,
            code: "NOT_FOUND",
        },
        Case {
            name: "disabled of the wrong type",
            method: Method::PATCH,
            path: user_path.clone(),
            body: Some(json!({"disabled": "yes"})),
            status: 400,
            code: "VALIDATION_ERROR",
        },
    ];
    for case in cases {
        let a = send(
            &srv,
            case.method,
            &case.path,
            Cred::Bearer(&admin.token),
            case.body,
            &[],
        )
        .await;
        assert_eq!(a.status.as_u16(), case.status, "{}: {}", case.name, a.body);
        assert_kv_error(&a, case.status, case.code);
    }
    // The admin is still there and enabled.
    assert_status(&get(&srv, ME, Cred::Bearer(&admin.token)).await, 200);

    // A USER may not administer operators, not even itself.
    for (method, body) in [
        (Method::PATCH, Some(json!({"password": "another password"}))),
        (Method::DELETE, None),
    ] {
        let a = send(
            &srv,
            method.clone(),
            &self_path,
            Cred::Bearer(&user_token),
            body,
            &[],
        )
        .await;
        assert_eq!(a.status.as_u16(), 403, "{method}: {}", a.body);
        assert_kv_error(&a, 403, "FORBIDDEN");
    }

    // Resetting one's own password is allowed; like any reset it ends the sessions issued
    // before it, the caller's own included, so the admin logs in again.
    assert_status(
        &patch(
            &srv,
            &self_path,
            Cred::Bearer(&admin.token),
            json!({"password": "admin's new password"}),
        )
        .await,
        200,
    );
    assert_kv_error(
        &get(&srv, ME, Cred::Bearer(&admin.token)).await,
        401,
        "UNAUTHORIZED",
    );
    let admin = Admin {
        token: login(&srv, ADMIN_EMAIL, "admin's new password").await,
        ..admin
    };

    // Delete the USER: gone, token dead, audited.
    let a = delete(&srv, &user_path, Cred::Bearer(&admin.token)).await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    assert_kv_error(
        &get(&srv, ME, Cred::Bearer(&user_token)).await,
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM operators WHERE id = ?1",
            [user["id"].as_str().unwrap()]
        ),
        0
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'operator.delete'",
            []
        ),
        1
    );
    assert_kv_error(
        &delete(&srv, &user_path, Cred::Bearer(&admin.token)).await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn an_api_key_of_another_tenant_cannot_touch_operators() {
    let (srv, admin) = server_with_admin().await;
    srv.create_tenant("tenant-a");
    srv.create_tenant("tenant-b");
    let a_user = register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "a@tenant-a.example", "password": PASSWORD, "tenantId": tenant_id(&srv, "tenant-a")}),
    )
    .await;
    let path = format!("{USERS}/{}", a_user["id"].as_str().unwrap());
    let b_key = srv.create_api_key("tenant-b", Scope::FullAdmin, None);

    let a = patch(&srv, &path, Cred::ApiKey(&b_key), json!({"disabled": true})).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let a = delete(&srv, &path, Cred::ApiKey(&b_key)).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let disabled: Option<i64> = srv
        .db()
        .query_row(
            "SELECT disabled_at FROM operators WHERE id = ?1",
            [a_user["id"].as_str().unwrap()],
            |r| r.get(0),
        )
        .expect("still there");
    assert!(disabled.is_none(), "unchanged");
    // Nor any operator of the default tenant.
    assert_kv_error(
        &delete(&srv, &format!("{USERS}/{}", admin.id), Cred::ApiKey(&b_key)).await,
        403,
        "FORBIDDEN",
    );

    // Nor tenant A's own key: API keys never manage operators.
    let a_key = srv.create_api_key("tenant-a", Scope::FullAdmin, None);
    let a = patch(&srv, &path, Cred::ApiKey(&a_key), json!({"disabled": true})).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let a = delete(&srv, &path, Cred::ApiKey(&a_key)).await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    assert_eq!(operators(&srv), 2);
}

/// A FULL_ADMIN key acts within its tenant; ADMIN operators reach every tenant, so a key
/// must not be able to take one over (reset its password, disable or delete it).
#[tokio::test]
async fn a_full_admin_api_key_cannot_administer_admin_operators() {
    let (srv, admin) = server_with_admin().await;
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    let path = format!("{USERS}/{}", admin.id);
    for (name, method, body) in [
        (
            "password reset",
            Method::PATCH,
            Some(json!({"password": "taken over by a key"})),
        ),
        ("disable", Method::PATCH, Some(json!({"disabled": true}))),
        ("delete", Method::DELETE, None),
    ] {
        let a = send(&srv, method, &path, Cred::ApiKey(&key), body, &[]).await;
        assert_eq!(a.status.as_u16(), 403, "{name}: {}", a.body);
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    // The ADMIN is untouched: same password, enabled, present.
    let token = login(&srv, ADMIN_EMAIL, PASSWORD).await;
    assert_status(&get(&srv, ME, Cred::Bearer(&token)).await, 200);
    assert_status(&get(&srv, ME, Cred::Bearer(&admin.token)).await, 200);

    // Nor USERs of the key's tenant: API keys never manage operators.
    let user = register(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"email": "staff@example.com", "password": PASSWORD, "tenantId": admin.tenant_id}),
    )
    .await;
    let user_path = format!("{USERS}/{}", user["id"].as_str().unwrap());
    assert_kv_error(
        &patch(
            &srv,
            &user_path,
            Cred::ApiKey(&key),
            json!({"password": "a reset by the key"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_kv_error(
        &delete(&srv, &user_path, Cred::ApiKey(&key)).await,
        403,
        "FORBIDDEN",
    );
}

// ---- projects ---------------------------------------------------------------------------

/// Creates a project; returns the `project` object (asserting 201).
async fn create_project(srv: &TestServer, cred: Cred<'_>, body: Value) -> Value {
    let a = post(srv, PROJECTS, cred, body).await;
    assert_status(&a, 201);
    assert_eq!(a.body["success"], true);
    a.body["data"]["project"].clone()
}

fn stored_secret_hash(srv: &TestServer, project_id: &str) -> Vec<u8> {
    srv.db()
        .query_row(
            "SELECT client_secret_sha256 FROM products WHERE id = ?1",
            [project_id],
            |r| r.get(0),
        )
        .expect("product row")
}

fn products_with_hash(srv: &TestServer, hash: &[u8]) -> i64 {
    srv.count(
        "SELECT COUNT(*) FROM products WHERE client_secret_sha256 = ?1",
        [hash],
    )
}

#[tokio::test]
async fn creating_a_project_generates_its_slug_secrets_and_defaults() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"name": "My Game!", "description": "Game license management"}),
    )
    .await;
    assert_eq!(p["name"], "My Game!");
    assert_eq!(p["slug"], "my-game");
    assert_eq!(p["description"], "Game license management");
    assert_eq!(p["tenantId"], admin.tenant_id.as_str());
    assert_eq!(p["type"], "DESKTOP");
    assert_eq!(p["status"], "ACTIVE");
    assert_eq!(p["defaultMaxActivations"], 1, "HWID locked by default");
    assert_eq!(p["keyFormat"], "XXXX-XXXX-XXXX-XXXX");
    assert_eq!(p["requireEncryption"], false);
    assert_eq!(p["sessionTtlSeconds"], 300);
    assert!(p["heartbeatIntervalSeconds"].is_null());
    assert_eq!(p["keyCount"], 0);

    let secret = p["secret"].as_str().expect("secret");
    assert!(secret.starts_with("kv_"), "{secret}");
    assert!(secret.len() >= 35, "≥ 128 bits: {secret}");
    assert_eq!(b64_len(p["encryptionKey"].as_str().expect("key")), 32);
    assert_eq!(b64_len(p["publicKey"].as_str().expect("public key")), 32);

    // The same name again gets the next free slug; secrets differ.
    let q = create_project(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"name": "My Game!"}),
    )
    .await;
    assert_eq!(q["slug"], "my-game-2");
    assert_ne!(q["secret"], p["secret"]);
    assert_ne!(q["encryptionKey"], p["encryptionKey"]);
    assert_ne!(q["publicKey"], p["publicKey"]);

    // Explicit settings are kept.
    let r = create_project(
        &srv,
        Cred::Bearer(&admin.token),
        json!({
            "name": "Tooling", "slug": "tools", "keyFormat": "tt-XXXX-XXXX-XXXX-XXXX",
            "type": "PLUGIN", "defaultMaxActivations": 3, "serverVar": "eu-1",
            "requireEncryption": true, "sessionTtlSeconds": 60,
            "heartbeatIntervalSeconds": 600, "heartbeatGraceSeconds": 60
        }),
    )
    .await;
    assert_eq!(r["slug"], "tools");
    assert_eq!(r["keyFormat"], "TT-XXXX-XXXX-XXXX-XXXX");
    assert_eq!(r["type"], "PLUGIN");
    assert_eq!(r["defaultMaxActivations"], 3);
    assert_eq!(r["serverVar"], "eu-1");
    assert_eq!(r["requireEncryption"], true);
    assert_eq!(r["sessionTtlSeconds"], 60);
    assert_eq!(r["heartbeatIntervalSeconds"], 600);
    assert_eq!(r["heartbeatGraceSeconds"], 60);

    // A slug taken in the workspace is a conflict.
    let a = post(
        &srv,
        PROJECTS,
        Cred::Bearer(&admin.token),
        json!({"name": "Again", "slug": "tools"}),
    )
    .await;
    assert_kv_error(&a, 409, "CONFLICT");
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'project.create'",
            []
        ),
        3
    );
}

#[tokio::test]
async fn a_project_secret_is_stored_only_as_its_hash_and_sealed() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Vault"})).await;
    let id = p["id"].as_str().unwrap();
    let secret = p["secret"].as_str().expect("secret").to_owned();
    let encryption_key = base64::engine::general_purpose::STANDARD
        .decode(p["encryptionKey"].as_str().unwrap())
        .unwrap();

    let expected: Vec<u8> = Sha256::digest(secret.as_bytes()).to_vec();
    assert_eq!(stored_secret_hash(&srv, id), expected);

    // No column of any table holds the secret or the payload key in the clear.
    let conn = srv.db();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "products"));
    for table in &tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, column) in columns.iter().enumerate() {
                let leaked = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) => {
                        contains(t, secret.as_bytes()) || contains(t, &encryption_key)
                    }
                    rusqlite::types::ValueRef::Blob(b) => {
                        contains(b, secret.as_bytes()) || contains(b, &encryption_key)
                    }
                    _ => false,
                };
                assert!(!leaked, "{table}.{column} holds a secret in the clear");
            }
        }
    }
    // Nor any byte of the data directory (database, WAL, master key file).
    for entry in walk(srv.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds the kv_ secret",
            entry.display()
        );
    }
    // Yet the project can show it again.
    let a = get(
        &srv,
        &format!("{PROJECTS}/{id}"),
        Cred::Bearer(&admin.token),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["project"]["secret"], secret.as_str());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn the_project_list_hides_secrets_and_details_show_them() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Listed"})).await;
    create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Second"})).await;
    let id = p["id"].as_str().unwrap();
    let key = srv.create_api_key("default", Scope::CreateLicense, None);
    srv.create_license(&key, id, json!({})).await;

    let a = get(&srv, PROJECTS, Cred::Bearer(&admin.token)).await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    let projects = a.body["data"]["projects"].as_array().expect("projects");
    assert_eq!(projects.len(), 2);
    for project in projects {
        let fields = project.as_object().unwrap();
        assert!(!fields.contains_key("secret"), "{project}");
        assert!(!fields.contains_key("encryptionKey"), "{project}");
        assert!(fields.contains_key("keyCount"), "{project}");
        assert!(fields.contains_key("publicKey"), "{project}");
    }
    let listed = projects.iter().find(|x| x["id"] == id).expect("listed");
    assert_eq!(listed["keyCount"], 1);
    assert_eq!(
        a.body["data"]["pagination"],
        json!({"page": 1, "limit": 50, "total": 2, "totalPages": 1})
    );
    let page2 = get(
        &srv,
        &format!("{PROJECTS}?page=2&limit=1"),
        Cred::Bearer(&admin.token),
    )
    .await;
    assert_status(&page2, 200);
    assert_eq!(page2.body["data"]["projects"].as_array().unwrap().len(), 1);
    assert_eq!(page2.body["data"]["pagination"]["totalPages"], 2);

    let a = get(
        &srv,
        &format!("{PROJECTS}/{id}"),
        Cred::Bearer(&admin.token),
    )
    .await;
    assert_status(&a, 200);
    let detail = &a.body["data"]["project"];
    assert_eq!(detail["secret"], p["secret"]);
    assert_eq!(detail["encryptionKey"], p["encryptionKey"]);
    assert_eq!(detail["keyCount"], 1);
    assert_kv_error(
        &get(
            &srv,
            &format!("{PROJECTS}/prod_nope"),
            Cred::Bearer(&admin.token),
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn regenerating_the_secret_replaces_the_stored_hash() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Rotate"})).await;
    let id = p["id"].as_str().unwrap();
    let path = format!("{PROJECTS}/{id}");
    let old = p["secret"].as_str().unwrap().to_owned();
    let old_hash: Vec<u8> = Sha256::digest(old.as_bytes()).to_vec();

    // A PATCH without the flag keeps the secret.
    let a = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"name": "Rotate"}),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["project"]["secret"], old.as_str());

    let a = patch(
        &srv,
        &path,
        Cred::Bearer(&admin.token),
        json!({"regenerateSecret": true}),
    )
    .await;
    assert_status(&a, 200);
    let new = a.body["data"]["project"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(new.starts_with("kv_") && new.len() >= 35, "{new}");
    assert_ne!(new, old);
    assert_eq!(
        a.body["data"]["project"]["encryptionKey"], p["encryptionKey"],
        "the payload key is not rotated with the secret"
    );
    assert_eq!(products_with_hash(&srv, &old_hash), 0, "old hash gone");
    assert_eq!(
        stored_secret_hash(&srv, id),
        Sha256::digest(new.as_bytes()).to_vec()
    );
    let a = get(&srv, &path, Cred::Bearer(&admin.token)).await;
    assert_eq!(a.body["data"]["project"]["secret"], new.as_str());
}

#[tokio::test]
async fn project_settings_can_be_patched() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(
        &srv,
        Cred::Bearer(&admin.token),
        json!({"name": "Settings", "description": "first"}),
    )
    .await;
    let path = format!("{PROJECTS}/{}", p["id"].as_str().unwrap());

    struct Case {
        name: &'static str,
        body: Value,
        /// Expected fields of the project afterwards; None: a 400 naming `needle`.
        expect: Option<Value>,
        needle: &'static str,
    }
    let cases = [
        Case {
            name: "rename",
            body: json!({"name": "  Renamed  "}),
            expect: Some(json!({"name": "Renamed", "slug": "settings"})),
            needle: "",
        },
        Case {
            name: "description null clears it",
            body: json!({"description": null}),
            expect: Some(json!({"description": null})),
            needle: "",
        },
        Case {
            name: "description set",
            body: json!({"description": "second"}),
            expect: Some(json!({"description": "second"})),
            needle: "",
        },
        Case {
            name: "server variable",
            body: json!({"serverVar": "wss://eu.example/ws"}),
            expect: Some(json!({"serverVar": "wss://eu.example/ws"})),
            needle: "",
        },
        Case {
            name: "require encryption",
            body: json!({"requireEncryption": true}),
            expect: Some(json!({"requireEncryption": true})),
            needle: "",
        },
        Case {
            name: "session TTL 29",
            body: json!({"sessionTtlSeconds": 29}),
            expect: None,
            needle: "sessionTtlSeconds",
        },
        Case {
            name: "session TTL 30",
            body: json!({"sessionTtlSeconds": 30}),
            expect: Some(json!({"sessionTtlSeconds": 30})),
            needle: "",
        },
        Case {
            name: "session TTL 86401",
            body: json!({"sessionTtlSeconds": 86401}),
            expect: None,
            needle: "sessionTtlSeconds",
        },
        Case {
            name: "HWID reset cooldown",
            body: json!({"hwidResetCooldownSeconds": 3600}),
            expect: Some(json!({"hwidResetCooldownSeconds": 3600})),
            needle: "",
        },
        Case {
            name: "key format too weak",
            body: json!({"keyFormat": "XXXX-XXXX"}),
            expect: None,
            needle: "key format",
        },
        Case {
            name: "key format",
            body: json!({"keyFormat": "GAME-XXXXX-XXXXX-XXXXX-XXXXX"}),
            expect: Some(json!({"keyFormat": "GAME-XXXXX-XXXXX-XXXXX-XXXXX"})),
            needle: "",
        },
        Case {
            name: "heartbeat interval",
            body: json!({"heartbeatIntervalSeconds": 120, "heartbeatGraceSeconds": 30}),
            expect: Some(json!({"heartbeatIntervalSeconds": 120, "heartbeatGraceSeconds": 30})),
            needle: "",
        },
        Case {
            name: "heartbeat interval null removes it",
            body: json!({"heartbeatIntervalSeconds": null}),
            expect: Some(json!({"heartbeatIntervalSeconds": null, "heartbeatGraceSeconds": 0})),
            needle: "",
        },
        Case {
            name: "portal settings object",
            body: json!({"portalSettings": {"title": "Members", "blocks": [{"type": "key_info"}, {"type": "hwid_status"}]}}),
            expect: Some(
                json!({"portalSettings": {"enabled": true, "title": "Members", "welcome": null, "loaderUrl": null, "blocks": [{"type": "key_info"}, {"type": "hwid_status"}]}}),
            ),
            needle: "",
        },
        Case {
            name: "portal settings array",
            body: json!({"portalSettings": ["key_info"]}),
            expect: None,
            needle: "portalSettings",
        },
        Case {
            name: "status",
            body: json!({"status": "DEPRECATED"}),
            expect: Some(json!({"status": "DEPRECATED"})),
            needle: "",
        },
        Case {
            name: "empty PATCH changes nothing",
            body: json!({}),
            expect: Some(json!({"name": "Renamed", "status": "DEPRECATED"})),
            needle: "",
        },
    ];
    for case in cases {
        let before =
            get(&srv, &path, Cred::Bearer(&admin.token)).await.body["data"]["project"].clone();
        let a = patch(&srv, &path, Cred::Bearer(&admin.token), case.body).await;
        match case.expect {
            Some(expect) => {
                assert_eq!(a.status.as_u16(), 200, "{}: {}", case.name, a.body);
                let project = &a.body["data"]["project"];
                for (field, value) in expect.as_object().unwrap() {
                    assert_eq!(&project[field], value, "{}: {field}", case.name);
                }
                let stored =
                    get(&srv, &path, Cred::Bearer(&admin.token)).await.body["data"]["project"]
                        .clone();
                for (field, value) in expect.as_object().unwrap() {
                    assert_eq!(&stored[field], value, "{}: stored {field}", case.name);
                }
            }
            None => {
                assert_eq!(a.status.as_u16(), 400, "{}: {}", case.name, a.body);
                assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", case.needle);
                let after =
                    get(&srv, &path, Cred::Bearer(&admin.token)).await.body["data"]["project"]
                        .clone();
                assert_eq!(after, before, "{}: nothing changed", case.name);
            }
        }
    }
    let (server_var, ttl, portal): (Option<String>, i64, Option<String>) = srv
        .db()
        .query_row(
            "SELECT server_var, session_ttl_secs, portal_settings FROM products WHERE id = ?1",
            [p["id"].as_str().unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row");
    assert_eq!(server_var.as_deref(), Some("wss://eu.example/ws"));
    assert_eq!(ttl, 30);
    let portal: Value = serde_json::from_str(&portal.expect("portal settings")).unwrap();
    assert_eq!(portal["title"], "Members");
    assert_eq!(
        portal["blocks"],
        json!([{"type": "key_info"}, {"type": "hwid_status"}])
    );
}

#[tokio::test]
async fn deleting_a_project_needs_its_slug_and_removes_its_keys_and_activations() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Doomed"})).await;
    let keep = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Kept"})).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let path = format!("{PROJECTS}/{id}");
    let vendor_key = srv.create_api_key("default", Scope::CreateLicense, None);
    let mut keys = Vec::new();
    for i in 0..2 {
        let license = srv
            .create_license(
                &vendor_key,
                &id,
                json!({"customerEmail": format!("buyer{i}@example.com")}),
            )
            .await;
        keys.push(license["key"].as_str().expect("key").to_owned());
    }
    let kept_license = srv
        .create_license(&vendor_key, keep["id"].as_str().unwrap(), json!({}))
        .await;
    for key in &keys {
        let a = srv.activate(&vendor_key, key, "machine-1").await;
        assert!(a.status.is_success(), "activate: {}", a.body);
    }
    let licenses_of =
        |srv: &TestServer| srv.count("SELECT COUNT(*) FROM licenses WHERE product_id = ?1", [&id]);
    let activations_of = |srv: &TestServer| {
        srv.count(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id
             WHERE l.product_id = ?1",
            [&id],
        )
    };
    assert_eq!(licenses_of(&srv), 2);
    assert_eq!(activations_of(&srv), 2);

    for (name, query) in [
        ("no confirmation", String::new()),
        ("empty confirmation", "?confirm=".to_owned()),
        ("wrong confirmation", "?confirm=kept".to_owned()),
        ("the name in other letters", "?confirm=DOOMED".to_owned()),
    ] {
        let a = delete(&srv, &format!("{path}{query}"), Cred::Bearer(&admin.token)).await;
        assert_eq!(a.status.as_u16(), 400, "{name}: {}", a.body);
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "confirm");
        assert_eq!(licenses_of(&srv), 2, "{name}: nothing deleted");
        assert_eq!(activations_of(&srv), 2, "{name}: nothing deleted");
    }

    let a = delete(
        &srv,
        &format!("{path}?confirm=doomed"),
        Cred::Bearer(&admin.token),
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["data"]["deletedKeys"], 2);

    assert_eq!(
        srv.count("SELECT COUNT(*) FROM products WHERE id = ?1", [&id]),
        0
    );
    assert_eq!(licenses_of(&srv), 0);
    for key in &keys {
        assert_eq!(
            srv.count(
                "SELECT COUNT(*) FROM licenses WHERE license_key = ?1",
                [key]
            ),
            0
        );
    }
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM activations", []),
        0,
        "the activations went with their licenses"
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'project.delete' AND product_id = ?1",
            [&id]
        ),
        1
    );
    // The other project is untouched.
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM licenses WHERE id = ?1",
            [kept_license["id"].as_str().unwrap()]
        ),
        1
    );
    assert_kv_error(
        &get(&srv, &path, Cred::Bearer(&admin.token)).await,
        404,
        "NOT_FOUND",
    );
    assert_kv_error(
        &delete(
            &srv,
            &format!("{path}?confirm=doomed"),
            Cred::Bearer(&admin.token),
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn projects_are_isolated_by_workspace() {
    let (srv, admin) = server_with_admin().await;
    let (user, user_token) = user_with_token(&srv, &admin, "user@example.com").await;
    let admins = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Admin's"})).await;
    let users = create_project(&srv, Cred::Bearer(&user_token), json!({"name": "User's"})).await;
    assert_eq!(users["tenantId"], user["tenantId"]);
    let admins_path = format!("{PROJECTS}/{}", admins["id"].as_str().unwrap());

    // The USER sees only its own.
    let a = get(&srv, PROJECTS, Cred::Bearer(&user_token)).await;
    assert_status(&a, 200);
    let ids: Vec<&str> = a.body["data"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![users["id"].as_str().unwrap()]);
    assert_eq!(a.body["data"]["pagination"]["total"], 1);

    for (name, a) in [
        (
            "GET",
            get(&srv, &admins_path, Cred::Bearer(&user_token)).await,
        ),
        (
            "PATCH",
            patch(
                &srv,
                &admins_path,
                Cred::Bearer(&user_token),
                json!({"name": "Mine now", "regenerateSecret": true}),
            )
            .await,
        ),
        (
            "DELETE",
            delete(
                &srv,
                &format!("{admins_path}?confirm=admin-s"),
                Cred::Bearer(&user_token),
            )
            .await,
        ),
    ] {
        assert_eq!(a.status.as_u16(), 404, "{name}: {}", a.body);
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    let a = get(&srv, &admins_path, Cred::Bearer(&admin.token)).await;
    assert_eq!(a.body["data"]["project"]["name"], "Admin's");
    assert_eq!(a.body["data"]["project"]["secret"], admins["secret"]);

    // Nor may it create projects in another workspace.
    let a = post(
        &srv,
        PROJECTS,
        Cred::Bearer(&user_token),
        json!({"name": "Sneaky", "tenantId": admin.tenant_id}),
    )
    .await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    // The ADMIN sees both, and may act on the USER's.
    let a = get(&srv, PROJECTS, Cred::Bearer(&admin.token)).await;
    let ids: BTreeSet<&str> = a.body["data"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(users["id"].as_str().unwrap()));
    assert!(ids.contains(admins["id"].as_str().unwrap()));
    let users_path = format!("{PROJECTS}/{}", users["id"].as_str().unwrap());
    assert_status(
        &get(&srv, &users_path, Cred::Bearer(&admin.token)).await,
        200,
    );

    // A FULL_ADMIN key sees only its tenant's.
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = get(&srv, PROJECTS, Cred::ApiKey(&key)).await;
    assert_status(&a, 200);
    let ids: Vec<&str> = a.body["data"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![admins["id"].as_str().unwrap()]);
    assert_kv_error(
        &get(&srv, &users_path, Cred::ApiKey(&key)).await,
        404,
        "NOT_FOUND",
    );
    let by_key = create_project(&srv, Cred::ApiKey(&key), json!({"name": "By key"})).await;
    assert_eq!(by_key["tenantId"], admin.tenant_id.as_str());
}

#[tokio::test]
async fn projects_require_an_admin_credential() {
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Guarded"})).await;
    let path = format!("{PROJECTS}/{}", p["id"].as_str().unwrap());
    let validate_only = srv.create_api_key("default", Scope::ValidateOnly, None);
    let read_only = srv.create_api_key("default", Scope::ReadOnly, None);

    let requests = [
        (Method::GET, PROJECTS.to_owned(), None),
        (
            Method::POST,
            PROJECTS.to_owned(),
            Some(json!({"name": "X"})),
        ),
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "X"}))),
        (Method::DELETE, format!("{path}?confirm=guarded"), None),
    ];
    for (method, path, body) in &requests {
        for (name, cred, status, code) in [
            ("no credential", Cred::None, 401, "UNAUTHORIZED"),
            ("bad bearer", Cred::Bearer("nope"), 401, "UNAUTHORIZED"),
            (
                "unknown API key",
                Cred::ApiKey("kw_nope"),
                401,
                "UNAUTHORIZED",
            ),
            (
                "VALIDATE_ONLY key",
                Cred::ApiKey(&validate_only),
                403,
                "FORBIDDEN",
            ),
            ("READ_ONLY key", Cred::ApiKey(&read_only), 403, "FORBIDDEN"),
        ] {
            let a = send(&srv, method.clone(), path, cred, body.clone(), &[]).await;
            assert_eq!(
                a.status.as_u16(),
                status,
                "{method} {path} with {name}: {}",
                a.body
            );
            assert_kv_error(&a, status, code);
        }
    }
    assert_eq!(srv.count("SELECT COUNT(*) FROM products", []), 1);
    let a = get(&srv, &path, Cred::Bearer(&admin.token)).await;
    assert_eq!(a.body["data"]["project"]["name"], "Guarded");
}

#[tokio::test]
async fn bad_project_input_is_refused_naming_the_field() {
    struct Case {
        name: &'static str,
        body: Value,
        needle: &'static str,
    }
    let (srv, admin) = server_with_admin().await;
    let p = create_project(&srv, Cred::Bearer(&admin.token), json!({"name": "Target"})).await;
    let path = format!("{PROJECTS}/{}", p["id"].as_str().unwrap());

    let create_cases = [
        Case {
            name: "missing name",
            body: json!({"description": "x"}),
            needle: "name",
        },
        Case {
            name: "name empty",
            body: json!({"name": ""}),
            needle: "name",
        },
        Case {
            name: "name blank",
            body: json!({"name": "   "}),
            needle: "name",
        },
        Case {
            name: "name of 256 characters",
            body: json!({"name": "n".repeat(256)}),
            needle: "name",
        },
        Case {
            name: "name a number",
            body: json!({"name": 12}),
            needle: "name",
        },
        Case {
            name: "slug with a space",
            body: json!({"name": "Ok", "slug": "Bad Slug"}),
            needle: "slug",
        },
        Case {
            name: "slug starting with -",
            body: json!({"name": "Ok", "slug": "-bad"}),
            needle: "slug",
        },
        Case {
            name: "description of 1001 characters",
            body: json!({"name": "Ok", "description": "d".repeat(1001)}),
            needle: "description",
        },
        Case {
            name: "unknown type",
            body: json!({"name": "Ok", "type": "GAME"}),
            needle: "type",
        },
        Case {
            name: "type a number",
            body: json!({"name": "Ok", "type": 3}),
            needle: "type",
        },
        Case {
            name: "unknown default license type",
            body: json!({"name": "Ok", "defaultLicenseType": "FOREVER"}),
            needle: "defaultLicenseType",
        },
        Case {
            name: "defaultMaxActivations 0",
            body: json!({"name": "Ok", "defaultMaxActivations": 0}),
            needle: "defaultMaxActivations",
        },
        Case {
            name: "defaultMaxActivations negative",
            body: json!({"name": "Ok", "defaultMaxActivations": -1}),
            needle: "defaultMaxActivations",
        },
        Case {
            name: "defaultMaxActivations a string",
            body: json!({"name": "Ok", "defaultMaxActivations": "3"}),
            needle: "defaultMaxActivations",
        },
        Case {
            name: "requireEncryption a string",
            body: json!({"name": "Ok", "requireEncryption": "yes"}),
            needle: "requireEncryption",
        },
        Case {
            name: "sessionTtlSeconds 29",
            body: json!({"name": "Ok", "sessionTtlSeconds": 29}),
            needle: "sessionTtlSeconds",
        },
        Case {
            name: "sessionTtlSeconds a float",
            body: json!({"name": "Ok", "sessionTtlSeconds": 30.5}),
            needle: "sessionTtlSeconds",
        },
        Case {
            name: "heartbeatIntervalSeconds 0",
            body: json!({"name": "Ok", "heartbeatIntervalSeconds": 0}),
            needle: "heartbeatIntervalSeconds",
        },
        Case {
            name: "key format too weak",
            body: json!({"name": "Ok", "keyFormat": "XXXX"}),
            needle: "key format",
        },
        Case {
            name: "key format with a space",
            body: json!({"name": "Ok", "keyFormat": "XXXX XXXX XXXX XXXX"}),
            needle: "key format",
        },
        Case {
            name: "serverVar an object",
            body: json!({"name": "Ok", "serverVar": {"a": 1}}),
            needle: "serverVar",
        },
        Case {
            name: "serverVar of 4097 characters",
            body: json!({"name": "Ok", "serverVar": "v".repeat(4097)}),
            needle: "serverVar",
        },
        Case {
            name: "tenantId a number",
            body: json!({"name": "Ok", "tenantId": 7}),
            needle: "tenantId",
        },
    ];
    for case in create_cases {
        let a = post(&srv, PROJECTS, Cred::Bearer(&admin.token), case.body).await;
        assert_eq!(a.status.as_u16(), 400, "POST {}: {}", case.name, a.body);
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", case.needle);
    }
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM products", []),
        1,
        "nothing created"
    );

    let update_cases = [
        Case {
            name: "name empty",
            body: json!({"name": ""}),
            needle: "name",
        },
        Case {
            name: "name of 256 characters",
            body: json!({"name": "n".repeat(256)}),
            needle: "name",
        },
        Case {
            name: "name an array",
            body: json!({"name": ["a"]}),
            needle: "name",
        },
        Case {
            name: "description of 1001 characters",
            body: json!({"description": "d".repeat(1001)}),
            needle: "description",
        },
        Case {
            name: "description a number",
            body: json!({"description": 5}),
            needle: "description",
        },
        Case {
            name: "unknown status",
            body: json!({"status": "GONE"}),
            needle: "status",
        },
        Case {
            name: "regenerateSecret a string",
            body: json!({"regenerateSecret": "true"}),
            needle: "regenerateSecret",
        },
        Case {
            name: "requireEncryption a number",
            body: json!({"requireEncryption": 1}),
            needle: "requireEncryption",
        },
        Case {
            name: "sessionTtlSeconds negative",
            body: json!({"sessionTtlSeconds": -30}),
            needle: "sessionTtlSeconds",
        },
        Case {
            name: "hwidResetCooldownSeconds over a year",
            body: json!({"hwidResetCooldownSeconds": 365 * 86400 + 1}),
            needle: "hwidResetCooldownSeconds",
        },
        Case {
            name: "heartbeatIntervalSeconds a string",
            body: json!({"heartbeatIntervalSeconds": "60"}),
            needle: "heartbeatIntervalSeconds",
        },
        Case {
            name: "defaultMaxActivations 1001",
            body: json!({"defaultMaxActivations": 1001}),
            needle: "defaultMaxActivations",
        },
        Case {
            name: "portalSettings a string",
            body: json!({"portalSettings": "blocks"}),
            needle: "portalSettings",
        },
        Case {
            name: "key format too weak",
            body: json!({"keyFormat": "XX-XX"}),
            needle: "key format",
        },
    ];
    let before = get(&srv, &path, Cred::Bearer(&admin.token)).await.body["data"]["project"].clone();
    for case in update_cases {
        let a = patch(&srv, &path, Cred::Bearer(&admin.token), case.body).await;
        assert_eq!(a.status.as_u16(), 400, "PATCH {}: {}", case.name, a.body);
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", case.needle);
    }
    let after = get(&srv, &path, Cred::Bearer(&admin.token)).await.body["data"]["project"].clone();
    assert_eq!(after, before, "nothing changed");

    // Malformed JSON and the wrong media type.
    for (method, target) in [(Method::POST, PROJECTS), (Method::PATCH, path.as_str())] {
        let resp = srv
            .client
            .request(method.clone(), format!("{}{target}", srv.url))
            .header("Authorization", format!("Bearer {}", admin.token))
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .expect("sent");
        let a = TestServer::decode(resp).await;
        assert_eq!(a.status.as_u16(), 400, "{method} malformed: {}", a.body);
        assert_kv_error(&a, 400, "VALIDATION_ERROR");

        let resp = srv
            .client
            .request(method.clone(), format!("{}{target}", srv.url))
            .header("Authorization", format!("Bearer {}", admin.token))
            .header("content-type", "text/plain")
            .body("name=x")
            .send()
            .await
            .expect("sent");
        let a = TestServer::decode(resp).await;
        assert_eq!(a.status.as_u16(), 415, "{method} text/plain: {}", a.body);
        assert_kv_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    // A method the path does not have.
    let a = send(
        &srv,
        Method::PUT,
        &path,
        Cred::Bearer(&admin.token),
        Some(json!({"name": "x"})),
        &[],
    )
    .await;
    assert_kv_error(&a, 405, "METHOD_NOT_ALLOWED");
    // Bad pagination on the list.
    for query in ["?page=0", "?limit=501", "?page=x"] {
        let a = get(
            &srv,
            &format!("{PROJECTS}{query}"),
            Cred::Bearer(&admin.token),
        )
        .await;
        assert_eq!(a.status.as_u16(), 400, "{query}: {}", a.body);
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
}

// ---- the OpenAPI document ---------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_lists_the_admin_operations_with_their_security() {
    let srv = TestServer::start().await;
    let a = get(&srv, "/api/openapi.json", Cred::None).await;
    assert_status(&a, 200);
    let doc = &a.body;
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(schemes["BearerToken"]["scheme"], "bearer");
    assert_eq!(schemes["SessionCookie"]["in"], "cookie");
    assert_eq!(schemes["SessionCookie"]["name"], "keyward_token");
    assert_eq!(schemes["ApiKey"]["in"], "header");
    assert_eq!(schemes["ApiKey"]["name"], "X-API-Key");

    let secured = [
        ("/api/auth/logout", "post"),
        ("/api/auth/me", "get"),
        ("/api/users", "get"),
        ("/api/users/{id}", "patch"),
        ("/api/users/{id}", "delete"),
        ("/api/projects", "get"),
        ("/api/projects", "post"),
        ("/api/projects/{id}", "get"),
        ("/api/projects/{id}", "patch"),
        ("/api/projects/{id}", "delete"),
    ];
    for (path, method) in secured {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        let names: BTreeSet<&str> = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} declares security"))
            .iter()
            .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["BearerToken", "SessionCookie", "ApiKey"]),
            "{method} {path}"
        );
        let responses = op["responses"].as_object().expect("responses");
        for status in ["400", "401", "403"] {
            assert!(
                responses.contains_key(status),
                "{method} {path} declares {status}"
            );
        }
    }
    for (path, method, status) in [
        ("/api/auth/register", "post", "201"),
        ("/api/auth/login", "post", "200"),
        ("/api/projects", "post", "201"),
        ("/api/projects/{id}", "delete", "200"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op["responses"][status].is_object(),
            "{method} {path} declares {status}"
        );
    }
    let login = &doc["paths"]["/api/auth/login"]["post"];
    assert!(
        login["security"].as_array().is_none_or(|s| s.is_empty()),
        "login needs no credential"
    );
    assert!(
        login["responses"]["429"].is_object(),
        "login declares its rate limit"
    );
    let delete = &doc["paths"]["/api/projects/{id}"]["delete"];
    assert!(
        delete["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "confirm" && p["in"] == "query"),
        "DELETE documents ?confirm"
    );
}

#[tokio::test]
async fn disable_and_password_reset_end_earlier_sessions_for_good() {
    let (srv, admin) = server_with_admin().await;
    let (user, user_token) = user_with_token(&srv, &admin, "kept@example.com").await;
    let user_path = format!("{USERS}/{}", user["id"].as_str().unwrap());
    // Disable, then re-enable: the token issued before the disable stays dead.
    for disabled in [true, false] {
        let a = patch(
            &srv,
            &user_path,
            Cred::Bearer(&admin.token),
            json!({"disabled": disabled}),
        )
        .await;
        assert_status(&a, 200);
    }
    assert_kv_error(
        &get(&srv, ME, Cred::Bearer(&user_token)).await,
        401,
        "UNAUTHORIZED",
    );
    // A fresh login works; a password reset then kills that session too.
    let fresh = login(&srv, "kept@example.com", PASSWORD).await;
    assert_status(&get(&srv, ME, Cred::Bearer(&fresh)).await, 200);
    let a = patch(
        &srv,
        &user_path,
        Cred::Bearer(&admin.token),
        json!({"password": "another passphrase"}),
    )
    .await;
    assert_status(&a, 200);
    assert_kv_error(
        &get(&srv, ME, Cred::Bearer(&fresh)).await,
        401,
        "UNAUTHORIZED",
    );
    let newest = login(&srv, "kept@example.com", "another passphrase").await;
    assert_status(&get(&srv, ME, Cred::Bearer(&newest)).await, 200);
}

/// `GET /api/auth/setup` tells the panel whether to show its setup screen: open until the
/// first operator exists, closed afterwards; it needs no credential and ignores a wrong one.
#[tokio::test]
async fn setup_is_reported_open_until_the_first_operator_exists() {
    let srv = TestServer::start().await;
    let before = get(&srv, "/api/auth/setup", Cred::None).await;
    assert_status(&before, 200);
    assert_eq!(
        before.body,
        json!({"success": true, "data": {"setupRequired": true}})
    );
    let a = post(
        &srv,
        REGISTER,
        Cred::None,
        setup_body(&srv, "boss@example.com"),
    )
    .await;
    assert_status(&a, 201);
    for cred in [Cred::None, Cred::Bearer("forged")] {
        let after = get(&srv, "/api/auth/setup", cred).await;
        assert_status(&after, 200);
        assert_eq!(after.body["data"]["setupRequired"], false);
    }
    let wrong_method = post(&srv, "/api/auth/setup", Cred::None, json!({})).await;
    assert_kv_error(&wrong_method, 405, "METHOD_NOT_ALLOWED");
}
