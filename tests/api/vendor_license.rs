//! The machine-facing license endpoints of the vendor contract, against a real server:
//! `POST /api/v1/license/activate|validate|deactivate|heartbeat` and
//! `GET /api/v1/license/check/{key}` — success paths, every refusal with its code, signed
//! responses, heartbeat culling, audit, bad input and authorization.

use std::time::Duration;

use crate::helpers::*;
use keyward::domain::api_keys::Scope;
use keyward::domain::products::Product;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ACTIVATE: &str = "/api/v1/license/activate";
const VALIDATE: &str = "/api/v1/license/validate";
const DEACTIVATE: &str = "/api/v1/license/deactivate";
const HEARTBEAT: &str = "/api/v1/license/heartbeat";
const REVOKE: &str = "/api/v1/license/revoke";

/// A server with one product, a CREATE_LICENSE key to issue licenses and a VALIDATE_ONLY key
/// for the machine-facing calls (the scope the contract says they need).
struct Setup {
    srv: TestServer,
    product: Product,
    admin_key: String,
    app_key: String,
}

impl Setup {
    async fn new() -> Self {
        Self::on(TestServer::start().await, |_| {})
    }

    fn on(srv: TestServer, tune: impl FnOnce(&mut keyward::domain::products::NewProduct)) -> Self {
        let product = srv.create_product_with("default", "app", tune);
        let admin_key = srv.create_api_key("default", Scope::CreateLicense, None);
        let app_key = srv.create_api_key("default", Scope::ValidateOnly, None);
        Self {
            srv,
            product,
            admin_key,
            app_key,
        }
    }

    /// Issues a license of the product; returns its key.
    async fn license(&self, max_activations: u32) -> String {
        let license = self
            .srv
            .create_license(
                &self.admin_key,
                &self.product.id,
                json!({"maxActivations": max_activations}),
            )
            .await;
        license["key"].as_str().expect("license key").to_owned()
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.srv.post(path, &self.app_key, body).await
    }

    async fn activate(&self, key: &str, machine: &str) -> Answer {
        self.srv.activate(&self.app_key, key, machine).await
    }

    async fn validate(&self, key: &str, machine: &str) -> Answer {
        self.post(VALIDATE, json!({"licenseKey": key, "machineId": machine}))
            .await
    }

    async fn check(&self, key: &str) -> Answer {
        self.srv
            .get(&format!("/api/v1/license/check/{key}"), &self.app_key)
            .await
    }

    async fn revoke(&self, key: &str) {
        let a = self
            .srv
            .post(REVOKE, &self.admin_key, json!({"licenseKey": key}))
            .await;
        assert_eq!(a.status, 200, "revoke: {}", a.body);
    }

    /// Runs one SQL statement against the server's database (for states the API cannot make
    /// quickly: past expiry, suspension, silent machines).
    fn sql(&self, statement: &str, params: impl rusqlite::Params) -> usize {
        self.srv.db().execute(statement, params).expect("sql")
    }

    fn activations(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM activations", [])
    }

