//! Artifacts' bad input and authorization (issue 15).

use crate::artifacts::{Fixture, artifact_form, bytes_of, fixture};
use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::{Method, StatusCode};
use serde_json::json;

impl Fixture {
    pub async fn patch_release(&self, release: &str, body: serde_json::Value) -> Answer {
        self.srv
            .call(
                Method::PATCH,
                &format!("/api/releases/{release}"),
                Some(&self.admin),
                Some(body),
            )
            .await
    }

    /// A published release of `version` with one Linux file, at `rollout` percent.
    pub async fn published(&self, version: &str, rollout: u8) -> String {
        let a = self
            .create_draft(json!({"version": version, "rolloutPercentage": rollout}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = str_of(&a.body["data"]["release"]["id"]);
        self.upload(
            &id,
            "linux",
            "x86_64",
            "AppImage",
            "app.AppImage",
            bytes_of(version, 500),
        )
        .await;
        let p = self.publish(&id).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        id
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.srv
            .db()
            .query_row(sql, [], |r| r.get(0))
            .expect("count")
    }
}

/// (name, fields, file, status, code, a word of the message)
type UploadCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, Vec<u8>)>,
    u16,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn artifact_uploads_refuse_bad_input_and_change_nothing() {
    let f = fixture().await;
    let release = f.draft("2.0.0").await;
    f.upload(
        &release,
        "windows",
        "x86_64",
        "msi",
        "a.msi",
        bytes_of("w", 100),
    )
    .await;
    let file = || Some(("b.bin", bytes_of("b", 64)));
    let long = "x".repeat(100);
    let ok = [
        ("platform", "linux"),
        ("arch", "x86_64"),
        ("filetype", "deb"),
    ];
    let cases: Vec<UploadCase<'_>> = vec![
        (
            "no file",
            ok.to_vec(),
            None,
            400,
            "VALIDATION_ERROR",
            "file is required",
        ),
        (
            "no platform",
            ok[1..].to_vec(),
            file(),
            400,
            "VALIDATION_ERROR",
            "platform is required",
        ),
        (
            "no arch",
            vec![ok[0], ok[2]],
            file(),
            400,
            "VALIDATION_ERROR",
            "arch is required",
        ),
        (
            "no filetype",
            ok[..2].to_vec(),
            file(),
            400,
            "VALIDATION_ERROR",
            "filetype is required",
        ),
        (
            "unknown arch",
            vec![ok[0], ("arch", "amd64"), ok[2]],
            file(),
            400,
            "VALIDATION_ERROR",
            "x86_64, aarch64",
        ),
        (
            "macos",
            vec![("platform", "macos"), ok[1], ok[2]],
            file(),
            400,
            "VALIDATION_ERROR",
            "darwin",
        ),
        (
            "path in filetype",
            vec![ok[0], ok[1], ("filetype", "../deb")],
            file(),
            400,
            "VALIDATION_ERROR",
            "filetype",
        ),
        (
            "oversize platform",
            vec![("platform", long.as_str()), ok[1], ok[2]],
            file(),
            400,
            "VALIDATION_ERROR",
            "platform",
        ),
        (
            "unknown field",
            vec![ok[0], ok[1], ok[2], ("colour", "red")],
            file(),
            400,
            "VALIDATION_ERROR",
            "colour",
        ),
        (
            "minimum system version not a version",
            vec![ok[0], ok[1], ok[2], ("minimumSystemVersion", "Catalina")],
            file(),
            400,
            "VALIDATION_ERROR",
            "minimumSystemVersion",
        ),
        (
            "taken slot",
            vec![
                ("platform", "windows"),
                ("arch", "x86_64"),
                ("filetype", "msi"),
            ],
            file(),
            409,
            "CONFLICT",
            "already has",
        ),
        (
            "empty file",
            ok.to_vec(),
            Some(("e.bin", vec![])),
            400,
            "VALIDATION_ERROR",
            "empty",
        ),
    ];
    for (name, fields, file, status, code, needle) in cases {
        let a = f
            .upload_as(&f.admin, &release, artifact_form(&fields, file))
            .await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, code, needle);
    }
    let json = f
        .srv
        .post(
            &format!("/api/releases/{release}/artifacts"),
            &f.admin,
            json!({"platform": "linux"}),
        )
        .await;
    assert_kv_error(&json, 415, "UNSUPPORTED_MEDIA_TYPE");
    let unknown = f
        .upload_as(&f.admin, "rel_nope", artifact_form(&ok, file()))
        .await;
    assert_kv_error(&unknown, 404, "NOT_FOUND");
    assert_eq!(f.count("SELECT COUNT(*) FROM release_artifacts"), 1);
    let temp = f.srv.data_dir().join("bundles").join("tmp");
    assert_eq!(
        std::fs::read_dir(temp).expect("tmp").count(),
        0,
        "no upload left behind"
    );

    // Drafts: bad versions, bad JSON, taken versions.
    let drafts: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        ("no version", json!({}), 400, "version"),
        (
            "not semver",
            json!({"version": "1.2"}),
            400,
            "semantic version",
        ),
        ("number", json!({"version": 2}), 400, "version"),
        ("taken", json!({"version": "2.0.0"}), 409, "already exists"),
        (
            "bad channel",
            json!({"version": "2.1.0", "channel": "lts"}),
            400,
            "channel",
        ),
        (
            "rollout",
            json!({"version": "2.1.0", "rolloutPercentage": 150}),
            400,
            "rolloutPercentage",
        ),
    ];
    for (name, body, status, needle) in drafts {
        let a = f.create_draft(body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert!(
            a.body["error"].as_str().is_some_and(|m| m.contains(needle)),
            "{name}: {}",
            a.body
        );
    }
    let malformed = f
        .srv
        .call_raw(
            Method::POST,
            &format!("/api/projects/{}/release-drafts", f.project),
            Some(&f.admin),
            "application/json",
            b"{\"version\": ".to_vec(),
        )
        .await;
    assert_kv_error(&malformed, 400, "VALIDATION_ERROR");

    // Nothing to download: publishing is refused.
    let empty = f.draft("3.0.0").await;
    assert_kv_error_naming(
        &f.publish(&empty).await,
        409,
        "CONFLICT",
        "no bundle and no artifacts",
    );
}

