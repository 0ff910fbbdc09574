//! Audit retention: every raw row is counted into daily aggregates as it is written, rows past
//! their kind's retention are deleted, the dashboard's figures stay the same, and the space goes
//! back to the file system.

use std::time::Duration;

use clap::Parser;
use keyward::cli::{Cli, Command, ServeArgs};
use keyward::config::AuditRetention;
use keyward::domain::api_keys::Scope;
use keyward::domain::tenants;
use keyward::maintenance::{AuditPruner, Pruned};

use serde_json::{Value, json};

use super::helpers::*;

const DAY: i64 = 86_400_000;

/// Validations kept one day, licenses and admin events the default year; no background pass
/// after the first (the tests run the pruner themselves).
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.maintenance_interval = Duration::from_secs(3600);
        c.audit_retention = AuditRetention {
            validations: Some(Duration::from_secs(86_400)),
            ..AuditRetention::default()
        };
    })
    .await
}

async fn prune(srv: &TestServer) -> Pruned {
    let state = &srv.running.as_ref().expect("running").state;
    AuditPruner::default().run(state).await.expect("pruning")
}

fn tenant_id(srv: &TestServer, slug: &str) -> String {
    tenants::repo::find_by_slug(&srv.db(), slug)
        .unwrap()
        .expect("tenant")
        .id
}

/// Writes `n` audit events as old as `at` says, as the server writes them (counted for the
/// dashboard as they are written).
fn insert(
    conn: &rusqlite::Connection,
    n: usize,
    tenant: &str,
    at: i64,
    action: &str,
    product: Option<&str>,
    detail: Option<Value>,
) {
    for _ in 0..n {
        keyward::domain::audit::repo::insert(
            conn,
            &keyward::domain::audit::AuditEvent {
                tenant_id: tenant.to_owned(),
                at,
                actor: "api_key:test".into(),
                action: action.to_owned(),
                product_id: product.map(str::to_owned),
                license_id: Some("lic_old".into()),
                machine_id: None,
                ip: Some("203.0.113.9".into()),
                detail: detail.as_ref().map(Value::to_string),
            },
        )
        .unwrap();
    }
}

/// The `data` of `/api/stats` (with `query`), asserting a 200.
async fn stats(srv: &TestServer, key: &str, query: &str) -> Value {
    let a = srv.get(&format!("/api/stats{query}"), key).await;
    assert_status(&a, 200);
    a.body["data"].clone()
}

