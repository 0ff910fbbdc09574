//! The plain-HTTP listener (`--http-redirect-bind`): it answers HTTP-01 challenges and sends
//! everything else to the same host and path over HTTPS. It serves no API and sets no cookie.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::{Endpoint, Request, Response};

use super::Certificates;

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Builds the listener's endpoint; `https_port` is the main listener's port.
pub fn endpoint(
    certificates: Arc<Certificates>,
    https_port: u16,
) -> impl Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |req: Request| answer(&req, &certificates, https_port))
}

fn answer(req: &Request, certificates: &Certificates, https_port: u16) -> Response {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match certificates.http_challenge(token) {
            Some(key_authorization) => Response::builder()
                .content_type("application/octet-stream")
                .body(key_authorization),
            None => plain(StatusCode::NOT_FOUND, "no such challenge"),
        };
    }
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_without_port)
    else {
        return plain(StatusCode::BAD_REQUEST, "a Host header is required");
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let rest = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // 308 keeps the method and body of a POST; browsers treat it like 301 for GET.
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, format!("https://{host}{port}{rest}"))
        .content_type("text/plain; charset=utf-8")
        .body("this server answers over HTTPS")
}

/// The host part of a Host header, refusing anything that is not a plain name or address (a
/// header must not inject a path or credentials into the redirect).
fn host_without_port(value: &str) -> Option<&str> {
    let host = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        &value[..end + 2]
    } else {
        value.split(':').next()?
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(host)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn hosts_keep_only_their_name() {
        assert_eq!(host_without_port("example.com"), Some("example.com"));
        assert_eq!(host_without_port("example.com:80"), Some("example.com"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("evil.com/x"), None);
        assert_eq!(host_without_port("a@b"), None);
        assert_eq!(host_without_port(""), None);
    }
}
