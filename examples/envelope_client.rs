//! Validate a Keyward key through the AES-256-GCM encrypted envelope: the Rust twin of
//! `examples/envelope_client.py`.
//!
//! ```text
//! cargo run --example envelope_client -- URL PROJECT_ID ENCRYPTION_KEY_B64 LICENSE_KEY HWID
//! cargo run --example envelope_client -- --self-test
//! ```
//!
//! The project id and its encryption key are shown in the admin panel (`GET /api/projects/<id>`
//! answers `id` and `encryptionKey`).
//!
//! The envelope, exactly:
//! - the client builds the plain request as JSON: `key`, `hwid`, `timestamp` (Unix seconds; the
//!   server accepts ±60 s), `requestId` (16-128 random characters, never reused: a repeated id is
//!   a replay), and optionally `nonce` (the one the previous answer handed out), `sessionId`
//!   and `clientNonce` (echoed inside the encrypted answer);
//! - it encrypts that JSON with AES-256-GCM under the project's 32-byte key, a fresh random
//!   12-byte IV and no associated data, and sends
//!   `{"projectId": "...", "payload": base64(IV ‖ ciphertext ‖ 16-byte tag)}` to `/api/validate`;
//! - the server answers `{"success": bool, "payload": "..."}`, where `payload` is the plain
//!   answer (the success body or the error envelope) sealed the same way, with the plain
//!   answer's HTTP status. An envelope the server cannot open (wrong key, bad base64, unknown
//!   project) is refused in clear, without `payload`.
//!
//! The program validates once, checks that the answer echoes its `clientNonce`, then
//! validates again presenting the rotated `nonce` and the `sessionId`, as a running app would.
//! `--self-test` starts a Keyward in this process on a temporary data directory, creates an
//! operator, a project and a key through the HTTP API, and runs the same flow against it. The
//! exit status is 0 only if every step succeeded.

use std::error::Error;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const USAGE: &str = "usage: envelope_client URL PROJECT_ID ENCRYPTION_KEY_B64 LICENSE_KEY HWID
       envelope_client --self-test";

/// Where and what to validate.
struct Target {
    /// Keyward's base URL, e.g. `http://127.0.0.1:3002`.
    url: String,
    project_id: String,
    /// The project's AES-256-GCM key.
    key: [u8; 32],
    license_key: String,
    hwid: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [flag] if flag == "--self-test" => self_test().await,
        [url, project_id, key_b64, license_key, hwid] => match decode_key(key_b64) {
            Ok(key) => {
                let target = Target {
                    url: url.trim_end_matches('/').to_owned(),
                    project_id: project_id.clone(),
                    key,
                    license_key: license_key.clone(),
                    hwid: hwid.clone(),
                };
                run(&reqwest::Client::new(), &target).await
            }
            Err(e) => Err(e),
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("envelope_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn decode_key(key_b64: &str) -> Result<[u8; 32]> {
    let raw = BASE64
        .decode(key_b64.trim())
        .map_err(|e| format!("ENCRYPTION_KEY_B64 is not base64: {e}"))?;
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| format!("the encryption key must be 32 bytes, got {}", raw.len()).into())
}

/// base64(12-byte IV ‖ ciphertext ‖ 16-byte tag); no associated data.
fn seal(key: &[u8; 32], plaintext: &[u8]) -> Result<String> {
    let cipher = Aes256Gcm::new_from_slice(key)?;
    let iv: [u8; 12] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&iv), plaintext)
        .map_err(|_| "encryption failed")?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&sealed);
    Ok(BASE64.encode(out))
}

