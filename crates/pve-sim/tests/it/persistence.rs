//! State survives a restart with the same `--state`, tasks in flight included.

use serde_json::json;

use crate::harness::{start, state_dir, upid};

#[tokio::test]
async fn restart_keeps_cert_tokens_guests_and_tasks() {
    let dir = state_dir();
    let first = start(dir.path(), &["--guests", "2", "--task-ms", "1500"]);
    let done = upid(
        &first
            .agent("POST", "/nodes/pve/lxc/101/status/start", &[])
            .await,
    );
    let fp = first.ready["fingerprint"].clone();
    let token = first.token.clone();
    assert_eq!(first.wait_task(&done).await["exitstatus"], json!("OK"));
    // Start a long task and kill the simulator while it runs.
    let inflight = upid(
        &first
            .agent(
                "POST",
                "/nodes/pve/lxc/100/snapshot",
                &[("snapname", "kept")],
            )
            .await,
    );
    first.kill();

    let second = start(dir.path(), &["--guests", "5"]);
    assert_eq!(second.ready["fingerprint"], fp);
    assert_eq!(second.token, token);
    let list = second.agent("GET", "/nodes/pve/lxc", &[]).await;
    assert_eq!(
        list.data().as_array().map(Vec::len),
        Some(2),
        "--guests only seeds the first start"
    );
    let ct = second
        .agent("GET", "/nodes/pve/lxc/101/status/current", &[])
        .await;
    assert_eq!(ct.data()["status"], json!("running"));
    let old = second
        .agent("GET", &format!("/nodes/pve/tasks/{done}/status"), &[])
        .await;
    assert_eq!(old.data()["exitstatus"], json!("OK"));
    let resumed = second.wait_task(&inflight).await;
    assert_eq!(resumed["exitstatus"], json!("OK"));
    let snaps = second
        .agent("GET", "/nodes/pve/lxc/100/snapshot", &[])
        .await;
    assert!(snaps
        .data()
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["name"] == json!("kept"))));
    let tasks = second.agent("GET", "/nodes/pve/tasks", &[]).await;
    assert!(
        tasks.json["total"].as_u64().is_some_and(|t| t >= 2),
        "{}",
        tasks.text
    );
}

#[tokio::test]
async fn restart_keeps_storage_knobs_and_usb_filesystems() {
    let dir = state_dir();
    let state = dir.path().join("state");
    let by_uuid = dir.path().join("by-uuid");
    let first = start(&state, &[]);
    let r = first
        .control(
            "usb",
            json!({"uuid": "0b5e-77aa", "present": true, "mount": "/mnt/usb2", "by_uuid_dir": by_uuid}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = first
        .control(
            "storage/local",
            json!({"reachable": false, "latency_ms": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    first.kill();
    let second = start(&state, &[]);
    let r = second
        .agent("GET", "/nodes/pve/storage/local/status", &[])
        .await;
    assert_eq!(r.data()["active"], json!(0));
    let fs = second.control_get("usb").await;
    assert_eq!(fs.json[0]["mount"], json!("/mnt/usb2"));
    // The remembered by-uuid directory is used when the test does not repeat it.
    let r = second
        .control("usb", json!({"uuid": "0b5e-77aa", "present": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(std::fs::symlink_metadata(by_uuid.join("0b5e-77aa")).is_err());
}
