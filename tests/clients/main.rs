//! The client recipes under `examples/clients/` (Python, Node, Java 17, C) run against what a
//! live server hands out: license and machine files, a signed validation answer with its nonce,
//! revocation lists before and after a revocation. Files and key lists the server cannot make
//! (issued in the future, expired, signed by rotated keys) are signed here with keys this test
//! holds. Every recipe gets the same table of cases; a missing toolchain fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod cases;
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use cases::cases;
use fixture::fixture;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clients")
}

/// Runs a tool's `--version` (or similar); the test fails, never skips, when it is missing.
fn require(program: &str, args: &[&str], install: &str) {
    let ok = Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{program} {}` failed: install {install} (./test.sh does)",
        args.join(" ")
    );
}

fn run_cases(language: &str, program: &str, prefix: &[String]) {
    let fx = fixture();
    let mut failures = Vec::new();
    for case in cases(fx) {
        let mut command = Command::new(program);
        command.args(prefix).args(&case.args);
        match case.now {
            Some(now) => command.env("KEYWARD_CLIENT_NOW", now),
            None => command.env_remove("KEYWARD_CLIENT_NOW"),
        };
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = |why: String| {
            format!(
                "{language}: {}: {why}\n  args: {:?}\n  stdout: {stdout}\n  stderr: {}",
                case.name,
                case.args,
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let printed: Value = match stdout.lines().last().map(serde_json::from_str) {
            Some(Ok(v)) => v,
            _ => {
                failures.push(report("did not print one JSON line".into()));
                continue;
            }
        };
        let code = out.status.code();
        let problem = match case.refused {
            None if code != Some(0) || printed["ok"] != json!(true) => {
                Some(format!("expected acceptance, got exit {code:?}"))
            }
            Some(error) if code != Some(1) || printed["error"] != json!(error) => Some(format!(
                "expected refusal {error} with exit 1, got exit {code:?}"
            )),
            _ => case.expect.iter().find_map(|(pointer, want)| {
                let got = printed.pointer(pointer);
                (got != Some(want)).then(|| format!("{pointer}: expected {want}, got {got:?}"))
            }),
        };
        failures.extend(problem.map(report));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn python_recipe() {
    require(
        "python3",
        &["-c", "import cryptography"],
        "python3 and its `cryptography` package",
    );
    let script = examples_dir().join("python/keyward_client.py");
    run_cases("python", "python3", &[script.display().to_string()]);
}

#[test]
fn node_recipe() {
    require(
        "node",
        &["--version"],
        "Node.js 18 or later (Debian: nodejs)",
    );
    let script = examples_dir().join("node/keyward_client.mjs");
    run_cases("node", "node", &[script.display().to_string()]);
}

#[test]
fn java_recipe() {
    require(
        "javac",
        &["-version"],
        "a JDK 17 (Debian: openjdk-17-jdk-headless)",
    );
    let source = examples_dir().join("java/KeywardClient.java");
    // The README runs it with the source launcher; the cases run the compiled class, which
    // starts several times faster.
    let classes = tempfile::tempdir().unwrap();
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let fx = fixture();
    let launched = Command::new("java")
        .arg(&source)
        .args([
            "file",
            &fx.path("trusted.json"),
            &fx.path("license.lic"),
            &fx.license,
        ])
        .output()
        .unwrap();
    assert!(
        launched.status.success()
            && String::from_utf8_lossy(&launched.stdout).contains(&fx.license),
        "java KeywardClient.java: {}{}",
        String::from_utf8_lossy(&launched.stdout),
        String::from_utf8_lossy(&launched.stderr)
    );
    run_cases(
        "java",
        "java",
        &[
            "-XX:TieredStopAtLevel=1".into(),
            "-cp".into(),
            classes.path().display().to_string(),
            "KeywardClient".into(),
        ],
    );
}

#[test]
fn c_recipe() {
    require("cc", &["--version"], "a C compiler (Debian: gcc)");
    require(
        "pkg-config",
        &["--exists", "libcrypto", "libcjson"],
        "pkg-config, libssl-dev and libcjson-dev",
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("keyward_client");
    // The build command the recipe's header gives.
    let built = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cc -O2 -Wall -Werror -o '{}' keyward_client.c $(pkg-config --cflags --libs libcrypto libcjson)",
            binary.display()
        ))
        .current_dir(examples_dir().join("c"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    run_cases("c", &binary.display().to_string(), &[]);
}
