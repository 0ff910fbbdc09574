//! The README runs as written. Every ```sh block (and every ```python block, fed to `python3`) is
//! run in order, in one bash shell, in an empty directory, against the real server binary: what a
//! reader pastes into a terminal, top to bottom.
//!
//! Only three things are translated, by shell functions defined before the README's text:
//! - `cargo run --release` (the server) starts the built binary in the background and waits until
//!   it is healthy; `cargo run --release -q -- ARGS` runs the built binary with ARGS;
//! - `cargo run --example NAME -- ARGS` runs the example `cargo test` already built;
//! - `curl` fails on an HTTP error (`--fail-with-body`), so an example that answers 4xx/5xx fails
//!   the test instead of printing an error nobody reads.
//!
//! The port is the only text changed: `3002` becomes a free port, so the test never collides with
//! a server a developer runs. The block that is `./test.sh` is skipped: it is what runs this test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The README's code blocks in order: (language, text).
fn code_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in readme.lines() {
        match current.as_mut() {
            None => {
                if let Some(lang) = line.strip_prefix("```") {
                    current = Some((lang.trim().to_string(), String::new()));
                }
            }
            Some((_, text)) => {
                if line.trim_start().starts_with("```") {
                    blocks.push(current.take().expect("open block"));
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(current.is_none(), "README.md has an unclosed code block");
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// The translation layer, run before the README's text (see the module comment).
const PRELUDE: &str = r#"
set -euo pipefail
set -a          # every variable is exported, so the Python blocks see what the shell set
KEYWARD_SERVER_PID=
trap '[ -n "$KEYWARD_SERVER_PID" ] && kill "$KEYWARD_SERVER_PID" 2>/dev/null; true' EXIT

cargo() {
    if [ "${1:-}" = run ] && [ "${2:-}" = --release ]; then
        shift 2
        [ "${1:-}" = -q ] && shift
        if [ $# -eq 0 ]; then
            "$KEYWARD_BIN" >server.log 2>&1 &
            KEYWARD_SERVER_PID=$!
            for _ in $(seq 1 200); do
                if "$KEYWARD_BIN" healthcheck >/dev/null 2>&1; then return 0; fi
                sleep 0.05
            done
            echo "README test: the server did not become healthy" >&2
            cat server.log >&2
            return 1
        fi
        [ "${1:-}" = -- ] && shift
        # `cargo run` replaces itself with the program; so does this in a subshell (`… &`,
        # `$(…)`), so that `kill $!` reaches the server itself.
        if [ "$BASHPID" != "$$" ]; then exec "$KEYWARD_BIN" "$@"; fi
        "$KEYWARD_BIN" "$@"
        return
    fi
    if [ "${1:-}" = run ] && [ "${2:-}" = --example ]; then
        local name=$3
        shift 3
        [ "${1:-}" = -- ] && shift
        "$KEYWARD_EXAMPLES/$name" "$@"
        return
    fi
    echo "README test: no translation for 'cargo $*'" >&2
    return 2
}

curl() {
    command curl --fail-with-body --max-time 30 "$@"
}
"#;

fn script(readme: &str, port: u16) -> String {
    let mut script = String::from(PRELUDE);
    let mut ran = 0;
    for (lang, text) in code_blocks(readme) {
        let text = text.replace("3002", &port.to_string());
        match lang.as_str() {
            "sh" | "bash" | "shell" => {
                if text.trim() == "./test.sh" {
                    continue;
                }
                script.push_str(&format!("\n# ---- README block {ran}\n"));
                script.push_str(&text);
            }
            "python" => {
                script.push_str(&format!("\n# ---- README block {ran} (python)\n"));
                script.push_str("python3 - <<'KEYWARD_README_PY'\n");
                script.push_str(&text);
                script.push_str("KEYWARD_README_PY\n");
            }
            _ => continue,
        }
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} runnable blocks found in README.md");
    script
}

fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/readme-<hash> → target/<profile>/examples
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples");
    for name in ["activate_and_verify", "update_client"] {
        assert!(
            dir.join(name).exists(),
            "{} is missing: `cargo test` builds the examples; run it from the repository",
            dir.join(name).display()
        );
    }
    dir
}

fn run_with_timeout(mut cmd: Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "--- stdout\n{}\n--- stderr (bash -x trace)\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("timed out after {limit:?}\n{text}")),
    }
}

#[test]
fn every_readme_shell_example_runs_in_order_in_one_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let port = free_port();
    let work = tempfile::tempdir().expect("temp dir");
    let script = script(&readme, port);
    std::fs::write(work.path().join("readme.sh"), &script).expect("write script");

    let mut cmd = Command::new("bash");
    cmd.arg("-x")
        .arg("readme.sh")
        .current_dir(work.path())
        .env("KEYWARD_BIN", env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_EXAMPLES", examples_dir())
        .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
        .env_remove("KEYWARD_DATA_DIR")
        .env("RUST_LOG", "warn");
    let (ok, output) = run_with_timeout(cmd, Duration::from_secs(300));
    let log = std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default();
    // Shown with `--nocapture`: the trace of a passing run is the README's examples, answered.
    eprintln!("{output}");
    assert!(
        ok,
        "the README's examples failed (script: {}):\n{output}\n--- server.log\n{log}",
        work.path().join("readme.sh").display()
    );
}

#[test]
fn code_blocks_are_read_in_order_with_their_language() {
    let blocks = code_blocks("text\n```sh\na\nb\n```\nmore\n```\nplain\n```\n```python\np\n```\n");
    assert_eq!(
        blocks,
        vec![
            ("sh".to_string(), "a\nb\n".to_string()),
            (String::new(), "plain\n".to_string()),
            ("python".to_string(), "p\n".to_string()),
        ]
    );
}
