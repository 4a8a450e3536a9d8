//! `felhom-agent selftest read|task` against a real `felhom-pve-sim` process over pinned HTTPS,
//! with the token read from a 0600 file as on a host.

use std::path::PathBuf;

use serde_json::json;
use testkit::{Sim, SimOptions};

use crate::{agent, run, Fixture};

/// A configuration pointing at `sim`, the agent token in a 0600 file.
fn config_for(fx: &Fixture, sim: &Sim, fingerprint: Option<&str>) -> PathBuf {
    let token = fx.write("proxmox-token", &format!("{}\n", sim.info.token), 0o600);
    fx.config(&json!({
        "host_id": "host-1",
        "state_dir": fx.path("state").display().to_string(),
        "proxmox": {
            "url": sim.info.url,
            "node": sim.info.node,
            "token": {"file": token.display().to_string()},
            "fingerprint": fingerprint.unwrap_or(&sim.info.fingerprint),
        },
        "log": {"level": "warn"}
    }))
}

fn selftest(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = agent();
    cmd.arg("selftest").args(args).arg("--config").arg(config);
    run(&mut cmd)
}

fn start_sim() -> Sim {
    Sim::start(SimOptions::default().guests(2).task_ms(100)).expect("simulator")
}

#[test]
fn read_passes_with_the_felhom_agent_role() {
    let sim = start_sim();
    let fx = Fixture::new();
    let (code, out, err) = selftest(&config_for(&fx, &sim, None), &["read"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for line in [
        "ok    version      Proxmox VE 9.1",
        "ok    permissions  all 16 FelhomAgent privileges on /",
        "ok    guests       2 container(s)",
        "skip  usb          needs Sys.Modify",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains(&sim.info.token) && !err.contains(&sim.info.token));
}

#[tokio::test(flavor = "multi_thread")]
async fn read_names_each_missing_privilege() {
    let sim = start_sim();
    // The token keeps its ACL but with a role lacking two privileges: user ∩ token loses them.
    let partial: Vec<&str> = pve::FELHOM_AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !matches!(*p, "VM.Backup" | "SDN.Use"))
        .collect();
    sim.control(
        "POST",
        "/_sim/role",
        Some(json!({"roleid": "Partial", "privs": partial})),
    )
    .await
    .expect("role");
    let token_id = sim.info.token.split('=').next().expect("token id");
    sim.control(
        "POST",
        "/_sim/acl",
        Some(json!({"path": "/", "ugid": token_id, "roles": ["FelhomAgent"], "delete": 1})),
    )
    .await
    .expect("acl delete");
    sim.control(
        "POST",
        "/_sim/acl",
        Some(json!({"path": "/", "ugid": token_id, "roles": ["Partial"]})),
    )
    .await
    .expect("acl set");
    let fx = Fixture::new();
    let config = config_for(&fx, &sim, None);
    let (code, out, err) = tokio::task::spawn_blocking(move || selftest(&config, &["read"]))
        .await
        .expect("join");
    assert_ne!(code, 0, "{out}");
    let reason: Vec<&str> = err.lines().collect();
    assert_eq!(reason.len(), 1, "one-line reason expected: {err}");
    assert!(
        reason[0].contains(
            "permissions: token lacks 2 of the FelhomAgent privileges on /: VM.Backup, SDN.Use"
        ),
        "{err}"
    );
    // The read-only checks the remaining privileges allow still pass.
    assert!(out.contains("ok    guests"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_fails_when_only_the_user_has_the_role() {
    // The privsep gotcha: without its own ACL the token has nothing, whatever the user has.
    let sim = start_sim();
    let token_id = sim.info.token.split('=').next().expect("token id");
    sim.control(
        "POST",
        "/_sim/acl",
        Some(json!({"path": "/", "ugid": token_id, "roles": ["FelhomAgent"], "delete": 1})),
    )
    .await
    .expect("acl delete");
    let fx = Fixture::new();
    let config = config_for(&fx, &sim, None);
    let (code, out, err) = tokio::task::spawn_blocking(move || selftest(&config, &["read"]))
        .await
        .expect("join");
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("lacks 16 of the FelhomAgent privileges")
            || err.contains("Permission check failed"),
        "{err}"
    );
    assert!(out.contains("FAIL  permissions"), "{out}");
}

#[test]
fn read_refuses_a_certificate_it_does_not_know() {
    let sim = start_sim();
    let fx = Fixture::new();
    let other = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
    let (code, out, err) = selftest(&config_for(&fx, &sim, Some(other)), &["read"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(other) && err.contains(&sim.info.fingerprint),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_cycle_leaves_each_guest_as_it_was() {
    let sim = start_sim();
    let client = sim.client(false).expect("client");
    let fx = Fixture::new();
    let config = config_for(&fx, &sim, None);
    for vmid in [100u32, 101] {
        let id = pve::Vmid::new(vmid).expect("vmid");
        let before = client.lxc_status(id).await.expect("status");
        let snaps_before = client.list_snapshots(id).await.expect("snapshots").len();
        let cfg = config.clone();
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            selftest(&cfg, &["task", "--vmid", &vmid.to_string()])
        })
        .await
        .expect("join");
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        for step in [
            "ok    snapshot",
            "ok    rollback",
            "ok    delete",
            "ok    unchanged",
        ] {
            assert!(out.contains(step), "missing {step:?}:\n{out}");
        }
        let after = client.lxc_status(id).await.expect("status");
        assert_eq!(after.status, before.status, "power state changed");
        assert_eq!(
            client.list_snapshots(id).await.expect("snapshots").len(),
            snaps_before
        );
    }
    // Each step was a real task, waited for: three per guest, all OK.
    let tasks = sim
        .control("GET", "/_sim/tasks", None)
        .await
        .expect("tasks");
    let kinds: Vec<(&str, &str)> = tasks
        .as_array()
        .expect("array")
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap_or(""),
                t["exitstatus"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for kind in ["vzsnapshot", "vzrollback", "vzdelsnapshot"] {
        assert_eq!(
            kinds
                .iter()
                .filter(|(k, s)| *k == kind && *s == "OK")
                .count(),
            2,
            "{kinds:?}"
        );
    }
}

#[test]
fn task_on_an_unknown_guest_says_so() {
    let sim = start_sim();
    let fx = Fixture::new();
    let (code, out, err) = selftest(&config_for(&fx, &sim, None), &["task", "--vmid", "999"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("guest 999 does not exist on node pve"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_on_a_locked_guest_changes_nothing() {
    let sim = start_sim();
    let client = sim.client(false).expect("client");
    sim.control("POST", "/_sim/task-ms", Some(json!({"ms": 5000})))
        .await
        .expect("task-ms");
    let id = pve::Vmid::new(100).expect("vmid");
    let name: pve::SnapshotName = "held".parse().expect("name");
    client
        .create_snapshot(id, &name, None)
        .await
        .expect("snapshot task");
    let fx = Fixture::new();
    let config = config_for(&fx, &sim, None);
    let (code, out, err) =
        tokio::task::spawn_blocking(move || selftest(&config, &["task", "--vmid", "100"]))
            .await
            .expect("join");
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("guest 100 is locked (snapshot)"), "{err}");
    // Nothing was started by the selftest: the only snapshot task is ours.
    let tasks = sim
        .control("GET", "/_sim/tasks", None)
        .await
        .expect("tasks");
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{tasks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollback_is_reported_and_cleaned_up() {
    let sim = start_sim();
    sim.control("POST", "/_sim/task-ms", Some(json!({"ms": 400})))
        .await
        .expect("task-ms");
    let fx = Fixture::new();
    let config = config_for(&fx, &sim, None);
    // Fail the guest's second task (the rollback): `fail-next` is consumed by the next task
    // that starts on the guest, so arm it while the snapshot task (400 ms) is still running.
    let child = std::thread::spawn(move || selftest(&config, &["task", "--vmid", "101"]));
    let client = sim.client(false).expect("client");
    let id = pve::Vmid::new(101).expect("vmid");
    // Wait for the selftest's snapshot to exist, then arm the failure for the next task.
    for _ in 0..200 {
        if !client
            .list_snapshots(id)
            .await
            .expect("snapshots")
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sim.control(
        "POST",
        "/_sim/fail-next",
        Some(json!({"vmid": 101, "exitstatus": "rollback failed: simulated"})),
    )
    .await
    .expect("fail-next");
    let (code, out, err) = child.join().expect("join");
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("rollback") && err.contains("rollback failed: simulated"),
        "{err}"
    );
    assert!(out.contains("ok    cleanup"), "{out}");
    assert!(client
        .list_snapshots(id)
        .await
        .expect("snapshots")
        .is_empty());
}
