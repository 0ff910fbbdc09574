//! Entitlements: a product's feature codes, the codes each license carries, how both faces
//! answer them, `ENTITLEMENTS_MISSING`, portal blocks gated on a code, scoping and bad input.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Fixture {
    srv: TestServer,
    /// FULL_ADMIN key of the default tenant: both the vendor and the admin API.
    admin: String,
    /// A product with PRO_EXPORT, CLOUD_SYNC and BETA.
    product: String,
}

async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
    let product = srv.create_product_with("default", "app", |p| {
        p.entitlements = vec!["PRO_EXPORT".into(), "CLOUD_SYNC".into(), "BETA".into()];
    });
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    Fixture {
        srv,
        admin,
        product: product.id,
    }
}

impl Fixture {
    async fn call(&self, method: Method, path: &str, body: Value) -> Answer {
        self.srv
            .call(method, path, Some(&self.admin), Some(body))
            .await
    }

    async fn patch_project(&self, body: Value) -> Answer {
        self.call(
            Method::PATCH,
            &format!("/api/projects/{}", self.product),
            body,
        )
        .await
    }

    /// A vendor license carrying `codes`; its key.
    async fn license(&self, codes: &[&str]) -> String {
        let l = self
            .srv
            .create_license(&self.admin, &self.product, json!({"entitlements": codes}))
            .await;
        str_field(&l, "key").to_owned()
    }

    fn audit_detail(&self, action: &str) -> Value {
        let text: String = self
            .srv
            .db()
            .query_row(
                "SELECT detail FROM audit_events WHERE action = ?1 ORDER BY id DESC LIMIT 1",
                [action],
                |r| r.get(0),
            )
            .expect("an audit event");
        serde_json::from_str(&text).expect("JSON detail")
    }
}

fn codes(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array of codes, found {v}"))
        .iter()
        .map(str_of)
        .collect()
}

#[tokio::test]
async fn product_codes_are_checked_on_create_and_update() {
    let f = fixture().await;
    let too_many: Vec<String> = (0..65).map(|i| format!("CODE_{i}")).collect();
    // (entitlements, expected status, a word the message names)
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!(["PRO_EXPORT", "CLOUD_SYNC"]), 201, ""),
        (json!([]), 201, ""),
        (json!(["pro_export"]), 400, "pro_export"),
        (json!(["1ABC"]), 400, "1ABC"),
        (json!(["PRO-EXPORT"]), 400, "PRO-EXPORT"),
        (json!([format!("A{}", "B".repeat(64))]), 400, "entitlements"),
        (json!(["A", "B", "A"]), 400, "twice"),
        (json!(too_many), 400, "at most 64"),
        (json!("PRO_EXPORT"), 400, "entitlements"),
        (json!([1, 2]), 400, "entitlements"),
        (json!({"PRO": true}), 400, "entitlements"),
    ];
    for (i, (codes_in, status, needle)) in cases.iter().enumerate() {
        let a = f
            .call(
                Method::POST,
                "/api/projects",
                json!({"name": format!("P{i}"), "entitlements": codes_in}),
            )
            .await;
        if *status == 201 {
            assert_status(&a, 201);
            assert_eq!(&a.body["data"]["project"]["entitlements"], codes_in);
        } else {
            assert_kv_error_naming(&a, *status, "VALIDATION_ERROR", needle);
        }
        let a = f.patch_project(json!({"entitlements": codes_in})).await;
        if *status == 201 {
            assert_status(&a, 200);
            assert_eq!(&a.body["data"]["project"]["entitlements"], codes_in);
        } else {
            assert_kv_error_naming(&a, *status, "VALIDATION_ERROR", needle);
        }
    }
    // Audited as project.update with the new set.
    f.patch_project(json!({"entitlements": ["PRO_EXPORT", "BETA"]}))
        .await;
    assert_eq!(
        f.audit_detail("project.update")["entitlements"],
        json!(["PRO_EXPORT", "BETA"])
    );
    // Absent keeps the set; the vendor API's product list shows it.
    let a = f.patch_project(json!({"name": "Renamed"})).await;
    assert_eq!(
        a.body["data"]["project"]["entitlements"],
        json!(["PRO_EXPORT", "BETA"])
    );
    let a = f.srv.get("/api/v1/products", &f.admin).await;
    assert_status(&a, 200);
    assert!(
        a.raw.windows(10).any(|w| w == b"PRO_EXPORT"),
        "the product list names the codes: {}",
        a.body
    );
}

