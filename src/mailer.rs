//! Sending e-mail over SMTP (lettre, on the ring-backed rustls the rest of the server uses),
//! and the outbox worker that drives it. Nothing here decides what to send: the worker asks
//! `service::mail` for due messages, and this module only delivers one message to one SMTP
//! server, with timeouts on the connection and on every exchange.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::mail::SmtpSecurity;
use crate::state::AppState;

/// Where and how to connect, with the password already opened.
#[derive(Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from_address: String,
    pub from_name: Option<String>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One message for one recipient.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

/// Why a message was not accepted.
#[derive(Debug, Clone)]
pub struct SendFailure {
    /// The server refused for good (5xx), or the message cannot be built: retrying is useless.
    pub permanent: bool,
    pub message: String,
}

impl SendFailure {
    fn permanent(message: String) -> Self {
        Self {
            permanent: true,
            message,
        }
    }
    fn transient(message: String) -> Self {
        Self {
            permanent: false,
            message,
        }
    }
}

/// Delivers `mail` through `smtp`; Ok once the server accepted it.
pub async fn send(
    smtp: &Smtp,
    mail: Outgoing<'_>,
    extra_ca_file: Option<&Path>,
    timeout: Duration,
    allow_private: bool,
) -> Result<(), SendFailure> {
    let from = Mailbox::new(
        smtp.from_name.clone(),
        smtp.from_address
            .parse()
            .map_err(|e| SendFailure::permanent(format!("the from address is invalid: {e}")))?,
    );
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| SendFailure::permanent(format!("the recipient is invalid: {e}")))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject)
        .multipart(MultiPart::alternative_plain_html(
            mail.text.to_owned(),
            mail.html.to_owned(),
        ))
        .map_err(|e| SendFailure::permanent(format!("the message cannot be built: {e}")))?;
    let tls = match smtp.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(&smtp.host, extra_ca_file)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(&smtp.host, extra_ca_file)?),
    };
    // The address is checked as webhook targets are (a workspace's settings must not reach
    // inside the server's network), then connected to as checked; TLS still names the host.
    let address = tokio::time::timeout(
        timeout,
        crate::outgoing::resolve(&smtp.host, smtp.port, allow_private),
    )
    .await
    .map_err(|_| SendFailure::transient(format!("resolving {} timed out", smtp.host)))?
    .map_err(|e| {
        SendFailure::transient(e.replace("--webhook-allow-private", "--smtp-allow-private"))
    })?;
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();
    // lettre's timeout bounds each exchange; this bounds the whole conversation.
    match tokio::time::timeout(timeout * 4, transport.send(message)).await {
        Err(_) => Err(SendFailure::transient(format!(
            "the SMTP server {}:{} did not finish in {} s",
            smtp.host,
            smtp.port,
            (timeout * 4).as_secs()
        ))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let text = describe(&e);
            if e.is_permanent() {
                Err(SendFailure::permanent(text))
            } else {
                Err(SendFailure::transient(text))
            }
        }
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}

/// Bundled roots (webpki), the system's, and the operator's extra CA file.
fn tls_parameters(host: &str, extra_ca_file: Option<&Path>) -> Result<TlsParameters, SendFailure> {
    let mut builder =
        TlsParameters::builder(host.to_owned()).certificate_store(CertificateStore::WebpkiRoots);
    for der in system_roots() {
        if let Ok(cert) = Certificate::from_der(der.clone()) {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(file) = extra_ca_file {
        // Read at each use: a renewed CA needs no restart.
        let certs = crate::outgoing::client::extra_cas(file)
            .map_err(|e| SendFailure::transient(e.to_string()))?;
        for der in certs {
            let cert = Certificate::from_der(der.as_ref().to_vec()).map_err(|e| {
                SendFailure::transient(format!("{}: not a certificate: {e}", file.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| SendFailure::transient(format!("TLS setup failed: {e}")))
}

/// The system's roots, read once.
fn system_roots() -> &'static [Vec<u8>] {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect()
    })
}

/// The outbox worker: delivers due messages, one at a time, until the server stops.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.mail_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = crate::service::mail::deliver_due(&state).await {
            tracing::warn!("e-mail outbox: {e}");
        }
    }
}
