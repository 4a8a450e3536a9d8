use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::{report, TestHub};

#[tokio::test]
async fn auth_is_bearer_and_distinguishes_missing_and_wrong_keys() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    let url = t.agent("h1", "desired");
    let none = t.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().get("www-authenticate").is_some());
    let wrong = t
        .http
        .get(&url)
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let basic = t
        .http
        .get(&url)
        .header("authorization", format!("Basic {}", t.hub.info.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(t.get_desired("h1", None).await.status(), 200);
    // A failed auth is no check-in: only h1 is known.
    let (_, hosts) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts", None)
        .await;
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(t.get_desired("../x", None).await.status(), 404);
    assert_eq!(t.get_desired("a%20b", None).await.status(), 400);
}

#[tokio::test]
async fn conditional_get_answers_304_until_something_changes() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    let first = t.get_desired("h1", None).await;
    assert_eq!(first.status(), 200);
    let etag0 = first.headers()["etag"].to_str().unwrap().to_owned();
    let d: hub::Directive = hub::Directive::parse(&first.bytes().await.unwrap()).unwrap();
    assert_eq!((d.generation, d.desired.is_none()), (0, true));

    assert_eq!(t.get_desired("h1", Some(&etag0)).await.status(), 304);
    t.put_desired("h1", 3).await;
    let changed = t.get_desired("h1", Some(&etag0)).await;
    assert_eq!(changed.status(), 200);
    let etag1 = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag0, etag1);
    let d = hub::Directive::parse(&changed.bytes().await.unwrap()).unwrap();
    assert_eq!(d.generation, 3);
    assert_eq!(d.desired.unwrap()["guests"][0]["vmid"], 101);
    assert_eq!(t.get_desired("h1", Some(&etag1)).await.status(), 304);
    assert_eq!(
        t.get_desired("h1", Some(&format!("W/{etag1}")))
            .await
            .status(),
        304
    );

    // A report (new ack) alone does not change the ETag.
    let mut r = report("h1");
    r.audit.entries.push(audit(1));
    assert_eq!(t.post_report("h1", &r).await.status(), 200);
    assert_eq!(t.get_desired("h1", Some(&etag1)).await.status(), 304);

    // The request log shows what the agent sent.
    let (_, log) = t
        .admin_json(reqwest::Method::GET, "/admin/requests?host=h1", None)
        .await;
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 304, 200, 304, 304, 200, 304]);
}

pub fn audit(seq: u64) -> hub::AuditEntry {
    hub::AuditEntry {
        seq,
        at: 1_700_000_000,
        kind: "signed_op".into(),
        actor: Some("alice".into()),
        action: Some("guest.destroy".into()),
        target: Some("vmid:101".into()),
        op_id: Some(format!("op-{seq}")),
        outcome: "accepted".into(),
        reason: None,
        detail: None,
        prev_hash: "0".repeat(64),
        hash: "1".repeat(64),
    }
}

fn wire(op_id: &str) -> Value {
    let payload =
        json!({"v": 1, "op_id": op_id, "nonce": "n", "host_id": "h1", "action": "guest.destroy"});
    json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload.to_string()),
        "signature": "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----",
    })
}