    fn activations_of(&self, key: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM activations a JOIN licenses l ON l.id = a.license_id
             WHERE l.license_key = ?1",
            [key],
        )
    }

    fn count(&self, query: &str, params: impl rusqlite::Params) -> i64 {
        self.srv.count(query, params)
    }

    fn last_seen_at(&self, key: &str, machine: &str) -> i64 {
        self.srv
            .db()
            .query_row(
                "SELECT a.last_seen_at FROM activations a JOIN licenses l ON l.id = a.license_id
                 WHERE l.license_key = ?1 AND a.machine_id = ?2",
                [key, machine],
                |r| r.get(0),
            )
            .expect("activation row")
    }

    fn set_last_seen_at(&self, key: &str, machine: &str, at: i64) {
        let n = self.sql(
            "UPDATE activations SET last_seen_at = ?3
             WHERE machine_id = ?2 AND license_id = (SELECT id FROM licenses WHERE license_key = ?1)",
            rusqlite::params![key, machine, at],
        );
        assert_eq!(n, 1, "one activation updated");
    }

    fn set_status(&self, key: &str, status: &str) {
        let n = self.sql(
            "UPDATE licenses SET status = ?2 WHERE license_key = ?1",
            [key, status],
        );
        assert_eq!(n, 1, "one license updated");
    }

    /// Moves the stored expiry an hour into the past (the status column stays ACTIVE, as it
    /// would between two maintenance sweeps).
    fn expire(&self, key: &str) {
        let n = self.sql(
            "UPDATE licenses SET valid_until = ?2 WHERE license_key = ?1",
            rusqlite::params![key, now_ms() - 3_600_000],
        );
        assert_eq!(n, 1, "one license updated");
    }

    fn stored_status(&self, key: &str) -> String {
        self.srv
            .db()
            .query_row(
                "SELECT status FROM licenses WHERE license_key = ?1",
                [key],
                |r| r.get(0),
            )
            .expect("license row")
    }

    /// Audit rows with `action` for the license `key`, as (machine_id, ip). Validation events
    /// are committed asynchronously in batches, so this waits up to ~2 s for at least `min`.
    async fn audit(
        &self,
        action: &str,
        key: &str,
        min: usize,
    ) -> Vec<(Option<String>, Option<String>)> {
        let mut rows = Vec::new();
        for _ in 0..40 {
            let conn = self.srv.db();
            let mut stmt = conn
                .prepare(
                    "SELECT e.machine_id, e.ip FROM audit_events e
                     JOIN licenses l ON l.id = e.license_id
                     WHERE e.action = ?1 AND l.license_key = ?2 ORDER BY e.id",
                )
                .expect("prepare");
            rows = stmt
                .query_map([action, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            if rows.len() >= min {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rows
    }

    async fn public_key(&self) -> String {
        let a = self
            .srv
            .call(
                Method::GET,
                &format!("/api/v1/updates/public-key?product={}", self.product.slug),
                None,
                None,
            )
            .await;
        assert_eq!(a.status, 200, "public key: {}", a.body);
        a.body["public_key"]
            .as_str()
            .expect("public_key field")
            .to_owned()
    }
}

// ---- activate --------------------------------------------------------------------------

#[tokio::test]
async fn activate_binds_a_machine_and_answers_license_public_and_activation() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s
        .post(
            ACTIVATE,
            json!({
                "licenseKey": key,
                "machineId": "machine-0001",
                "machineName": "Build box",
                "osName": "Linux",
                "osVersion": "6.8",
                "appVersion": "1.2.3",
            }),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["message"], "License activated");
    let license = &a.body["license"];
    assert_eq!(license["key"], key.as_str());
    assert_eq!(license["product"], s.product.name.as_str());
    assert_eq!(license["tier"], "PERSONAL");
    assert_eq!(license["type"], "PERPETUAL");
    assert_eq!(license["validUntil"], Value::Null);
    assert_eq!(license["activationsUsed"], 1);
    assert_eq!(license["maxActivations"], 3);
    let activation = &a.body["activation"];
    assert_eq!(activation["machineId"], "machine-0001");
    assert_eq!(activation["machineName"], "Build box");
    parse_time(&activation["activatedAt"]);
    assert_eq!(
        a.body.get("nonce"),
        None,
        "no nonce unless the client sent one"
    );

    let stored: (String, String, String, String) = s
        .srv
        .db()
        .query_row(
            "SELECT os_name, os_version, app_version, ip FROM activations WHERE machine_id = 'machine-0001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("activation stored");
    assert_eq!(
        stored,
        (
            "Linux".into(),
            "6.8".into(),
            "1.2.3".into(),
            "127.0.0.1".into()
        )
    );
}

#[tokio::test]
async fn activate_is_idempotent_for_an_already_activated_machine() {
    let s = Setup::new().await;
    let key = s.license(2).await;
    let first = s.activate(&key, "machine-0001").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = s.activate(&key, "machine-0001").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("already activated"),
        "{}",
        again.body
    );
    assert_eq!(again.body["license"]["activationsUsed"], 1);
    assert_eq!(
        again.body["activation"]["activatedAt"], first.body["activation"]["activatedAt"],
        "the existing activation is returned"
    );
    assert_eq!(s.activations_of(&key), 1, "no extra seat taken");

    // The second seat is still free for another machine.
    let other = s.activate(&key, "machine-0002").await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body["license"]["activationsUsed"], 2);
}

#[tokio::test]
async fn activate_refuses_a_machine_beyond_max_activations_until_a_seat_is_freed() {
    let s = Setup::new().await;
    let key = s.license(2).await;
    for m in ["machine-0001", "machine-0002"] {
        let a = s.activate(&key, m).await;
        assert_eq!(a.status, 200, "{m}: {}", a.body);
    }
    let refused = s.activate(&key, "machine-0003").await;
    refused.assert_error(400, "ACTIVATION_LIMIT_REACHED");
    assert_eq!(s.activations_of(&key), 2);

    // An activated machine is still answered while the license is full.
    let known = s.activate(&key, "machine-0002").await;
    assert_eq!(known.status, 200, "{}", known.body);

    let freed = s
        .post(
            DEACTIVATE,
            json!({"licenseKey": key, "machineId": "machine-0001"}),
        )
        .await;
    assert_eq!(freed.status, 200, "{}", freed.body);
    let now_fits = s.activate(&key, "machine-0003").await;
    assert_eq!(now_fits.status, 200, "{}", now_fits.body);
    assert_eq!(now_fits.body["license"]["activationsUsed"], 2);
    assert_eq!(s.activations_of(&key), 2);
}

/// A license state the endpoints must refuse, made directly in the database or by revoking.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    Expire,
    Suspend,
    Ban,
    Revoke,
}

impl Spoil {
    async fn apply(self, s: &Setup, key: &str) {
        match self {
            Spoil::Expire => s.expire(key),
            Spoil::Suspend => s.set_status(key, "SUSPENDED"),
            Spoil::Ban => s.set_status(key, "BANNED"),
            Spoil::Revoke => s.revoke(key).await,
        }
    }
}

#[tokio::test]
async fn activate_refuses_expired_suspended_banned_and_revoked_licenses_with_distinct_codes() {
    struct Case {
        name: &'static str,
        spoil: Spoil,
        code: &'static str,
    }
    let cases = [
        Case {
            name: "valid_until in the past",
            spoil: Spoil::Expire,
            code: "LICENSE_EXPIRED",
        },
        Case {
            name: "status SUSPENDED",
            spoil: Spoil::Suspend,
            code: "LICENSE_SUSPENDED",
        },
        Case {
            name: "status BANNED (shown as suspended)",
            spoil: Spoil::Ban,
            code: "LICENSE_SUSPENDED",
        },
        Case {
            name: "revoked through the API",
            spoil: Spoil::Revoke,
            code: "LICENSE_REVOKED",
        },
    ];
    let s = Setup::new().await;
    for case in cases {
        let key = s.license(3).await;
        // One machine activated while the license was fine: re-activating it is refused too.
        let before = s.activate(&key, "machine-0001").await;
        assert_eq!(before.status, 200, "{}: {}", case.name, before.body);
        case.spoil.apply(&s, &key).await;
        for machine in ["machine-0001", "machine-0002"] {
            let a = s.activate(&key, machine).await;
            assert_eq!(a.status, 400, "{} / {machine}: {}", case.name, a.body);
            a.assert_error(400, case.code);
        }
        assert_eq!(s.activations_of(&key), 1, "{}: nothing added", case.name);
    }
}

