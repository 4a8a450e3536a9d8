//! The files this crate embeds or mirrors must be the shared reference copies, byte for byte.

use std::path::PathBuf;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn vendored_reference_matches_shared_copy() {
    let shared = manifest_dir().join("../../../shared/reference");
    if !shared.is_dir() {
        eprintln!(
            "note: {} not present, skipping the comparison",
            shared.display()
        );
        return;
    }
    let vendored = manifest_dir().join("../../reference");
    for name in ["pve-apidoc.json", "pve_schema.py"] {
        let ours = std::fs::read(vendored.join(name)).expect("read vendored reference file");
        let theirs = std::fs::read(shared.join(name)).expect("read shared reference file");
        assert!(
            ours == theirs,
            "{name} differs from the shared reference copy"
        );
    }
    // The embedded text is the vendored file, not a stale build artefact.
    let shared_json = std::fs::read_to_string(shared.join("pve-apidoc.json")).expect("read");
    assert!(
        pve_schema::EMBEDDED_JSON == shared_json,
        "embedded schema differs from shared copy"
    );
}
