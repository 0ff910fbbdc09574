//! Signed software updates: releases managed through the admin API (here with FULL_ADMIN API
//! keys, as a CI pipeline does), served to licensed apps by `/api/v1/updates/*`.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A server with one product (`app`) in the default tenant, its FULL_ADMIN key and an ACTIVE
/// license.
struct Fixture {
    srv: TestServer,
    admin: String,
    project: String,
    slug: String,
    license: String,
    public_key: String,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tune: impl FnOnce(&mut keyward::config::Config)) -> Fixture {
    let srv = TestServer::start_with(tune).await;
    let product = srv.create_product("default", "app");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv.create_license(&admin, &product.id, json!({})).await["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    let pk = srv
        .call(
            Method::GET,
            "/api/v1/updates/public-key?product=app",
            None,
            None,
        )
        .await;
    assert_eq!(pk.status, StatusCode::OK, "{}", pk.body);
    Fixture {
        public_key: pk.body["public_key"].as_str().expect("key").to_owned(),
        srv,
        admin,
        project: product.id,
        slug: product.slug,
        license,
    }
}

/// (name, form fields, bundle, expected status, code, a word the message must contain)
type UploadCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, Vec<u8>)>,
    u16,
    &'a str,
    &'a str,
);

fn bundle_bytes(tag: &str, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag.as_bytes()[i % tag.len()])
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn send_form(srv: &TestServer, path: &str, key: &str, form: Form) -> Answer {
    let resp = srv
        .client
        .post(format!("{}{path}", srv.url))
        .header("X-API-Key", key)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    TestServer::decode(resp).await
}

fn release_form(fields: &[(&str, &str)], bundle: Option<(&str, Vec<u8>)>) -> Form {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some((filename, bytes)) = bundle {
        form = form.part("bundle", Part::bytes(bytes).file_name(filename.to_owned()));
    }
    form
}

impl Fixture {
    async fn upload(&self, fields: &[(&str, &str)], bundle: Option<(&str, Vec<u8>)>) -> Answer {
        send_form(
            &self.srv,
            &format!("/api/projects/{}/releases", self.project),
            &self.admin,
            release_form(fields, bundle),
        )
        .await
    }

