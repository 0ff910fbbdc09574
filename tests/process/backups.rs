//! Backup archives and restores as an operator runs them: the drill under write load, and every
//! way a restore must refuse.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{installation, keyward, post, serve, serve_with, setup, stdout};

/// The database file inside an archive, extracted to a temporary file.
pub fn database_in(archive: &Path) -> tempfile::NamedTempFile {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut out = tempfile::NamedTempFile::new().unwrap();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("keyward.db") {
            std::io::copy(&mut entry, &mut out).unwrap();
            return out;
        }
    }
    panic!("no keyward.db in {}", archive.display());
}

fn entry_names(archive: &Path) -> Vec<String> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names in `dir`, hidden ones included (a failed restore must leave none behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks an Ed25519 signature (base64) over `body` with a public key (base64).
fn verifies(public_key: &str, body: &[u8], signature: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = b64.decode(public_key).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&key).unwrap();
    let signature = Signature::from_slice(&b64.decode(signature).unwrap()).unwrap();
    key.verify(body, &signature).is_ok()
}

async fn public_key(client: &reqwest::Client, url: &str, slug: &str) -> String {
    let body: Value = client
        .get(format!("{url}/api/v1/updates/public-key?product={slug}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["publicKey"].as_str().unwrap().to_owned()
}

/// The drill: an archive made while licenses are being created holds every license
/// acknowledged before it started; the restored server starts, and what it signs verifies with
/// the public key fetched before the backup; the release bundle comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_drill_under_write_load() {
    let dir = installation();
    let (product, key) = setup(dir.path());
    let admin = stdout(&keyward(
        dir.path(),
        &[
            "apikey",
            "create",
            "--name",
            "release ci",
            "--scope",
            "FULL_ADMIN",
        ],
    ));
    let (mut child, url) = serve(dir.path());
    let client = reqwest::Client::new();

    let bundle: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let bundle_sha = hex::encode(Sha256::digest(&bundle));
    let form = reqwest::multipart::Form::new()
        .text("version", "1.0.0")
        .text("channel", "stable")
        .part(
            "bundle",
            reqwest::multipart::Part::bytes(bundle.clone()).file_name("app-1.0.0.tar.gz"),
        );
    let uploaded = client
        .post(format!("{url}/api/projects/{product}/releases"))
        .header("X-API-Key", &admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploaded.status().as_u16(),
        201,
        "{}",
        uploaded.text().await.unwrap()
    );
    let key_before = public_key(&client, &url, "crash-app").await;

    // Licenses created one after another until told to stop, each with the moment its 201
    // arrived.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let load = {
        let (client, url, key, product) =
            (client.clone(), url.clone(), key.clone(), product.clone());
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = post(
                    &client,
                    &format!("{url}/api/v1/license/create"),
                    &key,
                    json!({"productId": product, "customerEmail": format!("load{i}@example.com")}),
                )
                .await;
                assert_eq!(status, 201, "{body}");
                let license = body["license"]["key"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push((license, Instant::now()));
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("drill.tar");
    let started = Instant::now();
    let out = {
        let (data, archive) = (dir.path().to_path_buf(), archive.clone());
        tokio::task::spawn_blocking(move || keyward(&data, &["backup", archive.to_str().unwrap()]))
            .await
            .unwrap()
    };
    let finished = Instant::now();
    assert!(out.status.success(), "{}", stderr(&out));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let all = acknowledged.lock().unwrap().clone();
    let before: Vec<&String> = all
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(k, _)| k)
        .collect();
    let during = all
        .iter()
        .filter(|(_, at)| *at >= started && *at <= finished)
        .count();
    eprintln!(
        "drill: {} license(s) acknowledged before the backup, {during} while it ran ({} ms), {} \
         in all",
        before.len(),
        (finished - started).as_millis(),
        all.len()
    );
    assert!(!before.is_empty());
    assert_eq!(mode(&archive), 0o600, "the archive is private");
    let names = entry_names(&archive);
    assert_eq!(
        names,
        [
            "keyward.db".to_owned(),
            "master.key".to_owned(),
            format!("bundles/{bundle_sha}"),
            "manifest.json".to_owned()
        ]
    );

    let restored = work.path().join("restored");
    let out = keyward(&restored, &["restore", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every checksum matched"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("master.key")), 0o600);
    assert_eq!(mode(&restored.join("bundles")), 0o700);
    let restored_bundle = std::fs::read(restored.join("bundles").join(&bundle_sha)).unwrap();
    assert!(
        restored_bundle == bundle,
        "the bundle comes back byte for byte"
    );

    let (mut child, url) = serve(&restored);
    assert_eq!(
        public_key(&client, &url, "crash-app").await,
        key_before,
        "the same signing key after the restore"
    );
    for (i, license) in before.iter().enumerate() {
        let resp = client
            .post(format!("{url}/api/v1/license/activate"))
            .header("X-API-Key", &key)
            .json(&json!({"licenseKey": license, "machineId": format!("restored-{i:05}")}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let signature = resp
            .headers()
            .get("x-signature")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            status,
            200,
            "{license}, acknowledged before the backup: {}",
            String::from_utf8_lossy(&body)
        );
        let signature = signature.expect("a signed answer");
        assert!(
            verifies(&key_before, &body, &signature),
            "the answer for {license} verifies with the key from before the backup"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A restore never touches a directory that holds anything, and leaves nothing beside it.
#[test]
fn restore_refuses_a_non_empty_directory() {
    let dir = installation();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("a.tar");
    stdout(&keyward(dir.path(), &["backup", archive.to_str().unwrap()]));
    let target = work.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("notes.txt"), "mine").unwrap();

    let out = keyward(&target, &["restore", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert_eq!(listing(&target), ["notes.txt"]);
    assert_eq!(listing(work.path()), ["a.tar", "busy"]);

    // An existing empty directory is fine, and is then the installation.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = keyward(&empty, &["restore", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listing(&empty), ["keyward.db", "master.key"]);
    stdout(&keyward(&empty, &["tenant", "list"]));
}

/// A flipped byte in an entry, a cut-off archive, a missing manifest: refused, nothing written.
#[test]
fn a_damaged_archive_is_refused_and_nothing_is_written() {
    let dir = installation();
    stdout(&keyward(
        dir.path(),
        &["product", "create", "--name", "A", "--slug", "a"],
    ));
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("good.tar");
    stdout(&keyward(dir.path(), &["backup", archive.to_str().unwrap()]));
    let bytes = std::fs::read(&archive).unwrap();

    // The first entry's data starts after its 512-byte header.
    let mut flipped = bytes.clone();
    flipped[512 + 4000] ^= 0x01;
    // Cut inside the database entry, and cut just before the manifest's header.
    let cut = bytes[..20_000].to_vec();
    let manifest_at = bytes
        .windows(13)
        .position(|w| w == b"manifest.json")
        .unwrap();
    let no_manifest = bytes[..manifest_at].to_vec();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("flipped.tar", flipped, "does not match the manifest"),
        ("cut.tar", cut, "damaged or truncated"),
        ("no-manifest.tar", no_manifest, "has no manifest.json"),
    ];
    for (name, content, expected) in cases {
        let path = work.path().join(name);
        std::fs::write(&path, content).unwrap();
        let target = work.path().join(format!("restored-{name}"));
        let out = keyward(&target, &["restore", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was restored"),
            "{name}: {}",
            stderr(&out)
        );
        assert!(!target.exists(), "{name}: no target directory");
        assert!(
            !listing(work.path()).iter().any(|n| n.starts_with('.')),
            "{name}: no temporary directory left: {:?}",
            listing(work.path())
        );
    }
}

/// An encrypted archive: unreadable without the passphrase, refused with a wrong one, restored
/// with the right one; passphrases come from a file or an environment variable.
#[test]
fn an_encrypted_archive_needs_its_passphrase() {
    let dir = installation();
    stdout(&keyward(
        dir.path(),
        &["product", "create", "--name", "A", "--slug", "a"],
    ));
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("secret.tar.age");
    let out = std::process::Command::new(super::BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "backup",
            archive.to_str().unwrap(),
            "--passphrase-env",
            "BACKUP_PASS",
        ])
        .env("BACKUP_PASS", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&archive), 0o600);
    let mut head = [0u8; 21];
    std::fs::File::open(&archive)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"age-encryption.org/v1");
    let raw = std::fs::read(&archive).unwrap();
    assert!(
        !raw.windows(13).any(|w| w == b"manifest.json"),
        "nothing readable inside"
    );

    let wrong = work.path().join("wrong.txt");
    std::fs::write(&wrong, "Tr0ub4dor&3\n").unwrap();
    let right = work.path().join("right.txt");
    std::fs::write(&right, "correct horse battery staple\n").unwrap();
    let target = work.path().join("restored");
    let cases: [(&[&str], Option<&str>); 3] = [
        (&[], Some("is encrypted with a passphrase")),
        (
            &["--passphrase-file", wrong.to_str().unwrap()],
            Some("wrong passphrase"),
        ),
        (&["--passphrase-file", right.to_str().unwrap()], None),
    ];
    for (flags, refusal) in cases {
        let mut args = vec!["restore", archive.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = keyward(&target, &args);
        match refusal {
            Some(expected) => {
                assert_eq!(out.status.code(), Some(1), "{flags:?}");
                assert!(
                    stderr(&out).contains(expected),
                    "{flags:?}: {}",
                    stderr(&out)
                );
                assert!(!target.exists());
            }
            None => assert!(out.status.success(), "{}", stderr(&out)),
        }
    }
    let products = stdout(&keyward(&target, &["product", "list"]));
    assert!(products.contains("a"), "{products}");
}

/// `serve --backup-every 1s --backup-keep 2`: archives keep coming, only the newest two stay,
/// other files in the directory are left alone (an interrupted backup's leftovers are removed),
/// and the newest restores.
#[test]
fn scheduled_backups_keep_the_newest() {
    let dir = installation();
    let work = tempfile::tempdir().unwrap();
    let backups = work.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::fs::write(backups.join("keep-me.tar"), "an operator's own file").unwrap();
    let leftover = backups.join(".keyward-20261130T030000.000Z.tar.partial-0123456789");
    std::fs::write(
        &leftover,
        "half an archive, from a server stopped while it wrote one",
    )
    .unwrap();
    let (mut child, _url) = serve_with(
        dir.path(),
        &[
            "--backup-every",
            "1s",
            "--backup-keep",
            "2",
            "--backup-dir",
            backups.to_str().unwrap(),
        ],
    );
    let scheduled = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = listing(dir)
            .into_iter()
            .filter(|n| n.starts_with("keyward-") && n.ends_with(".tar"))
            .map(|n| dir.join(n))
            .collect();
        found.sort();
        found
    };
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 4 && Instant::now() < deadline {
        for path in scheduled(&backups) {
            seen.insert(path);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past the 4th archive; wait out a rotation that may be under way.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.len() >= 4, "archives made: {seen:?}");
    let left = scheduled(&backups);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(backups.join("keep-me.tar").exists());
    assert!(
        !leftover.exists(),
        "an interrupted backup's leftovers are removed"
    );
    let newest = left.last().unwrap();
    assert_eq!(mode(newest), 0o600);
    let restored = work.path().join("restored");
    let out = keyward(&restored, &["restore", newest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}
