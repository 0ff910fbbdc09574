//! Selling: payment endpoints (admin API), the providers' webhooks signed with each one's own
//! scheme (`tests/fixtures/payments/`, real-shaped events), their effects on licenses, and
//! everything that must change nothing.

use keyward::domain::api_keys::Scope;
use keyward::domain::payments::Provider;
use keyward::domain::payments::signature::sign;
use keyward::domain::tenants;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRETS: [(Provider, &str); 3] = [
    (Provider::Stripe, "whsec_test_5f1b2c3d4e5f6a7b8c9d"),
    (Provider::Paddle, "pdl_ntfset_01hv8x2test_secret"),
    (Provider::LemonSqueezy, "ls-signing-secret-1234"),
];

fn secret(p: Provider) -> &'static str {
    SECRETS
        .iter()
        .find(|(q, _)| *q == p)
        .map(|(_, s)| *s)
        .unwrap()
}

/// A fixture with its future times filled in: `__PERIOD_END__` (RFC 3339) at `days` from now,
/// Stripe's `9000000001` at `days` and `9000000002` at `days + 1`.
fn fixture(name: &str, days: i64) -> String {
    let path = format!(
        "{}/tests/fixtures/payments/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let end = period_end_secs(days);
    let rfc = rfc3339(time::OffsetDateTime::from_unix_timestamp(end).unwrap());
    text.replace("__PERIOD_END__", &rfc)
        .replace("9000000001", &end.to_string())
        .replace("9000000002", &period_end_secs(days + 1).to_string())
}

fn period_end_secs(days: i64) -> i64 {
    // Whole seconds, so that a stored expiry compares exactly.
    (now_ms() / 1000 / 60) * 60 + days * 86_400
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// provider, fixture, mapped id, mapping, licenses, e-mail, order id, expiry (days)
type PurchaseCase = (
    Provider,
    &'static str,
    &'static str,
    Value,
    usize,
    &'static str,
    &'static str,
    Option<i64>,
);
/// name, path segment, endpoint, body, headers, status, code, message fragment
type DeliveryCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<u8>,
    Vec<(&'a str, String)>,
    u16,
    &'a str,
    &'a str,
);
/// name, request, credential, status, code, message fragment
type AdminCase<'a> = (
    &'a str,
    (Method, String, Option<Value>),
    &'a str,
    u16,
    &'a str,
    &'a str,
);

struct Shop {
    srv: TestServer,
    admin_key: String,
    product_id: String,
}

async fn shop() -> Shop {
    shop_with(|_| {}).await
}

async fn shop_with(tune: impl FnOnce(&mut keyward::config::Config)) -> Shop {
    let srv = TestServer::start_with(tune).await;
    let admin_key = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::FullAdmin, None);
    let product = srv.create_product_with(tenants::DEFAULT_SLUG, "app", |p| {
        p.entitlements = vec!["PRO".into(), "SYNC".into()];
    });
    Shop {
        srv,
        admin_key,
        product_id: product.id,
    }
}

impl Shop {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        send(
            &self.srv,
            method,
            path,
            Cred::ApiKey(&self.admin_key),
            body,
            &[],
        )
        .await
    }

    /// A new endpoint of `provider` with its test secret; its id.
    async fn endpoint(&self, provider: Provider) -> String {
        let a = self
            .admin(
                Method::POST,
                "/api/payment-endpoints",
                Some(json!({"provider": provider.as_str(), "name": "Shop",
                    "secret": secret(provider)})),
            )
            .await;
        assert_status(&a, 201);
        str_field(&a.body["data"]["endpoint"], "id").to_owned()
    }

    async fn map(&self, endpoint: &str, provider_ref: &str, extra: Value) {
        let mut body = json!({"providerRef": provider_ref, "projectId": self.product_id});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = self
            .admin(
                Method::POST,
                &format!("/api/payment-endpoints/{endpoint}/mappings"),
                Some(body),
            )
            .await;
        assert_status(&a, 200);
    }

    /// Posts `body` signed with `provider`'s scheme and its test secret, now.
    async fn deliver(&self, provider: Provider, endpoint: &str, body: &str) -> Answer {
        let header = sign(
            provider,
            secret(provider).as_bytes(),
            body.as_bytes(),
            now_secs(),
        )
        .unwrap();
        self.post_raw(
            provider.path_segment(),
            endpoint,
            body.as_bytes().to_vec(),
            &[(provider.signature_header(), header.as_str())],
        )
        .await
    }

    async fn post_raw(
        &self,
        segment: &str,
        endpoint: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .srv
            .client
            .post(format!(
                "{}/api/payments/{segment}/{endpoint}",
                self.srv.url
            ))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        TestServer::decode(req.send().await.unwrap()).await
    }

    async fn key(&self, id: &str) -> Value {
        let a = self
            .admin(Method::GET, &format!("/api/keys/{id}"), None)
            .await;
        assert_status(&a, 200);
        a.body["data"]["key"].clone()
    }

    async fn timeline(&self, id: &str) -> Vec<Value> {
        let a = self
            .admin(Method::GET, &format!("/api/keys/{id}/payments"), None)
            .await;
        assert_status(&a, 200);
        a.body["data"]["payments"].as_array().unwrap().clone()
    }

    fn order_and_email(&self, id: &str) -> (Option<String>, Option<String>) {
        self.srv
            .db()
            .query_row(
                "SELECT order_id, customer_email FROM licenses WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    fn counts(&self) -> (i64, i64) {
        (
            self.srv.count("SELECT COUNT(*) FROM payment_events", []),
            self.srv.count("SELECT COUNT(*) FROM licenses", []),
        )
    }
}

fn license_ids(a: &Answer) -> Vec<String> {
    a.body["data"]["licenseIds"]
        .as_array()
        .unwrap_or_else(|| panic!("licenseIds in {}", a.body))
        .iter()
        .map(str_of)
        .collect()
}

#[track_caller]
fn assert_outcome(a: &Answer, outcome: &str, effect: &str) {
    assert_status(a, 200);
    assert_eq!(a.body["data"]["outcome"], outcome, "{}", a.body);
    assert_eq!(a.body["data"]["effect"], effect, "{}", a.body);
}

fn expires_secs(key: &Value) -> Option<i64> {
    key["expiresAt"]
        .as_str()
        .map(|_| parse_time(&key["expiresAt"]).unix_timestamp())
}

