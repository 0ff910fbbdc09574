//! The portal's e-mail: "send me my keys", password reset by link, the account's address; and
//! the expiry reminder sweep. Real messages through aiosmtpd (see `mail`).

use std::time::Duration;

use crate::helpers::*;
use crate::mail::{MailFixture, SmtpServer};
use reqwest::Method;
use serde_json::{Value, json};

async fn portal(f: &MailFixture, path: &str, body: Value) -> Answer {
    send(&f.srv, Method::POST, path, Cred::None, Some(body), &[]).await
}

#[tokio::test]
async fn send_me_my_keys_answers_alike_sends_only_that_projects_keys_and_is_limited() {
    let f = MailFixture::start_with(|c| c.mail_requests_per_hour = 3).await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let ace = f.srv.create_product("default", "ace");
    let other = f.srv.create_product("default", "other");
    let mut ours = Vec::new();
    for _ in 0..2 {
        let l = f
            .srv
            .create_license(&f.key, &ace.id, json!({"customerEmail": "ana@example.com"}))
            .await;
        ours.push(str_field(&l, "key").to_owned());
    }
    let elsewhere = f
        .srv
        .create_license(
            &f.key,
            &other.id,
            json!({"customerEmail": "ana@example.com"}),
        )
        .await;
    let known = portal(
        &f,
        "/api/portal/send-keys",
        json!({"projectId": ace.id, "email": "ANA@example.com"}),
    )
    .await;
    assert_status(&known, 202);
    let unknown = portal(
        &f,
        "/api/portal/send-keys",
        json!({"projectId": ace.id, "email": "nobody@example.com"}),
    )
    .await;
    assert_status(&unknown, 202);
    assert_eq!(known.body, unknown.body, "the same answer either way");
    let m = &smtp.wait_for(1).await[0];
    assert_eq!(m["to"], "ana@example.com");
    assert_eq!(m["subject"], "Your license keys for Product ace");
    let text = str_field(m, "text");
    for key in &ours {
        assert!(text.contains(key.as_str()), "{text}");
        assert!(str_field(m, "html").contains(key.as_str()));
    }
    assert!(!text.contains(str_field(&elsewhere, "key")), "{text}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(smtp.messages().len(), 1, "nothing for the unknown address");

    // Bad input.
    let cases = [
        (json!({"projectId": ace.id, "email": "not-an-address"}), 400),
        (json!({"projectId": ace.id}), 400),
        (json!({"email": "ana@example.com"}), 400),
        (json!({"projectId": ace.id, "email": 42}), 400),
        (
            json!({"projectId": "prod_nope", "email": "x@example.com"}),
            404,
        ),
    ];
    for (body, status) in cases {
        let a = portal(&f, "/api/portal/send-keys", body.clone()).await;
        assert_eq!(a.status.as_u16(), status, "{body}: {}", a.body);
    }
    // The limit per address: the third request of the hour is the last one.
    let again = |_: ()| {
        portal(
            &f,
            "/api/portal/send-keys",
            json!({"projectId": ace.id, "email": "ana@example.com"}),
        )
    };
    assert_status(&again(()).await, 202);
    assert_status(&again(()).await, 202);
    let limited = again(()).await;
    assert_kv_error(&limited, 429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    // A disabled portal sends nothing.
    let a = send(
        &f.srv,
        Method::PATCH,
        &format!("/api/projects/{}", other.id),
        Cred::Bearer(&f.admin.token),
        Some(json!({"portalSettings": {"enabled": false}})),
        &[],
    )
    .await;
    assert_status(&a, 200);
    let closed = portal(
        &f,
        "/api/portal/send-keys",
        json!({"projectId": other.id, "email": "bo@example.com"}),
    )
    .await;
    assert_kv_error(&closed, 404, "NOT_FOUND");
}

async fn register(f: &MailFixture, project: &str, username: &str, email: Option<&str>) -> Answer {
    let a = portal(
        f,
        "/api/portal/register",
        json!({"projectId": project, "username": username, "password": "first password",
               "email": email}),
    )
    .await;
    assert_status(&a, 201);
    a
}

async fn portal_login(f: &MailFixture, project: &str, username: &str, password: &str) -> u16 {
    portal(
        f,
        "/api/portal/login",
        json!({"projectId": project, "username": username, "password": password}),
    )
    .await
    .status
    .as_u16()
}

fn token_of(text: &str) -> String {
    let start = text.find("reset=").expect("a reset link") + "reset=".len();
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '&' || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_reset_link_works_once_and_only_before_it_expires() {
    let f = MailFixture::start_with(|c| c.password_reset_valid = Duration::from_secs(2)).await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let ace = f.srv.create_product("default", "ace");
    let reg = register(&f, &ace.id, "ana", Some("Ana@Example.com")).await;
    assert_eq!(reg.body["data"]["user"]["email"], "ana@example.com");
    let session = str_of(&reg.body["data"]["token"]);

    let known = portal(
        &f,
        "/api/portal/password-reset",
        json!({"projectId": ace.id, "email": "ana@example.com"}),
    )
    .await;
    let unknown = portal(
        &f,
        "/api/portal/password-reset",
        json!({"projectId": ace.id, "email": "bo@example.com"}),
    )
    .await;
    assert_status(&known, 202);
    assert_eq!(known.body, unknown.body, "the same answer either way");
    let m = &smtp.wait_for(1).await[0];
    assert_eq!(m["subject"], "Reset your Product ace portal password");
    let text = str_field(m, "text");
    assert!(text.contains("Hello ana,"), "{text}");
    assert!(
        text.contains("https://licenses.example.com/p/ace?reset="),
        "{text}"
    );
    let token = token_of(text);

    // Tampered and malformed tokens are refused and change nothing.
    for bad in [
        format!("{token}0"),
        "x".into(),
        "a.b.c".into(),
        format!("{}.1.00", "pu_x"),
    ] {
        let a = portal(
            &f,
            "/api/portal/password-reset/confirm",
            json!({"token": bad, "password": "second password"}),
        )
        .await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let short = portal(
        &f,
        "/api/portal/password-reset/confirm",
        json!({"token": token, "password": "short"}),
    )
    .await;
    assert_kv_error(&short, 400, "VALIDATION_ERROR");
    let missing = portal(
        &f,
        "/api/portal/password-reset/confirm",
        json!({"token": token}),
    )
    .await;
    assert_kv_error(&missing, 400, "VALIDATION_ERROR");
    assert_eq!(
        portal_login(&f, &ace.id, "ana", "first password").await,
        200
    );

    let ok = portal(
        &f,
        "/api/portal/password-reset/confirm",
        json!({"token": token, "password": "second password"}),
    )
    .await;
    assert_status(&ok, 200);
    assert_eq!(
        portal_login(&f, &ace.id, "ana", "second password").await,
        200
    );
    assert_eq!(
        portal_login(&f, &ace.id, "ana", "first password").await,
        401
    );
    // The sessions of the old password ended.
    let me = send(
        &f.srv,
        Method::GET,
        "/api/portal/me",
        Cred::Bearer(&session),
        None,
        &[],
    )
    .await;
    assert_kv_error(&me, 401, "UNAUTHORIZED");
    // Single use.
    let reused = portal(
        &f,
        "/api/portal/password-reset/confirm",
        json!({"token": token, "password": "third password"}),
    )
    .await;
    assert_kv_error(&reused, 401, "UNAUTHORIZED");

    // A link past its time is refused, and says so.
    portal(
        &f,
        "/api/portal/password-reset",
        json!({"projectId": ace.id, "email": "ana@example.com"}),
    )
    .await;
    let late = token_of(str_field(&smtp.wait_for(2).await[1], "text"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = portal(
        &f,
        "/api/portal/password-reset/confirm",
        json!({"token": late, "password": "third password"}),
    )
    .await;
    assert_kv_error_naming(&expired, 401, "UNAUTHORIZED", "expired");
    assert_eq!(
        portal_login(&f, &ace.id, "ana", "second password").await,
        200
    );
}

#[tokio::test]
async fn a_portal_user_sets_and_removes_its_email() {
    let f = MailFixture::start().await;
    let ace = f.srv.create_product("default", "ace");
    let reg = register(&f, &ace.id, "bob", None).await;
    assert!(reg.body["data"]["user"]["email"].is_null());
    let token = str_of(&reg.body["data"]["token"]);
    let put = |body: Value| {
        let token = token.clone();
        let srv = &f.srv;
        async move {
            send(
                srv,
                Method::PUT,
                "/api/portal/email",
                Cred::Bearer(&token),
                Some(body),
                &[],
            )
            .await
        }
    };
    let a = put(json!({"email": "Bo@Example.com"})).await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["email"], "bo@example.com");
    let bad = put(json!({"email": "nope"})).await;
    assert_kv_error(&bad, 400, "VALIDATION_ERROR");
    let cleared = put(json!({"email": null})).await;
    assert!(cleared.body["data"]["email"].is_null(), "{}", cleared.body);
    let anonymous = send(
        &f.srv,
        Method::PUT,
        "/api/portal/email",
        Cred::None,
        Some(json!({"email": "x@example.com"})),
        &[],
    )
    .await;
    assert_kv_error(&anonymous, 401, "UNAUTHORIZED");
    let bad_register = portal(
        &f,
        "/api/portal/register",
        json!({"projectId": ace.id, "username": "cyd", "password": "first password",
               "email": "not an address"}),
    )
    .await;
    assert_kv_error(&bad_register, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_subscription_gets_one_reminder_per_expiry_date() {
    let f = MailFixture::start_with(|c| {
        c.maintenance_interval = Duration::from_millis(300);
        c.expiry_reminder_days = 7;
    })
    .await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let ace = f.srv.create_product("default", "ace");
    let in_days = |d: i64| {
        rfc3339(
            time::OffsetDateTime::now_utc() + time::Duration::days(d) + time::Duration::hours(1),
        )
    };
    let sub = f
        .srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"type": "SUBSCRIPTION", "validUntil": in_days(3),
                   "customerEmail": "sub@example.com"}),
        )
        .await;
    // Not due: perpetual, far away, or without an address.
    f.srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"customerEmail": "perp@example.com"}),
        )
        .await;
    f.srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"type": "SUBSCRIPTION", "validUntil": in_days(30),
                   "customerEmail": "far@example.com"}),
        )
        .await;
    let m = &smtp.wait_for(1).await[0];
    assert_eq!(m["to"], "sub@example.com");
    assert_eq!(m["subject"], "Your Product ace license expires in 4 day(s)");
    assert!(str_field(m, "text").contains(str_field(&sub, "key")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1, "one reminder per expiry date");
    // A renewal moves the date: the next reminder is due again.
    let renewed = f
        .srv
        .post(
            "/api/v1/license/renew",
            &f.key,
            json!({"licenseKey": str_field(&sub, "key"), "validUntil": in_days(5)}),
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let both = smtp.wait_for(2).await;
    assert_eq!(
        both[1]["subject"],
        "Your Product ace license expires in 6 day(s)"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(smtp.messages().len(), 2);
}
