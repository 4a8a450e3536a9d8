use std::time::Duration;

use serde_json::{json, Value};

use crate::{report, TestHub};

async fn alerts(t: &TestHub) -> Vec<Value> {
    let (s, v) = t
        .admin_json(reqwest::Method::GET, "/admin/alerts", None)
        .await;
    assert_eq!(s, 200);
    v["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn dead_mans_switch_alerts_a_silent_host_and_clears_on_check_in() {
    let t = TestHub::start(Duration::from_millis(400)).await;
    t.put_desired("quiet", 1).await; // registered, never checks in
    assert_eq!(t.get_desired("chatty", None).await.status(), 200);
    assert!(alerts(&t).await.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = alerts(&t).await;
    let mut ids: Vec<&str> = a.iter().map(|x| x["host_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec!["chatty", "quiet"]);
    let quiet = a.iter().find(|x| x["host_id"] == "quiet").unwrap();
    assert_eq!(quiet["last_seen"], Value::Null);
    assert!(quiet["silent_s"].as_f64().unwrap() > 0.4);
    assert_eq!(quiet["kind"], "missed-check-in");

    // A check-in (any authenticated request) clears it.
    assert_eq!(
        t.post_report("chatty", &report("chatty")).await.status(),
        200
    );
    let a = alerts(&t).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["host_id"], "quiet");
}

#[tokio::test]
async fn state_survives_a_restart_with_the_same_key() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    t.put_desired("h1", 4).await;
    t.admin_json(
        reqwest::Method::POST,
        "/admin/hosts/h1/ops",
        Some(json!({"payload": "e30=", "signature": "s"})),
    )
    .await;
    let mut r = report("h1");
    r.audit.entries.push(crate::agent::audit(1));
    assert_eq!(t.post_report("h1", &r).await.status(), 200);
    let etag = t.get_desired("h1", None).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let info = t.hub.info.clone();
    let agent_addr = t.hub.agent_addr;
    let TestHub { hub, dir, http } = t;
    hub.shutdown().await;

    let mut opts = hub_sim::Options::loopback(dir.path());
    opts.listen = agent_addr;
    let hub = hub_sim::start(opts).await.unwrap();
    assert_eq!(hub.info.api_key, info.api_key);
    assert_eq!(hub.info.url, info.url);
    let t = TestHub { hub, dir, http };
    // Same content, same ETag: the agent's conditional GET still says "unchanged".
    assert_eq!(t.get_desired("h1", Some(&etag)).await.status(), 304);
    let (_, stored) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert_eq!(stored["host_id"], "h1");
    let (_, hosts) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts", None)
        .await;
    assert_eq!(hosts["hosts"][0]["audit_seq"], 1);
    assert_eq!(hosts["hosts"][0]["queued_ops"], 1);
    assert!(hosts["hosts"][0]["last_seen"].is_string());
}

#[tokio::test]
async fn faults_answer_garbage_or_a_status_then_recover() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    t.put_desired("h1", 1).await;
    let (s, f) = t
        .admin_json(
            reqwest::Method::POST,
            "/admin/faults",
            Some(json!({"garbage": 2})),
        )
        .await;
    assert_eq!((s, f["garbage"].as_u64()), (200, Some(2)));
    for _ in 0..2 {
        let resp = t.get_desired("h1", None).await;
        assert_eq!(resp.status(), 200);
        assert!(hub::Directive::parse(&resp.bytes().await.unwrap()).is_err());
    }
    assert!(hub::Directive::parse(&t.get_desired("h1", None).await.bytes().await.unwrap()).is_ok());

    t.admin_json(
        reqwest::Method::POST,
        "/admin/faults",
        Some(json!({"status": {"code": 403, "count": 1}})),
    )
    .await;
    assert_eq!(t.get_desired("h1", None).await.status(), 403);
    assert_eq!(t.get_desired("h1", None).await.status(), 200);
    t.admin_json(
        reqwest::Method::POST,
        "/admin/faults",
        Some(json!({"status": {"code": 503, "count": 5}})),
    )
    .await;
    assert_eq!(t.post_report("h1", &report("h1")).await.status(), 503);
    let (_, f) = t
        .admin_json(reqwest::Method::DELETE, "/admin/faults", None)
        .await;
    assert_eq!(f, json!({"garbage": 0, "status": null}));
    assert_eq!(t.post_report("h1", &report("h1")).await.status(), 200);
}

#[tokio::test]
async fn down_refuses_connections_then_comes_back_on_the_same_port() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    assert_down_then_back(&t).await;
}

/// `/admin/down` for 700 ms: the agent port refuses connections (nothing listens), the admin
/// API stays up, and the agent API answers again on the same port afterwards.
pub async fn assert_down_then_back(t: &TestHub) {
    assert_eq!(t.get_desired("h1", None).await.status(), 200);
    let (s, _) = t
        .admin_json(
            reqwest::Method::POST,
            "/admin/down",
            Some(json!({"ms": 700})),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = t.fresh_get_desired("h1").await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let refused = std::net::TcpStream::connect(t.hub.agent_addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The admin API stays up.
    assert!(alerts(t).await.is_empty());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(t.get_desired("h1", None).await.status(), 200);
}