#[tokio::test]
async fn a_purchase_creates_its_licenses_with_each_provider() {
    // provider, fixture, mapped id, mapping, licenses, e-mail, order id, expiry (days)
    let cases: [PurchaseCase; 4] = [
        (
            Provider::Stripe,
            "stripe_checkout_session_completed",
            "price_1PkMonthlyPro",
            json!({"tier": "PROFESSIONAL", "entitlements": ["PRO"]}),
            1,
            "ana@example.com",
            "cs_test_a1b2c3d4e5f6g7h8",
            None,
        ),
        (
            Provider::Stripe,
            "stripe_checkout_one_time",
            "prod_QbTeam",
            json!({"maxActivations": 5}),
            3,
            "bo@example.com",
            "cs_test_onetime0001",
            None,
        ),
        (
            Provider::Paddle,
            "paddle_transaction_completed",
            "pri_01gsz8x8sawmvhz1pv30nge1ke",
            json!({"licenseType": "SUBSCRIPTION"}),
            2,
            "cy@example.com",
            "txn_01hv8wptq8987qeep44cyrewp9",
            Some(30),
        ),
        (
            Provider::LemonSqueezy,
            "lemonsqueezy_order_created",
            "1",
            json!({"plan": "LIFETIME"}),
            1,
            "dee@example.com",
            "104e18a2-d755-4d4b-80c4-a6c1dcbe1c10",
            None,
        ),
    ];
    for (provider, name, price, mapping, count, email, order, days) in cases {
        let shop = shop().await;
        let endpoint = shop.endpoint(provider).await;
        shop.map(&endpoint, price, mapping.clone()).await;
        let body = fixture(name, 30);
        let a = shop.deliver(provider, &endpoint, &body).await;
        assert_outcome(&a, "APPLIED", "PURCHASE");
        assert_eq!(a.body["data"]["replayed"], false);
        let ids = license_ids(&a);
        assert_eq!(ids.len(), count, "{name}: {}", a.body);
        for id in &ids {
            let key = shop.key(id).await;
            assert_eq!(key["status"], "ACTIVE", "{name}");
            assert_eq!(
                expires_secs(&key),
                days.map(period_end_secs),
                "{name}: {key}"
            );
            if let Some(n) = mapping.get("maxActivations") {
                assert_eq!(&key["maxActivations"], n);
            }
            if mapping.get("entitlements").is_some() {
                assert_eq!(key["entitlements"], json!(["PRO"]));
            }
            assert_eq!(
                shop.order_and_email(id),
                (Some(order.to_owned()), Some(email.to_owned())),
                "{name}"
            );
            let timeline = shop.timeline(id).await;
            assert_eq!(timeline.len(), 1, "{name}");
            assert_eq!(timeline[0]["effect"], "PURCHASE");
            assert_eq!(timeline[0]["provider"], provider.as_str());
        }
        // The issue is audited with the provider and the event id.
        let audited = shop.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.create'
             AND actor = ?1 AND json_extract(detail, '$.payment.provider') = ?2
             AND json_extract(detail, '$.payment.eventId') = ?3",
            [
                format!("payment:{endpoint}"),
                provider.as_str().to_owned(),
                str_of(&a.body["data"]["eventId"]),
            ],
        );
        assert_eq!(audited as usize, count, "{name}");

        // A redelivery answers the first outcome and changes nothing.
        let before = shop.counts();
        let again = shop.deliver(provider, &endpoint, &body).await;
        assert_outcome(&again, "APPLIED", "PURCHASE");
        assert_eq!(again.body["data"]["replayed"], true);
        let (mut first, mut replayed) = (ids.clone(), license_ids(&again));
        first.sort();
        replayed.sort();
        assert_eq!(replayed, first);
        assert_eq!(
            shop.counts(),
            before,
            "{name}: a redelivery changes nothing"
        );
    }
}

/// Every line of an order gets its licenses: two lines of 60 seats are 120 keys (the bound
/// on quantity is per line, not per order).
#[tokio::test]
async fn an_order_of_several_lines_gets_every_lines_licenses() {
    let shop = shop().await;
    let s = Provider::Stripe;
    let endpoint = shop.endpoint(s).await;
    shop.map(&endpoint, "price_1PkTeamSeat", json!({"maxActivations": 1}))
        .await;
    let mut event: Value = serde_json::from_str(&fixture("stripe_checkout_one_time", 30)).unwrap();
    let lines = &mut event["data"]["object"]["line_items"]["data"];
    let mut line = lines[0].clone();
    line["quantity"] = json!(60);
    *lines = json!([line.clone(), line]);
    let a = shop.deliver(s, &endpoint, &event.to_string()).await;
    assert_outcome(&a, "APPLIED", "PURCHASE");
    assert_eq!(license_ids(&a).len(), 120, "{}", a.body);
    assert_eq!(shop.counts().1, 120);
}