#[tokio::test]
async fn activate_unknown_key_is_404_license_not_found() {
    let s = Setup::new().await;
    let before = s.activations();
    let a = s.activate("TT-NONE-NONE-NONE-NONE", "machine-0001").await;
    a.assert_error(404, "LICENSE_NOT_FOUND");
    assert_eq!(s.activations(), before);
}

#[tokio::test]
async fn license_key_lookup_ignores_case_and_surrounding_whitespace() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let sloppy = format!("  {}\t", key.to_lowercase());

    let a = s.activate(&sloppy, "machine-0001").await;
    assert_eq!(a.status, 200, "activate: {}", a.body);
    assert_eq!(a.body["license"]["key"], key.as_str(), "the stored key");

    let v = s.validate(&sloppy, "machine-0001").await;
    assert_eq!(v.body["code"], "VALID", "validate: {}", v.body);

    let h = s
        .post(
            HEARTBEAT,
            json!({"key": sloppy, "machineId": "machine-0001"}),
        )
        .await;
    assert_eq!(h.status, 200, "heartbeat: {}", h.body);

    let c = s.check(&key.to_lowercase()).await;
    assert_eq!(c.status, 200, "check: {}", c.body);
    let c = s.check(&format!("%20{}%20", key.to_lowercase())).await;
    assert_eq!(c.status, 200, "check with encoded spaces: {}", c.body);

    let d = s
        .post(
            DEACTIVATE,
            json!({"licenseKey": sloppy, "machineId": "machine-0001"}),
        )
        .await;
    assert_eq!(d.status, 200, "deactivate: {}", d.body);
    assert_eq!(s.activations_of(&key), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_activations_from_different_machines_never_exceed_max_activations() {
    let s = Setup::new().await;
    let key = s.license(5).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = s.srv.client.clone();
        let url = format!("{}{ACTIVATE}", s.srv.url);
        let api_key = s.app_key.clone();
        let body = json!({"licenseKey": key, "machineId": format!("machine-{i:04}")});
        tasks.spawn(async move {
            let resp = client
                .post(url)
                .header("X-API-Key", api_key)
                .json(&body)
                .send()
                .await
                .expect("request sent");
            TestServer::decode(resp).await
        });
    }
    let mut ok = 0;
    let mut limited = 0;
    while let Some(joined) = tasks.join_next().await {
        let a = joined.expect("task");
        match a.status.as_u16() {
            200 => ok += 1,
            _ => {
                a.assert_error(400, "ACTIVATION_LIMIT_REACHED");
                limited += 1;
            }
        }
    }
    assert_eq!((ok, limited), (5, 45));
    assert_eq!(s.activations_of(&key), 5);
    let v = s.validate(&key, "machine-0000").await;
    assert_eq!(v.body["license"]["activationsUsed"], 5, "{}", v.body);
}

// ---- validate ----------------------------------------------------------------------------