#[tokio::test]
async fn artifacts_are_deleted_only_from_drafts_and_their_files_go() {
    let f = fixture().await;
    let release = f.draft("1.0.0").await;
    let a = f
        .upload(
            &release,
            "linux",
            "x86_64",
            "deb",
            "a.deb",
            bytes_of("d", 300),
        )
        .await;
    let b = f
        .upload(
            &release,
            "linux",
            "aarch64",
            "deb",
            "b.deb",
            bytes_of("e", 300),
        )
        .await;
    let stored = |sha: &str| f.srv.data_dir().join("bundles").join(sha).exists();
    assert!(stored(&str_of(&a["sha256"])));
    let path = |id: &serde_json::Value| format!("/api/releases/{release}/artifacts/{}", str_of(id));
    let deleted = f
        .srv
        .call(Method::DELETE, &path(&a["id"]), Some(&f.admin), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(!stored(&str_of(&a["sha256"])), "the file is gone");
    let again = f
        .srv
        .call(Method::DELETE, &path(&a["id"]), Some(&f.admin), None)
        .await;
    assert_kv_error(&again, 404, "NOT_FOUND");
    assert_eq!(f.publish(&release).await.status, StatusCode::OK);
    let published = f
        .srv
        .call(Method::DELETE, &path(&b["id"]), Some(&f.admin), None)
        .await;
    assert_kv_error_naming(&published, 409, "CONFLICT", "draft");
    // A yanked release takes no more files.
    f.srv
        .call(
            Method::POST,
            &format!("/api/releases/{release}/yank"),
            Some(&f.admin),
            None,
        )
        .await;
    let late = f
        .upload_as(
            &f.admin,
            &release,
            artifact_form(
                &[
                    ("platform", "darwin"),
                    ("arch", "universal"),
                    ("filetype", "dmg"),
                ],
                Some(("x.dmg", vec![1; 10])),
            ),
        )
        .await;
    assert_kv_error_naming(&late, 409, "CONFLICT", "yanked");
    // Yanked: downloads stop at once.
    let d = f
        .updates(
            &format!("/api/v1/updates/download?release_id={release}&platform=linux&arch=aarch64"),
            &[],
        )
        .await;
    d.assert_error(404, "RELEASE_NOT_FOUND");
}

#[tokio::test]
async fn artifacts_need_an_admin_of_the_tenant_and_the_product() {
    let f = fixture().await;
    let release = f.draft("1.0.0").await;
    let a = f
        .upload(
            &release,
            "linux",
            "x86_64",
            "deb",
            "a.deb",
            bytes_of("d", 300),
        )
        .await;
    f.srv.create_tenant("other");
    let other_admin = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let elsewhere = f.srv.create_product("default", "elsewhere");
    let restricted = f
        .srv
        .create_api_key("default", Scope::FullAdmin, Some(&elsewhere.id));
    let reader = f.srv.create_api_key("default", Scope::ReadOnly, None);
    let artifact = format!("/api/releases/{release}/artifacts/{}", str_of(&a["id"]));
    let paths = [
        (Method::GET, format!("/api/releases/{release}/artifacts")),
        (Method::DELETE, artifact),
        (
            Method::GET,
            format!("/api/projects/{}/update-settings", f.project),
        ),
        (
            Method::PATCH,
            format!("/api/projects/{}/update-settings", f.project),
        ),
        (
            Method::POST,
            format!("/api/projects/{}/release-drafts", f.project),
        ),
    ];
    for (method, path) in &paths {
        let body = match *method {
            Method::PATCH => Some(json!({"minimumVersion": "1.0.0"})),
            Method::POST => Some(json!({"version": "9.0.0"})),
            _ => None,
        };
        for key in [&other_admin, &restricted] {
            let a = f
                .srv
                .call(method.clone(), path, Some(key), body.clone())
                .await;
            assert_kv_error(&a, 404, "NOT_FOUND");
        }
        let a = f.srv.call(method.clone(), path, None, body.clone()).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
        let a = f.srv.call(method.clone(), path, Some(&reader), body).await;
        assert_kv_error(&a, 403, "FORBIDDEN");
    }
    let form = || {
        artifact_form(
            &[
                ("platform", "darwin"),
                ("arch", "universal"),
                ("filetype", "dmg"),
            ],
            Some(("x.dmg", vec![1; 10])),
        )
    };
    for key in [&other_admin, &restricted] {
        assert_kv_error(&f.upload_as(key, &release, form()).await, 404, "NOT_FOUND");
    }
    assert_kv_error(
        &f.upload_as(&reader, &release, form()).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(f.count("SELECT COUNT(*) FROM release_artifacts"), 1);
    assert_eq!(f.count("SELECT COUNT(*) FROM releases"), 1);

    // A license of another product does not reach the release's files.
    let foreign = f
        .srv
        .create_license(&f.admin, &elsewhere.id, json!({}))
        .await;
    assert_eq!(f.publish(&release).await.status, StatusCode::OK);
    let d = f
        .updates_as(
            &str_of(&foreign["key"]),
            &format!("/api/v1/updates/download?release_id={release}&platform=linux&arch=x86_64"),
            &[],
        )
        .await;
    d.assert_error(404, "RELEASE_NOT_FOUND");
}

/// Files stream past the JSON body limit, up to the bundle limit; beyond it, 413 and nothing kept.
#[tokio::test]
async fn artifacts_stream_up_to_the_bundle_limit() {
    let srv = TestServer::start_with(|c| c.max_bundle_bytes = 1_000_000).await;
    let product = srv.create_product("default", "app");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let f = Fixture {
        license: String::new(),
        public_key: String::new(),
        project: product.id,
        admin,
        srv,
    };
    let release = f.draft("1.0.0").await;
    let big = bytes_of("big", 900_000);
    let a = f
        .upload(&release, "linux", "x86_64", "deb", "a.deb", big.clone())
        .await;
    assert_eq!(a["size"], big.len());
    let over = f
        .upload_as(
            &f.admin,
            &release,
            artifact_form(
                &[
                    ("platform", "linux"),
                    ("arch", "aarch64"),
                    ("filetype", "deb"),
                ],
                Some(("b.deb", bytes_of("over", 1_000_001))),
            ),
        )
        .await;
    assert_kv_error(&over, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(f.count("SELECT COUNT(*) FROM release_artifacts"), 1);
}
