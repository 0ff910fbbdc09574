//! Artifacts per platform (issue 15): a release's files per platform, arch and filetype,
//! uploaded through the admin API, hashed (SHA-256, SHA-512), signed (Ed25519 and minisign,
//! verified here with `minisign-verify`, what Tauri's updater uses) and served by
//! `/api/v1/updates/download?platform=…&arch=…`, whole or by range.

use crate::helpers::*;
use base64::Engine;
use keyward::domain::api_keys::Scope;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

pub struct Fixture {
    pub srv: TestServer,
    pub admin: String,
    pub project: String,
    pub license: String,
    pub public_key: String,
}

pub async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
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
        license,
    }
}

pub fn bytes_of(tag: &str, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ tag.as_bytes()[i % tag.len()])
        .collect()
}

pub fn artifact_form(fields: &[(&str, &str)], file: Option<(&str, Vec<u8>)>) -> Form {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some((filename, bytes)) = file {
        form = form.part("file", Part::bytes(bytes).file_name(filename.to_owned()));
    }
    form
}

impl Fixture {
    pub async fn create_draft(&self, body: Value) -> Answer {
        self.srv
            .post(
                &format!("/api/projects/{}/release-drafts", self.project),
                &self.admin,
                body,
            )
            .await
    }

    /// A draft of `version` without a bundle; its id.
    pub async fn draft(&self, version: &str) -> String {
        let a = self.create_draft(json!({"version": version})).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        str_of(&a.body["data"]["release"]["id"])
    }

    pub async fn upload_as(&self, key: &str, release: &str, form: Form) -> Answer {
        let resp = self
            .srv
            .client
            .post(format!("{}/api/releases/{release}/artifacts", self.srv.url))
            .header("X-API-Key", key)
            .multipart(form)
            .send()
            .await
            .expect("sent");
        TestServer::decode(resp).await
    }

