//! How a vendor's application uses Keyward: activate this machine, validate the license, and
//! trust neither answer until its signature and nonce check out.
//!
//! ```text
//! cargo run --example activate_and_verify -- --self-test
//! cargo run --example activate_and_verify -- --url http://127.0.0.1:3002 \
//!     --api-key kw_… --license-key TT-XXXX-… --machine-id 3f2a…c1 --product my-app [--tenant default]
//! ```
//!
//! Every answer of `/api/v1/license/activate` and `/api/v1/license/validate` carries
//! `X-Signature`: an Ed25519 signature (base64) over the exact bytes of the body, made with the
//! product's key. The client verifies it over the raw bytes as received, before parsing them,
//! and checks that the body echoes the random `nonce` it sent, so neither a forged answer nor a
//! recorded old one (replay) is accepted.
//!
//! `--self-test` starts a Keyward in this process with a temporary data directory, makes a
//! product, an API key and a license through the domain, and runs the same flow against it.
//! The exit status is 0 only if every check passed.

use std::error::Error;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Activates a machine, validates its license and verifies the signed answers")]
struct Args {
    /// Keyward's base URL.
    #[arg(long, env = "KEYWARD_URL", required_unless_present = "self_test")]
    url: Option<String>,
    /// An API key (VALIDATE_ONLY is enough), sent as X-API-Key.
    #[arg(long, env = "KEYWARD_API_KEY", required_unless_present = "self_test")]
    api_key: Option<String>,
    /// The license key the user entered.
    #[arg(long, required_unless_present = "self_test")]
    license_key: Option<String>,
    /// This machine's fingerprint (8-255 characters).
    #[arg(long, required_unless_present = "self_test")]
    machine_id: Option<String>,
    /// The product's slug (for its public key).
    #[arg(long, required_unless_present = "self_test")]
    product: Option<String>,
    /// The tenant's slug (default: `default`).
    #[arg(long)]
    tenant: Option<String>,
    /// The product's Ed25519 public key (base64), as shipped inside the application. Without
    /// it the key is fetched from the server, which trusts the network on first use.
    #[arg(long)]
    public_key: Option<String>,
    /// Start an in-process server with a throw-away product and license and run the flow
    /// against it.
    #[arg(long, conflicts_with_all = ["url", "api_key", "license_key", "machine_id", "product"])]
    self_test: bool,
}

