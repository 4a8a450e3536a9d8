//! The engine against its fakes: convergence, quiet steady state, the reversibility gate,
//! unmanaged guests, backoff on paused time, and the ambiguous POST (also of a signed destroy).

use journal::OpStatus;
use reconcile::fakes::{adopt, Fault, MemoryStore};
use reconcile::{EngineConfig, JobResult, Store};
use serde_json::json;

use crate::support::{cycle_until, engine, ingest, node, Signer};

#[tokio::test(start_paused = true)]
async fn converges_then_stays_quiet() {
    let px = node(&[(100, "stopped"), (101, "running")], 50);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    adopt(&px, &store, 101);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"running"},
            {"vmid":101,"state":"stopped","config":{"hostname":"b"}}]}),
    );
    cycle_until(&mut e, &status, 10, |s| {
        s.last_cycle_ops == 0 && s.errors.is_empty()
    })
    .await;
    let (g100, g101) = (px.guest(100).unwrap(), px.guest(101).unwrap());
    assert_eq!(g100.status, "running");
    assert_eq!(
        (
            g101.status.as_str(),
            g101.config.get("hostname").map(String::as_str)
        ),
        ("stopped", Some("b"))
    );
    // Shutdown before the config change, one of each.
    assert_eq!(
        px.mutations(),
        vec!["start 100", "shutdown 101", "set_config 101"],
        "{:?}",
        px.calls()
    );
    assert!(store.ops().iter().all(|o| o.state == OpStatus::Succeeded));
    // Steady state: nothing more is posted.
    let before = px.mutations().len();
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    assert_eq!(px.mutations().len(), before);
    assert_eq!(status.borrow().last_cycle_ops, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_guest_waits_for_a_signature_and_is_never_destroyed() {
    let px = node(&[(100, "running"), (101, "running")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    adopt(&px, &store, 101);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"running"},{"vmid":101,"state":"running"}]}),
    );
    e.reconcile().await.unwrap();
    ingest(
        &mut e,
        json!({"v":1,"generation":2,"guests":[{"vmid":100,"state":"running"}]}),
    );
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    let now = status.borrow().clone();
    assert_eq!(now.pending_signature.len(), 1, "{now:#?}");
    assert_eq!(now.pending_signature[0].vmid, 101);
    assert_eq!(now.pending_signature[0].action, "guest.destroy");
    assert!(px.guest(101).is_some(), "destroyed without a signature");
    assert!(!px.mutations().iter().any(|c| c.starts_with("destroy")));
    // One open pending op however many cycles pass.
    let pending: Vec<_> = store
        .ops()
        .into_iter()
        .filter(|o| o.state == OpStatus::PendingSignature)
        .collect();
    assert_eq!(pending.len(), 1, "{pending:#?}");
}

