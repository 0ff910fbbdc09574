//! Update feeds (issue 15): Tauri v2, Sparkle, electron-updater and Velopack, each licensed
//! by default, with channels, staged rollouts and yanks, per-platform selection and signed,
//! expiring download links (Range-capable). Signatures and hashes are checked by independent
//! tools: `minisign-verify` and Debian's `minisign` (Tauri), `openssl pkeyutl` (Sparkle's
//! edSignature), a YAML parser (electron-updater) and SHA-1/SHA-256 (Velopack).

use std::process::Command;

use base64::Engine;
use keyward::domain::api_keys::Scope;
use keyward::domain::feeds::token::{self, DownloadGrant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::artifacts::{Fixture, bytes_of, fixture};
use crate::helpers::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A file of a release: platform, arch, filetype, name, bytes.
type File = (&'static str, &'static str, &'static str, String, Vec<u8>);

fn file(platform: &'static str, arch: &'static str, filetype: &'static str, name: &str) -> File {
    let bytes = bytes_of(&format!("{platform}{arch}{filetype}{name}"), 3_000 + name.len() * 7);
    (platform, arch, filetype, name.to_owned(), bytes)
}

/// Every framework's file for `version`.
fn all_files(version: &str) -> Vec<File> {
    vec![
        file("darwin", "universal", "app.tar.gz", &format!("App_{version}_universal.app.tar.gz")),
        file("darwin", "universal", "zip", &format!("App-{version}-mac.zip")),
        file("darwin", "universal", "dmg", &format!("App-{version}.dmg")),
        file("linux", "x86_64", "AppImage", &format!("app_{version}_amd64.AppImage")),
        file("windows", "x86_64", "nsis", &format!("App_{version}_x64-setup.exe")),
        file("windows", "x86_64", "msi", &format!("App_{version}_x64_en-US.msi")),
        file("windows", "x86_64", "nupkg", &format!("app-{version}-full.nupkg")),
    ]
}

impl Fixture {
    /// Publishes `version` on `channel` with `files` at `rollout` percent; the release id.
    async fn release(&self, version: &str, channel: &str, rollout: u8, files: &[File]) -> String {
        let a = self
            .create_draft(json!({
                "version": version,
                "channel": channel,
                "changelog": format!("Notes of {version}: <b>bold</b> & ]]> \"quoted\" é"),
                "rolloutPercentage": rollout,
            }))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = str_of(&a.body["data"]["release"]["id"]);
        for (platform, arch, filetype, name, bytes) in files {
            self.upload(&id, platform, arch, filetype, name, bytes.clone())
                .await;
        }
        let p = self.publish(&id).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        id
    }

    async fn feed(&self, path: &str, key: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.srv.client.get(format!("{}{path}", self.srv.url));
        if let Some(key) = key {
            req = req.header("X-License-Key", key);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        TestServer::decode(req.send().await.expect("sent")).await
    }

    async fn fetch(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.srv.client.get(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        TestServer::decode(req.send().await.expect("sent")).await
    }

    async fn tauri(&self, key: Option<&str>, target: &str, arch: &str, current: &str) -> Answer {
        self.feed(
            &format!("/api/v1/updates/tauri/app/{target}/{arch}/{current}"),
            key,
            &[],
        )
        .await
    }

    async fn set_public(&self, public: bool) {
        let a = self
            .srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{}/feeds", self.project),
                Some(&self.admin),
                Some(json!({"public": public})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["data"]["public"], public);
    }

    async fn new_license(&self) -> String {
        str_of(&self.srv.create_license(&self.admin, &self.project, json!({})).await["key"])
    }
}

fn tool(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (test.sh installs it): {e}"))
}

/// Tauri: per target and arch the right updater artifact, its `.sig` as the bundler writes it
/// (base64 of the minisign text), verified by `minisign-verify` and by Debian's `minisign`;
/// the URL downloads the file without the key; nothing newer is 204.
#[tokio::test]
async fn tauri_feed_offers_each_target_its_artifact_signed_for_minisign() {
    let f = fixture().await;
    let files = all_files("1.1.0");
    f.release("1.1.0", "stable", 100, &files).await;
    let settings = f.settings().await;
    let tauri_pubkey = str_of(&settings["minisign"]["tauriPubkey"]);
    let minisign_line = str_of(&settings["minisign"]["publicKey"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("darwin", "aarch64", 0usize),
        ("darwin", "x86_64", 0),
        ("linux", "x86_64", 3),
        ("windows", "x86_64", 4),
    ];
    for (target, arch, index) in cases {
        let a = f.tauri(Some(&f.license), target, arch, "1.0.0").await;
        assert_eq!(a.status, StatusCode::OK, "{target}/{arch}: {}", a.body);
        assert_eq!(a.body["version"], "1.1.0");
        assert!(str_of(&a.body["notes"]).starts_with("Notes of 1.1.0"));
        let date = str_of(&a.body["pub_date"]);
        time::OffsetDateTime::parse(&date, &time::format_description::well_known::Rfc3339)
            .expect("pub_date is RFC 3339");
        let expected = &files[index];
        let url = str_of(&a.body["url"]);
        assert!(url.ends_with(&format!("/{}", expected.3)), "{url}");
        let got = f.fetch(&url, &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.raw, expected.4, "{target}/{arch} downloads its file");

        let sig_text = String::from_utf8(
            B64.decode(str_of(&a.body["signature"]))
                .expect("the signature is base64"),
        )
        .expect("minisign text");
        let pk_text =
            String::from_utf8(B64.decode(&tauri_pubkey).expect("base64")).expect("text");
        let pk = minisign_verify::PublicKey::decode(&pk_text).expect("public key");
        let sig = minisign_verify::Signature::decode(&sig_text).expect("signature");
        pk.verify(&got.raw, &sig, false).expect("minisign-verify accepts it");

        let path = dir.path().join(&expected.3);
        std::fs::write(&path, &got.raw).expect("write");
        let sig_path = dir.path().join(format!("{}.minisig", expected.3));
        std::fs::write(&sig_path, &sig_text).expect("write");
        let p = path.to_string_lossy().to_string();
        let s = sig_path.to_string_lossy().to_string();
        let out = tool("minisign", &["-V", "-m", &p, "-x", &s, "-P", &minisign_line]);
        assert!(
            out.status.success(),
            "minisign -V: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tampered = got.raw.clone();
        tampered[0] ^= 1;
        std::fs::write(&path, &tampered).expect("write");
        let out = tool("minisign", &["-V", "-m", &p, "-x", &s, "-P", &minisign_line]);
        assert!(!out.status.success(), "minisign refuses a changed file");
    }

    // The same answer with `Authorization: Bearer`; nothing newer, or nothing for the
    // platform, is 204 with an empty body.
    let bearer = f
        .feed(
            "/api/v1/updates/tauri/app/linux/x86_64/1.0.0",
            None,
            &[("Authorization", &format!("Bearer {}", f.license))],
        )
        .await;
    assert_eq!(bearer.status, StatusCode::OK, "{}", bearer.body);
    for (target, arch, current) in [
        ("linux", "x86_64", "1.1.0"),
        ("linux", "x86_64", "2.0.0"),
        ("linux", "aarch64", "1.0.0"),
        ("windows", "i686", "1.0.0"),
    ] {
        let a = f.tauri(Some(&f.license), target, arch, current).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{target}/{arch}/{current}");
        assert!(a.raw.is_empty());
    }
    // Bad input is the vendor envelope naming the part.
    let cases = [
        ("/api/v1/updates/tauri/app/beos/x86_64/1.0.0", "target"),
        ("/api/v1/updates/tauri/app/linux/amd64/1.0.0", "arch"),
        ("/api/v1/updates/tauri/app/linux/universal/1.0.0", "arch"),
        ("/api/v1/updates/tauri/app/linux/x86_64/one", "current_version"),
        ("/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=weekly", "channel"),
    ];
    for (path, needle) in cases {
        let a = f.feed(path, Some(&f.license), &[]).await;
        a.assert_error(400, "VALIDATION_ERROR");
        assert!(
            a.body["error"]["message"].as_str().unwrap_or("").contains(needle),
            "{path}: {}",
            a.body
        );
    }
}

/// No credential is 401 on every feed; an unknown key 401; an inactive license 403; another
/// product's license and an unknown product 404. A public product's feeds answer anyone; a
/// feed token stands for the license until it is revoked.
#[tokio::test]
async fn feeds_are_licensed_unless_the_product_makes_them_public() {
    let f = fixture().await;
    f.release("1.1.0", "stable", 100, &all_files("1.1.0")).await;
    let feeds = [
        "/api/v1/updates/tauri/app/linux/x86_64/1.0.0",
        "/api/v1/updates/sparkle/app/appcast.xml",
        "/api/v1/updates/electron/app/latest.yml",
        "/api/v1/updates/velopack/app/releases.win.json",
        "/api/v1/updates/velopack/app/app-1.1.0-full.nupkg",
    ];
    let other = f.srv.create_product("default", "other");
    let other_license =
        str_of(&f.srv.create_license(&f.admin, &other.id, json!({})).await["key"]);
    let revoked_license = f.new_license().await;
    let r = f
        .srv
        .post(
            "/api/v1/license/revoke",
            &f.admin,
            json!({"licenseKey": revoked_license, "reason": "refund"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for path in feeds {
        f.feed(path, None, &[]).await.assert_error(401, "UNAUTHORIZED");
        f.feed(path, Some("NOPE-NOPE-NOPE"), &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
        f.feed(path, None, &[("Authorization", "Basic abc")])
            .await
            .assert_error(401, "UNAUTHORIZED");
        f.feed(&format!("{path}?token=kwf_forged"), None, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
        f.feed(path, Some(&other_license), &[])
            .await
            .assert_error(404, "PRODUCT_NOT_FOUND");
        f.feed(path, Some(&revoked_license), &[])
            .await
            .assert_error(403, "LICENSE_REVOKED");
        let ok = f.feed(path, Some(&f.license), &[]).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {}", ok.body);
    }
    f.feed("/api/v1/updates/sparkle/nosuch/appcast.xml", Some(&f.license), &[])
        .await
        .assert_error(404, "PRODUCT_NOT_FOUND");
    f.feed(
        "/api/v1/updates/sparkle/app/appcast.xml?tenant=nosuch",
        Some(&f.license),
        &[],
    )
    .await
    .assert_error(404, "PRODUCT_NOT_FOUND");

    // A feed token in the URL (Sparkle), revocable.
    let issued = f
        .updates_as(&f.license, "/api/v1/updates/feed-token", &[])
        .await;
    assert_eq!(issued.status, StatusCode::METHOD_NOT_ALLOWED, "GET is not issuing");
    let post = f
        .srv
        .client
        .post(format!("{}/api/v1/updates/feed-token", f.srv.url))
        .header("X-License-Key", &f.license)
        .send()
        .await
        .expect("sent");
    let issued = TestServer::decode(post).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let feed_token = str_of(&issued.body["token"]);
    assert!(feed_token.starts_with("kwf_"));
    assert!(!feed_token.contains(&f.license));
    let with_token = format!("/api/v1/updates/sparkle/app/appcast.xml?token={feed_token}");
    let a = f.feed(&with_token, None, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        f.srv
            .db()
            .query_row(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'feed.token.issue'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .unwrap_or(0),
        1
    );
    let unauthenticated = f
        .srv
        .client
        .delete(format!("{}/api/v1/updates/feed-token", f.srv.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let revoke = f
        .srv
        .client
        .delete(format!("{}/api/v1/updates/feed-token", f.srv.url))
        .header("X-License-Key", &f.license)
        .send()
        .await
        .expect("sent");
    let revoked = TestServer::decode(revoke).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["revoked"], 1);
    f.feed(&with_token, None, &[])
        .await
        .assert_error(401, "UNAUTHORIZED");

    // Public feeds answer anyone; a license still works.
    let settings = f
        .srv
        .get(&format!("/api/projects/{}/feeds", f.project), &f.admin)
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.body["data"]["public"], false);
    assert_eq!(
        settings.body["data"]["paths"]["sparkle"],
        "/api/v1/updates/sparkle/app/appcast.xml"
    );
    f.set_public(true).await;
    for path in feeds {
        let a = f.feed(path, None, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let a = f.feed(path, Some(&f.license), &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    }
    f.set_public(false).await;
    f.feed(feeds[0], None, &[]).await.assert_error(401, "UNAUTHORIZED");
}

/// The admin switch: scope, tenant and bad input.
#[tokio::test]
async fn the_public_feeds_switch_is_checked_like_every_admin_change() {
    let f = fixture().await;
    let path = format!("/api/projects/{}/feeds", f.project);
    let reader = f.srv.create_api_key("default", Scope::ReadOnly, None);
    f.srv.create_tenant("elsewhere");
    let stranger = f.srv.create_api_key("elsewhere", Scope::FullAdmin, None);
    let cases: Vec<(&str, Option<&str>, Option<Value>, u16)> = vec![
        ("no key", None, Some(json!({"public": true})), 401),
        ("read-only key", Some(&reader), Some(json!({"public": true})), 403),
        ("other tenant", Some(&stranger), Some(json!({"public": true})), 404),
        ("wrong type", Some(&f.admin), Some(json!({"public": "yes"})), 400),
        ("missing field", Some(&f.admin), Some(json!({})), 400),
    ];
    for (name, key, body, status) in cases {
        let a = f.srv.call(Method::PATCH, &path, key, body).await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_eq!(a.body["success"], false, "{name}: {}", a.body);
    }
    let malformed = f
        .srv
        .call_raw(
            Method::PATCH,
            &path,
            Some(&f.admin),
            "application/json",
            b"{\"public\":".to_vec(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.body);
    let unknown = f
        .srv
        .call(
            Method::PATCH,
            "/api/projects/prd_nosuch/feeds",
            Some(&f.admin),
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Nothing changed.
    let got = f.srv.get(&path, &f.admin).await;
    assert_eq!(got.body["data"]["public"], false, "{}", got.body);
}

/// A client on channel C gets the newest release on C or a more stable one, on every feed;
/// yanking takes a release out of every feed and kills its download links at once.
#[tokio::test]
async fn channels_and_yanks_apply_to_every_feed() {
    let f = fixture().await;
    f.release("1.1.0", "stable", 100, &all_files("1.1.0")).await;
    let beta = f
        .release("1.2.0-beta.1", "beta", 100, &all_files("1.2.0-beta.1"))
        .await;
    let key = Some(f.license.as_str());
    let version = |a: &Answer| str_of(&a.body["version"]);
    let stable = f.tauri(key, "linux", "x86_64", "1.0.0").await;
    assert_eq!(version(&stable), "1.1.0");
    let on_beta = f
        .feed("/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=beta", key, &[])
        .await;
    assert_eq!(version(&on_beta), "1.2.0-beta.1");
    let on_nightly = f
        .feed("/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=nightly", key, &[])
        .await;
    assert_eq!(version(&on_nightly), "1.2.0-beta.1");
    let beta_url = str_of(&on_beta.body["url"]);

    let yaml = |a: &Answer| -> serde_yaml::Value {
        serde_yaml::from_slice(&a.raw).expect("electron-updater YAML parses")
    };
    let latest = f.feed("/api/v1/updates/electron/app/latest-mac.yml", key, &[]).await;
    assert_eq!(latest.status, StatusCode::OK);
    assert!(latest.header("content-type").is_some_and(|t| t.starts_with("text/yaml")));
    assert_eq!(yaml(&latest)["version"].as_str(), Some("1.1.0"));
    let beta_mac = f.feed("/api/v1/updates/electron/app/beta-mac.yml", key, &[]).await;
    assert_eq!(yaml(&beta_mac)["version"].as_str(), Some("1.2.0-beta.1"));

    let appcast = f.feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[]).await;
    let items = appcast_items(&appcast.raw);
    let versions: Vec<(String, Option<String>)> = items
        .iter()
        .map(|i| (i.version.clone(), i.channel.clone()))
        .collect();
    assert_eq!(
        versions,
        [
            ("1.2.0-beta.1".to_owned(), Some("beta".to_owned())),
            ("1.1.0".to_owned(), None)
        ]
    );

    let velopack = |channel: &str| {
        let f = &f;
        let channel = channel.to_owned();
        async move {
            let a = f
                .feed(&format!("/api/v1/updates/velopack/app/releases.{channel}.json"), key, &[])
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.body["Assets"]
                .as_array()
                .expect("Assets")
                .iter()
                .map(|a| str_of(&a["Version"]))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(velopack("win").await, ["1.1.0"]);
    assert_eq!(velopack("win-beta").await, ["1.2.0-beta.1", "1.1.0"]);
    assert!(velopack("osx").await.is_empty(), "no macOS package");

    let yanked = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{beta}/yank"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(yanked.status, StatusCode::OK, "{}", yanked.body);
    let on_beta = f
        .feed("/api/v1/updates/tauri/app/linux/x86_64/1.1.0?channel=beta", key, &[])
        .await;
    assert_eq!(on_beta.status, StatusCode::NO_CONTENT);
    let beta_mac = f.feed("/api/v1/updates/electron/app/beta-mac.yml", key, &[]).await;
    assert_eq!(yaml(&beta_mac)["version"].as_str(), Some("1.1.0"));
    let appcast = f.feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[]).await;
    assert_eq!(appcast_items(&appcast.raw).len(), 1);
    assert_eq!(velopack("win-beta").await, ["1.1.0"]);
    f.fetch(&beta_url, &[]).await.assert_error(404, "ARTIFACT_NOT_FOUND");
    f.feed("/api/v1/updates/velopack/app/app-1.2.0-beta.1-full.nupkg", key, &[])
        .await
        .assert_error(404, "PACKAGE_NOT_FOUND");

    // Bad channel files are bad input.
    for path in [
        "/api/v1/updates/electron/app/latest.json",
        "/api/v1/updates/electron/app/weekly-mac.yml",
        "/api/v1/updates/velopack/app/releases.win-weekly.json",
    ] {
        f.feed(path, key, &[]).await.assert_error(400, "VALIDATION_ERROR");
    }
}

/// A staged release reaches the licenses whose bucket is below its percentage; raising the
/// percentage keeps every license that had it. electron-updater's `stagingPercentage` is
/// written for anonymous clients of a public feed, who are bucketed by electron-updater.
#[tokio::test]
async fn rollout_buckets_are_stable_as_the_percentage_grows_on_every_feed() {
    let f = fixture().await;
    let linux = [file("linux", "x86_64", "AppImage", "app-old.AppImage")];
    f.release("1.1.0", "stable", 100, &linux).await;
    let staged_files = [
        file("linux", "x86_64", "AppImage", "app-new.AppImage"),
        file("darwin", "universal", "zip", "App-new-mac.zip"),
        file("windows", "x86_64", "nupkg", "app-1.2.0-full.nupkg"),
    ];
    let staged = f.release("1.2.0", "stable", 30, &staged_files).await;
    let mut licenses = Vec::new();
    for _ in 0..30 {
        licenses.push(f.new_license().await);
    }
    let mut got_at = Vec::new();
    for percentage in [30u8, 60, 100] {
        if percentage != 30 {
            let a = f
                .srv
                .call(
                    Method::PATCH,
                    &format!("/api/releases/{staged}"),
                    Some(&f.admin),
                    Some(json!({"rolloutPercentage": percentage})),
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        }
        let mut inside = Vec::new();
        for license in &licenses {
            let key = Some(license.as_str());
            let tauri = f.tauri(key, "linux", "x86_64", "1.0.0").await;
            let in_rollout = str_of(&tauri.body["version"]) == "1.2.0";
            if !in_rollout {
                assert_eq!(str_of(&tauri.body["version"]), "1.1.0");
            }
            // Every feed decides the same way for the same license.
            let appcast = f.feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[]).await;
            assert_eq!(!appcast_items(&appcast.raw).is_empty(), in_rollout);
            let linux_yml = f
                .feed("/api/v1/updates/electron/app/latest-linux.yml", key, &[])
                .await;
            let parsed: serde_yaml::Value = serde_yaml::from_slice(&linux_yml.raw).expect("yaml");
            assert_eq!(parsed["version"].as_str() == Some("1.2.0"), in_rollout);
            assert!(parsed.get("stagingPercentage").is_none(), "decided here");
            let velopack = f
                .feed("/api/v1/updates/velopack/app/releases.win.json", key, &[])
                .await;
            assert_eq!(
                velopack.body["Assets"].as_array().map(Vec::len),
                Some(usize::from(in_rollout))
            );
            inside.push(in_rollout);
        }
        got_at.push(inside);
    }
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    assert!(count(&got_at[0]) < licenses.len(), "30% is not everyone");
    assert!(count(&got_at[0]) > 0, "30% of 30 licenses is someone");
    assert_eq!(count(&got_at[2]), licenses.len());
    for step in 1..got_at.len() {
        for (i, had) in got_at[step - 1].iter().enumerate() {
            assert!(!had || got_at[step][i], "license {i} kept the release");
        }
    }

    // Anonymous clients of a public feed: electron-updater decides, from stagingPercentage.
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/releases/{staged}"),
            Some(&f.admin),
            Some(json!({"rolloutPercentage": 40})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    f.set_public(true).await;
    let anonymous = f.feed("/api/v1/updates/electron/app/latest-linux.yml", None, &[]).await;
    let parsed: serde_yaml::Value = serde_yaml::from_slice(&anonymous.raw).expect("yaml");
    assert_eq!(parsed["version"].as_str(), Some("1.2.0"));
    assert_eq!(parsed["stagingPercentage"].as_u64(), Some(40));
}

/// Sparkle: an RSS appcast that parses as XML, with the notes escaped, criticalUpdate from
/// the minimum version, and an edSignature openssl verifies over the archive downloaded
/// through the enclosure URL.
#[tokio::test]
async fn sparkle_appcast_parses_and_its_ed_signature_verifies_with_openssl() {
    let f = fixture().await;
    let mac = [
        file("darwin", "x86_64", "zip", "App-1.1.0-x64.zip"),
        file("darwin", "aarch64", "zip", "App-1.1.0-arm64.zip"),
        file("darwin", "aarch64", "dmg", "App-1.1.0-arm64.dmg"),
    ];
    f.release("1.1.0", "stable", 100, &mac).await;
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}/update-settings", f.project),
            Some(&f.admin),
            Some(json!({"minimumVersion": "1.0.5"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let appcast = f
        .feed("/api/v1/updates/sparkle/app/appcast.xml?arch=arm64", Some(&f.license), &[])
        .await;
    assert_eq!(appcast.status, StatusCode::OK);
    assert!(appcast
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/xml")));
    let items = appcast_items(&appcast.raw);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.version, "1.1.0");
    assert_eq!(item.short_version, "1.1.0");
    assert_eq!(item.channel, None);
    assert_eq!(item.critical_below.as_deref(), Some("1.0.5"));
    assert_eq!(
        item.description,
        "Notes of 1.1.0: <b>bold</b> & ]]> \"quoted\" é",
        "CDATA keeps the notes as written"
    );
    time::OffsetDateTime::parse(&item.pub_date, &time::format_description::well_known::Rfc2822)
        .expect("pubDate is RFC 2822");
    assert!(item.url.ends_with("/App-1.1.0-arm64.zip"), "{}", item.url);
    let got = f.fetch(&item.url, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.raw, mac[1].4);
    assert_eq!(item.length, got.raw.len().to_string());

    // openssl verifies the raw Ed25519 signature with the product's public key.
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_key = B64.decode(&f.public_key).expect("key");
    let mut der = hex::decode("302a300506032b6570032100").expect("hex");
    der.extend_from_slice(&raw_key);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(&der)
    );
    let pem_path = dir.path().join("pub.pem");
    std::fs::write(&pem_path, pem).expect("write");
    let sig_path = dir.path().join("sig.bin");
    std::fs::write(&sig_path, B64.decode(&item.ed_signature).expect("base64")).expect("write");
    let verify = |bytes: &[u8]| {
        let data = dir.path().join("archive.zip");
        std::fs::write(&data, bytes).expect("write");
        tool(
            "openssl",
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                &pem_path.to_string_lossy(),
                "-rawin",
                "-in",
                &data.to_string_lossy(),
                "-sigfile",
                &sig_path.to_string_lossy(),
            ],
        )
    };
    let out = verify(&got.raw);
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tampered = got.raw.clone();
    tampered[3] ^= 1;
    assert!(!verify(&tampered).status.success());

    // The Intel archive for arch=x86_64; bad arch is bad input; a release marked critical
    // says so without a version.
    let intel = f
        .feed("/api/v1/updates/sparkle/app/appcast.xml?arch=x86_64", Some(&f.license), &[])
        .await;
    assert!(appcast_items(&intel.raw)[0].url.ends_with("/App-1.1.0-x64.zip"));
    f.feed("/api/v1/updates/sparkle/app/appcast.xml?arch=m68k", Some(&f.license), &[])
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let critical = f
        .create_draft(json!({"version": "1.2.0", "isCritical": true}))
        .await;
    let id = str_of(&critical.body["data"]["release"]["id"]);
    f.upload(&id, "darwin", "universal", "zip", "App-1.2.0.zip", bytes_of("c", 500))
        .await;
    assert_eq!(f.publish(&id).await.status, StatusCode::OK);
    let appcast = f
        .feed("/api/v1/updates/sparkle/app/appcast.xml", Some(&f.license), &[])
        .await;
    let items = appcast_items(&appcast.raw);
    assert_eq!(items[0].version, "1.2.0");
    assert_eq!(items[0].critical_below.as_deref(), Some(""), "critical for everyone");
}

/// electron-updater: files per platform with base64 SHA-512 that matches the download, `path`
/// and `sha512` of the installer; nothing for a platform is 204.
#[tokio::test]
async fn electron_channel_files_carry_sha512_that_matches_the_download() {
    let f = fixture().await;
    let files = all_files("1.1.0");
    f.release("1.1.0", "stable", 100, &files).await;
    let key = Some(f.license.as_str());
    let cases = [
        ("latest.yml", vec!["App_1.1.0_x64-setup.exe"]),
        ("latest-mac.yml", vec!["App-1.1.0-mac.zip", "App-1.1.0.dmg"]),
        ("latest-linux.yml", vec!["app_1.1.0_amd64.AppImage"]),
    ];
    for (name, expected) in cases {
        let a = f
            .feed(&format!("/api/v1/updates/electron/app/{name}"), key, &[])
            .await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        let doc: serde_yaml::Value = serde_yaml::from_slice(&a.raw).expect("yaml");
        assert_eq!(doc["version"].as_str(), Some("1.1.0"));
        assert_eq!(
            doc["releaseNotes"].as_str(),
            Some("Notes of 1.1.0: <b>bold</b> & ]]> \"quoted\" é")
        );
        time::OffsetDateTime::parse(
            doc["releaseDate"].as_str().unwrap_or(""),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("releaseDate");
        let listed = doc["files"].as_sequence().expect("files");
        let urls: Vec<&str> = listed.iter().filter_map(|f| f["url"].as_str()).collect();
        assert_eq!(urls.len(), expected.len(), "{name}: {urls:?}");
        for (url, file_name) in urls.iter().zip(&expected) {
            assert!(url.ends_with(&format!("/{file_name}")), "{url}");
        }
        assert_eq!(doc["path"].as_str(), Some(urls[0]));
        for entry in listed {
            let got = f.fetch(entry["url"].as_str().unwrap_or(""), &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(entry["size"].as_u64(), Some(got.raw.len() as u64));
            assert_eq!(
                entry["sha512"].as_str(),
                Some(B64.encode(Sha512::digest(&got.raw)).as_str())
            );
        }
        assert_eq!(doc["sha512"], listed[0]["sha512"]);
    }
    let none = f
        .feed("/api/v1/updates/electron/app/latest-linux-arm64.yml", key, &[])
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
}

/// Velopack: the feed names each package's SHA-1 and SHA-256; the package downloads next to
/// the feed with the feed's credential, whole or by range.
#[tokio::test]
async fn velopack_feed_lists_packages_with_sha1_and_sha256() {
    let f = fixture().await;
    let files = all_files("1.1.0");
    f.release("1.1.0", "stable", 100, &files).await;
    let arm = [file("windows", "aarch64", "nupkg", "app-1.2.0-arm64-full.nupkg")];
    f.release("1.2.0", "stable", 100, &arm).await;
    let key = Some(f.license.as_str());
    let a = f
        .feed("/api/v1/updates/velopack/app/releases.win.json", key, &[])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let assets = a.body["Assets"].as_array().expect("Assets");
    assert_eq!(assets.len(), 2, "{}", a.body);
    let x64 = a
        .body["Assets"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["Version"] == "1.1.0"))
        .expect("1.1.0")
        .clone();
    let package = &files[6].4;
    assert_eq!(x64["PackageId"], "app");
    assert_eq!(x64["Type"], "Full");
    assert_eq!(x64["FileName"], "app-1.1.0-full.nupkg");
    assert_eq!(x64["Size"], package.len());
    assert_eq!(x64["SHA1"], hex::encode_upper(Sha1::digest(package)));
    assert_eq!(x64["SHA256"], hex::encode_upper(Sha256::digest(package)));
    assert!(str_of(&x64["NotesMarkdown"]).starts_with("Notes of 1.1.0"));
    let arm_only = f
        .feed("/api/v1/updates/velopack/app/releases.win-arm64.json", key, &[])
        .await;
    assert_eq!(arm_only.body["Assets"].as_array().map(Vec::len), Some(1));
    assert_eq!(arm_only.body["Assets"][0]["Version"], "1.2.0");

    let whole = f
        .feed("/api/v1/updates/velopack/app/app-1.1.0-full.nupkg", key, &[])
        .await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(&whole.raw, package);
    let part = f
        .feed(
            "/api/v1/updates/velopack/app/app-1.1.0-full.nupkg",
            key,
            &[("Range", "bytes=100-199")],
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.raw, package[100..200]);
    f.feed(
        "/api/v1/updates/velopack/app/app-1.1.0-full.nupkg",
        key,
        &[("Range", "bytes=999999-")],
    )
    .await
    .assert_error(416, "RANGE_NOT_SATISFIABLE");
    f.feed("/api/v1/updates/velopack/app/App_1.1.0_x64.msi", key, &[])
        .await
        .assert_error(404, "PACKAGE_NOT_FOUND");

    // An artifact stored before SHA-1s were recorded gets one computed, and kept.
    f.srv
        .db()
        .execute("UPDATE release_artifacts SET sha1 = ''", [])
        .expect("cleared");
    let again = f
        .feed("/api/v1/updates/velopack/app/releases.win-x64.json", key, &[])
        .await;
    assert_eq!(again.body["Assets"][0]["SHA1"], x64["SHA1"]);
}

/// The download links: Range resumes them; a changed, expired or foreign token is refused
/// without revealing which.
#[tokio::test]
async fn download_links_resume_with_range_and_refuse_expired_or_tampered_tokens() {
    let f = fixture().await;
    let files = all_files("1.1.0");
    f.release("1.1.0", "stable", 100, &files).await;
    let a = f.tauri(Some(&f.license), "linux", "x86_64", "1.0.0").await;
    let url = str_of(&a.body["url"]);
    let bytes = &files[3].4;
    let part = f.fetch(&url, &[("Range", "bytes=1000-")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.raw, bytes[1000..]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len()).as_str())
    );
    assert_eq!(part.header("accept-ranges"), Some("bytes"));
    f.fetch(&url, &[("Range", "bytes=99999999-")])
        .await
        .assert_error(416, "RANGE_NOT_SATISFIABLE");

    let (prefix, rest) = url.split_once("/download/").expect("a download URL");
    let (download_token, name) = rest.split_once('/').expect("token/name");
    let mut changed = download_token.to_owned().into_bytes();
    changed[3] = if changed[3] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).expect("ascii");
    for bad in [
        changed.as_str(),
        "nonsense",
        &format!("{download_token}x"),
        &"A".repeat(600),
    ] {
        f.fetch(&format!("{prefix}/download/{bad}/{name}"), &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    // Made with the server's own key, but expired; and one for an artifact that does not exist.
    let master = keyward::crypto::MasterKey::load(f.srv.data_dir())
        .expect("readable")
        .expect("a master key");
    let key = master.derive(token::DOWNLOAD_KEY_LABEL);
    let now = now_ms() / 1000;
    let (payload, _) = download_token.split_once('.').expect("payload.mac");
    let payload = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("text");
    let artifact_id = payload.split(':').next().expect("artifact").to_owned();
    let expired = token::issue_download(
        &key,
        &DownloadGrant {
            artifact_id: artifact_id.clone(),
            expires_at: now - 1,
            license_id: None,
        },
    )
    .expect("token");
    f.fetch(&format!("{prefix}/download/{expired}/{name}"), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    let fresh = token::issue_download(
        &key,
        &DownloadGrant {
            artifact_id,
            expires_at: now + 60,
            license_id: None,
        },
    )
    .expect("token");
    let ok = f.fetch(&format!("{prefix}/download/{fresh}/{name}"), &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let missing = token::issue_download(
        &key,
        &DownloadGrant {
            artifact_id: "art_nosuch".into(),
            expires_at: now + 60,
            license_id: None,
        },
    )
    .expect("token");
    f.fetch(&format!("{prefix}/download/{missing}/{name}"), &[])
        .await
        .assert_error(404, "ARTIFACT_NOT_FOUND");
}

/// One `<item>` of an appcast, as Sparkle reads it.
#[derive(Debug, Default)]
struct AppcastItem {
    version: String,
    short_version: String,
    channel: Option<String>,
    /// `Some("")`: critical for everyone; `Some(v)`: below v.
    critical_below: Option<String>,
    pub_date: String,
    description: String,
    url: String,
    length: String,
    ed_signature: String,
}

/// Parses an appcast with an XML parser, checking its namespace and RSS shape.
fn appcast_items(xml: &[u8]) -> Vec<AppcastItem> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;
    const SPARKLE: &[u8] = b"http://www.andymatuschak.org/xml-namespaces/sparkle";
    let mut reader = NsReader::from_reader(xml);
    let mut items = Vec::new();
    let mut current: Option<AppcastItem> = None;
    let mut path: Vec<String> = Vec::new();
    let mut saw_rss = false;
    let mut buf = Vec::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .expect("the appcast is well-formed XML");
        let sparkle = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == SPARKLE);
        match event {
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => {
                let (e, is_start) = match event {
                    Event::Start(e) => (e, true),
                    Event::Empty(e) => (e, false),
                    _ => unreachable!(),
                };
                let local = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                let attrs: Vec<(String, String)> = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("attribute");
                        let (_, local) = reader.resolve_attribute(a.key);
                        (
                            String::from_utf8_lossy(local.as_ref()).to_string(),
                            a.unescape_value().expect("value").to_string(),
                        )
                    })
                    .collect();
                let attr = |name: &str| {
                    attrs
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                match (sparkle, local.as_str()) {
                    (false, "rss") => {
                        saw_rss = attr("version").as_deref() == Some("2.0");
                    }
                    (false, "item") => current = Some(AppcastItem::default()),
                    (false, "enclosure") => {
                        let item = current.as_mut().expect("enclosure inside an item");
                        item.url = attr("url").expect("url");
                        item.length = attr("length").expect("length");
                        assert!(attr("type").is_some());
                        item.ed_signature = attr("edSignature").expect("sparkle:edSignature");
                    }
                    (true, "criticalUpdate") => {
                        current.as_mut().expect("inside an item").critical_below =
                            Some(attr("version").unwrap_or_default());
                    }
                    _ => {}
                }
                if is_start {
                    path.push(format!("{}{local}", if sparkle { "sparkle:" } else { "" }));
                }
            }
            Event::End(_) => {
                if path.pop().as_deref() == Some("item") {
                    items.push(current.take().expect("an item"));
                }
            }
            Event::Text(t) => {
                let text = t.unescape().expect("text").to_string();
                text_into(&mut current, path.last(), &text);
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t.into_inner()).to_string();
                text_into(&mut current, path.last(), &text);
            }
            _ => {}
        }
        buf.clear();
    }
    assert!(saw_rss, "an RSS 2.0 document");
    items
}

fn text_into(current: &mut Option<AppcastItem>, element: Option<&String>, text: &str) {
    let (Some(item), Some(element)) = (current.as_mut(), element) else {
        return;
    };
    match element.as_str() {
        "sparkle:version" => item.version.push_str(text),
        "sparkle:shortVersionString" => item.short_version.push_str(text),
        "sparkle:channel" => item.channel.get_or_insert_with(String::new).push_str(text),
        "pubDate" => item.pub_date.push_str(text),
        "description" => item.description.push_str(text),
        _ => {}
    }
}
