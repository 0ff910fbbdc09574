//! HTTPS as an operator runs it: the real `keyward` binary with its own certificate files
//! (replaced while it runs), and with a certificate obtained and renewed by ACME from pebble,
//! Let's Encrypt's test CA (Debian's `pebble` package; `./test.sh` installs it, and this test
//! fails without it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const PEBBLE: &str = "/usr/bin/pebble";

/// Kills the child when the test ends, also when it fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test CA and the issuer of leaf certificates.
fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "keyward test CA");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn leaf(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Starts `keyward serve` with `args`; waits for its banner and returns the child and the
/// address it listens on. Its log goes to `log`.
fn serve(data_dir: &Path, log: &Path, args: &[&str]) -> (Killed, SocketAddr) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .args(args)
        .env("KEYWARD_RATE_LIMIT_PER_IP", "0")
        .env("KEYWARD_RATE_LIMIT_LOGIN", "0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn keyward");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => panic!(
            "keyward printed nothing; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    };
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no https URL in {first:?}"));
    let addr = url.trim_start_matches("https://").parse().unwrap();
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), addr)
}

fn client_config(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A verified TLS connection to `addr` as `localhost`.
async fn connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(client_config(roots))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The leaf certificate the server presented on this connection.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection (any stream: TLS or plain).
async fn exchange<S>(stream: &mut S, method: &str, path: &str, json: Option<&str>) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = json.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut rest = buf[head_end + 4..].to_vec();
    let answer = Answer {
        status,
        headers,
        body: String::new(),
    };
    let length: usize = answer
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .expect("a Content-Length");
    while rest.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the body");
        rest.extend_from_slice(&chunk[..n]);
    }
    Answer {
        body: String::from_utf8_lossy(&rest[..length]).to_string(),
        ..answer
    }
}

/// Polls `f` every 250 ms until it returns `Some`, for at most `limit`; the server's log is
/// shown if it never does.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, log: &Path, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}; the server's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// With its own certificate files, the server speaks HTTPS, sends HSTS and Secure cookies;
/// replaced files are served to new connections while an open keep-alive connection goes on;
/// a broken replacement keeps the last good certificate.
#[tokio::test]
async fn own_certificate_is_served_and_reloaded_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = test_ca();
    let roots = [der(&ca_pem)];
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let (first_cert, first_key) = leaf(&issuer);
    write(&cert_path, &first_cert);
    write(&key_path, &first_key);
    let data = dir.path().join("data");
    let log = dir.path().join("keyward.log");
    let (_server, addr) = serve(
        &data,
        &log,
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--tls-reload-interval",
            "1",
            // The kept-alive connection below waits between its requests.
            "--idle-timeout",
            "60",
            "--header-timeout",
            "60",
        ],
    );

    let mut kept = connect(addr, &roots)
        .await
        .expect("a verified TLS connection");
    assert_eq!(served(&kept), der(&first_cert));
    let health = exchange(&mut kept, "GET", "/api/health", None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        health.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    // Plain HTTP on the TLS port gets no answer, and the server goes on.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut junk = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut junk)).await;
    assert!(!String::from_utf8_lossy(&junk).contains("\"success\""));

    // Cookies over TLS are Secure: the first administrator, then a login.
    let setup = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "setup-url", "--bind", &addr.to_string()])
        .output()
        .unwrap();
    let url = String::from_utf8(setup.stdout).unwrap();
    let token = url.trim().split("token=").nth(1).expect("a setup token");
    let mut session = connect(addr, &roots).await.unwrap();
    let register = exchange(
        &mut session,
        "POST",
        "/api/auth/register",
        Some(&format!(
            r#"{{"email":"ops@example.com","password":"correct horse battery","setupToken":"{token}"}}"#
        )),
    )
    .await;
    assert_eq!(register.status, 201, "{}", register.body);
    let login = exchange(
        &mut session,
        "POST",
        "/api/auth/login",
        Some(r#"{"email":"ops@example.com","password":"correct horse battery"}"#),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookies = login.all("set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("keyward_token=")),
        "{cookies:?}"
    );
    for cookie in &cookies {
        assert!(cookie.contains("; Secure"), "not Secure over TLS: {cookie}");
    }

    // New files: new connections get the new certificate.
    let (second_cert, second_key) = leaf(&issuer);
    write(&key_path, &second_key);
    write(&cert_path, &second_cert);
    wait_for(
        Duration::from_secs(15),
        "the new certificate",
        &log,
        || async {
            let fresh = connect(addr, &roots).await.ok()?;
            (served(&fresh) == der(&second_cert)).then_some(())
        },
    )
    .await;
    // The connection opened before goes on, with the certificate it was opened with.
    let again = exchange(&mut kept, "GET", "/api/health", None).await;
    assert_eq!(again.status, 200);
    assert_eq!(served(&kept), der(&first_cert));

    // A broken replacement keeps the last good certificate, and says why in the log.
    write(
        &cert_path,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = connect(addr, &roots).await.expect("still serving");
    assert_eq!(served(&fresh), der(&second_cert));
    // A key that does not fit the certificate is refused too.
    let (third_cert, _) = leaf(&issuer);
    write(&cert_path, &third_cert);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = connect(addr, &roots).await.expect("still serving");
    assert_eq!(served(&fresh), der(&second_cert));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("does not load") && logged.contains("does not fit"),
        "{logged}"
    );
}

