//! Cookie-authenticated state changes must come from the page's own origin.

use poem::Request;
use poem::http::Method;

use crate::error::Error;
use crate::state::AppState;

/// Cookies ride along on cross-site requests; state changes made with one must come from the
/// panel's own origin (Sec-Fetch-Site, else Origin against Host).
pub fn refuse_cross_site(req: &Request) -> Result<(), Error> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let cross_site = Error::Forbidden(
        "Cross-site request refused: cookie-authenticated changes must come from the admin panel"
            .into(),
    );
    if let Some(site) = header("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(cross_site),
        };
    }
    if let (Some(origin), Some(host)) = (header("origin"), header("host")) {
        let origin_host = origin.split("://").nth(1).unwrap_or("");
        if origin_host != host {
            return Err(cross_site);
        }
    }
    Ok(())
}

/// HTTPS as seen by the browser: TLS here, or a trusted proxy saying so.
pub fn is_https(req: &Request, state: &AppState) -> bool {
    if req.uri().scheme_str() == Some("https") || *req.scheme() == poem::http::uri::Scheme::HTTPS {
        return true;
    }
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    peer.is_some_and(|p| state.config.trusted_proxies.contains(&p))
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}
