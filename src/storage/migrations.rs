//! Schema creation and upgrades. `schema.sql` creates a fresh database at the latest version;
//! each later version is one migration, applied in its own transaction, recorded in
//! `PRAGMA user_version`. A database newer than this binary is refused, never touched.

use std::path::Path;

use rusqlite::Connection;

use crate::error::Error;

/// The schema version `schema.sql` creates.
pub const LATEST_VERSION: i64 = 18;

const SCHEMA: &str = include_str!("../../schema.sql");

/// Migration `i` upgrades version `i + 1` to `i + 2`. Each is also folded into `schema.sql`;
/// the test below proves that both paths give the same schema.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/v2_releases.sql"),
    include_str!("migrations/v3_portal.sql"),
    include_str!("migrations/v4_abuse.sql"),
    include_str!("migrations/v5_note_search.sql"),
    include_str!("migrations/v6_setup_token.sql"),
    include_str!("migrations/v7_session_chains.sql"),
    include_str!("migrations/v8_audit_retention.sql"),
    include_str!("migrations/v9_revocations.sql"),
    include_str!("migrations/v10_entitlements.sql"),
    include_str!("migrations/v11_signing_keys.sql"),
    include_str!("migrations/v12_payments.sql"),
    include_str!("migrations/v13_totp.sql"),
    include_str!("migrations/v14_webhooks.sql"),
    include_str!("migrations/v15_mail.sql"),
    include_str!("migrations/v16_artifacts.sql"),
    include_str!("migrations/v17_feeds.sql"),
    include_str!("migrations/v18_large_reads.sql"),
];