/// A server that cannot read its certificate does not start, and says which file is wrong.
#[test]
fn a_missing_certificate_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

/// pebble on free ports, its validation pointed at keyward's ports: (child, directory URL,
/// management address, the CA file that trusts pebble's own HTTPS).
fn start_pebble(
    dir: &Path,
    tls_port: u16,
    http_port: u16,
) -> (Killed, String, SocketAddr, PathBuf) {
    assert!(
        Path::new(PEBBLE).exists(),
        "{PEBBLE} is missing: install Debian's `pebble` package (./test.sh does)"
    );
    let (ca_pem, issuer) = test_ca();
    let (cert, key) = leaf(&issuer);
    let ca_file = dir.join("pebble-ca.pem");
    write(&ca_file, &ca_pem);
    write(&dir.join("pebble-cert.pem"), &cert);
    write(&dir.join("pebble-key.pem"), &key);
    let port = free_port();
    let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": management.to_string(),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            // Seconds: a short life, so the test sees a renewal (at two thirds of it).
            "certificateValidityPeriod": 24
        }
    });
    let config_path = dir.join("pebble-config.json");
    write(&config_path, &config.to_string());
    let child = Command::new(PEBBLE)
        .arg("-config")
        .arg(&config_path)
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(std::fs::File::create(dir.join("pebble.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pebble");
    let killed = Killed(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pebble did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        killed,
        format!("https://localhost:{port}/dir"),
        management,
        ca_file,
    )
}

/// A certificate from pebble by TLS-ALPN-01 (pebble really connects to keyward's HTTPS port),
/// stored 0600 in the data directory, served and verified against pebble's root, then renewed
/// in the background at two thirds of its (short) life; the plain-HTTP listener redirects.
#[tokio::test]
async fn acme_certificate_is_obtained_from_pebble_served_and_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let https_port = free_port();
    let http_port = free_port();
    let (_pebble, directory, management, pebble_ca) =
        start_pebble(dir.path(), https_port, http_port);
    let data = dir.path().join("data");
    let log = dir.path().join("keyward.log");
    let https_bind = format!("127.0.0.1:{https_port}");
    let http_bind = format!("127.0.0.1:{http_port}");
    let (_server, addr) = serve(
        &data,
        &log,
        &[
            "--bind",
            &https_bind,
            "--acme-domain",
            "localhost",
            "--acme-email",
            "ops@example.com",
            "--acme-directory",
            &directory,
            "--acme-ca-file",
            pebble_ca.to_str().unwrap(),
            "--http-redirect-bind",
            &http_bind,
        ],
    );

    // pebble's issuing root, from its management interface.
    let pebble_trust = [der(&std::fs::read_to_string(&pebble_ca).unwrap())];
    let mut mgmt = connect(management, &pebble_trust)
        .await
        .expect("pebble management");
    let roots = exchange(&mut mgmt, "GET", "/roots/0", None).await;
    assert_eq!(roots.status, 200, "{}", roots.body);
    let root = [der(&roots.body)];

    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let first = wait_for(
        Duration::from_secs(60),
        "an ACME certificate",
        &log,
        || async {
            let stream = connect(addr, &root).await.ok()?;
            Some((served(&stream), stream))
        },
    )
    .await;
    let (first_cert, mut stream) = first;
    let health = exchange(&mut stream, "GET", "/api/health", None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.header("strict-transport-security").is_some());

    #[cfg(unix)]
    for file in ["localhost.crt", "localhost.key", "account.json"] {
        use std::os::unix::fs::PermissionsExt;
        let path = data.join("acme").join(file);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), log_text()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    // The plain-HTTP listener sends browsers to HTTPS, same host and path.
    let mut plain = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let redirect = exchange(&mut plain, "GET", "/p/demo?x=1", None).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://localhost:{https_port}/p/demo?x=1").as_str())
    );

    // Renewal at two thirds of a 24 s life: a new certificate for new connections.
    let renewed = wait_for(
        Duration::from_secs(60),
        "a renewed certificate",
        &log,
        || async {
            let stream = connect(addr, &root).await.ok()?;
            let cert = served(&stream);
            (cert != first_cert).then_some(stream)
        },
    )
    .await;
    let mut renewed = renewed;
    let health = exchange(&mut renewed, "GET", "/api/health", None).await;
    assert_eq!(health.status, 200);
    let stored = std::fs::read_to_string(data.join("acme/localhost.crt")).unwrap();
    assert_eq!(
        der(&stored),
        served(&renewed),
        "the renewed certificate is stored"
    );
    assert!(log_text().contains("obtained"), "{}", log_text());
}