#[tokio::test]
async fn stripe_renewal_cancellation_refund_and_disputes_follow_the_payment() {
    let shop = shop().await;
    let endpoint = shop.endpoint(Provider::Stripe).await;
    shop.map(&endpoint, "price_1PkMonthlyPro", json!({})).await;
    shop.map(&endpoint, "price_1PkTeamSeat", json!({})).await;
    let s = Provider::Stripe;

    let bought = shop
        .deliver(
            s,
            &endpoint,
            &fixture("stripe_checkout_session_completed", 30),
        )
        .await;
    let sub = license_ids(&bought).remove(0);
    assert_eq!(expires_secs(&shop.key(&sub).await), None);

    let renewal = fixture("stripe_invoice_paid", 30);
    let a = shop.deliver(s, &endpoint, &renewal).await;
    assert_outcome(&a, "APPLIED", "RENEWAL");
    assert_eq!(license_ids(&a), std::slice::from_ref(&sub));
    assert_eq!(
        expires_secs(&shop.key(&sub).await),
        Some(period_end_secs(30))
    );
    let again = shop.deliver(s, &endpoint, &renewal).await;
    assert_eq!(again.body["data"]["replayed"], true);

    let a = shop
        .deliver(
            s,
            &endpoint,
            &fixture("stripe_subscription_updated_cancel", 30),
        )
        .await;
    assert_outcome(&a, "APPLIED", "CANCELLATION");
    let key = shop.key(&sub).await;
    assert_eq!(expires_secs(&key), Some(period_end_secs(31)));
    assert_eq!(key["status"], "ACTIVE", "usable until the period's end");

    // A one-time order of three seats: a dispute suspends them, winning it reinstates them, a
    // refund revokes them.
    let team = shop
        .deliver(s, &endpoint, &fixture("stripe_checkout_one_time", 30))
        .await;
    let seats = license_ids(&team);
    assert_eq!(seats.len(), 3);
    for (name, effect, status) in [
        ("stripe_dispute_created", "DISPUTE_OPENED", "SUSPENDED"),
        ("stripe_dispute_closed_won", "DISPUTE_WON", "ACTIVE"),
        ("stripe_charge_refunded", "REFUND", "REVOKED"),
    ] {
        let a = shop.deliver(s, &endpoint, &fixture(name, 30)).await;
        assert_outcome(&a, "APPLIED", effect);
        for id in &seats {
            assert_eq!(shop.key(id).await["status"], status, "{name}");
        }
    }
    let timeline = shop.timeline(&seats[0]).await;
    let effects: Vec<&str> = timeline
        .iter()
        .map(|e| e["effect"].as_str().unwrap())
        .collect();
    assert_eq!(
        effects,
        ["PURCHASE", "DISPUTE_OPENED", "DISPUTE_WON", "REFUND"]
    );
    assert_eq!(
        shop.key(&sub).await["status"],
        "ACTIVE",
        "another payment's license"
    );
    let revoked = shop.srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'license.revoke'
         AND json_extract(detail, '$.payment.eventId') = 'evt_3PkRefund000001'",
        [],
    );
    assert_eq!(revoked, 3);

    // A won dispute does not bring back a license a refund revoked.
    let won_again =
        fixture("stripe_dispute_closed_won", 30).replace("evt_1PkDisputeWon001", "evt_x");
    let a = shop.deliver(s, &endpoint, &won_again).await;
    assert_outcome(&a, "APPLIED", "DISPUTE_WON");
    assert_eq!(shop.key(&seats[0]).await["status"], "REVOKED");
}

#[tokio::test]
async fn paddle_renewal_cancellation_chargeback_and_refund() {
    let shop = shop().await;
    let p = Provider::Paddle;
    let endpoint = shop.endpoint(p).await;
    shop.map(&endpoint, "pro_01gsz4t5hdjse780zja8vvr7jg", json!({}))
        .await;
    let bought = shop
        .deliver(p, &endpoint, &fixture("paddle_transaction_completed", 30))
        .await;
    assert_outcome(&bought, "APPLIED", "PURCHASE");
    let seats = license_ids(&bought);
    assert_eq!(seats.len(), 2);

    let steps: [(&str, i64, &str, &str, Option<i64>); 5] = [
        (
            "paddle_transaction_renewal",
            60,
            "RENEWAL",
            "ACTIVE",
            Some(60),
        ),
        (
            "paddle_subscription_canceled",
            45,
            "CANCELLATION",
            "ACTIVE",
            Some(45),
        ),
        (
            "paddle_adjustment_chargeback",
            45,
            "DISPUTE_OPENED",
            "SUSPENDED",
            Some(45),
        ),
        (
            "paddle_adjustment_chargeback_reverse",
            45,
            "DISPUTE_WON",
            "ACTIVE",
            Some(45),
        ),
        (
            "paddle_adjustment_refund",
            45,
            "REFUND",
            "REVOKED",
            Some(45),
        ),
    ];
    for (name, days, effect, status, expires) in steps {
        let a = shop.deliver(p, &endpoint, &fixture(name, days)).await;
        assert_outcome(&a, "APPLIED", effect);
        for id in &seats {
            let key = shop.key(id).await;
            assert_eq!(key["status"], status, "{name}");
            assert_eq!(expires_secs(&key), expires.map(period_end_secs), "{name}");
        }
    }
    assert_eq!(shop.timeline(&seats[1]).await.len(), 6);
}

#[tokio::test]
async fn lemon_squeezy_subscription_cancellation_and_refund() {
    let shop = shop().await;
    let l = Provider::LemonSqueezy;
    let endpoint = shop.endpoint(l).await;
    shop.map(&endpoint, "1", json!({"plan": "MONTHLY"})).await;
    let bought = shop
        .deliver(l, &endpoint, &fixture("lemonsqueezy_order_created", 30))
        .await;
    let id = license_ids(&bought).remove(0);
    let key = shop.key(&id).await;
    assert_eq!(
        key["plan"], "MONTHLY",
        "the clock starts at the first activation"
    );

    for (name, days, effect, status) in [
        ("lemonsqueezy_subscription_created", 30, "RENEWAL", "ACTIVE"),
        (
            "lemonsqueezy_subscription_cancelled",
            20,
            "CANCELLATION",
            "ACTIVE",
        ),
        ("lemonsqueezy_order_refunded", 20, "REFUND", "REVOKED"),
    ] {
        let a = shop.deliver(l, &endpoint, &fixture(name, days)).await;
        assert_outcome(&a, "APPLIED", effect);
        let key = shop.key(&id).await;
        assert_eq!(key["status"], status, "{name}");
        assert_eq!(
            expires_secs(&key),
            Some(period_end_secs(days.max(20))),
            "{name}"
        );
    }
}

#[tokio::test]
async fn unmapped_prices_and_unknown_payments_are_stored_and_flagged() {
    let shop = shop().await;
    let s = Provider::Stripe;
    let endpoint = shop.endpoint(s).await;
    let a = shop
        .deliver(
            s,
            &endpoint,
            &fixture("stripe_checkout_session_completed", 30),
        )
        .await;
    assert_outcome(&a, "UNMAPPED", "PURCHASE");
    assert_eq!(a.body["data"]["flagged"], true);
    assert!(str_of(&a.body["data"]["message"]).contains("price_1PkMonthlyPro"));
    let a = shop
        .deliver(s, &endpoint, &fixture("stripe_invoice_paid", 30))
        .await;
    assert_outcome(&a, "LICENSE_NOT_FOUND", "RENEWAL");
    // An event type Keyward does not act on is stored, not flagged.
    let other = json!({"id": "evt_other", "object": "event", "type": "customer.created",
        "created": 1722500000, "data": {"object": {"id": "cus_1", "object": "customer"}}});
    let a = shop.deliver(s, &endpoint, &other.to_string()).await;
    assert_outcome(&a, "IGNORED", "NONE");
    assert_eq!(shop.counts(), (3, 0));

    let list = shop
        .admin(
            Method::GET,
            &format!("/api/payment-endpoints/{endpoint}/events?flagged=true"),
            None,
        )
        .await;
    assert_status(&list, 200);
    let mut flagged: Vec<&str> = list.body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    flagged.sort();
    assert_eq!(flagged, ["LICENSE_NOT_FOUND", "UNMAPPED"]);
    let all = shop
        .admin(
            Method::GET,
            &format!("/api/payment-endpoints/{endpoint}/events"),
            None,
        )
        .await;
    assert_eq!(all.body["data"]["pagination"]["total"], 3);
    let listed = shop
        .admin(Method::GET, "/api/payment-endpoints", None)
        .await;
    assert_eq!(listed.body["data"]["endpoints"][0]["flagged"], 2);
    assert_eq!(
        shop.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'payment.event.flagged'",
            []
        ),
        2
    );
}