fn day_of(stats: &Value, day_ms: i64) -> (u64, u64) {
    let day = stats["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| parse_time(&d["day"]).unix_timestamp() * 1000 == day_ms)
        .unwrap_or_else(|| panic!("day {day_ms} in {stats}"));
    (
        day["validations"].as_u64().unwrap(),
        day["activations"].as_u64().unwrap(),
    )
}

fn failures(stats: &Value, code: &str) -> u64 {
    stats["failuresByReason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == code)
        .map_or(0, |f| f["count"].as_u64().unwrap())
}

#[tokio::test]
async fn old_validations_are_pruned_admin_rows_of_the_same_age_stay_and_figures_do_not_change() {
    let srv = server().await;
    let admin = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::FullAdmin, None);
    let product = srv.create_product(tenants::DEFAULT_SLUG, "retained");
    let other_product = srv.create_product(tenants::DEFAULT_SLUG, "elsewhere");
    srv.create_tenant("other");
    let other_admin = srv.create_api_key("other", Scope::FullAdmin, None);
    let other_tenant_product = srv.create_product("other", "theirs");
    let (tenant, other) = (
        tenant_id(&srv, tenants::DEFAULT_SLUG),
        tenant_id(&srv, "other"),
    );

    // Today's traffic, through the API: kept (younger than a day).
    let license = srv.create_license(&admin, &product.id, json!({})).await;
    let key = str_of(&license["key"]);
    assert_status(&srv.activate(&admin, &key, "machine-now").await, 200);
    for _ in 0..3 {
        let a = srv
            .post(
                "/api/v1/license/validate",
                &admin,
                json!({"licenseKey": key, "machineId": "machine-now"}),
            )
            .await;
        assert_status(&a, 200);
    }
    // Validations are audited in batches: wait until all three are committed.
    for _ in 0..200 {
        if srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.validate'",
            [],
        ) == 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server's first maintenance pass runs at start-up and may run late on a busy machine,
    // even after the rows below are in: so the count to compare with is taken before them.
    let rows_before_old_ones = srv.count("SELECT COUNT(*) FROM audit_events", []);

    // Older rows, written as the server would have written them days ago.
    let today = now_ms() / DAY * DAY;
    let (three_days, two_days) = (today - 3 * DAY + 3_600_000, today - 2 * DAY + 7_200_000);
    let conn = srv.db();
    let (p, q) = (Some(product.id.as_str()), Some(other_product.id.as_str()));
    let valid = || Some(json!({"code": "VALID"}));
    insert(
        &conn,
        5,
        &tenant,
        three_days,
        "license.validate",
        p,
        valid(),
    );
    insert(
        &conn,
        2,
        &tenant,
        three_days,
        "license.validate",
        q,
        Some(json!({"code": "EXPIRED"})),
    );
    let bound = Some(json!({"code": "VALID", "hwidBound": true, "encrypted": false}));
    insert(&conn, 3, &tenant, two_days, "key.validate", p, bound);
    let unbound = Some(json!({"code": "VALID", "hwidBound": false, "encrypted": false}));
    insert(&conn, 1, &tenant, two_days, "key.validate", p, unbound);
    let mismatch = Some(json!({"code": "HWID_MISMATCH"}));
    insert(
        &conn,
        2,
        &tenant,
        two_days,
        "key.validate.refused",
        p,
        mismatch,
    );
    insert(
        &conn,
        1,
        &tenant,
        two_days,
        "key.validate.refused",
        None,
        None,
    );
    let limit = Some(json!({"code": "ACTIVATION_LIMIT_REACHED"}));
    insert(
        &conn,
        1,
        &tenant,
        three_days,
        "license.activate.refused",
        q,
        limit,
    );
    insert(&conn, 4, &tenant, three_days, "license.check", p, None);
    insert(&conn, 2, &tenant, three_days, "license.activate", p, None);
    insert(&conn, 1, &tenant, three_days, "operator.create", None, None);
    insert(
        &conn,
        1,
        &tenant,
        three_days,
        "legacy.event.no.longer.named",
        None,
        None,
    );
    insert(
        &conn,
        1,
        &tenant,
        today - 400 * DAY,
        "operator.login",
        None,
        None,
    );
    let theirs = Some(other_tenant_product.id.as_str());
    insert(
        &conn,
        6,
        &other,
        three_days,
        "license.validate",
        theirs,
        valid(),
    );

    let before = (
        stats(&srv, &admin, "").await,
        stats(&srv, &admin, &format!("?projectId={}", product.id)).await,
        stats(&srv, &other_admin, "").await,
    );
    // Every row was counted as it was written: 5 + 2 license validations three days ago, 4 key
    // validations two days ago of which 3 bound their machine, the 2 activations.
    assert_eq!(day_of(&before.0, today - 3 * DAY), (7, 2), "{}", before.0);
    assert_eq!(day_of(&before.0, today - 2 * DAY), (4, 3));
    assert_eq!(day_of(&before.0, today), (3, 1));
    assert_eq!(day_of(&before.1, today - 3 * DAY), (5, 2));
    assert_eq!(failures(&before.0, "HWID_MISMATCH"), 2);
    assert_eq!(failures(&before.0, "EXPIRED"), 2);
    assert_eq!(failures(&before.0, "ACTIVATION_LIMIT_REACHED"), 1);
    assert_eq!(failures(&before.0, "UNKNOWN"), 1);
    assert_eq!(failures(&before.1, "EXPIRED"), 0, "another project's");
    assert_eq!(day_of(&before.2, today - 3 * DAY), (6, 0));
    prune(&srv).await;

    // Of the 30 old rows, 5 + 2 + 3 + 1 + 2 + 1 + 1 + 4 validations-class rows, 6 in the other
    // tenant, and the 400-day-old login (admin rows are kept a year) go; the 2 activations, the
    // admin event and the unknown one stay. (A background pass may have taken some of them:
    // the rows tell, not what this pass returned.)
    assert_eq!(
        srv.count("SELECT COUNT(*) FROM audit_events", []),
        rows_before_old_ones + 4
    );
    let old = |action: &str| {
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = ?1 AND at < ?2",
            rusqlite::params![action, today - DAY],
        )
    };
    for action in [
        "license.validate",
        "key.validate",
        "key.validate.refused",
        "license.activate.refused",
        "license.check",
        "operator.login",
    ] {
        assert_eq!(old(action), 0, "{action} rows past their retention");
    }
    assert_eq!(old("license.activate"), 2, "license events are kept a year");
    assert_eq!(old("operator.create"), 1, "admin events are kept a year");
    assert_eq!(
        old("legacy.event.no.longer.named"),
        1,
        "unknown names are kept longest"
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.validate'",
            []
        ),
        3,
        "today's validations stay"
    );
    assert_eq!(
        counted_but_gone(&srv),
        26,
        "every pruned row is still counted, once"
    );

    let after = (
        stats(&srv, &admin, "").await,
        stats(&srv, &admin, &format!("?projectId={}", product.id)).await,
        stats(&srv, &other_admin, "").await,
    );
    assert_eq!(after.0, before.0, "figures of the whole tenant");
    assert_eq!(after.1, before.1, "figures of one project");
    assert_eq!(after.2, before.2, "figures of another tenant");

    // The log view lists what is kept.
    let logs = srv.get("/api/logs?action=license.validate", &admin).await;
    assert_status(&logs, 200);
    assert_eq!(logs.body["data"]["pagination"]["total"], 3, "{}", logs.body);

    // A second pass finds nothing more and counts nothing twice.
    assert_eq!(prune(&srv).await.rows, 0);
    assert_eq!(stats(&srv, &admin, "").await, before.0);
    assert_eq!(counted_but_gone(&srv), 26);
}

