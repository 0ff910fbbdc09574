//! Revocation lists for offline licenses (`GET /api/v1/license/revocations`): every SUSPENDED,
//! BANNED or REVOKED license of a product, signed with the product's key, with a version that
//! grows with every change and survives restarts; the update check carries that version.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use keyward::domain::licenses::{self, LicenseStatus, LicenseTier, LicenseType, NewLicense};
use keyward::domain::products;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A server with product `app` of the default tenant, a FULL_ADMIN key and the public key.
struct Fixture {
    srv: TestServer,
    admin: String,
    product: String,
    public_key: String,
}

async fn fixture() -> Fixture {
    fixture_on(TestServer::start().await).await
}

async fn fixture_on(srv: TestServer) -> Fixture {
    let product = srv.create_product("default", "app");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let public_key = public_key(&srv, "?product=app").await;
    Fixture {
        srv,
        admin,
        product: product.id,
        public_key,
    }
}

async fn public_key(srv: &TestServer, query: &str) -> String {
    let pk = srv
        .call(
            Method::GET,
            &format!("/api/v1/updates/public-key{query}"),
            None,
            None,
        )
        .await;
    assert_eq!(pk.status, StatusCode::OK, "{}", pk.body);
    str_field(&pk.body, "public_key").to_owned()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The list at `query` (e.g. `?product=app`), with its signature checked against `public_key`.
async fn list(srv: &TestServer, query: &str, public_key: &str) -> Answer {
    let a = srv
        .call(
            Method::GET,
            &format!("/api/v1/license/revocations{query}"),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.body);
    let signature = a.header("X-Signature").expect("X-Signature");
    assert!(
        signature_verifies(public_key, &a.raw, signature),
        "{query}: the list's signature verifies with the product's public key"
    );
    a
}

fn version(list: &Answer) -> u64 {
    list.body["version"].as_u64().expect("a version")
}

/// The entry of license `id` on the list, if it is there.
fn entry<'a>(list: &'a Answer, id: &str) -> Option<&'a Value> {
    list.body["revoked"]
        .as_array()
        .expect("revoked is an array")
        .iter()
        .find(|e| e["licenseId"] == id)
}

impl Fixture {
    async fn list(&self) -> Answer {
        list(&self.srv, "?product=app", &self.public_key).await
    }

    /// A new ACTIVE license: (id, key).
    async fn license(&self) -> (String, String) {
        let l = self
            .srv
            .create_license(&self.admin, &self.product, json!({}))
            .await;
        (str_of(&l["id"]), str_of(&l["key"]))
    }

    async fn patch_status(&self, id: &str, status: &str) {
        let a = self
            .srv
            .call(
                Method::PATCH,
                &format!("/api/keys/{id}"),
                Some(&self.admin),
                Some(json!({ "status": status })),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "PATCH {status}: {}", a.body);
    }