    /// Uploads and publishes `version` on `channel`; returns the release.
    async fn release(&self, version: &str, channel: &str, bytes: Vec<u8>) -> Value {
        let up = self
            .upload(
                &[
                    ("version", version),
                    ("channel", channel),
                    ("changelog", "notes"),
                ],
                Some(("app.bin", bytes)),
            )
            .await;
        assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
        let id = up.body["data"]["release"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let published = self
            .admin_post(&format!("/api/releases/{id}/publish"))
            .await;
        assert_eq!(published.status, StatusCode::OK, "{}", published.body);
        published.body["data"]["release"].clone()
    }

    async fn admin_post(&self, path: &str) -> Answer {
        self.srv
            .call(Method::POST, path, Some(&self.admin), None)
            .await
    }

    async fn updates(&self, path: &str) -> Answer {
        self.updates_as(&self.license, path, &[]).await
    }

    async fn updates_as(&self, license: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .srv
            .client
            .get(format!("{}{path}", self.srv.url))
            .header("X-License-Key", license);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        TestServer::decode(req.send().await.expect("sent")).await
    }

    fn stored_bundles(&self) -> Vec<String> {
        let dir = self.srv.data_dir().join("bundles");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("bundle dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn uploads_in_progress(&self) -> usize {
        std::fs::read_dir(self.srv.data_dir().join("bundles/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn count(&self, sql: &str) -> i64 {
        self.srv.count(sql, [])
    }
}

#[tokio::test]
async fn a_release_goes_from_upload_to_signed_download_and_out_again() {
    let f = fixture().await;
    let bytes = bundle_bytes("v1.1", 300_000);

    let up = f
        .upload(
            &[
                ("version", "1.1.0"),
                ("channel", "stable"),
                ("changelog", "Faster start"),
                ("isCritical", "true"),
                ("requiresMigration", "false"),
            ],
            Some(("MyApp-1.1.0.tar.gz", bytes.clone())),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    let release = &up.body["data"]["release"];
    assert_eq!(release["status"], "DRAFT");
    assert_eq!(release["version"], "1.1.0");
    assert_eq!(release["projectId"], f.project.as_str());
    assert_eq!(release["bundleFilename"], "MyApp-1.1.0.tar.gz");
    assert_eq!(release["bundleSize"], bytes.len() as u64);
    assert_eq!(release["bundleSha256"], sha256_hex(&bytes).as_str());
    assert_eq!(release["isCritical"], true);
    assert!(release["publishedAt"].is_null());
    let signature = release["signature"].as_str().expect("signature").to_owned();
    assert!(signature_verifies(&f.public_key, &bytes, &signature));
    let mut tampered = bytes.clone();
    tampered[1234] ^= 1;
    assert!(!signature_verifies(&f.public_key, &tampered, &signature));
    let id = release["id"].as_str().expect("id").to_owned();
    assert_eq!(f.stored_bundles(), vec![sha256_hex(&bytes)]);

    // A draft is not offered.
    let check = f
        .updates("/api/v1/updates/check?current_version=1.0.0")
        .await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    assert_eq!(
        check.body,
        json!({"success": true, "update_available": false, "revocations_version": 0})
    );
    f.updates(&format!("/api/v1/updates/download?release_id={id}"))
        .await
        .assert_error(404, "RELEASE_NOT_FOUND");

    let published = f.admin_post(&format!("/api/releases/{id}/publish")).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    assert_eq!(published.body["data"]["release"]["status"], "PUBLISHED");
    assert!(published.body["data"]["release"]["publishedAt"].is_string());

    let check = f
        .updates("/api/v1/updates/check?current_version=1.0.0")
        .await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    let c = &check.body;
    assert_eq!(c["success"], true);
    assert_eq!(c["update_available"], true);
    assert_eq!(c["version"], "1.1.0");
    assert_eq!(c["changelog"], "Faster start");
    assert_eq!(c["bundle_size"], bytes.len() as u64);
    assert_eq!(c["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(c["signature"], signature.as_str());
    assert_eq!(c["is_critical"], true);
    assert_eq!(c["requires_migration"], false);
    assert!(c["published_at"].is_string());
    assert_eq!(c["release_id"], id.as_str());

    let up_to_date = f
        .updates("/api/v1/updates/check?current_version=1.1.0")
        .await;
    assert_eq!(up_to_date.body["update_available"], false);

    let dl = f
        .updates(&format!("/api/v1/updates/download?release_id={id}"))
        .await;
    assert_eq!(dl.status, StatusCode::OK);
    assert_eq!(dl.raw, bytes);
    assert_eq!(dl.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        dl.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(
        dl.header("x-bundle-sha256"),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(dl.header("x-bundle-signature"), Some(signature.as_str()));
    assert_eq!(dl.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        dl.header("content-disposition"),
        Some("attachment; filename=\"MyApp-1.1.0.tar.gz\"")
    );

    let manifest = f
        .updates(&format!("/api/v1/updates/manifest?release_id={id}"))
        .await;
    assert_eq!(manifest.status, StatusCode::OK, "{}", manifest.body);
    let m = &manifest.body["release"];
    assert_eq!(m["releaseId"], id.as_str());
    assert_eq!(m["version"], "1.1.0");
    assert_eq!(m["channel"], "stable");
    assert_eq!(m["bundleFilename"], "MyApp-1.1.0.tar.gz");
    assert_eq!(m["bundleSize"], bytes.len() as u64);
    assert_eq!(m["bundleSha256"], sha256_hex(&bytes).as_str());
    assert_eq!(m["signature"], signature.as_str());
    assert_eq!(m["isCritical"], true);
    assert_eq!(m["requiresMigration"], false);
    assert!(m["publishedAt"].is_string());
    assert!(manifest.body.get("bundle").is_none());

    // Survives a restart: the row and the file were durable before the 201.
    let mut f = f;
    f.srv.restart().await;
    let again = f
        .updates(&format!("/api/v1/updates/download?release_id={id}"))
        .await;
    assert_eq!(again.raw, bytes);

    // Published releases are yanked, not deleted.
    let refused = f
        .srv
        .call(
            Method::DELETE,
            &format!("/api/releases/{id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_kv_error_naming(&refused, 409, "CONFLICT", "yank");
    let yanked = f.admin_post(&format!("/api/releases/{id}/yank")).await;
    assert_eq!(yanked.status, StatusCode::OK, "{}", yanked.body);
    assert_eq!(yanked.body["data"]["release"]["status"], "YANKED");
    assert!(yanked.body["data"]["release"]["yankedAt"].is_string());
    let check = f
        .updates("/api/v1/updates/check?current_version=1.0.0")
        .await;
    assert_eq!(check.body["update_available"], false);
    for path in ["download", "manifest"] {
        f.updates(&format!("/api/v1/updates/{path}?release_id={id}"))
            .await
            .assert_error(404, "RELEASE_NOT_FOUND");
    }
    // Kept for the record.
    let listed = f
        .srv
        .get(&format!("/api/projects/{}/releases", f.project), &f.admin)
        .await;
    assert_eq!(listed.body["data"]["releases"][0]["status"], "YANKED");
    assert_kv_error(
        &f.admin_post(&format!("/api/releases/{id}/publish")).await,
        409,
        "CONFLICT",
    );

    let actions: Vec<String> = {
        let conn = f.srv.db();
        let mut stmt = conn
            .prepare("SELECT action FROM audit_events WHERE action LIKE 'release.%' ORDER BY id")
            .expect("query");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert_eq!(
        actions,
        ["release.upload", "release.publish", "release.yank"]
    );
    assert!(f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'update.download'") >= 2);
}

#[tokio::test]
async fn drafts_are_deleted_with_their_bundle_unless_it_is_shared() {
    let f = fixture().await;
    let shared = bundle_bytes("same", 10_000);
    let a = f
        .upload(&[("version", "1.0.0")], Some(("a.bin", shared.clone())))
        .await;
    let b = f
        .upload(&[("version", "1.0.1")], Some(("b.bin", shared.clone())))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    // Content-addressed: one file for two releases.
    assert_eq!(f.stored_bundles(), vec![sha256_hex(&shared)]);
    let a_id = a.body["data"]["release"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b_id = b.body["data"]["release"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let del = f
        .srv
        .call(
            Method::DELETE,
            &format!("/api/releases/{a_id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(f.stored_bundles().len(), 1, "still used by 1.0.1");
    let gone = f.srv.get(&format!("/api/releases/{a_id}"), &f.admin).await;
    assert_kv_error(&gone, 404, "NOT_FOUND");

    let del = f
        .srv
        .call(
            Method::DELETE,
            &format!("/api/releases/{b_id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert!(f.stored_bundles().is_empty());
    assert_eq!(
        f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'release.delete'"),
        2
    );
}

#[tokio::test]
async fn checks_offer_the_newest_release_of_the_channel_or_a_more_stable_one() {
    let f = fixture().await;
    for (version, channel) in [
        ("1.1.0", "stable"),
        ("1.2.0-beta.2", "beta"),
        ("1.2.0-beta.10", "beta"),
        ("1.2.0-rc.1", "rc"),
        ("2.0.0-alpha.1", "alpha"),
        ("2.1.0-nightly.20261123", "nightly"),
    ] {
        f.release(version, channel, bundle_bytes(version, 1000))
            .await;
    }
    // A draft above everything is never offered.
    let draft = f
        .upload(
            &[("version", "9.0.0")],
            Some(("d.bin", bundle_bytes("d", 10))),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED);

    let cases: &[(&str, &str, Option<&str>)] = &[
        // (channel, current_version, offered)
        ("", "1.0.0", Some("1.1.0")),
        ("stable", "1.0.0", Some("1.1.0")),
        ("stable", "1.1.0", None),
        ("rc", "1.1.0", Some("1.2.0-rc.1")),
        // beta.10 > beta.2 (numeric identifiers), and rc.1 > beta.10
        ("beta", "1.1.0", Some("1.2.0-rc.1")),
        ("beta", "1.2.0-beta.2", Some("1.2.0-rc.1")),
        ("alpha", "1.1.0", Some("2.0.0-alpha.1")),
        ("nightly", "1.0.0", Some("2.1.0-nightly.20261123")),
        // a pre-release sorts below its release
        ("stable", "1.1.0-rc.1", Some("1.1.0")),
        ("stable", "3.0.0", None),
        // build metadata does not count
        ("stable", "1.1.0%2Bbuild.7", None),
    ];
    for (channel, current, offered) in cases {
        let path = format!("/api/v1/updates/check?current_version={current}&channel={channel}");
        let a = f.updates(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        match offered {
            Some(v) => {
                assert_eq!(a.body["update_available"], true, "{path}: {}", a.body);
                assert_eq!(a.body["version"], *v, "{path}");
            }
            None => assert_eq!(a.body["update_available"], false, "{path}: {}", a.body),
        }
    }
}

#[tokio::test]
async fn uploads_refuse_bad_input_and_leave_nothing_behind() {
    let f = fixture_with(|c| c.max_bundle_bytes = 50_000).await;
    let first = f
        .upload(
            &[("version", "1.0.0")],
            Some(("a.bin", bundle_bytes("a", 100))),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let ok_bundle = || Some(("x.bin", bundle_bytes("x", 100)));
    let big = "x".repeat(70_000);

    let cases: Vec<UploadCase> = vec![
        (
            "invalid version",
            vec![("version", "1.2")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "semantic version",
        ),
        (
            "v prefix",
            vec![("version", "v1.2.0")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "version",
        ),
        (
            "duplicate version",
            vec![("version", "1.0.0")],
            ok_bundle(),
            409,
            "CONFLICT",
            "1.0.0",
        ),
        (
            "same precedence",
            vec![("version", "1.0.0+build.2")],
            ok_bundle(),
            409,
            "CONFLICT",
            "already exists",
        ),
        (
            "missing version",
            vec![("channel", "beta")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "version is required",
        ),
        (
            "bad channel",
            vec![("version", "2.0.0"), ("channel", "gamma")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "channel must be one of",
        ),
        (
            "bad flag",
            vec![("version", "2.0.0"), ("isCritical", "maybe")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "isCritical",
        ),
        (
            "huge changelog",
            vec![("version", "2.0.0"), ("changelog", big.as_str())],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "changelog",
        ),
        (
            "unknown field",
            vec![("version", "2.0.0"), ("colour", "red")],
            ok_bundle(),
            400,
            "VALIDATION_ERROR",
            "colour",
        ),
        (
            "missing bundle",
            vec![("version", "2.0.0")],
            None,
            400,
            "VALIDATION_ERROR",
            "bundle is required",
        ),
        (
            "empty bundle",
            vec![("version", "2.0.0")],
            Some(("e.bin", Vec::new())),
            400,
            "VALIDATION_ERROR",
            "empty",
        ),
        (
            "over the size limit",
            vec![("version", "2.0.0")],
            Some(("big.bin", bundle_bytes("b", 60_000))),
            413,
            "PAYLOAD_TOO_LARGE",
            "50000",
        ),
    ];
    for (name, fields, bundle, status, code, needle) in cases {
        let a = f.upload(&fields, bundle).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, code, needle);
    }
    // The bundle field after a bad version field is refused before it is stored, and
    // nothing a refused upload sent stays on disk.
    assert_eq!(f.count("SELECT COUNT(*) FROM releases"), 1);
    assert_eq!(f.stored_bundles().len(), 1);
    assert_eq!(f.uploads_in_progress(), 0);

    // Not multipart.
    let json_body = f
        .srv
        .call(
            Method::POST,
            &format!("/api/projects/{}/releases", f.project),
            Some(&f.admin),
            Some(json!({"version": "2.0.0"})),
        )
        .await;
    assert_kv_error(&json_body, 415, "UNSUPPORTED_MEDIA_TYPE");
    let garbage = f
        .srv
        .call_raw(
            Method::POST,
            &format!("/api/projects/{}/releases", f.project),
            Some(&f.admin),
            "multipart/form-data; boundary=XYZ",
            b"--XYZ\r\nthis is not a part".to_vec(),
        )
        .await;
    assert_kv_error(&garbage, 400, "VALIDATION_ERROR");
    assert_eq!(f.uploads_in_progress(), 0);
}

#[tokio::test]
async fn release_management_needs_an_admin_of_the_tenant() {
    let f = fixture().await;
    let release = f.release("1.0.0", "stable", bundle_bytes("r", 100)).await;
    let id = release["id"].as_str().expect("id");
    f.srv.create_tenant("other");
    let other_admin = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let reader = f.srv.create_api_key("default", Scope::ReadOnly, None);

    let paths = [
        (Method::GET, format!("/api/projects/{}/releases", f.project)),
        (Method::GET, format!("/api/releases/{id}")),
        (Method::PATCH, format!("/api/releases/{id}")),
        (Method::POST, format!("/api/releases/{id}/publish")),
        (Method::POST, format!("/api/releases/{id}/yank")),
        (Method::DELETE, format!("/api/releases/{id}")),
    ];
    for (method, path) in &paths {
        let body = (*method == Method::PATCH).then(|| json!({"changelog": "x"}));
        let a = f
            .srv
            .call(method.clone(), path, Some(&other_admin), body.clone())
            .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
        let a = f.srv.call(method.clone(), path, None, body.clone()).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
        let a = f.srv.call(method.clone(), path, Some(&reader), body).await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    let upload = send_form(
        &f.srv,
        &format!("/api/projects/{}/releases", f.project),
        &other_admin,
        release_form(&[("version", "2.0.0")], Some(("a.bin", vec![1, 2, 3]))),
    )
    .await;
    assert_kv_error(&upload, 404, "NOT_FOUND");
    let unknown = send_form(
        &f.srv,
        "/api/projects/prd_nope/releases",
        &f.admin,
        release_form(&[("version", "2.0.0")], Some(("a.bin", vec![1, 2, 3]))),
    )
    .await;
    assert_kv_error(&unknown, 404, "NOT_FOUND");
    assert_eq!(f.uploads_in_progress(), 0);
    assert_eq!(f.count("SELECT COUNT(*) FROM releases"), 1);
}

#[tokio::test]
async fn release_details_can_change_until_yanked() {
    let f = fixture().await;
    let up = f
        .upload(&[("version", "1.0.0")], Some(("a.bin", vec![7; 64])))
        .await;
    let id = up.body["data"]["release"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        up.body["data"]["release"]["channel"], "stable",
        "default channel"
    );
    let path = format!("/api/releases/{id}");

    let patched = f
        .srv
        .call(
            Method::PATCH,
            &path,
            Some(&f.admin),
            Some(json!({"channel": "beta", "changelog": "Fixes", "isCritical": true, "requiresMigration": true})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let r = &patched.body["data"]["release"];
    assert_eq!(
        (
            &r["channel"],
            &r["changelog"],
            &r["isCritical"],
            &r["requiresMigration"]
        ),
        (&json!("beta"), &json!("Fixes"), &json!(true), &json!(true))
    );
    let cases = [
        (json!({"channel": "gamma"}), "channel"),
        (json!({"isCritical": "yes"}), "isCritical"),
        (json!({"changelog": "x".repeat(70_000)}), "changelog"),
    ];
    for (body, needle) in cases {
        let a = f
            .srv
            .call(Method::PATCH, &path, Some(&f.admin), Some(body))
            .await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", needle);
    }
    let malformed = f
        .srv
        .call_raw(
            Method::PATCH,
            &path,
            Some(&f.admin),
            "application/json",
            b"{\"channel\":".to_vec(),
        )
        .await;
    assert_kv_error(&malformed, 400, "VALIDATION_ERROR");

    // Publishing twice changes nothing; yanking a draft is refused.
    assert_kv_error(
        &f.admin_post(&format!("{path}/yank")).await,
        409,
        "CONFLICT",
    );
    let first = f.admin_post(&format!("{path}/publish")).await;
    let second = f.admin_post(&format!("{path}/publish")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        first.body["data"]["release"]["publishedAt"],
        second.body["data"]["release"]["publishedAt"]
    );
    assert_eq!(
        f.admin_post(&format!("{path}/yank")).await.status,
        StatusCode::OK
    );
    let frozen = f
        .srv
        .call(
            Method::PATCH,
            &path,
            Some(&f.admin),
            Some(json!({"changelog": "late"})),
        )
        .await;
    assert_kv_error(&frozen, 409, "CONFLICT");
}

#[tokio::test]
async fn only_an_active_license_of_the_product_gets_updates() {
    let f = fixture().await;
    let release = f.release("1.1.0", "stable", bundle_bytes("r", 100)).await;
    let id = release["id"].as_str().expect("id").to_owned();
    let paths = [
        "/api/v1/updates/check?current_version=1.0.0".to_owned(),
        format!("/api/v1/updates/download?release_id={id}"),
        format!("/api/v1/updates/manifest?release_id={id}"),
    ];

    // Another product's license: its checks see its own (no) releases, the release is 404.
    let other = f.srv.create_product("default", "other");
    let foreign = f.srv.create_license(&f.admin, &other.id, json!({})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let check = f.updates_as(&foreign, &paths[0], &[]).await;
    assert_eq!(check.body["update_available"], false);
    for path in &paths[1..] {
        f.updates_as(&foreign, path, &[])
            .await
            .assert_error(404, "RELEASE_NOT_FOUND");
    }

    // Keys are matched like everywhere else: case and whitespace do not matter.
    let sloppy = format!("  {}  ", f.license.to_lowercase());
    assert_eq!(
        f.updates_as(&sloppy, &paths[0], &[]).await.status,
        StatusCode::OK
    );

    for path in &paths {
        f.updates_as("TT-NOPE-NOPE-NOPE-NOPE", path, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
        let bare = f.srv.call(Method::GET, path, None, None).await;
        bare.assert_error(401, "UNAUTHORIZED");
        assert!(
            bare.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("X-License-Key"),
            "{}",
            bare.body
        );
    }

    // Expired (the stored status is still ACTIVE: expiry is checked at request time).
    let expired = f.srv.create_license(&f.admin, &f.project, json!({})).await;
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET valid_until = 1000 WHERE id = ?1",
            [expired["id"].as_str().expect("id")],
        )
        .expect("expire");
    let expired_key = expired["key"].as_str().expect("key");
    for path in &paths {
        f.updates_as(expired_key, path, &[])
            .await
            .assert_error(403, "LICENSE_EXPIRED");
    }
    // Suspended and revoked.
    for (status, code) in [
        ("SUSPENDED", "LICENSE_SUSPENDED"),
        ("BANNED", "LICENSE_SUSPENDED"),
        ("REVOKED", "LICENSE_REVOKED"),
    ] {
        let l = f.srv.create_license(&f.admin, &f.project, json!({})).await;
        f.srv
            .db()
            .execute(
                "UPDATE licenses SET status = ?2 WHERE id = ?1",
                [l["id"].as_str().expect("id"), status],
            )
            .expect("status");
        for path in &paths {
            f.updates_as(l["key"].as_str().expect("key"), path, &[])
                .await
                .assert_error(403, code);
        }
    }
}

#[tokio::test]
async fn update_queries_refuse_bad_input() {
    let f = fixture().await;
    let release = f.release("1.1.0", "stable", bundle_bytes("r", 100)).await;
    let id = release["id"].as_str().expect("id");
    let long = "r".repeat(5000);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "/api/v1/updates/check?current_version=abc".into(),
            400,
            "VALIDATION_ERROR",
            "current_version",
        ),
        (
            "/api/v1/updates/check?current_version=1.0".into(),
            400,
            "VALIDATION_ERROR",
            "semantic version",
        ),
        (
            "/api/v1/updates/check".into(),
            400,
            "VALIDATION_ERROR",
            "current_version",
        ),
        (
            "/api/v1/updates/check?current_version=1.0.0&channel=gamma".into(),
            400,
            "VALIDATION_ERROR",
            "channel",
        ),
        (
            format!("/api/v1/updates/download?release_id={id}&from_version=x"),
            400,
            "VALIDATION_ERROR",
            "from_version",
        ),
        (
            "/api/v1/updates/download".into(),
            400,
            "VALIDATION_ERROR",
            "release_id",
        ),
        (
            "/api/v1/updates/download?release_id=rel_unknown".into(),
            404,
            "RELEASE_NOT_FOUND",
            "not found",
        ),
        (
            format!("/api/v1/updates/download?release_id={long}"),
            404,
            "RELEASE_NOT_FOUND",
            "not found",
        ),
        (
            "/api/v1/updates/manifest?release_id=rel_unknown".into(),
            404,
            "RELEASE_NOT_FOUND",
            "not found",
        ),
        (
            "/api/v1/updates/manifest".into(),
            400,
            "VALIDATION_ERROR",
            "release_id",
        ),
    ];
    for (path, status, code, needle) in cases {
        let a = f.updates(&path).await;
        a.assert_error(status, code);
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path}: {message}");
    }
    let post = f
        .srv
        .call(
            Method::POST,
            "/api/v1/updates/check?current_version=1.0.0",
            None,
            Some(json!({})),
        )
        .await;
    post.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn downloads_resume_with_ranges() {
    let f = fixture().await;
    let bytes = bundle_bytes("range", 100_000);
    let release = f.release("1.1.0", "stable", bytes.clone()).await;
    let path = format!(
        "/api/v1/updates/download?release_id={}",
        release["id"].as_str().expect("id")
    );
    let size = bytes.len();

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-500", size - 500, size - 1),
        ("bytes=99990-200000", 99_990, size - 1),
    ];
    for (range, start, end) in cases {
        let a = f.updates_as(&f.license, &path, &[("Range", range)]).await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(a.raw, bytes[*start..=*end], "{range}");
        assert_eq!(
            a.header("content-range"),
            Some(format!("bytes {start}-{end}/{size}").as_str())
        );
        assert_eq!(
            a.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert_eq!(
            a.header("x-bundle-sha256"),
            Some(sha256_hex(&bytes).as_str())
        );
    }
    // Beyond the end: 416 with the size.
    let a = f
        .updates_as(&f.license, &path, &[("Range", &format!("bytes={size}-"))])
        .await;
    a.assert_error(416, "RANGE_NOT_SATISFIABLE");
    assert_eq!(
        a.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    // Several ranges or nonsense: the whole bundle.
    for range in ["bytes=0-1,5-9", "pages=1-2"] {
        let a = f.updates_as(&f.license, &path, &[("Range", range)]).await;
        assert_eq!(a.status, StatusCode::OK, "{range}");
        assert_eq!(a.raw, bytes);
    }
    // A download resumed from its middle rebuilds the exact bundle.
    let head = f
        .updates_as(&f.license, &path, &[("Range", "bytes=0-49999")])
        .await;
    let tail = f
        .updates_as(&f.license, &path, &[("Range", "bytes=50000-")])
        .await;
    assert_eq!([head.raw, tail.raw].concat(), bytes);
}

#[tokio::test]
async fn delta_bundles_are_served_to_clients_upgrading_from_their_version() {
    let f = fixture().await;
    f.release("1.0.0", "stable", bundle_bytes("one", 5000))
        .await;
    let full = bundle_bytes("full", 20_000);
    let release = f.release("1.1.0", "stable", full.clone()).await;
    let id = release["id"].as_str().expect("id").to_owned();
    let delta = bundle_bytes("delta", 700);
    let deltas_path = format!("/api/releases/{id}/deltas");

    let added = send_form(
        &f.srv,
        &deltas_path,
        &f.admin,
        release_form(
            &[("fromVersion", "1.0.0")],
            Some(("patch-1.0.0.bin", delta.clone())),
        ),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let d = &added.body["data"]["release"]["deltas"][0];
    assert_eq!(d["fromVersion"], "1.0.0");
    assert_eq!(d["bundleSha256"], sha256_hex(&delta).as_str());
    assert!(signature_verifies(
        &f.public_key,
        &delta,
        d["signature"].as_str().expect("sig")
    ));

    let refusals = [
        (
            vec![("fromVersion", "1.0.0")],
            409,
            "CONFLICT",
            "already exists",
        ),
        (
            vec![("fromVersion", "1.1.0")],
            400,
            "VALIDATION_ERROR",
            "older",
        ),
        (
            vec![("fromVersion", "2.0.0")],
            400,
            "VALIDATION_ERROR",
            "older",
        ),
        (
            vec![("fromVersion", "one")],
            400,
            "VALIDATION_ERROR",
            "fromVersion",
        ),
        (
            vec![("version", "0.9.0")],
            400,
            "VALIDATION_ERROR",
            "version",
        ),
    ];
    for (fields, status, code, needle) in refusals {
        let a = send_form(
            &f.srv,
            &deltas_path,
            &f.admin,
            release_form(&fields, Some(("p.bin", vec![1; 10]))),
        )
        .await;
        assert_kv_error_naming(&a, status, code, needle);
    }
    let no_bundle = send_form(
        &f.srv,
        &deltas_path,
        &f.admin,
        release_form(&[("fromVersion", "0.9.0")], None),
    )
    .await;
    assert_kv_error_naming(&no_bundle, 400, "VALIDATION_ERROR", "bundle");
    assert_eq!(f.uploads_in_progress(), 0);

    let from_one = f
        .updates(&format!(
            "/api/v1/updates/download?release_id={id}&from_version=1.0.0"
        ))
        .await;
    assert_eq!(from_one.status, StatusCode::OK);
    assert_eq!(from_one.raw, delta);
    assert_eq!(
        from_one.header("x-bundle-sha256"),
        Some(sha256_hex(&delta).as_str())
    );
    assert!(signature_verifies(
        &f.public_key,
        &delta,
        from_one.header("x-bundle-signature").expect("signature")
    ));
    for from in ["0.9.0", ""] {
        let a = f
            .updates(&format!(
                "/api/v1/updates/download?release_id={id}&from_version={from}"
            ))
            .await;
        assert_eq!(a.raw, full, "from {from:?}: the full bundle");
    }
    let manifest = f
        .updates(&format!("/api/v1/updates/manifest?release_id={id}"))
        .await;
    assert_eq!(
        manifest.body["release"]["deltas"][0]["fromVersion"],
        "1.0.0"
    );
    assert_eq!(manifest.body["release"]["deltas"][0]["bundleSize"], 700);
}

#[tokio::test]
async fn checks_and_downloads_are_rate_limited() {
    let f = fixture_with(|c| {
        c.rate_limits.update_checks_per_15_min = 3;
        c.rate_limits.downloads_per_hour = 2;
    })
    .await;
    let release = f.release("1.1.0", "stable", bundle_bytes("r", 100)).await;
    let id = release["id"].as_str().expect("id");
    let check = "/api/v1/updates/check?current_version=1.0.0";
    for _ in 0..3 {
        assert_eq!(f.updates(check).await.status, StatusCode::OK);
    }
    let limited = f.updates(check).await;
    limited.assert_error(429, "RATE_LIMITED");
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(limited.header("x-ratelimit-limit"), Some("3"));

    // Downloads: per license key…
    let download = format!("/api/v1/updates/download?release_id={id}");
    for _ in 0..2 {
        assert_eq!(f.updates(&download).await.status, StatusCode::OK);
    }
    let limited = f.updates(&download).await;
    limited.assert_error(429, "RATE_LIMITED");
    assert_eq!(limited.header("x-ratelimit-limit"), Some("2"));
    // …and per IP: a second license from the same address is cut off as well.
    let second = f.srv.create_license(&f.admin, &f.project, json!({})).await;
    f.updates_as(second["key"].as_str().expect("key"), &download, &[])
        .await
        .assert_error(429, "RATE_LIMITED");
    // Its checks have their own allowance.
    assert_eq!(
        f.updates_as(second["key"].as_str().expect("key"), check, &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_a_project_takes_its_releases_and_bundles() {
    let f = fixture().await;
    f.release("1.0.0", "stable", bundle_bytes("p", 1000)).await;
    assert_eq!(f.stored_bundles().len(), 1);
    let del = f
        .srv
        .call(
            Method::DELETE,
            &format!("/api/projects/{}?confirm={}", f.project, f.slug),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(f.count("SELECT COUNT(*) FROM releases"), 0);
    assert!(f.stored_bundles().is_empty());
}

/// The README's `openssl` recipe verifies a downloaded bundle with the public key alone, and
/// refuses it after one flipped byte.
#[tokio::test]
async fn openssl_verifies_bundles_as_the_readme_shows() {
    use base64::Engine;
    let f = fixture().await;
    let bytes = bundle_bytes("openssl", 50_000);
    let release = f.release("1.1.0", "stable", bytes.clone()).await;
    let dl = f
        .updates(&format!(
            "/api/v1/updates/download?release_id={}",
            release["id"].as_str().expect("id")
        ))
        .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let work = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| work.path().join(name);
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend(b64.decode(&f.public_key).expect("base64"));
    std::fs::write(path("pubkey.der"), der).expect("write");
    std::fs::write(path("bundle.bin"), &dl.raw).expect("write");
    std::fs::write(
        path("bundle.sig"),
        b64.decode(dl.header("x-bundle-signature").expect("signature"))
            .expect("base64"),
    )
    .expect("write");
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(work.path())
            .output()
            .expect("openssl is installed (.ci/run installs it)")
    };
    let pem = openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        "pubkey.der",
        "-out",
        "pubkey.pem",
    ]);
    assert!(
        pem.status.success(),
        "{}",
        String::from_utf8_lossy(&pem.stderr)
    );
    let verify = [
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pubkey.pem",
        "-rawin",
        "-in",
        "bundle.bin",
        "-sigfile",
        "bundle.sig",
    ];
    let ok = openssl(&verify);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let mut tampered = dl.raw.clone();
    tampered[4242] ^= 0x80;
    std::fs::write(path("bundle.bin"), tampered).expect("write");
    assert!(
        !openssl(&verify).status.success(),
        "a flipped byte must fail verification"
    );
}

/// A bundle file nothing refers to (its release never committed) is removed at the next start;
/// referenced bundles and the upload area's leftovers are handled too.
#[tokio::test]
async fn unreferenced_bundle_files_are_removed_at_start() {
    let mut f = fixture().await;
    let kept = bundle_bytes("kept", 1000);
    f.release("1.0.0", "stable", kept.clone()).await;
    let bundles = f.srv.data_dir().join("bundles");
    let orphan = "ab".repeat(32);
    std::fs::write(bundles.join(&orphan), b"left by a failed commit").expect("write");
    std::fs::write(bundles.join("tmp").join("upload-interrupted"), b"partial").expect("write");
    std::fs::write(bundles.join("README.txt"), b"not ours").expect("write");
    f.srv.restart().await;
    assert_eq!(
        f.stored_bundles(),
        vec![sha256_hex(&kept), "README.txt".to_owned()]
    );
    assert_eq!(f.uploads_in_progress(), 0);
}
