//! Guessing one account's password from many addresses stays bounded, and the account's owner
//! still signs in: only failures spend an account's budget, and a client that signed in to the
//! account before (its device cookie) has a budget of its own. Admin and portal alike.

use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Failed sign-ins allowed per account (and per address, and per device cookie) per minute.
const BUDGET: u32 = 3;

/// A server that believes X-Forwarded-For from the test client (so each request may come
/// from its own address) with a login limit of [`BUDGET`]. Abuse detection is off: its
/// address blocks are another mechanism, tested elsewhere.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.rate_limits.login_per_minute = BUDGET;
        c.abuse_detection = false;
    })
    .await
}

/// One of the two sign-in forms under test.
#[derive(Clone, Copy, Debug)]
enum Face {
    Admin,
    Portal,
}

struct Account {
    face: Face,
    /// Email (admin) or username (portal).
    name: String,
    password: String,
    /// The portal's project id.
    project: Option<String>,
}

impl Account {
    fn path(&self) -> &'static str {
        match self.face {
            Face::Admin => LOGIN,
            Face::Portal => "/api/portal/login",
        }
    }

    fn body(&self, password: &str) -> Value {
        match self.face {
            Face::Admin => json!({"email": self.name, "password": password}),
            Face::Portal => json!({"username": self.name, "password": password,
                "projectId": self.project}),
        }
    }
}

async fn account(srv: &TestServer, face: Face) -> Account {
    match face {
        Face::Admin => {
            setup_admin(srv).await;
            Account {
                face,
                name: ADMIN_EMAIL.into(),
                password: PASSWORD.into(),
                project: None,
            }
        }
        Face::Portal => {
            let product = srv.create_product("default", "game");
            let _ = srv.create_api_key("default", Scope::FullAdmin, None);
            let body = json!({"username": "player_one", "password": PASSWORD,
                "projectId": product.id});
            let a = send_login(srv, "/api/portal/register", body, "192.0.2.200", None).await;
            assert_status(&a, 201);
            Account {
                face,
                name: "player_one".into(),
                password: PASSWORD.into(),
                project: Some(product.id),
            }
        }
    }
}

async fn send_login(
    srv: &TestServer,
    path: &str,
    body: Value,
    ip: &str,
    cookie: Option<&str>,
) -> Answer {
    let mut headers = vec![("X-Forwarded-For", ip)];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    send(srv, Method::POST, path, Cred::None, Some(body), &headers).await
}

async fn sign_in(
    srv: &TestServer,
    acc: &Account,
    password: &str,
    ip: &str,
    cookie: Option<&str>,
) -> Answer {
    send_login(srv, acc.path(), acc.body(password), ip, cookie).await
}

/// The device cookie an answer sets (`name=value`), with its attributes checked.
#[track_caller]
fn device_cookie(a: &Answer, path: &str) -> String {
    let set = a
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kw_device_"))
        .unwrap_or_else(|| panic!("a device cookie is set: {:?}", a.headers))
        .to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        &format!("Path={path}"),
        "Max-Age=",
    ] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    set.split(';').next().unwrap().to_owned()
}

#[track_caller]
fn assert_locked(a: &Answer, what: &str) {
    assert_eq!(a.status.as_u16(), 429, "{what}: {}", a.body);
    assert_kv_error(a, 429, "RATE_LIMITED");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{what}: Retry-After"));
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
}

