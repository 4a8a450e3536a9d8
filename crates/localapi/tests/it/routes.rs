//! What each route answers, with the fakes' state behind it, and one audit event per call.

use std::time::Duration;

use localapi::{BackupPolicy, Schedule};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{snap, vmid, Harness};

#[tokio::test]
async fn storage_and_restore_test_status() {
    let h = Harness::start().await;
    let (s, body) = h
        .call(Method::GET, "/storage", Some(h.t102.expose()), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"mounts":[
            {"path":"/mnt/vol0","class":"fast","backup":true},
            {"path":"/mnt/vol1","class":"slow","backup":false}
        ]})
    );
    let (s, body) = h
        .call(
            Method::GET,
            "/restore-test/status",
            Some(h.t102.expose()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"state":"never","last_run_at":null,"last_pass_at":null})
    );
    let events = h.audit.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].route, "GET /storage");
    assert_eq!(events[0].token_id, Some(h.t102.id));
    assert_eq!((events[0].status, events[0].outcome), (200, "ok"));
    h.stop().await;
}

#[tokio::test]
async fn backup_flow_due_then_queued_then_done() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    let (_, due) = h.call(Method::GET, "/backup/due", Some(&t), None).await;
    assert_eq!(
        due,
        json!({"due":false,"reason":"no_policy","next_at":null,"schedule":null})
    );

    let mut g = h.guests.guest(vmid(101)).unwrap();
    g.policy = Some(BackupPolicy {
        schedule: Schedule::Daily,
        target: "backup-usb".into(),
        keep_last: 7,
    });
    h.guests.add(vmid(101), g);
    let (_, due) = h.call(Method::GET, "/backup/due", Some(&t), None).await;
    assert_eq!(due["due"], true);
    assert_eq!(due["reason"], "never_backed_up");
    assert_eq!(due["schedule"], "daily");

    h.guests.set_op_latency(Duration::from_millis(200));
    let (s, accepted) = h.call(Method::POST, "/backup", Some(&t), Some("{}")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{accepted}");
    let op_id = accepted["op_id"].as_str().unwrap().to_owned();
    // While queued: status says so, due says in progress, a second request conflicts.
    let (_, status) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert!(
        matches!(status["state"].as_str(), Some("queued" | "running")),
        "{status}"
    );
    assert_eq!(status["op_id"], op_id.as_str());
    let (_, due) = h.call(Method::GET, "/backup/due", Some(&t), None).await;
    assert_eq!(
        (due["due"].clone(), due["reason"].clone()),
        (json!(false), json!("in_progress"))
    );
    let (s, body) = h.call(Method::POST, "/backup", Some(&t), None).await;
    assert_eq!(
        (s, body["error"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );

    h.guests.idle().await;
    let (_, status) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["op_id"], op_id.as_str());
    let last = status["last_success_at"].as_str().unwrap();
    assert!(last.ends_with('Z') && last.len() == 20, "{last}");
    let (_, due) = h.call(Method::GET, "/backup/due", Some(&t), None).await;
    assert_eq!(due["due"], false);
    assert_eq!(due["reason"], "not_yet");
    assert!(due["next_at"].as_str().unwrap() > last);
    let outcomes: Vec<_> = h.audit.events().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "accepted").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "conflict").count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn snapshot_then_rollback_to_it() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    let (s, body) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"pre-deploy"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(body["name"], "pre-deploy");
    assert!(body["op_id"].is_string());
    // The same name again: conflict.
    let (s, body) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"pre-deploy"}"#),
        )
        .await;
    assert_eq!(
        (s, body["error"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );
    let (s, _) = h
        .call(
            Method::POST,
            "/rollback",
            Some(&t),
            Some(r#"{"name":"pre-deploy"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    h.guests.idle().await;
    let rollbacks: Vec<_> = h
        .guests
        .calls()
        .into_iter()
        .filter(|c| c.action == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].name.as_deref(), Some("pre-deploy"));
    assert_eq!(
        h.guests.guest(vmid(101)).unwrap().snapshots,
        vec![snap("base101"), snap("pre-deploy")]
    );
    h.stop().await;
}

/// Issue 11 item 9: a controller rolled back to `operator-keep`, a snapshot root made.
#[tokio::test]
async fn rollback_only_to_snapshots_made_through_the_local_api() {
    let h = Harness::start().await;
    let mut g = h.guests.guest(vmid(101)).unwrap();
    g.snapshots.push(snap("operator-keep"));
    g.foreign_snapshots.push(snap("operator-keep"));
    h.guests.add(vmid(101), g);
    let t = h.t101.expose().to_owned();
    let (s, body) = h
        .call(
            Method::POST,
            "/rollback",
            Some(&t),
            Some(r#"{"name":"operator-keep"}"#),
        )
        .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "rollback_not_allowed",
                "message": "rollback only to snapshots made through the local api"})
        )
    );
    h.guests.idle().await;
    assert_eq!(
        h.guests.guest(vmid(101)).unwrap().snapshots,
        vec![snap("base101"), snap("operator-keep")],
        "nothing rolled back"
    );
    h.stop().await;
}

#[tokio::test]
async fn busy_and_failing_backends_answer_stable_codes() {
    let h = Harness::start().await;
    h.give_backup_policy(101);
    let t = h.t101.expose().to_owned();
    h.guests.set_busy(vmid(101), true);
    let resp = h
        .client
        .post(h.url("/backup"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "busy");
    h.guests.set_busy(vmid(101), false);

    h.guests.set_failing_ops(true);
    let (s, body) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"boom"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"error":"internal","message":"internal error"}));
    h.guests.set_failing_ops(false);

    h.guests.set_failing_reads(true);
    let (s, body) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal");
    h.guests.set_failing_reads(false);

    h.tokens.set_failing(true);
    let (s, body) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal");
    h.tokens.set_failing(false);

    // The detail is in the audit event, not in the reply.
    let ev = h.audit.events();
    assert!(ev
        .iter()
        .any(|e| e.detail.as_deref().unwrap_or("").contains("injected")));
    h.stop().await;
}

#[tokio::test]
async fn a_snapshot_outlasting_its_bound_is_504_and_still_completes() {
    let limits = localapi::Limits {
        snapshot_wait: Duration::from_millis(200),
        ..crate::support::test_limits()
    };
    let h = Harness::with_limits(limits).await;
    h.guests.set_op_latency(Duration::from_millis(600));
    let (s, body) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(h.t101.expose()),
            Some(r#"{"name":"slowsnap"}"#),
        )
        .await;
    assert_eq!(
        (s, body["error"].clone()),
        (StatusCode::GATEWAY_TIMEOUT, json!("timeout"))
    );
    h.guests.idle().await;
    assert!(h
        .guests
        .guest(vmid(101))
        .unwrap()
        .snapshots
        .contains(&snap("slowsnap")));
    h.stop().await;
}
