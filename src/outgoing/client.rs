//! The one outgoing HTTP client: webhooks (event endpoints and the abuse policy's URL) go out
//! through it. HTTPS is rustls with the ring provider (the crypto backend the server already
//! uses, so the binary keeps exactly one), verifying against the bundled Mozilla roots, the
//! system's roots and `--extra-ca-file` (a private CA). The address is resolved once by
//! [`super::resolve`] (which refuses internal targets unless allowed) and the connection goes
//! to that very address, while SNI and certificate verification use the URL's host name.
//! One request per connection: webhooks are rare enough that a pool would only hold sockets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;

/// Longest URL accepted for an outgoing request.
pub const MAX_URL_LEN: usize = 2048;

/// Timeouts and caps of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub tls_handshake: Duration,
    /// From the first byte sent to the last byte of the answer read.
    pub exchange: Duration,
    /// Bytes of the answer's body read at most; the rest is not waited for.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            tls_handshake: Duration::from_secs(5),
            exchange: Duration::from_secs(10),
            max_body: 64 * 1024,
        }
    }
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The start of the body (at most `Limits::max_body` bytes).
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    allow_private: bool,
    limits: Limits,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("allow_private", &self.allow_private)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The trust anchors: Mozilla's (bundled, so a minimal VPS image without a CA bundle still
/// verifies), the system's, and the operator's extra CA file.
pub fn root_store(extra_ca_file: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(system.certs);
    tracing::debug!("{added} system root certificate(s) trusted for outgoing HTTPS");
    if let Some(path) = extra_ca_file {
        for cert in extra_cas(path)? {
            roots.add(cert).map_err(|e| {
                Error::Invalid(format!(
                    "--extra-ca-file {}: a certificate is not a usable CA: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(roots)
}

/// The certificates of an `--extra-ca-file` (checked at start, so a wrong file stops the
/// server rather than every HTTPS delivery later).
pub fn extra_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            Error::Invalid(format!(
                "--extra-ca-file {}: cannot read it: {e}",
                path.display()
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Invalid(format!(
                "--extra-ca-file {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "--extra-ca-file {}: no CERTIFICATE block in it",
            path.display()
        )));
    }
    Ok(certs)
}

impl HttpClient {
    pub fn new(
        extra_ca_file: Option<&Path>,
        allow_private: bool,
        limits: Limits,
    ) -> Result<Self, Error> {
        let roots = root_store(extra_ca_file)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Storage(format!("TLS client configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            allow_private,
            limits,
        })
    }

    /// POSTs `body` to `url` with `headers`; an error says why no answer came.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let target = Target::parse(url)?;
        let addr = super::resolve(&target.host, target.port, self.allow_private).await?;
        let tcp = tokio::time::timeout(self.limits.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = self.request(&target, headers, body)?;
        if target.https {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{} is not a valid TLS server name: {e}", target.host))?;
            let tls = tokio::time::timeout(self.limits.tls_handshake, self.tls.connect(name, tcp))
                .await
                .map_err(|_| "the TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            self.exchange(tls, request).await
        } else {
            self.exchange(tcp, request).await
        }
    }

    fn request(
        &self,
        target: &Target,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<hyper::Request<Full<Bytes>>, String> {
        let mut req = hyper::Request::post(target.path.as_str())
            .header("host", target.authority.as_str())
            .header("user-agent", concat!("Keyward/", env!("CARGO_PKG_VERSION")))
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        req.body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    async fn exchange<S>(
        &self,
        io: S,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Answer, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let max_body = self.limits.max_body;
        let work = async move {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| format!("HTTP handshake failed: {e}"))?;
            let driver = tokio::spawn(conn);
            let outcome = async {
                let resp = sender
                    .send_request(request)
                    .await
                    .map_err(|e| format!("{e}"))?;
                let status = resp.status().as_u16();
                let mut body = resp.into_body();
                let mut read = Vec::new();
                while read.len() < max_body {
                    match body.frame().await {
                        None => break,
                        Some(Err(e)) => return Err(format!("reading the answer failed: {e}")),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                let room = max_body - read.len();
                                read.extend_from_slice(&data[..data.len().min(room)]);
                            }
                        }
                    }
                }
                Ok(Answer { status, body: read })
            }
            .await;
            // The connection is not reused; a body left unread is not waited for.
            driver.abort();
            outcome
        };
        tokio::time::timeout(self.limits.exchange, work)
            .await
            .map_err(|_| "no answer in time (timed out)".to_owned())?
    }
}

/// A URL taken apart: where to connect, what to name in Host and SNI, what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        check_url(url)?;
        let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let authority = uri
            .authority()
            .ok_or_else(|| "the URL names no host".to_owned())?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self {
            https,
            host,
            port,
            authority: authority.as_str().to_owned(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// An `http://` or `https://` URL with a host, without credentials, at most
/// [`MAX_URL_LEN`] characters. The message completes "the URL …".
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("must be an http:// or https:// URL".into());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || url.chars().any(|c| c.is_whitespace()) {
        return Err("must name a host (https://host[:port]/path), without credentials".into());
    }
    match url.parse::<hyper::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err("is not a valid URL".into()),
    }
}

/// A URL naming an internal address outright is refused when it is set; a host name is
/// checked after resolution at each request ([`super::resolve`]), since DNS can change.
pub fn refuse_internal_literal(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = url
        .parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) if !super::is_public(ip) => Err(format!(
            "points at {ip}, a loopback, private or link-local address; the server refuses \
             those unless started with --webhook-allow-private"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_taken_apart() {
        for (url, ok) in [
            ("https://hooks.example.com/x?y=1", true),
            ("http://127.0.0.1:8080/abuse", true),
            ("https://[::1]:8443/", true),
            ("ftp://example.com", false),
            ("https://", false),
            ("https://user:pw@example.com/", false),
            ("https://exa mple.com/", false),
        ] {
            assert_eq!(check_url(url).is_ok(), ok, "{url}");
        }
        let t = Target::parse("https://hooks.example.com/in?a=1").ok();
        assert_eq!(
            t,
            Some(Target {
                https: true,
                host: "hooks.example.com".into(),
                port: 443,
                authority: "hooks.example.com".into(),
                path: "/in?a=1".into(),
            })
        );
        let t = Target::parse("http://[::1]:9000").ok();
        assert_eq!(
            t.map(|t| (t.host, t.port, t.path)),
            Some(("::1".into(), 9000, "/".into()))
        );
    }

    #[test]
    fn internal_literals_are_refused_unless_allowed() {
        assert!(refuse_internal_literal("http://10.0.0.1/x", false).is_err());
        assert!(refuse_internal_literal("http://[::1]/x", false).is_err());
        assert!(refuse_internal_literal("http://10.0.0.1/x", true).is_ok());
        assert!(refuse_internal_literal("https://hooks.example.com/x", false).is_ok());
    }
}
