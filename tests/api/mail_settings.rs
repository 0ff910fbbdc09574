//! E-mail settings and templates: the workspace's SMTP settings (checked, per workspace, the
//! password never shown) and a project's message templates, delivered through aiosmtpd.

use crate::helpers::*;
use crate::mail::{MailFixture, SmtpServer};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

// ---- settings -----------------------------------------------------------------------------

#[tokio::test]
async fn smtp_settings_are_checked_kept_per_workspace_and_never_show_the_password() {
    let f = MailFixture::start().await;
    let none = f.admin(Method::GET, "/api/mail/settings", None).await;
    assert_status(&none, 200);
    assert!(none.body["data"].is_null());
    let test = f
        .admin(
            Method::POST,
            "/api/mail/test",
            Some(json!({"to": "a@b.example"})),
        )
        .await;
    assert_kv_error(&test, 409, "CONFLICT");
    let good = json!({"host": "smtp.example.com", "port": 587, "security": "starttls",
                      "username": "u", "password": "p4ss", "fromAddress": "a@acme.example"});
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing host", without("host"), "host"),
        ("missing fromAddress", without("fromAddress"), "fromAddress"),
        ("missing security", without("security"), "security"),
        ("port 0", with("port", json!(0)), "port"),
        ("port too big", with("port", json!(70000)), "port"),
        ("port a string", with("port", json!("587")), "port"),
        (
            "unknown security",
            with("security", json!("ssl")),
            "security",
        ),
        (
            "host with a space",
            with("host", json!("smtp example.com")),
            "host",
        ),
        (
            "host too long",
            with("host", json!("a".repeat(300))),
            "host",
        ),
        (
            "bad from",
            with("fromAddress", json!("not-an-address")),
            "fromAddress",
        ),
        (
            "two froms",
            with("fromAddress", json!("a@x.com, b@y.com")),
            "fromAddress",
        ),
        (
            "name with a newline",
            with("fromName", json!("A\nBcc: x@y.z")),
            "fromName",
        ),
        (
            "bad public url",
            with("publicUrl", json!("ftp://x")),
            "publicUrl",
        ),
        (
            "plaintext to a public host",
            with("security", json!("none")),
            "none",
        ),
    ];
    for (name, body, needle) in cases {
        let a = f.admin(Method::PUT, "/api/mail/settings", Some(body)).await;
        assert_eq!(a.status, 400, "{name}: {}", a.body);
        assert_eq!(a.body["code"], "VALIDATION_ERROR", "{name}");
        assert!(
            a.body["error"].as_str().unwrap().contains(needle),
            "{name}: {}",
            a.body
        );
    }
    let malformed = send(
        &f.srv,
        Method::PUT,
        "/api/mail/settings",
        Cred::Bearer(&f.admin.token),
        None,
        &[],
    )
    .await;
    assert_eq!(malformed.status.as_u16() / 100, 4, "{}", malformed.body);
    assert_eq!(
        f.srv.count("SELECT COUNT(*) FROM smtp_settings", []),
        0,
        "nothing saved"
    );

    let a = f
        .admin(Method::PUT, "/api/mail/settings", Some(good.clone()))
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["passwordSet"], true);
    assert!(!a.raw.windows(4).any(|w| w == b"p4ss"), "{}", a.body);
    // Without a password field the stored one stays; null removes it.
    let kept = f
        .admin(Method::PUT, "/api/mail/settings", Some(without("password")))
        .await;
    assert_eq!(kept.body["data"]["passwordSet"], true, "{}", kept.body);
    let cleared = f
        .admin(
            Method::PUT,
            "/api/mail/settings",
            Some(with("password", Value::Null)),
        )
        .await;
    assert_eq!(
        cleared.body["data"]["passwordSet"], false,
        "{}",
        cleared.body
    );
    let read = f.admin(Method::GET, "/api/mail/settings", None).await;
    assert_eq!(read.body["data"]["host"], "smtp.example.com");
    assert_eq!(read.body["data"]["security"], "starttls");

    // Another workspace has its own (none yet); a product-restricted key may not touch them;
    // a READ_ONLY key is no admin credential.
    f.srv.create_tenant("other");
    let theirs = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let a = send(
        &f.srv,
        Method::GET,
        "/api/mail/settings",
        Cred::ApiKey(&theirs),
        None,
        &[],
    )
    .await;
    assert!(a.body["data"].is_null(), "{}", a.body);
    let product = f.srv.create_product("default", "p");
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&product.id));
    for (method, path) in [
        (Method::GET, "/api/mail/settings"),
        (Method::GET, "/api/mail/outbox"),
        (Method::DELETE, "/api/mail/settings"),
    ] {
        let a = send(&f.srv, method, path, Cred::ApiKey(&restricted), None, &[]).await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    let read_only = f.srv.create_api_key("default", Scope::ReadOnly, None);
    let a = send(
        &f.srv,
        Method::GET,
        "/api/mail/settings",
        Cred::ApiKey(&read_only),
        None,
        &[],
    )
    .await;
    assert!(matches!(a.status.as_u16(), 401 | 403), "{}", a.body);
    let anonymous = send(
        &f.srv,
        Method::GET,
        "/api/mail/settings",
        Cred::None,
        None,
        &[],
    )
    .await;
    assert_kv_error(&anonymous, 401, "UNAUTHORIZED");
    // Deleting: gone, then 404.
    let a = f.admin(Method::DELETE, "/api/mail/settings", None).await;
    assert_status(&a, 200);
    let again = f.admin(Method::DELETE, "/api/mail/settings", None).await;
    assert_kv_error(&again, 404, "NOT_FOUND");
}

