//! The fence (DESIGN.md §3.1): `privileged` must not be able to reach the network.
//!
//! 1. No normal dependency, direct or transitive, is an HTTP/network crate or an async runtime.
//! 2. Its sources name no socket type.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

const FORBIDDEN_CRATES: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper-util",
    "h2",
    "axum",
    "axum-server",
    "tokio-rustls",
    "rustls",
    "ureq",
    "curl",
    "isahc",
    "tokio",
    "mio",
    "socket2",
];

const FORBIDDEN_TOKENS: &[&str] = &[
    "std::net",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
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
fn no_network_crate_in_normal_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    // Only this platform's packages: the full graph names Windows crates that are not
    // downloaded here, and cargo would try to fetch them.
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
        .find(|(_, name)| **name == "privileged")
        .map(|(id, _)| *id)
        .expect("privileged in metadata");

    // Walk normal (non-dev, non-build) edges only: what ends up linked into the library.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let linked: BTreeSet<&str> = seen.iter().map(|id| names[id]).collect();
    assert!(linked.contains("serde_json"), "walk is broken: {linked:?}");
    let bad: Vec<&&str> = FORBIDDEN_CRATES
        .iter()
        .filter(|c| linked.contains(**c))
        .collect();
    assert!(
        bad.is_empty(),
        "privileged depends on network crates: {bad:?}"
    );
}

#[test]
fn sources_use_no_sockets() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
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
