//! Staged rollouts and the product's minimum version (issue 15), through the update check.

use std::collections::BTreeSet;

use crate::artifacts::{Fixture, fixture};
use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Which of `licenses` are offered `version` by the update check.
async fn offered(f: &Fixture, licenses: &[String], version: &str) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for license in licenses {
        let a = f
            .updates_as(license, "/api/v1/updates/check?current_version=1.0.0", &[])
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if a.body["version"] == version {
            got.insert(license.clone());
        }
    }
    got
}

#[tokio::test]
async fn a_staged_rollout_keeps_its_licenses_as_the_percentage_grows() {
    let f = fixture().await;
    f.published("1.3.0", 100).await;
    let staged = f.published("1.4.0", 10).await;
    let mut licenses = vec![f.license.clone()];
    for _ in 1..200 {
        let l = f.srv.create_license(&f.admin, &f.project, json!({})).await;
        licenses.push(str_of(&l["key"]));
    }
    let ten = offered(&f, &licenses, "1.4.0").await;
    assert!((5..=40).contains(&ten.len()), "10% of 200: {}", ten.len());
    // The others get the next newest release they are eligible for.
    let outside = licenses
        .iter()
        .find(|l| !ten.contains(*l))
        .expect("one outside");
    let a = f
        .updates_as(outside, "/api/v1/updates/check?current_version=1.0.0", &[])
        .await;
    assert_eq!(a.body["version"], "1.3.0", "{}", a.body);
    // Already on 1.3.0 and outside the bucket: no update.
    let a = f
        .updates_as(outside, "/api/v1/updates/check?current_version=1.3.0", &[])
        .await;
    assert_eq!(a.body["update_available"], false, "{}", a.body);

    let p = f
        .patch_release(&staged, json!({"rolloutPercentage": 50}))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["data"]["release"]["rolloutPercentage"], 50);
    let fifty = offered(&f, &licenses, "1.4.0").await;
    assert!(ten.is_subset(&fifty), "the 10% stay inside at 50%");
    assert!(
        (70..=130).contains(&fifty.len()),
        "50% of 200: {}",
        fifty.len()
    );

    f.patch_release(&staged, json!({"rolloutPercentage": 100}))
        .await;
    assert_eq!(offered(&f, &licenses, "1.4.0").await.len(), 200);

    // Yanking takes it out at once, whatever the percentage.
    let y = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{staged}/yank"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(y.status, StatusCode::OK, "{}", y.body);
    assert!(offered(&f, &licenses[..20], "1.4.0").await.is_empty());

    // 0–100 only, with the field named.
    for bad in [
        json!({"rolloutPercentage": 101}),
        json!({"rolloutPercentage": -1}),
        json!({"rolloutPercentage": "half"}),
    ] {
        let a = f.patch_release(&staged, bad.clone()).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "rolloutPercentage");
    }
}

#[tokio::test]
async fn below_the_minimum_version_an_update_is_critical() {
    let f = fixture().await;
    f.published("1.3.0", 100).await;
    let path = format!("/api/projects/{}/update-settings", f.project);
    let check = |v: &'static str| {
        let f = &f;
        async move {
            let a = f
                .updates(&format!("/api/v1/updates/check?current_version={v}"), &[])
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.body
        }
    };
    assert_eq!(check("1.0.0").await["is_critical"], false);
    let set = f
        .srv
        .call(
            Method::PATCH,
            &path,
            Some(&f.admin),
            Some(json!({"minimumVersion": "1.2.0"})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["data"]["minimumVersion"], "1.2.0");
    assert_eq!(check("1.0.0").await["is_critical"], true);
    assert_eq!(check("1.2.0-beta.1").await["is_critical"], true);
    assert_eq!(check("1.2.5").await["is_critical"], false);
    assert_eq!(f.settings().await["minimumVersion"], "1.2.0");
    // Cleared with null.
    let cleared = f
        .srv
        .call(
            Method::PATCH,
            &path,
            Some(&f.admin),
            Some(json!({"minimumVersion": null})),
        )
        .await;
    assert_eq!(
        cleared.body["data"]["minimumVersion"],
        serde_json::Value::Null
    );
    assert_eq!(check("1.0.0").await["is_critical"], false);

    let bad = f
        .srv
        .call(
            Method::PATCH,
            &path,
            Some(&f.admin),
            Some(json!({"minimumVersion": "1.2"})),
        )
        .await;
    assert_kv_error_naming(&bad, 400, "VALIDATION_ERROR", "minimumVersion");
    let bad = f
        .srv
        .call_raw(
            Method::PATCH,
            &path,
            Some(&f.admin),
            "application/json",
            b"{\"minimumVersion\":".to_vec(),
        )
        .await;
    assert_kv_error(&bad, 400, "VALIDATION_ERROR");
}
