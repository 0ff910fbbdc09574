//! electron-updater's channel files and Velopack's feed and packages.

use super::*;

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
        .feed(
            "/api/v1/updates/electron/app/latest-linux-arm64.yml",
            key,
            &[],
        )
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
    let arm = [file(
        "windows",
        "aarch64",
        "nupkg",
        "app-1.2.0-arm64-full.nupkg",
    )];
    f.release("1.2.0", "stable", 100, &arm).await;
    let key = Some(f.license.as_str());
    let a = f
        .feed("/api/v1/updates/velopack/app/releases.win.json", key, &[])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let assets = a.body["Assets"].as_array().expect("Assets");
    assert_eq!(assets.len(), 2, "{}", a.body);
    let x64 = a.body["Assets"]
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
        .feed(
            "/api/v1/updates/velopack/app/releases.win-arm64.json",
            key,
            &[],
        )
        .await;
    assert_eq!(arm_only.body["Assets"].as_array().map(Vec::len), Some(1));
    assert_eq!(arm_only.body["Assets"][0]["Version"], "1.2.0");

    let whole = f
        .feed(
            "/api/v1/updates/velopack/app/app-1.1.0-full.nupkg",
            key,
            &[],
        )
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
        .feed(
            "/api/v1/updates/velopack/app/releases.win-x64.json",
            key,
            &[],
        )
        .await;
    assert_eq!(again.body["Assets"][0]["SHA1"], x64["SHA1"]);
}
