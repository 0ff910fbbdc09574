//! E-mail to customers: SMTP settings, the outbox and its worker, message templates, against a
//! real SMTP server (aiosmtpd, `tests/fixtures/smtp_server.py`) over plain SMTP, STARTTLS and
//! implicit TLS with a private CA.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use keyward::config::Config;
use keyward::domain::api_keys::Scope;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use reqwest::Method;
use serde_json::{Value, json};

/// A running aiosmtpd; each accepted message is one JSON line of its output file.
pub struct SmtpServer {
    child: Child,
    out: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// Plain SMTP on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(), &[])
    }

    pub fn start_on(port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("messages.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (aiosmtpd is installed by test.sh)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY", "the SMTP server started");
        Self {
            child,
            out,
            port,
            _dir: dir,
        }
    }

    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to 20 s) until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} message(s) expected, got {:?}", self.messages());
    }
}

/// Settings for fast tests: plaintext to loopback allowed, retries after 1 s, a public URL.
pub fn mail_config(c: &mut Config) {
    c.smtp_allow_plaintext = true;
    c.mail_retry_base = Duration::from_millis(500);
    c.mail_poll_interval = Duration::from_millis(100);
    c.public_url = Some("https://licenses.example.com".into());
}

pub struct MailFixture {
    pub srv: TestServer,
    pub admin: Admin,
    /// A FULL_ADMIN API key of the default tenant (the vendor API).
    pub key: String,
}

impl MailFixture {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let srv = TestServer::start_with(|c| {
            mail_config(c);
            tune(c);
        })
        .await;
        let admin = setup_admin(&srv).await;
        let key = srv.create_api_key("default", Scope::FullAdmin, None);
        Self { srv, admin, key }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        send(
            &self.srv,
            method,
            path,
            Cred::Bearer(&self.admin.token),
            body,
            &[],
        )
        .await
    }

    /// Saves plain-SMTP settings for `port` on 127.0.0.1.
    pub async fn smtp_settings(&self, port: u16) {
        let a = self
            .admin(
                Method::PUT,
                "/api/mail/settings",
                Some(json!({
                    "host": "127.0.0.1", "port": port, "security": "none",
                    "fromAddress": "licenses@acme.example", "fromName": "Acme Licensing",
                })),
            )
            .await;
        assert_status(&a, 200);
    }

    pub async fn outbox(&self) -> Vec<Value> {
        let a = self.admin(Method::GET, "/api/mail/outbox", None).await;
        assert_status(&a, 200);
        a.body["data"]["messages"].as_array().unwrap().clone()
    }

    /// Waits (up to 20 s) until the outbox's newest message satisfies `done`.
    pub async fn wait_outbox(&self, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(m) = self.outbox().await.first()
                && done(m)
            {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("outbox never got there: {:?}", self.outbox().await);
    }
}

// ---- delivery ---------------------------------------------------------------------------

#[tokio::test]
async fn the_key_arrives_once_with_its_headers_and_both_parts() {
    let f = MailFixture::start().await;
    let smtp = SmtpServer::start();
    f.smtp_settings(smtp.port).await;
    let product = f.srv.create_product("default", "ace");
    let license = f
        .srv
        .create_license(
            &f.key,
            &product.id,
            json!({"customerEmail": "Ana@Example.com", "customerName": "Ana <Lovelace>"}),
        )
        .await;
    let id = str_field(&license, "id");
    let a = f
        .admin(Method::POST, &format!("/api/keys/{id}/send"), None)
        .await;
    assert_status(&a, 202);
    let messages = smtp.wait_for(1).await;
    let m = &messages[0];
    assert_eq!(m["from"], "Acme Licensing <licenses@acme.example>");
    assert_eq!(m["to"], "ana@example.com");
    assert_eq!(m["rcptTos"], json!(["ana@example.com"]));
    assert_eq!(m["subject"], "Your license key for Product ace");
    assert_eq!(m["contentType"], "multipart/alternative");
    let key = str_field(&license, "key");
    let text = str_field(m, "text");
    let html = str_field(m, "html");
    assert!(text.contains(key), "{text}");
    assert!(text.contains("Hello Ana <Lovelace>,"), "{text}");
    assert!(
        text.contains("https://licenses.example.com/p/ace"),
        "{text}"
    );
    assert!(html.contains(key), "{html}");
    assert!(
        html.contains("Ana &lt;Lovelace&gt;"),
        "escaped in HTML: {html}"
    );
    assert!(
        html.contains("href=\"https://licenses.example.com/p/ace\""),
        "{html}"
    );
    // Sent once: the worker keeps polling, nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1);
    let sent = &f.outbox().await[0];
    assert_eq!(sent["status"], "SENT");
    assert_eq!(sent["attempts"], 1);
    assert_eq!(sent["kind"], "LICENSE_DELIVERED");
    assert_eq!(sent["keyId"], id);
    assert!(sent["sentAt"].is_string());
    // Sent is final: a retry by hand is refused, nothing is sent twice.
    let retry = f
        .admin(
            Method::POST,
            &format!("/api/mail/outbox/{}/retry", str_field(sent, "id")),
            None,
        )
        .await;
    assert_kv_error(&retry, 409, "CONFLICT");
    // The operator's action is audited.
    assert_eq!(
        f.srv.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'mail.send' AND license_id = ?1",
            [id]
        ),
        1
    );
}

