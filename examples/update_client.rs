//! How a licensed application updates itself: ask for an update with its license key, download
//! the bundle (resuming an interrupted download), and install nothing until the bundle's
//! SHA-256 and Ed25519 signature check out against the product's public key.
//!
//! ```text
//! cargo run --example update_client -- --self-test
//! cargo run --example update_client -- --url http://127.0.0.1:3002 --license-key TT-XXXX-… \
//!     --product my-app --current-version 1.0.0 [--channel stable] [--out update.bin] \
//!     [--public-key BASE64]
//! ```
//!
//! The signature is Ed25519 over the bundle's exact bytes. The client hashes and verifies the
//! bytes as they arrive (`VerifyingKey::verify_stream`), so a multi-gigabyte bundle is never
//! held in memory. A bundle that fails either check is deleted, never installed.
//!
//! `--self-test` starts a Keyward in this process with a temporary data directory, publishes a
//! release, runs the flow (including a resumed download), then flips one byte of the stored
//! bundle and checks that the client refuses it. Exit status 0 only if every check passed.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use ed25519_dalek::{Signature, VerifyingKey};
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "Checks for an update, downloads it and verifies its hash and signature")]
struct Args {
    /// Keyward's base URL.
    #[arg(long, env = "KEYWARD_URL", required_unless_present = "self_test")]
    url: Option<String>,
    /// The license key, sent as X-License-Key.
    #[arg(long, required_unless_present = "self_test")]
    license_key: Option<String>,
    /// The product's slug (for its public key).
    #[arg(long, required_unless_present = "self_test")]
    product: Option<String>,
    /// The tenant's slug (default: `default`).
    #[arg(long)]
    tenant: Option<String>,
    /// The version this application runs.
    #[arg(long, required_unless_present = "self_test")]
    current_version: Option<String>,
    /// stable, rc, beta, alpha or nightly.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Where the verified bundle goes (a `.partial` file beside it while downloading).
    #[arg(long, default_value = "update.bin")]
    out: PathBuf,
    /// The product's Ed25519 public key (base64), as shipped inside the application. Without
    /// it the key is fetched from the server, which trusts the network on first use.
    #[arg(long)]
    public_key: Option<String>,
    /// Run against an in-process server with a throw-away product and release.
    #[arg(long, conflicts_with_all = ["url", "license_key", "product", "current_version"])]
    self_test: bool,
}