/// Rows counted in the daily aggregates less the raw rows kept: those pruned.
fn counted_but_gone(srv: &TestServer) -> i64 {
    srv.count(
        "SELECT (SELECT SUM(count) FROM audit_daily) - (SELECT COUNT(*) FROM audit_events)",
        [],
    )
}

#[tokio::test]
async fn pruned_pages_go_back_to_the_file_system() {
    let srv = server().await;
    let tenant = tenant_id(&srv, tenants::DEFAULT_SLUG);
    let conn = srv.db();
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mode, 2,
        "a new database is created with auto_vacuum = INCREMENTAL"
    );
    // 20,000 validations of four days ago, about 300 bytes each (6 MB), and a few recent ones.
    let at = now_ms() - 4 * DAY;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO audit_events (tenant_id, at, actor, action, product_id, license_id,
             machine_id, ip, detail)
         SELECT ?1, ?2 + i, 'api_key:0f3c2a9e-1b7d-4c5e-9a8f-2d6e4b1c3a7f', 'license.validate',
             'prod_9b2f1c4e7a3d4e8bb1c65f2a9d3e7c10', 'lic_c4d8e2f16b3a4c9e8d7f1a2b3c4d5e6f',
             'machine-' || (i % 100), '198.51.100.' || (i % 250),
             '{\"code\":\"VALID\",\"padding\":\"' || hex(randomblob(40)) || '\"}'
         FROM n",
        rusqlite::params![tenant, at],
    )
    .unwrap();
    insert(&conn, 10, &tenant, now_ms(), "license.validate", None, None);
    let pages = |c: &rusqlite::Connection| -> (i64, i64) {
        (
            c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap(),
            c.query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap(),
        )
    };
    let (full, _) = pages(&conn);
    let counted = srv.count("SELECT SUM(count) FROM audit_daily", []);

    prune(&srv).await;

    assert_eq!(
        srv.count("SELECT SUM(count) FROM audit_daily", []),
        counted,
        "pruning leaves the counts as they were"
    );
    let (count, free) = pages(&srv.db());
    assert!(free <= 2, "free pages left in the file: {free}");
    assert!(
        count * 3 < full,
        "the database shrinks from {full} pages, to {count}"
    );
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'license.validate'",
            []
        ),
        10
    );
}

