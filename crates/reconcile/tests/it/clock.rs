//! The wall clock is injected (issue 10 item 2): a signed op's expiry before its first step, a
//! `desired.reset`'s window, journal times and the ids of the ops the agent makes all come from
//! the [`reconcile::Clock`] the engine was built with, never from the system's clock.
//!
//! Each test puts the fake clock where the system's clock would give the other answer (years
//! before or after today), so reading the real clock anywhere on these paths fails it.

use std::sync::Arc;
use std::time::Duration;

use reconcile::desired::MAX_GENERATION;
use reconcile::fakes::{adopt, FakeClock, FakeGuest, FakeProxmox, MemoryStore};
use reconcile::{Clock, EngineConfig, EngineHandle, GuestOp, Ingest, JobResult, Origin};
use serde_json::json;
use time::macros::datetime;

use crate::support::{ingest, Signer, TestEngine};

/// A fake node and an engine sharing `clock`, guest 101 running and managed.
fn setup(clock: &FakeClock) -> (FakeProxmox, MemoryStore, TestEngine) {
    let px = FakeProxmox::new([(101, FakeGuest::new("running"))], 100)
        .with_clock(Arc::new(clock.clone()));
    let store = MemoryStore::new();
    adopt(&px, &store, 101);
    let (engine, _status) = reconcile::Engine::with_clock(
        Arc::new(px.clone()),
        Arc::new(store.clone()),
        EngineConfig::default(),
        Arc::new(clock.clone()),
    )
    .expect("engine");
    (px, store, engine)
}

const TTL: Duration = Duration::from_secs(15 * 60);

#[tokio::test(start_paused = true)]
async fn a_signed_destroy_that_expired_on_the_injected_clock_is_refused_untouched() {
    // Far in the future: on the system's clock this op would still be valid for years.
    let issued = datetime!(2040-03-01 12:00:00 UTC);
    let clock = FakeClock::at(issued);
    let (px, store, mut engine) = setup(&clock);
    let op = Signer::new().verified(
        "destroy-0001",
        "guest.destroy",
        json!({"vmid": 101}),
        issued,
        TTL,
        clock.now(),
    );
    // It waited (the engine's cycle, the guest's queue) past its expiry and the skew allowance.
    clock.advance(TTL + Duration::from_secs(3 * 60));
    let outcome = engine.run_signed(&op).await;
    match &outcome.result {
        JobResult::Refused { reason, .. } => assert_eq!(reason, "expired", "{outcome:?}"),
        other => panic!("expected a refusal as expired, got {other:?}"),
    }
    assert!(px.guest(101).is_some(), "the guest must be untouched");
    assert!(px.mutations().is_empty(), "{:?}", px.mutations());
    assert!(
        store.op("destroy-0001").is_none(),
        "nothing journaled as run"
    );
}

#[tokio::test(start_paused = true)]
async fn a_signed_destroy_still_valid_on_the_injected_clock_runs_and_is_journaled_at_its_time() {
    // Long ago: on the system's clock this op expired years back.
    let issued = datetime!(2021-06-01 08:00:00 UTC);
    let clock = FakeClock::at(issued);
    let (px, store, mut engine) = setup(&clock);
    let op = Signer::new().verified(
        "destroy-0002",
        "guest.destroy",
        json!({"vmid": 101}),
        issued,
        TTL,
        clock.now(),
    );
    clock.advance(Duration::from_secs(5 * 60));
    let started = clock.now().unix_timestamp();
    let outcome = engine.run_signed(&op).await;
    assert_eq!(outcome.result, JobResult::Succeeded, "{outcome:?}");
    assert!(px.guest(101).is_none(), "destroyed");
    // Journal times are the injected clock's too (the stop and destroy tasks took paused time).
    let record = store.op("destroy-0002").expect("journaled");
    assert_eq!(record.created_at, started);
    assert!(
        (started..started + 60).contains(&record.updated_at),
        "{record:?}"
    );
    let ends_in_2021 = store
        .audit_entries()
        .iter()
        .filter(|e| e.op_id.as_deref() == Some("destroy-0002"))
        .all(|e| (started..started + 60).contains(&e.at));
    assert!(ends_in_2021, "{:#?}", store.audit_entries());
}

