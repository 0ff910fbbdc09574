//! Hardening: connection timeouts and caps, bounded argon2 memory, private files, start-up
//! checks and operator-facing messages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

#[path = "api/helpers.rs"]
mod helpers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helpers::*;
use keyward::domain::api_keys::Scope;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

fn keyward(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run keyward")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `keyward serve` on a free port with `extra` flags; the child and its address.
fn serve(data_dir: &Path, extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// A new setup token from `keyward admin setup-url` (as an operator gets one in a shell).
fn setup_token(data_dir: &Path) -> String {
    let out = keyward(data_dir, &["admin", "setup-url"]);
    assert!(out.status.success(), "setup-url: {}", stderr(&out));
    let url = String::from_utf8(out.stdout).unwrap();
    url.trim()
        .split_once("/setup?token=")
        .unwrap_or_else(|| panic!("a setup URL: {url:?}"))
        .1
        .to_owned()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (e.g. 408/400) is fine; keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
}

fn short_timeouts(c: &mut keyward::Config) {
    c.connections.header_timeout = Duration::from_secs(2);
    c.connections.body_timeout = Duration::from_secs(2);
    c.connections.idle_timeout = Duration::from_secs(1);
}

/// 2,000 silent connections from one address: the per-address cap refuses those beyond it,
/// the idle timer closes the others, and health answers at once from another address and,
/// within seconds, from the flooding one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_and_closed() {
    let open_files = keyward::net::raise_open_files_limit();
    let s = TestServer::start_with(short_timeouts).await;
    let addr: SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..2000 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            silent.push(c);
        }
    }
    println!(
        "{} of 2000 silent connections opened in {:?} (open-files limit {open_files:?})",
        silent.len(),
        started.elapsed()
    );

    let t = Instant::now();
    let other = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let resp = other.get(format!("{}/api/health", s.url)).send().await;
    println!(
        "health from 127.0.0.2 during the flood: {:?} after {:?}",
        resp.as_ref().map(|r| r.status()),
        t.elapsed()
    );
    assert_eq!(resp.expect("health answers another address").status(), 200);

    let t = Instant::now();
    let mine = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut healthy = false;
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok(r) = mine.get(format!("{}/api/health", s.url)).send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "health from the flooding address 127.0.0.1 answered after {:?}",
        t.elapsed()
    );
    assert!(healthy, "health answers the flooding address within 5 s");

    // Every silent connection has been closed by the server (refused or timed out).
    let t = Instant::now();
    let mut still_open = 0;
    for c in &mut silent {
        if !closed_within(c, Duration::from_secs(4).saturating_sub(t.elapsed())).await {
            still_open += 1;
        }
    }
    println!(
        "silent connections still open after {:?}: {still_open}",
        t.elapsed()
    );
    assert_eq!(still_open, 0, "silent connections are closed");
}

/// A request head sent one byte at a time (slowloris) is cut off by the header timeout.
#[tokio::test]
async fn a_trickled_header_is_cut_off() {
    let s = TestServer::start_with(short_timeouts).await;
    let addr: SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut closed = false;
    while t.elapsed() < Duration::from_secs(8) {
        // Keep the connection busy, never finishing the head.
        if c.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    println!("trickled header closed: {closed} after {:?}", t.elapsed());
    assert!(closed, "a trickled request head is closed");
    assert!(t.elapsed() < Duration::from_secs(6));
}

/// A body that stops arriving ends the request instead of holding the connection.
#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let s = TestServer::start_with(short_timeouts).await;
    let addr: SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let closed = closed_within(&mut c, Duration::from_secs(6)).await;
    println!("stalled body: closed {closed} after {:?}", t.elapsed());
    assert!(closed, "a stalled body is cut off");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Failed logins no longer grow the server's memory: argon2 hashes in two preallocated slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_do_not_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = serve(
        dir.path(),
        &[
            "--rate-limit-per-ip",
            "0",
            "--rate-limit-login",
            "0",
            "--rate-limit-failed-auth",
            "0",
            "--abuse-detection",
            "off",
            // Every login below holds its own connection from 127.0.0.1.
            "--max-connections-per-ip",
            "2000",
        ],
        Stdio::null(),
    );
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let fresh = rss_kib(child.id());
    let r = client
        .post(format!("{base}/api/auth/register"))
        .json(
            &json!({"email": "owner@example.com", "password": "correct horse battery",
            "setupToken": setup_token(dir.path())}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "register: {}", r.status());
    const LOGINS: usize = 400;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..LOGINS {
        let client = client.clone();
        let url = format!("{base}/api/auth/login");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"email": "owner@example.com", "password": format!("wrong password {i}")}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut refused = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == 401 {
            refused += 1;
        }
    }
    let after = rss_kib(child.id());
    println!(
        "RSS fresh {} MB, after {LOGINS} concurrent failed logins {} MB ({:?})",
        fresh / 1024,
        after / 1024,
        t.elapsed()
    );
    stop(child);
    assert_eq!(refused, LOGINS, "every wrong password is refused");
    // Two 19 MiB slots plus the server itself; before the pool it passed 300 MB.
    assert!(after < 150 * 1024, "RSS {after} KiB after failed logins");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Data files are private whatever the umask: the server runs with umask 000 here.