/// A database made before incremental auto-vacuum is rewritten once at start, keeping its rows.
#[tokio::test]
async fn an_existing_database_is_converted_to_incremental_auto_vacuum_at_start() {
    let mut srv = server().await;
    let admin = srv.create_api_key(tenants::DEFAULT_SLUG, Scope::FullAdmin, None);
    let product = srv.create_product(tenants::DEFAULT_SLUG, "kept");
    let license = srv.create_license(&admin, &product.id, json!({})).await;
    srv.running.take().unwrap().stop().await.unwrap();
    // As version 7 left it: no audit_daily (version 8), no revocation lists (version 9), no
    // entitlements (version 10), no signing key table (version 11), no payments (version 12),
    // no two-factor tables (version 13), no webhooks (version 14), no e-mail tables (version 15),
    // no artifacts, rollouts or minimum versions (version 16), no feeds (version 17), no
    // time and action indexes on the audit table or license counts (version 18),
    // auto_vacuum off.
    {
        let conn =
            rusqlite::Connection::open(keyward::storage::database_path(srv.data_dir())).unwrap();
        conn.execute_batch(
            "DROP INDEX audit_time; DROP INDEX audit_action_time;
             DROP TRIGGER license_counted_insert; DROP TRIGGER license_counted_delete;
             DROP TRIGGER license_counted_update; DROP TABLE license_counts;
             DROP TABLE payment_refs; DROP TABLE payment_event_licenses;
             DROP TABLE payment_events; DROP TABLE payment_mappings; DROP TABLE payment_endpoints;
             DROP TABLE audit_daily; DROP TABLE revocation_lists; DROP TABLE revocations;
             DROP TABLE signing_keys; DROP TABLE operator_totp;
             DROP TABLE operator_recovery_codes; DROP TABLE tenant_two_factor_policy;
             DROP TABLE webhook_deliveries; DROP TABLE webhook_events; DROP TABLE webhook_endpoints;
             ALTER TABLE releases DROP COLUMN signature_kid;
             DROP TABLE smtp_settings; DROP TABLE mail_outbox; DROP TABLE mail_templates;
             DROP TABLE mail_reminders; DROP INDEX portal_users_email;
             ALTER TABLE portal_users DROP COLUMN email; DROP INDEX licenses_customer_email;
             DROP TRIGGER licenses_customer_insert; DROP TRIGGER licenses_customer_delete;
             DROP TRIGGER licenses_customer_update; DROP TABLE license_customers;
             DROP TABLE license_customer_rows;
             DROP TABLE feed_tokens; ALTER TABLE products DROP COLUMN feeds_public;
             DROP TABLE release_artifacts; ALTER TABLE releases DROP COLUMN rollout_percentage;
             ALTER TABLE products DROP COLUMN minimum_version;
             ALTER TABLE release_deltas DROP COLUMN signature_kid;
             ALTER TABLE licenses DROP COLUMN entitlements;
             ALTER TABLE products DROP COLUMN entitlements; PRAGMA user_version = 7;
             PRAGMA auto_vacuum = NONE; VACUUM;",
        )
        .unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 0);
    }
    srv.restart().await;
    let conn = srv.db();
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "converted at start");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, keyward::storage::LATEST_VERSION);
    // Version 18 counted the rows kept so far (the license's creation among them) once.
    assert!(srv.count("SELECT COUNT(*) FROM audit_events", []) > 0);
    assert_eq!(
        srv.count("SELECT SUM(count) FROM audit_daily", []),
        srv.count("SELECT COUNT(*) FROM audit_events", [])
    );
    // Version 11 copied the product's key in as its first, current key.
    assert_eq!(
        srv.count(
            "SELECT COUNT(*) FROM signing_keys k JOIN products p ON p.id = k.product_id
             WHERE k.is_current = 1 AND k.public_key = p.signing_public_key
                AND k.endorsement IS NULL",
            []
        ),
        1
    );
    let key = str_of(&license["key"]);
    assert_status(&srv.activate(&admin, &key, "after-the-rewrite").await, 200);
}

#[test]
fn retention_flags_and_their_defaults() {
    let serve = |args: &[&str]| -> ServeArgs {
        let mut argv = vec!["keyward", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Serve(s)) => *s,
            other => panic!("{other:?}"),
        }
    };
    let config = |s: ServeArgs| s.into_config(".".into()).audit_retention;
    let day = |n: u64| Some(Duration::from_secs(n * 86_400));
    assert_eq!(
        config(serve(&[])),
        AuditRetention {
            validations: day(30),
            licenses: day(365),
            admin: day(365),
        }
    );
    assert_eq!(config(ServeArgs::default()), AuditRetention::default());
    assert_eq!(
        config(serve(&[
            "--audit-retention-validations",
            "7",
            "--audit-retention-admin",
            "0",
        ])),
        AuditRetention {
            validations: day(7),
            licenses: day(365),
            admin: None,
        }
    );
}
