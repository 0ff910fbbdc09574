//! Regressions of releases, software updates and abuse administration: a FULL_ADMIN API key
//! restricted to one product administers that product only, and licensed apps keep getting
//! signed updates.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;

/// Two products of one tenant, an unrestricted FULL_ADMIN key and one restricted to alpha.
struct Fixture {
    srv: TestServer,
    alpha: String,
    beta: String,
    admin: String,
    alpha_admin: String,
}

async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
    let alpha = srv.create_product("default", "alpha").id;
    let beta = srv.create_product("default", "beta").id;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let alpha_admin = srv.create_api_key("default", Scope::FullAdmin, Some(&alpha));
    Fixture {
        srv,
        alpha,
        beta,
        admin,
        alpha_admin,
    }
}

fn form(fields: &[(&str, &str)], bundle: &[u8]) -> Form {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form.part(
        "bundle",
        Part::bytes(bundle.to_vec()).file_name("app.bin".to_owned()),
    )
}

impl Fixture {
    async fn send_form(&self, path: &str, key: &str, form: Form) -> Answer {
        let resp = self
            .srv
            .client
            .post(format!("{}{path}", self.srv.url))
            .header("X-API-Key", key)
            .multipart(form)
            .send()
            .await
            .expect("sent");
        TestServer::decode(resp).await
    }

    async fn upload(&self, key: &str, product: &str, version: &str, bundle: &[u8]) -> Answer {
        self.send_form(
            &format!("/api/projects/{product}/releases"),
            key,
            form(&[("version", version)], bundle),
        )
        .await
    }