#[tokio::test]
async fn a_code_a_license_carries_cannot_be_removed() {
    let f = fixture().await;
    f.license(&["PRO_EXPORT"]).await;
    f.license(&["PRO_EXPORT", "BETA"]).await;
    let a = f
        .patch_project(json!({"entitlements": ["CLOUD_SYNC"]}))
        .await;
    assert_kv_error_naming(
        &a,
        409,
        "CONFLICT",
        "PRO_EXPORT cannot be removed: 2 licenses",
    );
    // Nothing changed.
    let a = f.patch_project(json!({"name": "Same"})).await;
    assert_eq!(
        codes(&a.body["data"]["project"]["entitlements"]),
        ["PRO_EXPORT", "CLOUD_SYNC", "BETA"]
    );
    // A code no license carries goes; a code removed from the licenses first goes too.
    let a = f
        .patch_project(json!({"entitlements": ["PRO_EXPORT", "BETA"]}))
        .await;
    assert_status(&a, 200);
    let a = f
        .patch_project(json!({"entitlements": ["PRO_EXPORT"]}))
        .await;
    assert_kv_error_naming(&a, 409, "CONFLICT", "BETA cannot be removed: 1 license ");
}

#[tokio::test]
async fn licenses_carry_codes_of_their_product_only() {
    let f = fixture().await;
    // Vendor create: valid codes, unknown ones named, bad format, duplicates, wrong type.
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!([]), 201, ""),
        (json!(null), 201, ""),
        (json!(["PRO_EXPORT", "BETA"]), 201, ""),
        (
            json!(["PRO_EXPORT", "NOPE"]),
            400,
            "NOPE is not an entitlement",
        ),
        (json!(["NOPE", "ALSO"]), 400, "NOPE, ALSO are not"),
        (json!(["bad"]), 400, "bad"),
        (json!(["BETA", "BETA"]), 400, "twice"),
        (json!("BETA"), 400, "entitlements"),
    ];
    for (given, status, needle) in &cases {
        let body =
            json!({"productId": f.product, "customerEmail": "a@b.co", "entitlements": given});
        let a = f.srv.post("/api/v1/license/create", &f.admin, body).await;
        if *status == 201 {
            assert_status(&a, 201);
            let expected = if given.is_null() {
                json!([])
            } else {
                given.clone()
            };
            assert_eq!(a.body["license"]["entitlements"], expected);
        } else {
            assert_eq!(a.status.as_u16(), *status, "{given}: {}", a.body);
            a.assert_error(400, "VALIDATION_ERROR");
            let msg = a.body["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{given}: {msg}");
        }
    }
    assert_eq!(
        f.audit_detail("license.create")["entitlements"],
        json!(["PRO_EXPORT", "BETA"])
    );

    // Bulk: each item on its own.
    let a = f
        .srv
        .post(
            "/api/v1/license/create-bulk",
            &f.admin,
            json!({"licenses": [
                {"productId": f.product, "customerEmail": "a@b.co", "entitlements": ["CLOUD_SYNC"]},
                {"productId": f.product, "customerEmail": "a@b.co", "entitlements": ["GHOST"]},
            ]}),
        )
        .await;
    assert_status(&a, 207);
    assert_eq!(
        a.body["results"][0]["license"]["entitlements"],
        json!(["CLOUD_SYNC"])
    );
    assert_eq!(a.body["results"][1]["error"]["code"], "VALIDATION_ERROR");
    assert!(
        str_of(&a.body["results"][1]["error"]["message"]).contains("GHOST"),
        "{}",
        a.body
    );

    // Renew replaces the set when given, keeps it when not; an unknown code changes nothing.
    let key = f.license(&["PRO_EXPORT"]).await;
    let until = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(30));
    let renew = |codes: Value| {
        let mut body = json!({"licenseKey": key, "validUntil": until});
        if !codes.is_null() {
            body["entitlements"] = codes;
        }
        f.srv.post("/api/v1/license/renew", &f.admin, body)
    };
    let a = renew(json!(["BETA", "CLOUD_SYNC"])).await;
    assert_status(&a, 200);
    assert_eq!(
        a.body["license"]["entitlements"],
        json!(["BETA", "CLOUD_SYNC"])
    );
    assert_eq!(
        f.audit_detail("license.renew")["previousEntitlements"],
        json!(["PRO_EXPORT"])
    );
    let a = renew(Value::Null).await;
    assert_eq!(
        a.body["license"]["entitlements"],
        json!(["BETA", "CLOUD_SYNC"])
    );
    let a = renew(json!(["UNKNOWN_CODE"])).await;
    a.assert_error(400, "VALIDATION_ERROR");
    assert!(str_of(&a.body["error"]["message"]).contains("UNKNOWN_CODE"));
    let a = renew(json!([])).await;
    assert_eq!(a.body["license"]["entitlements"], json!([]));
}