struct Target {
    url: String,
    license_key: String,
    product: String,
    tenant: Option<String>,
    current_version: String,
    channel: String,
    out: PathBuf,
    public_key: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    UpToDate,
    Updated { version: String, path: PathBuf },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if args.self_test {
        self_test().await.map(|()| "self-test passed".to_owned())
    } else {
        let target = Target {
            url: args.url.unwrap_or_default(),
            license_key: args.license_key.unwrap_or_default(),
            product: args.product.unwrap_or_default(),
            tenant: args.tenant,
            current_version: args.current_version.unwrap_or_default(),
            channel: args.channel,
            out: args.out,
            public_key: args.public_key,
        };
        update(&target).await.map(|o| match o {
            Outcome::UpToDate => "up to date".to_owned(),
            Outcome::Updated { version, path } => {
                format!("{version} downloaded and verified: {}", path.display())
            }
        })
    };
    match outcome {
        Ok(message) => {
            println!("OK: {message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The client flow: public key, check, download (resuming), verify, keep or delete.
async fn update(t: &Target) -> Result<Outcome, Box<dyn Error>> {
    let http = reqwest::Client::new();
    let key = public_key(&http, t).await?;

    let check: Value = http
        .get(format!("{}/api/v1/updates/check", t.url))
        .query(&[
            ("current_version", &t.current_version),
            ("channel", &t.channel),
        ])
        .header("X-License-Key", &t.license_key)
        .send()
        .await?
        .json()
        .await?;
    if check["success"] != true {
        return Err(format!("update check refused: {}", check["error"]).into());
    }
    if check["update_available"] != true {
        return Ok(Outcome::UpToDate);
    }
    let field = |name: &str| {
        check[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the check answer has no {name}"))
    };
    let (version, release_id, sha256, signature) = (
        field("version")?,
        field("release_id")?,
        field("sha256")?,
        field("signature")?,
    );
    println!(
        "update {version} available ({} bytes)",
        check["bundle_size"]
    );

    let partial = t.out.with_extension("partial");
    let verified =
        download_and_verify(&http, t, &release_id, &partial, &key, &sha256, &signature).await;
    if let Err(e) = verified {
        // Never leave a bundle that failed its checks where an installer could find it.
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &t.out).await?;
    Ok(Outcome::Updated {
        version,
        path: t.out.clone(),
    })
}

async fn public_key(http: &reqwest::Client, t: &Target) -> Result<VerifyingKey, Box<dyn Error>> {
    let b64 = match &t.public_key {
        Some(k) => k.clone(),
        None => {
            let mut req = http
                .get(format!("{}/api/v1/updates/public-key", t.url))
                .query(&[("product", &t.product)]);
            if let Some(tenant) = &t.tenant {
                req = req.query(&[("tenant", tenant)]);
            }
            let answer: Value = req.send().await?.json().await?;
            answer["public_key"]
                .as_str()
                .ok_or("the server sent no public key")?
                .to_owned()
        }
    };
    let raw: [u8; 32] = BASE64
        .decode(b64)?
        .try_into()
        .map_err(|_| "a public key is 32 bytes")?;
    Ok(VerifyingKey::from_bytes(&raw)?)
}

/// Downloads into `partial` (continuing what an earlier attempt left there), hashing and
/// verifying every byte of the whole bundle, the kept part included.
async fn download_and_verify(
    http: &reqwest::Client,
    t: &Target,
    release_id: &str,
    partial: &Path,
    key: &VerifyingKey,
    expected_sha256: &str,
    expected_signature: &str,
) -> Result<(), Box<dyn Error>> {
    let signature: [u8; 64] = BASE64
        .decode(expected_signature)?
        .try_into()
        .map_err(|_| "a signature is 64 bytes")?;
    let mut verifier = key.verify_stream(&Signature::from_bytes(&signature))?;
    let mut hash = Sha256::new();

    let mut have: u64 = 0;
    if let Ok(mut kept) = tokio::fs::File::open(partial).await {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = kept.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            verifier.update(&buf[..n]);
            have += n as u64;
        }
    }
    let mut req = http
        .get(format!("{}/api/v1/updates/download", t.url))
        .query(&[("release_id", release_id)])
        .header("X-License-Key", &t.license_key);
    if have > 0 {
        println!("resuming after {have} bytes");
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    if !(status == 200 && have == 0 || status == 206 && have > 0) {
        return Err(format!("download answered {status}: {}", resp.text().await?).into());
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    if header("x-bundle-sha256") != expected_sha256
        || header("x-bundle-signature") != expected_signature
    {
        return Err("the download does not match the release the check announced".into());
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hash.update(&chunk);
        verifier.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;

    let got = hex::encode(hash.finalize());
    if got != expected_sha256 {
        return Err(format!(
            "refusing the bundle: SHA-256 {got} is not the announced {expected_sha256}"
        )
        .into());
    }
    verifier
        .finalize_and_verify()
        .map_err(|_| "refusing the bundle: its Ed25519 signature does not verify")?;
    Ok(())
}

/// Publishes a release on an in-process server and runs the flow: a clean download, a
/// resumed one, and a tampered bundle that must be refused.
async fn self_test() -> Result<(), Box<dyn Error>> {
    use keyward::domain::api_keys::{self, Scope};
    use keyward::domain::licenses::{self, LicenseTier, LicenseType, NewLicense};
    use keyward::domain::products::{self, KeyFormat, NewProduct, ProductType};
    use keyward::domain::tenants;

    let dir = tempfile::tempdir()?;
    let running = keyward::start(keyward::Config::for_data_dir(dir.path())).await?;
    let url = format!("http://{}", running.addr);
    println!("self-test: Keyward listening on {url}");

    let master = running.state.master.clone();
    let (product_id, admin_key, license_key) = running
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
            let (_, admin_key) = api_keys::create(c, &tenant.id, "ci", Scope::FullAdmin, None)?;
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
                    customer_name: None,
                    order_id: None,
                    metadata: None,
                    note: None,
                    entitlements: Vec::new(),
                },
            )?;
            Ok((product.id, admin_key, license.key))
        })
        .await?;

    // Publish 1.1.0 as a CI pipeline would.
    let bundle: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let http = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .text("version", "1.1.0")
        .text("changelog", "Self-test release")
        .part(
            "bundle",
            reqwest::multipart::Part::bytes(bundle.clone()).file_name("demo-1.1.0.bin"),
        );
    let uploaded: Value = http
        .post(format!("{url}/api/projects/{product_id}/releases"))
        .header("X-API-Key", &admin_key)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let release = &uploaded["data"]["release"];
    let release_id = release["id"].as_str().ok_or("upload failed")?.to_owned();
    let stored = dir
        .path()
        .join("bundles")
        .join(release["bundleSha256"].as_str().ok_or("no hash")?);
    http.post(format!("{url}/api/releases/{release_id}/publish"))
        .header("X-API-Key", &admin_key)
        .send()
        .await?
        .error_for_status()?;
    println!(
        "self-test: release 1.1.0 published ({} bytes)",
        bundle.len()
    );

    let work = tempfile::tempdir()?;
    let target = |out: &str| Target {
        url: url.clone(),
        license_key: license_key.clone(),
        product: "demo-app".into(),
        tenant: None,
        current_version: "1.0.0".into(),
        channel: "stable".into(),
        out: work.path().join(out),
        public_key: None,
    };

    // 1. A clean download.
    let clean = target("clean.bin");
    let outcome = update(&clean).await?;
    if std::fs::read(&clean.out)? != bundle {
        return Err("the verified file differs from the published bundle".into());
    }
    println!("self-test: clean download verified: {outcome:?}");

    // 2. An interrupted download resumes with Range and still verifies end to end.
    let resumed = target("resumed.bin");
    std::fs::write(resumed.out.with_extension("partial"), &bundle[..1_000_000])?;
    update(&resumed).await?;
    if std::fs::read(&resumed.out)? != bundle {
        return Err("the resumed file differs from the published bundle".into());
    }
    println!("self-test: resumed download verified");

    // 3. Up to date.
    let current = Target {
        current_version: "1.1.0".into(),
        ..target("none.bin")
    };
    if update(&current).await? != Outcome::UpToDate {
        return Err("1.1.0 should be up to date".into());
    }

    // 4. One flipped byte on the server's disk: refused, and nothing is left behind.
    let mut tampered = std::fs::read(&stored)?;
    tampered[123_456] ^= 0x01;
    std::fs::write(&stored, tampered)?;
    let attacked = target("tampered.bin");
    match update(&attacked).await {
        Ok(o) => return Err(format!("a tampered bundle was accepted: {o:?}").into()),
        Err(e) => println!("self-test: tampered bundle refused: {e}"),
    }
    if attacked.out.exists() || attacked.out.with_extension("partial").exists() {
        return Err("a refused bundle was left on disk".into());
    }
    running.stop().await?;
    Ok(())
}
