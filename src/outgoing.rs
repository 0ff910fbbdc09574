//! Where outgoing requests (webhooks) may go. A webhook URL is chosen by a tenant's operator,
//! who must not reach the server's own network through it: cloud metadata
//! (`169.254.169.254`), a database on `10.0.0.1:6379`, `[::1]:22`. Loopback, private,
//! link-local, unique-local, shared (CGNAT), unspecified, multicast and broadcast addresses are
//! refused, also when a host name resolves to one, unless the operator allows them
//! (`--webhook-allow-private`).

pub mod client;
pub mod webhooks;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// True when `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 100.64.0.0/10, carrier-grade NAT: someone's internal network.
        || (a == 100 && (64..128).contains(&b))
        // 0.0.0.0/8 and 240.0.0.0/4 are not routable.
        || a == 0
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique-local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// The address to connect to for `host:port`: the first one DNS gives, refused when any of them
/// is not public (a name that also resolves inside is not trusted) unless `allow_private`.
/// Connecting to this exact address, not resolving again, keeps a rebinding DNS server out.
pub async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    if !allow_private && let Some(inside) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "refused: {host} is {}, a loopback, private or link-local address (the server \
             flag --webhook-allow-private allows it)",
            inside.ip()
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() -> Result<(), std::net::AddrParseError> {
        for inside in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(inside.parse()?), "{inside}");
        }
        for outside in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(outside.parse()?), "{outside}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        assert!(resolve("localhost", 80, false).await.is_err());
        assert!(resolve("127.0.0.1", 80, false).await.is_err());
        assert!(resolve("[::1]", 22, false).await.is_err());
        assert!(resolve("127.0.0.1", 80, true).await.is_ok());
    }
}
