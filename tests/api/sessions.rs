//! Sessions of the key/HWID face (the "Hardening" issue): each session has its own nonce
//! chain, a project chooses what happens at `maxSessions` (`REFUSE_NEW`, `END_OLDEST`), one
//! machine cannot run more instances than the key allows, and `POST /api/session/end` frees a
//! place at once.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::helpers::*;

const VALIDATE: &str = "/api/validate";
const END: &str = "/api/session/end";

/// A server with its first operator and one project whose keys allow 3 machines.
struct Kv {
    srv: TestServer,
    admin: String,
    project: Value,
}

impl Kv {
    async fn start(strategy: Option<&str>) -> Self {
        let srv = TestServer::start().await;
        let admin = setup_admin(&srv).await.token;
        let mut body = json!({"name": "Sessions", "defaultMaxActivations": 3});
        if let Some(s) = strategy {
            body["sessionLimit"] = json!(s);
        }
        let a = send(
            &srv,
            Method::POST,
            "/api/projects",
            Cred::Bearer(&admin),
            Some(body),
            &[],
        )
        .await;
        assert_status(&a, 201);
        let project = a.body["data"]["project"].clone();
        if let Some(s) = strategy {
            assert_eq!(project["sessionLimit"], s, "{project}");
        }
        Self {
            srv,
            admin,
            project,
        }
    }

    fn pid(&self) -> String {
        str_of(&self.project["id"])
    }

    /// A key of the project allowing `max_sessions` sessions; returns (id, key).
    async fn key(&self, max_sessions: u32) -> (String, String) {
        let body = json!({"plan": "WEEKLY", "maxSessions": max_sessions, "projectId": self.pid()});
        let a = send(
            &self.srv,
            Method::POST,
            "/api/keys",
            Cred::Bearer(&self.admin),
            Some(body),
            &[],
        )
        .await;
        assert_status(&a, 201);
        let k = &a.body["data"]["keys"][0];
        (str_of(&k["id"]), str_of(&k["key"]))
    }

    async fn public(&self, path: &str, body: Value) -> Answer {
        send(&self.srv, Method::POST, path, Cred::None, Some(body), &[]).await
    }

    async fn patch_project(&self, body: Value) -> Answer {
        let path = format!("/api/projects/{}", self.pid());
        send(
            &self.srv,
            Method::PATCH,
            &path,
            Cred::Bearer(&self.admin),
            Some(body),
            &[],
        )
        .await
    }

    /// A new instance of the app on `hwid`: its first validation (no session, no nonce).
    async fn start_instance(&self, key: &str, hwid: &str) -> Instance {
        let a = self
            .public(VALIDATE, json!({"key": key, "hwid": hwid}))
            .await;
        assert_status(&a, 200);
        Instance::from_answer(key, hwid, &a)
    }

    /// The instance's next validation with its own sessionId and nonce.
    async fn refresh(&self, i: &Instance) -> Answer {
        self.public(
            VALIDATE,
            json!({"key": i.key, "hwid": i.hwid, "sessionId": i.session, "nonce": i.nonce}),
        )
        .await
    }

    /// Refreshes `i` and moves it to the nonce handed out (asserting 200).
    async fn refresh_ok(&self, i: &mut Instance) {
        let a = self.refresh(i).await;
        assert_status(&a, 200);
        assert_eq!(
            a.body["data"]["sessionId"],
            i.session.as_str(),
            "same session"
        );
        let next = str_of(&a.body["data"]["nonce"]);
        assert_ne!(next, i.nonce, "rotated");
        i.nonce = next;
    }

    async fn end(&self, i: &Instance) -> Answer {
        self.public(
            END,
            json!({"key": i.key, "hwid": i.hwid, "sessionId": i.session, "nonce": i.nonce}),
        )
        .await
    }

    fn live_sessions(&self, key_id: &str) -> i64 {
        self.srv.count(
            "SELECT COUNT(*) FROM sessions WHERE license_id = ?1 AND ended_at IS NULL",
            [key_id],
        )
    }
}

/// A running app: its key, machine, session and the nonce it presents next.
#[derive(Debug, Clone)]
struct Instance {
    key: String,
    hwid: String,
    session: String,
    nonce: String,
}

impl Instance {
    fn from_answer(key: &str, hwid: &str, a: &Answer) -> Self {
        Self {
            key: key.to_owned(),
            hwid: hwid.to_owned(),
            session: str_of(&a.body["data"]["sessionId"]),
            nonce: str_of(&a.body["data"]["nonce"]),
        }
    }
}