#[tokio::test]
async fn admin_keys_are_generated_and_patched_with_codes() {
    let f = fixture().await;
    let a = f
        .call(
            Method::POST,
            "/api/keys",
            json!({"plan": "MONTHLY", "count": 2, "projectId": f.product, "entitlements": ["BETA"]}),
        )
        .await;
    assert_status(&a, 201);
    for k in a.body["data"]["keys"].as_array().expect("keys") {
        assert_eq!(k["entitlements"], json!(["BETA"]));
    }
    let id = str_of(&a.body["data"]["keys"][0]["id"]);
    let a = f
        .call(
            Method::POST,
            "/api/keys",
            json!({"plan": "MONTHLY", "projectId": f.product, "entitlements": ["NOT_OURS"]}),
        )
        .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "NOT_OURS");

    let path = format!("/api/keys/{id}");
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"entitlements": ["PRO_EXPORT", "CLOUD_SYNC"]}),
            200,
            "",
        ),
        (
            json!({"entitlements": ["PRO_EXPORT", "MISSING_ONE"]}),
            400,
            "MISSING_ONE",
        ),
        (json!({"entitlements": ["x"]}), 400, "\"x\""),
        (json!({"entitlements": 5}), 400, "entitlements"),
        (json!({"entitlements": [null]}), 400, "entitlements"),
    ];
    for (body, status, needle) in &cases {
        let a = f.call(Method::PATCH, &path, body.clone()).await;
        if *status == 200 {
            assert_status(&a, 200);
            assert_eq!(a.body["data"]["key"]["entitlements"], body["entitlements"]);
        } else {
            assert_kv_error_naming(&a, *status, "VALIDATION_ERROR", needle);
        }
    }
    // The refused patches left the set alone; the change is a license.update with the codes.
    let a = f.srv.get(&path, &f.admin).await;
    assert_eq!(
        a.body["data"]["key"]["entitlements"],
        json!(["PRO_EXPORT", "CLOUD_SYNC"])
    );
    let detail = f.audit_detail("license.update");
    assert_eq!(detail["entitlements"], json!(["PRO_EXPORT", "CLOUD_SYNC"]));
    assert_eq!(detail["previousEntitlements"], json!(["BETA"]));
    // A refused set changes nothing else in the same request either.
    let a = f
        .call(
            Method::PATCH,
            &path,
            json!({"maxSessions": 7, "entitlements": ["GHOST"]}),
        )
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    let a = f.srv.get(&path, &f.admin).await;
    assert_ne!(a.body["data"]["key"]["maxSessions"], 7);
}