#[tokio::test]
async fn validate_reports_every_code_and_never_writes_activations() {
    struct Case {
        name: &'static str,
        spoil: Option<Spoil>,
        /// Activate `machine-0001` before spoiling.
        activate: bool,
        /// Use a key that does not exist.
        unknown: bool,
        valid: bool,
        code: &'static str,
        status: Value,
    }
    let cases = [
        Case {
            name: "activated machine on an active license",
            spoil: None,
            activate: true,
            unknown: false,
            valid: true,
            code: "VALID",
            status: json!("ACTIVE"),
        },
        Case {
            name: "unknown key",
            spoil: None,
            activate: false,
            unknown: true,
            valid: false,
            code: "NOT_FOUND",
            status: Value::Null,
        },
        Case {
            name: "machine not activated",
            spoil: None,
            activate: false,
            unknown: false,
            valid: false,
            code: "NOT_ACTIVATED",
            status: json!("ACTIVE"),
        },
        Case {
            name: "expired",
            spoil: Some(Spoil::Expire),
            activate: true,
            unknown: false,
            valid: false,
            code: "EXPIRED",
            status: json!("EXPIRED"),
        },
        Case {
            name: "suspended",
            spoil: Some(Spoil::Suspend),
            activate: true,
            unknown: false,
            valid: false,
            code: "SUSPENDED",
            status: json!("SUSPENDED"),
        },
        Case {
            name: "banned shows as suspended",
            spoil: Some(Spoil::Ban),
            activate: true,
            unknown: false,
            valid: false,
            code: "SUSPENDED",
            status: json!("SUSPENDED"),
        },
        Case {
            name: "revoked",
            spoil: Some(Spoil::Revoke),
            activate: true,
            unknown: false,
            valid: false,
            code: "REVOKED",
            status: json!("REVOKED"),
        },
    ];
    let s = Setup::new().await;
    for case in cases {
        let key = if case.unknown {
            "TT-NONE-NONE-NONE-NONE".to_owned()
        } else {
            s.license(3).await
        };
        if case.activate {
            let a = s.activate(&key, "machine-0001").await;
            assert_eq!(a.status, 200, "{}: {}", case.name, a.body);
        }
        if let Some(spoil) = case.spoil {
            spoil.apply(&s, &key).await;
        }
        let before = s.activations();
        let last_seen = case.activate.then(|| s.last_seen_at(&key, "machine-0001"));
        let v = s.validate(&key, "machine-0001").await;
        assert_eq!(v.status, 200, "{}: {}", case.name, v.body);
        assert_eq!(v.body["success"], true, "{}: {}", case.name, v.body);
        assert_eq!(v.body["valid"], case.valid, "{}: {}", case.name, v.body);
        assert_eq!(v.body["code"], case.code, "{}: {}", case.name, v.body);
        assert_eq!(v.body["status"], case.status, "{}: {}", case.name, v.body);
        assert!(
            v.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {}",
            case.name,
            v.body
        );
        if case.unknown {
            assert_eq!(v.body["license"], Value::Null, "{}", case.name);
            assert_eq!(v.body["activation"], Value::Null, "{}", case.name);
        } else {
            assert_eq!(v.body["license"]["key"], key.as_str(), "{}", case.name);
            let used = i64::from(case.activate);
            assert_eq!(v.body["license"]["activationsUsed"], used, "{}", case.name);
        }
        if case.activate {
            assert_eq!(
                v.body["activation"]["machineId"], "machine-0001",
                "{}",
                case.name
            );
        } else {
            assert_eq!(v.body["activation"], Value::Null, "{}", case.name);
        }
        // Read-only: no activation created, none touched.
        assert_eq!(
            s.activations(),
            before,
            "{}: activations unchanged",
            case.name
        );
        if let Some(seen) = last_seen {
            assert_eq!(
                s.last_seen_at(&key, "machine-0001"),
                seen,
                "{}: lastSeenAt unchanged",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn validate_reports_heartbeat_dead_for_a_silent_machine_of_a_keep_policy_product() {
    // Keep dead machines: they are reported, not culled. A long interval keeps the fresh
    // activation alive whatever the test's pace; the silence is made by SQL.
    let s = Setup::on(TestServer::start().await, |p| {
        p.heartbeat = TestServer::heartbeat_policy(3600, 0, false)
    });
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.body["code"], "VALID", "{}", v.body);

    s.set_last_seen_at(&key, "machine-0001", now_ms() - 10 * 3_600_000);
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["valid"], false, "{}", v.body);
    assert_eq!(v.body["code"], "HEARTBEAT_DEAD", "{}", v.body);
    assert_eq!(v.body["status"], "ACTIVE", "{}", v.body);

    // A sweep keeps the machine (the policy says keep), and a heartbeat revives it.
    keyward::maintenance::sweep(&s.srv.running.as_ref().expect("running").state)
        .await
        .expect("sweep");
    assert_eq!(s.activations_of(&key), 1, "kept despite being dead");
    let h = s
        .post(HEARTBEAT, json!({"key": key, "machineId": "machine-0001"}))
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.body["code"], "VALID", "{}", v.body);
}

// ---- signatures ---------------------------------------------------------------------------

#[tokio::test]
async fn signed_responses_verify_with_the_product_public_key_and_echo_the_nonce() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let public_key = s.public_key().await;
    assert_eq!(
        public_key,
        keyward::crypto::base64(&s.product.signing_public_key),
        "the published key is the product's"
    );
    let other = s.srv.create_product("default", "other-app");
    let other_key = keyward::crypto::base64(&other.signing_public_key);

    let answers = [
        (
            "activate",
            s.post(
                ACTIVATE,
                json!({"licenseKey": key, "machineId": "machine-0001", "nonce": "nonce-activate"}),
            )
            .await,
            "nonce-activate",
        ),
        (
            "validate",
            s.post(
                VALIDATE,
                json!({"licenseKey": key, "machineId": "machine-0001", "nonce": "nonce-validate"}),
            )
            .await,
            "nonce-validate",
        ),
        (
            "validate of a machine not activated",
            s.post(
                VALIDATE,
                json!({"licenseKey": key, "machineId": "machine-0002", "nonce": "nonce-validate-2"}),
            )
            .await,
            "nonce-validate-2",
        ),
        (
            "heartbeat",
            s.post(
                HEARTBEAT,
                json!({"key": key, "machineId": "machine-0001", "nonce": "nonce-heartbeat"}),
            )
            .await,
            "nonce-heartbeat",
        ),
        (
            "check",
            s.srv
                .get(
                    &format!("/api/v1/license/check/{key}?nonce=nonce-check"),
                    &s.app_key,
                )
                .await,
            "nonce-check",
        ),
    ];
    for (name, a, nonce) in answers {
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        assert_eq!(
            a.header("X-Keyward-Product"),
            Some(s.product.id.as_str()),
            "{name}: names the signing product"
        );
        let signature = a
            .header("X-Signature")
            .unwrap_or_else(|| panic!("{name}: X-Signature header"));
        assert!(
            signature_verifies(&public_key, &a.raw, signature),
            "{name}: signature verifies over the raw body"
        );
        assert_eq!(
            a.body["nonce"], nonce,
            "{name}: nonce echoed in the signed body"
        );

        let mut tampered = a.raw.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        assert!(
            !signature_verifies(&public_key, &tampered, signature),
            "{name}: a flipped byte fails verification"
        );
        assert!(
            !signature_verifies(&other_key, &a.raw, signature),
            "{name}: another product's key does not verify"
        );
    }
}