#[tokio::test]
async fn bad_deliveries_are_refused_and_change_nothing() {
    let shop = shop_with(|c| c.max_body_bytes = 64 * 1024).await;
    let stripe = shop.endpoint(Provider::Stripe).await;
    let paddle = shop.endpoint(Provider::Paddle).await;
    let lemon = shop.endpoint(Provider::LemonSqueezy).await;
    shop.map(&stripe, "price_1PkMonthlyPro", json!({})).await;
    let body = fixture("stripe_checkout_session_completed", 30);
    let key = secret(Provider::Stripe).as_bytes();
    let now = now_secs();
    let good = sign(Provider::Stripe, key, body.as_bytes(), now).unwrap();
    let wrong = sign(
        Provider::Stripe,
        b"whsec_not_the_secret",
        body.as_bytes(),
        now,
    )
    .unwrap();
    let stale = sign(Provider::Stripe, key, body.as_bytes(), now - 301).unwrap();
    let paddle_body = fixture("paddle_transaction_completed", 30);
    let paddle_stale = sign(
        Provider::Paddle,
        secret(Provider::Paddle).as_bytes(),
        paddle_body.as_bytes(),
        now - 30,
    )
    .unwrap();
    let malformed = b"{\"id\": \"evt_1\", \"type\":".to_vec();
    let malformed_sig = sign(Provider::Stripe, key, &malformed, now).unwrap();
    let array_sig = sign(Provider::Stripe, key, b"[1,2]", now).unwrap();
    let no_id = br#"{"type":"checkout.session.completed","data":{"object":{}}}"#.to_vec();
    let no_id_sig = sign(Provider::Stripe, key, &no_id, now).unwrap();
    let big = vec![b' '; 65 * 1024];
    let big_sig = sign(Provider::Stripe, key, &big, now).unwrap();
    let ls_sig = sign(
        Provider::LemonSqueezy,
        b"other-secret-123",
        body.as_bytes(),
        now,
    )
    .unwrap();
    // name, path segment, endpoint, body, headers, status, code, message fragment
    let cases: Vec<DeliveryCase> = vec![
        (
            "wrong secret",
            "stripe",
            &stripe,
            body.clone().into_bytes(),
            vec![("Stripe-Signature", wrong)],
            401,
            "UNAUTHORIZED",
            "does not match",
        ),
        (
            "missing header",
            "stripe",
            &stripe,
            body.clone().into_bytes(),
            vec![],
            401,
            "UNAUTHORIZED",
            "Missing Stripe-Signature",
        ),
        (
            "stale timestamp",
            "stripe",
            &stripe,
            body.clone().into_bytes(),
            vec![("Stripe-Signature", stale)],
            401,
            "UNAUTHORIZED",
            "300 s",
        ),
        (
            "paddle stale after 5 s",
            "paddle",
            &paddle,
            paddle_body.clone().into_bytes(),
            vec![("Paddle-Signature", paddle_stale)],
            401,
            "UNAUTHORIZED",
            "5 s",
        ),
        (
            "malformed header",
            "stripe",
            &stripe,
            body.clone().into_bytes(),
            vec![("Stripe-Signature", "v1=abc".into())],
            400,
            "VALIDATION_ERROR",
            "t=<timestamp>",
        ),
        (
            "tampered body",
            "stripe",
            &stripe,
            body.replace("ana@", "eve@").into_bytes(),
            vec![("Stripe-Signature", good.clone())],
            401,
            "UNAUTHORIZED",
            "does not match",
        ),
        (
            "another provider's header",
            "lemonsqueezy",
            &lemon,
            body.clone().into_bytes(),
            vec![("Stripe-Signature", good.clone())],
            401,
            "UNAUTHORIZED",
            "X-Signature",
        ),
        (
            "wrong lemon squeezy secret",
            "lemonsqueezy",
            &lemon,
            body.clone().into_bytes(),
            vec![("X-Signature", ls_sig)],
            401,
            "UNAUTHORIZED",
            "does not match",
        ),
        (
            "wrong provider for the endpoint",
            "paddle",
            &stripe,
            body.clone().into_bytes(),
            vec![("Paddle-Signature", good.clone())],
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "unknown endpoint",
            "stripe",
            "payep_nope",
            body.clone().into_bytes(),
            vec![("Stripe-Signature", good.clone())],
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "malformed JSON",
            "stripe",
            &stripe,
            malformed,
            vec![("Stripe-Signature", malformed_sig)],
            400,
            "VALIDATION_ERROR",
            "not a JSON event",
        ),
        (
            "not an object",
            "stripe",
            &stripe,
            b"[1,2]".to_vec(),
            vec![("Stripe-Signature", array_sig)],
            400,
            "VALIDATION_ERROR",
            "JSON object",
        ),
        (
            "no event id",
            "stripe",
            &stripe,
            no_id,
            vec![("Stripe-Signature", no_id_sig)],
            400,
            "VALIDATION_ERROR",
            "no id",
        ),
        (
            "oversize",
            "stripe",
            &stripe,
            big,
            vec![("Stripe-Signature", big_sig)],
            413,
            "PAYLOAD_TOO_LARGE",
            "larger than",
        ),
    ];
    for (name, segment, endpoint, body, headers, status, code, needle) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = shop.post_raw(segment, endpoint, body, &headers).await;
        assert_kv_error_naming(&a, status, code, needle);
        assert_eq!(shop.counts(), (0, 0), "{name} changes nothing");
    }
    // The genuine one still works afterwards.
    let a = shop
        .post_raw(
            "stripe",
            &stripe,
            body.into_bytes(),
            &[("Stripe-Signature", &good)],
        )
        .await;
    assert_outcome(&a, "APPLIED", "PURCHASE");
}