#[tokio::test]
async fn every_validation_answer_carries_the_codes() {
    let f = fixture().await;
    let key = f.license(&["PRO_EXPORT", "BETA"]).await;
    let both = json!(["PRO_EXPORT", "BETA"]);
    let machine = "machine-0001";

    let a = f.srv.activate(&f.admin, &key, machine).await;
    assert_status(&a, 200);
    assert_eq!(a.body["entitlements"], both);
    let body = json!({"licenseKey": key, "machineId": machine});
    let a = f
        .srv
        .post("/api/v1/license/validate", &f.admin, body.clone())
        .await;
    assert_eq!(a.body["valid"], true, "{}", a.body);
    assert_eq!(a.body["entitlements"], both);
    assert_eq!(a.body["missingEntitlements"], json!([]));
    let a = f
        .srv
        .post(
            "/api/v1/license/heartbeat",
            &f.admin,
            json!({"key": key, "machineId": machine}),
        )
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["entitlements"], both);
    let a = f
        .srv
        .get(&format!("/api/v1/license/check/{key}"), &f.admin)
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["entitlements"], both);
    // An unknown license has none.
    let a = f
        .srv
        .post(
            "/api/v1/license/validate",
            &f.admin,
            json!({"licenseKey": "TT-NONE-NONE-NONE-NONE", "machineId": machine}),
        )
        .await;
    assert_eq!(a.body["code"], "NOT_FOUND");
    assert_eq!(a.body["entitlements"], json!([]));

    // The key/HWID face: /api/validate and the bot.
    let a = f
        .srv
        .call(
            Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": key, "hwid": machine})),
        )
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["entitlements"], both);
    for action in ["validate", "info"] {
        let a = f
            .srv
            .call(
                Method::POST,
                "/api/telegram",
                None,
                Some(json!({"action": action, "key": key, "hwid": machine})),
            )
            .await;
        assert_status(&a, 200);
        assert_eq!(a.body["data"]["entitlements"], both, "{action}");
    }
}

