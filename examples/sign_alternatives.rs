//! The Ed25519 signature of a validation answer, side by side (issue 16): ed25519-dalek as the
//! server used it (`SigningKey::sign`, which re-expands the seed each time), ed25519-dalek with
//! the expanded key kept (`hazmat::raw_sign`), and ring (BoringSSL's curve25519, already in the
//! tree through rustls). All three must give the same bytes (Ed25519 is deterministic).
//!
//!   cargo run --release --example sign_alternatives             # µs per signature
//!   valgrind --tool=callgrind target/release/examples/sign_alternatives dalek 1000
//!                                                                # instructions (minus a 0 run)
#![allow(clippy::unwrap_used)] // a measurement tool: a broken key or argument should stop it

use std::time::Instant;

use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{Signer, SigningKey};

const ANSWER: usize = 700;

fn main() {
    let seed = [7u8; 32];
    let message = vec![b'x'; ANSWER];
    let dalek = SigningKey::from_bytes(&seed);
    let expanded = ExpandedSecretKey::from(&seed);
    let verifying = dalek.verifying_key();
    let ring_key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();

    let a = dalek.sign(&message).to_bytes();
    let b = raw_sign::<sha2::Sha512>(&expanded, &message, &verifying).to_bytes();
    let c: [u8; 64] = ring_key.sign(&message).as_ref().try_into().unwrap();
    assert_eq!(a, b, "dalek expanded differs");
    assert_eq!(a, c, "ring differs");

    let mut args = std::env::args().skip(1);
    if let Some(which) = args.next() {
        // One implementation, n times, for an instruction count under callgrind.
        let n: usize = args.next().map_or(1000, |n| n.parse().unwrap());
        let mut sink = 0u8;
        for _ in 0..n {
            sink ^= match which.as_str() {
                "dalek" => dalek.sign(&message).to_bytes()[0],
                "dalek-expanded" => {
                    raw_sign::<sha2::Sha512>(&expanded, &message, &verifying).to_bytes()[0]
                }
                "ring" => ring_key.sign(&message).as_ref()[0],
                other => panic!("unknown implementation {other}"),
            };
        }
        std::hint::black_box(sink);
        return;
    }
    let rounds = 5_000;
    println!("Ed25519 over a {ANSWER}-byte answer, µs per signature (best of 5 runs of {rounds}):");
    let time = |f: &dyn Fn() -> u8| {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                let mut sink = 0u8;
                for _ in 0..rounds {
                    sink ^= f();
                }
                std::hint::black_box(sink);
                started.elapsed().as_secs_f64() * 1e6 / rounds as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let d = time(&|| dalek.sign(&message).to_bytes()[0]);
    let e = time(&|| raw_sign::<sha2::Sha512>(&expanded, &message, &verifying).to_bytes()[0]);
    let r = time(&|| ring_key.sign(&message).as_ref()[0]);
    println!("  ed25519-dalek SigningKey::sign      {d:6.1}");
    println!("  ed25519-dalek, expanded key kept    {e:6.1}");
    println!("  ring Ed25519KeyPair::sign           {r:6.1}");
}
