//! License management over the vendor API, against a real server: create (with idempotency),
//! create-bulk, revoke, renew, by-order, products, the public key, health, the OpenAPI
//! document, scopes, tenant isolation, rate limits and bad input.

use std::collections::BTreeSet;

use crate::helpers::*;
use base64::Engine;
use keyward::domain::api_keys::Scope;
use keyward::domain::licenses::LicenseType;
use keyward::domain::products::Product;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CREATE: &str = "/api/v1/license/create";
const BULK: &str = "/api/v1/license/create-bulk";
const REVOKE: &str = "/api/v1/license/revoke";
const RENEW: &str = "/api/v1/license/renew";
const PRODUCTS: &str = "/api/v1/products";

const KEY_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

// ---- fixtures and helpers ---------------------------------------------------------------

/// A server with a product `app` in the default tenant and a FULL_ADMIN key for it.
struct Fixture {
    srv: TestServer,
    product: Product,
    admin: String,
}

impl Fixture {
    async fn start() -> Self {
        let srv = TestServer::start().await;
        let product = srv.create_product("default", "app");
        let admin = srv.create_api_key("default", Scope::FullAdmin, None);
        Self {
            srv,
            product,
            admin,
        }
    }

    /// Creates a license of `app` through the API; returns its `license` object.
    async fn license(&self, extra: Value) -> Value {
        self.srv
            .create_license(&self.admin, &self.product.id, extra)
            .await
    }
}

/// A whole-second instant `days` from now, as RFC 3339.
fn rfc3339_in_days(days: i64) -> String {
    let now = OffsetDateTime::now_utc();
    let whole = now - time::Duration::nanoseconds(now.nanosecond() as i64);
    (whole + time::Duration::days(days))
        .format(&Rfc3339)
        .expect("format date")
}

fn license_count(srv: &TestServer) -> i64 {
    srv.count("SELECT COUNT(*) FROM licenses", [])
}

/// Everything about every license that an endpoint could change, in one string.
fn licenses_snapshot(srv: &TestServer) -> String {
    srv.db()
        .query_row(
            "SELECT COUNT(*) || ':' || COALESCE(group_concat(id || '|' || status || '|' ||
                COALESCE(valid_until, '') || '|' || COALESCE(revoked_reason, '') || '|' ||
                updated_at, ';'), '')
             FROM (SELECT * FROM licenses ORDER BY id)",
            [],
            |r| r.get(0),
        )
        .expect("snapshot licenses")
}

fn license_column(srv: &TestServer, id: &str, column: &str) -> Option<String> {
    srv.db()
        .query_row(
            &format!("SELECT {column} FROM licenses WHERE id = ?1"),
            [id],
            |r| r.get(0),
        )
        .expect("license row")
}

