//! Tauri v2's feed, and the download links every feed writes.

use super::*;

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
        let pk_text = String::from_utf8(B64.decode(&tauri_pubkey).expect("base64")).expect("text");
        let pk = minisign_verify::PublicKey::decode(&pk_text).expect("public key");
        let sig = minisign_verify::Signature::decode(&sig_text).expect("signature");
        pk.verify(&got.raw, &sig, false)
            .expect("minisign-verify accepts it");

        let path = dir.path().join(&expected.3);
        std::fs::write(&path, &got.raw).expect("write");
        let sig_path = dir.path().join(format!("{}.minisig", expected.3));
        std::fs::write(&sig_path, &sig_text).expect("write");
        let p = path.to_string_lossy().to_string();
        let s = sig_path.to_string_lossy().to_string();
        let out = tool(
            "minisign",
            &["-V", "-m", &p, "-x", &s, "-P", &minisign_line],
        );
        assert!(
            out.status.success(),
            "minisign -V: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tampered = got.raw.clone();
        tampered[0] ^= 1;
        std::fs::write(&path, &tampered).expect("write");
        let out = tool(
            "minisign",
            &["-V", "-m", &p, "-x", &s, "-P", &minisign_line],
        );
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
        assert_eq!(
            a.status,
            StatusCode::NO_CONTENT,
            "{target}/{arch}/{current}"
        );
        assert!(a.raw.is_empty());
    }
    // Bad input is the vendor envelope naming the part.
    let cases = [
        ("/api/v1/updates/tauri/app/beos/x86_64/1.0.0", "target"),
        ("/api/v1/updates/tauri/app/linux/amd64/1.0.0", "arch"),
        ("/api/v1/updates/tauri/app/linux/universal/1.0.0", "arch"),
        (
            "/api/v1/updates/tauri/app/linux/x86_64/one",
            "current_version",
        ),
        (
            "/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=weekly",
            "channel",
        ),
    ];
    for (path, needle) in cases {
        let a = f.feed(path, Some(&f.license), &[]).await;
        a.assert_error(400, "VALIDATION_ERROR");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{path}: {}",
            a.body
        );
    }
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
    let ok = f
        .fetch(&format!("{prefix}/download/{fresh}/{name}"), &[])
        .await;
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
