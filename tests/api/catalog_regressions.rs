//! Regressions of the products (projects) and reports area: a product-restricted API key
//! reaches its own product only on the admin face, and a product is audited under one name
//! whoever creates it.

use std::collections::BTreeSet;

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_product_restricted_admin_key_reaches_its_product_only() {
    let srv = TestServer::start().await;
    let alpha = srv.create_product("default", "alpha");
    let beta = srv.create_product("default", "beta");
    let restricted = srv.create_api_key("default", Scope::FullAdmin, Some(&alpha.id));
    let whole = srv.create_api_key("default", Scope::FullAdmin, None);
    let key = Some(restricted.as_str());

    // Activity on both products, made by a key of the whole tenant.
    srv.create_license(&whole, &alpha.id, json!({})).await;
    for _ in 0..2 {
        srv.create_license(&whole, &beta.id, json!({})).await;
    }
    for (id, name) in [(&alpha.id, "Alpha 2"), (&beta.id, "Beta 2")] {
        let a = srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{id}"),
                Some(&whole),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }

    let a = srv.call(Method::GET, "/api/projects", key, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        ids(&a.body["data"]["projects"]),
        BTreeSet::from([alpha.id.clone()])
    );
    assert_eq!(a.body["data"]["pagination"]["total"], 1);

    let a = srv
        .call(
            Method::GET,
            &format!("/api/projects/{}", alpha.id),
            key,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let beta_path = format!("/api/projects/{}", beta.id);
    let a = srv.call(Method::GET, &beta_path, key, None).await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    assert!(
        !String::from_utf8_lossy(&a.raw).contains("kv_"),
        "no secret of beta: {}",
        a.body
    );
    let a = srv
        .call(
            Method::PATCH,
            &beta_path,
            key,
            Some(json!({"regenerateSecret": true})),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = srv
        .call(
            Method::DELETE,
            &format!("{beta_path}?confirm=beta"),
            key,
            None,
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = srv.call(Method::GET, &beta_path, Some(&whole), None).await;
    assert_eq!(a.status, 200, "beta is still there: {}", a.body);
    assert_eq!(a.body["data"]["project"]["name"], "Beta 2");

    let a = srv
        .call(
            Method::POST,
            "/api/projects",
            key,
            Some(json!({"name": "Gamma"})),
        )
        .await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    // The overview lists people: API keys never see it.
    let a = srv.call(Method::GET, "/api/admin", key, None).await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    // Logs: alpha's events only, and nothing when beta is asked for.
    let a = srv.call(Method::GET, "/api/logs", key, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let logs = a.body["data"]["logs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!logs.is_empty(), "alpha's events: {}", a.body);
    for log in &logs {
        assert_eq!(log["projectId"], Value::String(alpha.id.clone()), "{log}");
    }
    let a = srv
        .call(
            Method::GET,
            &format!("/api/logs?projectId={}", beta.id),
            key,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["pagination"]["total"], 0, "{}", a.body);

    // Stats: alpha's figures.
    let a = srv.call(Method::GET, "/api/stats", key, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["totalKeys"], 1, "{}", a.body);
    assert_eq!(a.body["data"]["projects"], 1, "{}", a.body);
    let a = srv
        .call(
            Method::GET,
            &format!("/api/stats?projectId={}", beta.id),
            key,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["totalKeys"], 0, "{}", a.body);
    assert_eq!(a.body["data"]["daily"].as_array().map(Vec::len), Some(30));

    // The whole tenant's key still sees both.
    let a = srv
        .call(Method::GET, "/api/stats", Some(&whole), None)
        .await;
    assert_eq!(a.body["data"]["totalKeys"], 3, "{}", a.body);
    assert_eq!(a.body["data"]["projects"], 2, "{}", a.body);

    // The vendor face kept showing alpha only.
    let a = srv.get("/api/v1/products", &restricted).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(ids(&a.body["products"]), BTreeSet::from([alpha.id.clone()]));
}

#[tokio::test]
async fn products_are_audited_as_project_create_from_the_cli_and_the_admin_face() {
    let srv = TestServer::start().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("--data-dir")
        .arg(srv.data_dir())
        .args([
            "product",
            "create",
            "--name",
            "From Shell",
            "--slug",
            "shell",
        ])
        .output()
        .expect("run keyward");
    assert!(
        out.status.success(),
        "keyward product create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_cli = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(from_cli.starts_with("prod_"), "{from_cli}");

    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let a = srv
        .call(
            Method::POST,
            "/api/projects",
            Some(&admin),
            Some(json!({"name": "From Panel"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let from_panel = a.body["data"]["project"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let a = srv
        .call(
            Method::GET,
            "/api/logs?action=project.create",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let created: BTreeSet<(String, String)> = a.body["data"]["logs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["projectId"].as_str().unwrap_or_default().to_owned(),
                l["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        created,
        BTreeSet::from([
            (from_cli, "cli".to_owned()),
            (from_panel, format!("api_key:{}", api_key_id(&srv, &admin))),
        ])
    );
    let a = srv
        .call(Method::GET, "/api/logs?action=product.", Some(&admin), None)
        .await;
    assert_eq!(a.body["data"]["pagination"]["total"], 0, "{}", a.body);
}

/// The id of the API key whose plaintext is `key` (its prefix names it).
fn api_key_id(srv: &TestServer, key: &str) -> String {
    let prefix = keyward::domain::api_keys::prefix_of(key).expect("a prefix");
    keyward::domain::api_keys::repo::find_by_prefix(&srv.db(), prefix)
        .expect("read")
        .expect("the key")
        .id
}