/// The connection limits hold for TLS: a client that connects and never completes its
/// handshake is let go after the header timeout, and the server goes on answering.
#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = test_ca();
    let (cert, key) = leaf(&issuer);
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    write(&cert_path, &cert);
    write(&key_path, &key);
    let log = dir.path().join("keyward.log");
    let (_server, addr) = serve(
        &dir.path().join("data"),
        &log,
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--header-timeout",
            "1",
        ],
    );
    // Silent, and a handshake cut short (the first bytes of a ClientHello).
    for opening in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(opening).await.unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest))
            .await
            .is_ok();
        assert!(closed, "a stalled handshake was kept open");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let mut stream = connect(addr, &[der(&ca_pem)]).await.unwrap();
    let health = exchange(&mut stream, "GET", "/api/health", None).await;
    assert_eq!(health.status, 200);
}

/// HTTP-01: pebble fetches the key authorization from the plain-HTTP listener.
#[tokio::test]
async fn acme_certificate_by_http_01_on_the_redirect_listener() {
    let dir = tempfile::tempdir().unwrap();
    let https_port = free_port();
    let http_port = free_port();
    let (_pebble, directory, management, pebble_ca) =
        start_pebble(dir.path(), https_port, http_port);
    let data = dir.path().join("data");
    let log = dir.path().join("keyward.log");
    let https_bind = format!("127.0.0.1:{https_port}");
    let http_bind = format!("127.0.0.1:{http_port}");
    let (_server, addr) = serve(
        &data,
        &log,
        &[
            "--bind",
            &https_bind,
            "--acme-domain",
            "localhost",
            "--acme-directory",
            &directory,
            "--acme-ca-file",
            pebble_ca.to_str().unwrap(),
            "--acme-challenge",
            "http-01",
            "--http-redirect-bind",
            &http_bind,
        ],
    );
    let pebble_trust = [der(&std::fs::read_to_string(&pebble_ca).unwrap())];
    let mut mgmt = connect(management, &pebble_trust)
        .await
        .expect("pebble management");
    let roots = exchange(&mut mgmt, "GET", "/roots/0", None).await;
    let root = [der(&roots.body)];
    let mut stream = wait_for(
        Duration::from_secs(60),
        "an ACME certificate",
        &log,
        || async { connect(addr, &root).await.ok() },
    )
    .await;
    let health = exchange(&mut stream, "GET", "/api/health", None).await;
    assert_eq!(health.status, 200);
    // An unknown token is not answered.
    let mut plain = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let missing = exchange(&mut plain, "GET", "/.well-known/acme-challenge/nope", None).await;
    assert_eq!(missing.status, 404);
}

