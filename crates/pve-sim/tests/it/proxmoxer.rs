//! Python's `proxmoxer` (from PyPI, unchanged) against the simulator: a PVE client nobody here
//! wrote must work as it does against a real node. The request log it leaves is then audited
//! with the independent Python schema validator (tools/schema_audit.py).

use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{start, state_dir, Sim};

fn run_python(py: &std::path::Path, args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(py);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run python")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Feeds the simulator's request log to tools/schema_audit.py and asserts it passes.
async fn audit(py: &std::path::Path, sim: &Sim) {
    let log = sim.request_log().await;
    assert!(!log.is_empty(), "request log is empty");
    let dir = state_dir();
    let file = dir.path().join("requests.json");
    std::fs::write(&file, serde_json::to_vec(&log).expect("json")).expect("write log");
    let script = testkit::workspace_root().join("tools/schema_audit.py");
    let out = run_python(
        py,
        &[
            script.to_str().expect("utf-8 path"),
            file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(out.status.success(), "schema audit failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxmoxer_drives_the_simulator_unchanged() {
    let Some(py) = testkit::python_with(&["proxmoxer", "requests"]).expect("python") else {
        return;
    };
    let state = state_dir();
    let sim = start(state.path(), &["--guests", "2", "--task-ms", "100"]);
    let script = testkit::workspace_root().join("tests/python/proxmoxer_drive.py");
    let out = run_python(
        &py,
        &[script.to_str().expect("utf-8 path")],
        &[
            ("SIM_URL", sim.url.clone()),
            ("SIM_TOKEN", sim.token.clone()),
            (
                "SIM_CA",
                state.path().join("pve-ssl.pem").display().to_string(),
            ),
            ("SIM_NODE", "pve".into()),
            ("SIM_VMID", "100".into()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).expect("driver prints JSON");
    assert_eq!(seen["version"], "9.1");
    assert_eq!(seen["guests"], serde_json::json!([100, 101]));
    assert_eq!(seen["description"], "set by proxmoxer\n");
    assert_eq!(seen["digest_changed"], true);
    assert_eq!(seen["hwaddr_kept"], true);
    assert_eq!(
        seen["tasks"],
        serde_json::json!([
            ["vzsnapshot", "stopped", "OK"],
            ["vzrollback", "stopped", "OK"],
            ["vzdelsnapshot", "stopped", "OK"]
        ])
    );
    assert_eq!(seen["snapshots_after"], serde_json::json!(["current"]));
    assert_eq!(seen["last_log_line"], "TASK OK");
    assert_eq!(seen["bad_name"]["status"], 400);
    assert!(
        seen["bad_name"]["errors"]["snapname"]
            .as_str()
            .is_some_and(|m| m.contains("invalid format")),
        "{}",
        seen["bad_name"]
    );
    sim.assert_no_schema_errors().await;
    audit(&py, &sim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proxmoxer_smoke_covers_the_simulated_surface() {
    let Some(py) = testkit::python_with(&["proxmoxer", "requests"]).expect("python") else {
        return;
    };
    let state = state_dir();
    let sim = start(state.path(), &["--guests", "3", "--task-ms", "50"]);
    let ready = state.path().join("ready.json");
    std::fs::write(&ready, sim.ready.to_string()).expect("write ready line");
    let script = testkit::workspace_root().join("crates/pve-sim/scripts/proxmoxer_smoke.py");
    let out = run_python(
        &py,
        &[
            script.to_str().expect("utf-8 path"),
            ready.to_str().expect("utf-8 path"),
            state.path().to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    sim.assert_no_schema_errors().await;
    audit(&py, &sim).await;
}