#[tokio::test(start_paused = true)]
async fn a_desired_reset_window_is_kept_on_the_injected_clock() {
    let issued = datetime!(2040-03-01 12:00:00 UTC);
    let clock = FakeClock::at(issued);
    let (_px, _store, mut engine) = setup(&clock);
    let doc = |generation: u64| json!({"v":1,"generation":generation,"guests":[]});
    assert_eq!(
        ingest(&mut engine, doc(MAX_GENERATION)),
        Ingest::Accepted {
            generation: MAX_GENERATION
        }
    );
    let signer = Signer::new();
    let reset = |op_id: &str| {
        signer.verified(
            op_id,
            "desired.reset",
            json!({"host": true}),
            clock.now(),
            TTL,
            clock.now(),
        )
    };
    // Armed, and the window passes before a lower generation arrives: ignored. (On the system's
    // clock the window would run until 2040.)
    let outcome = engine.run_signed(&reset("reset-0001")).await;
    assert_eq!(outcome.result, JobResult::Succeeded, "{outcome:?}");
    clock.advance(TTL + Duration::from_secs(3 * 60));
    assert!(
        matches!(ingest(&mut engine, doc(7)), Ingest::Ignored { .. }),
        "an expired reset let a lower generation in"
    );
    // Armed again, and a lower generation within the window: accepted once.
    let outcome = engine.run_signed(&reset("reset-0002")).await;
    assert_eq!(outcome.result, JobResult::Succeeded, "{outcome:?}");
    clock.advance(TTL - Duration::from_secs(60));
    assert_eq!(
        ingest(&mut engine, doc(7)),
        Ingest::Accepted { generation: 7 }
    );
}

#[tokio::test(start_paused = true)]
async fn op_ids_and_journal_times_come_from_the_injected_clock() {
    let at = datetime!(2031-01-02 03:04:05.123456789 UTC);
    let clock = FakeClock::at(at);
    let px = FakeProxmox::new([(101, FakeGuest::new("running"))], 100)
        .with_clock(Arc::new(clock.clone()));
    let store = MemoryStore::new();
    let handle = EngineHandle::standalone(Arc::new(px.clone()), Arc::new(store.clone()))
        .with_clock(Arc::new(clock.clone()));
    let name = "before-upgrade".parse().unwrap();
    let ticket = handle
        .submit(
            Origin::LocalApi,
            101,
            GuestOp::Snapshot {
                name,
                description: "test".into(),
            },
        )
        .unwrap();
    assert_eq!(
        ticket.op_id,
        format!("la-snapshot-101-{}-0", at.unix_timestamp_nanos())
    );
    let op_id = ticket.op_id.clone();
    ticket.finished().await.unwrap();
    let record = store.op(&op_id).unwrap();
    assert_eq!(record.created_at, at.unix_timestamp());
    // The fake node's task started on the same clock, so its UPID carries the same time.
    let upid = record.steps[0].upid.clone().expect("upid recorded");
    assert!(
        upid.contains(&format!("{:08X}", at.unix_timestamp())),
        "{upid}"
    );

    // A reconcile op's id carries the clock's unix seconds.
    let later = datetime!(2032-05-06 07:08:09 UTC);
    clock.set(later);
    let (mut engine, _status) = reconcile::Engine::with_clock(
        Arc::new(px.clone()),
        Arc::new(store.clone()),
        EngineConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    adopt(&px, &store, 101);
    ingest(
        &mut engine,
        json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"stopped"}]}),
    );
    engine.reconcile().await.unwrap();
    let rc: Vec<String> = store
        .ops()
        .into_iter()
        .map(|o| o.op_id)
        .filter(|id| id.starts_with("rc-"))
        .collect();
    assert_eq!(rc.len(), 1, "{rc:?}");
    assert!(
        rc[0].starts_with(&format!("rc-101-{}-", later.unix_timestamp())),
        "{rc:?}"
    );
}
