//! The admin panel and the user portal in a real headless Chromium (WebDriver through
//! chromedriver), against a real server: first-run setup → login → project → keys → portal
//! layout → release → a portal user registers, activates a key, the app binds the HWID, the
//! loader downloads → the admin bans the key → the portal shows it. Also: form errors next to
//! their field, no sideways scrolling at 375 px, no external resources, no CSP violations.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `chromium chromium-driver`);
//! without them the tests fail, they never skip. Screenshots land in `target/screenshots/`;
//! `UPDATE_SCREENSHOTS=1 cargo test --test browser` also refreshes the README's in `docs/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

#[path = "browser/driver.rs"]
mod driver;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "browser/two_factor.rs"]
mod two_factor;

use std::path::Path;
use std::time::Instant;

use driver::{Browser, t};
use helpers::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const EMAIL: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery";
const HWID: &str = "HWID-7F3A-BROWSER-TEST-0001";

/// The README shows these four screenshots (copied to `docs/screenshots/`).
const README_SHOTS: [&str; 4] = ["dashboard", "keys", "portal-editor", "portal-full"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_panel_and_user_portal_end_to_end() {
    let started = Instant::now();
    let srv = TestServer::start().await;
    let b = Browser::start(&srv.url).await;

    /* ---------- First run: only the setup URL's token creates the first operator ---------- */
    // Without the link, the setup screen asks for the token; a wrong one is refused next to it.
    b.goto("/").await;
    b.el("setup-token").await;
    b.fill("setup-token", "not-the-setup-token").await;
    b.fill("setup-email", EMAIL).await;
    b.fill("setup-password", PASSWORD).await;
    b.fill("setup-password2", PASSWORD).await;
    b.click("setup-submit").await;
    b.wait_text("error-setupToken", "setup token").await;
    // The URL `keyward serve` prints: the token rides along, hidden, and leaves the address bar.
    b.goto(&format!("/setup?token={}", srv.setup_token())).await;
    b.el("setup-form").await;
    assert!(
        b.all("[data-test=setup-token]").await.is_empty(),
        "no token field when the link brought it"
    );
    let url = b.url().await;
    assert!(
        !url.contains("token="),
        "the token left the address bar: {url}"
    );
    b.assert_clean("setup").await;
    b.shot("setup").await;
    b.fill("setup-email", EMAIL).await;
    b.fill("setup-password", PASSWORD).await;
    b.fill("setup-password2", "something else").await;
    b.click("setup-submit").await;
    b.wait_text("error-password2", "do not match").await;
    b.fill("setup-password2", PASSWORD).await;
    b.click("setup-submit").await;
    b.el("view-dashboard").await;
    b.wait_text("current-user", EMAIL).await;

    /* ---------- Sign out, a wrong password, sign in ---------- */
    b.click("logout").await;
    b.el("login-form").await;
    b.fill("login-email", EMAIL).await;
    b.fill("login-password", "wrong password").await;
    b.click("login-submit").await;
    b.wait_js(
        "the login error",
        "const e = document.querySelector(arguments[0]); return e && e.textContent.trim().length > 3;",
        vec![json!(t("login-error"))],
    )
    .await;
    b.shot("login-error").await;
    b.fill("login-password", PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    // Setup never shows again.
    b.goto("/").await;
    b.el("view-dashboard").await;

    /* ---------- Create a project (the empty name is refused next to the field) ---------- */
    b.click("nav-projects").await;
    b.el("projects-empty").await;
    b.click("project-new").await;
    b.el("project-create-dialog").await;
    b.click("project-create-submit").await;
    b.wait_js(
        "the name error",
        "const e = document.querySelector(arguments[0]); return e && e.textContent.trim();",
        vec![json!(t("error-name"))],
    )
    .await;
    b.fill("project-name", "Starfall").await;
    b.fill("project-description", "A space game").await;
    b.click("project-create-submit").await;
    b.el("credentials").await;
    let project_id = b.text("project-id").await;
    assert!(!project_id.is_empty(), "the project id is shown");
    b.assert_clean("project credentials").await;
    b.click("tab-settings").await;
    b.el("project-settings-form").await;
    b.shot("project-settings").await;
    // The session-limit strategy: END_OLDEST by default, REFUSE_NEW once saved.
    let strategy = |srv: &TestServer| -> String {
        srv.db()
            .query_row(
                "SELECT session_limit FROM products WHERE id = ?1",
                [&project_id],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(strategy(&srv), "END_OLDEST");
    b.select("settings-session-limit", "REFUSE_NEW").await;
    b.click("settings-save").await;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while strategy(&srv) != "REFUSE_NEW" {
        assert!(
            Instant::now() < deadline,
            "the panel saves the session limit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Back to the default: the apps below restart without their sessionId.
    b.select("settings-session-limit", "END_OLDEST").await;
    b.click("settings-save").await;
    while strategy(&srv) != "END_OLDEST" {
        assert!(
            Instant::now() < deadline,
            "the panel saves the session limit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Entitlements: typed as a list (any case), saved as the project's codes.
    b.fill("settings-entitlements", "pro_export, BETA").await;
    b.click("settings-save").await;
    let codes = |srv: &TestServer| -> String {
        srv.db()
            .query_row(
                "SELECT entitlements FROM products WHERE id = ?1",
                [&project_id],
                |r| r.get(0),
            )
            .unwrap()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while codes(&srv) != "PRO_EXPORT,BETA" {
        assert!(
            Instant::now() < deadline,
            "the panel saves the entitlements"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.click("nav-projects").await;
    b.el("projects-table").await;
    b.shot("projects").await;

    /* ---------- Generate keys in the dialog and copy them all ---------- */
    b.click("nav-keys").await;
    b.el("keys-empty").await;
    b.click("keys-generate").await;
    b.el("generate-dialog").await;
    b.select("generate-project", &project_id).await;
    b.fill("generate-count", "60").await;
    b.click("generate-submit").await;
    b.wait_text("error-count", "50").await;
    b.fill("generate-count", "3").await;
    b.fill("generate-note", "browser test batch").await;
    b.click("generate-submit").await;
    b.el("generate-done").await;
    let keys: Vec<String> = b
        .js(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent.trim());",
            vec![json!(t("generated-key"))],
        )
        .await
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 3, "three keys shown: {keys:?}");
    b.shot("keys-generated").await;
    b.click("generate-copy-all").await;
    b.wait_text("generate-copy-all", "Copied").await;
    let clip = b
        .js_async(
            "const done = arguments[0]; navigator.clipboard.readText().then(done, (e) => done('ERR ' + e));",
            vec![],
        )
        .await;
    assert_eq!(
        clip.as_str().unwrap_or_default().trim(),
        keys.join("\n"),
        "copy all puts every key on the clipboard"
    );
    b.click("generate-close").await;
    b.wait_gone(&t("generate-dialog")).await;
    b.wait_js(
        "three key rows",
        "return document.querySelectorAll(arguments[0]).length === 3;",
        vec![json!(t("key-row"))],
    )
    .await;
    b.assert_clean("keys").await;
    b.shot("keys-new").await;
    let key = keys[0].clone();
    let key_id = b
        .js(
            "return [...document.querySelectorAll(arguments[0])]\
               .find((r) => r.querySelector('[data-test=key-link]').textContent.trim() === arguments[1])\
               .getAttribute('data-id');",
            vec![json!(t("key-row")), json!(key)],
        )
        .await
        .as_str()
        .expect("the key's row")
        .to_owned();

    /* ---------- The dashboard ---------- */
    b.click("nav-dashboard").await;
    b.el("stats").await;
    b.wait_text("stat-total-keys", "3").await;
    b.assert_clean("dashboard").await;
    b.shot("dashboard-new").await;

    /* ---------- Portal Dashboard Editor ---------- */
    b.goto(&format!("/#/projects/{project_id}/portal")).await;
    b.el("portal-editor").await;
    let items = "[data-test=block-list] [data-test=block-item]";
    assert_eq!(
        order(&b, items).await,
        json!(["key_info", "hwid_status", "copy_key", "download_loader"]),
        "the default blocks"
    );
    b.fill("portal-title", "Starfall members").await;
    b.fill(
        "portal-welcome",
        "Your Starfall license, machine and downloads.",
    )
    .await;
    // Keyboard alternatives: add a text block at the end, move it to the top, remove one.
    b.click("palette-custom_text").await;
    b.fill_css(
        &format!("{items}[data-index=\"4\"] {}", t("block-text")),
        "Season 2 is live: update the loader.",
    )
    .await;
    for from in (1..=4).rev() {
        b.click_css(&format!("{items}[data-index=\"{from}\"] {}", t("block-up")))
            .await;
    }
    b.wait_text("editor-announce", "position 1").await;
    b.click_css(&format!("{items}[data-index=\"3\"] {}", t("block-remove")))
        .await;
    assert_eq!(
        order(&b, items).await,
        json!(["custom_text", "key_info", "hwid_status", "download_loader"])
    );
    // Drag and drop: a palette block into the list, one item out onto the remove area.
    b.drag(&t("palette-copy_key"), &t("block-list"), true).await;
    b.drag(&t("palette-custom_button"), &t("block-list"), true)
        .await;
    b.drag(&t("palette-key_info"), &t("block-list"), true).await;
    assert_eq!(
        order(&b, items).await,
        json!([
            "custom_text",
            "key_info",
            "hwid_status",
            "download_loader",
            "copy_key",
            "custom_button",
            "key_info"
        ])
    );
    b.drag(
        &format!("{items}[data-index=\"6\"]"),
        &t("block-trash"),
        false,
    )
    .await;
    b.fill_css(
        &format!("{items}[data-index=\"5\"] {}", t("block-button-label")),
        "Discord",
    )
    .await;
    // A bad link is refused next to the field before anything is saved.
    b.fill_css(
        &format!("{items}[data-index=\"5\"] {}", t("block-button-url")),
        "discord.gg/starfall",
    )
    .await;
    b.click("portal-save").await;
    b.wait_text("portal-save-error", "valid link").await;
    b.fill_css(
        &format!("{items}[data-index=\"5\"] {}", t("block-button-url")),
        "https://discord.example/starfall",
    )
    .await;
    // HWID gating: the button only for users whose machine is bound.
    b.select_css(
        &format!("{items}[data-index=\"5\"] {}", t("block-requires")),
        "full",
    )
    .await;
    b.select("preview-level", "unbound").await;
    b.wait_attr("block-custom_button", "data-locked", "true")
        .await;
    let expected = json!([
        "custom_text",
        "key_info",
        "hwid_status",
        "download_loader",
        "copy_key",
        "custom_button"
    ]);
    assert_eq!(order(&b, items).await, expected);
    b.select("preview-level", "full").await;
    assert_eq!(
        order(&b, "[data-test=portal-preview-body] [data-block]").await,
        expected,
        "the live preview follows the list"
    );
    b.el("portal-dirty").await;
    b.click("portal-save").await;
    b.wait_text("toast", "Portal saved").await;
    b.wait_gone(&t("portal-dirty")).await;
    let info = srv
        .call(
            reqwest::Method::GET,
            "/api/portal/info?slug=starfall",
            None,
            None,
        )
        .await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    let saved: Vec<&str> = info.body["data"]["portal"]["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(json!(saved), expected, "the saved layout: {}", info.body);
    assert_eq!(info.body["data"]["portal"]["title"], "Starfall members");
    assert_eq!(
        info.body["data"]["portal"]["blocks"][5]["requires"], "full",
        "the button's gating is saved: {}",
        info.body
    );
    b.assert_clean("portal editor").await;
    b.shot("portal-editor").await;

    /* ---------- Upload and publish a release (the loader) ---------- */
    let bundle = srv.data_dir().join("starfall-loader-1.0.0.zip");
    let bundle_bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&bundle, &bundle_bytes).expect("bundle file");
    b.click("tab-releases").await;
    b.el("releases-empty").await;
    b.click("release-new").await;
    b.el("release-dialog").await;
    b.fill("release-version", "1.0.0").await;
    b.fill("release-changelog", "First public build.").await;
    b.find(&t("release-bundle"))
        .await
        .send_keys(bundle.to_str().expect("utf-8 path"))
        .await
        .expect("choose the bundle");
    // Watch the progress bar while the upload runs.
    b.js(
        "window.__progress = [];\
         new MutationObserver(() => { const p = document.querySelector('[data-test=release-progress] [role=progressbar]');\
           if (p) window.__progress.push(p.getAttribute('aria-valuenow')); })\
           .observe(document.body, {subtree: true, attributes: true, childList: true});",
        vec![],
    )
    .await;
    b.click("release-upload").await;
    b.wait_gone(&t("release-dialog")).await;
    let progress = b.js("return window.__progress;", vec![]).await;
    assert!(
        progress
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == "100")),
        "the progress bar reached 100 %: {progress}"
    );
    b.wait_attr("release-row", "data-status", "DRAFT").await;
    b.click("release-publish").await;
    b.el("release-publish-dialog").await;
    b.click("confirm-ok").await;
    b.wait_attr("release-row", "data-status", "PUBLISHED").await;
    b.assert_clean("releases").await;
    b.shot("releases").await;

    /* ---------- The portal: register (errors first), activate a key ---------- */
    b.goto("/p/starfall").await;
    b.el("portal-login-form").await;
    b.assert_clean("portal sign-in").await;
    b.shot("portal-sign-in").await;
    b.fill("login-username", "nobody").await;
    b.fill("login-password", "wrong password").await;
    b.click("login-submit").await;
    b.wait_js(
        "the portal login error",
        "const e = document.querySelector(arguments[0]); return e && e.textContent.trim().length > 3;",
        vec![json!(t("login-error"))],
    )
    .await;
    b.click("goto-register").await;
    b.el("portal-register-form").await;
    assert!(b.url().await.ends_with("/p/starfall/register"));
    b.fill("register-username", "player_one").await;
    b.fill("register-password", "short").await;
    b.fill("register-password2", "short").await;
    b.click("register-submit").await;
    let short = b.wait_text("error-password", "8").await;
    assert!(short.to_lowercase().contains("password"), "{short}");
    b.shot("portal-register-error").await;
    b.fill("register-password", PASSWORD).await;
    b.fill("register-password2", PASSWORD).await;
    b.click("register-submit").await;
    b.wait_attr("portal-dashboard", "data-access", "none").await;
    b.el("block-activate").await;
    assert!(
        b.all(&t("block-key_info")).await.is_empty(),
        "no key, no key blocks"
    );
    b.assert_clean("portal without a key").await;
    b.shot("portal-no-key").await;
    b.fill("activate-key", "NOPE-NOPE-NOPE-NOPE").await;
    b.click("activate-submit").await;
    b.wait_text("error-key", "no such key").await;
    b.fill("activate-key", &key.to_lowercase()).await;
    b.click("activate-submit").await;
    b.wait_attr("portal-dashboard", "data-access", "unbound")
        .await;
    b.wait_text("portal-notice", "bind your machine").await;
    b.wait_attr("hwid-state", "data-bound", "false").await;
    b.wait_attr("block-copy_key", "data-locked", "true").await;
    b.wait_attr("block-custom_button", "data-locked", "true")
        .await;
    assert!(
        b.all(&t("custom-button")).await.is_empty(),
        "the gated button's link is withheld until the machine is bound"
    );
    assert_eq!(
        order(&b, "[data-test=portal-blocks] [data-block]").await,
        expected,
        "the portal follows the saved layout"
    );
    let href = b
        .el("download-loader")
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("the loader link");
    let (status, bytes) = b.fetch(&href).await;
    assert_eq!(
        (status, bytes),
        (200, bundle_bytes.len() as u64),
        "the loader downloads while the key waits for its machine ({href})"
    );
    let page_text = b
        .js("return document.body.innerText;", vec![])
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !page_text.contains(&key),
        "the portal shows only the key mask"
    );
    b.assert_clean("portal, key not bound").await;
    b.shot("portal-unbound").await;

    /* ---------- The app validates: the HWID binds ---------- */
    let v = srv
        .call(
            reqwest::Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": key, "hwid": HWID})),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "validate: {}", v.body);
    assert_eq!(v.body["data"]["valid"], true, "{}", v.body);
    // Two more customers' apps, for the dashboard's figures.
    for (i, k) in keys.iter().enumerate().skip(1) {
        for _ in 0..i + 1 {
            let v = srv
                .call(
                    reqwest::Method::POST,
                    "/api/validate",
                    None,
                    Some(json!({"key": k, "hwid": format!("HWID-CUSTOMER-{i}")})),
                )
                .await;
            assert_eq!(v.status, StatusCode::OK, "validate: {}", v.body);
        }
    }

    b.c.refresh().await.expect("reload the portal");
    b.wait_attr("portal-dashboard", "data-access", "full").await;
    b.wait_attr("hwid-state", "data-bound", "true").await;
    let mask = b.text("copy-key-mask").await;
    assert!(
        mask.contains('*') && mask.len() == key.len() && mask[..4] == key[..4],
        "a key mask: {mask}"
    );
    b.wait_text("custom-text", "Season 2").await;
    let discord = b
        .el("custom-button")
        .await
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert_eq!(discord, "https://discord.example/starfall");
    let href = b
        .el("download-loader")
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("the loader link");
    let (status, bytes) = b.fetch(&href).await;
    assert_eq!(
        (status, bytes),
        (200, bundle_bytes.len() as u64),
        "the loader downloads"
    );
    b.assert_clean("portal, full access").await;
    b.shot("portal-full").await;

    /* ---------- The admin bans the key in the key's page ---------- */
    b.goto(&format!("/#/keys/{key_id}")).await;
    b.wait_text("key-hwid", HWID).await;
    b.el("key-activations-row").await;
    b.assert_clean("key detail").await;
    b.shot("key-detail").await;
    // The key's entitlements: one checkbox per project code.
    b.click("key-entitlement-BETA").await;
    b.click("key-limits-save").await;
    b.wait_text("key-entitlements", "BETA").await;
    assert_eq!(
        srv.db()
            .query_row(
                "SELECT entitlements FROM licenses WHERE id = ?1",
                [&key_id],
                |r| r.get::<_, String>(0),
            )
            .unwrap(),
        "BETA"
    );
    b.click("key-ban").await;
    b.el("key-ban-dialog").await;
    b.click("confirm-ok").await;
    b.wait_attr("key-status", "data-status", "BANNED").await;

    let v = srv
        .call(
            reqwest::Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": key, "hwid": HWID})),
        )
        .await;
    assert_ne!(
        v.status,
        StatusCode::OK,
        "a banned key does not validate: {}",
        v.body
    );

    /* ---------- The dashboard and the keys table with some activity ---------- */
    // Refusals reach the audit log through the background writer: wait for it.
    let deadline = Instant::now() + driver::TIMEOUT;
    loop {
        let refused = b
            .js_async(
                "const done = arguments[0];\
                 fetch('/api/stats', {credentials: 'same-origin'}).then((r) => r.json())\
                   .then((j) => done(j.data.failuresByReason.reduce((n, x) => n + x.count, 0)), () => done(0));",
                vec![],
            )
            .await;
        if refused.as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused validation never reached the stats"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.goto("/#/dashboard").await;
    b.el("chart-svg").await;
    b.wait_text("stat-validations-value", "6").await;
    b.wait_text("stat-activations-value", "3").await;
    b.wait_text("stat-failures-value", "1").await;
    b.shot("dashboard").await;
    b.goto("/#/keys").await;
    b.wait_js(
        "the banned key in the table",
        "return !!document.querySelector('[data-test=key-row][data-status=BANNED]');",
        vec![],
    )
    .await;
    b.shot("keys").await;

    // The admin overview pages each of its three lists; the setup made one operator, one
    // project and three keys.
    b.goto("/#/admin").await;
    b.wait_text("admin-stat-users", "1").await;
    b.wait_text("admin-stat-projects", "1").await;
    b.wait_text("admin-stat-keys", "3").await;
    assert_eq!(b.all("[data-test=admin-users-row]").await.len(), 1);
    assert_eq!(b.all("[data-test=admin-projects-row]").await.len(), 1);
    assert_eq!(b.all("[data-test=admin-keys-row]").await.len(), 3);
    b.assert_clean("admin overview").await;

    /* ---------- Abuse: key guessing is flagged, shown with its evidence, dismissed ---------- */
    for i in 0..40 {
        let guess = srv
            .call(
                reqwest::Method::POST,
                "/api/validate",
                None,
                Some(
                    json!({"key": format!("GUESS-{i:04}-XXXX-XXXX"), "hwid": "guesser-hwid-0001"}),
                ),
            )
            .await;
        assert_eq!(guess.status, StatusCode::NOT_FOUND, "{}", guess.body);
    }
    b.wait_js(
        "the key-guessing flag",
        "return fetch('/api/stats', {credentials: 'same-origin'}).then((r) => r.json())\
           .then((j) => j.data.openAbuseFlags >= 1);",
        vec![],
    )
    .await;
    b.goto("/#/dashboard").await;
    b.wait_text("abuse-badge", "open abuse flag").await;
    b.el("nav-abuse-badge").await;
    b.click("abuse-badge").await;
    b.el("abuse-table").await;
    b.click("abuse-view").await;
    b.el("abuse-dialog").await;
    b.wait_text("abuse-evidence", "Key guessing").await;
    b.assert_clean("abuse flag evidence").await;
    b.shot("abuse-flag").await;
    b.click("abuse-dismiss").await;
    b.el("abuse-empty").await;
    b.goto("/#/abuse/blocks").await;
    b.el("blocks-empty").await;
    b.goto("/#/abuse/policy").await;
    b.el("policy-form").await;
    b.assert_clean("abuse policy").await;
    b.shot("abuse-policy").await;

    /* ---------- The portal shows the ban ---------- */
    b.goto("/p/starfall").await;
    b.wait_attr("portal-dashboard", "data-access", "inactive")
        .await;
    b.wait_text("portal-access-note", "banned").await;
    b.wait_attr("block-download_loader", "data-locked", "true")
        .await;
    assert!(
        b.all(&t("download-loader")).await.is_empty(),
        "no loader link for a banned key"
    );
    let (status, _) = b.fetch("/api/portal/loader").await;
    assert_eq!(status, 403, "the loader is refused to a banned key");
    b.el("portal-activate-form").await;
    b.assert_clean("portal, key banned").await;
    b.shot("portal-banned").await;

    /* ---------- 375 px wide: nothing scrolls sideways ---------- */
    b.phone(true).await;
    for (path, ready, name) in [
        ("/p/starfall".to_owned(), "portal-dashboard", "phone-portal"),
        ("/#/dashboard".to_owned(), "stats", "phone-dashboard"),
        ("/#/keys".to_owned(), "keys-table", "phone-keys"),
        (format!("/#/keys/{key_id}"), "key-info", "phone-key-detail"),
        ("/#/projects".to_owned(), "projects-table", "phone-projects"),
        (
            format!("/#/projects/{project_id}/portal"),
            "portal-editor",
            "phone-portal-editor",
        ),
        (
            format!("/#/projects/{project_id}/releases"),
            "releases-table",
            "phone-releases",
        ),
        (
            "/#/abuse/policy".to_owned(),
            "policy-form",
            "phone-abuse-policy",
        ),
    ] {
        b.goto(&path).await;
        b.el(ready).await;
        b.assert_no_hscroll(name).await;
        b.assert_clean(name).await;
        b.shot(name).await;
    }
    b.goto("/p/starfall").await;
    b.click("portal-logout").await;
    b.el("portal-login-form").await;
    b.assert_no_hscroll("phone-portal-sign-in").await;
    b.assert_clean("phone-portal-sign-in").await;
    b.shot("phone-portal-sign-in").await;
    b.click("goto-register").await;
    b.el("portal-register-form").await;
    b.assert_no_hscroll("phone-portal-register").await;
    b.assert_clean("phone-portal-register").await;
    b.phone(false).await;

    b.close().await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        publish_readme_shots();
    }
    eprintln!(
        "browser scenario done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The project's signing keys in the credentials tab: rotate (through the confirm dialog that
/// explains the endorsement rule), then retire the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_signing_keys_rotate_and_retire() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    let product = srv.create_product("default", "rotating");
    let first_kid = keyward::domain::license_files::kid(&product.signing_public_key);
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.goto(&format!("/#/projects/{}/credentials", product.id))
        .await;
    b.el("signing-keys-table").await;
    assert_eq!(b.all(&t("signing-key-row")).await.len(), 1);
    let current = format!("{}[data-current=true]", t("signing-key-row"));
    assert_eq!(
        b.find(&current)
            .await
            .attr("data-kid")
            .await
            .unwrap()
            .as_deref(),
        Some(first_kid.as_str())
    );
    assert!(
        b.all(&t("signing-key-retire")).await.is_empty(),
        "the current key has no Retire button"
    );
    b.assert_clean("signing keys").await;

    b.click("signing-key-rotate").await;
    b.wait_text("signing-key-rotate-dialog", "endorse").await;
    b.click("confirm-ok").await;
    b.wait_js(
        "two keys listed",
        "return document.querySelectorAll(arguments[0]).length === 2;",
        vec![json!(t("signing-key-row"))],
    )
    .await;
    let new_public: Vec<u8> = srv
        .db()
        .query_row(
            "SELECT signing_public_key FROM products WHERE id = ?1",
            [&product.id],
            |r| r.get(0),
        )
        .unwrap();
    let new_kid = keyward::domain::license_files::kid(&new_public);
    b.wait_js(
        "the new key is current",
        "const e = document.querySelector(arguments[0]); return e && e.getAttribute('data-kid') === arguments[1];",
        vec![json!(current), json!(new_kid)],
    )
    .await;
    b.shot("signing-keys").await;

    b.click("signing-key-retire").await;
    b.el("signing-key-retire-dialog").await;
    b.click("confirm-ok").await;
    b.wait_js(
        "the old key is retired",
        "const e = document.querySelector(arguments[0]); return e && e.getAttribute('data-retired') === 'true';",
        vec![json!(format!("{}[data-kid=\"{first_kid}\"]", t("signing-key-row")))],
    )
    .await;
    b.assert_clean("signing keys after retiring").await;
    b.close().await;
}

/// The Webhooks page: an endpoint is created (its secret shown once), listed, flagged when the
/// server disabled it for failing, and its deliveries listed and redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_page_creates_endpoints_and_redelivers() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    srv.create_product("default", "hooked");
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.goto("/#/webhooks").await;
    b.el("webhooks-empty").await;
    b.assert_clean("webhooks, empty").await;
    b.click("webhook-new").await;
    b.fill("webhook-url", "https://hooks.example.com/keyward")
        .await;
    b.fill("webhook-description", "CRM").await;
    b.fill("webhook-events", "license.*, machine.activated")
        .await;
    b.click("webhook-save").await;
    let secret = b.text("webhook-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    b.click("webhook-done").await;
    b.el("webhooks-table").await;
    assert_eq!(b.all(&t("webhook-row")).await.len(), 1);
    let id = b
        .find(&t("webhook-row"))
        .await
        .attr("data-id")
        .await
        .unwrap()
        .unwrap();
    let stored: String = srv
        .db()
        .query_row(
            "SELECT event_types FROM webhook_endpoints WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, r#"["license.*","machine.activated"]"#);
    b.shot("webhooks").await;

    // Its deliveries: a test event, then a redelivery of it.
    b.goto(&format!("/#/webhooks/{id}")).await;
    b.el("deliveries-empty").await;
    b.click("webhook-test").await;
    b.el("deliveries-table").await;
    assert_eq!(b.all(&t("delivery-row")).await.len(), 1);
    b.click("delivery-redeliver").await;
    b.wait_js(
        "two deliveries listed",
        "return document.querySelectorAll(arguments[0]).length === 2;",
        vec![json!(t("delivery-row"))],
    )
    .await;
    b.assert_clean("webhook deliveries").await;
    b.shot("webhook-deliveries").await;
    b.phone(true).await;
    b.assert_no_hscroll("webhook deliveries").await;
    b.phone(false).await;

    // Disabled by the server for failing: flagged in the list, with the reason.
    srv.db()
        .execute(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_at = 1,
                 disabled_reason = 'deliveries failed for 259200 s in a row (last: answered 500)'
             WHERE id = ?1",
            [&id],
        )
        .unwrap();
    b.goto("/#/webhooks").await;
    b.wait_text("webhook-state", "failing").await;
    b.wait_text("webhook-disabled-reason", "answered 500").await;
    b.close().await;
}

/// Air-gapped activation on the portal: a user pastes the activation request an offline app
/// shows into the `license_file` block; the machine is activated and its machine file
/// downloads (read back here with the key and the fingerprint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_activates_an_air_gapped_machine_from_its_request() {
    use keyward::domain::api_keys::Scope;
    use keyward::domain::license_files::{self, ActivationRequest, FileKind};
    use reqwest::Method;

    let srv = TestServer::start().await;
    let product = srv.create_product_with("default", "airgap", |p| {
        p.default_max_activations = 1;
    });
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let layout = srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}", product.id),
            Some(&admin),
            Some(json!({"portalSettings": {"blocks": [
                {"type": "key_info"}, {"type": "hwid_status"}, {"type": "license_file"}
            ]}})),
        )
        .await;
    assert_eq!(layout.status, StatusCode::OK, "{}", layout.body);
    let keys = srv
        .post(
            "/api/keys",
            &admin,
            json!({"plan": "MONTHLY", "projectId": product.id}),
        )
        .await;
    assert_eq!(keys.status, StatusCode::CREATED, "{}", keys.body);
    let key = keys.body["data"]["keys"][0]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let user = srv
        .call(
            Method::POST,
            "/api/portal/register",
            None,
            Some(
                json!({"username": "offline_user", "password": PASSWORD, "projectId": product.id}),
            ),
        )
        .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.body);
    let token = user.body["data"]["token"].as_str().expect("token");
    let linked = srv
        .client
        .post(format!("{}/api/portal/activate", srv.url))
        .bearer_auth(token)
        .json(&json!({"key": key}))
        .send()
        .await
        .expect("link the key");
    assert_eq!(linked.status(), StatusCode::OK);

    let b = Browser::start(&srv.url).await;
    b.goto("/p/airgap").await;
    b.el("portal-login-form").await;
    b.fill("login-username", "offline_user").await;
    b.fill("login-password", PASSWORD).await;
    b.click("login-submit").await;
    b.wait_attr("portal-dashboard", "data-access", "unbound")
        .await;
    b.el("block-license_file").await;
    assert!(
        b.el("license-file-download")
            .await
            .attr("disabled")
            .await
            .expect("attr")
            .is_some(),
        "nothing bound yet: nothing to download"
    );
    // A request that is not one is refused next to the field.
    b.fill("license-file-request", "this is not a request")
        .await;
    b.click("license-file-submit").await;
    b.wait_text("error-request", "not base64").await;
    b.shot("portal-license-file-error").await;
    // The download is a blob handed to a link: keep its text.
    b.js(
        "window.__files = []; const make = URL.createObjectURL.bind(URL);\
         URL.createObjectURL = (blob) => { blob.text().then((t) => window.__files.push(t)); return make(blob); };\
         return true;",
        vec![],
    )
    .await;
    let request = ActivationRequest {
        key: key.clone(),
        fingerprint: "vault-pc-01".into(),
        name: Some("Vault PC".into()),
    }
    .armoured();
    b.fill("license-file-request", &request).await;
    b.click("license-file-submit").await;
    b.wait_text("portal-notice", "vault-pc-01").await;
    b.wait_attr("portal-dashboard", "data-access", "full").await;
    let file = b
        .wait_js(
            "the machine file download",
            "return window.__files && window.__files[0];",
            vec![],
        )
        .await;
    let public: [u8; 32] = product
        .signing_public_key
        .as_slice()
        .try_into()
        .expect("32-byte key");
    let file_key = license_files::file_key(&key, Some("vault-pc-01"));
    let decoded = license_files::decode(file.as_str().expect("text"), &public, Some(&file_key))
        .expect("the downloaded machine file verifies and decrypts");
    assert_eq!(decoded.kind, FileKind::Machine);
    assert_eq!(
        srv.db()
            .query_row(
                "SELECT COUNT(*) FROM activations WHERE machine_id = 'vault-pc-01'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap(),
        1
    );
    // Bound now: the block downloads the machine's file again.
    b.click("license-file-download").await;
    b.wait_js(
        "the bound machine's file",
        "return window.__files && window.__files.length >= 2;",
        vec![],
    )
    .await;
    b.assert_clean("portal license file").await;
    b.shot("portal-license-file").await;

    // The vendor's side: the key's page takes a request in the "Offline activation" dialog.
    let operator = helpers::setup_admin(&srv).await;
    let key_id = keys.body["data"]["keys"][0]["id"].as_str().expect("id");
    // Signed in as the panel's login would leave it (the portal page is on the same origin).
    b.js(
        "document.cookie = `keyward_token=${arguments[0]}; path=/; SameSite=Strict`; return true;",
        vec![json!(operator.token)],
    )
    .await;
    b.goto(&format!("/#/keys/{key_id}")).await;
    b.el("key-actions").await;
    b.js(
        "window.__files = []; const make = URL.createObjectURL.bind(URL);\
         URL.createObjectURL = (blob) => { blob.text().then((t) => window.__files.push(t)); return make(blob); };\
         return true;",
        vec![],
    )
    .await;
    b.click("key-offline").await;
    b.el("offline-dialog").await;
    let elsewhere = ActivationRequest {
        key: key.clone(),
        fingerprint: "another-pc".into(),
        name: None,
    }
    .armoured();
    b.fill("offline-request", &elsewhere).await;
    b.click("offline-submit").await;
    b.wait_text("error-request", "maximum number of activations")
        .await;
    b.fill("offline-request", &request).await;
    b.click("offline-submit").await;
    b.wait_text("offline-done", "already activated").await;
    b.wait_js(
        "the admin's machine file download",
        "return window.__files && window.__files.length >= 1;",
        vec![],
    )
    .await;
    b.assert_clean("admin offline activation").await;
    b.shot("admin-offline-activation").await;
    b.close().await;
}

/// The `data-type` (editor items) or `data-block` (dashboard blocks) of every match, in order.
async fn order(b: &Browser, css: &str) -> Value {
    b.js(
        "return [...document.querySelectorAll(arguments[0])]\
           .map((e) => e.getAttribute('data-type') || e.getAttribute('data-block'));",
        vec![json!(css)],
    )
    .await
}

/// Copies the screenshots the README shows to `docs/screenshots/` (run with
/// `UPDATE_SCREENSHOTS=1` to refresh them).
fn publish_readme_shots() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&docs).expect("docs/screenshots");
    for name in README_SHOTS {
        let from = driver::screenshot_dir().join(format!("{name}.png"));
        std::fs::copy(&from, docs.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Selling: the Payments page creates an endpoint (its webhook URL shown to copy), maps a price,
/// and lists the events received, a flagged one marked and applied again once its price is
/// mapped; the key a purchase made shows it in its Payments section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_page_endpoints_mappings_and_received_events() {
    use keyward::domain::payments::{Provider, signature};
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    srv.create_product("default", "shop-app");
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.click("nav-payments").await;
    b.el("payments-empty").await;

    b.click("payment-endpoint-new").await;
    b.select("payment-provider", "STRIPE").await;
    b.fill("payment-name", "Stripe live").await;
    b.fill("payment-secret", "short").await;
    b.click("payment-endpoint-save").await;
    b.wait_text("error-secret", "secret").await;
    let secret = "whsec_browser_test_secret";
    b.fill("payment-secret", secret).await;
    b.click("payment-endpoint-save").await;
    let url = b.wait_text("payment-url", "/api/payments/stripe/").await;
    let endpoint = url.rsplit('/').next().unwrap().trim().to_owned();

    b.click("payment-mapping-new").await;
    b.fill("payment-mapping-ref", "price_1Browser").await;
    b.select("payment-mapping-tier", "BUSINESS").await;
    b.click("payment-mapping-save").await;
    b.wait_text("payment-mappings-table", "price_1Browser")
        .await;

    let deliver = |event: Value| {
        let body = event.to_string();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header =
            signature::sign(Provider::Stripe, secret.as_bytes(), body.as_bytes(), now).unwrap();
        let req = srv
            .client
            .post(format!("{}/api/payments/stripe/{endpoint}", srv.url))
            .header("Stripe-Signature", header)
            .header("content-type", "application/json")
            .body(body);
        async move { TestServer::decode(req.send().await.unwrap()).await }
    };
    let checkout = |id: &str, price: &str| {
        json!({"id": id, "object": "event", "type": "checkout.session.completed",
            "data": {"object": {"id": format!("cs_{id}"), "object": "checkout.session",
                "mode": "payment", "payment_status": "paid", "payment_intent": format!("pi_{id}"),
                "customer_details": {"email": "ivy@example.com", "name": "Ivy"},
                "metadata": {"keyward_price": price}}}})
    };
    let unmapped = deliver(checkout("evt_browser_1", "price_1Other")).await;
    assert_eq!(unmapped.body["data"]["outcome"], "UNMAPPED");
    let bought = deliver(checkout("evt_browser_2", "price_1Browser")).await;
    assert_eq!(bought.body["data"]["outcome"], "APPLIED", "{}", bought.body);
    let license = bought.body["data"]["licenseIds"][0]
        .as_str()
        .unwrap()
        .to_owned();

    b.goto("/#/dashboard").await;
    b.el("view-dashboard").await;
    b.click("nav-payments").await;
    b.wait_js(
        "two received events",
        "return document.querySelectorAll(arguments[0]).length === 2;",
        vec![json!(t("payment-event-row"))],
    )
    .await;
    b.wait_text("payment-flagged", "1 flagged").await;
    b.assert_clean("payments").await;
    b.shot("payments").await;
    b.phone(true).await;
    b.goto("/#/payments").await;
    b.el("payment-events-table").await;
    b.assert_no_hscroll("phone-payments").await;
    b.shot("phone-payments").await;
    b.phone(false).await;
    b.goto("/#/payments").await;
    b.el("payment-events-table").await;

    // The unmapped purchase waits for its price: mapped now, "Apply again" makes its key.
    b.click("payment-mapping-new").await;
    b.fill("payment-mapping-ref", "price_1Other").await;
    b.click("payment-mapping-save").await;
    b.wait_text("payment-mappings-table", "price_1Other").await;
    b.click("payment-event-apply").await;
    b.el("payment-event-apply-dialog").await;
    b.click("confirm-ok").await;
    b.wait_text("toast", "1 license(s) created").await;
    b.wait_gone(&t("payment-event-apply")).await;
    b.assert_clean("payments applied again").await;
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM licenses WHERE customer_email = 'ivy@example.com'",
            []
        ),
        2
    );
    b.click_css(&format!("a[href=\"#/keys/{license}\"]")).await;
    b.wait_text("key-payments", "checkout.session.completed")
        .await;
    b.assert_clean("key payments").await;
    b.close().await;
}

/// A release's per-platform files in the Releases tab: the Tauri public key is shown, a file is
/// uploaded through the Files dialog (hashes and signatures listed), the rollout is narrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_files_per_platform_and_rollout() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    let product = srv.create_product("default", "desk");
    let key = srv.create_api_key("default", keyward::domain::api_keys::Scope::FullAdmin, None);
    let draft = srv
        .post(
            &format!("/api/projects/{}/release-drafts", product.id),
            &key,
            json!({"version": "1.5.0"}),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{}", draft.body);
    let settings = srv
        .get(
            &format!("/api/projects/{}/update-settings", product.id),
            &key,
        )
        .await;
    let tauri = settings.body["data"]["minisign"]["tauriPubkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.goto(&format!("/#/projects/{}/releases", product.id))
        .await;
    b.el("releases-table").await;
    b.el("tauri-pubkey").await;
    b.wait_js(
        "the Tauri key is shown in full in its title",
        "const e = document.querySelector(arguments[0] + ' [title]'); return e && e.getAttribute('title') === arguments[1];",
        vec![json!(t("tauri-pubkey")), json!(tauri)],
    )
    .await;

    b.click("release-files").await;
    b.el("artifacts-empty").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Desk_1.5.0_x64.msi");
    std::fs::write(&file, vec![42u8; 200_000]).unwrap();
    b.find(&t("artifact-file"))
        .await
        .send_keys(file.to_str().expect("utf-8 path"))
        .await
        .expect("choose the file");
    b.click("artifact-upload").await;
    b.el("artifact-row").await;
    b.wait_text("artifacts-table", "Desk_1.5.0_x64.msi").await;
    b.assert_clean("release files").await;
    b.shot("release-files").await;
    b.click("artifacts-close").await;
    b.wait_text("release-files", "Files (1)").await;

    b.click("release-rollout").await;
    b.el("rollout-dialog").await;
    b.fill("rollout-percentage", "30").await;
    b.click("rollout-save").await;
    b.wait_text("release-rollout-badge", "30 %").await;
    b.assert_clean("release rollout").await;
    b.close().await;
}

/// A vendor shipping per-platform installers creates the release from the panel without a
/// bundle: the new-release form's "Files per platform" posts a draft (a bad version shows on its
/// field), the draft's Files dialog opens for the first file, and the draft is then published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_without_bundle_is_created_with_files_per_platform() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    let product = srv.create_product("default", "desk");
    let key = srv.create_api_key("default", keyward::domain::api_keys::Scope::FullAdmin, None);
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.goto(&format!("/#/projects/{}/releases", product.id))
        .await;
    b.el("releases-empty").await;
    b.click("release-new").await;
    b.el("release-dialog").await;
    b.select("release-kind", "artifacts").await;
    b.wait_gone(&t("release-bundle")).await;
    b.wait_text("release-upload", "Create draft").await;
    b.fill("release-version", "2.x").await;
    b.fill("release-changelog", "Installers for every desktop.")
        .await;
    b.click("release-upload").await;
    b.wait_text("error-version", "semantic version").await;
    b.el("release-dialog").await;
    b.fill("release-version", "2.0.0").await;
    b.click("release-upload").await;

    b.wait_gone(&t("release-dialog")).await;
    b.el("artifacts-dialog").await;
    b.el("artifacts-empty").await;
    b.select("artifact-platform", "linux").await;
    b.select("artifact-filetype", "AppImage").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk_2.0.0_amd64.AppImage");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    b.find(&t("artifact-file"))
        .await
        .send_keys(file.to_str().expect("utf-8 path"))
        .await
        .expect("choose the file");
    b.click("artifact-upload").await;
    b.wait_text("artifacts-table", "desk_2.0.0_amd64.AppImage")
        .await;
    b.assert_clean("new draft files").await;
    b.click("artifacts-close").await;
    b.wait_text("release-files", "Files (1)").await;
    b.wait_attr("release-row", "data-status", "DRAFT").await;
    b.click("release-publish").await;
    b.el("release-publish-dialog").await;
    b.click("confirm-ok").await;
    b.wait_attr("release-row", "data-status", "PUBLISHED").await;
    b.wait_text("releases-table", "1 per-platform file(s)")
        .await;
    b.assert_clean("published per-platform release").await;

    // The portal's loader block lists the release's file, which downloads.
    let made = srv
        .post(
            "/api/keys",
            &key,
            json!({"plan": "MONTHLY", "count": 1, "projectId": product.id}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let license = made.body["data"]["keys"][0]["key"].as_str().unwrap();
    b.goto("/p/desk").await;
    b.click("goto-register").await;
    b.fill("register-username", "desk_user").await;
    b.fill("register-password", PASSWORD).await;
    b.fill("register-password2", PASSWORD).await;
    b.click("register-submit").await;
    b.wait_attr("portal-dashboard", "data-access", "none").await;
    b.fill("activate-key", license).await;
    b.click("activate-submit").await;
    b.wait_attr("portal-dashboard", "data-access", "unbound")
        .await;
    b.wait_attr("loader-file", "data-platform", "linux").await;
    b.wait_text("loader-files", "desk_2.0.0_amd64.AppImage")
        .await;
    assert!(
        b.all(&t("download-loader")).await.is_empty(),
        "no bundle: no loader button without a choice"
    );
    let href = b
        .el("loader-file-download")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("the file's link");
    assert_eq!(b.fetch(&href).await, (200, 100_000), "{href}");
    b.assert_clean("portal loader files").await;
    b.close().await;

    let listed = srv
        .get(&format!("/api/projects/{}/releases", product.id), &key)
        .await;
    let releases = listed.body["data"]["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 1, "{}", listed.body);
    let r = &releases[0];
    assert_eq!(r["version"], json!("2.0.0"));
    assert_eq!(r["status"], json!("PUBLISHED"));
    assert_eq!(r["changelog"], json!("Installers for every desktop."));
    assert!(r["bundleFilename"].is_null(), "no bundle: {r}");
    assert_eq!(r["artifacts"][0]["platform"], json!("linux"));
    assert_eq!(r["artifacts"][0]["filetype"], json!("AppImage"));
}

/// The Releases tab shows the project's feed addresses; the public-feeds switch makes the feeds
/// answer without a license, as the API then says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_feeds_are_listed_and_made_public() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    let product = srv.create_product("default", "desk");
    let key = srv.create_api_key("default", keyward::domain::api_keys::Scope::FullAdmin, None);
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;
    b.goto(&format!("/#/projects/{}/releases", product.id))
        .await;
    b.el("feeds-table").await;
    b.wait_text("feeds-table", "/api/v1/updates/sparkle/desk/appcast.xml")
        .await;
    b.wait_text(
        "feeds-table",
        "/api/v1/updates/tauri/desk/{{target}}/{{arch}}/{{current_version}}",
    )
    .await;
    b.click("feeds-public").await;
    let path = format!("/api/projects/{}/feeds", product.id);
    let mut public = false;
    for _ in 0..50 {
        public = srv.get(&path, &key).await.body["data"]["public"] == json!(true);
        if public {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(public, "the switch made the feeds public");
    b.assert_clean("feeds").await;
    b.close().await;
}
