//! Who may read a feed: licenses, feed tokens, public feeds and the admin's switch.

use super::*;

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
    let other_license = str_of(&f.srv.create_license(&f.admin, &other.id, json!({})).await["key"]);
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
        f.feed(path, None, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
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
    f.feed(
        "/api/v1/updates/sparkle/nosuch/appcast.xml",
        Some(&f.license),
        &[],
    )
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
    assert_eq!(
        issued.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "GET is not issuing"
    );
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
    f.feed(feeds[0], None, &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
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
        (
            "read-only key",
            Some(&reader),
            Some(json!({"public": true})),
            403,
        ),
        (
            "other tenant",
            Some(&stranger),
            Some(json!({"public": true})),
            404,
        ),
        (
            "wrong type",
            Some(&f.admin),
            Some(json!({"public": "yes"})),
            400,
        ),
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
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.body
    );
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
