//! Two-factor login for operators: enrolment, the sign-in's second step with a code or a
//! recovery code (each single-use), turning it off, new recovery codes, and the workspace
//! policy that restricts an operator without it to enrolling.

use keyward::domain::api_keys::Scope;
use keyward::domain::two_factor::code_for_base32;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const ENROL: &str = "/api/auth/2fa/enroll";
const CONFIRM: &str = "/api/auth/2fa/confirm";
const STATUS: &str = "/api/auth/2fa";
const DISABLE: &str = "/api/auth/2fa/disable";
const REGENERATE: &str = "/api/auth/2fa/recovery-codes";
const SECOND_STEP: &str = "/api/auth/login/2fa";
const POLICY: &str = "/api/workspace/2fa";

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// The code of `secret` `steps` time steps from now.
fn code(secret: &str, steps: i64) -> String {
    code_for_base32(secret, now_secs() + steps * 30).unwrap()
}

async fn post(srv: &TestServer, path: &str, cred: Cred<'_>, body: Value) -> Answer {
    send(srv, Method::POST, path, cred, Some(body), &[]).await
}

async fn get(srv: &TestServer, path: &str, cred: Cred<'_>) -> Answer {
    send(srv, Method::GET, path, cred, None, &[]).await
}

/// Enrols the operator of `token`; returns (secret, recovery codes). The code used to confirm
/// is the current one, so it is spent.
async fn enrol(srv: &TestServer, token: &str) -> (String, Vec<String>) {
    let a = post(srv, ENROL, Cred::Bearer(token), json!({})).await;
    assert_status(&a, 200);
    let secret = str_field(&a.body["data"], "secret").to_owned();
    let a = post(
        srv,
        CONFIRM,
        Cred::Bearer(token),
        json!({"code": code(&secret, 0)}),
    )
    .await;
    assert_status(&a, 200);
    let codes = a.body["data"]["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    (secret, codes)
}

/// The password step of an operator with two-factor login: the challenge.
async fn challenge(srv: &TestServer, email: &str) -> String {
    let body = json!({"email": email, "password": PASSWORD});
    let a = post(srv, LOGIN, Cred::None, body).await;
    assert_status(&a, 202);
    assert_eq!(a.body["data"]["twoFactorRequired"], true, "{}", a.body);
    assert!(a.body["data"].get("token").is_none(), "no session yet");
    assert!(
        a.header("set-cookie").is_none(),
        "no session or device cookie before the second factor: {:?}",
        a.headers
    );
    str_field(&a.body["data"], "challenge").to_owned()
}

async fn second_step(srv: &TestServer, body: Value) -> Answer {
    post(srv, SECOND_STEP, Cred::None, body).await
}

/// Forgets the last accepted step, so that a test may sign in again within one time step.
fn forget_last_step(srv: &TestServer) {
    srv.db()
        .execute("UPDATE operator_totp SET last_step = 0", [])
        .unwrap();
}

fn audit_count(srv: &TestServer, action: &str) -> i64 {
    srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action = ?1",
        [action],
    )
}