#[tokio::test]
async fn validate_of_an_unknown_key_is_not_signed() {
    let s = Setup::new().await;
    let v = s
        .post(
            VALIDATE,
            json!({"licenseKey": "TT-NONE-NONE-NONE-NONE", "machineId": "machine-0001", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["code"], "NOT_FOUND");
    assert_eq!(v.body["nonce"], "n-1");
    assert_eq!(v.header("X-Signature"), None);
    assert_eq!(v.header("X-Keyward-Product"), None);
}

// ---- deactivate -----------------------------------------------------------------------------

#[tokio::test]
async fn deactivate_frees_the_seat_and_refuses_unknown_machines_and_keys() {
    let s = Setup::new().await;
    let key = s.license(1).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    s.activate(&key, "machine-0002")
        .await
        .assert_error(400, "ACTIVATION_LIMIT_REACHED");

    let d = s
        .post(
            DEACTIVATE,
            json!({"licenseKey": key, "machineId": "machine-0001"}),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["success"], true);
    assert!(d.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(s.activations_of(&key), 0);
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.body["code"], "NOT_ACTIVATED", "{}", v.body);

    let again = s
        .post(
            DEACTIVATE,
            json!({"licenseKey": key, "machineId": "machine-0001"}),
        )
        .await;
    again.assert_error(404, "ACTIVATION_NOT_FOUND");

    let unknown = s
        .post(
            DEACTIVATE,
            json!({"licenseKey": "TT-NONE-NONE-NONE-NONE", "machineId": "machine-0001"}),
        )
        .await;
    unknown.assert_error(404, "LICENSE_NOT_FOUND");

    let a = s.activate(&key, "machine-0002").await;
    assert_eq!(a.status, 200, "the freed seat is usable: {}", a.body);
}

// ---- heartbeat ------------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_accepts_key_and_its_alias_license_key_and_updates_last_seen_at() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);

    for field in ["key", "licenseKey"] {
        s.set_last_seen_at(&key, "machine-0001", 1_000);
        let before = now_ms();
        let h = s
            .post(HEARTBEAT, json!({field: key, "machineId": "machine-0001"}))
            .await;
        assert_eq!(h.status, 200, "{field}: {}", h.body);
        assert_eq!(h.body["success"], true, "{field}");
        assert_eq!(
            h.body["nextHeartbeatAt"],
            Value::Null,
            "{field}: no heartbeat policy, no next heartbeat"
        );
        assert!(
            s.last_seen_at(&key, "machine-0001") >= before,
            "{field}: lastSeenAt moved to the heartbeat's time"
        );
    }
}

#[tokio::test]
async fn heartbeat_next_heartbeat_at_is_now_plus_the_policy_interval() {
    let s = Setup::on(TestServer::start().await, |p| {
        p.heartbeat = TestServer::heartbeat_policy(3600, 60, true)
    });
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let before = OffsetDateTime::now_utc();
    let h = s
        .post(HEARTBEAT, json!({"key": key, "machineId": "machine-0001"}))
        .await;
    let after = OffsetDateTime::now_utc();
    assert_eq!(h.status, 200, "{}", h.body);
    let next = parse_time(&h.body["nextHeartbeatAt"]);
    let interval = time::Duration::seconds(3600);
    // Bounded by the clock before and after the call (second precision at worst).
    assert!(
        next >= before + interval - time::Duration::seconds(1)
            && next <= after + interval + time::Duration::seconds(1),
        "nextHeartbeatAt {next} ≈ now + 1 h"
    );
}

#[tokio::test]
async fn heartbeat_refuses_a_missing_key_an_unactivated_machine_and_a_revoked_license() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);

    let missing = s
        .post(HEARTBEAT, json!({"machineId": "machine-0001"}))
        .await;
    missing.assert_error(400, "VALIDATION_ERROR");
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("key"),
        "{}",
        missing.body
    );

    let not_activated = s
        .post(HEARTBEAT, json!({"key": key, "machineId": "machine-0002"}))
        .await;
    not_activated.assert_error(400, "NOT_ACTIVATED");
    assert_eq!(s.activations_of(&key), 1, "a heartbeat never activates");

    let unknown = s
        .post(
            HEARTBEAT,
            json!({"key": "TT-NONE-NONE-NONE-NONE", "machineId": "machine-0001"}),
        )
        .await;
    unknown.assert_error(404, "LICENSE_NOT_FOUND");

    s.revoke(&key).await;
    let revoked = s
        .post(HEARTBEAT, json!({"key": key, "machineId": "machine-0001"}))
        .await;
    revoked.assert_error(400, "LICENSE_REVOKED");
}

// ---- maintenance sweep ----------------------------------------------------------------------

/// A server whose background sweep only runs at start, so the test's own sweep is the one
/// that acts.
async fn quiet_server() -> TestServer {
    TestServer::start_with(|c| c.maintenance_interval = Duration::from_secs(3600)).await
}

#[tokio::test]
async fn sweep_culls_machines_whose_heartbeats_stopped_freeing_their_seats() {
    let s = Setup::on(quiet_server().await, |p| {
        p.heartbeat = TestServer::heartbeat_policy(3600, 0, true)
    });
    let key = s.license(2).await;
    for m in ["machine-0001", "machine-0002"] {
        let a = s.activate(&key, m).await;
        assert_eq!(a.status, 200, "{m}: {}", a.body);
    }
    s.activate(&key, "machine-0003")
        .await
        .assert_error(400, "ACTIVATION_LIMIT_REACHED");
    s.set_last_seen_at(&key, "machine-0001", now_ms() - 10 * 3_600_000);

    let (_, culled) = keyward::maintenance::sweep(&s.srv.running.as_ref().expect("running").state)
        .await
        .expect("sweep");
    assert_eq!(culled, 1);
    assert_eq!(s.activations_of(&key), 1);
    let dead = s.validate(&key, "machine-0001").await;
    assert_eq!(dead.body["code"], "NOT_ACTIVATED", "{}", dead.body);
    let alive = s.validate(&key, "machine-0002").await;
    assert_eq!(alive.body["code"], "VALID", "{}", alive.body);
    assert_eq!(
        s.audit("machine.cull", &key, 1).await,
        vec![(Some("machine-0001".to_owned()), None)],
        "one cull event for the dead machine"
    );

    let a = s.activate(&key, "machine-0003").await;
    assert_eq!(a.status, 200, "the culled seat is free: {}", a.body);
}