async fn the_owner_keeps_signing_in_while_attackers_exhaust_the_account(face: Face) {
    let srv = server().await;
    let acc = account(&srv, face).await;
    let path = acc.path();

    // The owner signs in more often than the budget allows failures, each time from a new
    // address (the per-address limit counts every attempt): successes spend nothing.
    let mut cookie = String::new();
    for i in 0..(BUDGET + 3) {
        let a = sign_in(
            &srv,
            &acc,
            &acc.password,
            &format!("192.0.2.{}", 10 + i),
            None,
        )
        .await;
        assert_status(&a, 200);
        cookie = device_cookie(&a, path);
    }

    // Attackers from several addresses, one wrong password each, spend the whole budget…
    for i in 0..BUDGET {
        let a = sign_in(
            &srv,
            &acc,
            "wrong password",
            &format!("198.51.100.{}", 1 + i),
            None,
        )
        .await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    // …and from then on nobody without the owner's device cookie gets in, not even with the
    // right password, from any address; forged or misplaced device cookies do not help.
    let (name, value) = cookie.split_once('=').unwrap();
    let (nonce_issued, _) = value.rsplit_once('.').unwrap();
    let strangers: [(&str, Option<String>, &str); 5] = [
        ("another guess", None, "wrong password"),
        ("the right password without a device cookie", None, PASSWORD),
        (
            "a made-up device cookie",
            Some("kw_device_0011223344556677=x.1.y".into()),
            PASSWORD,
        ),
        (
            "a forged signature",
            Some(format!("{name}={nonce_issued}.{}", "0".repeat(64))),
            PASSWORD,
        ),
        (
            "the value under another name",
            Some(format!("kw_device_ffffffffffffffff={value}")),
            PASSWORD,
        ),
    ];
    for (i, (what, jar, password)) in strangers.iter().enumerate() {
        let ip = format!("203.0.113.{}", 1 + i);
        let a = sign_in(&srv, &acc, password, &ip, jar.as_deref()).await;
        assert_locked(&a, what);
    }

    // The owner's browser, holding the device cookie of an earlier sign-in, gets in, and
    // again (from any address).
    for ip in ["192.0.2.77", "192.0.2.78"] {
        let a = sign_in(&srv, &acc, &acc.password, ip, Some(&cookie)).await;
        assert_status(&a, 200);
        assert!(a.body["data"]["token"].is_string());
    }

    // A device cookie that sees as many failures is locked in turn.
    for i in 0..BUDGET {
        let a = sign_in(
            &srv,
            &acc,
            "wrong password",
            &format!("192.0.2.{}", 100 + i),
            Some(&cookie),
        )
        .await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let a = sign_in(&srv, &acc, &acc.password, "192.0.2.120", Some(&cookie)).await;
    assert_locked(&a, "a device cookie after its own failures");
}

#[tokio::test]
async fn admin_owner_signs_in_with_a_device_cookie_while_the_account_is_locked() {
    the_owner_keeps_signing_in_while_attackers_exhaust_the_account(Face::Admin).await;
}

#[tokio::test]
async fn portal_owner_signs_in_with_a_device_cookie_while_the_account_is_locked() {
    the_owner_keeps_signing_in_while_attackers_exhaust_the_account(Face::Portal).await;
}

/// The lock is per account: another account (and an unknown one) is not affected, and an
/// unknown account is limited exactly like a real one (no way to tell them apart).
#[tokio::test]
async fn the_lock_is_per_account_and_unknown_accounts_lock_alike() {
    let srv = server().await;
    let acc = account(&srv, Face::Admin).await;
    let admin = login(&srv, ADMIN_EMAIL, PASSWORD).await;
    let a = send(
        &srv,
        Method::POST,
        REGISTER,
        Cred::Bearer(&admin),
        Some(json!({"email": "other@example.com", "password": PASSWORD})),
        &[("X-Forwarded-For", "192.0.2.1")],
    )
    .await;
    assert_status(&a, 201);
    for email in [ADMIN_EMAIL, "nobody@example.com"] {
        for i in 0..BUDGET {
            let body = json!({"email": email, "password": "wrong password"});
            let a = send_login(&srv, LOGIN, body, &format!("198.51.100.{}", 10 + i), None).await;
            assert_kv_error(&a, 401, "UNAUTHORIZED");
        }
        let body = json!({"email": email, "password": "wrong password"});
        assert_locked(
            &send_login(&srv, LOGIN, body, "198.51.100.99", None).await,
            email,
        );
    }
    let other = json!({"email": "other@example.com", "password": PASSWORD});
    let a = send_login(&srv, LOGIN, other, "198.51.100.50", None).await;
    assert_status(&a, 200);
    // A device cookie of another account does not open this one.
    let others = device_cookie(&a, LOGIN);
    let a = sign_in(&srv, &acc, PASSWORD, "192.0.2.2", Some(&others)).await;
    assert_locked(
        &a,
        "the locked account, with another account's device cookie",
    );
}

/// The per-address limit stays: one address gets [`BUDGET`] attempts a minute, whatever
/// their outcome and whatever cookie it holds.
#[tokio::test]
async fn the_per_address_limit_still_counts_every_attempt() {
    let srv = server().await;
    let acc = account(&srv, Face::Admin).await;
    let first = sign_in(&srv, &acc, PASSWORD, "192.0.2.30", None).await;
    let cookie = device_cookie(&first, LOGIN);
    for _ in 1..BUDGET {
        assert_status(
            &sign_in(&srv, &acc, PASSWORD, "192.0.2.30", Some(&cookie)).await,
            200,
        );
    }
    assert_locked(
        &sign_in(&srv, &acc, PASSWORD, "192.0.2.30", Some(&cookie)).await,
        "a fourth attempt from one address",
    );
}
