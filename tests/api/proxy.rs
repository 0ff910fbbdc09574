//! Client IPs: the socket peer, unless the peer is a configured trusted proxy.

use crate::helpers::*;

async fn health_from(srv: &TestServer, forwarded_for: &str) -> u16 {
    srv.client
        .get(format!("{}/api/health", srv.url))
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(2, 0, 0)).await;
    assert_eq!(health_from(&srv, "203.0.113.1").await, 200);
    assert_eq!(health_from(&srv, "203.0.113.2").await, 200);
    // A forged header does not buy a fresh allowance: the peer (127.0.0.1) is limited.
    assert_eq!(health_from(&srv, "203.0.113.3").await, 429);
}

#[tokio::test]
async fn forwarded_for_is_honoured_from_trusted_proxies() {
    let srv = TestServer::start_with(|c| {
        c.rate_limits = rate_limits(2, 0, 0);
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(health_from(&srv, "203.0.113.1").await, 200);
    assert_eq!(health_from(&srv, "203.0.113.1").await, 200);
    assert_eq!(
        health_from(&srv, "203.0.113.1").await,
        429,
        "one client is limited"
    );
    assert_eq!(
        health_from(&srv, "203.0.113.2").await,
        200,
        "another client is not"
    );
    // The right-most untrusted entry is the client; entries a client prepends are ignored.
    assert_eq!(health_from(&srv, "198.51.100.7, 203.0.113.1").await, 429);
}

#[tokio::test]
async fn rate_limited_answers_carry_retry_after_and_the_envelope() {
    let srv = TestServer::start_with(|c| c.rate_limits = rate_limits(1, 0, 0)).await;
    assert_eq!(health_from(&srv, "x").await, 200);
    let resp = srv
        .client
        .get(format!("{}/api/health", srv.url))
        .send()
        .await
        .unwrap();
    let a = TestServer::decode(resp).await;
    a.assert_error(429, "RATE_LIMITED");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(a.header("x-ratelimit-limit"), Some("1"));
}