#[tokio::test]
async fn sweep_marks_licenses_past_valid_until_as_expired() {
    let s = Setup::on(quiet_server().await, |_| {});
    let until = OffsetDateTime::now_utc() + time::Duration::days(30);
    let overdue = s
        .srv
        .create_license(
            &s.admin_key,
            &s.product.id,
            json!({"validUntil": until.format(&Rfc3339).expect("format")}),
        )
        .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let current = s
        .srv
        .create_license(
            &s.admin_key,
            &s.product.id,
            json!({"validUntil": until.format(&Rfc3339).expect("format")}),
        )
        .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let perpetual = s.license(1).await;
    s.expire(&overdue);
    assert_eq!(s.stored_status(&overdue), "ACTIVE", "not yet swept");
    // Reported expired at request time, before any sweep.
    assert_eq!(s.check(&overdue).await.body["status"], "EXPIRED");

    let (expired, _) = keyward::maintenance::sweep(&s.srv.running.as_ref().expect("running").state)
        .await
        .expect("sweep");
    assert_eq!(expired, 1);
    assert_eq!(s.stored_status(&overdue), "EXPIRED");
    assert_eq!(s.stored_status(&current), "ACTIVE");
    assert_eq!(s.stored_status(&perpetual), "ACTIVE");
    assert_eq!(s.audit("license.expire", &overdue, 1).await.len(), 1);
    assert!(s.audit("license.expire", &current, 0).await.is_empty());
    s.activate(&overdue, "machine-0001")
        .await
        .assert_error(400, "LICENSE_EXPIRED");
}

// ---- check ----------------------------------------------------------------------------------

#[tokio::test]
async fn check_reports_the_vendor_status_of_a_license() {
    let s = Setup::new().await;
    struct Case {
        name: &'static str,
        spoil: Option<Spoil>,
        status: &'static str,
    }
    let cases = [
        Case {
            name: "active",
            spoil: None,
            status: "ACTIVE",
        },
        Case {
            name: "expired",
            spoil: Some(Spoil::Expire),
            status: "EXPIRED",
        },
        Case {
            name: "suspended",
            spoil: Some(Spoil::Suspend),
            status: "SUSPENDED",
        },
        Case {
            name: "banned shows as suspended",
            spoil: Some(Spoil::Ban),
            status: "SUSPENDED",
        },
        Case {
            name: "revoked",
            spoil: Some(Spoil::Revoke),
            status: "REVOKED",
        },
    ];
    for case in cases {
        let key = s.license(1).await;
        if let Some(spoil) = case.spoil {
            spoil.apply(&s, &key).await;
        }
        let c = s.check(&key).await;
        assert_eq!(c.status, 200, "{}: {}", case.name, c.body);
        assert_eq!(c.body["success"], true, "{}", case.name);
        assert_eq!(c.body["status"], case.status, "{}: {}", case.name, c.body);
    }
}

#[tokio::test]
async fn check_refuses_unknown_and_overlong_keys() {
    let s = Setup::new().await;
    s.check("TT-NONE-NONE-NONE-NONE")
        .await
        .assert_error(404, "LICENSE_NOT_FOUND");
    let long = "A".repeat(101);
    let a = s.check(&long).await;
    a.assert_error(400, "VALIDATION_ERROR");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("100"),
        "{}",
        a.body
    );
    let nonce = "n".repeat(129);
    let key = s.license(1).await;
    s.srv
        .get(
            &format!("/api/v1/license/check/{key}?nonce={nonce}"),
            &s.app_key,
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
}

// ---- audit ----------------------------------------------------------------------------------

#[tokio::test]
async fn activate_and_validate_are_audited_with_the_client_ip() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Re-activation is idempotent and records no second activation.
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    for _ in 0..2 {
        let v = s.validate(&key, "machine-0001").await;
        assert_eq!(v.status, 200, "{}", v.body);
    }
    let expected = (
        Some("machine-0001".to_owned()),
        Some("127.0.0.1".to_owned()),
    );
    assert_eq!(
        s.audit("license.activate", &key, 1).await,
        vec![expected.clone()]
    );
    assert_eq!(
        s.audit("license.validate", &key, 2).await,
        vec![expected.clone(), expected.clone()]
    );

    // A refusal is recorded too, as such.
    s.set_status(&key, "SUSPENDED");
    s.activate(&key, "machine-0002")
        .await
        .assert_error(400, "LICENSE_SUSPENDED");
    assert_eq!(
        s.audit("license.activate.refused", &key, 1).await,
        vec![(
            Some("machine-0002".to_owned()),
            Some("127.0.0.1".to_owned())
        )]
    );
}

// ---- bad input ------------------------------------------------------------------------------

