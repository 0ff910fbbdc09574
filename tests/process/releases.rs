//! `keyward release create|upload|publish|yank` against a running server, as a CI pipeline
//! runs it (issue 15): over HTTP and over HTTPS with a private CA, a file of several MB
//! streamed, JSON on stdout, the server's message and a non-zero exit on a refusal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use super::{BIN, installation, keyward, stdout};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `keyward serve` on a free port with `flags`; the child and the URL it printed.
fn serve(data_dir: &Path, flags: &[&str]) -> (Killed, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(flags)
        .env("KEYWARD_RATE_LIMIT_PER_IP", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .trim_end_matches('/')
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), url)
}

/// Runs `keyward release ARGS` with the server and key in the environment.
fn release(
    url: &str,
    key: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("release")
        .args(args)
        .env("KEYWARD_URL", url)
        .env("KEYWARD_API_KEY", key);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keyward release")
}

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("JSON on stdout")
}

#[track_caller]
fn refused_with(out: &std::process::Output, fragment: &str) {
    assert!(
        !out.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(fragment), "stderr names {fragment:?}: {err}");
}

fn pipeline(url: &str, key: &str, product: &str, dir: &Path, extra_env: &[(&str, &str)]) -> String {
    let big: Vec<u8> = (0..6 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let small = b"small linux build".to_vec();
    let big_path = dir.join("App_1.4.0_x64-setup.exe");
    let small_path = dir.join("app_1.4.0_amd64.AppImage");
    std::fs::write(&big_path, &big).unwrap();
    std::fs::write(&small_path, &small).unwrap();

    let created = json_out(&release(
        url,
        key,
        &[
            "create",
            "--project",
            product,
            "--version",
            "1.4.0",
            "--changelog",
            "Faster",
            "--rollout",
            "25",
        ],
        extra_env,
    ));
    assert_eq!(created["status"], "DRAFT");
    assert_eq!(created["rolloutPercentage"], 25);
    let id = created["id"].as_str().expect("id").to_owned();

    let win = json_out(&release(
        url,
        key,
        &[
            "upload",
            "--release",
            &id,
            "--platform",
            "windows",
            "--arch",
            "x86_64",
            "--filetype",
            "nsis",
            big_path.to_str().unwrap(),
        ],
        extra_env,
    ));
    assert_eq!(win["size"], big.len());
    assert_eq!(win["sha256"], hex::encode(Sha256::digest(&big)));
    assert_eq!(win["sha512"], hex::encode(Sha512::digest(&big)));
    assert_eq!(win["filename"], "App_1.4.0_x64-setup.exe");
    let lin = json_out(&release(
        url,
        key,
        &[
            "upload",
            "--release",
            &id,
            "--platform",
            "linux",
            "--arch",
            "x86_64",
            "--filetype",
            "AppImage",
            small_path.to_str().unwrap(),
        ],
        extra_env,
    ));
    assert_eq!(lin["sha256"], hex::encode(Sha256::digest(&small)));
    assert!(
        lin["minisignSignature"]
            .as_str()
            .is_some_and(|s| s.contains("trusted comment:"))
    );

    // The same slot again: the server's message, a non-zero exit.
    let again = release(
        url,
        key,
        &[
            "upload",
            "--release",
            &id,
            "--platform",
            "linux",
            "--arch",
            "x86_64",
            "--filetype",
            "AppImage",
            small_path.to_str().unwrap(),
        ],
        extra_env,
    );
    refused_with(&again, "already has a linux/x86_64 AppImage artifact");

    let published = json_out(&release(
        url,
        key,
        &["publish", &id, "--rollout", "50"],
        extra_env,
    ));
    assert_eq!(published["status"], "PUBLISHED");
    assert_eq!(published["rolloutPercentage"], 50);
    assert_eq!(published["artifacts"].as_array().map(Vec::len), Some(2));
    let yanked = json_out(&release(url, key, &["yank", &id], extra_env));
    assert_eq!(yanked["status"], "YANKED");
    win["sha256"].as_str().expect("sha").to_owned()
}

#[test]
fn release_commands_run_a_ci_pipeline_over_http_and_https() {
    let home = installation();
    let data = home.path();
    let product = stdout(&keyward(
        data,
        &["product", "create", "--name", "Desk", "--slug", "desk"],
    ));
    let key = stdout(&keyward(
        data,
        &["apikey", "create", "--name", "ci", "--scope", "FULL_ADMIN"],
    ));
    let work = tempfile::tempdir().unwrap();
    {
        let (_server, url) = serve(data, &[]);
        let big_sha = pipeline(&url, &key, &product, work.path(), &[]);
        // A backup carries the artifacts' files; a restore puts them back.
        let archive = work.path().join("backup.tar");
        stdout(&keyward(data, &["backup", archive.to_str().unwrap()]));
        let restored = work.path().join("restored");
        stdout(&keyward(&restored, &["restore", archive.to_str().unwrap()]));
        assert!(
            restored.join("bundles").join(&big_sha).is_file(),
            "artifact file restored"
        );

        // Refusals: the server's own words, a non-zero exit, nothing printed on stdout.
        let bad_key = release(&url, "kw_nope_nope", &["yank", "rel_x"], &[]);
        refused_with(&bad_key, "401");
        let unknown = release(&url, &key, &["publish", "rel_nope"], &[]);
        refused_with(&unknown, "not found");
        let taken = release(
            &url,
            &key,
            &["create", "--project", &product, "--version", "1.4.0"],
            &[],
        );
        refused_with(&taken, "already exists");
        let missing = release(
            &url,
            &key,
            &[
                "upload",
                "--release",
                "rel_x",
                "--platform",
                "linux",
                "--arch",
                "x86_64",
                "--filetype",
                "deb",
                "/no/such/file.deb",
            ],
            &[],
        );
        refused_with(&missing, "/no/such/file.deb");
        let bad_id = release(&url, &key, &["yank", "../../api/health"], &[]);
        refused_with(&bad_id, "is not an id");
        let bad_url = release("ftp://example.com", &key, &["yank", "rel_x"], &[]);
        refused_with(&bad_url, "http://");
        let nobody = release("http://127.0.0.1:9", &key, &["yank", "rel_x"], &[]);
        refused_with(&nobody, "cannot reach");
    }

    // HTTPS with a private CA: rustls on ring, the CA passed with --ca-cert.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let ca_path = work.path().join("ca.pem");
    let cert_path = work.path().join("cert.pem");
    let key_path = work.path().join("key.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    let (_server, url) = serve(
        data,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(url.starts_with("https://"), "{url}");
    let url = url.replace("127.0.0.1", "localhost");
    // Without the CA the certificate is not trusted.
    let untrusted = release(&url, &key, &["yank", "rel_x"], &[]);
    refused_with(&untrusted, "cannot reach");
    let ca = ca_path.to_str().unwrap();
    let product2 = product.clone();
    let https_dir = tempfile::tempdir().unwrap();
    let created = json_out(&release(
        &url,
        &key,
        &["create", "--project", &product2, "--version", "2.0.0"],
        &[("KEYWARD_CA_CERT", ca)],
    ));
    assert_eq!(created["version"], "2.0.0");
    let file = https_dir.path().join("app.dmg");
    std::fs::write(&file, vec![9u8; 3 * 1024 * 1024]).unwrap();
    let up = json_out(&release(
        &url,
        &key,
        &[
            "upload",
            "--release",
            created["id"].as_str().unwrap(),
            "--platform",
            "darwin",
            "--arch",
            "universal",
            "--filetype",
            "dmg",
            file.to_str().unwrap(),
        ],
        &[("KEYWARD_CA_CERT", ca)],
    ));
    assert_eq!(up["size"], 3 * 1024 * 1024);
}
