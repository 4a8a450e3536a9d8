use std::path::{Path, PathBuf};

use serde_json::Value;

/// Source text that would let the library start a process.
const FORBIDDEN: &[&str] = &[
    "std::process",
    "tokio::process",
    "process::Command",
    "Command::new",
    "CommandExt",
    "libc::fork",
    "libc::exec",
    "libc::system",
    "posix_spawn",
    "nix::unistd",
    "execvp",
];

/// Crates the library must not depend on.
const FORBIDDEN_DEPS: &[&str] = &[
    "privileged",
    "nix",
    "libc",
    "duct",
    "subprocess",
    "command-group",
    "async-process",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines only: comments may say what the crate never does.
fn violations(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter_map(|code| {
            FORBIDDEN
                .iter()
                .find(|p| code.contains(*p))
                .map(|p| format!("{p}: {}", code.trim()))
        })
        .collect()
}

#[test]
fn scanner_catches_what_it_should() {
    assert_eq!(
        violations("let c = std::process::Command::new(\"ls\");").len(),
        1
    );
    assert_eq!(violations("use tokio::process::Command;").len(), 1);
    assert!(violations("//! never uses std::process").is_empty());
}

#[test]
fn library_source_never_spawns_a_process() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "scanned {} files", files.len());
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for v in violations(&text) {
            found.push(format!("{}: {v}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "process spawning in pve:\n{}",
        found.join("\n")
    );
}

#[test]
fn clippy_config_forbids_spawning() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("clippy.toml")).unwrap();
    assert!(text.contains("std::process::Command::new"));
    assert!(text.contains("disallowed-types"));
}

// The test (not the library) runs `cargo metadata`: that is the point of the fence check.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn metadata() -> Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn manifest_has_no_process_capability() {
    let meta = metadata();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pve")
        .expect("pve package");
    let normal: Vec<&Value> = pkg["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .collect();
    let tokio = normal
        .iter()
        .find(|d| d["name"] == "tokio")
        .expect("tokio dependency");
    let features: Vec<&str> = tokio["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !features.contains(&"process") && !features.contains(&"full"),
        "pve's own tokio enables {features:?}"
    );
    for d in &normal {
        let name = d["name"].as_str().unwrap();
        assert!(!FORBIDDEN_DEPS.contains(&name), "pve depends on {name}");
    }
}