/// Opens (creating if needed) the database at `path`, configured and at the latest version.
pub fn open_and_migrate(path: &Path) -> Result<Connection, Error> {
    let mut conn = Connection::open(path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    // Space freed by pruned audit rows goes back to the file system (see
    // `super::vacuum`). On a new, empty file this takes effect at once, and only before
    // `journal_mode = WAL` writes the first page; on an existing database it changes nothing
    // until the one-time VACUUM of `super::vacuum::enable_incremental` at server start.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    super::configure_connection(&conn)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > 0 && version < LATEST_VERSION {
        let snapshot = super::backup::before_migration(&conn, path, version)?;
        tracing::info!(
            "schema version {version} will be migrated to {LATEST_VERSION}; the database as it \
             was is in {}",
            snapshot.display()
        );
    }
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > LATEST_VERSION {
        return Err(Error::Storage(format!(
            "the database is at schema version {version}, but this keyward only knows versions up \
             to {LATEST_VERSION}: upgrade keyward (or restore a backup made by this version)"
        )));
    }
    if version == 0 {
        // Before the first table: afterwards only a VACUUM can change it.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(&format!("PRAGMA user_version = {LATEST_VERSION}"))?;
        crate::domain::tenants::repo::ensure_default(&tx)?;
        tx.commit()?;
        return Ok(());
    }
    debug_assert_eq!(MIGRATIONS.len() as i64, LATEST_VERSION - 1);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
        let to = i as i64 + 2;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if to == 11 {
            // A kid is a SHA-256 of the public key, which SQL cannot compute.
            crate::domain::signing_keys::repo::copy_product_keys(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))?;
        tx.commit()?;
        tracing::info!("database migrated to schema version {to}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema as version 1 shipped it, kept only to prove the upgrade path.
    const V1_SCHEMA: &str = include_str!("migrations/v1_schema.sql");

    fn shape(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
        let mut out = Vec::new();
        let mut objects = conn.prepare(
            "SELECT type, name, tbl_name FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )?;
        let rows = objects.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (kind, name, table) = row?;
            out.push(format!("{kind} {name} on {table}"));
            let pragma = if kind == "table" {
                "table_info"
            } else {
                "index_info"
            };
            let mut cols = conn.prepare(&format!("PRAGMA {pragma}(\"{name}\")"))?;
            let described = cols.query_map([], |r| {
                let mut parts = Vec::new();
                for i in 0..r.as_ref().column_count() {
                    parts.push(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        other => format!("{other:?}"),
                    });
                }
                Ok(parts.join(" "))
            })?;
            for col in described {
                out.push(format!("  {}", col?));
            }
        }
        Ok(out)
    }

    /// The schema version that brought event webhooks.
    const WEBHOOKS_VERSION: i64 = 14;

    /// Version 14 moves the pending abuse webhook deliveries to the event webhook queue, with
    /// the Standard Webhooks body.
    #[test]

    fn upgrading_to_v14_moves_pending_abuse_deliveries() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        // The version before the webhook migration; only that migration runs (later ones would
        // find their tables made already).
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF;
             DROP TABLE webhook_deliveries; DROP TABLE webhook_events;
             DROP TABLE webhook_endpoints; PRAGMA user_version = {};
             INSERT INTO tenants (id, slug, name, created_at) VALUES ('ten_x', 'x', 'x', 1);
             INSERT INTO abuse_webhook_deliveries (tenant_id, product_id, flag_id, url, body,
                 attempts, next_attempt_at, created_at)
             VALUES ('ten_x', 'prod_x', 'flag_1', 'http://hooks.example/a',
                     '{{\"event\":\"abuse.flag.created\",\"flag\":{{\"id\":\"flag_1\"}}}}', 2, 5, 1000),
                    ('ten_x', 'prod_x', 'flag_2', 'http://hooks.example/a', '{{}}', 1, 5, 1000);
             UPDATE abuse_webhook_deliveries SET delivered_at = 9 WHERE flag_id = 'flag_2';",
            WEBHOOKS_VERSION - 1
        ))?;
        conn.execute_batch(MIGRATIONS[(WEBHOOKS_VERSION - 2) as usize])?;
        let (body, attempts, url): (String, i64, String) = conn.query_row(
            "SELECT e.body, d.attempts, d.url FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let body: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(body["type"], "abuse.flag.created");
        assert_eq!(body["data"]["flag"]["id"], "flag_1");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!((attempts, url.as_str()), (2, "http://hooks.example/a"));
        Ok(())
    }

    /// Version 6 moves the key's nonce to its sessions: a running app keeps its chain.
    #[test]
    fn upgrading_to_v7_hands_the_keys_nonce_to_its_sessions()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(V1_SCHEMA)?;
        conn.execute_batch("PRAGMA user_version = 1")?;
        crate::domain::tenants::repo::ensure_default(&conn)?;
        let tenant: String = conn.query_row("SELECT id FROM tenants", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
        conn.execute(
            "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier,
                status, max_activations, current_nonce, created_at, updated_at)
             VALUES ('lic_1', ?1, 'prod_1', 'K-1', 'PERPETUAL', 'PERSONAL', 'ACTIVE', 1,
                'the-nonce', 0, 0)",
            [&tenant],
        )?;
        conn.execute(
            "INSERT INTO sessions (id, tenant_id, license_id, machine_id, created_at, last_seen_at)
             VALUES ('s1', ?1, 'lic_1', 'pc', 0, 0)",
            [&tenant],
        )?;
        migrate(&mut conn)?;
        let (nonce, ended): (Option<String>, Option<i64>) = conn.query_row(
            "SELECT nonce, ended_at FROM sessions WHERE id = 's1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert_eq!(nonce.as_deref(), Some("the-nonce"));
        assert_eq!(ended, None);
        let old: Option<String> =
            conn.query_row("SELECT current_nonce FROM licenses", [], |r| r.get(0))?;
        assert_eq!(old, None);
        Ok(())
    }

    /// Version 9 starts the revocation lists with the licenses already refused.
    #[test]
    fn upgrading_to_v9_lists_the_licenses_already_refused() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(V1_SCHEMA)?;
        conn.execute_batch("PRAGMA user_version = 1")?;
        crate::domain::tenants::repo::ensure_default(&conn)?;
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
        for (id, product, status) in [
            ("lic_1", "prod_1", "ACTIVE"),
            ("lic_2", "prod_1", "SUSPENDED"),
            ("lic_3", "prod_1", "REVOKED"),
            ("lic_4", "prod_2", "EXPIRED"),
            ("lic_5", "prod_3", "BANNED"),
        ] {
            conn.execute(
                "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier,
                    status, max_activations, created_at, updated_at)
                 VALUES (?1, 't', ?2, ?1, 'PERPETUAL', 'PERSONAL', ?3, 1, 0, 7)",
                [id, product, status],
            )?;
        }
        migrate(&mut conn)?;
        let listed: Vec<String> = conn
            .prepare("SELECT license_id FROM revocations ORDER BY license_id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(listed, ["lic_2", "lic_3", "lic_5"]);
        let versions: Vec<(String, i64)> = conn
            .prepare("SELECT product_id, version FROM revocation_lists ORDER BY product_id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        assert_eq!(versions, [("prod_1".into(), 1), ("prod_3".into(), 1)]);
        Ok(())
    }

    /// Takes a database at the latest version back to version 17: without what version 18 adds.
    fn back_to_v17(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch(
            "DROP INDEX audit_time; DROP INDEX audit_action_time;
             DROP TRIGGER license_counted_insert; DROP TRIGGER license_counted_delete;
             DROP TRIGGER license_counted_update; DROP TABLE license_counts;
             PRAGMA user_version = 17;",
        )
    }

    /// Version 18 counts the audit rows kept so far into the daily aggregates (beside the counts
    /// of the rows already pruned) and the licenses so far into `license_counts`, once; rows
    /// written after it are counted as they are written.
    #[test]
    fn upgrading_to_v18_counts_the_kept_audit_rows_once() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        back_to_v17(&conn)?;
        conn.execute_batch(
            "INSERT INTO audit_daily (tenant_id, product_id, day, action, code, hwid_bound, count)
             VALUES ('t', 'p', 0, 'license.validate', 'VALID', 0, 40);
             INSERT INTO audit_events (tenant_id, at, actor, action, product_id, detail)
             VALUES ('t', 5, 'a', 'license.validate', 'p', '{\"code\":\"VALID\"}'),
                    ('t', 6, 'a', 'license.validate', 'p', '{\"code\":\"VALID\"}'),
                    ('t', 86400001, 'a', 'key.validate', NULL, '{\"hwidBound\":true}');
             PRAGMA foreign_keys = OFF;
             INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier,
                status, max_activations, plan, created_at, updated_at)
             VALUES ('l1', 't', 'p', 'K1', 'PERPETUAL', 'PERSONAL', 'ACTIVE', 1, NULL, 0, 0),
                    ('l2', 't', 'p', 'K2', 'PERPETUAL', 'PERSONAL', 'ACTIVE', 1, NULL, 0, 0),
                    ('l3', 't', 'p', 'K3', 'PERPETUAL', 'PERSONAL', 'BANNED', 1, 'DAILY', 0, 0);",
        )?;
        migrate(&mut conn)?;
        let licenses: Vec<(String, String, i64)> = conn
            .prepare("SELECT status, plan, count FROM license_counts ORDER BY status")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        assert_eq!(
            licenses,
            [
                ("ACTIVE".into(), String::new(), 2),
                ("BANNED".into(), "DAILY".into(), 1)
            ],
            "the licenses so far are counted once"
        );
        type DayCount = (i64, String, String, i64, i64);
        let counts = |c: &Connection| -> rusqlite::Result<Vec<DayCount>> {
            c.prepare(
                "SELECT day, product_id, code, hwid_bound, count FROM audit_daily ORDER BY day",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        };
        assert_eq!(
            counts(&conn)?,
            [
                (0, "p".into(), "VALID".into(), 0, 42),
                (86_400_000, String::new(), String::new(), 1, 1)
            ]
        );
        crate::domain::audit::repo::insert(
            &conn,
            &crate::domain::audit::AuditEvent {
                tenant_id: "t".into(),
                at: 7,
                actor: "a".into(),
                action: "license.validate".into(),
                product_id: Some("p".into()),
                license_id: None,
                machine_id: None,
                ip: None,
                detail: Some(r#"{"code":"VALID"}"#.into()),
            },
        )?;
        assert_eq!(
            counts(&conn)?[0].4,
            43,
            "a new row is counted as it is written"
        );
        Ok(())
    }

    /// The rows version 18 counts in SQL land where the server counts new ones
    /// (`audit::daily::DailyCounts`), whatever their detail holds.
    #[test]
    fn the_upgrade_counts_audit_rows_as_the_server_does() -> Result<(), Box<dyn std::error::Error>>
    {
        let details = [
            None,
            Some(r#"{"code":"VALID"}"#),
            Some(r#"{"code":"EXPIRED","hwidBound":false}"#),
            Some(r#"{"code":"VALID","hwidBound":true,"encrypted":false}"#),
            Some(r#"{"hwidBound":1}"#),
            Some(r#"{"code":5}"#),
            Some(r#"{"code":null}"#),
            Some("[1,2]"),
            Some("42"),
            Some("not json"),
        ];
        let events: Vec<crate::domain::audit::AuditEvent> = details
            .iter()
            .enumerate()
            .map(|(i, d)| crate::domain::audit::AuditEvent {
                tenant_id: format!("t{}", i % 2),
                at: i as i64 * 40_000_000,
                actor: "a".into(),
                action: if i % 3 == 0 {
                    "key.validate"
                } else {
                    "license.validate"
                }
                .into(),
                product_id: (i % 4 != 0).then(|| "p".to_owned()),
                license_id: None,
                machine_id: None,
                ip: None,
                detail: d.map(str::to_owned),
            })
            .collect();
        type Daily = (String, String, i64, String, String, i64, i64);
        let daily = |c: &Connection| -> rusqlite::Result<Vec<Daily>> {
            c.prepare("SELECT * FROM audit_daily ORDER BY 1, 2, 3, 4, 5, 6")?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect()
        };
        let mut upgraded = Connection::open_in_memory()?;
        migrate(&mut upgraded)?;
        back_to_v17(&upgraded)?;
        for e in &events {
            crate::domain::audit::repo::insert_row(&upgraded, e)?;
        }
        migrate(&mut upgraded)?;
        let mut fresh = Connection::open_in_memory()?;
        migrate(&mut fresh)?;
        for e in &events {
            crate::domain::audit::repo::insert(&fresh, e)?;
        }
        assert_eq!(daily(&upgraded)?, daily(&fresh)?);
        assert_eq!(daily(&fresh)?.len(), details.len());
        Ok(())
    }

    /// Version 11 makes each product's only key its first signing key, and names it as the
    /// signer of the bundles already uploaded.
    #[test]
    fn upgrading_to_v11_copies_each_products_key_and_names_the_bundles_signer()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        back_to_v17(&conn)?;
        conn.execute_batch(
            "DROP TABLE payment_refs; DROP TABLE payment_event_licenses;
             DROP TABLE payment_events; DROP TABLE payment_mappings; DROP TABLE payment_endpoints;
             DROP TABLE signing_keys; ALTER TABLE releases DROP COLUMN signature_kid;
             ALTER TABLE release_deltas DROP COLUMN signature_kid;
             DROP TABLE operator_totp; DROP TABLE operator_recovery_codes;
             DROP TABLE tenant_two_factor_policy; DROP TABLE webhook_deliveries;
             DROP TABLE webhook_events; DROP TABLE webhook_endpoints;
             DROP TABLE smtp_settings; DROP TABLE mail_outbox; DROP TABLE mail_templates;
             DROP TABLE mail_reminders; DROP INDEX portal_users_email;
             ALTER TABLE portal_users DROP COLUMN email; DROP INDEX licenses_customer_email;
             DROP TRIGGER licenses_customer_insert; DROP TRIGGER licenses_customer_delete;
             DROP TRIGGER licenses_customer_update; DROP TABLE license_customers;
             DROP TABLE license_customer_rows;
             DROP TABLE feed_tokens; ALTER TABLE products DROP COLUMN feeds_public;
             DROP TABLE release_artifacts; ALTER TABLE releases DROP COLUMN rollout_percentage;
             ALTER TABLE products DROP COLUMN minimum_version; PRAGMA user_version = 10;
             PRAGMA foreign_keys = OFF;",
        )?;
        let public = [7u8; 32];
        conn.execute(
            "INSERT INTO products (id, tenant_id, name, slug, product_type, status,
                default_license_type, default_max_activations, key_format, signing_public_key,
                signing_secret_sealed, client_secret_sha256, client_secret_sealed,
                payload_key_sealed, created_at, updated_at)
             VALUES ('prod_1', 't', 'P', 'p', 'DESKTOP', 'ACTIVE', 'PERPETUAL', 1, 'XXXX', ?1,
                x'0102', x'03', x'04', x'05', 42, 42)",
            [&public[..]],
        )?;
        conn.execute_batch(
            "INSERT INTO releases (id, tenant_id, product_id, version, channel, status,
                bundle_filename, bundle_size, bundle_sha256, signature, created_at)
             VALUES ('rel_1', 't', 'prod_1', '1.0.0', 'stable', 'DRAFT', 'a', 1, 'h', 's', 0);
             INSERT INTO release_deltas (release_id, from_version, bundle_filename, bundle_size,
                bundle_sha256, signature, created_at)
             VALUES ('rel_1', '0.9.0', 'd', 1, 'h2', 's2', 0);",
        )?;
        migrate(&mut conn)?;
        let kid = crate::domain::license_files::kid(&public);
        let (serial, listed, current, sealed, created, endorsed): (
            i64,
            String,
            bool,
            Vec<u8>,
            i64,
            Option<String>,
        ) = conn.query_row(
            "SELECT serial, kid, is_current, secret_sealed, created_at, endorsement
             FROM signing_keys WHERE product_id = 'prod_1'",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
        assert_eq!(
            (serial, listed.as_str(), current, sealed, created, endorsed),
            (1, kid.as_str(), true, vec![1, 2], 42, None)
        );
        let signers: Vec<String> = conn
            .prepare(
                "SELECT signature_kid FROM releases
                 UNION ALL SELECT signature_kid FROM release_deltas",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(signers, [kid.clone(), kid]);
        Ok(())
    }

    #[test]
    fn upgrading_from_v1_gives_the_schema_a_fresh_database_gets()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut fresh = Connection::open_in_memory()?;
        migrate(&mut fresh)?;

        let mut upgraded = Connection::open_in_memory()?;
        upgraded.execute_batch(V1_SCHEMA)?;
        upgraded.execute_batch("PRAGMA user_version = 1")?;
        crate::domain::tenants::repo::ensure_default(&upgraded)?;
        migrate(&mut upgraded)?;

        let version: i64 = upgraded.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(version, LATEST_VERSION);
        let (upgraded, fresh) = (shape(&upgraded)?, shape(&fresh)?);
        let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !fresh.contains(l)).collect();
        let only_fresh: Vec<_> = fresh.iter().filter(|l| !upgraded.contains(l)).collect();
        assert!(
            only_upgraded.is_empty() && only_fresh.is_empty() && upgraded == fresh,
            "only after upgrading: {only_upgraded:#?}\nonly in schema.sql: {only_fresh:#?}"
        );
        Ok(())
    }

    #[test]
    fn new_databases_give_space_back_and_old_ones_are_converted_once()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;

        let fresh = open_and_migrate(&dir.path().join("fresh.db"))?;
        assert!(crate::storage::vacuum::is_incremental(&fresh)?);
        assert!(!crate::storage::vacuum::enable_incremental(&fresh)?);

        // A version-1 database as that version made it: WAL first, auto_vacuum never set.
        let old_path = dir.path().join("old.db");
        {
            let old = Connection::open(&old_path)?;
            crate::storage::configure_connection(&old)?;
            old.execute_batch(V1_SCHEMA)?;
            old.execute_batch("PRAGMA user_version = 1")?;
            crate::domain::tenants::repo::ensure_default(&old)?;
            old.execute(
                "INSERT INTO audit_events (tenant_id, at, actor, action) VALUES ('t', 1, 'a', 'x')",
                [],
            )?;
        }
        let upgraded = open_and_migrate(&old_path)?;
        assert!(
            !crate::storage::vacuum::is_incremental(&upgraded)?,
            "the mode of an existing database changes only with a VACUUM"
        );
        assert!(crate::storage::vacuum::enable_incremental(&upgraded)?);
        assert!(crate::storage::vacuum::is_incremental(&upgraded)?);
        let version: i64 = upgraded.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(version, LATEST_VERSION);
        let kept: i64 =
            upgraded.query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get(0))?;
        assert_eq!(kept, 1, "the rewrite keeps every row");
        drop(upgraded);
        let reopened = open_and_migrate(&old_path)?;
        assert!(crate::storage::vacuum::is_incremental(&reopened)?);
        assert!(!crate::storage::vacuum::enable_incremental(&reopened)?);
        Ok(())
    }

    #[test]
    fn the_database_is_snapshotted_before_a_migration() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keyward.db");
        {
            let old = Connection::open(&path)?;
            crate::storage::configure_connection(&old)?;
            old.execute_batch(V1_SCHEMA)?;
            old.execute_batch("PRAGMA user_version = 1")?;
            crate::domain::tenants::repo::ensure_default(&old)?;
        }
        drop(open_and_migrate(&path)?);
        let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("backups"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        assert_eq!(snapshots.len(), 1, "{snapshots:?}");
        let name = snapshots[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("pre-migration-v1-") && n.ends_with(".db")),
            "{name:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&snapshots[0])?.permissions().mode() & 0o777,
                0o600
            );
        }
        let copy = Connection::open(&snapshots[0])?;
        let version: i64 = copy.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(
            version, 1,
            "the copy is the database as it was before migrating"
        );
        // At the latest version nothing is migrated, so nothing is copied.
        drop(open_and_migrate(&path)?);
        assert_eq!(std::fs::read_dir(dir.path().join("backups"))?.count(), 1);
        Ok(())
    }
}
