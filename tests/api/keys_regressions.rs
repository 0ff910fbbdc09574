//! Regressions of license issuing and management (`service::keys`): every face goes through
//! one use case, so a rule holds on all of them.
use crate::helpers::*;

use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

const KEYS: &str = "/api/keys";
const PROJECTS: &str = "/api/projects";

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("a string, found {v}"))
        .to_owned()
}

async fn patch(srv: &TestServer, path: &str, key: &str, body: Value) -> Answer {
    srv.call(Method::PATCH, path, Some(key), Some(body)).await
}

/// Generates one MONTHLY key of `project` through the admin API; returns it.
async fn generate(srv: &TestServer, key: &str, project: &str) -> Value {
    let a = srv
        .post(KEYS, key, json!({"plan": "MONTHLY", "projectId": project}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["data"]["keys"][0].clone()
}

fn count(srv: &TestServer, sql: &str, arg: &str) -> i64 {
    srv.db().query_row(sql, [arg], |r| r.get(0)).expect("count")
}

#[tokio::test]
async fn a_discontinued_product_issues_no_keys_on_either_face() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "old");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    srv.db()
        .execute(
            "UPDATE products SET status = 'DISCONTINUED' WHERE id = ?1",
            [&product.id],
        )
        .expect("discontinue");

    let a = srv
        .post(
            "/api/v1/license/create",
            &admin,
            json!({"productId": product.id, "customerEmail": "buyer@example.com"}),
        )
        .await;
    a.assert_error(400, "VALIDATION_ERROR");
    let a = srv
        .post(
            KEYS,
            &admin,
            json!({"plan": "WEEKLY", "projectId": product.id}),
        )
        .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "discontinued");
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM licenses WHERE product_id = ?1",
            &product.id
        ),
        0,
        "no key was issued"
    );
}