#[tokio::test]
async fn wrong_signatures_spend_the_failed_credential_allowance() {
    let shop = shop_with(|c| c.rate_limits = rate_limits(0, 0, 2)).await;
    let endpoint = shop.endpoint(Provider::LemonSqueezy).await;
    let headers = [("X-Signature", "0".repeat(64))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let a = shop
            .post_raw("lemonsqueezy", &endpoint, b"{}".to_vec(), &headers)
            .await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let a = shop
        .post_raw("lemonsqueezy", &endpoint, b"{}".to_vec(), &headers)
        .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
    assert!(a.header("Retry-After").is_some());
}

#[tokio::test]
async fn endpoints_are_managed_by_admins_of_their_tenant() {
    let shop = shop().await;
    let srv = &shop.srv;
    srv.create_tenant("other");
    let other_key = srv.create_api_key("other", Scope::FullAdmin, None);
    let restricted = srv.create_api_key(
        tenants::DEFAULT_SLUG,
        Scope::FullAdmin,
        Some(&shop.product_id),
    );
    let read_only = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::ReadOnly, None);
    let other_product = srv.create_product("other", "theirs");

    let created = shop
        .admin(
            Method::POST,
            "/api/payment-endpoints",
            Some(json!({"provider": "STRIPE", "name": "  Stripe live  ",
                "secret": "whsec_abcdefgh12345678"})),
        )
        .await;
    assert_status(&created, 201);
    let ep = &created.body["data"]["endpoint"];
    let id = str_field(ep, "id").to_owned();
    assert_eq!(ep["name"], "Stripe live");
    assert_eq!(ep["receivingPath"], format!("/api/payments/stripe/{id}"));
    assert!(
        !created.raw.windows(8).any(|w| w == b"abcdefgh"),
        "the secret is never returned"
    );
    let stored: Vec<u8> = srv
        .db()
        .query_row("SELECT secret_sealed FROM payment_endpoints", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        !stored.windows(8).any(|w| w == b"abcdefgh"),
        "stored sealed"
    );

    let path = format!("/api/payment-endpoints/{id}");
    let mappings = format!("{path}/mappings");
    let bad = |body: Value| (Method::POST, mappings.clone(), Some(body));
    // name, request, credential, status, code, message fragment
    let cases: Vec<AdminCase> = vec![
        (
            "unknown provider",
            (
                Method::POST,
                "/api/payment-endpoints".into(),
                Some(json!({"provider": "PAYPAL", "name": "x", "secret": "whsec_abcdefgh"})),
            ),
            "admin",
            400,
            "VALIDATION_ERROR",
            "provider",
        ),
        (
            "short secret",
            (
                Method::POST,
                "/api/payment-endpoints".into(),
                Some(json!({"provider": "PADDLE", "name": "x", "secret": "short"})),
            ),
            "admin",
            400,
            "VALIDATION_ERROR",
            "secret",
        ),
        (
            "secret with spaces",
            (
                Method::POST,
                "/api/payment-endpoints".into(),
                Some(json!({"provider": "PADDLE", "name": "x", "secret": "has a space in it"})),
            ),
            "admin",
            400,
            "VALIDATION_ERROR",
            "secret",
        ),
        (
            "missing name",
            (
                Method::POST,
                "/api/payment-endpoints".into(),
                Some(json!({"provider": "PADDLE", "secret": "whsec_abcdefgh"})),
            ),
            "admin",
            400,
            "VALIDATION_ERROR",
            "name",
        ),
        (
            "name of the wrong type",
            (
                Method::POST,
                "/api/payment-endpoints".into(),
                Some(json!({"provider": "PADDLE", "name": 5, "secret": "whsec_abcdefgh"})),
            ),
            "admin",
            400,
            "VALIDATION_ERROR",
            "name",
        ),
        (
            "nothing to change",
            (Method::PATCH, path.clone(), Some(json!({}))),
            "admin",
            400,
            "VALIDATION_ERROR",
            "nothing to change",
        ),
        (
            "unknown project",
            bad(json!({"providerRef": "price_1", "projectId": "prod_nope"})),
            "admin",
            404,
            "NOT_FOUND",
            "roject",
        ),
        (
            "another tenant's project",
            bad(json!({"providerRef": "price_1",
            "projectId": other_product.id})),
            "admin",
            404,
            "NOT_FOUND",
            "roject",
        ),
        (
            "unknown entitlement",
            bad(json!({"providerRef": "price_1",
            "projectId": shop.product_id, "entitlements": ["GOLD"]})),
            "admin",
            400,
            "VALIDATION_ERROR",
            "GOLD",
        ),
        (
            "zero activations",
            bad(json!({"providerRef": "price_1",
            "projectId": shop.product_id, "maxActivations": 0})),
            "admin",
            400,
            "VALIDATION_ERROR",
            "maxActivations",
        ),
        (
            "custom plan",
            bad(json!({"providerRef": "price_1",
            "projectId": shop.product_id, "plan": "CUSTOM"})),
            "admin",
            400,
            "VALIDATION_ERROR",
            "CUSTOM",
        ),
        (
            "ref with spaces",
            bad(json!({"providerRef": "price 1",
            "projectId": shop.product_id})),
            "admin",
            400,
            "VALIDATION_ERROR",
            "providerRef",
        ),
        (
            "unknown mapping",
            (Method::DELETE, format!("{mappings}/price_none"), None),
            "admin",
            404,
            "NOT_FOUND",
            "apping",
        ),
        (
            "unknown endpoint",
            (
                Method::GET,
                "/api/payment-endpoints/payep_nope".into(),
                None,
            ),
            "admin",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "other tenant reads",
            (Method::GET, path.clone(), None),
            "other",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "other tenant deletes",
            (Method::DELETE, path.clone(), None),
            "other",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "other tenant's events",
            (Method::GET, format!("{path}/events"), None),
            "other",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "product-restricted key",
            (Method::GET, "/api/payment-endpoints".into(), None),
            "restricted",
            403,
            "FORBIDDEN",
            "restricted",
        ),
        (
            "read-only key",
            (Method::GET, "/api/payment-endpoints".into(), None),
            "read_only",
            403,
            "FORBIDDEN",
            "FULL_ADMIN",
        ),
        (
            "no credential",
            (Method::GET, "/api/payment-endpoints".into(), None),
            "none",
            401,
            "UNAUTHORIZED",
            "Authentication",
        ),
    ];
    for (name, (method, p, body), who, status, code, needle) in cases {
        let cred = match who {
            "admin" => Cred::ApiKey(&shop.admin_key),
            "other" => Cred::ApiKey(&other_key),
            "restricted" => Cred::ApiKey(&restricted),
            "read_only" => Cred::ApiKey(&read_only),
            _ => Cred::None,
        };
        let a = send(srv, method, &p, cred, body, &[]).await;
        assert_kv_error_naming(&a, status, code, needle);
        let _ = name;
    }
    let malformed = srv
        .call_raw(
            Method::POST,
            &mappings,
            Some(&shop.admin_key),
            "application/json",
            b"{".to_vec(),
        )
        .await;
    assert_kv_error(&malformed, 400, "VALIDATION_ERROR");
    assert_eq!(srv.count("SELECT COUNT(*) FROM payment_mappings", []), 0);
    assert_eq!(srv.count("SELECT COUNT(*) FROM payment_endpoints", []), 1);

    // The other tenant lists none of ours.
    let theirs = send(
        srv,
        Method::GET,
        "/api/payment-endpoints",
        Cred::ApiKey(&other_key),
        None,
        &[],
    )
    .await;
    assert_eq!(theirs.body["data"]["endpoints"], json!([]));

    shop.map(
        &id,
        "price_1",
        json!({"tier": "BUSINESS", "entitlements": ["PRO", "SYNC"]}),
    )
    .await;
    shop.map(&id, "price_1", json!({"tier": "ENTERPRISE"}))
        .await;
    let got = shop.admin(Method::GET, &path, None).await;
    assert_status(&got, 200);
    let m = &got.body["data"]["mappings"];
    assert_eq!(
        m.as_array().unwrap().len(),
        1,
        "a mapping is replaced, not doubled"
    );
    assert_eq!(m[0]["tier"], "ENTERPRISE");
    assert_eq!(got.body["data"]["endpoint"]["mappings"], 1);

    let renamed = shop
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "Renamed", "secret": "whsec_rolled_123"})),
        )
        .await;
    assert_status(&renamed, 200);
    assert_eq!(renamed.body["data"]["endpoint"]["name"], "Renamed");
    let after: Vec<u8> = srv
        .db()
        .query_row("SELECT secret_sealed FROM payment_endpoints", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_ne!(after, stored, "the secret was replaced");

    // A key of another tenant has no payment timeline to show.
    let theirs = srv.create_api_key("other", Scope::FullAdmin, None);
    let license = srv
        .create_license(&theirs, &other_product.id, json!({}))
        .await;
    let a = shop
        .admin(
            Method::GET,
            &format!("/api/keys/{}/payments", str_field(&license, "id")),
            None,
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");

    let deleted = shop
        .admin(Method::DELETE, &format!("{mappings}/price_1"), None)
        .await;
    assert_eq!(deleted.body["data"]["mappings"], json!([]));
    let gone = shop.admin(Method::DELETE, &path, None).await;
    assert_status(&gone, 200);
    assert_kv_error(
        &shop.admin(Method::GET, &path, None).await,
        404,
        "NOT_FOUND",
    );
    let audited = srv.count(
        "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'payment.%'",
        [],
    );
    assert_eq!(
        audited, 6,
        "create, 2 mappings, rename, mapping delete, delete"
    );
}

/// The official `stripe` package (pinned in test.sh) accepts what Keyward signs and verifies:
/// the scheme is Stripe's own.
#[tokio::test]
async fn the_official_stripe_library_verifies_the_scheme() {
    let body = fixture("stripe_checkout_session_completed", 30);
    let s = secret(Provider::Stripe);
    let header = sign(Provider::Stripe, s.as_bytes(), body.as_bytes(), now_secs()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, &body).unwrap();
    let script = r#"
import sys, stripe
payload = open(sys.argv[1], "rb").read()
event = stripe.Webhook.construct_event(payload, sys.argv[2], sys.argv[3])
print(event["id"], event["type"])
try:
    stripe.Webhook.construct_event(payload + b" ", sys.argv[2], sys.argv[3])
    print("tampered body accepted")
except stripe.SignatureVerificationError:
    print("tampered body refused")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&payload)
        .arg(&header)
        .arg(s)
        .output()
        .expect("python3 runs (test.sh installs the stripe package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stripe.Webhook.construct_event: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "evt_1PkCheckout0001 checkout.session.completed\ntampered body refused"
    );
    // And the server accepts the very same delivery.
    let shop = shop().await;
    let endpoint = shop.endpoint(Provider::Stripe).await;
    let a = shop
        .post_raw(
            "stripe",
            &endpoint,
            body.into_bytes(),
            &[("Stripe-Signature", &header)],
        )
        .await;
    assert_outcome(&a, "UNMAPPED", "PURCHASE");
}