enum Body {
    Json(Value),
    Raw(&'static str, Vec<u8>),
    None,
}

#[tokio::test]
async fn bad_input_answers_the_error_envelope_and_changes_nothing() {
    struct Case {
        name: &'static str,
        method: Method,
        path: &'static str,
        body: Body,
        status: u16,
        code: &'static str,
        /// Fragments the message must contain (the field and rule at fault).
        message: &'static [&'static str],
    }
    let s = Setup::new().await;
    let key = s.license(5).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let k = key.as_str();
    let m = "machine-0002";
    let json_case = |name, path, body: Value, fragments: &'static [&'static str]| Case {
        name,
        method: Method::POST,
        path,
        body: Body::Json(body),
        status: 400,
        code: "VALIDATION_ERROR",
        message: fragments,
    };
    let cases = vec![
        json_case(
            "activate without licenseKey",
            ACTIVATE,
            json!({"machineId": m}),
            &["licenseKey", "required"],
        ),
        json_case(
            "activate without machineId",
            ACTIVATE,
            json!({"licenseKey": k}),
            &["machineId", "required"],
        ),
        json_case(
            "validate without licenseKey",
            VALIDATE,
            json!({"machineId": m}),
            &["licenseKey", "required"],
        ),
        json_case(
            "validate without machineId",
            VALIDATE,
            json!({"licenseKey": k}),
            &["machineId", "required"],
        ),
        json_case(
            "deactivate without machineId",
            DEACTIVATE,
            json!({"licenseKey": k}),
            &["machineId", "required"],
        ),
        json_case(
            "heartbeat without machineId",
            HEARTBEAT,
            json!({"key": k}),
            &["machineId", "required"],
        ),
        json_case(
            "licenseKey null",
            ACTIVATE,
            json!({"licenseKey": null, "machineId": m}),
            &["licenseKey", "required"],
        ),
        json_case(
            "licenseKey a number",
            ACTIVATE,
            json!({"licenseKey": 1234567890, "machineId": m}),
            &["licenseKey", "string"],
        ),
        json_case(
            "machineId a number",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": 12345678}),
            &["machineId", "string"],
        ),
        json_case(
            "machineId an object",
            VALIDATE,
            json!({"licenseKey": k, "machineId": {"id": m}}),
            &["machineId", "string"],
        ),
        json_case(
            "machineName a boolean",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "machineName": true}),
            &["machineName", "string"],
        ),
        json_case(
            "heartbeat key a number",
            HEARTBEAT,
            json!({"key": 1234567890, "machineId": "machine-0001"}),
            &["`key`", "string"],
        ),
        json_case(
            "body an array",
            ACTIVATE,
            json!([{"licenseKey": k, "machineId": m}]),
            &[],
        ),
        json_case("body null", ACTIVATE, Value::Null, &[]),
        json_case("body a string", VALIDATE, json!("licenseKey"), &[]),
        json_case(
            "licenseKey 9 characters",
            ACTIVATE,
            json!({"licenseKey": "TT-ABCDEF", "machineId": m}),
            &["licenseKey", "10"],
        ),
        json_case(
            "licenseKey 101 characters",
            ACTIVATE,
            json!({"licenseKey": "A".repeat(101), "machineId": m}),
            &["licenseKey", "100"],
        ),
        json_case(
            "machineId 7 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": "machine"}),
            &["machineId", "8"],
        ),
        json_case(
            "machineId 256 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": "m".repeat(256)}),
            &["machineId", "255"],
        ),
        json_case(
            "machineName 256 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "machineName": "n".repeat(256)}),
            &["machineName", "255"],
        ),
        json_case(
            "osName 101 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "osName": "o".repeat(101)}),
            &["osName", "100"],
        ),
        json_case(
            "osVersion 101 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "osVersion": "o".repeat(101)}),
            &["osVersion", "100"],
        ),
        json_case(
            "appVersion 51 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "appVersion": "1".repeat(51)}),
            &["appVersion", "50"],
        ),
        json_case(
            "nonce 129 characters",
            ACTIVATE,
            json!({"licenseKey": k, "machineId": m, "nonce": "n".repeat(129)}),
            &["nonce", "128"],
        ),
        json_case(
            "validate machineId 256 characters",
            VALIDATE,
            json!({"licenseKey": k, "machineId": "m".repeat(256)}),
            &["machineId", "255"],
        ),
        json_case(
            "deactivate licenseKey 9 characters",
            DEACTIVATE,
            json!({"licenseKey": "TT-ABCDEF", "machineId": "machine-0001"}),
            &["licenseKey", "10"],
        ),
        json_case(
            "heartbeat licenseKey alias 101 characters",
            HEARTBEAT,
            json!({"licenseKey": "A".repeat(101), "machineId": "machine-0001"}),
            &["licenseKey", "100"],
        ),
        Case {
            name: "malformed JSON",
            method: Method::POST,
            path: ACTIVATE,
            body: Body::Raw("application/json", br#"{"licenseKey": "TT-"#.to_vec()),
            status: 400,
            code: "VALIDATION_ERROR",
            message: &[],
        },
        Case {
            name: "trailing garbage after JSON",
            method: Method::POST,
            path: VALIDATE,
            body: Body::Raw(
                "application/json",
                format!(r#"{{"licenseKey":"{k}","machineId":"{m}"}} x"#).into_bytes(),
            ),
            status: 400,
            code: "VALIDATION_ERROR",
            message: &[],
        },
        Case {
            name: "empty body",
            method: Method::POST,
            path: ACTIVATE,
            body: Body::Raw("application/json", Vec::new()),
            status: 400,
            code: "VALIDATION_ERROR",
            message: &[],
        },
        Case {
            name: "text/plain body",
            method: Method::POST,
            path: ACTIVATE,
            body: Body::Raw(
                "text/plain",
                format!(r#"{{"licenseKey":"{k}","machineId":"{m}"}}"#).into_bytes(),
            ),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            message: &["application/json"],
        },
        Case {
            name: "form body",
            method: Method::POST,
            path: DEACTIVATE,
            body: Body::Raw(
                "application/x-www-form-urlencoded",
                format!("licenseKey={k}&machineId=machine-0001").into_bytes(),
            ),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            message: &["application/json"],
        },
        Case {
            name: "body over 256 KiB",
            method: Method::POST,
            path: ACTIVATE,
            body: Body::Json(
                json!({"licenseKey": k, "machineId": m, "machineName": "n".repeat(300 * 1024)}),
            ),
            status: 413,
            code: "PAYLOAD_TOO_LARGE",
            message: &[],
        },
        Case {
            name: "GET on the activate endpoint",
            method: Method::GET,
            path: ACTIVATE,
            body: Body::None,
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            message: &[],
        },
        Case {
            name: "PUT on the validate endpoint",
            method: Method::PUT,
            path: VALIDATE,
            body: Body::Json(json!({"licenseKey": k, "machineId": m})),
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            message: &[],
        },
    ];

    let mut failures = Vec::new();
    for case in cases {
        let before = s.activations();
        let a = match case.body {
            Body::Json(v) => {
                let raw = serde_json::to_vec(&v).expect("json");
                s.srv
                    .call_raw(
                        case.method,
                        case.path,
                        Some(&s.app_key),
                        "application/json",
                        raw,
                    )
                    .await
            }
            Body::Raw(content_type, raw) => {
                s.srv
                    .call_raw(case.method, case.path, Some(&s.app_key), content_type, raw)
                    .await
            }
            Body::None => {
                s.srv
                    .call(case.method, case.path, Some(&s.app_key), None)
                    .await
            }
        };
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        let ok = a.status.as_u16() == case.status
            && a.body["success"] == false
            && a.error_code() == case.code
            && !message.is_empty()
            && case.message.iter().all(|f| message.contains(f));
        if !ok {
            failures.push(format!(
                "{}: expected {} {} containing {:?}, got {} {}",
                case.name, case.status, case.code, case.message, a.status, a.body
            ));
        }
        let after = s.activations();
        if after != before {
            failures.push(format!("{}: activations {before} -> {after}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.body["license"]["activationsUsed"], 1, "{}", v.body);
}

// ---- authorization --------------------------------------------------------------------------

/// Every machine-facing operation on `key` with `api_key`, named.
async fn every_endpoint(
    srv: &TestServer,
    api_key: Option<&str>,
    key: &str,
) -> Vec<(&'static str, Answer)> {
    let machine = json!({"licenseKey": key, "machineId": "machine-0001"});
    vec![
        (
            "activate",
            srv.call(Method::POST, ACTIVATE, api_key, Some(machine.clone()))
                .await,
        ),
        (
            "validate",
            srv.call(Method::POST, VALIDATE, api_key, Some(machine.clone()))
                .await,
        ),
        (
            "deactivate",
            srv.call(Method::POST, DEACTIVATE, api_key, Some(machine.clone()))
                .await,
        ),
        (
            "heartbeat",
            srv.call(
                Method::POST,
                HEARTBEAT,
                api_key,
                Some(json!({"key": key, "machineId": "machine-0001"})),
            )
            .await,
        ),
        (
            "check",
            srv.call(
                Method::GET,
                &format!("/api/v1/license/check/{key}"),
                api_key,
                None,
            )
            .await,
        ),
    ]
}

#[tokio::test]
async fn requests_without_a_live_api_key_are_401() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let revoked = s.srv.create_api_key("default", Scope::FullAdmin, None);
    let n = s.sql(
        "UPDATE api_keys SET revoked_at = 1 WHERE substr(?1, 1, length(prefix) + 1) = prefix || '_'",
        [&revoked],
    );
    assert_eq!(n, 1, "the key is revoked");
    // The same key with its last character changed: a known prefix, a wrong secret.
    let wrong = {
        let (head, last) = s.app_key.split_at(s.app_key.len() - 1);
        format!("{head}{}", if last == "x" { "y" } else { "x" })
    };

    let credentials: [(&str, Option<&str>); 4] = [
        ("no X-API-Key", None),
        ("unknown key", Some("kw_nothing_nothing")),
        ("right prefix, wrong secret", Some(&wrong)),
        ("revoked key", Some(&revoked)),
    ];
    let before = s.activations();
    for (name, credential) in credentials {
        for (endpoint, a) in every_endpoint(&s.srv, credential, &key).await {
            assert_eq!(a.status, 401, "{name} / {endpoint}: {}", a.body);
            a.assert_error(401, "UNAUTHORIZED");
            assert_eq!(
                a.header("X-Signature"),
                None,
                "{name} / {endpoint}: unsigned"
            );
        }
    }
    assert_eq!(s.activations(), before, "nothing changed");
}

#[tokio::test]
async fn another_tenants_api_key_gets_404_for_every_license_endpoint() {
    let s = Setup::new().await;
    let key = s.license(3).await;
    let a = s.activate(&key, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
    s.srv.create_tenant("other");
    s.srv.create_product("other", "app");
    let foreign = s.srv.create_api_key("other", Scope::FullAdmin, None);

    for (endpoint, a) in every_endpoint(&s.srv, Some(&foreign), &key).await {
        if endpoint == "validate" {
            // validate always answers 200; an invisible license is simply not found.
            assert_eq!(a.status, 200, "{endpoint}: {}", a.body);
            assert_eq!(a.body["code"], "NOT_FOUND", "{endpoint}: {}", a.body);
            assert_eq!(a.body["license"], Value::Null, "{endpoint}: nothing leaks");
        } else {
            a.assert_error(404, "LICENSE_NOT_FOUND");
        }
    }
    for (path, body) in [
        (REVOKE, json!({"licenseKey": key})),
        (
            "/api/v1/license/renew",
            json!({"licenseKey": key, "validUntil": "2099-01-01T00:00:00Z"}),
        ),
    ] {
        let a = s.srv.post(path, &foreign, body).await;
        a.assert_error(404, "LICENSE_NOT_FOUND");
    }
    // The license is untouched: still active with its one machine.
    assert_eq!(s.activations_of(&key), 1);
    assert_eq!(s.stored_status(&key), "ACTIVE");
    let v = s.validate(&key, "machine-0001").await;
    assert_eq!(v.body["code"], "VALID", "{}", v.body);
}

#[tokio::test]
async fn product_restricted_api_key_gets_404_for_another_products_license() {
    let s = Setup::new().await;
    let product_b = s.srv.create_product("default", "other-app");
    let key_b = s
        .srv
        .create_license(&s.admin_key, &product_b.id, json!({}))
        .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let key_a = s.license(3).await;
    let restricted = s
        .srv
        .create_api_key("default", Scope::ValidateOnly, Some(&s.product.id));

    for (endpoint, a) in every_endpoint(&s.srv, Some(&restricted), &key_b).await {
        if endpoint == "validate" {
            assert_eq!(a.status, 200, "{endpoint}: {}", a.body);
            assert_eq!(a.body["code"], "NOT_FOUND", "{endpoint}: {}", a.body);
        } else {
            a.assert_error(404, "LICENSE_NOT_FOUND");
        }
    }
    assert_eq!(s.activations_of(&key_b), 0);

    // Its own product's licenses work as usual.
    let a = s.srv.activate(&restricted, &key_a, "machine-0001").await;
    assert_eq!(a.status, 200, "{}", a.body);
}
