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
#[path = "process/releases.rs"]
mod releases;
#[path = "process/two_factor.rs"]
mod two_factor;

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

/// Runs keyward with `input` on its stdin.
fn keyward_stdin(data_dir: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyward");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("keyward ran")
}

/// Exit code 1 and `fragment` in the error, with nothing on stdout.
fn refused(out: &std::process::Output, fragment: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected a refusal: {err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(fragment), "{fragment:?} not in {err}");
}

async fn login_status(base: &str, email: &str, password: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login sent");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn me_status(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me sent")
        .status()
        .as_u16()
}

/// An install whose only ADMIN forgot the password is recovered from the shell, beside the
/// live server: a new password (from stdin or a file, never argv) ends the old sessions.
#[tokio::test]
async fn admin_commands_recover_a_locked_out_install() {
    let dir = installation();
    let (mut child, base) = serve(dir.path());
    // The first operator, from the shell: no setup URL needed.
    let id = stdout(&keyward_stdin(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "Boss@Example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "correct horse battery\n",
    ));
    assert!(id.starts_with("op_"), "{id}");
    let (status, body) = login_status(&base, "boss@example.com", "correct horse battery").await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&base, &token).await, 200);

    let pw = dir.path().join("new-password");
    std::fs::write(&pw, "a brand new password\n").unwrap();
    let pw_arg = pw.to_str().unwrap();
    stdout(&keyward(
        dir.path(),
        &[
            "admin",
            "reset-password",
            "boss@example.com",
            "--password-file",
            pw_arg,
        ],
    ));
    assert_eq!(me_status(&base, &token).await, 401, "the old session ended");
    let (status, _) = login_status(&base, "boss@example.com", "correct horse battery").await;
    assert_eq!(status, 401, "the old password no longer works");
    let (status, body) = login_status(&base, "boss@example.com", "a brand new password").await;
    assert_eq!(status, 200, "{body}");
    // Logins are limited to 5 a minute: the rest of the test keeps this session.
    let fresh_token = body["data"]["token"].as_str().unwrap().to_owned();

    // A USER in the default tenant, then list, disable and enable it.
    let user = stdout(&keyward_stdin(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "clerk@example.com",
            "--tenant",
            "default",
            "--password-stdin",
        ],
        "clerk password 1\n",
    ));
    let list = stdout(&keyward(dir.path(), &["admin", "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with(&format!("{id}\tboss@example.com\tADMIN\tenabled\t")),
        "{list}"
    );
    assert!(
        lines[1].starts_with(&format!("{user}\tclerk@example.com\tUSER\tenabled\t")),
        "{list}"
    );
    stdout(&keyward(dir.path(), &["admin", "disable", &user]));
    let (status, _) = login_status(&base, "clerk@example.com", "clerk password 1").await;
    assert_eq!(status, 401, "a disabled operator cannot sign in");
    assert!(
        stdout(&keyward(dir.path(), &["admin", "list"]))
            .contains("clerk@example.com\tUSER\tdisabled")
    );
    stdout(&keyward(
        dir.path(),
        &["admin", "enable", "clerk@example.com"],
    ));
    let (status, _) = login_status(&base, "clerk@example.com", "clerk password 1").await;
    assert_eq!(status, 200);

    // The audit trail names the shell.
    let logs = reqwest::Client::new()
        .get(format!("{base}/api/logs?limit=50"))
        .bearer_auth(&fresh_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        logs.contains("\"operator.update\"") && logs.contains("\"actor\":\"cli\""),
        "{logs}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn admin_commands_refuse_bad_input() {
    let dir = installation();
    let d = dir.path();
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "no password source",
            &["admin", "create", "--email", "a@example.com"],
            "",
            "--password-stdin or --password-file",
        ),
        (
            "empty password",
            &[
                "admin",
                "create",
                "--email",
                "a@example.com",
                "--password-stdin",
            ],
            "\n",
            "the password is empty",
        ),
        (
            "short password",
            &[
                "admin",
                "create",
                "--email",
                "a@example.com",
                "--password-stdin",
            ],
            "short\n",
            "8-128 characters",
        ),
        (
            "bad e-mail",
            &[
                "admin",
                "create",
                "--email",
                "not-an-email",
                "--password-stdin",
            ],
            "long enough pw\n",
            "not a valid e-mail",
        ),
        (
            "bad role",
            &[
                "admin",
                "create",
                "--email",
                "a@example.com",
                "--role",
                "ROOT",
                "--password-stdin",
            ],
            "long enough pw\n",
            "--role \"ROOT\" is not one of",
        ),
        (
            "unknown tenant",
            &[
                "admin",
                "create",
                "--email",
                "a@example.com",
                "--tenant",
                "nope",
                "--password-stdin",
            ],
            "long enough pw\n",
            "no tenant \"nope\"",
        ),
        (
            "missing password file",
            &[
                "admin",
                "create",
                "--email",
                "a@example.com",
                "--password-file",
                "/nonexistent/pw",
            ],
            "",
            "cannot read /nonexistent/pw",
        ),
        (
            "unknown operator",
            &[
                "admin",
                "reset-password",
                "ghost@example.com",
                "--password-stdin",
            ],
            "long enough pw\n",
            "no operator \"ghost@example.com\"",
        ),
        (
            "disable unknown",
            &["admin", "disable", "op_nothing"],
            "",
            "no operator \"op_nothing\"",
        ),
    ];
    for (name, args, input, fragment) in cases {
        let out = keyward_stdin(d, args, input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(fragment), "{name}: {fragment:?} not in {err}");
    }
    // A password as an argv value is not even a flag.
    let out = keyward(
        d,
        &[
            "admin",
            "create",
            "--email",
            "a@example.com",
            "--password",
            "secret123",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    // Nothing was created by the refusals; a duplicate e-mail is refused too.
    assert_eq!(stdout(&keyward(d, &["admin", "list"])), "");
    stdout(&keyward_stdin(
        d,
        &[
            "admin",
            "create",
            "--email",
            "a@example.com",
            "--password-stdin",
        ],
        "long enough pw\n",
    ));
    refused(
        &keyward_stdin(
            d,
            &[
                "admin",
                "create",
                "--email",
                "A@example.com",
                "--password-stdin",
            ],
            "long enough pw\n",
        ),
        "exists",
    );
}

/// The license commands go through the same rules as the API: issue, show, renew, revoke
/// (final), list and export; the export's CSV is what import reads.
#[test]
fn license_commands_issue_renew_revoke_and_export() {
    let dir = installation();
    let d = dir.path();
    stdout(&keyward(
        d,
        &[
            "product", "create", "--name", "Shop App", "--slug", "shop-app",
        ],
    ));
    let key = stdout(&keyward(
        d,
        &[
            "license",
            "create",
            "--product",
            "shop-app",
            "--email",
            "ann@example.com",
            "--name",
            "Ann",
            "--order-id",
            "ord-7",
            "--days",
            "30",
            "--max-activations",
            "2",
        ],
    ));
    assert!(
        !key.is_empty() && !key.contains('\n'),
        "the key alone: {key}"
    );
    let shown: Value = serde_json::from_str(&stdout(&keyward(
        d,
        &["license", "show", &key.to_lowercase()],
    )))
    .unwrap();
    assert_eq!(shown["key"], key.as_str());
    assert_eq!(shown["product"], "shop-app");
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["maxActivations"], 2);
    assert_eq!(shown["customerEmail"], "ann@example.com");
    let id = shown["id"].as_str().unwrap().to_owned();

    stdout(&keyward(
        d,
        &["license", "renew", &id, "--until", "2031-02-03"],
    ));
    let shown: Value =
        serde_json::from_str(&stdout(&keyward(d, &["license", "show", &id]))).unwrap();
    assert_eq!(shown["expiresAt"], "2031-02-03T00:00:00Z");

    let list = stdout(&keyward(d, &["license", "list", "--product", "shop-app"]));
    assert!(
        list.starts_with(&format!(
            "{id}\t{key}\tshop-app\tACTIVE\t2031-02-03T00:00:00Z\tann@example.com"
        )),
        "{list}"
    );

    stdout(&keyward(
        d,
        &["license", "revoke", &key, "--reason", "refund"],
    ));
    refused(
        &keyward(d, &["license", "renew", &key, "--days", "5"]),
        "revoked",
    );
    assert!(stdout(&keyward(d, &["license", "list", "--status", "revoked"])).contains(&key));
    assert_eq!(
        stdout(&keyward(d, &["license", "list", "--status", "active"])),
        ""
    );

    let csv = stdout(&keyward(d, &["license", "export", "--format", "csv"]));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "key,product,status,expires_at,max_activations,customer_email,customer_name,order_id,type,tier,entitlements,id,created_at"
    );
    assert!(lines.next().unwrap().starts_with(&format!(
        "{key},shop-app,REVOKED,2031-02-03T00:00:00Z,2,ann@example.com,Ann,ord-7,"
    )));
    let json: Value = serde_json::from_str(&stdout(&keyward(
        d,
        &["license", "export", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["status"], "REVOKED");

    // To a file: created 0600, never over an existing one.
    let file = d.join("export.csv");
    stdout(&keyward(
        d,
        &["license", "export", "-o", file.to_str().unwrap()],
    ));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    refused(
        &keyward(d, &["license", "export", "-o", file.to_str().unwrap()]),
        "cannot create",
    );

    let cases: &[(&str, &[&str], &str)] = &[
        (
            "unknown product",
            &[
                "license",
                "create",
                "--product",
                "nope",
                "--email",
                "a@example.com",
            ],
            "product not found",
        ),
        (
            "bad e-mail",
            &[
                "license",
                "create",
                "--product",
                "shop-app",
                "--email",
                "nope",
            ],
            "not a valid e-mail",
        ),
        (
            "bad type",
            &[
                "license",
                "create",
                "--product",
                "shop-app",
                "--email",
                "a@example.com",
                "--type",
                "FOREVER",
            ],
            "--type \"FOREVER\" is not one of",
        ),
        (
            "past expiry",
            &[
                "license",
                "create",
                "--product",
                "shop-app",
                "--email",
                "a@example.com",
                "--until",
                "2001-01-01",
            ],
            "must be in the future",
        ),
        (
            "bad date",
            &[
                "license",
                "create",
                "--product",
                "shop-app",
                "--email",
                "a@example.com",
                "--until",
                "tomorrow",
            ],
            "neither a date",
        ),
        (
            "zero days",
            &["license", "renew", &id, "--days", "0"],
            "--days must be at least 1",
        ),
        (
            "renew without expiry",
            &["license", "renew", &id],
            "give --until DATE or --days N",
        ),
        (
            "too many machines",
            &[
                "license",
                "create",
                "--product",
                "shop-app",
                "--email",
                "a@example.com",
                "--max-activations",
                "5000",
            ],
            "maxActivations must be 1-1000",
        ),
        (
            "unknown license",
            &["license", "show", "NOPE-NOPE"],
            "license not found",
        ),
        (
            "unknown id",
            &["license", "revoke", "lic_nothing"],
            "license not found",
        ),
        (
            "bad status",
            &["license", "list", "--status", "GONE"],
            "--status \"GONE\" is not one of",
        ),
        (
            "bad format",
            &["license", "export", "--format", "xml"],
            "--format \"xml\" is not one of csv, json",
        ),
        (
            "unknown tenant",
            &["license", "list", "--tenant", "nope"],
            "no tenant \"nope\"",
        ),
    ];
    for (name, args, fragment) in cases {
        let out = keyward(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(fragment), "{name}: {fragment:?} not in {err}");
    }
    assert_eq!(
        stdout(&keyward(d, &["license", "export", "--format", "json"]))
            .matches("\"id\"")
            .count(),
        1,
        "the refusals issued nothing"
    );
}

/// `keyward import`: every row or none, errors named by line, a second import of the same
/// file changes nothing, and imported keys validate like any other.
#[tokio::test]
async fn import_brings_in_existing_keys_all_or_nothing() {
    let dir = installation();
    let d = dir.path();
    stdout(&keyward(
        d,
        &[
            "product",
            "create",
            "--name",
            "Old App",
            "--slug",
            "old-app",
            "--max-activations",
            "4",
        ],
    ));
    stdout(&keyward(
        d,
        &["product", "create", "--name", "Other", "--slug", "other"],
    ));
    let bad = d.join("bad.csv");
    std::fs::write(
        &bad,
        "key,product,customer_email,expires_at,max_activations,status\n\
         GOOD-KEY-0001,old-app,a@example.com,2030-01-01,2,ACTIVE\n\
         GOOD-KEY-0002,nope,,,,\n\
         GOOD-KEY-0003,old-app,not-an-email,,,\n\
         GOOD-KEY-0001,old-app,,,,\n\
         BAD KEY HERE,old-app,,,,\n\
         SHORT,old-app,,,,\n\
         GOOD-KEY-0004,old-app,,,0,\n",
    )
    .unwrap();
    let out = keyward(d, &["import", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for fragment in [
        "nothing was imported",
        "line 3: no product \"nope\"",
        "line 4: customerEmail \"not-an-email\" is not a valid e-mail address",
        "line 5: key GOOD-KEY-0001 is also on line 2",
        "line 6: key \"BAD KEY HERE\" may hold only letters",
        "line 7: key \"SHORT\" must be 10-100 characters",
        "line 8: maxActivations must be 1-1000",
    ] {
        assert!(err.contains(fragment), "{fragment:?} not in {err}");
    }
    assert!(!err.contains("line 2:"), "{err}");
    let parse = d.join("parse.csv");
    std::fs::write(
        &parse,
        "key,product,expires_at,max_activations,status\nP-0001,old-app,soon,,\nP-0002,old-app,,many,\nP-0003,old-app,,,LOST\nP-0004,old-app\n",
    )
    .unwrap();
    let out = keyward(d, &["import", parse.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for fragment in [
        "line 2: expires_at \"soon\"",
        "line 3: max_activations \"many\"",
        "line 4: status \"LOST\"",
        "line 5:",
    ] {
        assert!(err.contains(fragment), "{fragment:?} not in {err}");
    }
    for (name, body, fragment) in [
        (
            "no key column",
            "product,customer_email\nold-app,a@example.com\n",
            "no \"key\" column",
        ),
        (
            "no product column",
            "key\nK-0001\n",
            "no \"product\" column",
        ),
        ("no rows", "key,product\n", "holds no licenses"),
    ] {
        let f = d.join("case.csv");
        std::fs::write(&f, body).unwrap();
        let out = keyward(d, &["import", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(fragment), "{name}: {fragment:?} not in {err}");
    }
    refused(
        &keyward(d, &["import", "/nonexistent.csv"]),
        "cannot open /nonexistent.csv",
    );
    assert_eq!(
        stdout(&keyward(d, &["license", "list"])),
        "",
        "nothing was imported"
    );

    let good = d.join("good.csv");
    std::fs::write(
        &good,
        "key,product,customer_email,customer_name,order_id,expires_at,max_activations,status,legacy_id\n\
         good-key-0001,old-app,a@example.com,\"Doe, Jane\",ord-1,2030-01-01,2,ACTIVE,17\n\
         GOOD-KEY-0002,old-app,b@example.com,,ord-2,2020-01-01,,EXPIRED,18\n\
         GOOD-KEY-0003,,,,,,,SUSPENDED,19\n",
    )
    .unwrap();
    let out = keyward(
        d,
        &["import", good.to_str().unwrap(), "--product", "old-app"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("3 licenses imported, 0 already present"),
        "{err}"
    );
    assert!(err.contains("ignoring unknown columns: legacy_id"), "{err}");
    let out = keyward(
        d,
        &["import", good.to_str().unwrap(), "--product", "old-app"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 licenses imported, 3 already present")
    );
    let first: Value =
        serde_json::from_str(&stdout(&keyward(d, &["license", "show", "GOOD-KEY-0001"]))).unwrap();
    assert_eq!(first["customerName"], "Doe, Jane");
    assert_eq!(first["maxActivations"], 2);
    assert_eq!(first["expiresAt"], "2030-01-01T00:00:00Z");
    let second: Value =
        serde_json::from_str(&stdout(&keyward(d, &["license", "show", "GOOD-KEY-0002"]))).unwrap();
    assert_eq!(second["status"], "EXPIRED");
    assert_eq!(second["maxActivations"], 4, "the product's default");

    // The same key into another product is refused.
    let clash = d.join("clash.csv");
    std::fs::write(&clash, "key,product\nGOOD-KEY-0001,other\n").unwrap();
    refused(
        &keyward(d, &["import", clash.to_str().unwrap()]),
        "line 2: key GOOD-KEY-0001 is already in use by another product",
    );

    // The export of the imported keys imports again as "already present".
    let export = d.join("export.csv");
    stdout(&keyward(
        d,
        &["license", "export", "-o", export.to_str().unwrap()],
    ));
    let out = keyward(d, &["import", export.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 licenses imported, 3 already present")
    );

    // An imported key activates and validates through the vendor API like any other.
    let api_key = stdout(&keyward(
        d,
        &[
            "apikey",
            "create",
            "--name",
            "ci",
            "--scope",
            "VALIDATE_ONLY",
        ],
    ));
    let (mut child, base) = serve(d);
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        &format!("{base}/api/v1/license/activate"),
        &api_key,
        json!({"licenseKey": "good-key-0001", "machineId": "machine-one-0001"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &client,
        &format!("{base}/api/v1/license/validate"),
        &api_key,
        json!({"licenseKey": "GOOD-KEY-0002", "machineId": "machine-one-0001"}),
    )
    .await;
    assert_eq!(
        body["code"].as_str().or(body["error"]["code"].as_str()),
        Some("EXPIRED"),
        "{status} {body}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `keyward doctor`: OK on a fresh install, FAIL (exit 1) with the fix on a broken one.
#[test]
fn doctor_reports_what_to_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = installation();
    let d = dir.path();
    stdout(&keyward(
        d,
        &["product", "create", "--name", "Doc", "--slug", "doc"],
    ));
    let out = keyward(d, &["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{report}");
    for line in [
        "OK    permissions",
        "OK    schema           version ",
        "OK    master key       opens the database's sealed secrets",
        "OK    disk space",
        "OK    TLS certificate  none configured",
        "WARN  backups          no backup in",
    ] {
        assert!(report.contains(line), "{line:?} not in\n{report}");
    }
    assert!(
        report.contains("→ take one with `keyward backup"),
        "{report}"
    );

    // A fresh backup and a certificate valid for 10 days.
    let backups = d.join("backups");
    std::fs::create_dir(&backups).unwrap();
    stdout(&keyward(
        d,
        &["backup", backups.join("one.db").to_str().unwrap()],
    ));
    let cert = d.join("cert.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ed25519",
            "-nodes",
            "-days",
            "10",
            "-subj",
            "/CN=doctor.test",
            "-keyout",
        ])
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (test.sh installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = keyward(d, &["doctor", "--tls-cert", cert.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("WARN  TLS certificate") && report.contains("in 9 days"),
        "{report}"
    );
    assert!(
        report.contains("OK    backups          the newest,"),
        "{report}"
    );
    let not_pem = d.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let out = keyward(d, &["doctor", "--tls-cert", not_pem.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  TLS certificate"));

    // Loose permissions and a master key from another installation: FAIL, exit 1, the fix.
    let key = d.join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let other = installation();
    stdout(&keyward(
        other.path(),
        &["product", "create", "--name", "X", "--slug", "x"],
    ));
    std::fs::copy(other.path().join("master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = keyward(d, &["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL  permissions      readable by others:")
            && report.contains("master.key (644)"),
        "{report}"
    );
    assert!(report.contains("→ chmod 700"), "{report}");
    assert!(
        report.contains("FAIL  master key")
            && report.contains("does not open the database's sealed secrets"),
        "{report}"
    );
    std::fs::remove_file(&key).unwrap();
    let report = String::from_utf8_lossy(&keyward(d, &["doctor"]).stdout).to_string();
    assert!(
        report.contains("FAIL  master key")
            && report.contains("is missing, but the database holds sealed secrets"),
        "{report}"
    );

    // A database newer than the binary, and no installation at all.
    let newer = installation();
    let conn = rusqlite::Connection::open(newer.path().join("keyward.db")).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let out = keyward(newer.path(), &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("FAIL  schema           version 999 is newer")
    );
    let out = keyward(&d.join("nothing-here"), &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  permissions"));
}

/// deploy/keyward.service passes `systemd-analyze verify` (test.sh installs systemd), with its
/// ExecStart pointed at the binary just built, and keeps its hardening.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/keyward.service"
    ))
    .unwrap();
    for line in [
        "User=keyward",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/keyward",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "Restart=on-failure",
        "ExecStart=/usr/local/bin/keyward serve",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line:?} missing from the unit"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("keyward.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/keyward",
            &format!("ExecStart={BIN}"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is missing: test.sh installs Debian's systemd package");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Unknown or misspelled directives are only warnings: any output is a finding.
    let findings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("keyward.service"))
        .collect();
    assert!(findings.is_empty(), "{err}");
}
