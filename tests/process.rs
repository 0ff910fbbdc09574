//! The executable as an operator runs it: subcommands, crash safety, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

fn keyward(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run keyward")
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "keyward failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A temporary directory holding a new installation: operator commands refuse to create one.
fn installation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stdout(&keyward(dir.path(), &["init"]));
    dir
}

#[path = "process/backups.rs"]
mod backups;
#[path = "process/litestream.rs"]
mod litestream;

/// Starts `keyward serve` on a free port; returns the child and its base URL.
fn serve(data_dir: &Path) -> (Child, String) {
    serve_with(data_dir, &[])
}

/// `keyward serve` with more flags.
fn serve_with(data_dir: &Path, flags: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(flags)
        .env("KEYWARD_RATE_LIMIT_PER_IP", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn setup(data_dir: &Path) -> (String, String) {
    let product = stdout(&keyward(
        data_dir,
        &[
            "product",
            "create",
            "--name",
            "Crash App",
            "--slug",
            "crash-app",
            "--max-activations",
            "1",
        ],
    ));
    assert!(
        product.starts_with("prod_"),
        "product id on stdout: {product}"
    );
    let key = stdout(&keyward(
        data_dir,
        &[
            "apikey",
            "create",
            "--name",
            "ci",
            "--scope",
            "CREATE_LICENSE",
        ],
    ));
    assert!(
        key.starts_with("kw_") && !key.contains('\n'),
        "the key alone on stdout: {key}"
    );
    (product, key)
}

async fn post(client: &reqwest::Client, url: &str, key: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn acknowledged_activations_survive_a_kill() {
    let dir = installation();
    let (product, key) = setup(dir.path());
    let (mut child, url) = serve(dir.path());
    let client = reqwest::Client::new();

    let mut licenses = Vec::new();
    for i in 0..40 {
        let (status, body) = post(
            &client,
            &format!("{url}/api/v1/license/create"),
            &key,
            json!({"productId": product, "customerEmail": format!("c{i}@example.com")}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        licenses.push(body["license"]["key"].as_str().unwrap().to_owned());
    }
    // Concurrent activations; remember which were acknowledged.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, license) in licenses.iter().enumerate() {
        let (client, url, key, license) =
            (client.clone(), url.clone(), key.clone(), license.clone());
        tasks.spawn(async move {
            let machine = format!("machine-{i:04}");
            let (status, _) = post(
                &client,
                &format!("{url}/api/v1/license/activate"),
                &key,
                json!({"licenseKey": license, "machineId": machine}),
            )
            .await;
            (license, machine, status)
        });
    }
    let mut acknowledged = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (license, machine, status) = done.unwrap();
        if status == 200 {
            acknowledged.push((license, machine));
        }
    }
    assert_eq!(acknowledged.len(), 40);

    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let (mut child, url) = serve(dir.path());
    for (license, machine) in &acknowledged {
        let (status, body) = post(
            &client,
            &format!("{url}/api/v1/license/validate"),
            &key,
            json!({"licenseKey": license, "machineId": machine}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["code"], "VALID",
            "{license} on {machine} after the crash: {body}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = installation();
    let (mut child, _url) = serve(dir.path());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
}

#[test]
fn healthcheck_reports_the_server_state() {
    let dir = installation();
    let (mut child, url) = serve(dir.path());
    let bind = url.trim_start_matches("http://");
    let ok = keyward(dir.path(), &["healthcheck", "--bind", bind]);
    assert!(ok.status.success(), "healthy server → exit 0");
    child.kill().unwrap();
    child.wait().unwrap();
    let down = keyward(dir.path(), &["healthcheck", "--bind", bind]);
    assert_eq!(down.status.code(), Some(1), "stopped server → exit 1");
}

#[test]
fn first_start_creates_database_and_master_key() {
    let dir = installation();
    let data = dir.path().join("fresh");
    stdout(&keyward(&data, &["init"]));
    let out = keyward(&data, &["tenant", "list"]);
    assert_eq!(stdout(&out).split('\t').nth(1), Some("default"));
    assert!(data.join("keyward.db").exists());
    let master = std::fs::metadata(data.join("master.key")).expect("master key");
    assert_eq!(master.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(master.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn operator_commands_validate_their_input() {
    let dir = installation();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "unknown tenant",
            &[
                "product", "create", "--name", "A", "--slug", "a", "--tenant", "nope",
            ],
            "no tenant \"nope\"",
        ),
        (
            "weak key format",
            &[
                "product",
                "create",
                "--name",
                "A",
                "--slug",
                "a",
                "--key-format",
                "XXXX-XXXX",
            ],
            "at least 16 X",
        ),
        (
            "bad product type",
            &[
                "product", "create", "--name", "A", "--slug", "a", "--type", "TOASTER",
            ],
            "DESKTOP, WEB",
        ),
        (
            "bad slug",
            &["product", "create", "--name", "A", "--slug", "Not A Slug"],
            "slug",
        ),
        (
            "bad scope",
            &["apikey", "create", "--name", "k", "--scope", "GOD"],
            "VALIDATE_ONLY",
        ),
        (
            "unknown product for key",
            &[
                "apikey",
                "create",
                "--name",
                "k",
                "--scope",
                "VALIDATE_ONLY",
                "--product",
                "ghost",
            ],
            "no product \"ghost\"",
        ),
        (
            "revoke unknown key",
            &["apikey", "revoke", "kw_nothere"],
            "no live API key",
        ),
    ];
    for (name, args, fragment) in cases {
        let out = keyward(dir.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: exit code; stderr {err}"
        );
        assert!(
            err.contains(fragment),
            "{name}: stderr {err:?} should contain {fragment:?}"
        );
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
    }
    // Nothing was created by the failed commands.
    let listed = stdout(&keyward(dir.path(), &["product", "list"]));
    assert!(listed.is_empty(), "no products: {listed}");
}

#[test]
fn duplicate_slug_is_refused_and_tenants_separate_slugs() {
    let dir = installation();
    stdout(&keyward(
        dir.path(),
        &["product", "create", "--name", "A", "--slug", "a"],
    ));
    let dup = keyward(
        dir.path(),
        &["product", "create", "--name", "A2", "--slug", "a"],
    );
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists"));
    stdout(&keyward(
        dir.path(),
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
    ));
    stdout(&keyward(
        dir.path(),
        &[
            "product", "create", "--name", "A", "--slug", "a", "--tenant", "acme",
        ],
    ));
}

#[test]
fn apikey_list_and_revoke() {
    let dir = installation();
    let key = stdout(&keyward(
        dir.path(),
        &["apikey", "create", "--name", "ci", "--scope", "READ_ONLY"],
    ));
    let prefix = &key[..11];
    let listed = stdout(&keyward(dir.path(), &["apikey", "list"]));
    assert!(
        listed.contains(prefix) && listed.contains("live"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "the secret is never listed");
    stdout(&keyward(dir.path(), &["apikey", "revoke", prefix]));
    let listed = stdout(&keyward(dir.path(), &["apikey", "list"]));
    assert!(listed.contains("revoked"), "{listed}");
}

#[test]
fn backup_writes_a_consistent_copy() {
    let dir = installation();
    stdout(&keyward(
        dir.path(),
        &["product", "create", "--name", "A", "--slug", "a"],
    ));
    let target = dir.path().join("backup.tar");
    let out = keyward(dir.path(), &["backup", target.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = backups::database_in(&target);
    let copy = rusqlite::Connection::open(copy.path()).unwrap();
    let n: i64 = copy
        .query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // The product's signing keys travel with it (sealed, like the product's own columns).
    let keys: i64 = copy
        .query_row(
            "SELECT COUNT(*) FROM signing_keys k JOIN products p ON p.id = k.product_id
             WHERE k.is_current = 1 AND k.public_key = p.signing_public_key",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, 1);
    let again = keyward(dir.path(), &["backup", target.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing file is never overwritten"
    );
}

#[test]
fn a_newer_database_is_refused() {
    let dir = installation();
    stdout(&keyward(dir.path(), &["tenant", "list"]));
    let db = rusqlite::Connection::open(dir.path().join("keyward.db")).unwrap();
    db.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(db);
    let out = keyward(dir.path(), &["tenant", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 99") && err.contains("upgrade keyward"),
        "{err}"
    );
}

/// The setup URL of a new installation, as `keyward serve` prints it; the child, its base
/// URL and the printed token.
fn serve_printing_setup(data_dir: &Path) -> (Child, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let mut printed = Vec::new();
    let setup = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no setup URL in {printed:#?}"))
            .expect("readable");
        if let Some(at) = line
            .find("http://")
            .filter(|_| line.contains("/setup?token="))
        {
            break line[at..]
                .split_whitespace()
                .next()
                .expect("a URL")
                .to_owned();
        }
        printed.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    let (base, token) = setup.split_once("/setup?token=").expect("a setup URL");
    (child, base.to_owned(), token.to_owned())
}

async fn register(base: &str, email: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery", "setupToken": token}))
        .send()
        .await
        .expect("register sent");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// The first start prints a one-time setup URL (on the address the server listens on);
/// `keyward admin setup-url` prints a new one, which replaces it; the first administrator
/// consumes it, and from then on the command refuses and a restart prints none.
#[tokio::test]
async fn the_printed_setup_url_and_admin_setup_url_create_the_first_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, printed) = serve_printing_setup(dir.path());
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let page = reqwest::get(format!("{base}/setup?token={printed}"))
        .await
        .unwrap();
    assert_eq!(
        page.status().as_u16(),
        200,
        "the setup URL opens the admin panel"
    );

    // The shell's URL names the server's address (--bind, as for healthcheck) and replaces
    // the printed one.
    let bind = base.trim_start_matches("http://");
    let url = stdout(&keyward(
        dir.path(),
        &["admin", "setup-url", "--bind", bind],
    ));
    let (shell_base, fresh) = url.split_once("/setup?token=").expect("a setup URL");
    assert_eq!(shell_base, base);
    assert_ne!(fresh, printed);
    let (status, body) = register(&base, "boss@example.com", &printed).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("SETUP_TOKEN_INVALID")),
        "{body}"
    );
    let (status, body) = register(&base, "boss@example.com", fresh).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["user"]["role"], "ADMIN");

    // Setup is done: no new token from the shell, none printed at the next start.
    let out = keyward(dir.path(), &["admin", "setup-url"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Setup is complete"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let mut banner: Vec<String> = (&mut lines).take(4).map(|l| l.expect("readable")).collect();
    assert!(banner[3].contains("data dir:"), "{banner:#?}");
    // Whatever else the start printed is in the pipe once the server is gone.
    child.kill().unwrap();
    child.wait().unwrap();
    banner.extend(lines.map_while(Result::ok));
    assert!(!banner.iter().any(|l| l.contains("setup")), "{banner:#?}");
}