#[track_caller]
fn assert_signed_by(a: &Answer, project: &Value) {
    let sig = a
        .header("x-signature")
        .unwrap_or_else(|| panic!("signed: {}", a.body));
    assert!(
        signature_verifies(&str_of(&project["publicKey"]), &a.raw, sig),
        "{}",
        a.body
    );
    assert_eq!(a.header("x-keyward-product"), project["id"].as_str());
}

// ---- per-session nonce chains ---------------------------------------------------------

#[tokio::test]
async fn concurrent_sessions_each_keep_their_own_nonce_chain() {
    let kv = Kv::start(None).await;
    let (key_id, key) = kv.key(3).await;
    // Two instances on one machine and one on another, all within maxSessions 3.
    let mut a = kv.start_instance(&key, "chain-machine-0001").await;
    let mut b = kv.start_instance(&key, "chain-machine-0001").await;
    let mut c = kv.start_instance(&key, "chain-machine-0002").await;
    assert!(a.session != b.session && b.session != c.session);
    // Interleaved, each presents its own sessionId and nonce: none breaks another.
    for _ in 0..3 {
        for i in [&mut a, &mut b, &mut c] {
            kv.refresh_ok(i).await;
        }
    }
    assert_eq!(kv.live_sessions(&key_id), 3);

    // Each chain refuses its own stale nonce and another session's nonce.
    let stale = a.clone();
    kv.refresh_ok(&mut a).await;
    for (who, nonce) in [
        ("stale", stale.nonce.as_str()),
        ("b's", b.nonce.as_str()),
        ("made up", "made-up-nonce"),
    ] {
        let mut forged = a.clone();
        forged.nonce = nonce.to_owned();
        let r = kv.refresh(&forged).await;
        assert_kv_error(&r, 403, "REPLAY");
        assert_signed_by(&r, &kv.project);
        let _ = who;
    }
    // Refusals moved nothing: every instance still continues.
    for i in [&mut a, &mut b, &mut c] {
        kv.refresh_ok(i).await;
    }

    // Without a sessionId the nonce names the session it continues.
    let r = kv
        .public(
            VALIDATE,
            json!({"key": key, "hwid": b.hwid, "nonce": b.nonce}),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["sessionId"], b.session.as_str());
    b.nonce = str_of(&r.body["data"]["nonce"]);
    kv.refresh_ok(&mut a).await;
    kv.refresh_ok(&mut b).await;
    // …but only on its own machine.
    let r = kv
        .public(
            VALIDATE,
            json!({"key": key, "hwid": "chain-machine-0002", "nonce": b.nonce}),
        )
        .await;
    assert_kv_error(&r, 403, "REPLAY");
    assert_eq!(kv.live_sessions(&key_id), 3);
}

// ---- the session limit ----------------------------------------------------------------

#[tokio::test]
async fn the_session_limit_strategy_decides_the_newcomers_fate() {
    // (strategy set on the project, the newcomer's status, its code)
    let cases = [
        (Some("REFUSE_NEW"), 403, Some("MAX_SESSIONS")),
        (Some("END_OLDEST"), 200, None),
        // END_OLDEST is the default.
        (None, 200, None),
    ];
    for (strategy, status, code) in cases {
        let kv = Kv::start(strategy).await;
        let (key_id, key) = kv.key(3).await;
        let mut running = Vec::new();
        for hwid in [
            "limit-machine-0001",
            "limit-machine-0002",
            "limit-machine-0001",
        ] {
            running.push(kv.start_instance(&key, hwid).await);
        }
        // A fourth instance, on a machine already bound.
        let fourth = kv
            .public(VALIDATE, json!({"key": key, "hwid": "limit-machine-0002"}))
            .await;
        assert_status(&fourth, status);
        assert_signed_by(&fourth, &kv.project);
        if let Some(code) = code {
            assert_kv_error(&fourth, status, code);
            // The three running instances keep running.
            for i in &mut running {
                kv.refresh_ok(i).await;
            }
        } else {
            let mut newcomer = Instance::from_answer(&key, "limit-machine-0002", &fourth);
            // The oldest session ended: its next refresh says so, with why.
            let oldest = running.remove(0);
            for _ in 0..2 {
                let r = kv.refresh(&oldest).await;
                assert_kv_error_naming(&r, 403, "SESSION_ENDED", "newer session");
                assert_signed_by(&r, &kv.project);
            }
            // Its nonce alone names it too.
            let r = kv
                .public(
                    VALIDATE,
                    json!({"key": key, "hwid": oldest.hwid, "nonce": oldest.nonce}),
                )
                .await;
            assert_kv_error(&r, 403, "SESSION_ENDED");
            // The others and the newcomer keep their chains.
            for i in running.iter_mut().chain([&mut newcomer]) {
                kv.refresh_ok(i).await;
            }
            let r = kv.end(&oldest).await;
            assert_kv_error(&r, 403, "SESSION_ENDED");
        }
        assert_eq!(kv.live_sessions(&key_id), 3, "{strategy:?}");
        let audited = kv.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE license_id = ?1 AND detail LIKE '%endedSessions%'",
            [&key_id],
        );
        assert_eq!(
            audited,
            i64::from(code.is_none()),
            "{strategy:?}: the ended session is audited"
        );
    }
}

