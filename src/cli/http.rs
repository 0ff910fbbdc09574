//! The HTTP(S) client of the remote commands (`keyward release`): hyper with rustls on ring
//! (one crypto backend), the system's roots plus an optional CA file. Bodies stream: a file
//! upload is a multipart body whose file part is read from disk chunk by chunk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Bytes;
use hyper::body::Frame;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::error::Error;

type Body = BoxBody<Bytes, std::io::Error>;

/// Answers larger than this are not ours (a release or artifact is a few KiB).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

pub struct Remote {
    base: String,
    api_key: String,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// A multipart upload: text fields, then the file under `file_field`.
pub struct Upload {
    pub fields: Vec<(&'static str, String)>,
    pub file_field: &'static str,
    pub file: PathBuf,
}

/// A server's answer: its status and JSON body (`Null` when it was not JSON).
pub struct Answer {
    pub status: hyper::StatusCode,
    pub body: Value,
    text: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// Prints why the server refused (its own message) to stderr; the exit code.
    pub fn report(&self) -> i32 {
        let message = self.body["error"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.body["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.text.chars().take(300).collect());
        eprintln!("error: the server answered {}: {message}", self.status);
        1
    }
}

impl Remote {
    pub fn new(server: &str, api_key: &str, ca_cert: Option<&Path>) -> Result<Self, Error> {
        let base = server.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "--server {server:?} must start with http:// or https://"
            )));
        }
        if api_key.trim().is_empty() {
            return Err(Error::Invalid(
                "--api-key (or KEYWARD_API_KEY) is empty".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: a private CA may be all that is needed.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_cert {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::Invalid(format!("{} is not PEM certificates: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::Invalid(format!("{}: unusable certificate: {e}", path.display()))
                })?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Storage(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            base,
            api_key: api_key.trim().to_owned(),
            client,
        })
    }

    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Error> {
        let (content_type, bytes) = match body {
            Some(v) => ("application/json", Bytes::from(v.to_string())),
            None => ("application/json", Bytes::new()),
        };
        let length = bytes.len() as u64;
        let body = Full::new(bytes).map_err(|never| match never {}).boxed();
        self.send(method, path, content_type.to_owned(), length, body)
            .await
    }

    /// Streams `upload` as `multipart/form-data` with a known length.
    pub async fn send_file(&self, path: &str, upload: Upload) -> Result<Answer, Error> {
        let file = tokio::fs::File::open(&upload.file)
            .await
            .map_err(|e| Error::Invalid(format!("cannot open {}: {e}", upload.file.display())))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", upload.file.display())))?
            .len();
        let boundary = format!("keyward-{}", uuid::Uuid::new_v4().simple());
        let mut head = String::new();
        for (name, value) in &upload.fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        let file_name: String = upload
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
            .collect();
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            upload.file_field
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let length = head.len() as u64 + size + tail.len() as u64;
        let chunks = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(tokio_util::io::ReaderStream::with_capacity(
                file,
                256 * 1024,
            ))
            .chain(futures_util::stream::once(
                async move { Ok(Bytes::from(tail)) },
            ))
            .map(|chunk| chunk.map(Frame::data));
        let body = BodyExt::boxed(StreamBody::new(chunks));
        self.send(
            "POST",
            path,
            format!("multipart/form-data; boundary={boundary}"),
            length,
            body,
        )
        .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: String,
        length: u64,
        body: Body,
    ) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.base);
        let request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("X-API-Key", &self.api_key)
            .header("Content-Type", content_type)
            .header("Content-Length", length)
            .header("Accept", "application/json")
            .header("User-Agent", concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .body(body)
            .map_err(|e| Error::Invalid(format!("bad request to {url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Error::Storage(format!("cannot reach {url}: {}", error_chain(&e))))?;
        let status = response.status();
        let mut collected = Vec::new();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Error::Storage(format!("{url}: the answer broke off: {e}")))?;
            if let Ok(data) = frame.into_data() {
                collected.extend_from_slice(&data);
                if collected.len() > MAX_ANSWER_BYTES {
                    return Err(Error::Storage(format!("{url}: the answer is too large")));
                }
            }
        }
        let text = String::from_utf8_lossy(&collected).into_owned();
        let body = serde_json::from_slice(&collected).unwrap_or(Value::Null);
        Ok(Answer { status, body, text })
    }
}

/// An error with its causes, since hyper's own message ("client error (Connect)") hides them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
