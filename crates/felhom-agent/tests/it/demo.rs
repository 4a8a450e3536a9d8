//! `felhom-agent demo` runs end to end with no configuration and shows each part working.

use crate::{agent, run};

#[test]
fn demo_runs_without_configuration() {
    let mut cmd = agent();
    cmd.args(["demo", "--task-ms", "50"]);
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for expected in [
        "ok    permissions  all 16 FelhomAgent privileges on /",
        "ok    unchanged    guest 100 is running",
        "does not match the pinned fingerprint",
        "guest is locked (backup)",
        "archive on storage local: local:backup/vzdump-lxc-101-",
        "never leaves the agent",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The token is shown redacted only.
    assert!(out.contains("<redacted>"), "{out}");
    assert!(!out.contains("felhom-agent@pve!agent="), "{out}");
}