#[tokio::test]
async fn one_machine_never_runs_more_instances_than_the_key_allows() {
    for strategy in ["REFUSE_NEW", "END_OLDEST"] {
        let kv = Kv::start(Some(strategy)).await;
        let (key_id, key) = kv.key(1).await;
        let hwid = "one-machine-0001";
        let mut first = kv.start_instance(&key, hwid).await;
        // A second instance on the same machine, without a live sessionId, is never handed
        // the first one's session.
        let second = kv.public(VALIDATE, json!({"key": key, "hwid": hwid})).await;
        match strategy {
            "REFUSE_NEW" => {
                assert_kv_error(&second, 403, "MAX_SESSIONS");
                kv.refresh_ok(&mut first).await;
            }
            _ => {
                assert_status(&second, 200);
                let mut second = Instance::from_answer(&key, hwid, &second);
                assert_ne!(second.session, first.session, "its own session");
                let r = kv.refresh(&first).await;
                assert_kv_error(&r, 403, "SESSION_ENDED");
                // The first instance cannot come back through the ended session or its nonce.
                let r = kv
                    .public(
                        VALIDATE,
                        json!({"key": key, "hwid": hwid, "sessionId": first.session}),
                    )
                    .await;
                assert_kv_error(&r, 403, "SESSION_ENDED");
                kv.refresh_ok(&mut second).await;
            }
        }
        assert_eq!(kv.live_sessions(&key_id), 1, "{strategy}");
    }
}

#[tokio::test]
async fn lowering_max_sessions_ends_the_sessions_beyond_it() {
    // (strategy, which of three instances (oldest first) keep running at maxSessions 2)
    for (strategy, keep) in [
        ("END_OLDEST", [false, true, true]),
        ("REFUSE_NEW", [true, true, false]),
    ] {
        let kv = Kv::start(Some(strategy)).await;
        let (key_id, key) = kv.key(3).await;
        let mut running = Vec::new();
        for n in 0..3 {
            running.push(
                kv.start_instance(&key, &format!("lower-machine-000{n}"))
                    .await,
            );
        }
        let r = send(
            &kv.srv,
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Cred::Bearer(&kv.admin),
            Some(json!({"maxSessions": 2})),
            &[],
        )
        .await;
        assert_status(&r, 200);
        for (i, keeps) in running.iter_mut().zip(keep) {
            if keeps {
                kv.refresh_ok(i).await;
            } else {
                let r = kv.refresh(i).await;
                assert_kv_error(&r, 403, "SESSION_ENDED");
            }
        }
    }
}

// ---- ending a session -----------------------------------------------------------------

