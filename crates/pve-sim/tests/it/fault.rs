//! `POST /_sim/fault`: injected 501 and 595/596/597/599 answers.

use serde_json::json;

use crate::harness::{start, state_dir};

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