#[tokio::test]
async fn plaintext_smtp_needs_the_servers_opt_in() {
    let srv = TestServer::start().await;
    let admin = setup_admin(&srv).await;
    let a = send(
        &srv,
        Method::PUT,
        "/api/mail/settings",
        Cred::Bearer(&admin.token),
        Some(json!({"host": "127.0.0.1", "port": 25, "security": "none",
                    "fromAddress": "a@acme.example"})),
        &[],
    )
    .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "--smtp-allow-plaintext");
}

// ---- templates ----------------------------------------------------------------------------

#[tokio::test]
async fn a_project_overrides_a_template_previews_it_and_its_customers_get_it() {
    let f = MailFixture::start().await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let product = f.srv.create_product("default", "ace");
    let base = format!("/api/projects/{}/mail-templates", product.id);
    let list = f.admin(Method::GET, &base, None).await;
    assert_status(&list, 200);
    let kinds: Vec<&str> = list.body["data"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "LICENSE_DELIVERED",
            "SEND_KEYS",
            "PASSWORD_RESET",
            "EXPIRY_REMINDER"
        ]
    );
    assert_eq!(
        list.body["data"]["templates"][0]["subjectOverridden"],
        false
    );

    let body = json!({"subject": "{{ product }} key: {{key}}",
                      "html": "<h1>Thanks {{ customer_name }}</h1><p>{{ key }}</p>"});
    let preview = f
        .admin(
            Method::POST,
            &format!("{base}/LICENSE_DELIVERED/preview"),
            Some(body.clone()),
        )
        .await;
    assert_status(&preview, 200);
    assert_eq!(
        preview.body["data"]["subject"],
        "Product ace key: ABCD-EFGH-JKLM-NPQR"
    );
    assert!(str_of(&preview.body["data"]["text"]).contains("https://licenses.example.com/p/ace"));
    let saved = f
        .admin(
            Method::PUT,
            &format!("{base}/LICENSE_DELIVERED"),
            Some(body),
        )
        .await;
    assert_status(&saved, 200);
    assert_eq!(saved.body["data"]["subjectOverridden"], true);
    assert_eq!(saved.body["data"]["textOverridden"], false);

    let license = f
        .srv
        .create_license(
            &f.key,
            &product.id,
            json!({"customerName": "<script>x</script>"}),
        )
        .await;
    f.admin(
        Method::POST,
        &format!("/api/keys/{}/send", str_field(&license, "id")),
        None,
    )
    .await;
    let m = &smtp.wait_for(1).await[0];
    let key = str_field(&license, "key");
    assert_eq!(m["subject"], format!("Product ace key: {key}"));
    let html = str_field(m, "html");
    assert!(
        html.contains("<h1>Thanks &lt;script&gt;x&lt;/script&gt;</h1>"),
        "{html}"
    );
    assert!(
        str_field(m, "text").contains("thank you for choosing"),
        "default text kept"
    );

    // Bad input changes nothing.
    let cases: Vec<(String, Value, u16)> = vec![
        (
            format!("{base}/LICENSE_DELIVERED"),
            json!({"subject": "{{ password }}"}),
            400,
        ),
        (
            format!("{base}/LICENSE_DELIVERED"),
            json!({"subject": "a\nBcc: x@y.z"}),
            400,
        ),
        (
            format!("{base}/LICENSE_DELIVERED"),
            json!({"text": "x".repeat(20001)}),
            400,
        ),
        (format!("{base}/LICENSE_DELIVERED"), json!({"text": 5}), 400),
        (format!("{base}/TEST"), json!({"subject": "x"}), 400),
        (format!("{base}/NOPE"), json!({"subject": "x"}), 400),
        (
            "/api/projects/prod_nope/mail-templates/SEND_KEYS".into(),
            json!({"subject": "x"}),
            404,
        ),
    ];
    for (path, body, status) in cases {
        let a = f.admin(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(a.status.as_u16(), status, "{path} {body}: {}", a.body);
        assert_eq!(a.body["success"], false);
    }
    let after = f.admin(Method::GET, &base, None).await;
    assert_eq!(
        after.body["data"]["templates"][0]["subject"],
        "{{ product }} key: {{key}}"
    );
    // Another tenant's key does not reach the project.
    f.srv.create_tenant("other");
    let theirs = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let a = send(&f.srv, Method::GET, &base, Cred::ApiKey(&theirs), None, &[]).await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    // Reset: the defaults again.
    let reset = f
        .admin(Method::DELETE, &format!("{base}/LICENSE_DELIVERED"), None)
        .await;
    assert_status(&reset, 200);
    assert_eq!(
        reset.body["data"]["subject"],
        "Your license key for {{ product }}"
    );
    assert_eq!(f.srv.count("SELECT COUNT(*) FROM mail_templates", []), 0);
}
