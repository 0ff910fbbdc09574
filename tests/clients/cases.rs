//! The table every recipe runs: arguments, clock, and the refusal or the fields expected.

use serde_json::{Value, json};

use crate::fixture::{Fixture, KEYGEN_KEY, MACHINE, NONCE, kid_of, public_b64};

/// One case: the recipe's arguments, the clock it runs at, and what it must print.
pub struct Case {
    pub name: &'static str,
    pub args: Vec<String>,
    pub now: Option<&'static str>,
    /// `Some(code)`: refused with that `error`; `None`: accepted.
    pub refused: Option<&'static str>,
    /// JSON pointer → expected value in the printed line.
    pub expect: Vec<(&'static str, Value)>,
}

pub fn cases(fx: &Fixture) -> Vec<Case> {
    let p = |name: &str| fx.path(name);
    let s = |v: &str| v.to_owned();
    let lic = fx.license.clone();
    let [a, b, c] = &fx.rotation;
    let accepted = |name, args: Vec<String>, expect| Case {
        name,
        args,
        now: None,
        refused: None,
        expect,
    };
    let refused = |name, args: Vec<String>, code| Case {
        name,
        args,
        now: None,
        refused: Some(code),
        expect: Vec::new(),
    };
    let file = |trust: &str, name: &str, key: &str, fp: Option<&str>| {
        let mut args = vec![s("file"), p(trust), p(name), s(key)];
        args.extend(fp.map(s));
        args
    };
    let answer = |trust: &str, body: &str, nonce: &str| {
        vec![
            s("answer"),
            p(trust),
            p(body),
            fx.answer_signature.clone(),
            fx.kid.clone(),
            s(nonce),
        ]
    };
    let rotate = |trust: &str, list: &str| vec![s("rotate"), p(trust), p(list)];
    let revoked = |list: &str, sig: usize, key: &str, last_seen: i64| {
        vec![
            s("revoked"),
            p("trusted.json"),
            p(list),
            fx.list_signatures[sig].clone(),
            fx.kid.clone(),
            s(key),
            last_seen.to_string(),
        ]
    };
    let data_key = "/payload/data/attributes/key";
    vec![
        accepted(
            "license file (encrypted) is verified and decrypted",
            file("trusted.json", "license.lic", &lic, None),
            vec![
                ("/kind", json!("license")),
                ("/kid", json!(fx.kid)),
                (data_key, json!(lic)),
                ("/payload/data/attributes/status", json!("ACTIVE")),
                ("/payload/meta/kid", json!(fx.kid)),
                ("/payload/meta/ttl", json!(2_592_000)),
            ],
        ),
        accepted(
            "license file (plain) is verified",
            file("trusted.json", "license-plain.lic", &lic, None),
            vec![("/kind", json!("license")), (data_key, json!(lic))],
        ),
        accepted(
            "machine file is decrypted with key + fingerprint",
            file("trusted.json", "machine.lic", &lic, Some(MACHINE)),
            vec![
                ("/kind", json!("machine")),
                (data_key, json!(lic)),
                ("/payload/included/1/type", json!("machines")),
                ("/payload/included/1/attributes/fingerprint", json!(MACHINE)),
                ("/payload/meta/ttl", json!(604_800)),
            ],
        ),
        accepted(
            "machine file (plain) is verified",
            file("trusted.json", "machine-plain.lic", &lic, Some(MACHINE)),
            vec![("/kind", json!("machine"))],
        ),
        refused(
            "machine file for another machine does not decrypt",
            file(
                "trusted.json",
                "machine.lic",
                &lic,
                Some("another-machine-0002"),
            ),
            "UNDECRYPTABLE",
        ),
        refused(
            "machine file without its fingerprint does not decrypt",
            file("trusted.json", "machine.lic", &lic, None),
            "UNDECRYPTABLE",
        ),
        refused(
            "license file with another license key does not decrypt",
            file("trusted.json", "license.lic", &fx.revoked_license, None),
            "UNDECRYPTABLE",
        ),
        refused(
            "plain license file of another license",
            file(
                "trusted.json",
                "license-plain.lic",
                &fx.revoked_license,
                None,
            ),
            "WRONG_LICENSE",
        ),
        refused(
            "plain machine file of another machine",
            file(
                "trusted.json",
                "machine-plain.lic",
                &lic,
                Some("another-machine-0002"),
            ),
            "WRONG_MACHINE",
        ),
        refused(
            "tampered license file is refused",
            file("trusted.json", "license-tampered.lic", &lic, None),
            "BAD_SIGNATURE",
        ),
        refused(
            "license file signed by a key that is not trusted",
            file("trusted-a.json", "license.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        Case {
            now: Some("2025-09-01T00:00:00Z"),
            ..accepted(
                "Keygen's published file is verified and decrypted (at a date within its TTL)",
                file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
                vec![("/kind", json!("license")), (data_key, json!(KEYGEN_KEY))],
            )
        },
        refused(
            "Keygen's published file is expired today",
            file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
            "EXPIRED",
        ),
        Case {
            now: Some("2025-08-27T21:00:00Z"),
            ..refused(
                "Keygen's file before its issue date (beyond 5 minutes of skew)",
                file("keygen-trusted.json", "keygen.lic", KEYGEN_KEY, None),
                "NOT_YET_VALID",
            )
        },
        refused(
            "file issued an hour in the future",
            file("trusted-a.json", "future.lic", &lic, None),
            "NOT_YET_VALID",
        ),
        accepted(
            "file issued 4 minutes in the future (within the skew)",
            file("trusted-a.json", "skewed.lic", &lic, None),
            vec![("/kid", json!(kid_of(a)))],
        ),
        refused(
            "file whose TTL has passed",
            file("trusted-a.json", "expired.lic", &lic, None),
            "EXPIRED",
        ),
        accepted(
            "file without TTL never expires",
            file("trusted-a.json", "forever.lic", &lic, None),
            vec![("/payload/meta/ttl", Value::Null)],
        ),
        accepted(
            "signed validation answer with its nonce",
            answer("trusted.json", "answer.json", NONCE),
            vec![
                ("/body/valid", json!(true)),
                ("/body/nonce", json!(NONCE)),
                ("/body/code", json!("VALID")),
            ],
        ),
        refused(
            "validation answer for another nonce (a replay)",
            answer("trusted.json", "answer.json", "another-nonce-0001"),
            "NONCE_MISMATCH",
        ),
        refused(
            "validation answer with one flipped byte",
            answer("trusted.json", "answer-flipped.json", NONCE),
            "BAD_SIGNATURE",
        ),
        refused(
            "validation answer from a key that is not trusted",
            answer("trusted-a.json", "answer.json", NONCE),
            "UNKNOWN_KID",
        ),
        accepted(
            "rotation A → B → C followed through the endorsements; retired keys dropped",
            rotate("trusted-a.json", "keys-chain.json"),
            vec![
                ("/trusted", json!([public_b64(c)])),
                ("/accepted", json!([kid_of(b), kid_of(c)])),
                ("/dropped", json!([kid_of(a), kid_of(b)])),
            ],
        ),
        accepted(
            "a key list without a new key changes nothing",
            rotate("trusted-a.json", "keys-unchanged.json"),
            vec![
                ("/trusted", json!([public_b64(a)])),
                ("/accepted", json!([])),
            ],
        ),
        refused(
            "a key the server lists without endorsement is not trusted",
            rotate("trusted-a.json", "keys-unendorsed.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "an endorsement over another key's text is not trusted",
            rotate("trusted-a.json", "keys-bad-endorsement.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "an endorsement by an untrusted listed key is not trusted",
            rotate("trusted-a.json", "keys-untrusted-endorser.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "a key listed under another kid is not trusted",
            rotate("trusted-a.json", "keys-wrong-kid.json"),
            "UNTRUSTED_CURRENT",
        ),
        refused(
            "a file signed by the rotated-in key, before the rotation",
            file("trusted-a.json", "rotated.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        accepted(
            "a file signed by the rotated-in key, after the rotation",
            file("trusted-c.json", "rotated.lic", &lic, None),
            vec![("/kid", json!(kid_of(c))), (data_key, json!(lic))],
        ),
        refused(
            "live: a file signed after the server rotated its key, with the pinned key alone",
            file("trusted.json", "live-rotated.lic", &lic, None),
            "UNKNOWN_KID",
        ),
        accepted(
            "live: the server's key list moves the trust set to the endorsed key, dropping the retired one",
            rotate("trusted.json", "keys-live.json"),
            vec![
                ("/trusted", json!([fx.live[1]])),
                ("/accepted", json!([fx.live[0]])),
                ("/dropped", json!([fx.kid])),
            ],
        ),
        accepted(
            "live: the file signed after the rotation verifies with the rotated trust set",
            file("trusted-live.json", "live-rotated.lic", &lic, None),
            vec![
                ("/kid", json!(fx.live[0])),
                ("/payload/meta/kid", json!(fx.live[0])),
                (data_key, json!(lic)),
            ],
        ),
        accepted(
            "a license not on the revocation list",
            revoked("revocations-after.json", 1, &lic, fx.list_versions[1]),
            vec![
                ("/version", json!(fx.list_versions[1])),
                ("/revoked", json!(false)),
            ],
        ),
        refused(
            "a revoked license is refused",
            revoked(
                "revocations-after.json",
                1,
                &fx.revoked_license,
                fx.list_versions[0],
            ),
            "REVOKED",
        ),
        refused(
            "a revoked license typed in lower case is refused",
            revoked(
                "revocations-after.json",
                1,
                &format!(" {} ", fx.revoked_license.to_lowercase()),
                0,
            ),
            "REVOKED",
        ),
        refused(
            "an older list (replayed) is refused once a newer one was seen",
            revoked(
                "revocations-before.json",
                0,
                &fx.revoked_license,
                fx.list_versions[1],
            ),
            "STALE_LIST",
        ),
        accepted(
            "the older list is accepted before the newer one was seen",
            revoked(
                "revocations-before.json",
                0,
                &fx.revoked_license,
                fx.list_versions[0],
            ),
            vec![("/version", json!(fx.list_versions[0]))],
        ),
        refused(
            "a tampered revocation list is refused",
            revoked("revocations-tampered.json", 1, &fx.revoked_license, 0),
            "BAD_SIGNATURE",
        ),
    ]
}
