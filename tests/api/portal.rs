//! The per-project user portal API: `/api/portal/info|register|login|me|activate|logout|loader`.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Fixture {
    srv: TestServer,
    admin: String,
    project: String,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tune: impl FnOnce(&mut keyward::config::Config)) -> Fixture {
    let srv = TestServer::start_with(tune).await;
    let product = srv.create_product("default", "game");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    Fixture {
        srv,
        admin,
        project: product.id,
    }
}

impl Fixture {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Cred<'_>,
        body: Option<Value>,
    ) -> Answer {
        self.send_with(method, path, auth, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        auth: Cred<'_>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        send(&self.srv, method, path, auth, body, headers).await
    }

    async fn register(&self, username: &str, password: &str) -> Answer {
        self.send(
            Method::POST,
            "/api/portal/register",
            Cred::None,
            Some(json!({"username": username, "password": password, "projectId": self.project})),
        )
        .await
    }

    /// Registers and returns the session token.
    async fn user(&self, username: &str) -> String {
        let a = self.register(username, "correct horse").await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["data"]["token"].as_str().expect("token").to_owned()
    }

    async fn me(&self, token: &str) -> Value {
        let a = self
            .send(Method::GET, "/api/portal/me", Cred::Bearer(token), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["data"].clone()
    }

    async fn activate(&self, token: &str, key: &str) -> Answer {
        self.send(
            Method::POST,
            "/api/portal/activate",
            Cred::Bearer(token),
            Some(json!({"key": key})),
        )
        .await
    }

    /// A key of the project made through the admin API (HWID locked, MONTHLY).
    async fn key(&self, project: &str) -> (String, String) {
        let a = self
            .srv
            .post(
                "/api/keys",
                &self.admin,
                json!({"plan": "MONTHLY", "count": 1, "projectId": project}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let k = &a.body["data"]["keys"][0];
        (
            k["id"].as_str().expect("id").to_owned(),
            k["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Uploads and publishes `bytes` as stable release 1.0.0: the portal's loader.
    async fn publish_loader(&self, bytes: Vec<u8>, filename: &str) {
        let form = reqwest::multipart::Form::new()
            .text("version", "1.0.0")
            .part(
                "bundle",
                reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
            );
        let upload = self
            .srv
            .client
            .post(format!(
                "{}/api/projects/{}/releases",
                self.srv.url, self.project
            ))
            .header("X-API-Key", &self.admin)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let upload = TestServer::decode(upload).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
        let release = upload.body["data"]["release"]["id"].as_str().expect("id");
        let published = self
            .srv
            .call(
                Method::POST,
                &format!("/api/releases/{release}/publish"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    }

    /// Publishes stable release `version` without a bundle; its id (files come per platform).
    async fn publish_files_only(
        &self,
        version: &str,
        files: &[(&str, &str, &str, Vec<u8>)],
    ) -> String {
        let draft = self
            .srv
            .post(
                &format!("/api/projects/{}/release-drafts", self.project),
                &self.admin,
                json!({"version": version}),
            )
            .await;
        assert_eq!(draft.status, StatusCode::CREATED, "{}", draft.body);
        let release = str_of(&draft.body["data"]["release"]["id"]);
        for (platform, arch, filetype, bytes) in files {
            self.add_file(&release, platform, arch, filetype, bytes.clone())
                .await;
        }
        let published = self
            .srv
            .call(
                Method::POST,
                &format!("/api/releases/{release}/publish"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(published.status, StatusCode::OK, "{}", published.body);
        release
    }

    /// Uploads a per-platform file to `release`, named `desk.<filetype>`.
    async fn add_file(
        &self,
        release: &str,
        platform: &str,
        arch: &str,
        filetype: &str,
        bytes: Vec<u8>,
    ) {
        let form = reqwest::multipart::Form::new()
            .text("platform", platform.to_owned())
            .text("arch", arch.to_owned())
            .text("filetype", filetype.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(format!("desk.{filetype}")),
            );
        let upload = self
            .srv
            .client
            .post(format!("{}/api/releases/{release}/artifacts", self.srv.url))
            .header("X-API-Key", &self.admin)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let upload = TestServer::decode(upload).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    }

    async fn portal_settings(&self, settings: Value) {
        let a = self
            .srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{}", self.project),
                Some(&self.admin),
                Some(json!({"portalSettings": settings})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
}

#[tokio::test]
async fn every_project_has_a_portal_until_it_is_disabled() {
    let f = fixture().await;
    let a = f
        .send(Method::GET, "/api/portal/info?slug=game", Cred::None, None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["data"]["project"]["id"], f.project.as_str());
    assert_eq!(a.body["data"]["project"]["slug"], "game");
    let blocks: Vec<&str> = a.body["data"]["portal"]["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        blocks,
        ["key_info", "hwid_status", "copy_key", "download_loader"]
    );

    f.portal_settings(json!({
        "title": "Game members",
        "welcome": "Hello",
        "blocks": [{"type": "custom_text", "text": "News"}, {"type": "custom_button", "label": "Discord", "url": "https://discord.gg/x"}]
    }))
    .await;
    let a = f
        .send(Method::GET, "/api/portal/info?slug=game", Cred::None, None)
        .await;
    assert_eq!(a.body["data"]["portal"]["title"], "Game members");
    assert_eq!(
        a.body["data"]["portal"]["blocks"][1]["url"],
        "https://discord.gg/x"
    );

    for path in [
        "/api/portal/info?slug=nope",
        "/api/portal/info?slug=",
        &format!("/api/portal/info?slug={}", "s".repeat(500)),
    ] {
        let a = f.send(Method::GET, path, Cred::None, None).await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    let a = f
        .send(Method::GET, "/api/portal/info", Cred::None, None)
        .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "slug");

    f.portal_settings(json!({"enabled": false})).await;
    let a = f
        .send(Method::GET, "/api/portal/info?slug=game", Cred::None, None)
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = f.register("player1", "correct horse").await;
    assert_kv_error(&a, 404, "NOT_FOUND");
}

#[tokio::test]
async fn a_slug_shared_by_two_workspaces_is_told_apart_by_tenant() {
    let f = fixture().await;
    f.srv.create_tenant("acme");
    let theirs = f.srv.create_product("acme", "game");
    let pick = |path: &'static str| f.send(Method::GET, path, Cred::None, None);
    assert_eq!(
        pick("/api/portal/info?slug=game").await.body["data"]["project"]["id"],
        f.project.as_str()
    );
    assert_eq!(
        pick("/api/portal/info?slug=game&tenant=acme").await.body["data"]["project"]["id"],
        theirs.id.as_str()
    );
    assert_kv_error(
        &pick("/api/portal/info?slug=game&tenant=nobody").await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn registration_checks_its_input() {
    let f = fixture().await;
    let a = f.register("player_1", "correct horse").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let d = &a.body["data"];
    assert!(d["token"].as_str().is_some_and(|t| t.len() > 40));
    assert_eq!(d["user"]["username"], "player_1");
    assert_eq!(d["user"]["projectId"], f.project.as_str());
    assert!(d["user"]["keyId"].is_null());
    let cookie = a.header("set-cookie").expect("cookie");
    assert!(cookie.starts_with("portal_token=pt_"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let hash: String = f
        .srv
        .db()
        .query_row("SELECT password_hash FROM portal_users", [], |r| r.get(0))
        .expect("row");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let sessions: Vec<u8> = f
        .srv
        .db()
        .query_row("SELECT token_sha256 FROM portal_sessions", [], |r| r.get(0))
        .expect("row");
    assert_eq!(sessions.len(), 32, "only the token's hash is stored");

    let project = f.project.clone();
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "taken, any case",
            json!({"username": "PLAYER_1", "password": "correct horse", "projectId": project}),
            409,
            "CONFLICT",
            "taken",
        ),
        (
            "short username",
            json!({"username": "ab", "password": "correct horse", "projectId": project}),
            400,
            "VALIDATION_ERROR",
            "username",
        ),
        (
            "odd username",
            json!({"username": "a b<c>", "password": "correct horse", "projectId": project}),
            400,
            "VALIDATION_ERROR",
            "username",
        ),
        (
            "short password",
            json!({"username": "player2", "password": "short", "projectId": project}),
            400,
            "VALIDATION_ERROR",
            "password",
        ),
        (
            "unknown project",
            json!({"username": "player2", "password": "correct horse", "projectId": "prod_nope"}),
            404,
            "NOT_FOUND",
            "ortal",
        ),
        (
            "missing project",
            json!({"username": "player2", "password": "correct horse"}),
            400,
            "VALIDATION_ERROR",
            "projectId",
        ),
        (
            "number username",
            json!({"username": 12345, "password": "correct horse", "projectId": project}),
            400,
            "VALIDATION_ERROR",
            "username",
        ),
        (
            "huge username",
            json!({"username": "u".repeat(5000), "password": "correct horse", "projectId": project}),
            400,
            "VALIDATION_ERROR",
            "username",
        ),
    ];
    for (name, body, status, code, needle) in cases {
        let a = f
            .send(Method::POST, "/api/portal/register", Cred::None, Some(body))
            .await;
        assert_eq!(a.status.as_u16(), status, "{name}: {}", a.body);
        assert_kv_error_naming(&a, status, code, needle);
    }
    let malformed = f
        .srv
        .call_raw(
            Method::POST,
            "/api/portal/register",
            None,
            "application/json",
            b"{\"username\":".to_vec(),
        )
        .await;
    assert_kv_error(&malformed, 400, "VALIDATION_ERROR");
    let count: i64 = f
        .srv
        .db()
        .query_row("SELECT COUNT(*) FROM portal_users", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 1, "refusals change nothing");

    // The same name in another project's portal is another person.
    let other = f.srv.create_product("default", "other");
    let a = f
        .send(
            Method::POST,
            "/api/portal/register",
            Cred::None,
            Some(
                json!({"username": "player_1", "password": "correct horse", "projectId": other.id}),
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_users_and_wrong_passwords() {
    let f = fixture().await;
    f.user("player1").await;
    let login = |username: &str, password: &str, project: &str| {
        f.send(
            Method::POST,
            "/api/portal/login",
            Cred::None,
            Some(json!({"username": username, "password": password, "projectId": project})),
        )
    };
    let ok = login("Player1", "correct horse", &f.project).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(
        ok.header("set-cookie")
            .is_some_and(|c| c.contains("HttpOnly"))
    );
    let token = ok.body["data"]["token"].as_str().expect("token");
    assert_eq!(f.me(token).await["user"]["username"], "player1");

    let wrong = login("player1", "wrong password", &f.project).await;
    let unknown = login("nobody", "correct horse", &f.project).await;
    let elsewhere = login("player1", "correct horse", "prod_elsewhere").await;
    // Accounts belong to one project: the same credentials at another project's portal fail.
    let other = f.srv.create_product("default", "other-game");
    let other_portal = login("player1", "correct horse", &other.id).await;
    for a in [&wrong, &unknown, &elsewhere, &other_portal] {
        assert_kv_error(a, 401, "UNAUTHORIZED");
    }
    assert_eq!(wrong.body["error"], unknown.body["error"]);
}

#[tokio::test]
async fn register_and_login_are_rate_limited() {
    let f = fixture_with(|c| c.rate_limits.login_per_minute = 2).await;
    f.user("player1").await;
    let a = f.register("player2", "correct horse").await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = f
        .send(
            Method::POST,
            "/api/portal/login",
            Cred::None,
            Some(
                json!({"username": "player1", "password": "correct horse", "projectId": f.project}),
            ),
        )
        .await;
    assert_kv_error(&a, 429, "RATE_LIMITED");
    assert!(a.header("retry-after").is_some());
}

#[tokio::test]
async fn access_grows_from_no_key_to_key_to_a_bound_machine() {
    let f = fixture().await;
    f.portal_settings(json!({
        "blocks": [
            {"type": "key_info"},
            {"type": "download_loader"},
            {"type": "custom_button", "label": "VIP Discord", "url": "https://discord.gg/vip", "requires": "full"},
            {"type": "custom_text", "text": "Welcome"}
        ]
    }))
    .await;
    let token = f.user("player1").await;

    // No key: only "activate a key".
    let me = f.me(&token).await;
    assert!(me["key"].is_null());
    assert_eq!(
        me["access"],
        json!({"hasKey": false, "keyActive": false, "hwidBound": false, "fullAccess": false, "canDownloadLoader": false, "level": "none"})
    );
    let locked: Vec<bool> = me["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["locked"] == true)
        .collect();
    assert_eq!(locked, [true, true, true, false]);
    assert!(
        me["blocks"][2].get("url").is_none(),
        "a locked link is withheld"
    );

    // A key: key info and the loader prompt (no loader published yet).
    let (key_id, key) = f.key(&f.project).await;
    let a = f
        .activate(&token, &format!("  {}  ", key.to_lowercase()))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let d = &a.body["data"];
    assert_eq!(d["message"], "Key activated successfully!");
    assert_eq!(d["needsHwidBinding"], true);
    assert_eq!(d["key"]["plan"], "MONTHLY");
    assert_eq!(d["key"]["status"], "ACTIVE");
    let mask = d["key"]["mask"].as_str().expect("mask");
    let groups: Vec<&str> = key.split('-').collect();
    assert!(
        mask.starts_with(groups[0]) && mask.ends_with(groups[groups.len() - 1]),
        "{mask}"
    );
    assert!(mask.contains("****") && !mask.contains(groups[1]), "{mask}");
    assert!(
        !a.raw.windows(key.len()).any(|w| w == key.as_bytes()),
        "the whole key is never shown"
    );

    let me = f.me(&token).await;
    assert_eq!(me["user"]["projectId"], f.project.as_str());
    assert_eq!(me["key"]["mask"], mask);
    assert_eq!(me["key"]["hwidLocked"], false);
    assert!(
        me["key"]["expiresAt"].is_null(),
        "the plan's clock starts on first use: no date that moves with every request: {me}"
    );
    assert_eq!(me["access"]["level"], "key");
    assert_eq!(
        me["access"]["canDownloadLoader"], false,
        "nothing to download yet"
    );
    assert_eq!(me["blocks"][2]["locked"], true);

    // A published stable release is the loader.
    f.publish_loader(vec![42u8; 4096], "Loader.exe").await;
    let me = f.me(&token).await;
    assert_eq!(me["access"]["canDownloadLoader"], true);
    assert_eq!(me["access"]["loaderUrl"], "/api/portal/loader");
    let loader = f
        .send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(loader.status, StatusCode::OK);
    assert_eq!(loader.raw, vec![42u8; 4096]);
    assert_eq!(
        loader.header("content-disposition"),
        Some("attachment; filename=\"Loader.exe\"")
    );

    // The loader binds the machine through /api/validate: full access.
    let v = f
        .srv
        .call(
            Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": key, "hwid": "machine-0001"})),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    let me = f.me(&token).await;
    assert_eq!(me["key"]["hwidLocked"], true);
    assert_eq!(me["access"]["fullAccess"], true);
    assert_eq!(me["access"]["level"], "full");
    assert_eq!(me["key"]["activeSessions"], 1);
    assert!(
        me["key"]["expiresAt"].is_string(),
        "the plan's clock started at binding"
    );
    assert_eq!(me["blocks"][2]["locked"], false);
    assert_eq!(me["blocks"][2]["url"], "https://discord.gg/vip");

    // The vendor bans the key: the portal shows it and the loader is closed.
    let ban = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Some(&f.admin),
            Some(json!({"status": "BANNED"})),
        )
        .await;
    assert_eq!(ban.status, StatusCode::OK, "{}", ban.body);
    let me = f.me(&token).await;
    assert_eq!(me["key"]["status"], "BANNED");
    assert_eq!(me["access"]["keyActive"], false);
    assert_eq!(me["access"]["level"], "none");
    assert!(me["access"].get("loaderUrl").is_none());
    let refused = f
        .send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_kv_error(&refused, 403, "FORBIDDEN");

    let downloads: i64 = f
        .srv
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'portal.loader.download'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(downloads, 1);
}

#[tokio::test]
async fn keys_link_to_one_account_of_their_own_project() {
    let f = fixture().await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let (_, key) = f.key(&f.project).await;
    assert_eq!(f.activate(&alice, &key).await.status, StatusCode::OK);
    // Activating again is fine; someone else is refused.
    assert_eq!(f.activate(&alice, &key).await.status, StatusCode::OK);
    assert_kv_error_naming(
        &f.activate(&bob, &key).await,
        409,
        "CONFLICT",
        "another account",
    );

    let other = f.srv.create_product("default", "other");
    let (_, foreign) = f.key(&other.id).await;
    assert_kv_error_naming(
        &f.activate(&bob, &foreign).await,
        400,
        "VALIDATION_ERROR",
        "key",
    );
    assert_kv_error_naming(
        &f.activate(&bob, "NOPE-NOPE-NOPE").await,
        400,
        "VALIDATION_ERROR",
        "key",
    );
    assert_kv_error_naming(
        &f.activate(&bob, "   ").await,
        400,
        "VALIDATION_ERROR",
        "key",
    );
    let huge = f.activate(&bob, &"K".repeat(5000)).await;
    assert_kv_error_naming(&huge, 400, "VALIDATION_ERROR", "key");
    let wrong_type = f
        .send(
            Method::POST,
            "/api/portal/activate",
            Cred::Bearer(&bob),
            Some(json!({"key": 42})),
        )
        .await;
    assert_kv_error_naming(&wrong_type, 400, "VALIDATION_ERROR", "key");

    // Unusable keys say why.
    let (banned_id, banned) = f.key(&f.project).await;
    f.srv
        .call(
            Method::PATCH,
            &format!("/api/keys/{banned_id}"),
            Some(&f.admin),
            Some(json!({"status": "BANNED"})),
        )
        .await;
    assert_kv_error(&f.activate(&bob, &banned).await, 403, "KEY_BANNED");
    let (revoked_id, revoked) = f.key(&f.project).await;
    f.srv
        .call(
            Method::DELETE,
            &format!("/api/keys/{revoked_id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_kv_error(&f.activate(&bob, &revoked).await, 403, "KEY_REVOKED");
    assert!(f.me(&bob).await["key"].is_null(), "nothing was linked");
}

#[tokio::test]
async fn sessions_need_a_live_token_and_cookies_need_the_same_site() {
    let f = fixture().await;
    let token = f.user("player1").await;
    for auth in [
        Cred::None,
        Cred::Bearer("pt_forged"),
        Cred::PortalCookie("pt_forged"),
    ] {
        let a = f.send(Method::GET, "/api/portal/me", auth, None).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    let a = f
        .send_with(
            Method::GET,
            "/api/portal/me",
            Cred::None,
            None,
            &[("Authorization", "Basic x")],
        )
        .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");

    // The cookie works from the portal page…
    let a = f
        .send(
            Method::GET,
            "/api/portal/me",
            Cred::PortalCookie(&token),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    // …but a cross-site page cannot make changes with it.
    let (_, key) = f.key(&f.project).await;
    let a = f
        .send_with(
            Method::POST,
            "/api/portal/activate",
            Cred::PortalCookie(&token),
            Some(json!({"key": key})),
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_kv_error(&a, 403, "FORBIDDEN");

    let out = f
        .send(
            Method::POST,
            "/api/portal/logout",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let a = f
        .send(Method::GET, "/api/portal/me", Cred::Bearer(&token), None)
        .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
    let a = f
        .send(
            Method::POST,
            "/api/portal/logout",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn the_loader_needs_a_key_and_a_release() {
    let f = fixture().await;
    let token = f.user("player1").await;
    let a = f
        .send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_kv_error(&a, 403, "FORBIDDEN");
    let (_, key) = f.key(&f.project).await;
    f.activate(&token, &key).await;
    let a = f
        .send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = f
        .send(Method::GET, "/api/portal/loader", Cred::None, None)
        .await;
    assert_kv_error(&a, 401, "UNAUTHORIZED");

    // An external loader URL is handed out instead, at the same access level.
    f.portal_settings(json!({"loaderUrl": "https://cdn.example.com/loader.exe"}))
        .await;
    let me = f.me(&token).await;
    assert_eq!(
        me["access"]["loaderUrl"],
        "https://cdn.example.com/loader.exe"
    );
}

#[tokio::test]
async fn portal_settings_are_validated_when_saved() {
    let f = fixture().await;
    let cases = [
        (json!({"blocks": [{"type": "banner"}]}), "banner"),
        (
            json!({"blocks": [{"type": "custom_button", "label": "x", "url": "javascript:alert(1)"}]}),
            "blocks[0].url",
        ),
        (
            json!({"blocks": [{"type": "custom_text"}]}),
            "blocks[0].text",
        ),
        (json!({"loaderUrl": "file:///etc/passwd"}), "loaderUrl"),
        (json!({"title": "t".repeat(101)}), "title"),
        (json!({"blocks": "key_info"}), "portalSettings"),
    ];
    for (settings, needle) in cases {
        let a = f
            .srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{}", f.project),
                Some(&f.admin),
                Some(json!({"portalSettings": settings})),
            )
            .await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", needle);
    }
}

/// HWID gating of downloads: the loader is offered only through a `download_loader` block, at
/// the level that block requires.
#[tokio::test]
async fn the_loader_follows_its_blocks_access_level() {
    let f = fixture().await;
    f.publish_loader(vec![7u8; 100], "L.exe").await;
    let token = f.user("player1").await;
    let (_, key) = f.key(&f.project).await;
    f.activate(&token, &key).await;

    // Only for bound machines.
    f.portal_settings(
        json!({"blocks": [{"type": "key_info"}, {"type": "download_loader", "requires": "full"}]}),
    )
    .await;
    let me = f.me(&token).await;
    assert_eq!(me["access"]["canDownloadLoader"], false);
    assert!(me["access"].get("loaderUrl").is_none());
    assert_kv_error_naming(
        &f.send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await,
        403,
        "FORBIDDEN",
        "bound",
    );
    f.srv
        .call(
            Method::POST,
            "/api/validate",
            None,
            Some(json!({"key": key, "hwid": "machine-0001"})),
        )
        .await;
    assert_eq!(f.me(&token).await["access"]["canDownloadLoader"], true);
    assert_eq!(
        f.send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    // No download block in the layout: no loader at all.
    f.portal_settings(json!({"blocks": [{"type": "key_info"}]}))
        .await;
    assert_eq!(f.me(&token).await["access"]["canDownloadLoader"], false);
    assert_kv_error(
        &f.send(
            Method::GET,
            "/api/portal/loader",
            Cred::Bearer(&token),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

/// A loader release with only per-platform files: the dashboard lists them (with a download
/// address each), a single file downloads without a choice, and with several the download
/// takes `platform`, `arch` and `filetype` as the licensed apps' download does.
#[tokio::test]
async fn the_loader_of_a_release_with_files_per_platform() {
    let f = fixture().await;
    let release = f
        .publish_files_only("1.0.0", &[("linux", "x86_64", "AppImage", vec![1u8; 300])])
        .await;
    let token = f.user("player1").await;
    let loader = |query: &str| {
        let path = format!("/api/portal/loader{query}");
        let token = token.clone();
        let f = &f;
        async move { f.send(Method::GET, &path, Cred::Bearer(&token), None).await }
    };

    // Locked: the choice changes nothing, and the files are not listed.
    assert_kv_error(&loader("?platform=linux").await, 403, "FORBIDDEN");
    let me = f.me(&token).await;
    assert!(me["access"].get("loaderFiles").is_none(), "{me}");
    let (_, key) = f.key(&f.project).await;
    f.activate(&token, &key).await;

    let me = f.me(&token).await;
    assert_eq!(me["access"]["loaderUrl"], "/api/portal/loader");
    assert_eq!(me["access"]["loaderBundle"], false);
    assert_eq!(
        me["access"]["loaderFiles"],
        json!([{"platform": "linux", "arch": "x86_64", "filetype": "AppImage",
                "filename": "desk.AppImage", "size": 300,
                "url": "/api/portal/loader?platform=linux&arch=x86_64&filetype=AppImage"}])
    );
    // One file: it is the loader.
    let a = loader("").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.raw, vec![1u8; 300]);
    assert_eq!(
        a.header("content-disposition"),
        Some("attachment; filename=\"desk.AppImage\"")
    );

    f.add_file(&release, "windows", "x86_64", "msi", vec![2u8; 200])
        .await;
    f.add_file(&release, "windows", "x86_64", "nsis", vec![3u8; 100])
        .await;
    assert_eq!(
        f.me(&token).await["access"]["loaderFiles"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // (query, status, the file's bytes or a word the error names)
    type Case<'a> = (&'a str, u16, Result<Vec<u8>, &'a str>);
    let cases: [Case<'_>; 9] = [
        ("", 400, Err("windows/x86_64/msi")),
        ("", 400, Err("linux/x86_64/AppImage")),
        ("?platform=linux", 200, Ok(vec![1u8; 300])),
        (
            "?platform=windows&arch=x86_64",
            400,
            Err("windows/x86_64/nsis"),
        ),
        (
            "?platform=windows&arch=x86_64&filetype=nsis",
            200,
            Ok(vec![3u8; 100]),
        ),
        ("?platform=windows&filetype=msi", 200, Ok(vec![2u8; 200])),
        ("?platform=darwin", 404, Err("Artifact not found")),
        ("?platform=macos", 400, Err("darwin")),
        ("?platform=linux&arch=amd64", 400, Err("arch")),
    ];
    for (query, status, expected) in cases {
        let a = loader(query).await;
        match expected {
            Ok(bytes) => {
                assert_eq!(a.status.as_u16(), status, "{query}: {}", a.body);
                assert_eq!(a.raw, bytes, "{query}");
            }
            Err(needle) if status == 404 => {
                assert_kv_error_naming(&a, status, "NOT_FOUND", needle);
            }
            Err(needle) => assert_kv_error_naming(&a, status, "VALIDATION_ERROR", needle),
        }
    }
    // Each download is audited with the file it sent (the trail is written in the background).
    let nsis = "SELECT COUNT(*) FROM audit_events WHERE action = 'portal.loader.download' \
                AND json_extract(detail, '$.platform') = 'windows' \
                AND json_extract(detail, '$.filetype') = 'nsis' \
                AND json_extract(detail, '$.artifactId') IS NOT NULL";
    let mut audited = 0;
    for _ in 0..50 {
        audited = f.srv.count(nsis, []);
        if audited > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(audited, 1);

    // A newer release with a bundle of its own: the bundle without a choice, a file with one.
    let form = reqwest::multipart::Form::new()
        .text("version", "1.1.0")
        .part(
            "bundle",
            reqwest::multipart::Part::bytes(vec![9u8; 50]).file_name("Loader.bin"),
        );
    let upload = f
        .srv
        .client
        .post(format!("{}/api/projects/{}/releases", f.srv.url, f.project))
        .header("X-API-Key", &f.admin)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let upload = TestServer::decode(upload).await;
    assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    let newer = str_of(&upload.body["data"]["release"]["id"]);
    f.add_file(&newer, "linux", "x86_64", "deb", vec![4u8; 40])
        .await;
    let published = f
        .srv
        .call(
            Method::POST,
            &format!("/api/releases/{newer}/publish"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    let me = f.me(&token).await;
    assert_eq!(me["access"]["loaderBundle"], true);
    assert_eq!(me["access"]["loaderFiles"][0]["filetype"], "deb");
    assert_eq!(loader("").await.raw, vec![9u8; 50]);
    assert_eq!(loader("?platform=linux").await.raw, vec![4u8; 40]);
}
