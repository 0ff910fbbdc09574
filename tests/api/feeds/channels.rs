//! Channels, yanks and staged rollouts, alike on every feed.

use super::sparkle::appcast_items;
use super::*;

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
        .feed(
            "/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=beta",
            key,
            &[],
        )
        .await;
    assert_eq!(version(&on_beta), "1.2.0-beta.1");
    let on_nightly = f
        .feed(
            "/api/v1/updates/tauri/app/linux/x86_64/1.0.0?channel=nightly",
            key,
            &[],
        )
        .await;
    assert_eq!(version(&on_nightly), "1.2.0-beta.1");
    let beta_url = str_of(&on_beta.body["url"]);

    let yaml = |a: &Answer| -> serde_yaml::Value {
        serde_yaml::from_slice(&a.raw).expect("electron-updater YAML parses")
    };
    let latest = f
        .feed("/api/v1/updates/electron/app/latest-mac.yml", key, &[])
        .await;
    assert_eq!(latest.status, StatusCode::OK);
    assert!(
        latest
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/yaml"))
    );
    assert_eq!(yaml(&latest)["version"].as_str(), Some("1.1.0"));
    let beta_mac = f
        .feed("/api/v1/updates/electron/app/beta-mac.yml", key, &[])
        .await;
    assert_eq!(yaml(&beta_mac)["version"].as_str(), Some("1.2.0-beta.1"));

    let appcast = f
        .feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[])
        .await;
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
                .feed(
                    &format!("/api/v1/updates/velopack/app/releases.{channel}.json"),
                    key,
                    &[],
                )
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
        .feed(
            "/api/v1/updates/tauri/app/linux/x86_64/1.1.0?channel=beta",
            key,
            &[],
        )
        .await;
    assert_eq!(on_beta.status, StatusCode::NO_CONTENT);
    let beta_mac = f
        .feed("/api/v1/updates/electron/app/beta-mac.yml", key, &[])
        .await;
    assert_eq!(yaml(&beta_mac)["version"].as_str(), Some("1.1.0"));
    let appcast = f
        .feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[])
        .await;
    assert_eq!(appcast_items(&appcast.raw).len(), 1);
    assert_eq!(velopack("win-beta").await, ["1.1.0"]);
    f.fetch(&beta_url, &[])
        .await
        .assert_error(404, "ARTIFACT_NOT_FOUND");
    f.feed(
        "/api/v1/updates/velopack/app/app-1.2.0-beta.1-full.nupkg",
        key,
        &[],
    )
    .await
    .assert_error(404, "PACKAGE_NOT_FOUND");

    // Bad channel files are bad input.
    for path in [
        "/api/v1/updates/electron/app/latest.json",
        "/api/v1/updates/electron/app/weekly-mac.yml",
        "/api/v1/updates/velopack/app/releases.win-weekly.json",
    ] {
        f.feed(path, key, &[])
            .await
            .assert_error(400, "VALIDATION_ERROR");
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
            let appcast = f
                .feed("/api/v1/updates/sparkle/app/appcast.xml", key, &[])
                .await;
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
    let anonymous = f
        .feed("/api/v1/updates/electron/app/latest-linux.yml", None, &[])
        .await;
    let parsed: serde_yaml::Value = serde_yaml::from_slice(&anonymous.raw).expect("yaml");
    assert_eq!(parsed["version"].as_str(), Some("1.2.0"));
    assert_eq!(parsed["stagingPercentage"].as_u64(), Some(40));
}
