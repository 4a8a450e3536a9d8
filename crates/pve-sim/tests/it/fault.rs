//! `POST /_sim/fault`: injected 501 and 595/596/597/599 answers; `POST /_sim/drop` with
//! `after`: the request is processed, the answer never sent.

use serde_json::{json, Value};

use crate::harness::{start, state_dir, Sim};

#[tokio::test]
async fn proxy_statuses_have_an_empty_body_and_the_message_as_reason() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let r = sim
        .control(
            "fault",
            json!({"path_prefix": "/nodes/pve/status", "status": 596, "message": "tls handshake failed: node2", "count": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Other paths are not affected.
    assert_eq!(sim.agent("GET", "/version", &[]).await.status, 200);
    for _ in 0..2 {
        let r = sim.agent("GET", "/nodes/pve/status", &[]).await;
        assert_eq!(r.status, 596);
        assert_eq!(r.text, "");
        assert_eq!(r.reason.as_deref(), Some("tls handshake failed: node2"));
    }
    // Used up after `count` requests.
    assert_eq!(sim.agent("GET", "/nodes/pve/status", &[]).await.status, 200);

    // Without a message: AnyEvent::HTTP's meaning of 595.
    sim.control(
        "fault",
        json!({"path_prefix": "/nodes/pve/lxc", "status": 595}),
    )
    .await;
    let r = sim.agent("GET", "/nodes/pve/lxc", &[]).await;
    assert_eq!((r.status, r.text.as_str()), (595, ""));
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|m| m.starts_with("Errors during connection establishment")),
        "{r:?}"
    );

    let log = sim.request_log().await;
    let injected: Vec<_> = log
        .iter()
        .filter(|e| e["status"] == json!(596) || e["status"] == json!(595))
        .map(|e| {
            (
                e["path"].clone(),
                e["status"].clone(),
                e["response"].clone(),
            )
        })
        .collect();
    assert_eq!(
        injected,
        vec![
            (json!("/nodes/pve/status"), json!(596), json!(null)),
            (json!("/nodes/pve/status"), json!(596), json!(null)),
            (json!("/nodes/pve/lxc"), json!(595), json!(null)),
        ]
    );
}