#[tokio::test]
async fn an_operator_enrols_and_signs_in_with_a_code_once() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let me = Cred::Bearer(&admin.token);
    let a = get(&srv, STATUS, me).await;
    assert_status(&a, 200);
    assert_eq!(
        a.body["data"],
        json!({"enabled": false, "pending": false, "recoveryCodesLeft": 0,
            "requiredByWorkspace": false})
    );

    let a = post(&srv, ENROL, me, json!({})).await;
    assert_status(&a, 200);
    let data = &a.body["data"];
    let secret = str_field(data, "secret").to_owned();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = str_field(data, "otpauthUri");
    assert!(
        uri.starts_with("otpauth://totp/Keyward:admin%40example.com?secret=")
            && uri.contains(&secret)
            && uri.contains("period=30")
            && uri.contains("digits=6"),
        "{uri}"
    );
    assert!(str_field(data, "qrSvg").contains("<svg"), "a QR code");
    // Not on until confirmed: the password alone still signs in.
    assert_eq!(get(&srv, STATUS, me).await.body["data"]["pending"], true);
    login(&srv, ADMIN_EMAIL, PASSWORD).await;

    for (name, body, status, needle) in [
        (
            "wrong code",
            json!({"code": code(&secret, 300)}),
            400,
            "does not match",
        ),
        ("letters", json!({"code": "abcdef"}), 400, "6 digits"),
        ("too short", json!({"code": "123"}), 400, "6 digits"),
        ("wrong type", json!({"code": 123456}), 400, "code"),
        ("missing", json!({}), 400, "code"),
    ] {
        let a = post(&srv, CONFIRM, me, body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, "VALIDATION_ERROR", needle);
    }
    assert_eq!(get(&srv, STATUS, me).await.body["data"]["enabled"], false);

    // Confirmed with the current code (as spaced as the app shows it).
    let current = code(&secret, 0);
    let spaced = format!("{} {}", &current[..3], &current[3..]);
    let a = post(&srv, CONFIRM, me, json!({"code": spaced})).await;
    assert_status(&a, 200);
    let codes = a.body["data"]["recoveryCodes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    assert_eq!(audit_count(&srv, "operator.2fa.enable"), 1);
    let a = get(&srv, STATUS, me).await;
    assert_eq!(a.body["data"]["enabled"], true);
    assert_eq!(a.body["data"]["recoveryCodesLeft"], 10);
    let a = post(&srv, ENROL, me, json!({})).await;
    assert_kv_error_naming(&a, 409, "CONFLICT", "on already");

    // The password step answers a challenge; the code completes the sign-in.
    let ch = challenge(&srv, ADMIN_EMAIL).await;
    let a = second_step(&srv, json!({"challenge": ch, "code": current})).await;
    assert_kv_error_naming(&a, 401, "UNAUTHORIZED", "already used");
    let next = code(&secret, 1);
    let a = second_step(&srv, json!({"challenge": ch, "code": next})).await;
    assert_status(&a, 200);
    let token = str_field(&a.body["data"], "token").to_owned();
    assert_eq!(a.body["data"]["user"]["email"], ADMIN_EMAIL);
    let cookies: Vec<_> = a.headers.get_all("set-cookie").iter().collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("keyward_token=")),
        "{cookies:?}"
    );
    assert_status(&get(&srv, "/api/auth/me", Cred::Bearer(&token)).await, 200);
    assert_status(&get(&srv, "/api/projects", Cred::Bearer(&token)).await, 200);

    // Replayed: the same code again, with the same or a new challenge.
    let a = second_step(&srv, json!({"challenge": ch, "code": next})).await;
    assert_kv_error_naming(&a, 401, "UNAUTHORIZED", "already used");
    let ch2 = challenge(&srv, ADMIN_EMAIL).await;
    let a = second_step(&srv, json!({"challenge": ch2, "code": next})).await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
    assert!(audit_count(&srv, "operator.2fa.failed") >= 2);
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'operator.login'
             AND detail LIKE '%secondFactor%'",
            [],
        ),
        1
    );
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let (_, codes) = enrol(&srv, &admin.token).await;
    let ch = challenge(&srv, ADMIN_EMAIL).await;
    // Case and dashes do not matter.
    let typed = codes[0].replace('-', "").to_lowercase();
    let a = second_step(&srv, json!({"challenge": ch, "recoveryCode": typed})).await;
    assert_status(&a, 200);
    let token = str_field(&a.body["data"], "token").to_owned();
    assert_eq!(audit_count(&srv, "operator.2fa.recovery_code.use"), 1);
    let a = get(&srv, STATUS, Cred::Bearer(&token)).await;
    assert_eq!(a.body["data"]["recoveryCodesLeft"], 9);

    let a = second_step(&srv, json!({"challenge": ch, "recoveryCode": codes[0]})).await;
    assert_kv_error_naming(&a, 401, "UNAUTHORIZED", "already used");
    let a = second_step(
        &srv,
        json!({"challenge": ch, "recoveryCode": "AAAA-BBBB-CCCC-DDDD"}),
    )
    .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
    let a = second_step(&srv, json!({"challenge": ch, "recoveryCode": codes[1]})).await;
    assert_status(&a, 200);
}

#[tokio::test]
async fn the_second_step_refuses_bad_input_and_changes_nothing() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let (secret, _) = enrol(&srv, &admin.token).await;
    let ch = challenge(&srv, ADMIN_EMAIL).await;
    let good = code(&secret, 1);
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "no challenge",
            json!({"code": good}),
            400,
            "VALIDATION_ERROR",
            "challenge",
        ),
        (
            "neither code",
            json!({"challenge": ch}),
            400,
            "VALIDATION_ERROR",
            "either code",
        ),
        (
            "both",
            json!({"challenge": ch, "code": good, "recoveryCode": "AAAA-BBBB-CCCC-DDDD"}),
            400,
            "VALIDATION_ERROR",
            "either code",
        ),
        (
            "code of letters",
            json!({"challenge": ch, "code": "12ab56"}),
            400,
            "VALIDATION_ERROR",
            "6 digits",
        ),
        (
            "code as number",
            json!({"challenge": ch, "code": 123456}),
            400,
            "VALIDATION_ERROR",
            "code",
        ),
        (
            "short recovery code",
            json!({"challenge": ch, "recoveryCode": "ABCD"}),
            400,
            "VALIDATION_ERROR",
            "recoveryCode",
        ),
        (
            "oversize challenge",
            json!({"challenge": "x".repeat(5000), "code": good}),
            400,
            "VALIDATION_ERROR",
            "challenge",
        ),
        (
            "forged challenge",
            json!({"challenge": "a.b.c", "code": good}),
            401,
            "UNAUTHORIZED",
            "challenge",
        ),
        (
            "a session token is no challenge",
            json!({"challenge": admin.token, "code": good}),
            401,
            "UNAUTHORIZED",
            "challenge",
        ),
    ];
    for (name, body, status, code, needle) in cases {
        let a = second_step(&srv, body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, code, needle);
    }
    let a = srv
        .call_raw(
            Method::POST,
            SECOND_STEP,
            None,
            "application/json",
            b"{\"challenge\":".to_vec(),
        )
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    // None of that spent the code.
    let a = second_step(&srv, json!({"challenge": ch, "code": good})).await;
    assert_status(&a, 200);
}