/// POST with extra request headers.
async fn post_with(
    srv: &TestServer,
    path: &str,
    api_key: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Answer {
    let mut req = srv
        .client
        .post(format!("{}{}", srv.url, path))
        .header("X-API-Key", api_key)
        .json(&body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    TestServer::decode(req.send().await.expect("request sent")).await
}

async fn create_idem(srv: &TestServer, api_key: &str, idem: &str, body: Value) -> Answer {
    post_with(srv, CREATE, api_key, &[("X-Idempotency-Key", idem)], body).await
}

fn assert_key_matches_template(key: &str, template: &str) {
    assert_eq!(
        key.len(),
        template.len(),
        "key {key:?} vs template {template:?}"
    );
    for (k, t) in key.chars().zip(template.chars()) {
        if t == 'X' {
            assert!(
                KEY_ALPHABET.contains(k),
                "{k:?} of key {key:?} is not in the key alphabet"
            );
        } else {
            assert_eq!(k, t, "literal of template {template:?} in key {key:?}");
        }
    }
}

fn is_scope_at_least(scope: Scope, needed: Scope) -> bool {
    let rank = |s: Scope| SCOPES.iter().position(|x| *x == s).expect("known scope");
    rank(scope) >= rank(needed)
}

// ---- create -------------------------------------------------------------------------------

#[tokio::test]
async fn create_answers_201_with_exactly_the_license_created_fields_and_product_defaults() {
    let srv = TestServer::start().await;
    let product = srv.create_product_with("default", "suite", |p| {
        p.default_license_type = LicenseType::Subscription;
        p.default_max_activations = 5;
    });
    let key = srv.create_api_key("default", Scope::CreateLicense, None);
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(2);

    let a = srv
        .post(
            CREATE,
            &key,
            json!({"productId": product.id, "customerEmail": "buyer@example.com"}),
        )
        .await;

    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["success"], true);
    assert!(
        a.body.get("idempotent").is_none(),
        "a new license is not idempotent: {}",
        a.body
    );
    let license = &a.body["license"];
    let fields: BTreeSet<&str> = license
        .as_object()
        .expect("license object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "id",
        "key",
        "product",
        "type",
        "tier",
        "status",
        "maxActivations",
        "validUntil",
        "createdAt",
        "entitlements",
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, expected, "LicenseCreated fields: {license}");
    assert!(!str_field(license, "id").is_empty());
    assert_eq!(license["product"], product.id.as_str());
    assert_eq!(
        license["type"], "SUBSCRIPTION",
        "type defaults to the product's"
    );
    assert_eq!(
        license["maxActivations"], 5,
        "maxActivations defaults to the product's"
    );
    assert_eq!(license["tier"], "PERSONAL", "tier defaults to PERSONAL");
    assert_eq!(license["status"], "ACTIVE");
    assert_eq!(license["validUntil"], Value::Null);
    let created_at = parse_time(&license["createdAt"]);
    assert!(created_at >= before, "createdAt {created_at} is now");
    assert_key_matches_template(str_field(license, "key"), "TT-XXXX-XXXX-XXXX-XXXX");
}

#[tokio::test]
async fn create_keeps_explicit_type_tier_limit_and_expiry() {
    let f = Fixture::start().await;
    let until = rfc3339_in_days(30);
    let license = f
        .license(json!({"type": "TRIAL", "tier": "ENTERPRISE", "maxActivations": 1000, "validUntil": until}))
        .await;
    assert_eq!(license["type"], "TRIAL");
    assert_eq!(license["tier"], "ENTERPRISE");
    assert_eq!(license["maxActivations"], 1000);
    assert_eq!(
        parse_time(&license["validUntil"]),
        parse_time(&json!(until))
    );
}

#[tokio::test]
async fn create_accepts_the_product_id_or_its_slug() {
    let f = Fixture::start().await;
    struct Case {
        name: &'static str,
        product_id: String,
    }
    let cases = [
        Case {
            name: "product id",
            product_id: f.product.id.clone(),
        },
        Case {
            name: "product slug",
            product_id: f.product.slug.clone(),
        },
    ];
    for c in cases {
        let a = f
            .srv
            .post(
                CREATE,
                &f.admin,
                json!({"productId": c.product_id, "customerEmail": "a@example.com"}),
            )
            .await;
        assert_eq!(a.status, 201, "case {}: {}", c.name, a.body);
        assert_eq!(
            a.body["license"]["product"],
            f.product.id.as_str(),
            "case {}",
            c.name
        );
    }
}

#[tokio::test]
async fn created_keys_follow_the_product_template_and_are_all_distinct() {
    let f = Fixture::start().await;
    let mut keys = BTreeSet::new();
    for _ in 0..100 {
        let license = f.license(json!({})).await;
        let key = str_field(&license, "key").to_owned();
        assert_key_matches_template(&key, "TT-XXXX-XXXX-XXXX-XXXX");
        keys.insert(key);
    }
    assert_eq!(keys.len(), 100, "100 created keys are distinct");
    assert_eq!(license_count(&f.srv), 100);
}

#[tokio::test]
async fn create_stores_customer_order_and_metadata() {
    let f = Fixture::start().await;
    let license = f
        .license(json!({
            "customerEmail": "jane@example.com",
            "customerName": "Jane Roe",
            "orderId": "order-77",
            "metadata": {"seats": 3, "plan": "team", "nested": {"a": [1, 2]}}
        }))
        .await;
    let id = str_field(&license, "id");
    let stored: Value =
        serde_json::from_str(&license_column(&f.srv, id, "metadata").expect("metadata stored"))
            .expect("metadata is JSON");
    assert_eq!(
        stored,
        json!({"seats": 3, "plan": "team", "nested": {"a": [1, 2]}})
    );
    assert_eq!(
        license_column(&f.srv, id, "customer_email").as_deref(),
        Some("jane@example.com")
    );
    assert_eq!(
        license_column(&f.srv, id, "customer_name").as_deref(),
        Some("Jane Roe")
    );
    assert_eq!(
        license_column(&f.srv, id, "order_id").as_deref(),
        Some("order-77")
    );
}

#[tokio::test]
async fn create_refuses_invalid_requests_and_creates_nothing() {
    let f = Fixture::start().await;
    let other = {
        f.srv.create_tenant("other");
        f.srv.create_product("other", "theirs")
    };
    let metadata_21: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!(i))).collect();
    struct Case {
        name: &'static str,
        body: Value,
        status: u16,
        code: &'static str,
        mentions: &'static str,
    }
    let base = |extra: Value| {
        let mut body = json!({"productId": f.product.id, "customerEmail": "buyer@example.com"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        Case {
            name: "validUntil in the past",
            body: base(json!({"validUntil": rfc3339_in_days(-1)})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "validUntil",
        },
        Case {
            name: "invalid email",
            body: base(json!({"customerEmail": "not-an-email"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "customerEmail",
        },
        // The key e-mail must be able to reach the address a key is created with: one rule
        // for every address (a display name or a second recipient is not an address).
        Case {
            name: "email with a display name's brackets",
            body: base(json!({"customerEmail": "<ana@example.com>"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "customerEmail",
        },
        Case {
            name: "two addresses in one",
            body: base(json!({"customerEmail": "ana@example.com,bo@example.com"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "customerEmail",
        },
        Case {
            name: "email without a dotted domain",
            body: base(json!({"customerEmail": "a@b"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "customerEmail",
        },
        Case {
            name: "metadata with 21 keys",
            body: base(json!({"metadata": metadata_21})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "metadata",
        },
        Case {
            name: "maxActivations 0",
            body: base(json!({"maxActivations": 0})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "maxActivations",
        },
        Case {
            name: "maxActivations 1001",
            body: base(json!({"maxActivations": 1001})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "maxActivations",
        },
        Case {
            name: "productId longer than 30 characters",
            body: base(json!({"productId": "p".repeat(31)})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "productId",
        },
        Case {
            name: "unknown type",
            body: base(json!({"type": "FOREVER"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "type",
        },
        Case {
            name: "unknown tier",
            body: base(json!({"tier": "GOLD"})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "tier",
        },
        Case {
            name: "orderId longer than 255 characters",
            body: base(json!({"orderId": "o".repeat(256)})),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "orderId",
        },
        Case {
            name: "unknown productId",
            body: base(json!({"productId": "prod_doesnotexist"})),
            status: 404,
            code: "PRODUCT_NOT_FOUND",
            mentions: "",
        },
        Case {
            name: "productId of another tenant",
            body: base(json!({"productId": other.id})),
            status: 404,
            code: "PRODUCT_NOT_FOUND",
            mentions: "",
        },
    ];
    for c in cases {
        let a = f.srv.post(CREATE, &f.admin, c.body).await;
        assert_eq!(a.status, c.status, "case {}: {}", c.name, a.body);
        assert_eq!(a.error_code(), c.code, "case {}: {}", c.name, a.body);
        a.assert_error(c.status, c.code);
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(c.mentions),
            "case {}: message {message:?} names {}",
            c.name,
            c.mentions
        );
        assert_eq!(license_count(&f.srv), 0, "case {}: nothing created", c.name);
    }
}

// ---- idempotency ----------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_key_returns_the_same_license_for_the_same_request_and_422_for_another() {
    let f = Fixture::start().await;
    let body =
        json!({"productId": f.product.id, "customerEmail": "buyer@example.com", "orderId": "o-1"});

    let first = create_idem(&f.srv, &f.admin, "checkout-1", body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(first.body.get("idempotent").is_none(), "{}", first.body);

    let again = create_idem(&f.srv, &f.admin, "checkout-1", body.clone()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["success"], true);
    assert_eq!(again.body["idempotent"], true, "{}", again.body);
    assert_eq!(again.body["license"]["id"], first.body["license"]["id"]);
    assert_eq!(again.body["license"]["key"], first.body["license"]["key"]);
    assert_eq!(license_count(&f.srv), 1, "one row for one idempotency key");

    let changed = create_idem(
        &f.srv,
        &f.admin,
        "checkout-1",
        json!({"productId": f.product.id, "customerEmail": "someone.else@example.com", "orderId": "o-1"}),
    )
    .await;
    changed.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(license_count(&f.srv), 1, "a reused key creates nothing");

    let other_key = create_idem(&f.srv, &f.admin, "checkout-2", body).await;
    assert_eq!(
        other_key.status, 201,
        "another idempotency key creates: {}",
        other_key.body
    );
    assert_ne!(other_key.body["license"]["id"], first.body["license"]["id"]);
    assert_eq!(license_count(&f.srv), 2);
}

#[tokio::test]
async fn idempotency_key_must_be_1_to_255_characters() {
    let f = Fixture::start().await;
    struct Case {
        name: &'static str,
        idem: String,
        status: u16,
    }
    let cases = [
        Case {
            name: "256 characters",
            idem: "k".repeat(256),
            status: 400,
        },
        Case {
            name: "255 characters",
            idem: "k".repeat(255),
            status: 201,
        },
    ];
    for c in cases {
        let before = license_count(&f.srv);
        let a = create_idem(
            &f.srv,
            &f.admin,
            &c.idem,
            json!({"productId": f.product.id, "customerEmail": "buyer@example.com"}),
        )
        .await;
        assert_eq!(a.status, c.status, "case {}: {}", c.name, a.body);
        if c.status == 400 {
            a.assert_error(400, "VALIDATION_ERROR");
            assert!(
                a.body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("X-Idempotency-Key"),
                "case {}: {}",
                c.name,
                a.body
            );
            assert_eq!(
                license_count(&f.srv),
                before,
                "case {}: nothing created",
                c.name
            );
        }
    }
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_tenant() {
    let f = Fixture::start().await;
    f.srv.create_tenant("other");
    let theirs = f.srv.create_product("other", "app");
    let their_key = f.srv.create_api_key("other", Scope::CreateLicense, None);

    let ours = create_idem(
        &f.srv,
        &f.admin,
        "order-1",
        json!({"productId": "app", "customerEmail": "buyer@example.com"}),
    )
    .await;
    assert_eq!(ours.status, 201, "{}", ours.body);
    let their = create_idem(
        &f.srv,
        &their_key,
        "order-1",
        json!({"productId": "app", "customerEmail": "buyer@example.com"}),
    )
    .await;
    assert_eq!(
        their.status, 201,
        "the other tenant gets its own license: {}",
        their.body
    );
    assert!(their.body.get("idempotent").is_none());
    assert_ne!(their.body["license"]["id"], ours.body["license"]["id"]);
    assert_eq!(their.body["license"]["product"], theirs.id.as_str());
    assert_eq!(license_count(&f.srv), 2);
}

// ---- create-bulk ----------------------------------------------------------------------------

fn bulk_items(product_id: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"productId": product_id, "customerEmail": format!("buyer{i}@example.com")}))
        .collect()
}

#[tokio::test]
async fn create_bulk_answers_201_when_every_item_is_created() {
    let f = Fixture::start().await;
    for n in [1usize, 20] {
        let before = license_count(&f.srv);
        let a = f
            .srv
            .post(
                BULK,
                &f.admin,
                json!({"licenses": bulk_items(&f.product.id, n)}),
            )
            .await;
        assert_eq!(a.status, 201, "{n} items: {}", a.body);
        assert_eq!(a.body["success"], true);
        assert_eq!(a.body["created"], n);
        assert_eq!(a.body["failed"], 0);
        let results = a.body["results"].as_array().expect("results");
        assert_eq!(results.len(), n);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r["index"], i, "{r}");
            assert_eq!(r["success"], true, "{r}");
            assert_eq!(r["license"]["product"], f.product.id.as_str(), "{r}");
            assert_eq!(r["license"]["status"], "ACTIVE", "{r}");
        }
        assert_eq!(license_count(&f.srv), before + n as i64);
    }
}

#[tokio::test]
async fn create_bulk_refuses_0_or_21_items() {
    let f = Fixture::start().await;
    for n in [0usize, 21] {
        let a = f
            .srv
            .post(
                BULK,
                &f.admin,
                json!({"licenses": bulk_items(&f.product.id, n)}),
            )
            .await;
        a.assert_error(400, "VALIDATION_ERROR");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("licenses"),
            "{n} items: the message names the field: {}",
            a.body
        );
        assert_eq!(license_count(&f.srv), 0, "{n} items: nothing created");
    }
}

#[tokio::test]
async fn create_bulk_answers_207_with_the_failed_items_error_and_creates_the_others() {
    let f = Fixture::start().await;
    let items = json!([
        {"productId": f.product.id, "customerEmail": "one@example.com"},
        {"productId": "prod_unknown", "customerEmail": "two@example.com"},
        {"productId": f.product.id, "customerEmail": "not an email"},
        {"productId": f.product.id, "customerEmail": "four@example.com"},
    ]);
    let a = f.srv.post(BULK, &f.admin, json!({"licenses": items})).await;
    assert_eq!(a.status, 207, "{}", a.body);
    assert_eq!(a.body["success"], false);
    assert_eq!(a.body["created"], 2);
    assert_eq!(a.body["failed"], 2);
    let results = a.body["results"].as_array().expect("results");
    struct Expect {
        index: usize,
        error: Option<&'static str>,
    }
    let expected = [
        Expect {
            index: 0,
            error: None,
        },
        Expect {
            index: 1,
            error: Some("PRODUCT_NOT_FOUND"),
        },
        Expect {
            index: 2,
            error: Some("VALIDATION_ERROR"),
        },
        Expect {
            index: 3,
            error: None,
        },
    ];
    for e in expected {
        let r = &results[e.index];
        assert_eq!(r["index"], e.index, "{r}");
        match e.error {
            None => {
                assert_eq!(r["success"], true, "item {}: {r}", e.index);
                assert!(r["license"]["id"].is_string(), "item {}: {r}", e.index);
                assert!(r.get("error").is_none(), "item {}: {r}", e.index);
            }
            Some(code) => {
                assert_eq!(r["success"], false, "item {}: {r}", e.index);
                assert_eq!(r["error"]["code"], code, "item {}: {r}", e.index);
                assert!(
                    r["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "item {}: {r}",
                    e.index
                );
                assert!(r.get("license").is_none(), "item {}: {r}", e.index);
            }
        }
    }
    assert_eq!(license_count(&f.srv), 2);
}

#[tokio::test]
async fn create_bulk_idempotency_key_is_suffixed_with_each_items_index() {
    let f = Fixture::start().await;
    let items = bulk_items(&f.product.id, 3);
    let bulk = |items: Vec<Value>| {
        post_with(
            &f.srv,
            BULK,
            &f.admin,
            &[("X-Idempotency-Key", "batch")],
            json!({"licenses": items}),
        )
    };

    let first = bulk(items.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let ids: Vec<Value> = first.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["license"]["id"].clone())
        .collect();
    assert_eq!(license_count(&f.srv), 3);

    let again = bulk(items.clone()).await;
    assert_eq!(again.status, 201, "{}", again.body);
    for (i, r) in again.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .enumerate()
    {
        assert_eq!(r["idempotent"], true, "item {i}: {r}");
        assert_eq!(r["license"]["id"], ids[i], "item {i}: the same license");
    }
    assert_eq!(license_count(&f.srv), 3, "a repeated bulk creates nothing");

    let single = create_idem(&f.srv, &f.admin, "batch:0", items[0].clone()).await;
    assert_eq!(single.status, 200, "{}", single.body);
    assert_eq!(single.body["idempotent"], true);
    assert_eq!(
        single.body["license"]["id"], ids[0],
        "item 0 used the key batch:0"
    );

    let mismatched = create_idem(&f.srv, &f.admin, "batch:1", items[0].clone()).await;
    mismatched.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(license_count(&f.srv), 3);
}

// ---- revoke -------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_by_id_or_by_key_is_final_and_stores_the_reason() {
    let f = Fixture::start().await;
    struct Case {
        name: &'static str,
        by_key: bool,
    }
    let cases = [
        Case {
            name: "by licenseId",
            by_key: false,
        },
        Case {
            name: "by licenseKey (lower case, padded)",
            by_key: true,
        },
    ];
    for c in cases {
        let license = f.license(json!({})).await;
        let id = str_field(&license, "id");
        let target = if c.by_key {
            json!({"licenseKey": format!("  {}  ", str_field(&license, "key").to_lowercase())})
        } else {
            json!({"licenseId": id})
        };
        let mut body = target.clone();
        body["reason"] = json!("chargeback");
        let a = f.srv.post(REVOKE, &f.admin, body).await;
        assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
        assert_eq!(a.body["success"], true);
        assert_eq!(a.body["license"]["id"], id, "case {}", c.name);
        assert_eq!(a.body["license"]["status"], "REVOKED", "case {}", c.name);
        assert_eq!(
            license_column(&f.srv, id, "status").as_deref(),
            Some("REVOKED")
        );
        assert_eq!(
            license_column(&f.srv, id, "revoked_reason").as_deref(),
            Some("chargeback")
        );

        let mut twice = target;
        twice["reason"] = json!("changed my mind");
        let b = f.srv.post(REVOKE, &f.admin, twice).await;
        assert_eq!(b.status, 200, "case {}: revoking twice: {}", c.name, b.body);
        assert_eq!(b.body["license"]["status"], "REVOKED", "case {}", c.name);
        assert_eq!(
            license_column(&f.srv, id, "revoked_reason").as_deref(),
            Some("chargeback"),
            "case {}: a second revoke changes nothing",
            c.name
        );
    }
}

#[tokio::test]
async fn revoke_without_a_license_is_400_and_an_unknown_one_is_404() {
    let f = Fixture::start().await;
    f.license(json!({})).await;
    struct Case {
        name: &'static str,
        body: Value,
        status: u16,
        code: &'static str,
    }
    let cases = [
        Case {
            name: "neither licenseId nor licenseKey",
            body: json!({"reason": "x"}),
            status: 400,
            code: "VALIDATION_ERROR",
        },
        Case {
            name: "unknown licenseId",
            body: json!({"licenseId": "lic_unknown"}),
            status: 404,
            code: "LICENSE_NOT_FOUND",
        },
        Case {
            name: "unknown licenseKey",
            body: json!({"licenseKey": "TT-AAAA-AAAA-AAAA-AAAA"}),
            status: 404,
            code: "LICENSE_NOT_FOUND",
        },
    ];
    let before = licenses_snapshot(&f.srv);
    for c in cases {
        let a = f.srv.post(REVOKE, &f.admin, c.body).await;
        assert_eq!(a.status, c.status, "case {}: {}", c.name, a.body);
        a.assert_error(c.status, c.code);
        assert_eq!(
            licenses_snapshot(&f.srv),
            before,
            "case {}: nothing changed",
            c.name
        );
    }
}

#[tokio::test]
async fn revoked_license_is_refused_by_activate_and_renew() {
    let f = Fixture::start().await;
    let license = f.license(json!({})).await;
    let key = str_field(&license, "key");
    let r = f
        .srv
        .post(REVOKE, &f.admin, json!({"licenseKey": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    f.srv
        .activate(&f.admin, key, "machine-0001")
        .await
        .assert_error(400, "LICENSE_REVOKED");
    f.srv
        .post(
            RENEW,
            &f.admin,
            json!({"licenseKey": key, "validUntil": rfc3339_in_days(30)}),
        )
        .await
        .assert_error(400, "LICENSE_REVOKED");
    let id = str_field(&license, "id");
    assert_eq!(
        license_column(&f.srv, id, "status").as_deref(),
        Some("REVOKED")
    );
    assert_eq!(
        license_column(&f.srv, id, "valid_until"),
        None,
        "renew changed nothing"
    );
}

// ---- renew --------------------------------------------------------------------------------

#[tokio::test]
async fn renew_moves_valid_until_by_id_or_key() {
    let f = Fixture::start().await;
    let license = f.license(json!({"validUntil": rfc3339_in_days(10)})).await;
    let id = str_field(&license, "id");
    let key = str_field(&license, "key");
    struct Case {
        name: &'static str,
        target: Value,
        days: i64,
    }
    let cases = [
        Case {
            name: "by licenseId",
            target: json!({"licenseId": id}),
            days: 365,
        },
        Case {
            name: "by licenseKey",
            target: json!({"licenseKey": key}),
            days: 730,
        },
    ];
    for c in cases {
        let until = rfc3339_in_days(c.days);
        let mut body = c.target;
        body["validUntil"] = json!(until);
        let a = f.srv.post(RENEW, &f.admin, body).await;
        assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
        assert_eq!(a.body["success"], true);
        assert_eq!(a.body["license"]["id"], id);
        assert_eq!(a.body["license"]["status"], "ACTIVE");
        assert_eq!(
            parse_time(&a.body["license"]["validUntil"]),
            parse_time(&json!(until)),
            "case {}",
            c.name
        );
    }
}

#[tokio::test]
async fn renew_makes_an_expired_license_active_again() {
    let f = Fixture::start().await;
    let license = f.license(json!({"validUntil": rfc3339_in_days(10)})).await;
    let id = str_field(&license, "id");
    let key = str_field(&license, "key");
    let past_ms = (OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000;
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET status = 'EXPIRED', valid_until = ?2 WHERE id = ?1",
            rusqlite::params![id, past_ms],
        )
        .expect("expire the license");
    f.srv
        .activate(&f.admin, key, "machine-0001")
        .await
        .assert_error(400, "LICENSE_EXPIRED");

    let until = rfc3339_in_days(90);
    let a = f
        .srv
        .post(
            RENEW,
            &f.admin,
            json!({"licenseId": id, "validUntil": until}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["license"]["status"], "ACTIVE");
    assert_eq!(
        parse_time(&a.body["license"]["validUntil"]),
        parse_time(&json!(until))
    );
    assert_eq!(
        license_column(&f.srv, id, "status").as_deref(),
        Some("ACTIVE")
    );
    let act = f.srv.activate(&f.admin, key, "machine-0001").await;
    assert_eq!(act.status, 200, "a renewed license activates: {}", act.body);
}

#[tokio::test]
async fn renew_refuses_a_past_or_missing_valid_until() {
    let f = Fixture::start().await;
    let license = f.license(json!({"validUntil": rfc3339_in_days(10)})).await;
    let id = str_field(&license, "id");
    struct Case {
        name: &'static str,
        body: Value,
        status: u16,
        code: &'static str,
        mentions: &'static str,
    }
    let cases = [
        Case {
            name: "validUntil in the past",
            body: json!({"licenseId": id, "validUntil": rfc3339_in_days(-1)}),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "validUntil",
        },
        Case {
            name: "validUntil missing",
            body: json!({"licenseId": id}),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "validUntil",
        },
        Case {
            name: "no license named",
            body: json!({"validUntil": rfc3339_in_days(10)}),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions: "licenseId or licenseKey",
        },
        Case {
            name: "unknown license",
            body: json!({"licenseId": "lic_unknown", "validUntil": rfc3339_in_days(10)}),
            status: 404,
            code: "LICENSE_NOT_FOUND",
            mentions: "",
        },
    ];
    let before = licenses_snapshot(&f.srv);
    for c in cases {
        let a = f.srv.post(RENEW, &f.admin, c.body).await;
        assert_eq!(a.status, c.status, "case {}: {}", c.name, a.body);
        a.assert_error(c.status, c.code);
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(c.mentions),
            "case {}: message {message:?} names {:?}",
            c.name,
            c.mentions
        );
        assert_eq!(
            licenses_snapshot(&f.srv),
            before,
            "case {}: nothing changed",
            c.name
        );
    }
}

// ---- by-order -----------------------------------------------------------------------------

#[tokio::test]
async fn by_order_returns_only_that_orders_licenses_of_the_callers_tenant() {
    let f = Fixture::start().await;
    f.srv.create_tenant("other");
    f.srv.create_product("other", "app");
    let their_key = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let mut ours = Vec::new();
    for _ in 0..3 {
        ours.push(f.license(json!({"orderId": "order-42"})).await["id"].clone());
    }
    f.license(json!({"orderId": "order-43"})).await;
    f.srv
        .create_license(&their_key, "app", json!({"orderId": "order-42"}))
        .await;

    let a = f
        .srv
        .get("/api/v1/license/by-order/order-42", &f.admin)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["success"], true);
    let ids: Vec<Value> = a.body["licenses"]
        .as_array()
        .expect("licenses")
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(
        ids, ours,
        "this tenant's licenses of this order, oldest first"
    );
    assert_eq!(
        a.body["pagination"],
        json!({"page": 1, "limit": 50, "total": 3, "totalPages": 1})
    );
    let first = &a.body["licenses"][0];
    for field in [
        "id",
        "key",
        "product",
        "type",
        "tier",
        "status",
        "maxActivations",
        "validUntil",
        "createdAt",
    ] {
        assert!(
            first.get(field).is_some(),
            "LicenseCreated field {field}: {first}"
        );
    }

    let none = f
        .srv
        .get("/api/v1/license/by-order/order-unknown", &f.admin)
        .await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.body["licenses"], json!([]));
    assert_eq!(none.body["pagination"]["total"], 0);
}

#[tokio::test]
async fn by_order_pages_with_page_and_limit() {
    let f = Fixture::start().await;
    for _ in 0..5 {
        f.license(json!({"orderId": "order-5"})).await;
    }
    struct Case {
        name: &'static str,
        query: &'static str,
        items: usize,
        pagination: Value,
    }
    let cases = [
        Case {
            name: "last partial page",
            query: "?limit=2&page=3",
            items: 1,
            pagination: json!({"page": 3, "limit": 2, "total": 5, "totalPages": 3}),
        },
        Case {
            name: "first page",
            query: "?limit=2",
            items: 2,
            pagination: json!({"page": 1, "limit": 2, "total": 5, "totalPages": 3}),
        },
        Case {
            name: "past the end",
            query: "?limit=2&page=4",
            items: 0,
            pagination: json!({"page": 4, "limit": 2, "total": 5, "totalPages": 3}),
        },
        Case {
            name: "max limit",
            query: "?limit=500",
            items: 5,
            pagination: json!({"page": 1, "limit": 500, "total": 5, "totalPages": 1}),
        },
    ];
    let all = f
        .srv
        .get("/api/v1/license/by-order/order-5?limit=5", &f.admin)
        .await;
    let all_ids: Vec<Value> = all.body["licenses"]
        .as_array()
        .expect("licenses")
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(all_ids.len(), 5);
    for c in cases {
        let a = f
            .srv
            .get(
                &format!("/api/v1/license/by-order/order-5{}", c.query),
                &f.admin,
            )
            .await;
        assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
        let items = a.body["licenses"].as_array().expect("licenses");
        assert_eq!(items.len(), c.items, "case {}: {}", c.name, a.body);
        assert_eq!(a.body["pagination"], c.pagination, "case {}", c.name);
    }
    let last = f
        .srv
        .get("/api/v1/license/by-order/order-5?limit=2&page=3", &f.admin)
        .await;
    assert_eq!(
        last.body["licenses"][0]["id"], all_ids[4],
        "page 3 holds the fifth license"
    );
}

#[tokio::test]
async fn by_order_refuses_out_of_range_page_and_limit() {
    let f = Fixture::start().await;
    f.license(json!({"orderId": "order-1"})).await;
    struct Case {
        name: &'static str,
        query: &'static str,
        mentions: &'static str,
    }
    let cases = [
        Case {
            name: "limit 0",
            query: "?limit=0",
            mentions: "limit",
        },
        Case {
            name: "limit 501",
            query: "?limit=501",
            mentions: "limit",
        },
        Case {
            name: "page 0",
            query: "?page=0",
            mentions: "page",
        },
        Case {
            name: "page not a number",
            query: "?page=two",
            mentions: "page",
        },
        Case {
            name: "negative limit",
            query: "?limit=-1",
            mentions: "limit",
        },
    ];
    for c in cases {
        let a = f
            .srv
            .get(
                &format!("/api/v1/license/by-order/order-1{}", c.query),
                &f.admin,
            )
            .await;
        assert_eq!(a.status, 400, "case {}: {}", c.name, a.body);
        a.assert_error(400, "VALIDATION_ERROR");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(c.mentions),
            "case {}: message names {}: {}",
            c.name,
            c.mentions,
            a.body
        );
    }
}

#[tokio::test]
async fn by_order_needs_read_only_scope() {
    let f = Fixture::start().await;
    f.license(json!({"orderId": "order-1"})).await;
    let create_key = f.srv.create_api_key("default", Scope::CreateLicense, None);
    let a = f
        .srv
        .get("/api/v1/license/by-order/order-1", &create_key)
        .await;
    a.assert_error(403, "FORBIDDEN");
    assert!(a.body.get("licenses").is_none(), "{}", a.body);
    let read_key = f.srv.create_api_key("default", Scope::ReadOnly, None);
    let b = f
        .srv
        .get("/api/v1/license/by-order/order-1", &read_key)
        .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["pagination"]["total"], 1);
}

#[tokio::test]
async fn by_order_with_a_product_restricted_key_lists_only_that_products_licenses() {
    let f = Fixture::start().await;
    let second = f.srv.create_product("default", "second");
    f.license(json!({"orderId": "order-9"})).await;
    let theirs = f
        .srv
        .create_license(&f.admin, &second.id, json!({"orderId": "order-9"}))
        .await;
    let restricted = f
        .srv
        .create_api_key("default", Scope::ReadOnly, Some(&second.id));
    let a = f
        .srv
        .get("/api/v1/license/by-order/order-9", &restricted)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["pagination"]["total"], 1, "{}", a.body);
    assert_eq!(a.body["licenses"][0]["id"], theirs["id"]);
}

// ---- products -------------------------------------------------------------------------------

#[tokio::test]
async fn products_lists_only_active_products_of_the_callers_tenant_with_public_keys() {
    let f = Fixture::start().await;
    let second = f.srv.create_product("default", "second");
    let old = f.srv.create_product("default", "old");
    f.srv
        .db()
        .execute(
            "UPDATE products SET status = 'DISCONTINUED' WHERE id = ?1",
            [&old.id],
        )
        .expect("discontinue");
    f.srv.create_tenant("other");
    f.srv.create_product("other", "theirs");

    let a = f.srv.get(PRODUCTS, &f.admin).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["success"], true);
    let listed = a.body["products"].as_array().expect("products");
    let slugs: Vec<&str> = listed.iter().map(|p| str_field(p, "slug")).collect();
    assert_eq!(
        slugs,
        ["app", "second"],
        "active products of this tenant only"
    );
    assert_eq!(
        a.body["pagination"],
        json!({"page": 1, "limit": 50, "total": 2, "totalPages": 1})
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for (p, product) in listed.iter().zip([&f.product, &second]) {
        assert_eq!(p["id"], product.id.as_str());
        assert_eq!(p["status"], "ACTIVE");
        assert_eq!(
            str_field(p, "publicKey"),
            b64.encode(&product.signing_public_key),
            "publicKey of {}",
            product.slug
        );
    }

    let paged = f
        .srv
        .get(&format!("{PRODUCTS}?limit=1&page=2"), &f.admin)
        .await;
    assert_eq!(paged.status, 200, "{}", paged.body);
    assert_eq!(paged.body["products"][0]["slug"], "second");
    assert_eq!(
        paged.body["pagination"],
        json!({"page": 2, "limit": 1, "total": 2, "totalPages": 2})
    );
}

#[tokio::test]
async fn products_with_a_product_restricted_key_shows_only_that_product() {
    let f = Fixture::start().await;
    let second = f.srv.create_product("default", "second");
    let restricted = f
        .srv
        .create_api_key("default", Scope::CreateLicense, Some(&second.id));
    let a = f.srv.get(PRODUCTS, &restricted).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let slugs: Vec<&str> = a.body["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| str_field(p, "slug"))
        .collect();
    assert_eq!(slugs, ["second"]);
    assert_eq!(a.body["pagination"]["total"], 1);

    let elsewhere = f
        .srv
        .post(
            CREATE,
            &restricted,
            json!({"productId": f.product.id, "customerEmail": "a@example.com"}),
        )
        .await;
    elsewhere.assert_error(404, "PRODUCT_NOT_FOUND");
    assert_eq!(license_count(&f.srv), 0);
}

#[tokio::test]
async fn products_needs_create_license_scope() {
    let f = Fixture::start().await;
    let validate_key = f.srv.create_api_key("default", Scope::ValidateOnly, None);
    let a = f.srv.get(PRODUCTS, &validate_key).await;
    a.assert_error(403, "FORBIDDEN");
    assert!(a.body.get("products").is_none());
}

// ---- public key and health ------------------------------------------------------------------

#[tokio::test]
async fn public_key_is_served_without_an_api_key_by_product_and_tenant() {
    let f = Fixture::start().await;
    f.srv.create_tenant("other");
    let theirs = f.srv.create_product("other", "app");
    let b64 = base64::engine::general_purpose::STANDARD;
    struct Case {
        name: &'static str,
        query: &'static str,
        expect: Result<Vec<u8>, (u16, &'static str)>,
    }
    let cases = [
        Case {
            name: "default tenant",
            query: "?product=app",
            expect: Ok(f.product.signing_public_key.clone()),
        },
        Case {
            name: "named default tenant",
            query: "?product=app&tenant=default",
            expect: Ok(f.product.signing_public_key.clone()),
        },
        Case {
            name: "other tenant",
            query: "?product=app&tenant=other",
            expect: Ok(theirs.signing_public_key.clone()),
        },
        Case {
            name: "unknown product",
            query: "?product=nope",
            expect: Err((404, "PRODUCT_NOT_FOUND")),
        },
        Case {
            name: "unknown tenant",
            query: "?product=app&tenant=nope",
            expect: Err((404, "PRODUCT_NOT_FOUND")),
        },
        Case {
            name: "missing product",
            query: "",
            expect: Err((400, "VALIDATION_ERROR")),
        },
        Case {
            name: "only a tenant",
            query: "?tenant=other",
            expect: Err((400, "VALIDATION_ERROR")),
        },
    ];
    for c in cases {
        let a = f
            .srv
            .call(
                Method::GET,
                &format!("/api/v1/updates/public-key{}", c.query),
                None,
                None,
            )
            .await;
        match c.expect {
            Ok(raw) => {
                assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
                let key = b64
                    .decode(str_field(&a.body, "public_key"))
                    .unwrap_or_else(|e| panic!("case {}: base64: {e}", c.name));
                assert_eq!(key.len(), 32, "case {}: an Ed25519 key", c.name);
                assert_eq!(key, raw, "case {}: the product's key", c.name);
            }
            Err((status, code)) => {
                assert_eq!(a.status, status, "case {}: {}", c.name, a.body);
                a.assert_error(status, code);
            }
        }
    }
}

#[tokio::test]
async fn health_answers_ok_without_an_api_key() {
    let srv = TestServer::start().await;
    let a = srv.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["status"], "ok");
    assert_eq!(a.body["version"], env!("CARGO_PKG_VERSION"));
    parse_time(&a.body["timestamp"]);
}

// ---- scopes and authentication --------------------------------------------------------------

/// Every API-key endpoint with the least scope it needs.
const SCOPED_ENDPOINTS: [(&str, Scope); 11] = [
    ("activate", Scope::ValidateOnly),
    ("validate", Scope::ValidateOnly),
    ("deactivate", Scope::ValidateOnly),
    ("heartbeat", Scope::ValidateOnly),
    ("check", Scope::ValidateOnly),
    ("create", Scope::CreateLicense),
    ("create-bulk", Scope::CreateLicense),
    ("revoke", Scope::CreateLicense),
    ("renew", Scope::CreateLicense),
    ("products", Scope::CreateLicense),
    ("by-order", Scope::ReadOnly),
];

/// Calls `endpoint` so that it succeeds for an allowed caller: `license_key` is an active
/// license of `product_id`, activated on `machine-0001`, with order id `order-1`.
async fn call_endpoint(
    srv: &TestServer,
    endpoint: &str,
    api_key: Option<&str>,
    license_key: &str,
    product_id: &str,
) -> Answer {
    let post = |path: &str, body: Value| {
        let path = path.to_owned();
        async move { srv.call(Method::POST, &path, api_key, Some(body)).await }
    };
    match endpoint {
        "activate" => {
            post(
                "/api/v1/license/activate",
                json!({"licenseKey": license_key, "machineId": "machine-0002"}),
            )
            .await
        }
        "validate" => {
            post(
                "/api/v1/license/validate",
                json!({"licenseKey": license_key, "machineId": "machine-0001"}),
            )
            .await
        }
        "deactivate" => {
            post(
                "/api/v1/license/deactivate",
                json!({"licenseKey": license_key, "machineId": "machine-0001"}),
            )
            .await
        }
        "heartbeat" => {
            post(
                "/api/v1/license/heartbeat",
                json!({"key": license_key, "machineId": "machine-0001"}),
            )
            .await
        }
        "check" => {
            srv.call(
                Method::GET,
                &format!("/api/v1/license/check/{license_key}"),
                api_key,
                None,
            )
            .await
        }
        "create" => {
            post(
                CREATE,
                json!({"productId": product_id, "customerEmail": "a@example.com"}),
            )
            .await
        }
        "create-bulk" => {
            post(
                BULK,
                json!({"licenses": [{"productId": product_id, "customerEmail": "a@example.com"}]}),
            )
            .await
        }
        "revoke" => post(REVOKE, json!({"licenseKey": license_key})).await,
        "renew" => {
            post(
                RENEW,
                json!({"licenseKey": license_key, "validUntil": rfc3339_in_days(30)}),
            )
            .await
        }
        "products" => srv.call(Method::GET, PRODUCTS, api_key, None).await,
        "by-order" => {
            srv.call(
                Method::GET,
                "/api/v1/license/by-order/order-1",
                api_key,
                None,
            )
            .await
        }
        other => panic!("unknown endpoint {other}"),
    }
}

#[tokio::test]
async fn scope_matrix_allows_each_endpoint_from_its_scope_up_and_forbids_below() {
    let f = Fixture::start().await;
    for (endpoint, needs) in SCOPED_ENDPOINTS {
        for scope in SCOPES {
            let name = format!("{endpoint} with {scope}");
            let license = f.license(json!({"orderId": "order-1"})).await;
            let key = str_field(&license, "key");
            let act = f.srv.activate(&f.admin, key, "machine-0001").await;
            assert_eq!(act.status, 200, "{name}: setup activation: {}", act.body);
            let api_key = f.srv.create_api_key("default", scope, None);
            let before = licenses_snapshot(&f.srv);

            let a = call_endpoint(&f.srv, endpoint, Some(&api_key), key, &f.product.id).await;

            if is_scope_at_least(scope, needs) {
                assert!(
                    a.status.is_success(),
                    "{name}: allowed, got {}: {}",
                    a.status,
                    a.body
                );
                assert_eq!(a.body["success"], true, "{name}: {}", a.body);
            } else {
                assert_eq!(a.status, 403, "{name}: forbidden: {}", a.body);
                a.assert_error(403, "FORBIDDEN");
                assert_eq!(
                    licenses_snapshot(&f.srv),
                    before,
                    "{name}: a forbidden call changes nothing"
                );
            }
        }
    }
}

#[tokio::test]
async fn missing_wrong_or_revoked_api_key_is_401_on_every_endpoint() {
    let f = Fixture::start().await;
    let license = f.license(json!({"orderId": "order-1"})).await;
    let key = str_field(&license, "key");
    let act = f.srv.activate(&f.admin, key, "machine-0001").await;
    assert_eq!(act.status, 200, "{}", act.body);
    let revoked = f.srv.create_api_key("default", Scope::FullAdmin, None);
    let prefix = &revoked[..11];
    let conn = f.srv.db();
    let tenant_id: String = conn
        .query_row("SELECT id FROM tenants WHERE slug = 'default'", [], |r| {
            r.get(0)
        })
        .expect("default tenant");
    assert!(
        keyward::domain::api_keys::repo::revoke(&conn, &tenant_id, prefix, 1).expect("revoke key")
    );
    let mut tampered = f.admin.clone();
    let last = tampered.pop().expect("non-empty key");
    tampered.push(if last == 'a' { 'b' } else { 'a' });

    struct Case {
        name: &'static str,
        key: Option<String>,
    }
    let cases = [
        Case {
            name: "missing",
            key: None,
        },
        Case {
            name: "garbage",
            key: Some("not-a-key".into()),
        },
        Case {
            name: "well-formed but unknown",
            key: Some(format!("kw_zzzzzzzz_{}", "z".repeat(32))),
        },
        Case {
            name: "right prefix, wrong secret",
            key: Some(tampered),
        },
        Case {
            name: "revoked",
            key: Some(revoked.clone()),
        },
    ];
    let before = licenses_snapshot(&f.srv);
    for c in cases {
        for (endpoint, _) in SCOPED_ENDPOINTS {
            let a = call_endpoint(&f.srv, endpoint, c.key.as_deref(), key, &f.product.id).await;
            assert_eq!(a.status, 401, "{} key on {endpoint}: {}", c.name, a.body);
            a.assert_error(401, "UNAUTHORIZED");
        }
    }
    assert_eq!(
        licenses_snapshot(&f.srv),
        before,
        "unauthenticated calls change nothing"
    );
}

// ---- tenant isolation -----------------------------------------------------------------------

#[tokio::test]
async fn another_tenants_key_finds_none_of_this_tenants_licenses() {
    let f = Fixture::start().await;
    let license = f
        .license(json!({"orderId": "order-1", "validUntil": rfc3339_in_days(10)}))
        .await;
    let id = str_field(&license, "id");
    let key = str_field(&license, "key");
    let act = f.srv.activate(&f.admin, key, "machine-0001").await;
    assert_eq!(act.status, 200, "{}", act.body);
    f.srv.create_tenant("other");
    f.srv.create_product("other", "app");
    let theirs = f.srv.create_api_key("other", Scope::FullAdmin, None);

    enum Expect {
        Error(u16, &'static str),
        ValidateNotFound,
        EmptyOrder,
    }
    struct Case {
        name: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
        expect: Expect,
    }
    let until = rfc3339_in_days(100);
    let machine = |k: &str| json!({"licenseKey": k, "machineId": "machine-0001"});
    let cases = [
        Case {
            name: "revoke by id",
            method: Method::POST,
            path: REVOKE.into(),
            body: Some(json!({"licenseId": id})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "revoke by key",
            method: Method::POST,
            path: REVOKE.into(),
            body: Some(json!({"licenseKey": key})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "renew by id",
            method: Method::POST,
            path: RENEW.into(),
            body: Some(json!({"licenseId": id, "validUntil": until})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "renew by key",
            method: Method::POST,
            path: RENEW.into(),
            body: Some(json!({"licenseKey": key, "validUntil": until})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "check",
            method: Method::GET,
            path: format!("/api/v1/license/check/{key}"),
            body: None,
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "validate",
            method: Method::POST,
            path: "/api/v1/license/validate".into(),
            body: Some(machine(key)),
            expect: Expect::ValidateNotFound,
        },
        Case {
            name: "activate",
            method: Method::POST,
            path: "/api/v1/license/activate".into(),
            body: Some(json!({"licenseKey": key, "machineId": "machine-0002"})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "deactivate",
            method: Method::POST,
            path: "/api/v1/license/deactivate".into(),
            body: Some(machine(key)),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "heartbeat",
            method: Method::POST,
            path: "/api/v1/license/heartbeat".into(),
            body: Some(json!({"key": key, "machineId": "machine-0001"})),
            expect: Expect::Error(404, "LICENSE_NOT_FOUND"),
        },
        Case {
            name: "by-order",
            method: Method::GET,
            path: "/api/v1/license/by-order/order-1".into(),
            body: None,
            expect: Expect::EmptyOrder,
        },
        Case {
            name: "create with this tenant's product id",
            method: Method::POST,
            path: CREATE.into(),
            body: Some(json!({"productId": f.product.id, "customerEmail": "a@example.com"})),
            expect: Expect::Error(404, "PRODUCT_NOT_FOUND"),
        },
    ];
    let before = licenses_snapshot(&f.srv);
    for c in cases {
        let a = f.srv.call(c.method, &c.path, Some(&theirs), c.body).await;
        match c.expect {
            Expect::Error(status, code) => {
                assert_eq!(a.status, status, "case {}: {}", c.name, a.body);
                a.assert_error(status, code);
            }
            Expect::ValidateNotFound => {
                assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
                assert_eq!(a.body["valid"], false, "case {}", c.name);
                assert_eq!(a.body["code"], "NOT_FOUND", "case {}", c.name);
                assert_eq!(
                    a.body["license"],
                    Value::Null,
                    "case {}: nothing leaks",
                    c.name
                );
            }
            Expect::EmptyOrder => {
                assert_eq!(a.status, 200, "case {}: {}", c.name, a.body);
                assert_eq!(a.body["licenses"], json!([]), "case {}", c.name);
                assert_eq!(a.body["pagination"]["total"], 0, "case {}", c.name);
            }
        }
        assert_eq!(
            licenses_snapshot(&f.srv),
            before,
            "case {}: nothing changed",
            c.name
        );
    }
    let machines: i64 = f
        .srv
        .db()
        .query_row(
            "SELECT COUNT(*) FROM activations WHERE license_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("count activations");
    assert_eq!(
        machines, 1,
        "the activation survived the other tenant's calls"
    );
}

// ---- rate limits ----------------------------------------------------------------------------

#[tokio::test]
async fn per_ip_limit_answers_429_with_retry_after_and_limit_headers() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(5, 0, 0)).await;
    for i in 0..5 {
        let a = srv.call(Method::GET, "/api/health", None, None).await;
        assert_eq!(a.status, 200, "request {} of 5: {}", i + 1, a.body);
    }
    let product = srv.create_product("default", "app");
    let key = srv.create_api_key("default", Scope::FullAdmin, None);
    struct Case {
        name: &'static str,
        method: Method,
        path: &'static str,
        body: Option<Value>,
    }
    let cases = [
        Case {
            name: "health",
            method: Method::GET,
            path: "/api/health",
            body: None,
        },
        Case {
            name: "create",
            method: Method::POST,
            path: CREATE,
            body: Some(json!({"productId": product.id, "customerEmail": "a@example.com"})),
        },
        Case {
            name: "products",
            method: Method::GET,
            path: PRODUCTS,
            body: None,
        },
    ];
    for c in cases {
        let a = srv.call(c.method, c.path, Some(&key), c.body).await;
        a.assert_error(429, "RATE_LIMITED");
        let retry_after: u64 = a
            .header("Retry-After")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("case {}: Retry-After header: {:?}", c.name, a.headers));
        assert!(
            retry_after >= 1,
            "case {}: Retry-After {retry_after}",
            c.name
        );
        assert_eq!(a.header("X-RateLimit-Limit"), Some("5"), "case {}", c.name);
    }
    assert_eq!(license_count(&srv), 0, "a limited create creates nothing");
}

#[tokio::test]
async fn per_api_key_limit_answers_429_for_that_key_only() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(0, 3, 0)).await;
    srv.create_product("default", "app");
    let busy = srv.create_api_key("default", Scope::CreateLicense, None);
    let quiet = srv.create_api_key("default", Scope::CreateLicense, None);
    for i in 0..3 {
        let a = srv.get(PRODUCTS, &busy).await;
        assert_eq!(a.status, 200, "request {} of 3: {}", i + 1, a.body);
    }
    let limited = srv.get(PRODUCTS, &busy).await;
    limited.assert_error(429, "RATE_LIMITED");
    assert!(
        limited
            .header("Retry-After")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        limited.headers
    );
    assert_eq!(limited.header("X-RateLimit-Limit"), Some("3"));
    let other = srv.get(PRODUCTS, &quiet).await;
    assert_eq!(
        other.status, 200,
        "another key has its own allowance: {}",
        other.body
    );
}

#[tokio::test]
async fn repeated_wrong_api_keys_are_cut_off_with_429() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(0, 0, 3)).await;
    srv.create_product("default", "app");
    let good = srv.create_api_key("default", Scope::CreateLicense, None);
    for i in 0..3 {
        let wrong = format!("kw_guess{i:04}_{}", "x".repeat(32));
        let a = srv.get(PRODUCTS, &wrong).await;
        a.assert_error(401, "UNAUTHORIZED");
    }
    let fourth = srv
        .get(PRODUCTS, &format!("kw_guess9999_{}", "x".repeat(32)))
        .await;
    fourth.assert_error(429, "RATE_LIMITED");
    assert!(
        fourth
            .header("Retry-After")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        fourth.headers
    );
    let ok = srv.get(PRODUCTS, &good).await;
    assert_eq!(ok.status, 200, "a right key is not cut off: {}", ok.body);
}

// ---- bad input ------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_is_refused_with_the_envelope_never_500_and_changes_nothing() {
    let f = Fixture::start().await;
    let license = f
        .license(json!({"orderId": "order-1", "validUntil": rfc3339_in_days(10)}))
        .await;
    let id = str_field(&license, "id").to_owned();
    let json_ct = "application/json";
    struct Case {
        name: &'static str,
        method: Method,
        path: String,
        content_type: &'static str,
        body: Vec<u8>,
        status: u16,
        code: &'static str,
        mentions: &'static str,
    }
    let case = |name, path: &str, body: &str, status, code, mentions| Case {
        name,
        method: Method::POST,
        path: path.to_owned(),
        content_type: json_ct,
        body: body.as_bytes().to_vec(),
        status,
        code,
        mentions,
    };
    let oversized = {
        let pad = "x".repeat(300 * 1024);
        format!(r#"{{"productId":"app","customerEmail":"a@example.com","customerName":"{pad}"}}"#)
    };
    let mut cases = vec![
        // create
        case(
            "create: malformed JSON",
            CREATE,
            r#"{"productId": "app","#,
            400,
            "VALIDATION_ERROR",
            "",
        ),
        case(
            "create: empty body",
            CREATE,
            "",
            400,
            "VALIDATION_ERROR",
            "",
        ),
        case(
            "create: array body",
            CREATE,
            "[]",
            400,
            "VALIDATION_ERROR",
            "",
        ),
        case(
            "create: null body",
            CREATE,
            "null",
            400,
            "VALIDATION_ERROR",
            "",
        ),
        case(
            "create: missing customerEmail",
            CREATE,
            r#"{"productId": "app"}"#,
            400,
            "VALIDATION_ERROR",
            "customerEmail",
        ),
        case(
            "create: missing productId",
            CREATE,
            r#"{"customerEmail": "a@example.com"}"#,
            400,
            "VALIDATION_ERROR",
            "productId",
        ),
        case(
            "create: maxActivations a string",
            CREATE,
            r#"{"productId": "app", "customerEmail": "a@example.com", "maxActivations": "three"}"#,
            400,
            "VALIDATION_ERROR",
            "maxActivations",
        ),
        case(
            "create: maxActivations negative",
            CREATE,
            r#"{"productId": "app", "customerEmail": "a@example.com", "maxActivations": -1}"#,
            400,
            "VALIDATION_ERROR",
            "maxActivations",
        ),
        case(
            "create: productId a number",
            CREATE,
            r#"{"productId": 7, "customerEmail": "a@example.com"}"#,
            400,
            "VALIDATION_ERROR",
            "productId",
        ),
        case(
            "create: validUntil not a date",
            CREATE,
            r#"{"productId": "app", "customerEmail": "a@example.com", "validUntil": "tomorrow"}"#,
            400,
            "VALIDATION_ERROR",
            "validUntil",
        ),
        case(
            "create: metadata an array",
            CREATE,
            r#"{"productId": "app", "customerEmail": "a@example.com", "metadata": [1, 2]}"#,
            400,
            "VALIDATION_ERROR",
            "metadata",
        ),
        case(
            "create: metadata key of 65 characters",
            CREATE,
            &format!(
                r#"{{"productId": "app", "customerEmail": "a@example.com", "metadata": {{"{}": 1}}}}"#,
                "m".repeat(65)
            ),
            400,
            "VALIDATION_ERROR",
            "metadata",
        ),
        case(
            "create: oversized body",
            CREATE,
            &oversized,
            413,
            "PAYLOAD_TOO_LARGE",
            "",
        ),
        // create-bulk
        case(
            "create-bulk: licenses not an array",
            BULK,
            r#"{"licenses": {"productId": "app"}}"#,
            400,
            "VALIDATION_ERROR",
            "licenses",
        ),
        case(
            "create-bulk: missing licenses",
            BULK,
            "{}",
            400,
            "VALIDATION_ERROR",
            "licenses",
        ),
        case(
            "create-bulk: an item without customerEmail",
            BULK,
            r#"{"licenses": [{"productId": "app", "customerEmail": "a@example.com"}, {"productId": "app"}]}"#,
            400,
            "VALIDATION_ERROR",
            "customerEmail",
        ),
        // revoke
        case(
            "revoke: malformed JSON",
            REVOKE,
            "{licenseId}",
            400,
            "VALIDATION_ERROR",
            "",
        ),
        case(
            "revoke: licenseId a number",
            REVOKE,
            r#"{"licenseId": 12}"#,
            400,
            "VALIDATION_ERROR",
            "licenseId",
        ),
        case(
            "revoke: licenseKey an object",
            REVOKE,
            r#"{"licenseKey": {"k": 1}}"#,
            400,
            "VALIDATION_ERROR",
            "licenseKey",
        ),
        case(
            "revoke: reason of 501 characters",
            REVOKE,
            &format!(
                r#"{{"licenseId": "{id}", "reason": "{}"}}"#,
                "r".repeat(501)
            ),
            400,
            "VALIDATION_ERROR",
            "reason",
        ),
        // renew
        case(
            "renew: missing validUntil",
            RENEW,
            &format!(r#"{{"licenseId": "{id}"}}"#),
            400,
            "VALIDATION_ERROR",
            "validUntil",
        ),
        case(
            "renew: validUntil a number",
            RENEW,
            &format!(r#"{{"licenseId": "{id}", "validUntil": 1893456000}}"#),
            400,
            "VALIDATION_ERROR",
            "validUntil",
        ),
        case(
            "renew: truncated JSON",
            RENEW,
            r#"{"licenseId": "#,
            400,
            "VALIDATION_ERROR",
            "",
        ),
    ];
    for (name, path) in [
        ("create: text/plain", CREATE),
        ("revoke: text/plain", REVOKE),
        ("renew: text/plain", RENEW),
        ("create-bulk: text/plain", BULK),
    ] {
        cases.push(Case {
            name,
            method: Method::POST,
            path: path.to_owned(),
            content_type: "text/plain",
            body: format!(
                r#"{{"licenseId": "{id}", "productId": "app", "customerEmail": "a@example.com"}}"#
            )
            .into_bytes(),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            mentions: "",
        });
    }
    for (name, query, mentions) in [
        ("by-order: limit not a number", "order-1?limit=ten", "limit"),
        ("by-order: page negative", "order-1?page=-2", "page"),
        ("by-order: limit too large", "order-1?limit=100000", "limit"),
        (
            "by-order: limit beyond u32",
            "order-1?limit=99999999999",
            "limit",
        ),
    ] {
        cases.push(Case {
            name,
            method: Method::GET,
            path: format!("/api/v1/license/by-order/{query}"),
            content_type: json_ct,
            body: Vec::new(),
            status: 400,
            code: "VALIDATION_ERROR",
            mentions,
        });
    }
    cases.push(Case {
        name: "by-order: orderId of 256 characters",
        method: Method::GET,
        path: format!("/api/v1/license/by-order/{}", "o".repeat(256)),
        content_type: json_ct,
        body: Vec::new(),
        status: 400,
        code: "VALIDATION_ERROR",
        mentions: "orderId",
    });

    let before = licenses_snapshot(&f.srv);
    for c in cases {
        let a = f
            .srv
            .call_raw(c.method, &c.path, Some(&f.admin), c.content_type, c.body)
            .await;
        assert!(
            !a.status.is_server_error(),
            "case {}: never 5xx: {} {}",
            c.name,
            a.status,
            a.body
        );
        assert_eq!(a.status, c.status, "case {}: {}", c.name, a.body);
        assert_eq!(a.error_code(), c.code, "case {}: {}", c.name, a.body);
        a.assert_error(c.status, c.code);
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(c.mentions),
            "case {}: the message {message:?} names {:?}",
            c.name,
            c.mentions
        );
        assert_eq!(
            licenses_snapshot(&f.srv),
            before,
            "case {}: nothing changed",
            c.name
        );
    }
}

// ---- OpenAPI --------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_lists_every_operation_with_every_status_it_can_return() {
    let srv = TestServer::start().await;
    let a = srv.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        a.headers
    );
    let doc = &a.body;
    assert!(doc["openapi"].is_string(), "an OpenAPI document: {doc}");
    const BODY: [u16; 8] = [400, 401, 403, 404, 413, 415, 429, 500];
    const QUERY: [u16; 6] = [400, 401, 403, 404, 429, 500];
    struct Case {
        path: &'static str,
        method: &'static str,
        codes: Vec<u16>,
    }
    let with = |ok: &[u16], errors: &[u16]| ok.iter().chain(errors).copied().collect::<Vec<_>>();
    let cases = [
        Case {
            path: "/api/v1/license/activate",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/validate",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/deactivate",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/heartbeat",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/check/{key}",
            method: "get",
            codes: with(&[200], &QUERY),
        },
        Case {
            path: "/api/v1/license/create",
            method: "post",
            codes: with(&[200, 201, 422], &BODY),
        },
        Case {
            path: "/api/v1/license/create-bulk",
            method: "post",
            codes: with(&[201, 207], &BODY),
        },
        Case {
            path: "/api/v1/license/revoke",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/renew",
            method: "post",
            codes: with(&[200], &BODY),
        },
        Case {
            path: "/api/v1/license/by-order/{orderId}",
            method: "get",
            codes: with(&[200], &QUERY),
        },
        Case {
            path: "/api/v1/products",
            method: "get",
            codes: with(&[200], &QUERY),
        },
        Case {
            path: "/api/v1/updates/public-key",
            method: "get",
            codes: vec![200, 400, 404, 429, 500],
        },
        Case {
            path: "/api/health",
            method: "get",
            codes: vec![200, 429, 503],
        },
    ];
    for c in cases {
        let name = format!("{} {}", c.method.to_uppercase(), c.path);
        let op = &doc["paths"][c.path][c.method];
        assert!(op.is_object(), "{name} is documented");
        let declared: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} declares responses"))
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        for code in c.codes {
            assert!(
                declared.contains(&code),
                "{name} declares {code}; it declares {declared:?}"
            );
        }
    }
    // Each `{name}` of a path template is a declared path parameter of that name, so Swagger
    // UI and generated clients can fill it in.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let vars = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
        for var in vars {
            for (method, op) in item.as_object().expect("path item") {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path" && p["name"] == var));
                assert!(
                    declared,
                    "{method} {path}: {{{var}}} is a declared path parameter"
                );
            }
        }
    }
    for path in ["/api/v1/license/create", "/api/v1/license/create-bulk"] {
        let params = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "X-Idempotency-Key" && p["in"] == "header"),
            "{path} documents X-Idempotency-Key: {params:?}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let created = &schemas["LicenseCreated"]["properties"];
    for field in [
        "id",
        "key",
        "product",
        "type",
        "tier",
        "status",
        "maxActivations",
        "validUntil",
        "createdAt",
    ] {
        assert!(
            created.get(field).is_some(),
            "LicenseCreated schema has {field}: {created}"
        );
    }
}

#[tokio::test]
async fn swagger_ui_is_served_as_html() {
    let srv = TestServer::start().await;
    let resp = srv
        .client
        .get(format!("{}/api/docs", srv.url))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "content type {content_type:?}"
    );
    let html = resp.text().await.expect("body");
    assert!(
        html.to_lowercase().contains("swagger"),
        "the Swagger UI page"
    );
}