#[tokio::test]
async fn ops_stay_queued_until_the_agent_reports_their_outcome() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    let (s, v) = t
        .admin_json(
            reqwest::Method::POST,
            "/admin/hosts/h1/ops",
            Some(wire("op-a")),
        )
        .await;
    assert_eq!((s, v["op_id"].as_str()), (200, Some("op-a")));
    t.admin_json(
        reqwest::Method::POST,
        "/admin/hosts/h1/ops",
        Some(wire("op-b")),
    )
    .await;
    // Opaque blobs are relayed too, with a digest id.
    let (_, v) = t
        .admin_json(
            reqwest::Method::POST,
            "/admin/hosts/h1/ops",
            Some(json!({"payload": "!!", "signature": "x"})),
        )
        .await;
    assert!(v["op_id"].as_str().unwrap().starts_with("sha256:"));

    let ops = |d: hub::Directive| {
        d.ops
            .iter()
            .map(|o| o["payload"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let d = hub::Directive::parse(&t.get_desired("h1", None).await.bytes().await.unwrap()).unwrap();
    assert_eq!(d.ops.len(), 3);
    assert_eq!(d.ops[0], wire("op-a"), "relayed exactly as posted");
    // Still there on the next poll: nothing reported yet.
    let d = hub::Directive::parse(&t.get_desired("h1", None).await.bytes().await.unwrap()).unwrap();
    assert_eq!(ops(d).len(), 3);

    let mut r = report("h1");
    r.op_outcomes.push(hub::OpOutcome {
        op_id: "op-a".into(),
        outcome: hub::OpOutcomeKind::Done,
        reason: None,
        at: hub::now_rfc3339(),
    });
    assert_eq!(t.post_report("h1", &r).await.status(), 200);
    let d = hub::Directive::parse(&t.get_desired("h1", None).await.bytes().await.unwrap()).unwrap();
    assert_eq!(d.ops.len(), 2);
    assert!(!d.ops.contains(&wire("op-a")));
    let (_, v) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts/h1/ops", None)
        .await;
    assert_eq!(v["outcomes"][0]["op_id"], "op-a");
    assert_eq!(v["outcomes"][0]["outcome"], "done");
    assert_eq!(v["queued"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn reports_are_stored_acknowledged_and_bounded() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    let (s, _) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert_eq!(s, 404);

    let mut r = report("h1");
    r.audit.entries = (1..=5).map(audit).collect();
    r.guests.push(hub::GuestReport {
        vmid: 101,
        kind: "lxc".into(),
        name: Some("a".into()),
        status: "running".into(),
        managed: true,
        lock: None,
        template: false,
        spec: hub::GuestSpec::default(),
        usage: hub::GuestUsage::default(),
    });
    let resp = t.post_report("h1", &r).await;
    assert_eq!(resp.status(), 200);
    let ack: hub::ReportAck = resp.json().await.unwrap();
    assert_eq!(ack.ack.audit_seq, 5);
    let (_, stored) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert_eq!(stored, serde_json::to_value(&r).unwrap());

    // Entries already acknowledged are not stored twice; the ack moves on.
    r.audit.entries = (4..=7).map(audit).collect();
    let ack: hub::ReportAck = t.post_report("h1", &r).await.json().await.unwrap();
    assert_eq!(ack.ack.audit_seq, 7);
    let (_, a) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts/h1/audit", None)
        .await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 7);

    // gzip
    let body = hub::gzip_bytes(&serde_json::to_vec(&r).unwrap());
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Over the bound, plain and as a gzip bomb.
    let big = vec![b' '; hub::MAX_REPORT_BYTES + 1];
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .header("content-encoding", "gzip")
        .body(hub::gzip_bytes(&big))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // Wrong shapes.
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = t.post_report("h2", &r).await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "host-mismatch");
    let resp = t
        .http
        .post(t.agent("h1", "report"))
        .header("authorization", t.key())
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn directive_is_gzipped_when_asked_and_large() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    let guests: Vec<Value> = (100..200)
        .map(|v| json!({"vmid": v, "state": "running", "config": {"hostname": format!("g{v}")}}))
        .collect();
    t.admin_json(
        reqwest::Method::PUT,
        "/admin/hosts/h1/desired",
        Some(json!({"v": 1, "generation": 1, "guests": guests})),
    )
    .await;
    let resp = t
        .http
        .get(t.agent("h1", "desired"))
        .header("authorization", t.key())
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let body = resp.bytes().await.unwrap();
    let json = hub::gunzip_bounded(&body, 1 << 20).unwrap();
    assert!(json.len() > body.len() * 3);
    let d = hub::Directive::parse(&json).unwrap();
    assert_eq!(d.desired.unwrap()["guests"].as_array().unwrap().len(), 100);
}