#[tokio::test]
async fn a_license_lacking_a_required_code_is_not_valid() {
    let f = fixture().await;
    let key = f.license(&["PRO_EXPORT"]).await;
    let machine = "machine-0002";
    assert_status(&f.srv.activate(&f.admin, &key, machine).await, 200);
    // (required, valid, code, missing)
    let cases: Vec<(Value, bool, &str, Value)> = vec![
        (json!(["PRO_EXPORT"]), true, "VALID", json!([])),
        (json!([]), true, "VALID", json!([])),
        (json!(null), true, "VALID", json!([])),
        (
            json!(["PRO_EXPORT", "CLOUD_SYNC", "BETA"]),
            false,
            "ENTITLEMENTS_MISSING",
            json!(["CLOUD_SYNC", "BETA"]),
        ),
        // A code the product does not even declare is simply missing.
        (
            json!(["OTHER_APP"]),
            false,
            "ENTITLEMENTS_MISSING",
            json!(["OTHER_APP"]),
        ),
    ];
    for (required, valid, code, missing) in cases {
        let a = f
            .srv
            .post(
                "/api/v1/license/validate",
                &f.admin,
                json!({"licenseKey": key, "machineId": machine, "entitlements": required}),
            )
            .await;
        assert_status(&a, 200);
        assert_eq!(a.body["valid"], valid, "{required}: {}", a.body);
        assert_eq!(a.body["code"], code, "{required}");
        assert_eq!(a.body["missingEntitlements"], missing, "{required}");
        assert_eq!(a.body["entitlements"], json!(["PRO_EXPORT"]));
        if !valid {
            let msg = str_of(&a.body["message"]);
            for m in missing.as_array().expect("codes") {
                assert!(msg.contains(m.as_str().unwrap_or("?")), "{msg}");
            }
            // Validations are audited in batches: wait for this one.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while f.srv.count(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'license.validate'
                 AND json_extract(detail, '$.missing') = ?1",
                [missing.to_string()],
            ) == 0
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "audited with {missing}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    // A worse verdict wins: a suspended license says SUSPENDED, not what it lacks.
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET status = 'SUSPENDED' WHERE license_key = ?1",
            [&key],
        )
        .expect("suspend");
    let a = f
        .srv
        .post(
            "/api/v1/license/validate",
            &f.admin,
            json!({"licenseKey": key, "machineId": machine, "entitlements": ["BETA"]}),
        )
        .await;
    assert_eq!(a.body["code"], "SUSPENDED", "{}", a.body);
    // Malformed requirements are bad input, never a verdict.
    for bad in [
        json!(["lower"]),
        json!("BETA"),
        json!([7]),
        json!(["A", "A"]),
    ] {
        let a = f
            .srv
            .post(
                "/api/v1/license/validate",
                &f.admin,
                json!({"licenseKey": key, "machineId": machine, "entitlements": bad}),
            )
            .await;
        a.assert_error(400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn portal_blocks_can_be_gated_on_a_code() {
    let f = fixture().await;
    let blocks = json!({"blocks": [
        {"type": "key_info"},
        {"type": "custom_button", "label": "Export", "url": "https://example.com/export",
         "requiresEntitlement": "PRO_EXPORT"},
        {"type": "custom_text", "text": "Beta notes", "requiresEntitlement": "BETA"},
    ]});
    assert_status(
        &f.patch_project(json!({"portalSettings": blocks})).await,
        200,
    );
    // Gating on a code the project does not declare, or a malformed one, is refused.
    for (gate, needle) in [
        ("NOT_DECLARED", "blocks[0].requiresEntitlement"),
        ("lower", "blocks[0].requiresEntitlement"),
    ] {
        let a = f
            .patch_project(json!({"portalSettings": {"blocks": [
                {"type": "key_info", "requiresEntitlement": gate}
            ]}}))
            .await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", needle);
    }
    // Dropping a code a block is gated on is refused too (no license carries it yet).
    let a = f
        .patch_project(json!({"entitlements": ["PRO_EXPORT", "CLOUD_SYNC"]}))
        .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "blocks[2].requiresEntitlement");

    // A key with PRO_EXPORT only, linked to a portal user.
    let a = f
        .call(
            Method::POST,
            "/api/keys",
            json!({"plan": "MONTHLY", "projectId": f.product, "entitlements": ["PRO_EXPORT"]}),
        )
        .await;
    let key = str_of(&a.body["data"]["keys"][0]["key"]);
    let a = send(
        &f.srv,
        Method::POST,
        "/api/portal/register",
        Cred::None,
        Some(json!({"username": "player", "password": "correct horse", "projectId": f.product})),
        &[],
    )
    .await;
    assert_status(&a, 201);
    let token = str_of(&a.body["data"]["token"]);
    let a = send(
        &f.srv,
        Method::POST,
        "/api/portal/activate",
        Cred::Bearer(&token),
        Some(json!({"key": key})),
        &[],
    )
    .await;
    assert!(a.status.is_success(), "{}", a.body);
    let me = send(
        &f.srv,
        Method::GET,
        "/api/portal/me",
        Cred::Bearer(&token),
        None,
        &[],
    )
    .await;
    assert_status(&me, 200);
    let b = &me.body["data"]["blocks"];
    assert_eq!(b[1]["locked"], false, "{b}");
    assert_eq!(b[1]["url"], "https://example.com/export");
    assert_eq!(b[1]["requiresEntitlement"], "PRO_EXPORT");
    assert_eq!(b[2]["locked"], true, "{b}");
    assert_eq!(b[2]["requiresEntitlement"], "BETA");
    assert!(b[2].get("url").is_none());

    // A loader block gated on a code the key lacks gates the download too.
    let gated_loader = json!({"blocks": [
        {"type": "download_loader", "requiresEntitlement": "BETA"},
    ]});
    assert_status(
        &f.patch_project(json!({"portalSettings": gated_loader}))
            .await,
        200,
    );
    let me = send(
        &f.srv,
        Method::GET,
        "/api/portal/me",
        Cred::Bearer(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(me.body["data"]["access"]["canDownloadLoader"], false);
    let a = send(
        &f.srv,
        Method::GET,
        "/api/portal/loader",
        Cred::Bearer(&token),
        None,
        &[],
    )
    .await;
    assert_kv_error_naming(&a, 403, "FORBIDDEN", "BETA");

    // The public face shows the gate but locks nothing.
    let a = f
        .srv
        .call(Method::GET, "/api/portal/info?slug=app", None, None)
        .await;
    assert_status(&a, 200);
    assert_eq!(
        a.body["data"]["portal"]["blocks"][0]["requiresEntitlement"],
        "BETA"
    );
    assert_eq!(a.body["data"]["portal"]["blocks"][0]["locked"], false);
}

#[tokio::test]
async fn codes_stay_within_tenant_and_product() {
    let f = fixture().await;
    f.srv.create_tenant("other");
    let other_key = f.srv.create_api_key("other", Scope::FullAdmin, None);
    // Another tenant's product and key: not found, whatever the codes.
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}", f.product),
            Some(&other_key),
            Some(json!({"entitlements": ["X"]})),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = f
        .srv
        .post(
            "/api/v1/license/create",
            &other_key,
            json!({"productId": f.product, "customerEmail": "a@b.co", "entitlements": ["BETA"]}),
        )
        .await;
    a.assert_error(404, "PRODUCT_NOT_FOUND");

    // A key restricted to a second product reaches neither the first product nor its keys.
    let second = f.srv.create_product_with("default", "second", |p| {
        p.entitlements = vec!["SECOND_ONLY".into()];
    });
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&second.id));
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}", f.product),
            Some(&restricted),
            Some(json!({"entitlements": []})),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let id = str_field(
        &f.srv
            .create_license(&f.admin, &f.product, json!({"entitlements": ["BETA"]}))
            .await,
        "id",
    )
    .to_owned();
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/keys/{id}"),
            Some(&restricted),
            Some(json!({"entitlements": []})),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    // Its own product's codes work; the first product's are unknown there.
    let a = f
        .srv
        .post(
            "/api/v1/license/create",
            &restricted,
            json!({"productId": second.id, "customerEmail": "a@b.co", "entitlements": ["BETA"]}),
        )
        .await;
    a.assert_error(400, "VALIDATION_ERROR");
    let a = f
        .srv
        .post(
            "/api/v1/license/create",
            &restricted,
            json!({"productId": second.id, "customerEmail": "a@b.co", "entitlements": ["SECOND_ONLY"]}),
        )
        .await;
    assert_status(&a, 201);
}

#[tokio::test]
async fn malformed_bodies_are_bad_input() {
    let f = fixture().await;
    for (method, path) in [
        (Method::POST, "/api/v1/license/validate".to_owned()),
        (Method::POST, "/api/v1/license/create".to_owned()),
        (Method::POST, "/api/v1/license/renew".to_owned()),
        (Method::PATCH, format!("/api/projects/{}", f.product)),
        (Method::POST, "/api/projects".to_owned()),
    ] {
        let a = f
            .srv
            .call_raw(
                method.clone(),
                &path,
                Some(&f.admin),
                "application/json",
                br#"{"entitlements": ["PRO_EXPORT",}"#.to_vec(),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            a.body
        );
    }
}
