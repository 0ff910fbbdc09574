//! Portal isolation: credentials and tokens of one project's portal reach nothing of another
//! project's portal or keys, and a portal the vendor disabled lets nobody in.

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct World {
    srv: TestServer,
    /// FULL_ADMIN keys of the default workspace and of `acme`.
    admin: String,
    acme_admin: String,
    /// `game` and `other` in the default workspace, `game` in `acme`.
    game: String,
    other: String,
    acme_game: String,
}

async fn world() -> World {
    let srv = TestServer::start().await;
    srv.create_tenant("acme");
    let game = srv.create_product("default", "game").id;
    let other = srv.create_product("default", "other").id;
    let acme_game = srv.create_product("acme", "game").id;
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let acme_admin = srv.create_api_key("acme", Scope::FullAdmin, None);
    World {
        srv,
        admin,
        acme_admin,
        game,
        other,
        acme_game,
    }
}

impl World {
    async fn portal(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .srv
            .client
            .request(method, format!("{}{path}", self.srv.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        TestServer::decode(req.send().await.expect("sent")).await
    }

    async fn register(&self, project: &str, username: &str, password: &str) -> Answer {
        self.portal(
            Method::POST,
            "/api/portal/register",
            None,
            Some(json!({"username": username, "password": password, "projectId": project})),
        )
        .await
    }

    async fn login(&self, project: &str, username: &str, password: &str) -> Answer {
        self.portal(
            Method::POST,
            "/api/portal/login",
            None,
            Some(json!({"username": username, "password": password, "projectId": project})),
        )
        .await
    }

    async fn user(&self, project: &str, username: &str, password: &str) -> String {
        let a = self.register(project, username, password).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["data"]["token"].as_str().expect("token").to_owned()
    }

    async fn activate(&self, token: &str, key: &str) -> Answer {
        self.portal(
            Method::POST,
            "/api/portal/activate",
            Some(token),
            Some(json!({"key": key})),
        )
        .await
    }

    async fn me(&self, token: &str) -> Answer {
        self.portal(Method::GET, "/api/portal/me", Some(token), None)
            .await
    }

    async fn key(&self, admin: &str, project: &str) -> String {
        let a = self
            .srv
            .post(
                "/api/keys",
                admin,
                json!({"plan": "MONTHLY", "count": 1, "projectId": project}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["data"]["keys"][0]["key"]
            .as_str()
            .expect("key")
            .to_owned()
    }

    async fn publish_loader(&self, project: &str) {
        let form = reqwest::multipart::Form::new()
            .text("version", "1.0.0")
            .part(
                "bundle",
                reqwest::multipart::Part::bytes(b"the other project's loader".to_vec())
                    .file_name("other.exe"),
            );
        let upload = self
            .srv
            .client
            .post(format!("{}/api/projects/{project}/releases", self.srv.url))
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

    async fn portal_settings(&self, project: &str, settings: Value) {
        let a = self
            .srv
            .call(
                Method::PATCH,
                &format!("/api/projects/{project}"),
                Some(&self.admin),
                Some(json!({"portalSettings": settings})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
}

#[tokio::test]
async fn credentials_of_one_portal_open_no_other_portal() {
    let w = world().await;
    w.user(&w.game, "alice", "correct horse").await;
    assert_eq!(
        w.login(&w.game, "alice", "correct horse").await.status,
        StatusCode::OK
    );
    // The same credentials at another project's portal, in this workspace or another one, or
    // at a project that does not exist: refused like a wrong password.
    for project in [w.other.as_str(), w.acme_game.as_str(), "prod_nope"] {
        let a = w.login(project, "alice", "correct horse").await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
    // Another portal's own alice is another account: her password is hers.
    w.user(&w.other, "alice", "battery staple").await;
    assert_kv_error(
        &w.login(&w.other, "alice", "correct horse").await,
        401,
        "UNAUTHORIZED",
    );
    assert_kv_error(
        &w.login(&w.game, "alice", "battery staple").await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn a_portal_token_reaches_only_its_own_project() {
    let w = world().await;
    let alice = w.user(&w.game, "alice", "correct horse").await;
    let me = w.me(&alice).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["data"]["project"]["id"], w.game.as_str());

    // Keys of another project, in this workspace and in another one, cannot be linked, and
    // answer like keys that do not exist.
    let theirs = w.key(&w.admin, &w.other).await;
    let acme = w.key(&w.acme_admin, &w.acme_game).await;
    for key in [&theirs, &acme] {
        assert_kv_error_naming(
            &w.activate(&alice, key).await,
            400,
            "VALIDATION_ERROR",
            "key",
        );
    }
    let me = w.me(&alice).await;
    assert!(me.body["data"]["key"].is_null(), "{}", me.body);
    assert_eq!(me.body["data"]["access"]["hasKey"], false);
    // …and stay free for their own project's users.
    let bob = w.user(&w.other, "bob", "correct horse").await;
    assert_eq!(w.activate(&bob, &theirs).await.status, StatusCode::OK);
    let carol = w.user(&w.acme_game, "carol", "correct horse").await;
    assert_eq!(w.activate(&carol, &acme).await.status, StatusCode::OK);

    // Another project's loader is not this portal's loader.
    w.publish_loader(&w.other).await;
    let own = w.key(&w.admin, &w.game).await;
    assert_eq!(w.activate(&alice, &own).await.status, StatusCode::OK);
    w.portal_settings(&w.game, json!({"blocks": [{"type": "download_loader"}]}))
        .await;
    let me = w.me(&alice).await;
    assert_eq!(
        me.body["data"]["access"]["canDownloadLoader"], false,
        "{}",
        me.body
    );
    let a = w
        .portal(Method::GET, "/api/portal/loader", Some(&alice), None)
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");

    // A portal token is no credential of the admin API.
    for path in [
        "/api/keys".to_owned(),
        format!("/api/projects/{}", w.other),
        format!("/api/projects/{}", w.game),
    ] {
        let a = w.portal(Method::GET, &path, Some(&alice), None).await;
        assert_kv_error(&a, 401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn a_disabled_portal_lets_nobody_in() {
    let w = world().await;
    let alice = w.user(&w.game, "alice", "correct horse").await;
    let key = w.key(&w.admin, &w.game).await;
    w.portal_settings(&w.game, json!({"enabled": false})).await;

    assert_kv_error(
        &w.login(&w.game, "alice", "correct horse").await,
        401,
        "UNAUTHORIZED",
    );
    assert_kv_error(&w.me(&alice).await, 404, "NOT_FOUND");
    assert_kv_error(&w.activate(&alice, &key).await, 404, "NOT_FOUND");
    let a = w
        .portal(Method::GET, "/api/portal/loader", Some(&alice), None)
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    // Signing out still works, and ends the session.
    let out = w
        .portal(Method::POST, "/api/portal/logout", Some(&alice), None)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);

    // Reopened, the account is there again.
    w.portal_settings(&w.game, json!({"enabled": true})).await;
    assert_kv_error(&w.me(&alice).await, 401, "UNAUTHORIZED");
    assert_eq!(
        w.login(&w.game, "alice", "correct horse").await.status,
        StatusCode::OK
    );
}
