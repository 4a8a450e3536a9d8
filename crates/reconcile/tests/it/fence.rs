//! The one-executor fence (DESIGN.md §3 invariant 9): every guest mutation is a step the
//! reconcile executor runs, so no agent code outside the reconcile crate may call a mutating
//! `pve::Client` method, with one exception: the executor's own Proxmox port, which the binary
//! implements on `pve::Client` (`crates/felhom-agent/src/pve_port.rs`) and which only the
//! executor calls, through the `reconcile::Proxmox` trait. Like the process fence
//! of the `pve` crate, this reads the sources: the mutating methods are found in `crates/pve`
//! (every `pub async fn` whose body sends POST, PUT or DELETE), so a new one is fenced the day
//! it is written; then every other agent source is searched for a call to any of them.
//!
//! Not agent code, and so not searched: `pve` itself, the simulator, the reference hub, the
//! test harness (`testkit`, which drives the simulator with its root token), and `tests/`,
//! `examples/` and `benches/` directories.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the workspace root")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `pub async fn` names in `pve`'s sources whose bodies send a mutating request.
fn mutating_methods() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates/pve/src"), &mut files);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("pve source");
        let starts: Vec<usize> = text
            .match_indices("pub async fn ")
            .map(|(i, _)| i)
            .collect();
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(text.len());
            let body = &text[start..end];
            let name: String = body["pub async fn ".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ["Method::POST", "Method::PUT", "Method::DELETE"]
                .iter()
                .any(|m| body.contains(m))
            {
                out.push(name);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn no_code_outside_the_reconcile_crate_posts_a_mutating_proxmox_call() {
    let methods = mutating_methods();
    // The scan finds what it must: a sanity check that would fail if the detection broke.
    for known in [
        "start_lxc",
        "destroy_lxc",
        "update_lxc_config",
        "create_snapshot",
        "rollback_snapshot",
        "delete_snapshot",
        "vzdump",
    ] {
        assert!(
            methods.iter().any(|m| m == known),
            "{known} not found in {methods:?}"
        );
    }
    let root = workspace();
    let port = root.join("crates/felhom-agent/src/pve_port.rs");
    assert!(port.exists(), "the executor's port moved: update this test");
    let skip = ["reconcile", "pve", "pve-sim", "hub-sim", "testkit"];
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        rust_files(&entry.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "too few sources found: {}", files.len());
    let mut offences = Vec::new();
    for file in files.iter().filter(|f| **f != port) {
        let text = std::fs::read_to_string(file).expect("source");
        for method in &methods {
            let call = format!(".{method}(");
            for (lineno, line) in text.lines().enumerate() {
                if line.contains(&call) && !line.trim_start().starts_with("//") {
                    offences.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        lineno + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "mutating Proxmox calls outside the executor's port (submit a GuestOp through \
         reconcile::EngineHandle instead):\n{}",
        offences.join("\n")
    );
}