/// What the flow needs to know about the server and the license.
struct Target {
    url: String,
    api_key: String,
    license_key: String,
    machine_id: String,
    product: String,
    tenant: Option<String>,
    public_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if args.self_test {
        self_test().await
    } else {
        let target = Target {
            url: args.url.unwrap_or_default(),
            api_key: args.api_key.unwrap_or_default(),
            license_key: args.license_key.unwrap_or_default(),
            machine_id: args.machine_id.unwrap_or_default(),
            product: args.product.unwrap_or_default(),
            tenant: args.tenant,
            public_key: args.public_key,
        };
        activate_and_validate(&target).await
    };
    match outcome {
        Ok(()) => {
            println!("OK: the license is valid on this machine and every answer was authentic");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The client flow: public key, activate, validate, each answer verified.
async fn activate_and_validate(t: &Target) -> Result<(), Box<dyn Error>> {
    let http = reqwest::Client::new();
    let base = t.url.trim_end_matches('/');

    let public_key = match &t.public_key {
        Some(pinned) => {
            println!("public key: pinned by the application");
            pinned.clone()
        }
        None => fetch_public_key(&http, base, &t.product, t.tenant.as_deref()).await?,
    };
    let key = verifying_key(&public_key)?;
    println!("public key of product {:?}: {public_key}", t.product);

    let nonce = new_nonce();
    let body = json!({
        "licenseKey": t.license_key,
        "machineId": t.machine_id,
        "machineName": hostname(),
        "osName": std::env::consts::OS,
        "appVersion": env!("CARGO_PKG_VERSION"),
        "nonce": nonce,
    });
    let answer = post_signed(
        &http,
        base,
        "/api/v1/license/activate",
        &t.api_key,
        &body,
        &key,
        &nonce,
    )
    .await?;
    if answer["success"] != Value::Bool(true) {
        return Err(format!("activation refused: {answer}").into());
    }
    println!(
        "activate: {} ({} of {} machines in use); signature and nonce verified",
        answer["message"].as_str().unwrap_or("?"),
        answer["license"]["activationsUsed"],
        answer["license"]["maxActivations"],
    );

    let nonce = new_nonce();
    let body = json!({"licenseKey": t.license_key, "machineId": t.machine_id, "nonce": nonce});
    let answer = post_signed(
        &http,
        base,
        "/api/v1/license/validate",
        &t.api_key,
        &body,
        &key,
        &nonce,
    )
    .await?;
    if answer["valid"] != Value::Bool(true) {
        return Err(format!(
            "the license is not valid on this machine: {} ({})",
            answer["code"].as_str().unwrap_or("?"),
            answer["message"].as_str().unwrap_or("?")
        )
        .into());
    }
    println!(
        "validate: {} (status {}); signature and nonce verified",
        answer["code"].as_str().unwrap_or("?"),
        answer["status"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `GET /api/v1/updates/public-key?product=…&tenant=…` (no authentication).
async fn fetch_public_key(
    http: &reqwest::Client,
    base: &str,
    product: &str,
    tenant: Option<&str>,
) -> Result<String, Box<dyn Error>> {
    let mut query = vec![("product", product)];
    if let Some(tenant) = tenant {
        query.push(("tenant", tenant));
    }
    let resp = http
        .get(format!("{base}/api/v1/updates/public-key"))
        .query(&query)
        .send()
        .await?;
    let status = resp.status();
    let body: Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
    // The contract spells this field `public_key`.
    match body["public_key"].as_str() {
        Some(key) if status.is_success() => Ok(key.to_owned()),
        _ => Err(format!("cannot get the public key of {product:?}: {status} {body}").into()),
    }
}

/// What came back for one request, before any of it is trusted.
struct RawAnswer {
    status: reqwest::StatusCode,
    signature: Option<String>,
    /// The exact bytes as received: re-serializing parsed JSON would not reproduce them.
    body: Vec<u8>,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    body: &Value,
) -> Result<RawAnswer, Box<dyn Error>> {
    let resp = http
        .post(url)
        .header("X-API-Key", api_key)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let signature = resp
        .headers()
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(RawAnswer {
        status,
        signature,
        body: resp.bytes().await?.to_vec(),
    })
}

/// Posts `body` and returns the parsed answer only if it passes [`check`].
async fn post_signed(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    api_key: &str,
    body: &Value,
    key: &VerifyingKey,
    nonce: &str,
) -> Result<Value, Box<dyn Error>> {
    let answer = post(http, &format!("{base}{path}"), api_key, body).await?;
    check(&answer, key, nonce).map_err(|e| format!("{path}: {e}").into())
}

/// An answer is trusted only if it is a 200 whose `X-Signature` verifies over the raw body
/// with the product's key and whose `nonce` is the one this request sent.
fn check(answer: &RawAnswer, key: &VerifyingKey, nonce: &str) -> Result<Value, String> {
    if !answer.status.is_success() {
        // Error answers (bad API key, refused activation…) are not signed: report them as such.
        return Err(format!(
            "{} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let signature = answer
        .signature
        .as_deref()
        .ok_or("the answer has no X-Signature header")?;
    verify(key, &answer.body, signature)?;
    let parsed: Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("not JSON: {e}"))?;
    if parsed["nonce"].as_str() != Some(nonce) {
        return Err(format!(
            "NONCE MISMATCH (sent {nonce:?}, got {}): a replayed answer?",
            parsed["nonce"]
        ));
    }
    Ok(parsed)
}

fn verifying_key(base64_key: &str) -> Result<VerifyingKey, Box<dyn Error>> {
    let bytes = BASE64.decode(base64_key.trim())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "the public key is not 32 bytes")?;
    Ok(VerifyingKey::from_bytes(&bytes)?)
}

/// Checks an `X-Signature` (base64 Ed25519) over `body`.
fn verify(key: &VerifyingKey, body: &[u8], signature_b64: &str) -> Result<(), String> {
    let bytes = BASE64
        .decode(signature_b64.trim())
        .map_err(|_| "X-Signature is not base64".to_owned())?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "X-Signature is not 64 bytes".to_owned())?;
    key.verify_strict(body, &Signature::from_bytes(&bytes))
        .map_err(|_| "BAD SIGNATURE: the answer was not signed by the product's key".to_owned())
}

/// 128 random bits, hex: never repeats, so an old answer cannot be passed off as new.
fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "example-host".into())
}

/// Runs the flow against an in-process server with fresh fixtures, then checks that a
/// tampered body and a wrong nonce are rejected, so the checks are shown to bite.
async fn self_test() -> Result<(), Box<dyn Error>> {
    use keyward::domain::api_keys::{self, Scope};
    use keyward::domain::licenses::{self, LicenseTier, LicenseType, NewLicense};
    use keyward::domain::products::{self, KeyFormat, NewProduct, ProductType};
    use keyward::domain::tenants;

    let dir = tempfile::tempdir()?;
    let running = keyward::start(keyward::Config::for_data_dir(dir.path())).await?;
    println!(
        "self-test: Keyward listening on http://{} (data in {})",
        running.addr,
        dir.path().display()
    );

    let master = running.state.master.clone();
    let (api_key, license_key) = running
        .state
        .db
        .write(move |c| {
            let tenant = tenants::repo::find_by_slug(c, tenants::DEFAULT_SLUG)?
                .ok_or(keyward::error::Error::NotFound("default tenant"))?;
            let product = products::create(
                c,
                &master,
                &tenant.id,
                NewProduct {
                    name: "Demo App".into(),
                    slug: "demo-app".into(),
                    product_type: ProductType::Desktop,
                    default_license_type: LicenseType::Perpetual,
                    default_max_activations: 2,
                    key_format: KeyFormat::parse("DEMO-XXXX-XXXX-XXXX-XXXX")?,
                    heartbeat: None,
                    entitlements: Vec::new(),
                },
            )?;
            let (_, api_key) = api_keys::create(
                c,
                &tenant.id,
                "demo app",
                Scope::ValidateOnly,
                Some(&product.id),
            )?;
            let license = licenses::create(
                c,
                &product,
                &NewLicense {
                    license_type: LicenseType::Perpetual,
                    tier: LicenseTier::Personal,
                    max_activations: 2,
                    max_sessions: None,
                    valid_until: None,
                    plan: None,
                    plan_days: None,
                    customer_email: Some("buyer@example.com".into()),
                    customer_name: Some("Self Test".into()),
                    order_id: None,
                    metadata: None,
                    note: None,
                    entitlements: Vec::new(),
                },
            )?;
            Ok((api_key, license.key))
        })
        .await?;
    println!("self-test: product demo-app, a VALIDATE_ONLY API key and license {license_key}");

    let target = Target {
        url: format!("http://{}", running.addr),
        api_key,
        license_key,
        machine_id: "self-test-machine-0001".into(),
        product: "demo-app".into(),
        tenant: Some(tenants::DEFAULT_SLUG.into()),
        public_key: None,
    };
    let flow = activate_and_validate(&target).await;
    let negative = if flow.is_ok() {
        checks_bite(&target).await
    } else {
        Ok(())
    };
    running.stop().await?;
    flow?;
    negative
}

/// A flipped byte in the body, or an answer to another request's nonce, must be rejected.
async fn checks_bite(t: &Target) -> Result<(), Box<dyn Error>> {
    let http = reqwest::Client::new();
    let key =
        verifying_key(&fetch_public_key(&http, &t.url, &t.product, t.tenant.as_deref()).await?)?;
    let url = format!("{}/api/v1/license/validate", t.url);
    let body = json!({"licenseKey": t.license_key, "machineId": t.machine_id, "nonce": "nonce-A"});
    let genuine = post(&http, &url, &t.api_key, &body).await?;
    check(&genuine, &key, "nonce-A")?;

    let mut tampered = RawAnswer {
        status: genuine.status,
        signature: genuine.signature.clone(),
        body: genuine.body.clone(),
    };
    let at = find(&tampered.body, b"\"valid\":true").ok_or("no \"valid\":true in the answer")?;
    tampered.body[at + 11] = b'l'; // `true` -> `trul`: one byte changed
    match check(&tampered, &key, "nonce-A") {
        Err(e) if e.contains("BAD SIGNATURE") => {
            println!("self-test: a body with one byte changed is rejected: {e}")
        }
        other => return Err(format!("a tampered body was not rejected: {other:?}").into()),
    }
    match check(&genuine, &key, "nonce-B") {
        Err(e) if e.contains("NONCE MISMATCH") => {
            println!("self-test: an answer to another request is rejected: {e}")
        }
        other => return Err(format!("a replayed answer was not rejected: {other:?}").into()),
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
