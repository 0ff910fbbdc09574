//! `keyward admin disable-2fa`: an operator who lost the authenticator device (and its
//! recovery codes) signs in with the password alone again, recovered from the server's shell.

use serde_json::{Value, json};

use super::{installation, keyward, keyward_stdin, serve, stdout};

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn call(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request sent");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn admin_disable_2fa_lets_an_operator_who_lost_the_device_sign_in() {
    let dir = installation();
    let (mut child, base) = serve(dir.path());
    stdout(&keyward_stdin(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "owner@example.com",
            "--role",
            "ADMIN",
            "--password-stdin",
        ],
        "correct horse battery\n",
    ));
    let login = json!({"email": "owner@example.com", "password": "correct horse battery"});
    let (status, body) = call(&base, "/api/auth/login", None, login.clone()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (status, body) = call(&base, "/api/auth/2fa/enroll", Some(&token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    let code = keyward::domain::two_factor::code_for_base32(&secret, now_secs()).unwrap();
    let (status, body) = call(
        &base,
        "/api/auth/2fa/confirm",
        Some(&token),
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&base, "/api/auth/login", None, login.clone()).await;
    assert_eq!(status, 202, "the password alone no longer signs in: {body}");
    assert!(body["data"].get("token").is_none(), "{body}");

    // The device is lost: the shell turns two-factor login off.
    let out = keyward(dir.path(), &["admin", "disable-2fa", "owner@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("two-factor login of owner@example.com is off"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = call(&base, "/api/auth/login", None, login).await;
    assert_eq!(status, 200, "the password signs in again: {body}");

    // Twice, or for nobody: a precise refusal and a failing exit status.
    for (who, needle) in [
        ("owner@example.com", "has no two-factor login"),
        ("nobody@example.com", "no operator \"nobody@example.com\""),
    ] {
        let out = keyward(dir.path(), &["admin", "disable-2fa", who]);
        assert!(!out.status.success(), "{who}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{who}: {err}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
