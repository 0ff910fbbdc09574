//! The scale half of DESIGN.md's performance budget: with 1,000,000 licenses in the database,
//! cold start to healthy, idle memory, the release binary's size, and admin list/search
//! latency per page; with 1,000,000 audit events of the last 30 days beside them (a vendor
//! whose apps validate about once every 2.5 s), the log view, a key's page and the dashboard.
//!
//! ```text
//! cargo build --release && cargo run --release --example scale
//! cargo run --release --example scale -- --licenses 200000
//! ```
//!
//! The licenses are written straight into a fresh data directory (one transaction), then the
//! release binary `target/release/keyward` is started on it: the time until `/api/health`
//! answers 200 is the cold start, `VmRSS` of the idle process its memory. The list and search
//! figures are measured against that process over loopback, as an operator's browser would.

use std::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use keyward::crypto::MasterKey;
use keyward::domain::licenses::LicenseType;
use keyward::domain::products::{self, KeyFormat, NewProduct, ProductType};
use keyward::domain::{audit, tenants};
use keyward::storage;

const COLD_START_BUDGET_MS: f64 = 200.0;
const RSS_BUDGET_MB: f64 = 30.0;
const BINARY_BUDGET_MB: f64 = 30.0;
const PAGE_BUDGET_MS: f64 = 50.0;

#[derive(Parser, Debug)]
struct Args {
    /// Licenses in the database.
    #[arg(long, default_value_t = 1_000_000)]
    licenses: u64,
    /// One license in this many has a bound machine (HWID).
    #[arg(long, default_value_t = 10)]
    activated_every: u64,
    /// Audit events, spread over the last 30 days (mostly validations).
    #[arg(long, default_value_t = 1_000_000)]
    audit_events: u64,
    /// The server binary to measure (default: target/release/keyward). A debug build gives
    /// upper bounds of the list and search figures only.
    #[arg(long)]
    binary: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let binary = args.binary.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/keyward")
    });
    if !binary.exists() {
        return Err("build the server first: cargo build --release".into());
    }
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let product_id = fill(dir.path(), args.licenses, args.activated_every)?;
    // The newest audit event's time: the dashboard counts the last 30 days from now.
    let now = keyward::domain::now_ms();
    fill_audit(dir.path(), args.licenses, args.audit_events, now)?;
    println!(
        "filled {} licenses and {} audit events in {:.1} s",
        args.licenses,
        args.audit_events,
        t.elapsed().as_secs_f64()
    );

    let port = free_port()?;
    let started = Instant::now();
    let mut server = Command::new(&binary)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("KEYWARD_RATE_LIMIT_PER_IP", "0")
        .env("KEYWARD_RATE_LIMIT_LOGIN", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let cold_start = wait_healthy(port, started)?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_mb = rss_mb(&server)?;
    let binary_mb = std::fs::metadata(&binary)?.len() as f64 / 1_048_576.0;

    let token = setup_operator(&binary, dir.path(), port)?;
    let auth = format!("Bearer {token}");
    let pages: &[(&str, String)] = &[
        ("first page, 50 keys", "/api/keys?limit=50".into()),
        ("page 1000", "/api/keys?limit=50&page=1000".into()),
        (
            "by project + status",
            format!("/api/keys?projectId={product_id}&status=ACTIVE&limit=50"),
        ),
        ("by plan", "/api/keys?plan=MONTHLY&limit=50".into()),
        (
            "search key prefix",
            "/api/keys?search=SC-0004&limit=50".into(),
        ),
        (
            "search HWID prefix",
            "/api/keys?search=hwid-00077&limit=50".into(),
        ),
        (
            "search note text (11 % match)",
            "/api/keys?search=batch-7&limit=50".into(),
        ),
        (
            "search note text (1.1 % match)",
            "/api/keys?search=batch-99&limit=50".into(),
        ),
        (
            "search note text (0.1 % match)",
            "/api/keys?search=batch-999&limit=50".into(),
        ),
        (
            "search customer e-mail",
            "/api/keys?search=customer-777777@example.com&limit=50".into(),
        ),
        (
            "search customer name (0.1 %)",
            "/api/keys?search=Customer%20Name%20777x&limit=50".into(),
        ),
        (
            "search order id",
            "/api/keys?search=ORD-0555555&limit=50".into(),
        ),
        (
            "search e-mail domain (all)",
            "/api/keys?search=example.com&limit=50".into(),
        ),
        ("log: first page", "/api/logs?limit=50".into()),
        ("log: page 100", "/api/logs?limit=50&page=100".into()),
        (
            "log: one key's events",
            format!(
                "/api/logs?keyId={}&limit=50",
                audited_license(7, args.licenses)
            ),
        ),
        (
            "log: a rare action",
            "/api/logs?action=license.revoke&limit=50".into(),
        ),
        (
            "log: action prefix",
            "/api/logs?action=license.&limit=50".into(),
        ),
        (
            "log: project, one hour",
            format!(
                "/api/logs?projectId={product_id}&from={}&to={}&limit=50",
                rfc3339(now - 10 * DAY_MS),
                rfc3339(now - 10 * DAY_MS + 3_600_000)
            ),
        ),
        (
            "key page with its logs",
            format!("/api/keys/{}", audited_license(7, args.licenses)),
        ),
        ("dashboard figures", "/api/stats".into()),
        (
            "dashboard, one project",
            format!("/api/stats?projectId={product_id}"),
        ),
    ];
    let mut rows = Vec::new();
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let status = http_get(port, path, Some(&auth))?;
            if status != 200 {
                return Err(format!("{path} answered {status}").into());
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        rows.push((name, times[times.len() / 2]));
    }
    server.kill()?;
    server.wait()?;

    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!();
    println!("Keyward scale figures ({} licenses)", args.licenses);
    println!(
        "  cold start to healthy   {cold_start:8.1} ms   budget ≤ {COLD_START_BUDGET_MS} ms   {}",
        verdict(cold_start <= COLD_START_BUDGET_MS)
    );
    println!(
        "  idle RSS                {rss_mb:8.1} MB   budget ≤ {RSS_BUDGET_MB} MB    {}",
        verdict(rss_mb <= RSS_BUDGET_MB)
    );
    println!(
        "  release binary          {binary_mb:8.1} MB   budget ≤ {BINARY_BUDGET_MB} MB    {}",
        verdict(binary_mb <= BINARY_BUDGET_MB)
    );
    let mut all_ok = cold_start <= COLD_START_BUDGET_MS
        && rss_mb <= RSS_BUDGET_MB
        && binary_mb <= BINARY_BUDGET_MB;
    for (name, ms) in &rows {
        let ok = *ms <= PAGE_BUDGET_MS;
        all_ok &= ok;
        println!(
            "  admin page: {name:<31} {ms:8.1} ms (median of 5)   budget ≤ {PAGE_BUDGET_MS} ms   {}",
            verdict(ok)
        );
    }
    if !all_ok {
        std::process::exit(1);
    }
    Ok(())
}

