//! The client's address, trusted-proxy aware.

use std::net::IpAddr;

use poem::Request;

use crate::config::Config;

/// The client's IP, as [`client_ip`] decided it; set on every API request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn of(req: &Request) -> Option<IpAddr> {
        req.extensions().get::<ClientIp>().map(|c| c.0)
    }
}

/// The socket peer, unless the peer is a configured trusted proxy: then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(req: &Request, config: &Config) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip())?;
    if !config.trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !config.trusted_proxies.contains(ip))
            .unwrap_or(peer),
    )
}