    /// A release of `product` uploaded by the unrestricted key; published if asked.
    async fn release(&self, product: &str, version: &str, publish: bool) -> String {
        let up = self
            .upload(&self.admin, product, version, version.as_bytes())
            .await;
        assert_eq!(up.status, 201, "{}", up.body);
        let id = up.body["data"]["release"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        if publish {
            let p = self
                .srv
                .call(
                    Method::POST,
                    &format!("/api/releases/{id}/publish"),
                    Some(&self.admin),
                    None,
                )
                .await;
            assert_eq!(p.status, 200, "{}", p.body);
        }
        id
    }

    fn tenant_id(&self) -> String {
        self.srv
            .db()
            .query_row("SELECT id FROM tenants WHERE slug = 'default'", [], |r| {
                r.get(0)
            })
            .expect("tenant")
    }

    fn count(&self, sql: &str) -> i64 {
        self.srv
            .db()
            .query_row(sql, [], |r| r.get(0))
            .expect("count")
    }

    fn uploads_in_progress(&self) -> usize {
        std::fs::read_dir(self.srv.data_dir().join("bundles/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn insert_flag(&self, id: &str, product: Option<&str>, subject: &str) {
        self.srv
            .db()
            .execute(
                "INSERT INTO abuse_flags (id, tenant_id, product_id, kind, subject_type, subject,
                     state, evidence, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'KEY_GUESSING', 'IP', ?4, 'OPEN', '{}', 1, 1)",
                rusqlite::params![id, self.tenant_id(), product, subject],
            )
            .expect("flag");
    }

    fn insert_block(&self, id: &str, product: &str) {
        let far = 4_000_000_000_000_i64;
        self.srv
            .db()
            .execute(
                "INSERT INTO ip_blocks (id, tenant_id, product_id, ip, prefix_len, created_at,
                     expires_at)
                 VALUES (?1, ?2, ?3, '203.0.113.9', 32, 1, ?4)",
                rusqlite::params![id, self.tenant_id(), product, far],
            )
            .expect("block");
    }
}

#[tokio::test]
async fn a_product_restricted_admin_key_reaches_no_release_of_another_product() {
    let f = fixture().await;
    let draft = f.release(&f.beta, "1.0.0", false).await;
    let published = f.release(&f.beta, "1.1.0", true).await;

    let calls = [
        (Method::GET, format!("/api/projects/{}/releases", f.beta)),
        (Method::GET, format!("/api/releases/{draft}")),
        (Method::PATCH, format!("/api/releases/{draft}")),
        (Method::POST, format!("/api/releases/{draft}/publish")),
        (Method::POST, format!("/api/releases/{published}/yank")),
        (Method::DELETE, format!("/api/releases/{draft}")),
    ];
    for (method, path) in &calls {
        let body = (*method == Method::PATCH).then(|| json!({"changelog": "mine now"}));
        let a = f
            .srv
            .call(method.clone(), path, Some(&f.alpha_admin), body)
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    let upload = f
        .upload(&f.alpha_admin, &f.beta, "2.0.0", b"intruder")
        .await;
    assert_kv_error(&upload, 404, "NOT_FOUND");
    let delta = f
        .send_form(
            &format!("/api/releases/{published}/deltas"),
            &f.alpha_admin,
            form(&[("fromVersion", "1.0.0")], b"delta"),
        )
        .await;
    assert_kv_error(&delta, 404, "NOT_FOUND");

    // Nothing of beta changed, and nothing was left behind.
    assert_eq!(f.uploads_in_progress(), 0);
    assert_eq!(f.count("SELECT COUNT(*) FROM releases"), 2);
    assert_eq!(f.count("SELECT COUNT(*) FROM release_deltas"), 0);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM releases WHERE status = 'PUBLISHED'"),
        1
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM releases WHERE changelog = 'mine now'"),
        0
    );

    // Its own product it administers fully.
    let own = f.upload(&f.alpha_admin, &f.alpha, "1.0.0", b"alpha").await;
    assert_eq!(own.status, 201, "{}", own.body);
    let id = own.body["data"]["release"]["id"].as_str().expect("id");
    let p = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{id}/publish"),
            Some(&f.alpha_admin),
            None,
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let list = f
        .srv
        .call(
            Method::GET,
            &format!("/api/projects/{}/releases", f.alpha),
            Some(&f.alpha_admin),
            None,
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body["data"]["releases"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_product_restricted_admin_key_reaches_no_abuse_data_of_another_product() {
    let f = fixture().await;
    f.insert_flag("flg_alpha", Some(&f.alpha), "198.51.100.1");
    f.insert_flag("flg_beta", Some(&f.beta), "198.51.100.2");
    f.insert_flag("flg_tenant", None, "198.51.100.3");

    let ids = |a: &Answer| -> Vec<String> {
        let mut ids: Vec<String> = a.body["data"]["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let all = f
        .srv
        .call(Method::GET, "/api/abuse/flags", Some(&f.admin), None)
        .await;
    assert_eq!(ids(&all), ["flg_alpha", "flg_beta", "flg_tenant"]);
    let mine = f
        .srv
        .call(Method::GET, "/api/abuse/flags", Some(&f.alpha_admin), None)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(ids(&mine), ["flg_alpha"]);
    assert_eq!(mine.body["data"]["pagination"]["total"], 1);
    let asked = f
        .srv
        .call(
            Method::GET,
            &format!("/api/abuse/flags?projectId={}", f.beta),
            Some(&f.alpha_admin),
            None,
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(ids(&asked), Vec::<String>::new());

    for flag in ["flg_beta", "flg_tenant"] {
        let path = format!("/api/abuse/flags/{flag}");
        let a = f
            .srv
            .call(Method::GET, &path, Some(&f.alpha_admin), None)
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
        let a = f
            .srv
            .call(
                Method::PATCH,
                &path,
                Some(&f.alpha_admin),
                Some(json!({"state": "DISMISSED"})),
            )
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    assert_eq!(
        f.count("SELECT COUNT(*) FROM abuse_flags WHERE state = 'OPEN'"),
        3
    );
    let own = f
        .srv
        .call(
            Method::PATCH,
            "/api/abuse/flags/flg_alpha",
            Some(&f.alpha_admin),
            Some(json!({"state": "RESOLVED"})),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);

    let policy = format!("/api/projects/{}/abuse-policy", f.beta);
    let a = f
        .srv
        .call(Method::GET, &policy, Some(&f.alpha_admin), None)
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = f
        .srv
        .call(
            Method::PATCH,
            &policy,
            Some(&f.alpha_admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let beta_policy = f.srv.call(Method::GET, &policy, Some(&f.admin), None).await;
    assert_eq!(beta_policy.body["data"]["enabled"], true);
    let own = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}/abuse-policy", f.alpha),
            Some(&f.alpha_admin),
            Some(json!({"blockSecs": 600})),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["data"]["blockSecs"], 600);
}

/// A block refuses an address on every product of the server, so only a caller that reaches
/// every product may list or lift blocks.
#[tokio::test]
async fn ip_blocks_are_not_managed_by_a_product_restricted_key() {
    let f = fixture().await;
    f.insert_block("blk_alpha", &f.alpha);

    let list = f
        .srv
        .call(Method::GET, "/api/abuse/blocks", Some(&f.alpha_admin), None)
        .await;
    assert_kv_error(&list, 403, "FORBIDDEN");
    let lift = f
        .srv
        .call(
            Method::DELETE,
            "/api/abuse/blocks/blk_alpha",
            Some(&f.alpha_admin),
            None,
        )
        .await;
    assert_kv_error(&lift, 403, "FORBIDDEN");
    assert_eq!(
        f.count("SELECT COUNT(*) FROM ip_blocks WHERE lifted_at IS NULL"),
        1
    );

    let list = f
        .srv
        .call(Method::GET, "/api/abuse/blocks", Some(&f.admin), None)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body["data"]["blocks"].as_array().map(Vec::len),
        Some(1)
    );
    let lift = f
        .srv
        .call(
            Method::DELETE,
            "/api/abuse/blocks/blk_alpha",
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(lift.status, 200, "{}", lift.body);
    assert_eq!(lift.body["data"]["active"], false);
}

#[tokio::test]
async fn a_license_still_checks_downloads_and_verifies_its_products_update() {
    let f = fixture().await;
    let license = f.srv.create_license(&f.admin, &f.alpha, json!({})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let bundle: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let up = f.upload(&f.alpha_admin, &f.alpha, "1.2.0", &bundle).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.body["data"]["release"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let p = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{id}/publish"),
            Some(&f.alpha_admin),
            None,
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    // beta's newer release is nobody's business but beta's licenses.
    f.release(&f.beta, "9.0.0", true).await;

    let get = |path: String, key: String| {
        let req = f
            .srv
            .client
            .get(format!("{}{path}", f.srv.url))
            .header("X-License-Key", key);
        async move { req.send().await.expect("sent") }
    };
    let check = TestServer::decode(
        get(
            "/api/v1/updates/check?current_version=1.0.0".into(),
            license.clone(),
        )
        .await,
    )
    .await;
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(check.body["update_available"], true);
    assert_eq!(check.body["version"], "1.2.0");
    assert_eq!(check.body["release_id"], id.as_str());

    let resp = get(
        format!("/api/v1/updates/download?release_id={id}"),
        license.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let signature = resp
        .headers()
        .get("X-Bundle-Signature")
        .and_then(|v| v.to_str().ok())
        .expect("signature")
        .to_owned();
    let body = resp.bytes().await.expect("body");
    assert_eq!(&body[..], &bundle[..]);
    let pk = f
        .srv
        .call(
            Method::GET,
            "/api/v1/updates/public-key?product=alpha",
            None,
            None,
        )
        .await;
    let public_key = pk.body["public_key"].as_str().expect("public key");
    assert!(signature_verifies(public_key, &body, &signature));

    let ranged = f
        .srv
        .client
        .get(format!(
            "{}/api/v1/updates/download?release_id={id}",
            f.srv.url
        ))
        .header("X-License-Key", &license)
        .header("Range", "bytes=4990-")
        .send()
        .await
        .expect("sent");
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged
            .headers()
            .get("Content-Range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes 4990-4999/5000")
    );
    assert_eq!(&ranged.bytes().await.expect("body")[..], &bundle[4990..]);

    let wrong = TestServer::decode(
        get(
            "/api/v1/updates/check?current_version=1.0.0".into(),
            "TT-NOPE-NOPE-NOPE-NOPE".into(),
        )
        .await,
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
}