/// Stripe sends a subscription's first `invoice.paid` and its `checkout.session.completed`
/// together, in either order: an invoice that comes first waits (flagged) and gives the
/// license its period when the purchase arrives; a refund of its charge then finds the license.
#[tokio::test]
async fn a_renewal_that_arrives_before_its_purchase_is_applied_with_it() {
    let shop = shop().await;
    let s = Provider::Stripe;
    let endpoint = shop.endpoint(s).await;
    shop.map(&endpoint, "price_1PkMonthlyPro", json!({})).await;
    let early = shop
        .deliver(s, &endpoint, &fixture("stripe_invoice_paid", 30))
        .await;
    assert_outcome(&early, "LICENSE_NOT_FOUND", "RENEWAL");
    let bought = shop
        .deliver(
            s,
            &endpoint,
            &fixture("stripe_checkout_session_completed", 30),
        )
        .await;
    assert_outcome(&bought, "APPLIED", "PURCHASE");
    let id = license_ids(&bought).remove(0);
    assert_eq!(
        expires_secs(&shop.key(&id).await),
        Some(period_end_secs(30))
    );
    let events = shop
        .admin(
            Method::GET,
            &format!("/api/payment-endpoints/{endpoint}/events?flagged=true"),
            None,
        )
        .await;
    assert_eq!(
        events.body["data"]["events"],
        json!([]),
        "nothing flagged now"
    );
    assert_eq!(shop.timeline(&id).await.len(), 2);
    let refund = fixture("stripe_charge_refunded", 30)
        .replace("evt_3PkRefund000001", "evt_refund_renewal")
        .replace("pi_3PkOneTime000001", "pi_3PkRenewal000001")
        .replace("ch_3PkOneTimeCharge", "ch_3PkRenewalCharge1");
    let a = shop.deliver(s, &endpoint, &refund).await;
    assert_outcome(&a, "APPLIED", "REFUND");
    assert_eq!(shop.key(&id).await["status"], "REVOKED");
}