fn open_sealed(key: &[u8; 32], payload: &str) -> Result<Vec<u8>> {
    let raw = BASE64.decode(payload)?;
    if raw.len() < 12 + 16 {
        return Err("the answer's payload is too short".into());
    }
    let cipher = Aes256Gcm::new_from_slice(key)?;
    let (iv, sealed) = raw.split_at(12);
    Ok(cipher
        .decrypt(Nonce::from_slice(iv), sealed)
        .map_err(|_| "the answer does not decrypt with the project's key: refusing it")?)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// One encrypted validation. Returns the HTTP status and the decrypted answer (or the plain
/// refusal, when the server could not open the envelope).
async fn validate(
    client: &reqwest::Client,
    target: &Target,
    nonce: Option<&str>,
    session_id: Option<&str>,
) -> Result<(u16, Value)> {
    let client_nonce = random_hex(8);
    let mut request = json!({
        "key": target.license_key,
        "hwid": target.hwid,
        "timestamp": SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        "requestId": random_hex(16),
        "clientNonce": client_nonce,
    });
    if let Some(n) = nonce {
        request["nonce"] = json!(n);
    }
    if let Some(s) = session_id {
        request["sessionId"] = json!(s);
    }
    let body = json!({
        "projectId": target.project_id,
        "payload": seal(&target.key, request.to_string().as_bytes())?,
    });
    let resp = client
        .post(format!("{}/api/validate", target.url))
        .json(&body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let outer: Value = resp.json().await?;
    let Some(payload) = outer.get("payload").and_then(Value::as_str) else {
        // The envelope itself was refused (plain error).
        return Ok((status, outer));
    };
    let answer: Value = serde_json::from_slice(&open_sealed(&target.key, payload)?)?;
    if answer["success"] == true && answer["data"]["clientNonce"] != client_nonce.as_str() {
        return Err("the answer does not echo our clientNonce: refusing it".into());
    }
    Ok((status, answer))
}

/// Validates, then validates again with the rotated nonce and the session.
async fn run(client: &reqwest::Client, target: &Target) -> Result<()> {
    let (status, answer) = validate(client, target, None, None).await?;
    println!("{status} {answer}");
    if answer["success"] != true {
        return Err(format!("validation refused ({status}): {}", answer["error"]).into());
    }
    let data = &answer["data"];
    let nonce = data["nonce"].as_str().ok_or("the answer has no nonce")?;
    let session = data["sessionId"]
        .as_str()
        .ok_or("the answer has no sessionId")?;
    // The next call presents the rotated nonce and keeps the session alive.
    let (status, again) = validate(client, target, Some(nonce), Some(session)).await?;
    println!("{status} {again}");
    if again["success"] != true {
        return Err(format!("second validation refused ({status}): {}", again["error"]).into());
    }
    if again["data"]["sessionId"] != session {
        return Err("the session was not kept".into());
    }
    if again["data"]["nonce"] == nonce {
        return Err("the nonce was not rotated".into());
    }
    Ok(())
}

/// Sends a JSON request with an optional Bearer token; fails unless the status is `expect`.
async fn call(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
    expect: u16,
) -> Result<Value> {
    let mut req = client.post(&url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await?;
    if status != expect {
        return Err(format!("POST {url}: expected {expect}, got {status}: {answer}").into());
    }
    Ok(answer)
}

/// Runs the flow against an in-process server with an operator, a project and a key made
/// through the HTTP API, then shows that a replayed nonce is refused.
async fn self_test() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = keyward::start(keyward::Config::for_data_dir(dir.path())).await?;
    let base = format!("http://{}", running.addr);
    println!(
        "self-test: Keyward listening on {base} (data in {})",
        dir.path().display()
    );
    let client = reqwest::Client::new();
    let outcome = async {
        let operator = json!({"email": "owner@example.com", "password": "self-test password"});
        // The setup token this start issued (`keyward serve` prints it in the setup URL).
        let setup_token = running
            .setup_token
            .as_ref()
            .ok_or("no setup token: the new installation has an operator")?;
        let mut setup = operator.clone();
        setup["setupToken"] = json!(setup_token.token);
        call(
            &client,
            format!("{base}/api/auth/register"),
            None,
            setup,
            201,
        )
        .await?;
        let login = call(
            &client,
            format!("{base}/api/auth/login"),
            None,
            operator,
            200,
        )
        .await?;
        let token = login["data"]["token"]
            .as_str()
            .ok_or("no token")?
            .to_owned();
        let project = call(
            &client,
            format!("{base}/api/projects"),
            Some(&token),
            json!({"name": "Envelope demo"}),
            201,
        )
        .await?;
        let project = &project["data"]["project"];
        let keys = call(
            &client,
            format!("{base}/api/keys"),
            Some(&token),
            json!({"plan": "WEEKLY", "projectId": project["id"], "note": "self-test"}),
            201,
        )
        .await?;
        let license_key = keys["data"]["keys"][0]["key"]
            .as_str()
            .ok_or("no key")?
            .to_owned();
        println!("self-test: project {} and key {license_key}", project["id"]);
        let target = Target {
            url: base.clone(),
            project_id: project["id"].as_str().ok_or("no project id")?.to_owned(),
            key: decode_key(
                project["encryptionKey"]
                    .as_str()
                    .ok_or("no encryptionKey")?,
            )?,
            license_key,
            hwid: "self-test-machine-0001".into(),
        };
        run(&client, &target).await?;

        // A nonce that was already used is a replay: refused, encrypted, with status 403.
        let (_, first) = validate(&client, &target, None, None).await?;
        let used = first["data"]["nonce"]
            .as_str()
            .ok_or("no nonce")?
            .to_owned();
        validate(&client, &target, Some(&used), None).await?;
        let (status, replay) = validate(&client, &target, Some(&used), None).await?;
        if status != 403 || replay["code"] != "REPLAY" {
            return Err(format!("a replayed nonce was not refused: {status} {replay}").into());
        }
        println!("self-test: a replayed nonce is refused: {status} {replay}");
        // An envelope sealed with another key is refused in clear.
        let wrong = Target {
            key: [7u8; 32],
            ..target
        };
        let (status, refused) = validate(&client, &wrong, None, None).await?;
        if status != 400 || refused.get("payload").is_some() {
            return Err(format!("a foreign envelope was not refused: {status} {refused}").into());
        }
        println!("self-test: an envelope sealed with another key is refused: {status} {refused}");
        Ok::<(), Box<dyn Error>>(())
    }
    .await;
    running.stop().await?;
    outcome?;
    println!("self-test: passed");
    Ok(())
}
