//! Finding customers: the admin key search by e-mail, name and order id; the customer view;
//! the vendor API's `by-email`.

use crate::helpers::*;
use crate::mail::{MailFixture, SmtpServer};
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

fn keys_of(a: &Answer) -> Vec<String> {
    a.body["data"]["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("keys: {}", a.body))
        .iter()
        .map(|k| str_of(&k["key"]))
        .collect()
}

#[tokio::test]
async fn the_key_search_finds_customers_by_email_name_and_order_id() {
    let f = MailFixture::start().await;
    let ace = f.srv.create_product("default", "ace");
    let ana = f
        .srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"customerEmail": "ana.lovelace@example.com", "customerName": "Ana Lovelace",
                   "orderId": "ORD-7781"}),
        )
        .await;
    let bo = f
        .srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"customerEmail": "bo@example.org", "customerName": "Bo Diddley",
                   "orderId": "ORD-9000"}),
        )
        .await;
    f.srv.create_tenant("other");
    let theirs = f.srv.create_product("other", "theirs");
    let their_key = f.srv.create_api_key("other", Scope::FullAdmin, None);
    f.srv
        .create_license(
            &their_key,
            &theirs.id,
            json!({"customerEmail": "ana.lovelace@example.com"}),
        )
        .await;
    let ana_key = str_field(&ana, "key").to_owned();
    let bo_key = str_field(&bo, "key").to_owned();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("ana.lovelace@example.com", vec![&ana_key]),
        ("ANA.LOVELACE@EXAMPLE.COM", vec![&ana_key]),
        ("lovelace", vec![&ana_key]),
        ("Bo Diddley", vec![&bo_key]),
        ("ORD-7781", vec![&ana_key]),
        ("ord-9", vec![&bo_key]),
        ("example.org", vec![&bo_key]),
        ("nobody@example.com", vec![]),
    ];
    for (search, expected) in cases {
        let path = format!("/api/keys?search={}", urlencode(search));
        let a = send(&f.srv, Method::GET, &path, Cred::ApiKey(&f.key), None, &[]).await;
        assert_status(&a, 200);
        assert_eq!(keys_of(&a), expected, "search {search:?}");
    }
    // The other tenant finds only its own.
    let a = send(
        &f.srv,
        Method::GET,
        "/api/keys?search=lovelace",
        Cred::ApiKey(&their_key),
        None,
        &[],
    )
    .await;
    assert_eq!(keys_of(&a).len(), 1);
    assert!(!keys_of(&a).contains(&ana_key));
    // A changed address is found under the new one only.
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET customer_email = 'ana@new.example' WHERE id = ?1",
            [str_field(&ana, "id")],
        )
        .unwrap();
    for (search, n) in [("new.example", 1), ("ana.lovelace@", 0)] {
        let path = format!("/api/keys?search={}", urlencode(search));
        let a = send(&f.srv, Method::GET, &path, Cred::ApiKey(&f.key), None, &[]).await;
        assert_eq!(keys_of(&a).len(), n, "{search}: {}", a.body);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_customer_view_shows_keys_machines_payments_and_messages_of_one_address() {
    let f = MailFixture::start().await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let ace = f.srv.create_product("default", "ace");
    let first = f
        .srv
        .create_license(
            &f.key,
            &ace.id,
            json!({"customerEmail": "Ana@Example.com", "customerName": "Ana", "orderId": "o-1"}),
        )
        .await;
    let second = f
        .srv
        .create_license(&f.key, &ace.id, json!({"customerEmail": "ana@example.com"}))
        .await;
    f.srv
        .create_license(&f.key, &ace.id, json!({"customerEmail": "bo@example.com"}))
        .await;
    let act = f
        .srv
        .activate(&f.key, str_field(&first, "key"), "machine-ana-1")
        .await;
    assert_eq!(act.status, 200, "{}", act.body);
    f.admin(
        Method::POST,
        &format!("/api/keys/{}/send", str_field(&first, "id")),
        None,
    )
    .await;
    smtp.wait_for(1).await;

    let a = f
        .admin(Method::GET, "/api/customers/ANA@example.com", None)
        .await;
    assert_status(&a, 200);
    let d = &a.body["data"];
    assert_eq!(d["email"], "ana@example.com");
    assert_eq!(d["name"], "Ana");
    assert_eq!(d["keyTotal"], 2);
    let keys: Vec<&Value> = d["keys"].as_array().unwrap().iter().collect();
    assert_eq!(keys[0]["key"]["id"], first["id"], "oldest first");
    assert_eq!(keys[1]["key"]["id"], second["id"]);
    assert_eq!(keys[0]["key"]["orderId"], "o-1");
    assert_eq!(keys[0]["key"]["customerEmail"], "Ana@Example.com");
    assert_eq!(keys[0]["machines"][0]["hwid"], "machine-ana-1");
    assert_eq!(keys[1]["machines"], json!([]));
    assert_eq!(d["payments"], json!([]));
    assert_eq!(d["messages"].as_array().unwrap().len(), 1);
    assert_eq!(d["messages"][0]["kind"], "LICENSE_DELIVERED");

    for (path, status) in [
        ("/api/customers/nobody@example.com", 404),
        ("/api/customers/not-an-address", 400),
    ] {
        let a = f.admin(Method::GET, path, None).await;
        assert_eq!(a.status.as_u16(), status, "{path}: {}", a.body);
        assert_eq!(a.body["success"], false);
    }
    // Another tenant, and a key of another product, do not see this customer.
    f.srv.create_tenant("other");
    let theirs = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let b = f.srv.create_product("default", "b");
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&b.id));
    for key in [&theirs, &restricted] {
        let a = send(
            &f.srv,
            Method::GET,
            "/api/customers/ana@example.com",
            Cred::ApiKey(key),
            None,
            &[],
        )
        .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
}

