//! A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 (plain, or HTTPS with a
//! certificate from a private CA made here with rcgen) that records every request and answers
//! the status it is told to. Deliveries are verified with the Standard Webhooks reference
//! library (`standardwebhooks`, PyPI), as a receiver would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

/// A private CA and the PEM of its certificate, and a leaf for 127.0.0.1 signed by it.
pub struct PrivateCa {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn private_ca() -> PrivateCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Keyward test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone(), ca_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .expect("server config");
    PrivateCa {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

impl Receiver {
    /// A plain-HTTP receiver answering 204.
    pub async fn http() -> Self {
        Self::start(None).await
    }

    /// An HTTPS receiver with `tls`'s certificate, answering 204.
    pub async fn https(tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start(Some(tls)).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(204));
        let (g, s) = (got.clone(), status.clone());
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (g, s, acceptor) = (g.clone(), s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (g, s) = (g.clone(), s.clone());
                        async move { Ok::<_, Infallible>(record(req, &g, &s).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(sock).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(sock), service).await;
                        }
                    }
                });
            }
        });
        Self {
            base: format!("{scheme}://{addr}"),
            got,
            status,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The status later requests are answered with.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits (deliveries are asynchronous) until `done` holds for what arrived, at most 15 s.
    pub async fn wait(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:?}",
                got.iter()
                    .map(|r| (r.path.clone(), r.event_type()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Waits for a request of `event_type` (on `path`, if given).
    pub async fn wait_type(&self, event_type: &str) -> Received {
        let got = self
            .wait(event_type, |got| {
                got.iter().any(|r| r.event_type() == event_type)
            })
            .await;
        got.into_iter()
            .find(|r| r.event_type() == event_type)
            .expect("found")
    }
}

async fn record(
    req: hyper::Request<hyper::body::Incoming>,
    got: &Mutex<Vec<Received>>,
    status: &AtomicU16,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    got.lock().expect("lock").push(Received {
        path,
        headers,
        body,
        at: Instant::now(),
    });
    let code = status.load(Ordering::SeqCst);
    hyper::Response::builder()
        .status(code)
        .body(Full::new(Bytes::from(format!("receiver answered {code}"))))
        .expect("response")
}

/// Verifies each request with `standardwebhooks.Webhook(secret).verify(body, headers)`;
/// returns the verified payloads' types, or the library's error.
pub fn verify_with_standard_webhooks(
    secret: &str,
    items: &[Received],
) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("deliveries.json");
    let list: Vec<Value> = items
        .iter()
        .map(|r| {
            json!({
                "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body),
            })
        })
        .collect();
    std::fs::write(&file, serde_json::to_vec(&list).expect("json")).expect("write");
    let script = r#"
import json, sys
from standardwebhooks import Webhook
wh = Webhook(sys.argv[1])
for item in json.load(open(sys.argv[2])):
    print(wh.verify(item["body"], item["headers"])["type"])
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(&file)
        .output()
        .expect("python3 runs (test.sh installs standardwebhooks)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