    pub async fn upload(
        &self,
        release: &str,
        platform: &str,
        arch: &str,
        filetype: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Value {
        let a = self
            .upload_as(
                &self.admin,
                release,
                artifact_form(
                    &[
                        ("platform", platform),
                        ("arch", arch),
                        ("filetype", filetype),
                    ],
                    Some((name, bytes)),
                ),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["data"]["artifact"].clone()
    }

    pub async fn publish(&self, release: &str) -> Answer {
        self.srv
            .call(
                Method::POST,
                &format!("/api/releases/{release}/publish"),
                Some(&self.admin),
                None,
            )
            .await
    }

    pub async fn updates(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.updates_as(&self.license, path, headers).await
    }

    pub async fn updates_as(&self, license: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
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

    pub async fn settings(&self) -> Value {
        let a = self
            .srv
            .get(
                &format!("/api/projects/{}/update-settings", self.project),
                &self.admin,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["data"].clone()
    }
}

fn minisign_verifies(tauri_pubkey: &str, bytes: &[u8], sig_text: &str) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pub_text = String::from_utf8(b64.decode(tauri_pubkey).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let pk = minisign_verify::PublicKey::decode(&pub_text).map_err(|e| e.to_string())?;
    let sig = minisign_verify::Signature::decode(sig_text).map_err(|e| e.to_string())?;
    pk.verify(bytes, &sig, false).map_err(|e| e.to_string())
}

/// Three platforms, each file hashed and signed twice over; the download picks by platform and
/// arch; ranges resume it; the manifest and the check describe the right file.
#[tokio::test]
async fn artifacts_per_platform_are_hashed_signed_and_picked_by_platform_and_arch() {
    let f = fixture().await;
    let release = f.draft("1.4.0").await;
    let files = [
        (
            "windows",
            "x86_64",
            "msi",
            "App_1.4.0_x64.msi",
            bytes_of("win", 70_000),
        ),
        (
            "darwin",
            "aarch64",
            "app.tar.gz",
            "App.app.tar.gz",
            bytes_of("mac", 50_000),
        ),
        (
            "linux",
            "x86_64",
            "AppImage",
            "app_1.4.0_amd64.AppImage",
            bytes_of("lin", 90_000),
        ),
    ];
    let settings = f.settings().await;
    let tauri_pubkey = str_of(&settings["minisign"]["tauriPubkey"]);
    let kid = str_of(&settings["minisign"]["kid"]);
    for (platform, arch, filetype, name, bytes) in &files {
        let a = f
            .upload(&release, platform, arch, filetype, name, bytes.clone())
            .await;
        assert_eq!(a["platform"], *platform);
        assert_eq!(a["arch"], *arch);
        assert_eq!(a["filetype"], *filetype);
        assert_eq!(a["filename"], *name);
        assert_eq!(a["size"], bytes.len());
        assert_eq!(a["sha256"], hex::encode(Sha256::digest(bytes)));
        assert_eq!(a["sha512"], hex::encode(Sha512::digest(bytes)));
        assert_eq!(a["signatureKid"], kid.as_str());
        assert!(signature_verifies(
            &f.public_key,
            bytes,
            &str_of(&a["signature"])
        ));
        let sig = str_of(&a["minisignSignature"]);
        minisign_verifies(&tauri_pubkey, bytes, &sig).expect("minisign verifies");
        assert!(sig.contains(&format!("file:{name}")), "{sig}");
        // A changed byte fails both.
        let mut tampered = bytes.clone();
        tampered[7] ^= 1;
        assert!(minisign_verifies(&tauri_pubkey, &tampered, &sig).is_err());
        assert!(!signature_verifies(
            &f.public_key,
            &tampered,
            &str_of(&a["signature"])
        ));
    }
    let listed = f
        .srv
        .get(&format!("/api/releases/{release}/artifacts"), &f.admin)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let names: Vec<String> = listed.body["data"]["artifacts"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| format!("{}/{}", str_of(&a["platform"]), str_of(&a["arch"])))
        .collect();
    assert_eq!(names, ["darwin/aarch64", "linux/x86_64", "windows/x86_64"]);
    let got = f
        .srv
        .get(&format!("/api/releases/{release}"), &f.admin)
        .await;
    assert_eq!(
        got.body["data"]["release"]["artifacts"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(got.body["data"]["release"]["bundleSha256"], Value::Null);
    assert_eq!(got.body["data"]["release"]["rolloutPercentage"], 100);

    let published = f.publish(&release).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);

    for (platform, arch, _, name, bytes) in &files {
        let path = format!(
            "/api/v1/updates/download?release_id={release}&platform={platform}&arch={arch}"
        );
        let a = f.updates(&path, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{platform}: {}", a.body);
        assert_eq!(&a.raw, bytes, "{platform}");
        assert_eq!(
            a.header("x-bundle-sha256"),
            Some(hex::encode(Sha256::digest(bytes)).as_str())
        );
        assert!(
            a.header("content-disposition")
                .is_some_and(|d| d.contains(name))
        );
        let sig = a
            .header("x-bundle-signature")
            .expect("signature")
            .to_owned();
        assert!(signature_verifies(&f.public_key, bytes, &sig));
        // Resumed from the middle.
        let part = f.updates(&path, &[("Range", "bytes=1000-")]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{platform}");
        assert_eq!(part.raw, bytes[1000..]);
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len()).as_str())
        );
        // The check for this platform describes its file.
        let check = f
            .updates(
                &format!(
                    "/api/v1/updates/check?current_version=1.0.0&platform={platform}&arch={arch}"
                ),
                &[],
            )
            .await;
        assert_eq!(check.status, StatusCode::OK, "{}", check.body);
        assert_eq!(check.body["update_available"], true);
        assert_eq!(check.body["sha256"], hex::encode(Sha256::digest(bytes)));
    }
    // Several artifacts and none named: the check offers the release without a file hash.
    let check = f
        .updates("/api/v1/updates/check?current_version=1.0.0", &[])
        .await;
    assert_eq!(check.body["update_available"], true, "{}", check.body);
    assert!(
        check.body.get("sha256").is_none_or(Value::is_null),
        "{}",
        check.body
    );
    // No file for this platform: no update offered to it.
    let check = f
        .updates(
            "/api/v1/updates/check?current_version=1.0.0&platform=linux&arch=aarch64",
            &[],
        )
        .await;
    assert_eq!(check.body["update_available"], false, "{}", check.body);

    let manifest = f
        .updates(
            &format!("/api/v1/updates/manifest?release_id={release}"),
            &[],
        )
        .await;
    assert_eq!(manifest.status, StatusCode::OK, "{}", manifest.body);
    let listed = manifest.body["release"]["artifacts"]
        .as_array()
        .expect("artifacts");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|a| {
        a["minisignSignature"]
            .as_str()
            .is_some_and(|s| s.contains("trusted comment: "))
    }));

    // Choices a download cannot make, each with a precise answer.
    let base = format!("/api/v1/updates/download?release_id={release}");
    let cases: &[(&str, String, u16, &str, &str)] = &[
        (
            "several and none named",
            base.clone(),
            400,
            "VALIDATION_ERROR",
            "darwin/aarch64/app.tar.gz",
        ),
        (
            "no such artifact",
            format!("{base}&platform=linux&arch=aarch64"),
            404,
            "ARTIFACT_NOT_FOUND",
            "rtifact",
        ),
        (
            "unknown arch",
            format!("{base}&platform=linux&arch=amd64"),
            400,
            "VALIDATION_ERROR",
            "x86_64",
        ),
        (
            "bad platform",
            format!("{base}&platform=Lin%2Fux&arch=x86_64"),
            400,
            "VALIDATION_ERROR",
            "platform",
        ),
        (
            "bad filetype",
            format!("{base}&platform=linux&arch=x86_64&filetype=..%2F"),
            400,
            "VALIDATION_ERROR",
            "filetype",
        ),
    ];
    for (name, path, status, code, needle) in cases {
        let a = f.updates(path, &[]).await;
        a.assert_error(*status, code);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{name}: {}",
            a.body
        );
    }
}

/// Debian's `minisign` accepts the signature with the key the API shows (`-P` takes the key
/// line), and refuses a changed file.
#[tokio::test]
async fn minisign_the_tool_verifies_an_artifact() {
    let f = fixture().await;
    let release = f.draft("1.0.0").await;
    let bytes = bytes_of("tool", 40_000);
    let a = f
        .upload(
            &release,
            "darwin",
            "universal",
            "app.tar.gz",
            "App.app.tar.gz",
            bytes.clone(),
        )
        .await;
    let key = f.settings().await["minisign"].clone();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("App.app.tar.gz");
    std::fs::write(&file, &bytes).expect("file");
    std::fs::write(
        dir.path().join("App.app.tar.gz.minisig"),
        str_of(&a["minisignSignature"]),
    )
    .expect("sig");
    std::fs::write(dir.path().join("app.pub"), str_of(&key["publicKeyFile"])).expect("pub");
    let verify = |args: &[&str]| {
        std::process::Command::new("minisign")
            .args(args)
            .output()
            .expect("minisign runs (test.sh installs it)")
    };
    let path = file.to_str().expect("path");
    let out = verify(&["-Vm", path, "-P", &str_of(&key["publicKey"])]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Signature and comment signature verified"),
        "{said}"
    );
    assert!(said.contains("file:App.app.tar.gz"), "{said}");
    let pub_path = dir.path().join("app.pub");
    let out = verify(&["-Vm", path, "-p", pub_path.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut changed = bytes.clone();
    changed[100] ^= 0x40;
    std::fs::write(&file, &changed).expect("file");
    let out = verify(&["-Vm", path, "-P", &str_of(&key["publicKey"])]);
    assert!(!out.status.success(), "a changed file is refused");
}
