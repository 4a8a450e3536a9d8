//! Mutations of one guest never overlap; different guests proceed in parallel.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::{snap, vmid, Harness};

#[tokio::test]
async fn concurrent_snapshot_and_rollback_on_one_guest_are_serialized() {
    let h = Harness::start().await;
    h.guests.set_op_latency(Duration::from_millis(150));
    let t = h.t101.expose().to_owned();
    let snapshot = h.call(
        Method::POST,
        "/snapshot",
        Some(&t),
        Some(r#"{"name":"pre-deploy"}"#),
    );
    let rollback = h.call(
        Method::POST,
        "/rollback",
        Some(&t),
        Some(r#"{"name":"base101"}"#),
    );
    let more = h.call(
        Method::POST,
        "/snapshot",
        Some(&t),
        Some(r#"{"name":"another"}"#),
    );
    let ((s1, b1), (s2, b2), (s3, _)) = tokio::join!(snapshot, rollback, more);
    assert_eq!(s1, StatusCode::CREATED, "{b1}");
    assert_eq!(s2, StatusCode::ACCEPTED, "{b2}");
    assert_eq!(s3, StatusCode::CREATED);
    assert_eq!(b2["status"], "queued");
    assert!(b2["op_id"].is_string());
    h.guests.idle().await;

    let mut runs: Vec<_> = h
        .guests
        .executions()
        .into_iter()
        .filter(|e| e.vmid == vmid(101))
        .collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    runs.sort_by_key(|e| e.started);
    for pair in runs.windows(2) {
        assert!(pair[0].ended <= pair[1].started, "overlap: {pair:?}");
    }
    assert_eq!(h.guests.overlaps(), 0);
    h.stop().await;
}

#[tokio::test]
async fn different_guests_run_in_parallel() {
    let h = Harness::start().await;
    h.guests.set_op_latency(Duration::from_millis(300));
    let a = h.call(
        Method::POST,
        "/snapshot",
        Some(h.t101.expose()),
        Some(r#"{"name":"para"}"#),
    );
    let b = h.call(
        Method::POST,
        "/snapshot",
        Some(h.t102.expose()),
        Some(r#"{"name":"para"}"#),
    );
    let ((sa, _), (sb, _)) = tokio::join!(a, b);
    assert_eq!((sa, sb), (StatusCode::CREATED, StatusCode::CREATED));
    let runs = h.guests.executions();
    let r101 = runs.iter().find(|e| e.vmid == vmid(101)).unwrap();
    let r102 = runs.iter().find(|e| e.vmid == vmid(102)).unwrap();
    // The two runs overlap in time: neither waited for the other.
    assert!(
        r101.started < r102.ended && r102.started < r101.ended,
        "{runs:?}"
    );
    assert!(h
        .guests
        .guest(vmid(101))
        .unwrap()
        .snapshots
        .contains(&snap("para")));
    assert!(h
        .guests
        .guest(vmid(102))
        .unwrap()
        .snapshots
        .contains(&snap("para")));
    h.stop().await;
}