#[tokio::test]
async fn ending_a_session_frees_its_place_at_once() {
    let kv = Kv::start(Some("REFUSE_NEW")).await;
    let (key_id, key) = kv.key(1).await;
    let mut app = kv.start_instance(&key, "end-machine-0001").await;
    let r = kv
        .public(VALIDATE, json!({"key": key, "hwid": "end-machine-0002"}))
        .await;
    assert_kv_error(&r, 403, "MAX_SESSIONS");
    kv.refresh_ok(&mut app).await;

    // Refusals first: they end nothing.
    let other = kv
        .start_instance(&kv.key(1).await.1, "end-machine-0003")
        .await;
    let cases: [(Value, u16, &str); 6] = [
        // A session id no session has.
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": "no-such-session"}),
            404,
            "SESSION_NOT_FOUND",
        ),
        // Another key's session.
        (
            json!({"key": key, "hwid": other.hwid, "sessionId": other.session}),
            404,
            "SESSION_NOT_FOUND",
        ),
        // This session, from another machine.
        (
            json!({"key": key, "hwid": "end-machine-0009", "sessionId": app.session}),
            404,
            "SESSION_NOT_FOUND",
        ),
        // A nonce that is not the session's current one.
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": app.session, "nonce": "stale-nonce"}),
            403,
            "REPLAY",
        ),
        // An unknown key.
        (
            json!({"key": "TT-ZZZZ-ZZZZ-ZZZZ-ZZZZ", "hwid": app.hwid, "sessionId": app.session}),
            404,
            "NOT_FOUND",
        ),
        // A wrong project secret.
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": app.session, "secret": "kv_not_the_secret"}),
            404,
            "NOT_FOUND",
        ),
    ];
    for (body, status, code) in cases {
        let r = kv.public(END, body.clone()).await;
        assert_kv_error(&r, status, code);
        if code != "NOT_FOUND" {
            assert_signed_by(&r, &kv.project);
        }
    }
    assert_eq!(kv.live_sessions(&key_id), 1);

    // The app ends its session on exit: a signed answer, audited.
    let r = kv
        .public(
            END,
            json!({"key": key, "hwid": app.hwid, "sessionId": app.session, "nonce": app.nonce,
                   "secret": kv.project["secret"], "clientNonce": "bye-1"}),
        )
        .await;
    assert_status(&r, 200);
    assert_signed_by(&r, &kv.project);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["data"]["ended"], true);
    assert_eq!(r.body["data"]["sessionId"], app.session.as_str());
    assert_eq!(r.body["data"]["clientNonce"], "bye-1");
    parse_time(&r.body["data"]["endedAt"]);
    assert_eq!(kv.live_sessions(&key_id), 0);
    assert_eq!(
        kv.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE license_id = ?1 AND action = 'key.session.end'",
            [&key_id],
        ),
        1
    );

    // Its place is free at once (REFUSE_NEW, maxSessions 1).
    let mut next = kv.start_instance(&key, "end-machine-0002").await;
    kv.refresh_ok(&mut next).await;
    // The ended session stays ended, and says who ended it.
    let r = kv.refresh(&app).await;
    assert_kv_error_naming(&r, 403, "SESSION_ENDED", "the app ended it");
    let r = kv.end(&app).await;
    assert_kv_error_naming(&r, 403, "SESSION_ENDED", "the app ended it");
}