/// HTTP-01 without the plain-HTTP listener, or a redirect listener without TLS, cannot work:
/// the server says so and does not start.
#[test]
fn inconsistent_https_flags_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 2] = [
        (
            &[
                "--acme-domain",
                "example.com",
                "--acme-challenge",
                "http-01",
            ],
            "--http-redirect-bind",
        ),
        (&["--http-redirect-bind", "127.0.0.1:0"], "--tls-cert"),
    ];
    for (args, says) in cases {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `keyward healthcheck` speaks HTTPS to a listener that serves it (told by the same settings
/// as `serve`, or finding out itself), and `keyward admin setup-url` prints an https:// URL,
/// on the ACME domain when there is one.
#[tokio::test]
async fn healthcheck_and_setup_url_speak_https_when_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = test_ca();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let (cert, key) = leaf(&issuer);
    write(&cert_path, &cert);
    write(&key_path, &key);
    let cert_arg = cert_path.to_str().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("keyward.log");
    let (_server, addr) = serve(
        &data,
        &log,
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let bind = addr.to_string();
    let keyward = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(&data).args(args);
        for var in ["KEYWARD_TLS_CERT", "KEYWARD_TLS_KEY", "KEYWARD_ACME_DOMAIN"] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (name, args, env) in [
        ("told by --tls-cert", vec!["--tls-cert", cert_arg], vec![]),
        (
            "told by the environment",
            vec![],
            vec![("KEYWARD_TLS_CERT", cert_arg)],
        ),
        ("finding out", vec![], vec![]),
    ] {
        let mut all = vec!["healthcheck", "--bind", &bind];
        all.extend(args);
        let out = keyward(&all, &env);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let setup_url = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["admin", "setup-url"];
        all.extend(args);
        let out = keyward(&all, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let url = setup_url(&["--bind", &bind, "--tls-cert", cert_arg], &[]);
    assert!(
        url.starts_with(&format!("https://{bind}/setup?token=")),
        "{url}"
    );
    let url = setup_url(&["--bind", &bind], &[("KEYWARD_TLS_CERT", cert_arg)]);
    assert!(url.starts_with("https://"), "{url}");
    let url = setup_url(
        &["--bind", "0.0.0.0:443"],
        &[(
            "KEYWARD_ACME_DOMAIN",
            "licenses.example.com,www.example.com",
        )],
    );
    assert!(
        url.starts_with("https://licenses.example.com/setup?token="),
        "{url}"
    );
    let url = setup_url(
        &[
            "--bind",
            "0.0.0.0:8443",
            "--acme-domain",
            "licenses.example.com",
        ],
        &[],
    );
    assert!(
        url.starts_with("https://licenses.example.com:8443/setup?token="),
        "{url}"
    );
    let url = setup_url(&["--bind", "127.0.0.1:3002"], &[]);
    assert!(
        url.starts_with("http://127.0.0.1:3002/setup?token="),
        "{url}"
    );

    // The latest URL's token creates the first administrator, over HTTPS.
    let token = url.split("token=").nth(1).unwrap();
    let mut stream = connect(addr, &[der(&ca_pem)]).await.unwrap();
    let body = format!(
        r#"{{"email":"owner@example.com","password":"correct horse battery","setupToken":"{token}"}}"#
    );
    let a = exchange(&mut stream, "POST", "/api/auth/register", Some(&body)).await;
    assert_eq!(a.status, 201, "{}", a.body);
}