#[cfg(unix)]
#[test]
fn data_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The shell's umask is inherited by keyward.
    let (child, addr) = {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 000; exec {BIN} --data-dir {} serve --bind 127.0.0.1:0",
                data.display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let first = lines.next().unwrap().unwrap();
        std::thread::spawn(move || for _ in lines {});
        let addr = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap()
            .to_owned();
        (child, addr)
    };
    // A write, so the WAL and shared-memory files exist.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    let body = json!({"email": "owner@example.com", "password": "correct horse battery",
        "setupToken": setup_token(&data)})
    .to_string();
    write!(
        c,
        "POST /api/auth/register HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 20"), "{answer}");
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in [
        "keyward.db",
        "keyward.db-wal",
        "keyward.db-shm",
        "master.key",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&data.join("bundles")), 0o700, "bundle store");
    let backup = dir.path().join("copy.db");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {BIN} --data-dir {} backup {}",
            data.display(),
            backup.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&backup), 0o600, "backup file");
    stop(child);
}

/// `--abuse-detection off`, as the README writes it, parses (and the env var still works).
#[test]
fn abuse_detection_flag_takes_on_or_off() {
    let dir = tempfile::tempdir().unwrap();
    for flags in [
        vec!["--abuse-detection", "off"],
        vec!["--abuse-detection", "on"],
        vec!["--abuse-detection=off"],
    ] {
        let (child, _) = serve(dir.path(), &flags, Stdio::null());
        stop(child);
    }
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("KEYWARD_ABUSE_DETECTION", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("listening"), "{first}");
    stop(child);
    let bad = keyward(dir.path(), &["serve", "--abuse-detection", "maybe"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("expected on or off"),
        "{}",
        stderr(&bad)
    );
}

/// A database restored without its master key refuses to start, naming the key to restore.
#[tokio::test]
async fn a_database_without_its_master_key_refuses_to_start() {
    let s = TestServer::start().await;
    s.create_product("default", "app");
    let dir = s.data_dir().to_path_buf();
    // Another installation's key: the database's secrets do not open with it.
    std::fs::write(dir.join("master.key"), [7u8; 32]).unwrap();
    let out = keyward(&dir, &["serve", "--bind", "127.0.0.1:0"]);
    let msg = stderr(&out);
    assert!(!out.status.success(), "must refuse to start");
    assert!(
        msg.contains("master.key") && msg.contains("restore"),
        "names the key to restore: {msg}"
    );
    // Missing altogether: refused too, and no new key is made.
    std::fs::remove_file(dir.join("master.key")).unwrap();
    let out = keyward(&dir, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("master.key is missing"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("master.key").exists(), "no new key was created");
}

/// Without any product, another sealed secret (here an SMTP password) still proves the master
/// key: the wrong key is refused at start.
#[tokio::test]
async fn a_wrong_master_key_is_refused_when_only_an_smtp_password_is_sealed() {
    let s = TestServer::start().await;
    let admin = s.create_api_key("default", Scope::FullAdmin, None);
    let a = s
        .call(
            reqwest::Method::PUT,
            "/api/mail/settings",
            Some(&admin),
            Some(
                json!({"host": "smtp.example.com", "port": 587, "security": "starttls",
                        "username": "u", "password": "p4ss", "fromAddress": "a@acme.example"}),
            ),
        )
        .await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.body);
    let dir = s.data_dir().to_path_buf();
    std::fs::write(dir.join("master.key"), [7u8; 32]).unwrap();
    let out = keyward(&dir, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!out.status.success(), "must refuse to start");
    assert!(
        stderr(&out).contains("does not open the secrets"),
        "{}",
        stderr(&out)
    );
}

/// An operator command run where there is no installation refuses, naming the path; only
/// `serve` and `init` create one.
#[test]
fn operator_commands_do_not_create_an_installation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nowhere");
    for args in [
        &["tenant", "list"][..],
        &["product", "list"],
        &["apikey", "create", "--name", "x", "--scope", "FULL_ADMIN"],
    ] {
        let out = keyward(&data, args);
        assert!(!out.status.success(), "{args:?} must refuse");
        let msg = stderr(&out);
        assert!(
            msg.contains("no Keyward database at") && msg.contains("nowhere"),
            "{args:?}: {msg}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    let out = keyward(&data, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("keyward.db").exists() && data.join("master.key").exists());
    let out = keyward(&data, &["tenant", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A port in use is reported as such, not as a storage failure.
#[test]
fn a_port_in_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = keyward(dir.path(), &["serve", "--bind", &addr]);
    let msg = stderr(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains(&format!("cannot listen on {addr}: address in use")),
        "{msg}"
    );
    assert!(!msg.contains("storage failure"), "{msg}");
}

/// `healthcheck` says why it fails.
#[test]
fn healthcheck_says_why_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = keyward(dir.path(), &["healthcheck", "--bind", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains(&format!("cannot connect to {addr}")), "{msg}");
    // Something that answers, but not healthy.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n{\"database\":\"down\"}");
        }
    });
    let out = keyward(dir.path(), &["healthcheck", "--bind", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("503") && msg.contains("database"), "{msg}");
}

/// Logs written to a pipe carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_are_not_coloured() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = serve(dir.path(), &[], Stdio::piped());
    std::thread::sleep(Duration::from_millis(300));
    let mut child = child;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.is_empty(), "the server logs something at start");
    assert!(!log.contains('\u{1b}'), "no escape codes: {log:?}");
}

/// A server whose stdout reader went away (`keyward | head`, a closed log pipe) keeps serving,
/// and on SIGTERM still commits what is queued and exits cleanly instead of panicking on its
/// last line of output.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(keyward(&data, &["init"]).status.success());
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .to_owned();
    drop(lines); // the reader goes away: every later line hits a closed pipe
    let healthy = Command::new(BIN)
        .args(["healthcheck", "--bind", &addr])
        .output()
        .unwrap();
    assert!(healthy.status.success(), "{}", stderr(&healthy));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}
