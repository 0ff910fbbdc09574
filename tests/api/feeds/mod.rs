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

use crate::artifacts::{Fixture, artifact_form, bytes_of, fixture};
use crate::helpers::*;

mod access;
mod channels;
mod packages;
mod sparkle;
mod tauri;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A file of a release: platform, arch, filetype, name, bytes.
type File = (&'static str, &'static str, &'static str, String, Vec<u8>);

fn file(platform: &'static str, arch: &'static str, filetype: &'static str, name: &str) -> File {
    let bytes = bytes_of(
        &format!("{platform}{arch}{filetype}{name}"),
        3_000 + name.len() * 7,
    );
    (platform, arch, filetype, name.to_owned(), bytes)
}

/// Every framework's file for `version`.
fn all_files(version: &str) -> Vec<File> {
    vec![
        file(
            "darwin",
            "universal",
            "app.tar.gz",
            &format!("App_{version}_universal.app.tar.gz"),
        ),
        file(
            "darwin",
            "universal",
            "zip",
            &format!("App-{version}-mac.zip"),
        ),
        file("darwin", "universal", "dmg", &format!("App-{version}.dmg")),
        file(
            "linux",
            "x86_64",
            "AppImage",
            &format!("app_{version}_amd64.AppImage"),
        ),
        file(
            "windows",
            "x86_64",
            "nsis",
            &format!("App_{version}_x64-setup.exe"),
        ),
        file(
            "windows",
            "x86_64",
            "msi",
            &format!("App_{version}_x64_en-US.msi"),
        ),
        file(
            "windows",
            "x86_64",
            "nupkg",
            &format!("app-{version}-full.nupkg"),
        ),
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
        str_of(
            &self
                .srv
                .create_license(&self.admin, &self.project, json!({}))
                .await["key"],
        )
    }
}

fn tool(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (test.sh installs it): {e}"))
}