/// A data directory with one product and `n` licenses (every `every`-th with a machine).
fn fill(dir: &Path, n: u64, every: u64) -> Result<String, Box<dyn Error>> {
    let master = MasterKey::load_or_create(dir)?;
    let mut conn = storage::open_and_migrate(&storage::database_path(dir))?;
    let tenant =
        tenants::repo::find_by_slug(&conn, tenants::DEFAULT_SLUG)?.ok_or("no default tenant")?;
    let product = products::create(
        &conn,
        &master,
        &tenant.id,
        NewProduct {
            name: "Scale".into(),
            slug: "scale".into(),
            product_type: ProductType::Desktop,
            default_license_type: LicenseType::Subscription,
            default_max_activations: 1,
            key_format: KeyFormat::parse("XXXX-XXXX-XXXX-XXXX")?,
            heartbeat: None,
            entitlements: Vec::new(),
        },
    )?;
    // Bulk load: durability does not matter for a throw-away fixture.
    conn.execute_batch("PRAGMA synchronous = OFF")?;
    let tx = conn.transaction()?;
    {
        let mut lic = tx.prepare(
            "INSERT INTO licenses (id, tenant_id, product_id, license_key, license_type, tier, status,
                max_activations, max_sessions, plan, plan_days, note, created_at, updated_at,
                customer_email, customer_name, order_id)
             VALUES (?1, ?2, ?3, ?4, 'SUBSCRIPTION', 'PERSONAL', ?5, 1, 1, ?6, ?7, ?8, ?9, ?9,
                ?10, ?11, ?12)",
        )?;
        let mut act = tx.prepare(
            "INSERT INTO activations (id, tenant_id, license_id, machine_id, activated_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?;
        let plans = ["DAILY", "WEEKLY", "MONTHLY", "LIFETIME"];
        let statuses = ["ACTIVE", "ACTIVE", "ACTIVE", "BANNED", "REVOKED"];
        let base = 1_700_000_000_000i64;
        for i in 0..n {
            let id = format!("lic_{i:020}");
            let plan = plans[(i % 4) as usize];
            let days = match plan {
                "DAILY" => Some(1),
                "WEEKLY" => Some(7),
                "MONTHLY" => Some(30),
                _ => None,
            };
            lic.execute(rusqlite::params![
                id,
                tenant.id,
                product.id,
                format!("SC-{i:08}-{:04X}", i % 65_536),
                statuses[(i % 5) as usize],
                plan,
                days,
                format!("batch-{}", i % 1000),
                base + i as i64,
                format!("customer-{i}@example.com"),
                format!("Customer Name {}x", i % 1000),
                format!("ORD-{i:07}"),
            ])?;
            if i % every == 0 {
                act.execute(rusqlite::params![
                    format!("act_{i:020}"),
                    tenant.id,
                    id,
                    format!("hwid-{i:08}"),
                    base + i as i64
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(product.id)
}

const DAY_MS: i64 = 86_400_000;

/// The license that audit event `i` names (spread over every license).
fn audited_license(i: u64, licenses: u64) -> String {
    format!("lic_{:020}", (i * 7919) % licenses.max(1))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `n` audit events over the last 30 days, newest now: validations of every license (one in
/// 100 refused), an activation in 50, a revocation in 100,000, each counted for the dashboard as
/// the server counts them.
fn fill_audit(dir: &Path, licenses: u64, n: u64, now: i64) -> Result<(), Box<dyn Error>> {
    let mut conn = storage::open_and_migrate(&storage::database_path(dir))?;
    let tenant =
        tenants::repo::find_by_slug(&conn, tenants::DEFAULT_SLUG)?.ok_or("no default tenant")?;
    let product_id: String = conn.query_row("SELECT id FROM products LIMIT 1", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous = OFF")?;
    let step = (30 * DAY_MS - 60_000) / n.max(1) as i64;
    let tx = conn.transaction()?;
    // As the server's writer does: each row, and its day's counts for the dashboard.
    let mut counts = audit::daily::DailyCounts::default();
    for i in 0..n {
        let (action, detail) = if i % 100_000 == 99_999 {
            ("license.revoke", r#"{"reason":"chargeback"}"#)
        } else if i % 50 == 0 {
            ("license.activate", r#"{"machines":1}"#)
        } else if i % 100 == 1 {
            ("license.validate", r#"{"code":"EXPIRED"}"#)
        } else {
            ("license.validate", r#"{"code":"VALID"}"#)
        };
        let event = audit::AuditEvent {
            tenant_id: tenant.id.clone(),
            at: now - (n - i) as i64 * step,
            actor: "api_key:scale".into(),
            action: action.into(),
            product_id: Some(product_id.clone()),
            license_id: Some(audited_license(i, licenses)),
            machine_id: Some(format!("hwid-{:08}", (i * 7919) % licenses.max(1))),
            ip: Some("198.51.100.7".into()),
            detail: Some(detail.into()),
        };
        audit::repo::insert_row(&tx, &event)?;
        counts.add(event);
    }
    counts.write(&tx)?;
    tx.commit()?;
    Ok(())
}

fn free_port() -> Result<u16, Box<dyn Error>> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_healthy(port: u16, started: Instant) -> Result<f64, Box<dyn Error>> {
    while started.elapsed() < Duration::from_secs(30) {
        if http_get(port, "/api/health", None).ok() == Some(200) {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err("the server did not become healthy within 30 s".into())
}

fn rss_mb(child: &Child) -> Result<f64, Box<dyn Error>> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// The first operator, made with a setup token from `keyward admin setup-url`, logged in.
fn setup_operator(
    binary: &std::path::Path,
    data_dir: &std::path::Path,
    port: u16,
) -> Result<String, Box<dyn Error>> {
    let out = Command::new(binary)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["admin", "setup-url"])
        .output()?;
    let url = String::from_utf8(out.stdout)?;
    let setup_token = url
        .trim()
        .split_once("token=")
        .ok_or("no setup URL from `keyward admin setup-url`")?
        .1;
    let body = r#"{"email":"scale@example.com","password":"scale test password"}"#;
    let setup = serde_json::json!({"email": "scale@example.com",
        "password": "scale test password", "setupToken": setup_token})
    .to_string();
    http_post(port, "/api/auth/register", &setup)?;
    let answer = http_post(port, "/api/auth/login", body)?;
    let json: serde_json::Value = serde_json::from_str(&answer)?;
    Ok(json["data"]["token"].as_str().ok_or("no token")?.to_owned())
}

fn request(port: u16, raw: String) -> Result<(u16, String), Box<dyn Error>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn http_get(port: u16, path: &str, auth: Option<&str>) -> Result<u16, Box<dyn Error>> {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let raw = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    Ok(request(port, raw)?.0)
}

fn http_post(port: u16, path: &str, body: &str) -> Result<String, Box<dyn Error>> {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Ok(request(port, raw)?.1)
}