#[tokio::test(start_paused = true)]
async fn an_unmanaged_guest_is_reported_and_never_touched() {
    let px = node(&[(100, "stopped"), (102, "stopped")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    cycle_until(&mut e, &status, 10, |s| s.last_cycle_ops == 0).await;
    assert_eq!(status.borrow().unmanaged, vec![102]);
    assert!(px.mutations().iter().all(|c| !c.ends_with(" 102")));
    assert_eq!(px.guest(102).unwrap().status, "stopped");
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_backs_off_on_paused_time_then_retries() {
    let px = node(&[(100, "stopped")], 10);
    px.inject(
        100,
        Fault::FailTask("startup for container '100' failed".into()),
    );
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let config = EngineConfig {
        backoff_min: std::time::Duration::from_secs(5),
        ..EngineConfig::default()
    };
    let (mut e, status) = engine(&px, &store, config);
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    e.reconcile().await.unwrap();
    assert!(status.borrow().errors[&100].contains("startup for container"));
    // Within the backoff nothing is posted again.
    e.reconcile().await.unwrap();
    assert!(
        status.borrow().errors[&100].contains("backing off"),
        "{:?}",
        status.borrow().errors
    );
    assert_eq!(px.tasks_of("vzstart", 100), 1);
    assert_eq!(px.guest(100).unwrap().status, "stopped");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    e.reconcile().await.unwrap();
    assert_eq!(px.tasks_of("vzstart", 100), 2);
    assert_eq!(px.guest(100).unwrap().status, "running");
    let states: Vec<OpStatus> = store.ops().iter().map(|o| o.state).collect();
    assert_eq!(states, vec![OpStatus::Failed, OpStatus::Succeeded]);
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_post_is_found_in_the_task_list_not_sent_again() {
    let px = node(&[(100, "stopped")], 100);
    px.inject(100, Fault::DropAfterPost);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    cycle_until(&mut e, &status, 10, |s| {
        s.last_cycle_ops == 0 && s.errors.is_empty()
    })
    .await;
    assert_eq!(px.tasks_of("vzstart", 100), 1, "{:?}", px.calls());
    assert_eq!(px.guest(100).unwrap().status, "running");
    let op = &store.ops()[0];
    assert_eq!(op.state, OpStatus::Succeeded, "{op:#?}");
    assert!(op.steps[0].upid.is_some(), "the found task is journaled");
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_refuses_the_intent_posts_nothing() {
    let px = node(&[(100, "stopped")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    // The op's insert succeeds, its intent fails (a full disk).
    let fail_second = store.clone();
    fail_second.fail_next_write();
    e.reconcile().await.unwrap();
    assert_eq!(
        px.tasks_of("vzstart", 100),
        0,
        "posted without a journaled intent"
    );
    assert!(status.borrow().errors.contains_key(&100));
}

/// The one acceptance rule, as the engine status carries it to the hub report: an older and a
/// rewritten generation are refused (with the generation they claimed), an invalid document
/// too, and the refusal ends when the one in force is offered again or a newer one arrives.
#[tokio::test(start_paused = true)]
async fn refusals_are_reported_until_an_acceptable_document_arrives() {
    use reconcile::{Ingest, Refusal};
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    let doc = |generation: u64, hostname: &str| {
        json!({"v":1,"generation":generation,"guests":[
            {"vmid":100,"state":"running","config":{"hostname":hostname}}]})
    };
    assert_eq!(
        ingest(&mut e, doc(5, "a")),
        Ingest::Accepted { generation: 5 }
    );
    e.reconcile().await.unwrap();
    assert_eq!(status.borrow().refused, None);

    assert!(matches!(
        ingest(&mut e, doc(4, "a")),
        Ingest::Ignored { .. }
    ));
    let refused = status.borrow().refused.clone().expect("older is refused");
    assert_eq!(refused.generation, Some(4));
    assert!(refused.reason.contains("older"), "{refused:?}");

    assert!(matches!(
        ingest(&mut e, doc(5, "evil")),
        Ingest::Rejected { .. }
    ));
    let refused = status.borrow().refused.clone().expect("rewrite is refused");
    assert_eq!(refused.generation, Some(5));
    assert!(refused.reason.contains("different content"), "{refused:?}");

    assert_eq!(ingest(&mut e, doc(5, "a")), Ingest::Unchanged);
    assert_eq!(status.borrow().refused, None);

    assert!(matches!(
        ingest(&mut e, json!({"v":1,"generation":"six","guests":[]})),
        Ingest::Rejected { .. }
    ));
    assert!(matches!(
        status.borrow().refused,
        Some(Refusal {
            generation: None,
            ..
        })
    ));
    assert_eq!(
        ingest(&mut e, doc(6, "a")),
        Ingest::Accepted { generation: 6 }
    );
    // An accepted document shows in the status once a cycle has applied it.
    e.reconcile().await.unwrap();
    assert_eq!(status.borrow().refused, None);
    assert_eq!(status.borrow().generation, Some(6));
}

/// Issue 12: a bad storage manifest (here a hot volume on a slow target) rejects the whole
/// document, names the field, and the last accepted document, storage section included, stays
/// in force — also across a restart, which re-reads it from the journal.
#[tokio::test(start_paused = true)]
async fn a_bad_storage_manifest_is_rejected_and_the_last_good_one_stays() {
    use reconcile::Ingest;
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    let doc = |generation: u64, target: &str| {
        json!({"v":1,"generation":generation,
            "guests":[{"vmid":100,"state":"running","volumes":[
                {"name":"db","mp":"/srv/db","kind":"hot","size_gb":8,"target":target}]}],
            "storage":{"targets":[
                {"id":"ssd","type":"local-dir","durable_id":"/srv/ssd","class":"fast","iops":40000,
                 "role":"primary","state":"attached"},
                {"id":"usb-a","type":"usb","durable_id":"ABCD-1234","class":"slow","role":"bulk-data",
                 "state":"attached"}]}})
    };
    assert_eq!(
        ingest(&mut e, doc(5, "ssd")),
        Ingest::Accepted { generation: 5 }
    );
    let Ingest::Rejected { reason } = ingest(&mut e, doc(6, "usb-a")) else {
        panic!("a hot volume on a slow target is accepted");
    };
    assert!(
        reason.contains("guests[0].volumes[0].target") && reason.contains("fast target"),
        "{reason}"
    );
    let in_force = |d: Option<&reconcile::DesiredState>| {
        d.map(|d| (d.generation, d.guests[&100].volumes[0].target.clone()))
    };
    assert_eq!(in_force(e.desired()), Some((5, Some("ssd".to_owned()))));
    assert!(e.desired().and_then(|d| d.storage.as_ref()).is_some());
    let refused = status.borrow().refused.clone().expect("reported");
    assert_eq!(refused.generation, Some(6));
    drop(e);
    let (again, _status) = engine(&px, &store, EngineConfig::default());
    assert_eq!(in_force(again.desired()), Some((5, Some("ssd".to_owned()))));
}

/// Issue 11 item 5: an op whose id is already journaled is refused, never continued on the
/// other op's step rows; nothing is posted for it.
#[tokio::test(start_paused = true)]
async fn an_op_id_already_in_the_journal_is_refused_not_continued() {
    use std::sync::Arc;

    use journal::OpKind;
    use reconcile::{ExecError, Executor, OpSpec, Step};
    let px = node(&[(100, "stopped")], 10);
    let store = MemoryStore::new();
    let exec = Executor::new(Arc::new(px.clone()), Arc::new(store.clone()));
    let spec = |steps| OpSpec {
        op_id: "op-20261204-0001".into(),
        kind: OpKind::Signed,
        vmid: 100,
        generation: None,
        steps,
        authority: None,
        wait_limit: None,
    };
    exec.run(&spec(vec![Step::Start])).await.unwrap();
    let before = px.mutations();
    let err = exec
        .run(&spec(vec![Step::Stop]))
        .await
        .expect_err("the second op with the same id is refused");
    assert!(matches!(err, ExecError::OpIdExists { .. }), "{err}");
    assert_eq!(px.mutations(), before, "nothing posted for the refused op");
    let ops = store.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].steps.len(), 1, "the first op's rows are its own");
    assert!(reconcile::is_internal_op_id("pending-guest.destroy-102-g2"));
    assert!(reconcile::is_internal_op_id("rc-100-1764806400-3"));
    assert!(!reconcile::is_internal_op_id("op-20261204-0001"));
}

#[tokio::test(start_paused = true)]
async fn a_signed_destroy_whose_answer_is_lost_is_found_not_sent_again() {
    let px = node(&[(100, "stopped")], 100);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    // 100 is managed and not desired: its destroy waits for a signature.
    ingest(&mut e, json!({"v":1,"generation":1,"guests":[]}));
    e.reconcile().await.unwrap();
    assert_eq!(status.borrow().pending_signature.len(), 1);
    px.inject(100, Fault::DropAfterPost);
    let now = time::OffsetDateTime::now_utc();
    let op = Signer::new().verified(
        "destroy-0100",
        "guest.destroy",
        json!({"vmid": 100}),
        now,
        std::time::Duration::from_secs(600),
        now,
    );
    let outcome = e.run_signed(&op).await;
    assert_eq!(outcome.result, JobResult::Succeeded, "{outcome:?}");
    assert_eq!(px.tasks_of("vzdestroy", 100), 1, "{:?}", px.calls());
    assert!(px.guest(100).is_none());
    let destroys = px
        .mutations()
        .iter()
        .filter(|c| c.contains("destroy"))
        .count();
    assert_eq!(
        destroys,
        1,
        "the destroy was sent again: {:?}",
        px.mutations()
    );
    let record = store.op("destroy-0100").unwrap();
    assert_eq!(record.state, OpStatus::Succeeded, "{record:#?}");
    assert!(
        record.steps[0].upid.is_some(),
        "the found task is journaled"
    );
    assert!(!store
        .guests()
        .unwrap()
        .iter()
        .any(|g| g.vmid == 100 && g.managed));
    assert!(
        store.pending_ops().unwrap().is_empty(),
        "the pending destroy stays open"
    );
}