/// A payment's effects announce themselves: a `payment.<effect>` webhook event beside the
/// license events, and for a purchase the key e-mailed to the customer (queued in the same
/// transaction); a redelivered event announces nothing again.
#[tokio::test]
async fn a_purchase_emails_the_key_and_every_effect_is_a_webhook_event() {
    let shop = shop().await;
    let hook = shop
        .admin(
            Method::POST,
            "/api/webhooks/endpoints",
            Some(json!({"url": "https://hooks.example.com/keyward", "eventTypes": ["*"]})),
        )
        .await;
    assert_status(&hook, 201);
    let endpoint = shop.endpoint(Provider::Stripe).await;
    shop.map(&endpoint, "prod_QbTeam", json!({})).await;
    let events = |kind: &str| {
        shop.srv.count(
            "SELECT COUNT(*) FROM webhook_events WHERE type = ?1",
            [kind],
        )
    };
    let mails = |to: &str| {
        shop.srv.count(
            "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'LICENSE_DELIVERED' AND recipient = ?1",
            [to],
        )
    };

    let order = fixture("stripe_checkout_one_time", 30);
    let bought = shop.deliver(Provider::Stripe, &endpoint, &order).await;
    assert_outcome(&bought, "APPLIED", "PURCHASE");
    let seats = license_ids(&bought);
    assert_eq!(seats.len(), 3);
    assert_eq!(events("payment.purchase"), 1);
    assert_eq!(events("license.created"), 3);
    assert_eq!(mails("bo@example.com"), 3, "one message per key");
    let body: String = shop
        .srv
        .db()
        .query_row(
            "SELECT body FROM webhook_events WHERE type = 'payment.purchase'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"]["provider"], "STRIPE", "{body}");
    assert_eq!(body["data"]["licenses"].as_array().map(Vec::len), Some(3));

    let again = shop.deliver(Provider::Stripe, &endpoint, &order).await;
    assert_eq!(again.body["data"]["replayed"], true);
    assert_eq!(
        (events("payment.purchase"), mails("bo@example.com")),
        (1, 3)
    );

    for (name, payment, license, count) in [
        (
            "stripe_dispute_created",
            "payment.dispute_opened",
            "license.suspended",
            3,
        ),
        (
            "stripe_dispute_closed_won",
            "payment.dispute_won",
            "license.reinstated",
            3,
        ),
        (
            "stripe_charge_refunded",
            "payment.refund",
            "license.revoked",
            3,
        ),
    ] {
        let a = shop
            .deliver(Provider::Stripe, &endpoint, &fixture(name, 30))
            .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        assert_eq!(events(payment), 1, "{name}");
        assert_eq!(events(license), count, "{name}");
    }
    assert_eq!(
        mails("bo@example.com"),
        3,
        "only a purchase e-mails the key"
    );

    // The customer view lists the payments of the address, newest first.
    let customer = shop
        .admin(Method::GET, "/api/customers/bo@example.com", None)
        .await;
    assert_status(&customer, 200);
    let kinds: Vec<&str> = customer.body["data"]["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["REFUND", "DISPUTE_WON", "DISPUTE_OPENED", "PURCHASE"],
        "{}",
        customer.body
    );
}