#[tokio::test]
async fn a_key_without_a_customer_email_or_of_another_tenant_is_not_sent() {
    let f = MailFixture::start().await;
    let product = f.srv.create_product("default", "ace");
    let no_email = f.srv.create_license(&f.key, &product.id, json!({})).await;
    f.srv
        .db()
        .execute(
            "UPDATE licenses SET customer_email = NULL WHERE id = ?1",
            [str_field(&no_email, "id")],
        )
        .unwrap();
    let a = f
        .admin(
            Method::POST,
            &format!("/api/keys/{}/send", str_field(&no_email, "id")),
            None,
        )
        .await;
    assert_kv_error_naming(&a, 400, "VALIDATION_ERROR", "customer e-mail");
    let unknown = f.admin(Method::POST, "/api/keys/lic_nope/send", None).await;
    assert_kv_error(&unknown, 404, "NOT_FOUND");
    f.srv.create_tenant("other");
    let theirs = f.srv.create_product("other", "theirs");
    let their_key = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let their_license = f
        .srv
        .create_license(&their_key, &theirs.id, json!({}))
        .await;
    let ours = f.srv.create_license(&f.key, &product.id, json!({})).await;
    // An API key of another tenant, and one restricted to another product: 404.
    let restricted = f.srv.create_api_key(
        "default",
        Scope::FullAdmin,
        Some(&f.srv.create_product("default", "b").id),
    );
    for (key, license) in [
        (&their_key, &ours),
        (&restricted, &ours),
        (&f.key, &their_license),
    ] {
        let a = send(
            &f.srv,
            Method::POST,
            &format!("/api/keys/{}/send", str_field(license, "id")),
            Cred::ApiKey(key),
            None,
            &[],
        )
        .await;
        assert_kv_error(&a, 404, "NOT_FOUND");
    }
    assert_eq!(f.srv.count("SELECT COUNT(*) FROM mail_outbox", []), 0);
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_until_it_is_up() {
    let f = MailFixture::start().await;
    let port = free_port();
    f.smtp_settings(port).await;
    let a = f
        .admin(
            Method::POST,
            "/api/mail/test",
            Some(json!({"to": "ops@acme.example"})),
        )
        .await;
    assert_status(&a, 202);
    let failed = f.wait_outbox(|m| m["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(failed["status"], "PENDING", "retried, not given up");
    assert!(failed["lastError"].is_string(), "{failed}");
    assert!(failed["nextAttemptAt"].is_string(), "{failed}");
    let smtp = SmtpServer::start_on(port, &[]);
    let m = &smtp.wait_for(1).await[0];
    assert_eq!(m["subject"], "Keyward test e-mail");
    assert!(str_field(m, "text").contains("licenses@acme.example"));
    let sent = f.wait_outbox(|m| m["status"] == "SENT").await;
    assert!(sent["attempts"].as_u64().unwrap() >= 2, "{sent}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(smtp.messages().len(), 1, "sent once");
}

/// A workspace's SMTP host is checked as webhook targets are: without the server's
/// `--smtp-allow-private` a loopback or private address is never connected to, even with TLS.
#[tokio::test]
async fn an_smtp_host_inside_the_network_needs_the_servers_opt_in() {
    let f = MailFixture::start_with(|c| {
        c.smtp_allow_plaintext = false;
        c.smtp_allow_private = false;
    })
    .await;
    let smtp = SmtpServer::start();
    let a = f
        .admin(
            Method::PUT,
            "/api/mail/settings",
            Some(
                json!({"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
                        "fromAddress": "licenses@acme.example"}),
            ),
        )
        .await;
    assert_status(&a, 200);
    let a = f
        .admin(
            Method::POST,
            "/api/mail/test",
            Some(json!({"to": "ops@acme.example"})),
        )
        .await;
    assert_status(&a, 202);
    let failed = f.wait_outbox(|m| m["attempts"].as_u64() >= Some(1)).await;
    assert!(
        str_field(&failed, "lastError").contains("--smtp-allow-private"),
        "{failed}"
    );
    assert!(smtp.messages().is_empty(), "nothing reached the server");
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_and_a_permanent_one_is_given_up() {
    let f = MailFixture::start().await;
    let smtp = SmtpServer::start_on(free_port(), &["--fail-first", "1"]);
    f.smtp_settings(smtp.port).await;
    f.admin(
        Method::POST,
        "/api/mail/test",
        Some(json!({"to": "a@acme.example"})),
    )
    .await;
    assert_eq!(smtp.wait_for(1).await.len(), 1);
    let sent = f.wait_outbox(|m| m["status"] == "SENT").await;
    assert_eq!(sent["attempts"], 2, "451 first, then accepted: {sent}");

    let rejecting = SmtpServer::start_on(free_port(), &["--reject"]);
    f.smtp_settings(rejecting.port).await;
    f.admin(
        Method::POST,
        "/api/mail/test",
        Some(json!({"to": "b@acme.example"})),
    )
    .await;
    let failed = f.wait_outbox(|m| m["status"] == "FAILED").await;
    assert_eq!(failed["attempts"], 1, "550 is not retried: {failed}");
    assert!(str_field(&failed, "lastError").contains("550"), "{failed}");
    assert!(failed["nextAttemptAt"].is_null());
    // Retried by hand once the server accepts again.
    f.smtp_settings(smtp.port).await;
    let id = str_field(&failed, "id");
    let a = f
        .admin(Method::POST, &format!("/api/mail/outbox/{id}/retry"), None)
        .await;
    assert_status(&a, 200);
    assert_eq!(a.body["data"]["status"], "PENDING");
    assert_eq!(a.body["data"]["attempts"], 0);
    smtp.wait_for(2).await;
    f.wait_outbox(|m| m["status"] == "SENT").await;
    let unknown = f
        .admin(Method::POST, "/api/mail/outbox/msg_nope/retry", None)
        .await;
    assert_kv_error(&unknown, 404, "NOT_FOUND");

    // Another workspace neither sees nor retries this workspace's messages.
    f.srv.create_tenant("other");
    let theirs = f.srv.create_api_key("other", Scope::FullAdmin, None);
    let a = f
        .srv
        .post(&format!("/api/mail/outbox/{id}/retry"), &theirs, json!({}))
        .await;
    assert_kv_error(&a, 404, "NOT_FOUND");
    for path in [
        "/api/mail/outbox",
        "/api/mail/outbox?recipient=b@acme.example",
    ] {
        let a = f.srv.get(path, &theirs).await;
        assert_status(&a, 200);
        assert_eq!(a.body["data"]["messages"], json!([]), "{path}");
    }
}

#[tokio::test]
async fn a_message_is_given_up_after_its_attempts_and_the_queue_is_measured() {
    let f = MailFixture::start_with(|c| {
        c.mail_max_attempts = 3;
        c.mail_retry_base = Duration::from_secs(1);
        c.metrics.token = Some("mail-metrics-token".into());
    })
    .await;
    // Nothing listens on the port: each attempt fails, then the message is given up.
    f.smtp_settings(free_port()).await;
    f.admin(
        Method::POST,
        "/api/mail/test",
        Some(json!({"to": "c@acme.example"})),
    )
    .await;
    let gauge = |body: &[u8]| {
        String::from_utf8_lossy(body)
            .lines()
            .find(|l| l.starts_with("keyward_outgoing_queue_depth{queue=\"email\"}"))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    };
    let waiting = send(
        &f.srv,
        Method::GET,
        "/metrics",
        Cred::Bearer("mail-metrics-token"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        gauge(&waiting.raw).as_deref(),
        Some("1"),
        "one message waits"
    );
    let failed = f.wait_outbox(|m| m["status"] == "FAILED").await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    let done = send(
        &f.srv,
        Method::GET,
        "/metrics",
        Cred::Bearer("mail-metrics-token"),
        None,
        &[],
    )
    .await;
    assert_eq!(gauge(&done.raw).as_deref(), Some("0"), "none waits");
    let filtered = f
        .admin(
            Method::GET,
            "/api/mail/outbox?status=FAILED&recipient=C@acme.example",
            None,
        )
        .await;
    assert_eq!(
        filtered.body["data"]["pagination"]["total"], 1,
        "{}",
        filtered.body
    );
    let none = f
        .admin(Method::GET, "/api/mail/outbox?status=SENT", None)
        .await;
    assert_eq!(none.body["data"]["pagination"]["total"], 0);
    for bad in [
        "status=LOST",
        "recipient=not-an-address",
        "limit=0",
        "page=0",
    ] {
        let a = f
            .admin(Method::GET, &format!("/api/mail/outbox?{bad}"), None)
            .await;
        assert_kv_error(&a, 400, "VALIDATION_ERROR");
    }
    assert_eq!(
        f.srv.count(
            "SELECT COUNT(*) FROM mail_outbox WHERE status = 'PENDING'",
            []
        ),
        0
    );
}

#[tokio::test]
async fn starttls_and_implicit_tls_trust_a_private_ca_given_by_extra_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = test_ca();
    let (cert, key) = leaf(&issuer);
    let ca_file = dir.path().join("ca.pem");
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let tls_args = |mode: &'static str| -> Vec<String> {
        vec![
            "--mode".into(),
            mode.into(),
            "--cert".into(),
            cert_file.display().to_string(),
            "--key".into(),
            key_file.display().to_string(),
            "--user".into(),
            "mailer".into(),
            "--password".into(),
            "s3cret pass".into(),
        ]
    };
    let ca = ca_file.clone();
    let f = MailFixture::start_with(move |c| c.extra_ca_file = Some(ca)).await;
    for (mode, security) in [("starttls", "starttls"), ("tls", "tls")] {
        let args = tls_args(mode);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let smtp = SmtpServer::start_on(free_port(), &args);
        let a = f
            .admin(
                Method::PUT,
                "/api/mail/settings",
                Some(json!({
                    "host": "localhost", "port": smtp.port, "security": security,
                    "username": "mailer", "password": "s3cret pass",
                    "fromAddress": "licenses@acme.example",
                })),
            )
            .await;
        assert_status(&a, 200);
        assert_eq!(a.body["data"]["passwordSet"], true);
        assert!(a.body["data"].get("password").is_none(), "{}", a.body);
        f.admin(
            Method::POST,
            "/api/mail/test",
            Some(json!({"to": "t@acme.example"})),
        )
        .await;
        f.wait_outbox(|m| m["status"] == "SENT").await;
        let m = &smtp.wait_for(1).await[0];
        assert_eq!(m["tls"], true, "{mode}: {m}");
        assert_eq!(m["authenticated"], true, "{mode}: {m}");
    }
    // The password is stored sealed, not in clear.
    let stored: Vec<u8> = f
        .srv
        .db()
        .query_row("SELECT password_sealed FROM smtp_settings", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("s3cret"));

    // Without the private CA the certificate is not trusted: the message is not sent.
    let g = MailFixture::start().await;
    let args = tls_args("tls");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let smtp = SmtpServer::start_on(free_port(), &args);
    g.admin(
        Method::PUT,
        "/api/mail/settings",
        Some(
            json!({"host": "localhost", "port": smtp.port, "security": "tls",
                    "fromAddress": "licenses@acme.example"}),
        ),
    )
    .await;
    g.admin(
        Method::POST,
        "/api/mail/test",
        Some(json!({"to": "t@acme.example"})),
    )
    .await;
    let failed = g.wait_outbox(|m| m["attempts"].as_u64() >= Some(1)).await;
    assert!(
        str_field(&failed, "lastError")
            .to_lowercase()
            .contains("certificate"),
        "{failed}"
    );
    assert!(smtp.messages().is_empty());
}

fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "keyward mail test CA");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
