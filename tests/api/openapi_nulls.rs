//! The OpenAPI document's rule for absent values, and the answers that send them. Every
//! optional field is declared `nullable`: answers send `null` for an absent value (or leave the
//! field out), and requests may send `null` for a field they leave out. `tests/schemathesis.rs`
//! checks every answer against the document; these are the quick checks of the rule itself.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use serde_json::{Value, json};

/// Every JSON object schema in `v`, each with where it is.
fn schemas<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("properties") {
                out.push((at.clone(), v));
            }
            for (k, child) in map {
                // Form fields are text parts: a JSON null does not exist there.
                if k == "multipart/form-data" {
                    continue;
                }
                schemas(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                schemas(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_optional_property_of_the_document_is_nullable() {
    let srv = TestServer::start().await;
    let doc = srv
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let mut found = Vec::new();
    schemas(&doc, String::new(), &mut found);
    assert!(found.len() > 50, "the document's object schemas: {found:?}");
    let mut wrong = Vec::new();
    for (at, schema) in found {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            // A property with a default is filled in when absent; it is not an Option.
            let optional = !required.contains(&name.as_str()) && property.get("default").is_none();
            if optional && property["nullable"] != json!(true) {
                wrong.push(format!("{at}/properties/{name}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "optional but not nullable (answers send null for them): {wrong:#?}"
    );
}

/// The two answers the issue named: a product without a heartbeat policy, and `validate` of a
/// key that does not exist. They send `null`, and the document says they may.
#[tokio::test]
async fn the_nulls_sent_are_declared_nullable() {
    let srv = TestServer::start().await;
    let doc = srv
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    srv.create_product("default", "app");
    let key = srv.create_api_key("default", Scope::FullAdmin, None);

    let products = srv.get("/api/v1/products", &key).await;
    assert_eq!(products.status, 200, "{}", products.body);
    assert_eq!(
        products.body["products"][0]["heartbeatIntervalSeconds"],
        Value::Null,
        "{}",
        products.body
    );
    assert_eq!(
        schema("ProductPublic")["properties"]["heartbeatIntervalSeconds"]["nullable"],
        json!(true)
    );

    let a = srv
        .post(
            "/api/v1/license/validate",
            &key,
            json!({"licenseKey": "TT-NONE-NONE-NONE-NONE", "machineId": "machine-0001"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["code"], "NOT_FOUND", "{}", a.body);
    let ok = schema("ValidateOk");
    for field in ["license", "activation", "status"] {
        assert_eq!(a.body[field], Value::Null, "{field}: {}", a.body);
        assert_eq!(
            ok["properties"][field]["nullable"],
            json!(true),
            "{field}: {ok}"
        );
    }
}