#[tokio::test]
async fn ending_a_session_speaks_the_envelope() {
    let kv = Kv::start(None).await;
    let (key_id, key) = kv.key(2).await;
    let r = kv.patch_project(json!({"requireEncryption": true})).await;
    assert_status(&r, 200);
    let enc = str_of(&kv.project["encryptionKey"]);
    let seal = |plain: &Value| {
        let k = B64.decode(&enc).unwrap();
        let cipher = Aes256Gcm::new_from_slice(&k).unwrap();
        let iv: [u8; 12] = rand::random();
        let mut out = iv.to_vec();
        out.extend(
            cipher
                .encrypt(Nonce::from_slice(&iv), plain.to_string().as_bytes())
                .unwrap(),
        );
        json!({"projectId": kv.project["id"], "payload": B64.encode(out)})
    };
    let unseal = |a: &Answer| -> Value {
        let k = B64.decode(&enc).unwrap();
        let raw = B64
            .decode(a.body["payload"].as_str().expect("a payload"))
            .unwrap();
        let cipher = Aes256Gcm::new_from_slice(&k).unwrap();
        serde_json::from_slice(
            &cipher
                .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
                .unwrap(),
        )
        .unwrap()
    };
    let sealed = |extra: Value| {
        let mut m = json!({"key": key, "hwid": "sealed-machine-0001",
            "timestamp": OffsetDateTime::now_utc().unix_timestamp(),
            "requestId": uuid::Uuid::new_v4().simple().to_string()});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };

    let a = kv.public(VALIDATE, seal(&sealed(json!({})))).await;
    assert_status(&a, 200);
    let d = unseal(&a)["data"].clone();
    let (session, nonce) = (str_of(&d["sessionId"]), str_of(&d["nonce"]));
    // A plain end-session is refused like a plain validation.
    let r = kv
        .public(
            END,
            json!({"key": key, "hwid": "sealed-machine-0001", "sessionId": session}),
        )
        .await;
    assert_kv_error(&r, 403, "FORBIDDEN");

    let plain = sealed(json!({"sessionId": session, "nonce": nonce, "clientNonce": "cn-end"}));
    let r = kv.public(END, seal(&plain)).await;
    assert_status(&r, 200);
    assert_signed_by(&r, &kv.project);
    let inner = unseal(&r);
    assert_eq!(inner["data"]["ended"], true, "{inner}");
    assert_eq!(inner["data"]["clientNonce"], "cn-end");
    assert_eq!(kv.live_sessions(&key_id), 0);
    // The same envelope again is a replayed request; a new one about the ended session is
    // told it ended.
    let r = kv.public(END, seal(&plain)).await;
    assert_status(&r, 403);
    assert_eq!(unseal(&r)["code"], "REQUEST_REPLAYED");
    let r = kv
        .public(END, seal(&sealed(json!({"sessionId": session}))))
        .await;
    assert_status(&r, 403);
    assert_eq!(unseal(&r)["code"], "SESSION_ENDED");
    // Bad plaintext is refused inside the envelope.
    for bad in [
        sealed(json!({"sessionId": 5})),
        json!({"key": key, "hwid": "x", "sessionId": "s"}),
    ] {
        let r = kv.public(END, seal(&bad)).await;
        assert_status(&r, 400);
        assert_eq!(unseal(&r)["code"], "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn bad_input_to_end_session_gets_the_envelope_never_a_500() {
    let kv = Kv::start(None).await;
    let (_, key) = kv.key(1).await;
    let app = kv.start_instance(&key, "bad-input-machine-01").await;
    let cases = [
        (json!({"hwid": app.hwid, "sessionId": app.session}), "key"),
        (json!({"key": key, "sessionId": app.session}), "hwid"),
        (json!({"key": key, "hwid": app.hwid}), "sessionId"),
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": ""}),
            "sessionId",
        ),
        (
            json!({"key": 12, "hwid": app.hwid, "sessionId": app.session}),
            "key",
        ),
        (
            json!({"key": key, "hwid": [1], "sessionId": app.session}),
            "hwid",
        ),
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": 7}),
            "sessionId",
        ),
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": "s".repeat(65)}),
            "sessionId",
        ),
        (
            json!({"key": key, "hwid": app.hwid, "sessionId": app.session, "nonce": false}),
            "nonce",
        ),
        (json!({"payload": "abcd"}), "projectId"),
        (json!({}), "key"),
    ];
    for (body, field) in cases {
        let a = kv.public(END, body.clone()).await;
        assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", field);
    }
    for body in [&b"{\"key\": "[..], b"not json", b"[1,2,3]", b"null", b""] {
        let a = kv
            .srv
            .call_raw(Method::POST, END, None, "application/json", body.to_vec())
            .await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    let a = kv
        .srv
        .call_raw(Method::POST, END, None, "text/plain", b"key=1".to_vec())
        .await;
    assert_kv_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
    let a = send(&kv.srv, Method::GET, END, Cred::None, None, &[]).await;
    assert_kv_error(&a, 405, "METHOD_NOT_ALLOWED");
    // An envelope naming an unknown project, or one that does not decrypt.
    let a = kv
        .public(END, json!({"projectId": "prod_nope", "payload": "AAAA"}))
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    let a = kv
        .public(END, json!({"projectId": kv.project["id"], "payload": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
        .await;
    assert_kv_error(&a, 400, "VALIDATION_ERROR");
    // Nothing was ended by bad input.
    let mut app = app;
    kv.refresh_ok(&mut app).await;
}

// ---- the project setting and the OpenAPI document -------------------------------------

#[tokio::test]
async fn the_session_limit_is_a_project_setting_of_the_admin_api() {
    let kv = Kv::start(None).await;
    assert_eq!(kv.project["sessionLimit"], "END_OLDEST", "the default");
    let r = kv
        .patch_project(json!({"sessionLimit": "REFUSE_NEW"}))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["data"]["project"]["sessionLimit"], "REFUSE_NEW");
    for bad in [
        json!("KILL_ALL"),
        json!("refuse_new"),
        json!(1),
        json!(["END_OLDEST"]),
    ] {
        let r = kv.patch_project(json!({"sessionLimit": bad})).await;
        assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "sessionLimit");
    }
    // null, like absence, keeps the setting.
    let r = kv.patch_project(json!({"sessionLimit": null})).await;
    assert_eq!(r.body["data"]["project"]["sessionLimit"], "REFUSE_NEW");
    let r = send(
        &kv.srv,
        Method::POST,
        "/api/projects",
        Cred::Bearer(&kv.admin),
        Some(json!({"name": "Bad", "sessionLimit": "SOMETIMES"})),
        &[],
    )
    .await;
    assert_kv_error_naming(&r, 400, "VALIDATION_ERROR", "sessionLimit");
    let path = format!("/api/projects/{}", kv.pid());
    let r = send(
        &kv.srv,
        Method::GET,
        &path,
        Cred::Bearer(&kv.admin),
        None,
        &[],
    )
    .await;
    assert_eq!(
        r.body["data"]["project"]["sessionLimit"], "REFUSE_NEW",
        "unchanged by bad input"
    );

    let doc = send(
        &kv.srv,
        Method::GET,
        "/api/openapi.json",
        Cred::None,
        None,
        &[],
    )
    .await
    .body;
    let op = &doc["paths"][END]["post"];
    assert!(op.is_object(), "POST {END} is documented");
    for status in ["200", "400", "403", "404", "429"] {
        assert!(
            op["responses"][status].is_object(),
            "POST {END} declares {status}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let project = schemas["Project"]["properties"]["sessionLimit"].to_string();
    let limit = schemas
        .as_object()
        .unwrap()
        .values()
        .find(|s| {
            s["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("END_OLDEST")))
        })
        .expect("the SessionLimit enum");
    assert!(project.contains("SessionLimit"), "{project}");
    assert_eq!(limit["enum"], json!(["REFUSE_NEW", "END_OLDEST"]));
}

#[tokio::test]
async fn the_readmes_end_session_example_runs_as_written() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("### Ending a session: `POST /api/session/end`")
        .expect("the README's end-session section");
    let block = &readme[start..];
    let code_start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let code = &block[code_start..];
    let code = &code[..code.find("\n```").expect("the block ends")];

    let kv = Kv::start(Some("REFUSE_NEW")).await;
    let host = kv.srv.url.trim_start_matches("http://").to_owned();
    let script = code.replace("localhost:3002", &host);
    let (auth, pid, secret) = (
        format!("Authorization: Bearer {}", kv.admin),
        kv.pid(),
        str_of(&kv.project["secret"]),
    );
    // The server runs on this test's runtime: bash waits on a blocking thread.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("AUTH", auth)
            .env("PROJECT_ID", pid)
            .env("SECRET", secret)
            .output()
            .expect("bash runs")
    })
    .await
    .expect("joins");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(stdout.trim()).expect("the last curl answers JSON");
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["data"]["ended"], true, "{answer}");
    // The session is gone and its place free: a new instance of the key runs (REFUSE_NEW, 1).
    let key: String = kv
        .srv
        .db()
        .query_row("SELECT license_key FROM licenses", [], |r| r.get(0))
        .expect("the key the example made");
    kv.start_instance(&key, "sha256-of-hardware-id").await;
}

#[tokio::test]
async fn a_bot_reads_the_running_session_and_never_ends_one() {
    let kv = Kv::start(Some("END_OLDEST")).await;
    let (key_id, key) = kv.key(1).await;
    let secret = str_of(&kv.project["secret"]);
    let bot = |hwid: &str| {
        json!({"action": "validate", "key": key, "hwid": hwid, "secret": secret,
               "telegram_id": "42", "telegram_username": "helper"})
    };
    let mut app = kv.start_instance(&key, "bot-pc-0001").await;
    // On the app's PC the bot reads the running session's nonce, moving and refreshing nothing.
    for _ in 0..2 {
        let r = kv.public("/api/telegram", bot("bot-pc-0001")).await;
        assert_status(&r, 200);
        assert_eq!(r.body["data"]["nonce"], app.nonce.as_str());
    }
    kv.refresh_ok(&mut app).await;
    // On another PC, at the limit, the bot is refused even though the project ends the oldest.
    let r = kv.public("/api/telegram", bot("bot-pc-0002")).await;
    assert_kv_error(&r, 403, "MAX_SESSIONS");
    kv.refresh_ok(&mut app).await;
    assert_eq!(kv.live_sessions(&key_id), 1);
}
