//! Envelope, status codes, messages and the request log.

use serde_json::json;

use crate::harness::{start, state_dir};

#[tokio::test]
async fn ready_line_has_the_fixed_shape() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let keys: Vec<&str> = sim
        .ready
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["url", "fingerprint", "node", "token", "root_token"]);
    assert!(sim.url.starts_with("https://127.0.0.1:"));
    assert_eq!(sim.ready["node"], json!("pve"));
    assert!(sim.token.starts_with("felhom-agent@pve!agent="));
    assert!(sim.root_token.starts_with("root@pam!sim="));
    let fp = sim.ready["fingerprint"].as_str().expect("fp");
    assert_eq!(fp.len(), 95);
    assert!(fp
        .chars()
        .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    assert!(dir.path().join("pve-ssl.pem").exists());
    let version = sim.agent("GET", "/version", &[]).await;
    assert_eq!(version.status, 200);
    assert_eq!(version.data()["release"], json!("9.1"));
}

#[tokio::test]
async fn missing_or_bad_token_gives_401_with_empty_body() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let none = sim.call("GET", "/version", None, &[]).await;
    assert_eq!((none.status, none.text.as_str()), (401, ""));
    let bad = sim
        .call("GET", "/version", Some("felhom-agent@pve!agent=wrong"), &[])
        .await;
    assert_eq!((bad.status, bad.text.as_str()), (401, ""));
}

#[tokio::test]
async fn token_without_privilege_gets_pve_403_text() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2"]);
    // Take VM.PowerMgmt away from the token only on /vms/101: the user still has it, the
    // privsep intersection does not.
    let r = sim
        .control("role", json!({"roleid": "Viewer", "privs": ["VM.Audit"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .control("acl", json!({"path": "/vms/101", "ugid": "felhom-agent@pve!agent", "roles": ["Viewer"], "propagate": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent("POST", "/nodes/pve/lxc/101/status/start", &[])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json,
        json!({"data": null, "message": "Permission check failed (/vms/101, VM.PowerMgmt)\n"})
    );
    assert_eq!(
        r.reason.as_deref(),
        Some("Permission check failed (/vms/101, VM.PowerMgmt)")
    );
    let perms = sim
        .agent("GET", "/access/permissions", &[("path", "/vms/101")])
        .await;
    assert_eq!(perms.data(), &json!({"/vms/101": {"VM.Audit": 1}}));
    // Sys.Modify is not in FelhomAgent: USB listing is forbidden, root's token may.
    let usb = sim.agent("GET", "/nodes/pve/hardware/usb", &[]).await;
    assert_eq!(
        usb.json["message"],
        json!("Permission check failed (/, Sys.Modify)\n")
    );
    assert_eq!(
        sim.root("GET", "/nodes/pve/hardware/usb", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn validation_errors_and_unknown_methods() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2"]);
    let r = sim
        .agent("PUT", "/nodes/pve/lxc/101/config", &[("onboot", "true")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["message"], json!("Parameter verification failed.\n"));
    assert_eq!(
        r.json["errors"]["onboot"],
        json!("type check ('boolean') failed - got 'true'")
    );
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/101/status/start",
            &[("vmid", "102")],
        )
        .await;
    assert_eq!(
        r.json["errors"]["vmid"],
        json!("duplicate parameter (already defined in URI) with conflicting values!")
    );
    let r = sim.agent("GET", "/nodes/pve/nothing", &[]).await;
    assert_eq!(r.status, 501);
    assert_eq!(
        r.json["message"],
        json!("Method 'GET /nodes/pve/nothing' not implemented")
    );
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/101/status/start",
            &[("skiplock", "1")],
        )
        .await;
    assert_eq!(
        r.json["errors"]["skiplock"],
        json!("Only root may use this option.")
    );
    let r = sim
        .agent("GET", "/nodes/pve/lxc/999/status/current", &[])
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        json!("Configuration file 'nodes/pve/lxc/999.conf' does not exist\n")
    );
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "101"), ("dumpdir", "/tmp")],
        )
        .await;
    assert_eq!(
        r.json["errors"]["dumpdir"],
        json!("Only root may set this option.")
    );
}

#[tokio::test]
async fn request_log_records_params_and_has_no_schema_errors() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "3"]);
    for path in [
        "/version",
        "/nodes",
        "/nodes/pve/status",
        "/cluster/resources",
        "/nodes/pve/lxc",
        "/nodes/pve/lxc/100/status/current",
        "/nodes/pve/lxc/100/config",
        "/nodes/pve/lxc/100/snapshot",
        "/nodes/pve/storage",
        "/nodes/pve/storage/local/status",
        "/nodes/pve/storage/local/content",
        "/nodes/pve/tasks",
        "/nodes/pve/disks/list",
        "/access/permissions",
        "/storage",
    ] {
        let r = sim.agent("GET", path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    let r = sim
        .agent("GET", "/cluster/resources", &[("type", "vm")])
        .await;
    assert_eq!(r.data().as_array().map(Vec::len), Some(3));
    let r = sim
        .agent("GET", "/nodes/pve/disks/smart", &[("disk", "/dev/sda")])
        .await;
    assert_eq!(r.data()["health"], json!("PASSED"));
    let log = sim.request_log().await;
    let smart = log
        .iter()
        .find(|e| e["path"] == json!("/nodes/pve/disks/smart"))
        .expect("logged");
    assert_eq!(smart["params"], json!({"disk": "/dev/sda"}));
    assert_eq!(smart["status"], json!(200));
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn dropped_and_delayed_responses() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let r = sim
        .control("drop", json!({"count": 1, "path_prefix": "/version"}))
        .await;
    assert_eq!(r.status, 200);
    let dropped = sim
        .client
        .get(format!("{}/api2/json/version", sim.url))
        .header("Authorization", format!("PVEAPIToken={}", sim.token))
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "the connection must close without a response: {dropped:?}"
    );
    assert_eq!(
        sim.agent("GET", "/version", &[]).await.status,
        200,
        "only one request is dropped"
    );
    sim.control(
        "delay",
        json!({"ms": 400, "count": 1, "path_prefix": "/nodes"}),
    )
    .await;
    let t0 = std::time::Instant::now();
    assert_eq!(sim.agent("GET", "/nodes", &[]).await.status, 200);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(400));
}

/// The simulated node's `FelhomAgent` role (what an operator creates with `pveum`, per
/// docs/proxmox-token.md) and the list the agent's selftest checks against must be the same
/// set; they are kept apart on purpose so the simulator does not simply echo the client.
#[test]
fn felhom_agent_role_matches_what_the_agent_expects() {
    let mut sim: Vec<&str> = pve_sim::roles::FELHOM_AGENT_PRIVS.to_vec();
    let mut agent: Vec<&str> = pve::FELHOM_AGENT_PRIVILEGES.to_vec();
    sim.sort_unstable();
    agent.sort_unstable();
    assert_eq!(sim, agent);
    assert_eq!(agent.len(), 16);
}