#[tokio::test]
async fn revoked_is_final_on_every_face_and_path() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "app");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv
        .create_license(
            &admin,
            &product.id,
            json!({"validUntil": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let id = str_of(&license["id"]);
    let a = srv
        .post(
            "/api/v1/license/revoke",
            &admin,
            json!({"licenseId": id, "reason": "chargeback"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The vendor face: renew by id and by key.
    for target in [
        json!({"licenseId": id}),
        json!({"licenseKey": license["key"]}),
    ] {
        let mut body = target;
        body["validUntil"] = json!("2100-01-01T00:00:00Z");
        let a = srv.post("/api/v1/license/renew", &admin, body).await;
        a.assert_error(400, "LICENSE_REVOKED");
    }
    // The admin face: no status brings it back.
    for status in ["ACTIVE", "SUSPENDED", "BANNED", "EXPIRED"] {
        let a = patch(
            &srv,
            &format!("{KEYS}/{id}"),
            &admin,
            json!({"status": status}),
        )
        .await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM licenses WHERE id = ?1 AND status = 'REVOKED'
             AND valid_until = 4070908800000",
            &id
        ),
        1,
        "still revoked, expiry unchanged"
    );

    // Revoking through PATCH is the domain's revoke too: the reason is kept.
    let other = generate(&srv, &admin, &product.id).await;
    let other_id = str_of(&other["id"]);
    let a = patch(
        &srv,
        &format!("{KEYS}/{other_id}"),
        &admin,
        json!({"status": "REVOKED"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["key"]["status"], "REVOKED");
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM licenses WHERE id = ?1 AND revoked_reason IS NOT NULL",
            &other_id
        ),
        1,
        "revoked through the domain rule"
    );
    let a = patch(
        &srv,
        &format!("{KEYS}/{other_id}"),
        &admin,
        json!({"status": "ACTIVE"}),
    )
    .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn hwid_reset_is_one_use_case_with_one_audit_action_on_both_faces() {
    let srv = TestServer::start().await;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = srv.post(PROJECTS, &admin, json!({"name": "Resets"})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let project = a.body["data"]["project"].clone();
    let (pid, secret) = (str_of(&project["id"]), str_of(&project["secret"]));
    let a = patch(
        &srv,
        &format!("{PROJECTS}/{pid}"),
        &admin,
        json!({"hwidResetCooldownSeconds": 3600}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let key = generate(&srv, &admin, &pid).await;
    let (id, key) = (str_of(&key["id"]), str_of(&key["key"]));
    let bind = |hwid: &'static str| {
        let srv = &srv;
        let key = key.clone();
        async move {
            let a = srv
                .call(
                    Method::POST,
                    "/api/validate",
                    None,
                    Some(json!({"key": key, "hwid": hwid})),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
        }
    };
    let resets = |actor_like: &str| {
        count(
            &srv,
            &format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'key.reset_hwid'
                 AND license_id = ?1 AND actor LIKE '{actor_like}'"
            ),
            &id,
        )
    };

    // The admin face (no cooldown: an administrator may always reset).
    bind("HWID-FIRST-MACHINE").await;
    let a = patch(
        &srv,
        &format!("{KEYS}/{id}"),
        &admin,
        json!({"resetHwid": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["activations"], json!([]));
    assert_eq!(
        resets("api_key:%"),
        1,
        "the admin reset is a key.reset_hwid"
    );
    bind("HWID-SECOND-MACHINE").await;
    let a = patch(
        &srv,
        &format!("{KEYS}/{id}"),
        &admin,
        json!({"resetHwid": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(resets("api_key:%"), 2);

    // The bot face: the same reset, with the project's cooldown.
    bind("HWID-THIRD-MACHINE").await;
    let tg = json!({"action": "reset_hwid", "key": key, "secret": secret,
                    "telegram_id": "42", "telegram_username": "ann"});
    let a = srv
        .call(Method::POST, "/api/telegram", None, Some(tg.clone()))
        .await;
    assert_eq!(
        a.status, 429,
        "the admin's reset started the cooldown: {}",
        a.body
    );
    srv.db()
        .execute(
            "UPDATE licenses SET hwid_reset_at = NULL WHERE id = ?1",
            [&id],
        )
        .expect("cooldown over");
    let a = srv
        .call(Method::POST, "/api/telegram", None, Some(tg.clone()))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["hwidBound"], false);
    assert!(a.body["data"]["nextResetAt"].is_string(), "{}", a.body);
    assert_eq!(resets("telegram:42:ann"), 1);
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            &id
        ),
        0
    );
    let a = srv
        .call(Method::POST, "/api/telegram", None, Some(tg))
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.header("retry-after").is_some());
}

#[tokio::test]
async fn a_product_restricted_full_admin_key_administers_its_product_only() {
    let srv = TestServer::start().await;
    let alpha = srv.create_product("default", "alpha");
    let beta = srv.create_product("default", "beta");
    let full = srv.create_api_key("default", Scope::FullAdmin, None);
    let restricted = srv.create_api_key("default", Scope::FullAdmin, Some(&alpha.id));
    let mine = generate(&srv, &full, &alpha.id).await;
    let theirs = generate(&srv, &full, &beta.id).await;
    let theirs_id = str_of(&theirs["id"]);
    let a = srv
        .call(
            Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": theirs["key"], "hwid": "BETA-MACHINE-0001"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The list shows alpha's keys only, also when beta is asked for.
    let a = srv.get(KEYS, &restricted).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let listed = a.body["data"]["keys"].as_array().expect("keys").clone();
    assert_eq!(listed.len(), 1, "{}", a.body);
    assert_eq!(listed[0]["id"], mine["id"]);
    assert_eq!(a.body["data"]["pagination"]["total"], 1);
    let a = srv
        .get(&format!("{KEYS}?projectId={}", beta.id), &restricted)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["keys"], json!([]));
    let a = srv
        .get(&format!("{KEYS}/{}", str_of(&mine["id"])), &restricted)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Beta's key answers exactly like a missing one.
    for id in [theirs_id.as_str(), "lic_doesnotexist00000000"] {
        let path = format!("{KEYS}/{id}");
        let a = srv.get(&path, &restricted).await;
        assert_kv_error(&a, 404, "NOT_FOUND");
        let a = patch(&srv, &path, &restricted, json!({"status": "BANNED"})).await;
        assert_kv_error(&a, 404, "NOT_FOUND");
        let a = patch(&srv, &path, &restricted, json!({"resetHwid": true})).await;
        assert_kv_error(&a, 404, "NOT_FOUND");
        let a = srv
            .call(Method::DELETE, &path, Some(&restricted), None)
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    for project in [beta.id.as_str(), "prod_doesnotexist000000"] {
        let a = srv
            .post(
                KEYS,
                &restricted,
                json!({"plan": "DAILY", "projectId": project}),
            )
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    // Without a project it issues for its own product (never the workspace's default).
    let a = srv.post(KEYS, &restricted, json!({"plan": "DAILY"})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["data"]["keys"][0]["projectId"], alpha.id.as_str());

    // Nothing of beta changed.
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM licenses WHERE id = ?1 AND status = 'ACTIVE'",
            &theirs_id
        ),
        1
    );
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            &theirs_id
        ),
        1
    );
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM licenses WHERE product_id = ?1",
            &beta.id
        ),
        1
    );
}

/// Text that reaches SQL or the note index: control characters (a NUL stops FTS5) are bad
/// input, never a 500; ordinary text still searches.
#[tokio::test]
async fn key_search_refuses_control_characters() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "searchable");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    generate(&srv, &admin, &product.id).await;
    let cases: [(&str, &str, u16); 5] = [
        ("a NUL byte", "%00", 400),
        ("a NUL inside a word", "VIP%00client", 400),
        ("a line feed", "VIP%0Aclient", 400),
        ("a note word", "VIP", 200),
        ("a quote", "%22VIP", 200),
    ];
    for (name, search, status) in cases {
        let a = srv.get(&format!("{KEYS}?search={search}"), &admin).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        if status == 400 {
            assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "control characters");
        }
    }
}