/// A purchase that arrived before its price was mapped waits, flagged UNMAPPED; once the price
/// is mapped, applying the event again does what receiving it would have (the license with its
/// order and customer, the key e-mailed, the audit), once. Events that are not flagged, other
/// tenants' endpoints and lesser credentials are refused as the neighbouring operations are.
#[tokio::test]
async fn a_flagged_event_is_applied_again_once_its_price_is_mapped() {
    let shop = shop().await;
    let srv = &shop.srv;
    let s = Provider::Stripe;
    let endpoint = shop.endpoint(s).await;
    let a = shop
        .deliver(
            s,
            &endpoint,
            &fixture("stripe_checkout_session_completed", 30),
        )
        .await;
    assert_outcome(&a, "UNMAPPED", "PURCHASE");
    let event_id = str_field(&a.body["data"], "eventId").to_owned();
    assert_eq!(event_id, "evt_1PkCheckout0001");
    let apply = format!("/api/payment-endpoints/{endpoint}/events/{event_id}/apply");

    // Still unmapped: answered with the event as it stays, and nothing is made.
    let again = shop.admin(Method::POST, &apply, None).await;
    assert_status(&again, 200);
    assert_eq!(again.body["data"]["event"]["outcome"], "UNMAPPED");
    assert_eq!(again.body["data"]["event"]["flagged"], true);
    assert_eq!(shop.counts(), (1, 0));

    shop.map(
        &endpoint,
        "price_1PkMonthlyPro",
        json!({"tier": "PROFESSIONAL"}),
    )
    .await;
    let applied = shop.admin(Method::POST, &apply, None).await;
    assert_status(&applied, 200);
    let event = &applied.body["data"]["event"];
    assert_eq!(event["outcome"], "APPLIED", "{event}");
    assert_eq!(event["flagged"], false);
    assert_eq!(event["eventId"], event_id);
    assert_eq!(event["provider"], "STRIPE");
    assert_eq!(event["message"], "1 license(s) created");
    let ids: Vec<String> = event["licenseIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(ids.len(), 1, "{event}");
    assert_eq!(
        shop.order_and_email(&ids[0]),
        (
            Some("cs_test_a1b2c3d4e5f6g7h8".to_owned()),
            Some("ana@example.com".to_owned())
        )
    );
    let tier: String = srv
        .db()
        .query_row("SELECT tier FROM licenses WHERE id = ?1", [&ids[0]], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        tier, "PROFESSIONAL",
        "the mapping of now is the one applied"
    );
    let timeline = shop.timeline(&ids[0]).await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["outcome"], "APPLIED");
    // The same row, now APPLIED: nothing is flagged any more.
    assert_eq!(shop.counts(), (1, 1));
    let listed = shop
        .admin(Method::GET, "/api/payment-endpoints", None)
        .await;
    assert_eq!(listed.body["data"]["endpoints"][0]["flagged"], 0);
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'LICENSE_DELIVERED'
             AND recipient = 'ana@example.com'",
            []
        ),
        1,
        "the key is e-mailed as a received purchase's is"
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.create'
             AND json_extract(detail, '$.payment.eventId') = ?1",
            [event_id.as_str()]
        ),
        1
    );
    let audited: Vec<(String, String)> = {
        let db = srv.db();
        let mut stmt = db
            .prepare(
                "SELECT json_extract(detail, '$.previousOutcome'), json_extract(detail, '$.outcome')
                 FROM audit_events WHERE action = 'payment.event.apply'
                 AND json_extract(detail, '$.provider') = 'STRIPE'
                 AND json_extract(detail, '$.eventId') = ?1 ORDER BY id",
            )
            .unwrap();
        stmt.query_map([event_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        audited,
        [
            ("UNMAPPED".to_owned(), "UNMAPPED".to_owned()),
            ("UNMAPPED".to_owned(), "APPLIED".to_owned())
        ]
    );

    // An IGNORED event has nothing to apply.
    let other = json!({"id": "evt_other", "object": "event", "type": "customer.created",
        "created": 1722500000, "data": {"object": {"id": "cus_1", "object": "customer"}}});
    let a = shop.deliver(s, &endpoint, &other.to_string()).await;
    assert_outcome(&a, "IGNORED", "NONE");

    srv.create_tenant("other");
    let other_key = srv.create_api_key("other", Scope::FullAdmin, None);
    let read_only = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::ReadOnly, None);
    let validate_only = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::ValidateOnly, None);
    let restricted = srv.create_api_key(
        tenants::DEFAULT_SLUG,
        Scope::FullAdmin,
        Some(&shop.product_id),
    );
    let post = |path: String| (Method::POST, path, None);
    let events = format!("/api/payment-endpoints/{endpoint}/events");
    // name, request, credential, status, code, message fragment
    let cases: Vec<AdminCase> = vec![
        (
            "applied twice",
            post(apply.clone()),
            "admin",
            409,
            "CONFLICT",
            "is APPLIED already",
        ),
        (
            "an ignored event",
            post(format!("{events}/evt_other/apply")),
            "admin",
            409,
            "CONFLICT",
            "is IGNORED already",
        ),
        (
            "unknown event",
            post(format!("{events}/evt_nope/apply")),
            "admin",
            404,
            "NOT_FOUND",
            "ayment event",
        ),
        (
            "unknown endpoint",
            post(format!(
                "/api/payment-endpoints/payep_nope/events/{event_id}/apply"
            )),
            "admin",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "other tenant",
            post(apply.clone()),
            "other",
            404,
            "NOT_FOUND",
            "ayment endpoint",
        ),
        (
            "read-only key",
            post(apply.clone()),
            "read_only",
            403,
            "FORBIDDEN",
            "FULL_ADMIN",
        ),
        (
            "validate-only key",
            post(apply.clone()),
            "validate_only",
            403,
            "FORBIDDEN",
            "FULL_ADMIN",
        ),
        (
            "product-restricted key",
            post(apply.clone()),
            "restricted",
            403,
            "FORBIDDEN",
            "restricted",
        ),
        (
            "no credential",
            post(apply.clone()),
            "none",
            401,
            "UNAUTHORIZED",
            "Authentication",
        ),
    ];
    for (name, (method, p, body), who, status, code, needle) in cases {
        let cred = match who {
            "admin" => Cred::ApiKey(&shop.admin_key),
            "other" => Cred::ApiKey(&other_key),
            "read_only" => Cred::ApiKey(&read_only),
            "validate_only" => Cred::ApiKey(&validate_only),
            "restricted" => Cred::ApiKey(&restricted),
            _ => Cred::None,
        };
        let a = send(srv, method, &p, cred, body, &[]).await;
        assert_eq!(a.status, status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, code, needle);
    }
    assert_eq!(shop.counts(), (2, 1), "no refusal changed anything");
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'payment.event.apply'",
            []
        ),
        2
    );
}

/// Each provider's purchase ends in the customer's mailbox: the webhook makes the licenses and
/// the outbox worker delivers every key to a real SMTP server (aiosmtpd), once, although the
/// provider delivers the event twice.
#[tokio::test]
async fn each_providers_purchase_arrives_in_the_customers_mailbox() {
    let smtp = crate::mail::SmtpServer::start();
    let shop = shop_with(crate::mail::mail_config).await;
    let a = shop
        .admin(
            Method::PUT,
            "/api/mail/settings",
            Some(
                json!({"host": "127.0.0.1", "port": smtp.port, "security": "none",
                        "fromAddress": "licenses@acme.example", "fromName": "Acme Licensing"}),
            ),
        )
        .await;
    assert_status(&a, 200);
    // provider, fixture, mapped id, mapping, customer, keys bought
    let cases = [
        (
            Provider::Stripe,
            "stripe_checkout_one_time",
            "prod_QbTeam",
            json!({"maxActivations": 5}),
            "bo@example.com",
            3,
        ),
        (
            Provider::Paddle,
            "paddle_transaction_completed",
            "pri_01gsz8x8sawmvhz1pv30nge1ke",
            json!({"licenseType": "SUBSCRIPTION"}),
            "cy@example.com",
            2,
        ),
        (
            Provider::LemonSqueezy,
            "lemonsqueezy_order_created",
            "1",
            json!({"plan": "LIFETIME"}),
            "dee@example.com",
            1,
        ),
    ];
    let mut sent = 0;
    for (provider, name, price, mapping, customer, seats) in cases {
        let endpoint = shop.endpoint(provider).await;
        shop.map(&endpoint, price, mapping).await;
        let body = fixture(name, 30);
        let bought = shop.deliver(provider, &endpoint, &body).await;
        assert_outcome(&bought, "APPLIED", "PURCHASE");
        let again = shop.deliver(provider, &endpoint, &body).await;
        assert_eq!(again.body["data"]["replayed"], true, "{name}");
        sent += seats;
        let messages = smtp.wait_for(sent).await;
        let theirs: Vec<&Value> = messages.iter().filter(|m| m["to"] == customer).collect();
        assert_eq!(theirs.len(), seats, "{name}: one message per key");
        for m in &theirs {
            assert_eq!(m["from"], "Acme Licensing <licenses@acme.example>");
            assert!(str_field(m, "subject").contains("license key"), "{m}");
        }
        for id in license_ids(&bought) {
            let key = shop.key(&id).await;
            let key = str_field(&key, "key");
            let carrying = theirs
                .iter()
                .filter(|m| {
                    str_field(m, "text").contains(key) && str_field(m, "html").contains(key)
                })
                .count();
            assert_eq!(carrying, 1, "{name}: {key} arrives once, in both parts");
        }
    }
    // The worker keeps polling: nothing more arrives.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), sent);
}
