use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use serde_json::json;

#[tokio::test]
async fn harness_round_trip() {
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "app");
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv.create_license(&key, &product.id, json!({})).await;
    let a = srv
        .activate(&key, license["key"].as_str().unwrap(), "machine-0001")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}
