//! The fence of the root helper: it links `thiserror` and nothing else, and its sources name no
//! socket, no environment lookup and no shell.
//!
//! Stricter than `privileged`'s fence (which forbids a list of network crates): the helper runs
//! as root on argv from sudo, so its whole normal dependency graph is an allowlist.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

/// Every crate the helper may link, including build-time proc-macro dependencies of thiserror.
const ALLOWED_CRATES: &[&str] = &[
    "mount-helper",
    "thiserror",
    "thiserror-impl",
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
];

const FORBIDDEN_TOKENS: &[&str] = &[
    // network
    "std::net",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
    // environment and configuration: every path is a constant in `Paths::system`
    "env::var",
    "var_os",
    "vars_os",
    "current_exe",
    // no shell
    "/bin/sh",
    "\"sh\"",
    "bash",
];

fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV prints the host")
        .to_owned()
}

#[test]
fn links_only_allowed_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host_triple(), "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, name)| **name == "mount-helper")
        .map(|(id, _)| *id)
        .expect("mount-helper in metadata");

    // Normal and build edges: everything that goes into building the binary, not dev-deps.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let not_dev = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].as_str() != Some("dev"));
            if not_dev {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let linked: BTreeSet<&str> = seen.iter().map(|id| names[id]).collect();
    assert!(linked.contains("thiserror"), "walk is broken: {linked:?}");
    let extra: Vec<&&str> = linked
        .iter()
        .filter(|c| !ALLOWED_CRATES.contains(c))
        .collect();
    assert!(
        extra.is_empty(),
        "the root helper links more than thiserror: {extra:?}"
    );
}

#[test]
fn sources_use_no_sockets_environment_or_shell() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    assert!(files.len() >= 5, "found only {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for token in FORBIDDEN_TOKENS {
            assert!(!text.contains(token), "{} uses {token}", file.display());
        }
    }
}