#[tokio::test]
async fn not_implemented_has_pve_json_and_unauthenticated_requests_keep_the_rule() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "1"]);
    let r = sim
        .control(
            "fault",
            json!({"path_prefix": "/nodes/pve/lxc/100/config", "status": 501}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A bad token gets its 401 first and does not consume the rule.
    let r = sim
        .call(
            "PUT",
            "/nodes/pve/lxc/100/config",
            Some("felhom-agent@pve!agent=wrong"),
            &[("cores", "2")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = sim
        .agent("PUT", "/nodes/pve/lxc/100/config", &[("cores", "2")])
        .await;
    assert_eq!(r.status, 501);
    assert_eq!(
        r.json,
        json!({"data": null, "message": "Method 'PUT /nodes/pve/lxc/100/config' not implemented"})
    );
    assert_eq!(
        r.reason.as_deref(),
        Some("Method 'PUT /nodes/pve/lxc/100/config' not implemented")
    );
    // The faulted PUT changed nothing; the next one goes through.
    let cfg = sim.agent("GET", "/nodes/pve/lxc/100/config", &[]).await;
    assert_ne!(cfg.data()["cores"], json!(2));
    let r = sim
        .agent("PUT", "/nodes/pve/lxc/100/config", &[("cores", "2")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The log keeps the faulted request's parameters as received.
    let log = sim.request_log().await;
    let faulted = log
        .iter()
        .find(|e| e["status"] == json!(501))
        .expect("faulted request logged");
    assert_eq!(faulted["params"], json!({"cores": "2"}));
}

#[tokio::test]
async fn bad_fault_rules_are_refused() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    for body in [
        json!({"status": 500}),
        json!({"status": 404}),
        json!({"status": 596, "count": 0}),
        json!({"status": 596, "message": "two\nlines"}),
        json!({"status": 596, "bogus": 1}),
        json!({"path_prefix": "/"}),
    ] {
        let r = sim.control("fault", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.json["error"].is_string(), "{body}: {}", r.text);
    }
    // Nothing was armed.
    assert_eq!(sim.agent("GET", "/version", &[]).await.status, 200);
}

/// The tasks of `vmid` of one type in the node's task list (running and finished).
async fn tasks_of(sim: &Sim, vmid: &str, kind: &str) -> Vec<Value> {
    let r = sim
        .agent(
            "GET",
            "/nodes/pve/tasks",
            &[("source", "all"), ("vmid", vmid), ("limit", "500")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
        .as_array()
        .expect("task list")
        .iter()
        .filter(|t| t["type"] == json!(kind) && t["id"] == json!(vmid))
        .cloned()
        .collect()
}

/// Poll `status/current` of `vmid` until it reports `want` (or give up after ~5 s).
async fn wait_status(sim: &Sim, vmid: &str, want: &str) -> Value {
    let path = format!("/nodes/pve/lxc/{vmid}/status/current");
    let mut last = Value::Null;
    for _ in 0..200 {
        last = sim.agent("GET", &path, &[]).await.data()["status"].clone();
        if last == json!(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

/// The request-log entries for `POST path`.
async fn logged_posts(sim: &Sim, path: &str) -> Vec<Value> {
    sim.request_log()
        .await
        .into_iter()
        .filter(|e| e["method"] == json!("POST") && e["path"] == json!(path))
        .collect()
}

#[tokio::test]
async fn drop_after_a_start_runs_it_but_the_client_never_sees_the_upid() {
    let dir = state_dir();
    // CT 101 is seeded stopped.
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "50"]);
    let path = "/nodes/pve/lxc/101/status/start";
    let r = sim
        .control(
            "drop",
            json!({"count": 1, "path_prefix": path, "after": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let dropped = sim.agent_raw("POST", path, &[]).await;
    assert!(
        dropped.is_err(),
        "the connection must close without a response: {dropped:?}"
    );
    // Proxmox acted all the same: the guest comes up, through exactly one start task.
    assert_eq!(wait_status(&sim, "101", "running").await, json!("running"));
    let starts = tasks_of(&sim, "101", "vzstart").await;
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(starts[0]["status"], json!("OK"), "{starts:#?}");
    // The log shows the request as processed (a UPID answered), marked as dropped after.
    let logged = logged_posts(&sim, path).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(logged[0]["status"], json!(200));
    assert_eq!(logged[0]["dropped_after"], json!(true));
    assert_eq!(logged[0]["response"]["data"], starts[0]["upid"]);
    // One use only: the next request is answered normally.
    assert_eq!(sim.agent("GET", "/version", &[]).await.status, 200);
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn drop_before_a_start_changes_nothing() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "50"]);
    let path = "/nodes/pve/lxc/101/status/start";
    let r = sim
        .control(
            "drop",
            json!({"count": 1, "path_prefix": path, "after": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let dropped = sim.agent_raw("POST", path, &[]).await;
    assert!(dropped.is_err(), "{dropped:?}");
    // Give a wrongly started task time to finish before looking.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sim.agent("GET", "/nodes/pve/lxc/101/status/current", &[])
            .await
            .data()["status"],
        json!("stopped")
    );
    assert!(tasks_of(&sim, "101", "vzstart").await.is_empty());
    assert!(logged_posts(&sim, path).await.is_empty());
}

#[tokio::test]
async fn drop_after_a_snapshot_creates_it_once() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "1", "--task-ms", "50"]);
    let path = "/nodes/pve/lxc/100/snapshot";
    let r = sim
        .control("drop", json!({"path_prefix": path, "after": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let dropped = sim
        .agent_raw("POST", path, &[("snapname", "ambiguous")])
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    let mut snaps = Vec::new();
    for _ in 0..200 {
        snaps = tasks_of(&sim, "100", "vzsnapshot").await;
        if snaps.len() == 1 && snaps[0]["status"] == json!("OK") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    assert_eq!(snaps[0]["status"], json!("OK"), "{snaps:#?}");
    let list = sim.agent("GET", path, &[]).await;
    assert!(
        list.data()
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == json!("ambiguous"))),
        "{}",
        list.text
    );
    let logged = logged_posts(&sim, path).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(logged[0]["dropped_after"], json!(true));
    assert_eq!(logged[0]["params"], json!({"snapname": "ambiguous"}));
}