/// A key restricted to one product sees that product's messages to the customer, however many
/// newer ones other products sent (they are filtered in the query, not after its limit).
#[tokio::test]
async fn a_product_restricted_key_sees_its_products_messages_behind_many_of_another_product() {
    let f = MailFixture::start().await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let ace = f.srv.create_product("default", "ace");
    let other = f.srv.create_product("default", "other");
    let license = f
        .srv
        .create_license(&f.key, &ace.id, json!({"customerEmail": "cy@example.com"}))
        .await;
    f.admin(
        Method::POST,
        &format!("/api/keys/{}/send", str_field(&license, "id")),
        None,
    )
    .await;
    smtp.wait_for(1).await;
    // 120 newer messages to the same customer from the other product.
    f.srv
        .db()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120)
             INSERT INTO mail_outbox (id, tenant_id, product_id, kind, recipient, subject,
                 body_text, body_html, status, next_attempt_at, created_at)
             SELECT 'msg_other_' || i, tenant_id, ?1, kind, recipient, subject, body_text,
                 body_html, 'SENT', next_attempt_at, created_at + 1000 + i
             FROM mail_outbox, n WHERE recipient = 'cy@example.com'",
            [&other.id],
        )
        .expect("other product's messages");
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&ace.id));
    let a = send(
        &f.srv,
        Method::GET,
        "/api/customers/cy@example.com",
        Cred::ApiKey(&restricted),
        None,
        &[],
    )
    .await;
    assert_status(&a, 200);
    let messages = a.body["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", a.body);
    assert_eq!(messages[0]["kind"], "LICENSE_DELIVERED");
    // The workspace's operator sees the newest hundred of all of them.
    let all = f
        .admin(Method::GET, "/api/customers/cy@example.com", None)
        .await;
    assert_status(&all, 200);
    assert_eq!(all.body["data"]["messages"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn by_email_lists_a_customers_licenses_for_read_only_keys_of_its_tenant() {
    let f = MailFixture::start().await;
    let ace = f.srv.create_product("default", "ace");
    let b = f.srv.create_product("default", "b");
    let mut ours = Vec::new();
    for product in [&ace, &ace, &b] {
        let l = f
            .srv
            .create_license(
                &f.key,
                &product.id,
                json!({"customerEmail": "Cy@Example.com"}),
            )
            .await;
        ours.push(l["id"].clone());
    }
    f.srv
        .create_license(&f.key, &ace.id, json!({"customerEmail": "dee@example.com"}))
        .await;
    let read = f.srv.create_api_key("default", Scope::ReadOnly, None);
    let a = f
        .srv
        .get("/api/v1/license/by-email/cy@example.com", &read)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ids: Vec<Value> = a.body["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(ids, ours, "oldest first, any case");
    let paged = f
        .srv
        .get(
            "/api/v1/license/by-email/cy@example.com?limit=2&page=2",
            &read,
        )
        .await;
    assert_eq!(paged.body["licenses"].as_array().unwrap().len(), 1);
    assert_eq!(paged.body["pagination"]["total"], 3);
    // A product-restricted key sees its product's only; another tenant sees none.
    let restricted = f
        .srv
        .create_api_key("default", Scope::ReadOnly, Some(&b.id));
    let a = f
        .srv
        .get("/api/v1/license/by-email/cy@example.com", &restricted)
        .await;
    assert_eq!(a.body["pagination"]["total"], 1, "{}", a.body);
    f.srv.create_tenant("other");
    let theirs = f.srv.create_api_key("other", Scope::ReadOnly, None);
    let a = f
        .srv
        .get("/api/v1/license/by-email/cy@example.com", &theirs)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["licenses"], json!([]));
    // Scope and bad input.
    let create = f.srv.create_api_key("default", Scope::CreateLicense, None);
    let a = f
        .srv
        .get("/api/v1/license/by-email/cy@example.com", &create)
        .await;
    a.assert_error(403, "FORBIDDEN");
    for path in [
        "/api/v1/license/by-email/not-an-address",
        "/api/v1/license/by-email/cy@example.com?limit=0",
        "/api/v1/license/by-email/cy@example.com?page=x",
    ] {
        let a = f.srv.get(path, &read).await;
        a.assert_error(400, "VALIDATION_ERROR");
    }
    let long = format!("/api/v1/license/by-email/{}@example.com", "a".repeat(300));
    f.srv
        .get(&long, &read)
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let anonymous = send(
        &f.srv,
        Method::GET,
        "/api/v1/license/by-email/cy@example.com",
        Cred::None,
        None,
        &[],
    )
    .await;
    assert_eq!(anonymous.status, 401);
}
