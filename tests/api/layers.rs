//! The layering rules of docs/architecture.md, checked on the source: faces (HTTP handlers and
//! the CLI) call services and nothing below them, and no face imports a sibling face.

use std::path::{Path, PathBuf};

const FACES: [&str; 5] = ["v1", "client", "admin", "portal", "payments"];

/// What only `src/service/` may do: read or write storage, queue writer jobs, record audit
/// events.
const BELOW_THE_SERVICES: [&str; 8] = [
    "repo::",
    ".db.read(",
    ".db.write(",
    ".writer()",
    "audit::repo",
    "AuditEvent::new",
    ".record(",
    "rusqlite",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines only: comments may name what they like.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .expect("source file")
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            !(t.starts_with("//") || t.starts_with("///") || t.starts_with("//!"))
        })
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

fn faces() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/api"), &mut files);
    files.push(root.join("src/cli.rs"));
    rust_files(&root.join("src/cli"), &mut files);
    files
}

#[test]
fn faces_call_services_and_nothing_below_them() {
    let mut leaks = Vec::new();
    for file in faces() {
        for (n, line) in code_lines(&file) {
            for pattern in BELOW_THE_SERVICES {
                if line.contains(pattern) {
                    leaks.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "faces must call src/service only:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn no_face_imports_a_sibling_face() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut leaks = Vec::new();
    for face in FACES {
        let mut files = Vec::new();
        rust_files(&root.join(face), &mut files);
        for file in files {
            for (n, line) in code_lines(&file) {
                for other in FACES.iter().filter(|f| **f != face) {
                    if line.contains(&format!("api::{other}::")) {
                        leaks.push(format!("{}:{n}: {}", file.display(), line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "faces share code through src/api/shared only:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_vendor_face_is_not_in_a_folder_named_vendor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!root.join("src/api/vendor").exists());
    assert!(root.join("src/api/v1").is_dir());
}
