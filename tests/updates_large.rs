//! A large bundle (200 MB, generated on the fly) goes up and down with bounded memory. Its own
//! test binary, so the process's peak memory belongs to this test alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

#[path = "api/helpers.rs"]
mod helpers;

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use futures_util::StreamExt;
use helpers::TestServer;
use keyward::domain::api_keys::Scope;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 200;

fn chunk(i: usize) -> Vec<u8> {
    let seed = (i as u8).wrapping_mul(151);
    (0..CHUNK)
        .map(|j| seed ^ (j as u8) ^ ((j >> 8) as u8))
        .collect()
}

/// Peak resident memory of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
async fn a_200_mb_bundle_streams_through_with_bounded_memory() {
    // Hashed before the server starts: the test and the server share one thread, and seconds
    // of hashing between two requests would leave the client's pooled connection idle past
    // the server's idle timeout, to be closed just as the upload starts on it.
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(chunk(i));
    }
    let expected = hex::encode(expected.finalize());
    let srv = TestServer::start().await;
    let product = srv.create_product("default", "big");
    let admin = srv.create_api_key("default", Scope::FullAdmin, None);
    let license = srv.create_license(&admin, &product.id, json!({})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let before = peak_rss();

    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i))),
    ));
    let form = Form::new().text("version", "2.0.0").part(
        "bundle",
        Part::stream_with_length(body, (CHUNK * CHUNKS) as u64).file_name("big.bin"),
    );
    let up = srv
        .client
        .post(format!("{}/api/projects/{}/releases", srv.url, product.id))
        .header("X-API-Key", &admin)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let up = TestServer::decode(up).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    let release = &up.body["data"]["release"];
    assert_eq!(release["bundleSize"], (CHUNK * CHUNKS) as u64);
    assert_eq!(release["bundleSha256"], expected.as_str());
    let id = release["id"].as_str().expect("id").to_owned();
    let publish = srv
        .call(
            Method::POST,
            &format!("/api/releases/{id}/publish"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(publish.status, StatusCode::OK);

    let pk = srv
        .call(
            Method::GET,
            "/api/v1/updates/public-key?product=big",
            None,
            None,
        )
        .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pk: [u8; 32] = b64
        .decode(pk.body["public_key"].as_str().expect("key"))
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    let vk = VerifyingKey::from_bytes(&pk).expect("key");

    let resp = srv
        .client
        .get(format!(
            "{}/api/v1/updates/download?release_id={id}",
            srv.url
        ))
        .header("X-License-Key", &license)
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.content_length(),
        Some((CHUNK * CHUNKS) as u64),
        "Content-Length is declared"
    );
    let sig: [u8; 64] = b64
        .decode(
            resp.headers()["x-bundle-signature"]
                .to_str()
                .expect("ascii"),
        )
        .expect("base64")
        .try_into()
        .expect("64 bytes");
    let mut verifier = vk
        .verify_stream(&Signature::from_bytes(&sig))
        .expect("verifier");
    let mut hash = Sha256::new();
    let mut got = 0usize;
    let mut stream = resp.bytes_stream();
    while let Some(part) = stream.next().await {
        let part = part.expect("bytes");
        got += part.len();
        hash.update(&part);
        verifier.update(&part);
    }
    assert_eq!(got, CHUNK * CHUNKS);
    assert_eq!(hex::encode(hash.finalize()), expected);
    verifier
        .finalize_and_verify()
        .expect("the signature covers the exact bytes");

    // Upload, hashing, signing (two passes) and download all streamed: the process (server
    // and client) grew by far less than the bundle.
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "peak memory grew by {} MiB for a {} MiB bundle",
        grown >> 20,
        CHUNKS
    );
}
