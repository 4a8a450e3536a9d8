use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hub::{
    AuditEntry, ClientOptions, CollectContext, Error, Fetched, HostReport, HubClient, PollLoop,
    PollOptions, ReportSource,
};
use serde_json::{json, Value};

pub struct Sim {
    pub hub: hub_sim::RunningHub,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Sim {
    pub async fn start() -> Sim {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let hub = hub_sim::start(hub_sim::Options::loopback(dir.path()))
            .await
            .unwrap();
        Sim {
            hub,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn client(&self, key: &str, gzip: bool) -> HubClient {
        let mut o = ClientOptions::new(
            self.hub.info.url.parse().unwrap(),
            "h1",
            pve::Secret::new(key),
        );
        o.gzip_reports = gzip;
        o.request_timeout = Duration::from_secs(5);
        HubClient::new(o).unwrap()
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.hub.info.admin_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    pub async fn put_desired(&self, generation: u64) {
        self.admin(
            reqwest::Method::PUT,
            "/admin/hosts/h1/desired",
            Some(json!({"v": 1, "generation": generation, "guests": []})),
        )
        .await;
    }
}

/// A report source with a growing audit log; honours the hub's acknowledgement.
#[derive(Clone, Default)]
pub struct AuditSource {
    pub entries: u64,
    pub detail_len: usize,
    pub acked: Arc<AtomicU64>,
}

impl ReportSource for AuditSource {
    async fn collect(&self, ctx: &CollectContext) -> HostReport {
        let mut r = HostReport::empty("h1", "0.1.0");
        r.audit.entries = (ctx.audit_acked + 1..=self.entries)
            .map(|seq| AuditEntry {
                seq,
                at: 1_700_000_000,
                kind: "signed_op".into(),
                actor: None,
                action: None,
                target: None,
                op_id: None,
                outcome: "accepted".into(),
                reason: None,
                detail: Some("d".repeat(self.detail_len)),
                prev_hash: "0".repeat(64),
                hash: "1".repeat(64),
            })
            .collect();
        r
    }

    fn acknowledged(&self, ack: hub::Ack) {
        self.acked.store(ack.audit_seq, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn conditional_polling_with_the_real_client() {
    let sim = Sim::start().await;
    let c = sim.client(&sim.hub.info.api_key, true);
    let Fetched::Changed { directive, etag } = c.fetch_directive(None).await.unwrap() else {
        panic!("first fetch must be a 200");
    };
    assert_eq!(directive.generation, 0);
    let etag = etag.unwrap();
    assert_eq!(
        c.fetch_directive(Some(&etag)).await.unwrap(),
        Fetched::NotModified
    );
    sim.put_desired(7).await;
    match c.fetch_directive(Some(&etag)).await.unwrap() {
        Fetched::Changed {
            directive,
            etag: e2,
        } => {
            assert_eq!(directive.generation, 7);
            assert_ne!(e2.unwrap(), etag);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn auth_errors_are_distinct() {
    let sim = Sim::start().await;
    let err = sim
        .client("wrong", false)
        .fetch_directive(None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(
        !err.to_string().contains("wrong"),
        "the key never shows: {err}"
    );
    sim.admin(
        reqwest::Method::POST,
        "/admin/faults",
        Some(json!({"status": {"code": 403, "count": 1}})),
    )
    .await;
    let err = sim
        .client(&sim.hub.info.api_key, false)
        .fetch_directive(None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err}");
    sim.admin(
        reqwest::Method::POST,
        "/admin/faults",
        Some(json!({"status": {"code": 502, "count": 1}})),
    )
    .await;
    let err = sim
        .client(&sim.hub.info.api_key, false)
        .fetch_directive(None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Status { status: 502, .. }) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_is_a_typed_error_and_the_loop_keeps_the_last_good_state() {
    let sim = Sim::start().await;
    sim.put_desired(3).await;
    let (mut lp, handle) = PollLoop::new(
        sim.client(&sim.hub.info.api_key, true),
        AuditSource::default(),
        PollOptions::new("h1", Duration::from_secs(30)),
    );
    let out = lp.run_once().await;
    assert!(out.is_ok(), "{:?}", out.first_error());
    sim.put_desired(4).await;
    sim.admin(
        reqwest::Method::POST,
        "/admin/faults",
        Some(json!({"garbage": 1})),
    )
    .await;
    let out = lp.run_once().await;
    let err = out.fetch_error.expect("garbage must fail the fetch");
    assert!(
        matches!(
            err,
            Error::Garbage {
                what: "directive",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("garbage"));
    assert_eq!(handle.subscribe().borrow().as_ref().unwrap().generation, 3);
    // The hub heard about it in the report of the same cycle.
    let report = sim
        .admin(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert!(report["agent"]["last_error"]
        .as_str()
        .unwrap()
        .starts_with("garbage"));
    // Next poll is clean and catches up.
    assert!(lp.run_once().await.is_ok());
    assert_eq!(handle.subscribe().borrow().as_ref().unwrap().generation, 4);
}

#[tokio::test]
async fn hub_down_and_back_keeps_the_state_and_catches_up() {
    let sim = Sim::start().await;
    sim.put_desired(1).await;
    let (mut lp, handle) = PollLoop::new(
        sim.client(&sim.hub.info.api_key, true),
        AuditSource::default(),
        PollOptions::new("h1", Duration::from_secs(30)),
    );
    assert!(lp.run_once().await.is_ok());
    sim.admin(
        reqwest::Method::POST,
        "/admin/down",
        Some(json!({"ms": 800})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let out = lp.run_once().await;
    assert!(
        matches!(out.fetch_error, Some(Error::Transport { .. })),
        "{:?}",
        out.fetch_error
    );
    assert!(out.fetch_error.as_ref().unwrap().is_retryable());
    assert_eq!(handle.subscribe().borrow().as_ref().unwrap().generation, 1);
    assert_eq!(handle.health().snapshot().consecutive_failures, 1);
    sim.put_desired(2).await; // admin API stays up
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(lp.run_once().await.is_ok());
    assert_eq!(handle.subscribe().borrow().as_ref().unwrap().generation, 2);
    assert_eq!(handle.health().snapshot().consecutive_failures, 0);
}

#[tokio::test]
async fn gzip_report_accepted_and_oversized_report_trimmed() {
    let sim = Sim::start().await;
    let src = AuditSource {
        entries: 3000,
        detail_len: 300,
        ..AuditSource::default()
    };
    let (mut lp, _h) = PollLoop::new(
        sim.client(&sim.hub.info.api_key, true),
        src.clone(),
        PollOptions::new("h1", Duration::from_secs(30)),
    );
    let out = lp.run_once().await;
    assert!(out.is_ok(), "{:?}", out.first_error());
    // Forward from the ack, oldest first: the first page stops where the size bound does, the
    // hub acknowledges exactly that, and the next pages carry on with no gap (issue 11 item 6).
    let first_ack = out.ack.unwrap().audit_seq;
    assert!(first_ack > 0 && first_ack < 3000, "{first_ack}");
    assert_eq!(src.acked.load(Ordering::SeqCst), first_ack);
    let report = sim
        .admin(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert_eq!(report["audit"]["omitted"], serde_json::Value::Null);
    let sent = report["audit"]["entries"].as_array().unwrap();
    assert_eq!(sent[0]["seq"], 1);
    assert_eq!(sent.last().unwrap()["seq"], first_ack);
    assert!(serde_json::to_vec(&report).unwrap().len() <= hub::MAX_REPORT_BYTES);
    let mut acks = vec![first_ack];
    while *acks.last().unwrap() < 3000 && acks.len() < 10 {
        // The poll interval is 30 s: run cycles by hand.
        let out = lp.run_once().await;
        assert!(out.is_ok(), "{:?}", out.first_error());
        acks.push(out.ack.unwrap().audit_seq);
    }
    assert_eq!(*acks.last().unwrap(), 3000, "{acks:?}");
    let audit = sim
        .admin(reqwest::Method::GET, "/admin/hosts/h1/audit", None)
        .await;
    assert_eq!(audit["gaps"], serde_json::json!([]), "{audit}");
    let log = sim
        .admin(reqwest::Method::GET, "/admin/requests?host=h1", None)
        .await;
    let post = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == "POST")
        .unwrap();
    assert_eq!(post["content_encoding"], "gzip");
    assert!(post["body_bytes"].as_u64().unwrap() < hub::MAX_REPORT_BYTES as u64 / 4);
    // Nothing left to send: the next report carries no audit entries.
    assert!(lp.run_once().await.is_ok());
    let report = sim
        .admin(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    assert_eq!(report["audit"]["entries"].as_array().unwrap().len(), 0);
}
