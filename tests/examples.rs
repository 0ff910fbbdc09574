//! The client programs under `examples/` prove themselves: each `--self-test` starts a server,
//! runs its flow, and checks that tampering is refused. `cargo test` builds the examples
//! before it runs tests, so a missing binary is a failure, not a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds examples; run it from the repository",
        path.display()
    );
    path
}

#[test]
fn example_clients_pass_their_self_tests() {
    for name in ["activate_and_verify", "envelope_client", "update_client"] {
        let out = Command::new(example(name))
            .arg("--self-test")
            .output()
            .expect("example runs");
        assert!(
            out.status.success(),
            "{name} --self-test failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
