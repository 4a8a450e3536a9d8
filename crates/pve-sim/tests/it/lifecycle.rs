//! Tasks, snapshots, locks and config semantics.

use serde_json::json;

use crate::harness::{start, state_dir, upid};

#[tokio::test]
async fn snapshot_task_status_and_log() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "100"]);
    let id = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/lxc/100/snapshot",
            &[("snapname", "before-up"), ("description", "pre")],
        )
        .await,
    );
    assert!(
        id.starts_with("UPID:pve:") && id.ends_with(":vzsnapshot:100:felhom-agent@pve!agent:"),
        "{id}"
    );
    let status = sim.wait_task(&id).await;
    assert_eq!(status["exitstatus"], json!("OK"));
    assert_eq!(status["user"], json!("felhom-agent@pve"));
    assert_eq!(status["tokenid"], json!("agent"));
    let log = sim
        .agent("GET", &format!("/nodes/pve/tasks/{id}/log"), &[])
        .await;
    let lines = log.data().as_array().expect("lines");
    assert_eq!(lines.last().map(|l| l["t"].clone()), Some(json!("TASK OK")));
    assert_eq!(log.json["total"], json!(lines.len()));
    let snaps = sim.agent("GET", "/nodes/pve/lxc/100/snapshot", &[]).await;
    let list = snaps.data().as_array().expect("list");
    assert_eq!(
        list.last().map(|s| s["name"].clone()),
        Some(json!("current"))
    );
    assert_eq!(
        list.last().map(|s| s["description"].clone()),
        Some(json!("You are here!"))
    );
    let snap = list
        .iter()
        .find(|s| s["name"] == json!("before-up"))
        .expect("snapshot listed");
    assert_eq!(snap["description"], json!("pre\n"));
    // Reserved names fail synchronously; a duplicate fails inside the task.
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/100/snapshot",
            &[("snapname", "current")],
        )
        .await;
    assert_eq!(
        (r.status, r.json["message"].clone()),
        (
            500,
            json!("unable to use snapshot name 'current' (reserved name)\n")
        )
    );
    let dup = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/lxc/100/snapshot",
            &[("snapname", "before-up")],
        )
        .await,
    );
    assert_eq!(
        sim.wait_task(&dup).await["exitstatus"],
        json!("snapshot name 'before-up' already used")
    );
    // Unknown and malformed UPIDs.
    let r = sim
        .agent("GET", "/nodes/pve/tasks/UPID:nonsense/status", &[])
        .await;
    assert_eq!(
        (r.status, r.json["errors"]["upid"].clone()),
        (400, json!("unable to parse worker upid"))
    );
    let ghost = id.replace(":vzsnapshot:", ":vzstart:");
    let r = sim
        .agent("GET", &format!("/nodes/pve/tasks/{ghost}/status"), &[])
        .await;
    assert_eq!(
        (r.status, r.json["errors"]["upid"].clone()),
        (400, json!("no such task"))
    );
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn locks_held_by_a_snapshot_task() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "1500"]);
    let snap = upid(
        &sim.agent("POST", "/nodes/pve/lxc/101/snapshot", &[("snapname", "s1")])
            .await,
    );
    // Config PUT: synchronous 500 with the reason phrase.
    let r = sim
        .agent("PUT", "/nodes/pve/lxc/101/config", &[("cores", "2")])
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json["message"], json!("CT is locked (snapshot)\n"));
    assert_eq!(r.reason.as_deref(), Some("CT is locked (snapshot)"));
    let current = sim
        .agent("GET", "/nodes/pve/lxc/101/status/current", &[])
        .await;
    assert_eq!(current.data()["lock"], json!("snapshot"));
    // Start (CT 101 is stopped): a UPID, then the task fails on the lock.
    let start_upid = upid(
        &sim.agent("POST", "/nodes/pve/lxc/101/status/start", &[])
            .await,
    );
    let status = sim.wait_task(&start_upid).await;
    assert_eq!(status["exitstatus"], json!("CT is locked (snapshot)"));
    let log = sim
        .agent("GET", &format!("/nodes/pve/tasks/{start_upid}/log"), &[])
        .await;
    assert_eq!(
        log.data()
            .as_array()
            .and_then(|l| l.last())
            .map(|l| l["t"].clone()),
        Some(json!("TASK ERROR: CT is locked (snapshot)"))
    );
    assert_eq!(sim.wait_task(&snap).await["exitstatus"], json!("OK"));
    let ok = sim
        .agent("PUT", "/nodes/pve/lxc/101/config", &[("cores", "2")])
        .await;
    assert_eq!((ok.status, ok.data().clone()), (200, json!(null)));
    // Injected failures and warnings.
    sim.control(
        "fail-next",
        json!({"vmid": 101, "exitstatus": "WARNINGS: 2"}),
    )
    .await;
    let w = upid(
        &sim.agent("POST", "/nodes/pve/lxc/101/status/start", &[])
            .await,
    );
    assert_eq!(sim.wait_task(&w).await["exitstatus"], json!("WARNINGS: 2"));
    let r = sim
        .agent("POST", "/nodes/pve/lxc/101/status/start", &[])
        .await;
    assert_eq!(r.json["message"], json!("CT 101 already running\n"));
}

#[tokio::test]
async fn config_digest_description_and_hwaddr() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "1"]);
    let cfg = sim.agent("GET", "/nodes/pve/lxc/100/config", &[]).await;
    let digest = cfg.data()["digest"].as_str().expect("digest").to_string();
    assert_eq!(digest.len(), 40);
    let old_mac = cfg.data()["net0"].as_str().expect("net0").to_string();
    assert!(old_mac.contains("hwaddr=BC:24:11:"), "{old_mac}");
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/100/config",
            &[("description", "hello"), ("digest", &digest)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/100/config",
            &[("memory", "1024"), ("digest", &digest)],
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        json!("detected modified configuration - file changed by other user? Try again.\n")
    );
    let cfg = sim.agent("GET", "/nodes/pve/lxc/100/config", &[]).await;
    assert_eq!(cfg.data()["description"], json!("hello\n"));
    assert_ne!(cfg.data()["digest"], json!(digest));
    // netN without hwaddr gets a fresh MAC.
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/100/config",
            &[("net0", "name=eth0,bridge=vmbr0,ip=dhcp")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cfg = sim.agent("GET", "/nodes/pve/lxc/100/config", &[]).await;
    let net0 = cfg.data()["net0"].as_str().expect("net0");
    assert!(net0.contains("hwaddr=BC:24:11:"), "{net0}");
    assert_ne!(net0, old_mac);
    let r = sim.agent("PUT", "/nodes/pve/lxc/100/config", &[]).await;
    assert_eq!(r.json["message"], json!("no options specified\n"));
    sim.assert_no_schema_errors().await;
}