    async fn apply(&self, how: How, id: &str) {
        match how {
            How::VendorRevoke => {
                let a = self
                    .srv
                    .post(
                        "/api/v1/license/revoke",
                        &self.admin,
                        json!({"licenseId": id, "reason": "chargeback"}),
                    )
                    .await;
                assert_eq!(a.status, StatusCode::OK, "revoke: {}", a.body);
            }
            How::AdminDelete => {
                let a = self
                    .srv
                    .call(
                        Method::DELETE,
                        &format!("/api/keys/{id}"),
                        Some(&self.admin),
                        None,
                    )
                    .await;
                assert_eq!(a.status, StatusCode::OK, "DELETE: {}", a.body);
            }
            How::AdminStatus(status) => self.patch_status(id, status).await,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum How {
    VendorRevoke,
    AdminDelete,
    AdminStatus(&'static str),
}

#[tokio::test]
async fn each_listed_status_enters_the_list_and_reinstating_leaves_it() {
    let f = fixture().await;
    let empty = f.list().await;
    assert_eq!(
        version(&empty),
        0,
        "a list that never changed: {}",
        empty.body
    );
    assert_eq!(empty.body["revoked"], json!([]));
    assert_eq!(empty.body["product"], "app");
    assert_eq!(empty.body["success"], true);
    assert!(empty.body["issued"].is_string(), "{}", empty.body);
    assert_eq!(empty.header("X-Keyward-Product"), Some(f.product.as_str()));
    assert_eq!(empty.body["pagination"]["total"], 0);

    // (how, status on the list)
    let cases = [
        (How::VendorRevoke, "REVOKED"),
        (How::AdminDelete, "REVOKED"),
        (How::AdminStatus("REVOKED"), "REVOKED"),
        (How::AdminStatus("SUSPENDED"), "SUSPENDED"),
        // BANNED shows as SUSPENDED on the vendor face.
        (How::AdminStatus("BANNED"), "SUSPENDED"),
    ];
    let mut last = 0;
    let mut listed = Vec::new();
    for (how, shown) in cases {
        let (id, key) = f.license().await;
        let before = f.list().await;
        assert!(
            entry(&before, &id).is_none(),
            "{how:?}: ACTIVE is not listed"
        );
        assert_eq!(version(&before), last, "{how:?}: nothing changed yet");
        f.apply(how, &id).await;
        let after = f.list().await;
        assert_eq!(
            version(&after),
            last + 1,
            "{how:?}: one change, one version"
        );
        let e = entry(&after, &id).unwrap_or_else(|| panic!("{how:?}: listed: {}", after.body));
        assert_eq!(e["status"], shown, "{how:?}");
        assert_eq!(e["keySha256"], sha256_hex(&key), "{how:?}");
        assert_eq!(
            e.as_object().map(|o| o.len()),
            Some(4),
            "{how:?}: licenseId, keySha256, revokedAt, status; never the key: {e}"
        );
        assert!(
            !after.body.to_string().contains(&key),
            "{how:?}: the key never appears"
        );
        let revoked_at = parse_time(&e["revokedAt"]);
        assert!(
            (revoked_at.unix_timestamp() - time::OffsetDateTime::now_utc().unix_timestamp()).abs()
                < 60,
            "{how:?}: revokedAt is the change's time: {e}"
        );
        last += 1;
        listed.push(id);
        // Doing it again changes nothing.
        f.apply(how, &listed[listed.len() - 1]).await;
        assert_eq!(
            version(&f.list().await),
            last,
            "{how:?}: a repeat is no change"
        );
    }
    let all = f.list().await;
    assert_eq!(
        all.body["revoked"].as_array().map(Vec::len),
        Some(listed.len())
    );
    assert_eq!(all.body["pagination"]["total"], listed.len());

    // A suspended (or banned) license that is reactivated leaves the list; the version grows.
    for i in [3, 4] {
        f.patch_status(&listed[i], "ACTIVE").await;
        let after = f.list().await;
        assert_eq!(version(&after), last + 1, "reactivating {i}");
        assert!(entry(&after, &listed[i]).is_none(), "reactivated {i} left");
        last += 1;
    }
    // A suspended license that is then revoked stays listed with its new status.
    f.patch_status(&listed[3], "SUSPENDED").await;
    f.apply(How::VendorRevoke, &listed[3]).await;
    let after = f.list().await;
    assert_eq!(
        version(&after),
        last + 2,
        "suspended, then revoked: two changes"
    );
    assert_eq!(
        entry(&after, &listed[3]).expect("listed")["status"],
        "REVOKED"
    );
    last += 2;
    // Expired licenses are not listed: they expire by themselves.
    let (expired, _) = f.license().await;
    f.patch_status(&expired, "EXPIRED").await;
    let after = f.list().await;
    assert_eq!(version(&after), last, "EXPIRED is no change of the list");
    assert!(entry(&after, &expired).is_none());
}

#[tokio::test]
async fn a_status_written_below_the_services_changes_the_list_too() {
    // The abuse policy suspends (and a dismissal reactivates) through the domain's status
    // writer, not through a face: the rule follows the writer, whoever calls it. The whole abuse
    // scenario is in `abuse::policy_suspends_a_shared_license_and_dismissing_reactivates_it`.
    let f = fixture().await;
    let (id, key) = f.license().await;
    {
        let conn = f.srv.db();
        licenses::repo::set_status(&conn, &id, LicenseStatus::Suspended, now_ms()).unwrap();
    }
    let after = f.list().await;
    assert_eq!(version(&after), 1);
    assert_eq!(
        entry(&after, &id).expect("listed")["keySha256"],
        sha256_hex(&key)
    );
    {
        let conn = f.srv.db();
        licenses::repo::set_status(&conn, &id, LicenseStatus::Active, now_ms()).unwrap();
    }
    let after = f.list().await;
    assert_eq!(version(&after), 2);
    assert!(entry(&after, &id).is_none());
}

#[tokio::test]
async fn each_product_and_tenant_has_its_own_list() {
    let f = fixture().await;
    f.srv.create_product("default", "other");
    f.srv.create_tenant("acme");
    let acme_app = f.srv.create_product("acme", "app");
    let acme_admin = f.srv.create_api_key("acme", Scope::FullAdmin, None);
    let other_key = public_key(&f.srv, "?product=other").await;
    let acme_key = public_key(&f.srv, "?product=app&tenant=acme").await;

    let (mine, _) = f.license().await;
    f.apply(How::VendorRevoke, &mine).await;
    let theirs = f
        .srv
        .create_license(&acme_admin, &acme_app.id, json!({}))
        .await;
    let theirs = str_of(&theirs["id"]);
    let revoked = f
        .srv
        .post(
            "/api/v1/license/revoke",
            &acme_admin,
            json!({"licenseId": theirs}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);

    let ours = f.list().await;
    assert_eq!(version(&ours), 1);
    assert!(entry(&ours, &mine).is_some());
    assert!(
        entry(&ours, &theirs).is_none(),
        "another tenant's license never appears"
    );

    let other = list(&f.srv, "?product=other", &other_key).await;
    assert_eq!(version(&other), 0, "another product's list did not change");
    assert_eq!(other.body["revoked"], json!([]));

    // `tenant` picks the tenant whose product has that slug; the default tenant is `default`.
    for query in ["?product=app&tenant=acme", "?tenant=acme&product=app"] {
        let acme = list(&f.srv, query, &acme_key).await;
        assert_eq!(acme.header("X-Keyward-Product"), Some(acme_app.id.as_str()));
        assert_eq!(version(&acme), 1);
        assert!(entry(&acme, &theirs).is_some());
        assert!(entry(&acme, &mine).is_none(), "{query}");
        let signature = acme.header("X-Signature").expect("signed");
        assert!(
            !signature_verifies(&f.public_key, &acme.raw, signature),
            "signed with acme's product key, not another product's"
        );
    }
    let explicit_default = list(&f.srv, "?product=app&tenant=default", &f.public_key).await;
    assert_eq!(explicit_default.body["revoked"], ours.body["revoked"]);
}

#[tokio::test]
async fn refusals_speak_the_vendor_envelope() {
    let f = fixture().await;
    let long = "a".repeat(65);
    let cases: &[(&str, String, u16, &str)] = &[
        (
            "unknown product",
            "?product=nope".into(),
            404,
            "PRODUCT_NOT_FOUND",
        ),
        (
            "unknown tenant",
            "?product=app&tenant=nope".into(),
            404,
            "PRODUCT_NOT_FOUND",
        ),
        ("missing product", String::new(), 400, "VALIDATION_ERROR"),
        ("empty product", "?product=".into(), 400, "VALIDATION_ERROR"),
        (
            "only a tenant",
            "?tenant=default".into(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "overlong product",
            format!("?product={long}"),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "page 0",
            "?product=app&page=0".into(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "page not a number",
            "?product=app&page=x".into(),
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, query, status, code) in cases {
        let a = f
            .srv
            .call(
                Method::GET,
                &format!("/api/v1/license/revocations{query}"),
                None,
                None,
            )
            .await;
        a.assert_error(*status, code);
        assert!(
            a.header("X-Signature").is_none(),
            "{name}: a refusal names no product"
        );
    }

    // Documented with every status it can answer.
    let doc = f
        .srv
        .call(Method::GET, "/api/openapi.json", None, None)
        .await;
    let op = &doc.body["paths"]["/api/v1/license/revocations"]["get"];
    for code in ["200", "400", "404", "429", "500"] {
        assert!(op["responses"][code].is_object(), "declares {code}: {op}");
    }
    let entry = &doc.body["components"]["schemas"]["RevokedLicense"]["properties"];
    for field in ["licenseId", "keySha256", "revokedAt", "status"] {
        assert!(entry[field].is_object(), "RevokedLicense.{field}: {entry}");
    }
}

#[tokio::test]
async fn the_list_is_rate_limited_per_ip_like_the_public_key() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(3, 0, 0)).await;
    srv.create_product("default", "app");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let a = srv
            .call(
                Method::GET,
                "/api/v1/license/revocations?product=app",
                None,
                None,
            )
            .await;
        statuses.push(a.status.as_u16());
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            a.assert_error(429, "RATE_LIMITED");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[tokio::test]
async fn long_lists_come_in_pages_of_one_version() {
    let f = fixture().await;
    {
        let mut conn = f.srv.db();
        let product = products::repo::find_any(&conn, &f.product)
            .unwrap()
            .unwrap();
        // IMMEDIATE: a deferred transaction that read first cannot upgrade to a write once the
        // server's writer committed meanwhile (SQLITE_BUSY_SNAPSHOT, no busy wait).
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let new = NewLicense {
            license_type: LicenseType::Perpetual,
            tier: LicenseTier::Personal,
            max_activations: 1,
            max_sessions: None,
            valid_until: None,
            plan: None,
            plan_days: None,
            customer_email: None,
            customer_name: None,
            order_id: None,
            metadata: None,
            note: None,
            entitlements: Vec::new(),
        };
        for _ in 0..1001 {
            let l = licenses::create(&tx, &product, &new).unwrap();
            licenses::revoke(&tx, &l, None).unwrap();
        }
        tx.commit().unwrap();
    }
    let first = list(&f.srv, "?product=app", &f.public_key).await;
    let second = list(&f.srv, "?product=app&page=2", &f.public_key).await;
    let third = list(&f.srv, "?product=app&page=3", &f.public_key).await;
    assert_eq!(version(&first), 1001);
    for (page, len) in [(&first, 1000), (&second, 1), (&third, 0)] {
        assert_eq!(version(page), 1001, "every page carries the same version");
        assert_eq!(page.body["revoked"].as_array().map(Vec::len), Some(len));
        assert_eq!(page.body["pagination"]["total"], 1001);
        assert_eq!(page.body["pagination"]["totalPages"], 2);
        assert_eq!(page.body["pagination"]["limit"], 1000);
    }
    let last_of_first = str_of(&first.body["revoked"][999]["licenseId"]);
    let only_of_second = str_of(&second.body["revoked"][0]["licenseId"]);
    assert!(
        last_of_first < only_of_second,
        "license id order across pages"
    );
}

async fn check(srv: &TestServer, license: &str) -> Answer {
    let resp = srv
        .client
        .get(format!(
            "{}/api/v1/updates/check?current_version=1.0.0",
            srv.url
        ))
        .header("X-License-Key", license)
        .send()
        .await
        .expect("sent");
    let a = TestServer::decode(resp).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a
}

#[tokio::test]
async fn the_update_check_carries_the_current_version() {
    let f = fixture().await;
    let (_, app_key) = f.license().await;
    let none = check(&f.srv, &app_key).await;
    assert_eq!(
        none.body,
        json!({"success": true, "update_available": false, "revocations_version": 0})
    );
    let (revoked, _) = f.license().await;
    f.apply(How::VendorRevoke, &revoked).await;
    let (suspended, _) = f.license().await;
    f.apply(How::AdminStatus("SUSPENDED"), &suspended).await;
    let none = check(&f.srv, &app_key).await;
    assert_eq!(none.body["update_available"], false);
    assert_eq!(none.body["revocations_version"], 2);
    assert_eq!(none.body["revocations_version"], version(&f.list().await));

    // With a release to offer, the same field beside the release's.
    let form = Form::new()
        .text("version", "1.1.0")
        .text("channel", "stable")
        .text("changelog", "notes")
        .part("bundle", Part::bytes(vec![7u8; 4096]).file_name("app.bin"));
    let up = f
        .srv
        .client
        .post(format!("{}/api/projects/{}/releases", f.srv.url, f.product))
        .header("X-API-Key", &f.admin)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    let up = TestServer::decode(up).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    let release = str_of(&up.body["data"]["release"]["id"]);
    let published = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{release}/publish"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    f.patch_status(&suspended, "ACTIVE").await;
    let offered = check(&f.srv, &app_key).await;
    assert_eq!(offered.body["update_available"], true);
    assert_eq!(offered.body["version"], "1.1.0");
    assert_eq!(offered.body["release_id"], release.as_str());
    assert_eq!(offered.body["revocations_version"], 3);
}

#[tokio::test]
async fn versions_never_decrease_across_restarts() {
    let mut f = fixture().await;
    let (a, _) = f.license().await;
    let (b, _) = f.license().await;
    f.apply(How::AdminStatus("SUSPENDED"), &a).await;
    f.apply(How::VendorRevoke, &b).await;
    let before = f.list().await;
    assert_eq!(version(&before), 2);

    f.srv.restart().await;
    let after = f.list().await;
    assert_eq!(
        version(&after),
        2,
        "the version is stored, not counted at start"
    );
    assert_eq!(after.body["revoked"], before.body["revoked"]);

    // Emptying the list still moves the version forward, and so does the next change.
    f.patch_status(&a, "ACTIVE").await;
    f.srv.restart().await;
    let after = f.list().await;
    assert_eq!(version(&after), 3);
    f.srv.restart().await;
    let (c, _) = f.license().await;
    f.apply(How::AdminStatus("BANNED"), &c).await;
    assert_eq!(version(&f.list().await), 4);
}