/// Each request from an address of its own (the server trusts the test client as a proxy), so
/// that only the account's budget can refuse.
#[tokio::test]
async fn wrong_codes_spend_the_accounts_sign_in_budget() {
    let srv = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.rate_limits.login_per_minute = 3;
        c.abuse_detection = false;
    })
    .await;
    let admin = setup_admin(&srv).await;
    let (secret, _) = enrol(&srv, &admin.token).await;
    let from = |i: u8, path: &'static str, body: Value| {
        let srv = &srv;
        async move {
            let ip = format!("192.0.2.{i}");
            send(
                srv,
                Method::POST,
                path,
                Cred::None,
                Some(body),
                &[("X-Forwarded-For", &ip)],
            )
            .await
        }
    };
    let a = from(
        1,
        LOGIN,
        json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_status(&a, 202);
    let ch = str_field(&a.body["data"], "challenge").to_owned();
    for i in 0..3 {
        let body = json!({"challenge": ch, "code": code(&secret, 300)});
        let a = from(10 + i, SECOND_STEP, body).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let a = from(
        20,
        SECOND_STEP,
        json!({"challenge": ch, "code": code(&secret, 1)}),
    )
    .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
    assert!(a.header("retry-after").is_some());
    // The password step of the account is locked as well: it is one budget.
    let a = from(
        21,
        LOGIN,
        json!({"email": ADMIN_EMAIL, "password": "wrong password"}),
    )
    .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn turning_it_off_and_new_recovery_codes_need_a_code_or_the_password() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let me = Cred::Bearer(&admin.token);
    let a = post(&srv, DISABLE, me, json!({"password": PASSWORD})).await;
    assert_kv_error_naming(&a, 409, "CONFLICT", "not on");
    let (secret, old_codes) = enrol(&srv, &admin.token).await;

    for (name, body, status, code, needle) in [
        ("neither", json!({}), 400, "VALIDATION_ERROR", "either code"),
        (
            "both",
            json!({"code": "123456", "password": PASSWORD}),
            400,
            "VALIDATION_ERROR",
            "either code",
        ),
        (
            "malformed code",
            json!({"code": "12"}),
            400,
            "VALIDATION_ERROR",
            "6 digits",
        ),
        (
            "wrong password",
            json!({"password": "not the password"}),
            403,
            "FORBIDDEN",
            "wrong",
        ),
        (
            "wrong code",
            json!({"code": code(&secret, 300)}),
            403,
            "FORBIDDEN",
            "wrong",
        ),
    ] {
        for path in [DISABLE, REGENERATE] {
            let a = post(&srv, path, me, body.clone()).await;
            assert_eq!(a.status.as_u16(), status, "{name} {path}: {}", a.body);
            assert_kv_error_naming(&a, status, code, needle);
        }
    }
    assert_eq!(get(&srv, STATUS, me).await.body["data"]["enabled"], true);

    // New recovery codes (with a code): the old ones stop working.
    let a = post(&srv, REGENERATE, me, json!({"code": code(&secret, 1)})).await;
    assert_status(&a, 200);
    let new_codes = a.body["data"]["recoveryCodes"].as_array().unwrap().clone();
    assert_eq!(new_codes.len(), 10);
    assert_eq!(
        audit_count(&srv, "operator.2fa.recovery_codes.regenerate"),
        1
    );
    let ch = challenge(&srv, ADMIN_EMAIL).await;
    let a = second_step(&srv, json!({"challenge": ch, "recoveryCode": old_codes[0]})).await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
    let a = second_step(&srv, json!({"challenge": ch, "recoveryCode": new_codes[0]})).await;
    assert_status(&a, 200);

    // Off, with the password: the password alone signs in again.
    let a = post(&srv, DISABLE, me, json!({"password": PASSWORD})).await;
    assert_status(&a, 200);
    assert_eq!(audit_count(&srv, "operator.2fa.disable"), 1);
    login(&srv, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM operator_recovery_codes", []),
        0,
        "the recovery codes went with it"
    );
    // And on again, then off with a code.
    let (secret, _) = enrol(&srv, &admin.token).await;
    forget_last_step(&srv);
    let a = post(&srv, DISABLE, me, json!({"code": code(&secret, 0)})).await;
    assert_status(&a, 200);
}

#[tokio::test]
async fn api_keys_have_no_second_factor() {
    let srv = TestServer::start().await;
    setup_admin(&srv).await;
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    for (method, path, body) in [
        (Method::GET, STATUS, None),
        (Method::POST, ENROL, Some(json!({}))),
        (Method::POST, CONFIRM, Some(json!({"code": "123456"}))),
        (Method::POST, DISABLE, Some(json!({"password": PASSWORD}))),
        (Method::PUT, POLICY, Some(json!({"required": true}))),
        (Method::GET, POLICY, None),
    ] {
        let a = send(&srv, method, path, Cred::ApiKey(&key), body, &[]).await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    let a = get(&srv, "/api/auth/2fa", Cred::None).await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_workspace_that_requires_it_restricts_operators_without_it_to_enrolling() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let boss = Cred::Bearer(&admin.token);
    let register = |email: &'static str| {
        let srv = &srv;
        async move {
            let body = json!({"email": email, "password": PASSWORD, "role": "USER"});
            let a = post(srv, REGISTER, boss, body).await;
            assert_status(&a, 201);
            str_field(&a.body["data"]["user"], "tenantId").to_owned()
        }
    };
    let clerk_tenant = register("clerk@example.com").await;
    register("other@example.com").await;
    let clerk = login(&srv, "clerk@example.com", PASSWORD).await;
    let other = login(&srv, "other@example.com", PASSWORD).await;

    // Only ADMINs set the policy; a USER reads its own workspace's, no one else's.
    let a = send(
        &srv,
        Method::PUT,
        POLICY,
        Cred::Bearer(&clerk),
        Some(json!({"required": true})),
        &[],
    )
    .await;
    assert_kv_error_naming(&a, 403, "FORBIDDEN", "ADMIN");
    let a = get(&srv, POLICY, Cred::Bearer(&clerk)).await;
    assert_status(&a, 200);
    assert_eq!(
        a.body["data"],
        json!({"tenantId": clerk_tenant, "required": false})
    );
    let a = get(
        &srv,
        &format!("{POLICY}?tenantId={clerk_tenant}"),
        Cred::Bearer(&other),
    )
    .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    for (name, body, status, code) in [
        (
            "unknown tenant",
            json!({"required": true, "tenantId": "ten_nope"}),
            404,
            "NOT_FOUND",
        ),
        (
            "required as text",
            json!({"required": "yes"}),
            400,
            "VALIDATION_ERROR",
        ),
        ("required missing", json!({}), 400, "VALIDATION_ERROR"),
    ] {
        let a = send(&srv, Method::PUT, POLICY, boss, Some(body), &[]).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error(&a, status, code);
    }

    let a = send(
        &srv,
        Method::PUT,
        POLICY,
        boss,
        Some(json!({"required": true, "tenantId": clerk_tenant})),
        &[],
    )
    .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["required"], true);
    assert_eq!(audit_count(&srv, "workspace.2fa.policy.update"), 1);

    // The clerk's session (old or new) may only enrol now.
    let clerk = login(&srv, "clerk@example.com", PASSWORD).await;
    let c = Cred::Bearer(&clerk);
    for path in ["/api/projects", "/api/keys", POLICY, "/api/stats"] {
        let a = get(&srv, path, c).await;
        assert_kv_error_naming(&a, 403, "TWO_FACTOR_ENROLMENT_REQUIRED", "two-factor");
    }
    let a = get(&srv, "/api/auth/me", c).await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["twoFactorEnrolmentRequired"], true);
    let a = get(&srv, STATUS, c).await;
    assert_eq!(a.body["data"]["requiredByWorkspace"], true);
    // The other workspace is not concerned.
    assert_status(&get(&srv, "/api/projects", Cred::Bearer(&other)).await, 200);
    let a = get(&srv, "/api/auth/me", Cred::Bearer(&other)).await;
    assert_eq!(a.body["data"]["twoFactorEnrolmentRequired"], false);

    enrol(&srv, &clerk).await;
    assert_status(&get(&srv, "/api/projects", c).await, 200);
    let a = get(&srv, "/api/auth/me", c).await;
    assert_eq!(a.body["data"]["twoFactorEnrolmentRequired"], false);
    challenge(&srv, "clerk@example.com").await;
    assert_status(
        &send(&srv, Method::POST, "/api/auth/logout", c, None, &[]).await,
        200,
    );
}
