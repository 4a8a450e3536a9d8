//! Ops submitted through the engine handle (what the local API and `selftest task` do): the
//! same executor, queue and journal as reconcile ops, and typed failures.

use std::time::Duration;

use journal::{OpKind, OpStatus};
use reconcile::fakes::{Fault, MemoryStore};
use reconcile::{EngineConfig, GuestOp, OpFailure, Origin, SubmitError};

use crate::support::{engine, node};

fn snap(name: &str) -> GuestOp {
    GuestOp::Snapshot {
        name: name.parse().unwrap(),
        description: "test".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_is_journaled_and_run_by_the_executor() {
    let px = node(&[(100, "running")], 50);
    let store = MemoryStore::new();
    let (e, _) = engine(&px, &store, EngineConfig::default());
    let h = e.handle();
    let ticket = h.submit(Origin::LocalApi, 100, snap("pre")).unwrap();
    let op_id = ticket.op_id.clone();
    assert!(op_id.starts_with("la-snapshot-100-"), "{op_id}");
    ticket.finished().await.unwrap();
    assert_eq!(px.guest(100).unwrap().snapshots, vec!["pre"]);
    let op = store.op(&op_id).unwrap();
    assert_eq!((op.kind, op.state), (OpKind::LocalApi, OpStatus::Succeeded));
    assert_eq!(op.steps[0].kind, "snapshot");
    // The same name again: a conflict found in the guest's turn, journaled, nothing posted.
    let again = h.submit(Origin::LocalApi, 100, snap("pre")).unwrap();
    let again_id = again.op_id.clone();
    assert!(matches!(
        again.finished().await,
        Err(OpFailure::Conflict { .. })
    ));
    assert_eq!(store.op(&again_id).unwrap().state, OpStatus::Failed);
    assert_eq!(px.tasks_of("vzsnapshot", 100), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_are_typed() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    let (e, _) = engine(&px, &store, EngineConfig::default());
    let h = e.handle();
    px.set_lock(100, Some("backup"));
    let locked = h.submit(Origin::LocalApi, 100, snap("aa")).unwrap();
    assert_eq!(
        locked.finished().await,
        Err(OpFailure::Locked {
            vmid: 100,
            lock: "backup".into()
        })
    );
    px.set_lock(100, None);
    let gone = h.submit(Origin::LocalApi, 999, snap("aa")).unwrap();
    assert_eq!(
        gone.finished().await,
        Err(OpFailure::GuestGone { vmid: 999 })
    );
    px.inject(100, Fault::FailTask("snapshot failed: simulated".into()));
    let failed = h.submit(Origin::LocalApi, 100, snap("bb")).unwrap();
    let id = failed.op_id.clone();
    match failed.finished().await {
        Err(OpFailure::Failed { reason, .. }) => assert!(reason.contains("simulated"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.op(&id).unwrap().state, OpStatus::Failed);
    assert!(
        px.guest(100).unwrap().snapshots.is_empty(),
        "a failed task changed the guest"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_post_of_a_submitted_op_is_resolved_by_the_task_list() {
    for op in [
        snap("pre"),
        GuestOp::Backup {
            storage: "local".into(),
            keep: None,
        },
    ] {
        let px = node(&[(100, "stopped")], 50);
        px.inject(100, Fault::DropAfterPost);
        let store = MemoryStore::new();
        let (e, _) = engine(&px, &store, EngineConfig::default());
        let task_type = match op {
            GuestOp::Backup { .. } => "vzdump",
            _ => "vzsnapshot",
        };
        let ticket = e.handle().submit(Origin::LocalApi, 100, op).unwrap();
        let id = ticket.op_id.clone();
        ticket.finished().await.unwrap();
        assert_eq!(px.tasks_of(task_type, 100), 1, "{task_type} posted again");
        assert_eq!(store.op(&id).unwrap().state, OpStatus::Succeeded);
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_busy_at_once_and_a_second_backup_is_a_conflict() {
    let px = node(&[(100, "running")], 10_000);
    let store = MemoryStore::new();
    let config = EngineConfig {
        queue_depth: 2,
        ..EngineConfig::default()
    };
    let (e, _) = engine(&px, &store, config);
    let h = e.handle();
    let backup = h
        .submit(
            Origin::LocalApi,
            100,
            GuestOp::Backup {
                storage: "local".into(),
                keep: None,
            },
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    match h.submit(
        Origin::LocalApi,
        100,
        GuestOp::Backup {
            storage: "local".into(),
            keep: None,
        },
    ) {
        Err(SubmitError::Conflict { vmid: 100, .. }) => {}
        other => panic!("{other:?}"),
    }
    let queued = h.submit(Origin::LocalApi, 100, snap("xx")).unwrap();
    let before = store.ops().len();
    assert!(matches!(
        h.submit(Origin::LocalApi, 100, snap("yy")),
        Err(SubmitError::Busy(_))
    ));
    assert_eq!(store.ops().len(), before, "a busy refusal journaled an op");
    // The snapshot waits for the backup in the guest's queue.
    assert_eq!(store.op(&queued.op_id).unwrap().state, OpStatus::Planned);
    backup.finished().await.unwrap();
    queued.finished().await.unwrap();
    let order: Vec<String> = px.mutations();
    assert_eq!(order, vec!["vzdump 100", "snapshot 100"]);
}

fn backup_keeping(last: u32) -> GuestOp {
    GuestOp::Backup {
        storage: "local".into(),
        keep: Some(pve::Retention {
            last,
            ..pve::Retention::default()
        }),
    }
}

/// Issue 11 item 8: backups never prune themselves; the backup op's second step prunes by
/// the agent's retention, and only after its vzdump succeeded.
#[tokio::test(start_paused = true)]
async fn a_backup_prunes_to_the_agents_retention_and_a_failed_one_prunes_nothing() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    let (e, _) = engine(&px, &store, EngineConfig::default());
    let h = e.handle();
    for _ in 0..4 {
        let t = h.submit(Origin::LocalApi, 100, backup_keeping(2)).unwrap();
        let id = t.op_id.clone();
        t.finished().await.unwrap();
        let op = store.op(&id).unwrap();
        let kinds: Vec<_> = op.steps.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["vzdump", "prune"]);
    }
    assert_eq!(px.guest(100).unwrap().backups.len(), 2);
    assert_eq!(px.tasks_of("prunebackups", 100), 4);

    // A failed vzdump: the op fails at its first step and nothing is pruned.
    px.inject(100, Fault::FailTask("job errors".into()));
    let t = h.submit(Origin::LocalApi, 100, backup_keeping(1)).unwrap();
    let id = t.op_id.clone();
    assert!(t.finished().await.is_err());
    assert_eq!(
        px.guest(100).unwrap().backups.len(),
        2,
        "pruned after a failed backup"
    );
    assert_eq!(px.tasks_of("prunebackups", 100), 4);
    assert_eq!(store.op(&id).unwrap().state, OpStatus::Failed);

    // No retention (or an empty one): no prune step at all.
    let t = h
        .submit(
            Origin::LocalApi,
            100,
            GuestOp::Backup {
                storage: "local".into(),
                keep: Some(pve::Retention::default()),
            },
        )
        .unwrap();
    let id = t.op_id.clone();
    t.finished().await.unwrap();
    assert_eq!(store.op(&id).unwrap().steps.len(), 1);
    assert_eq!(px.guest(100).unwrap().backups.len(), 3);
}

/// The prune's POST answer lost: found in the task list, not sent again.
#[tokio::test(start_paused = true)]
async fn an_ambiguous_prune_is_resolved_by_the_task_list() {
    let px = node(&[(100, "stopped")], 50);
    let store = MemoryStore::new();
    let (e, _) = engine(&px, &store, EngineConfig::default());
    let h = e.handle();
    // Three backups without a retention first: no earlier prune task for the search to
    // mistake for this one (the fake's task times are wall-clock seconds).
    for _ in 0..3 {
        let plain = GuestOp::Backup {
            storage: "local".into(),
            keep: None,
        };
        h.submit(Origin::LocalApi, 100, plain)
            .unwrap()
            .finished()
            .await
            .unwrap();
    }
    // Once the backup's vzdump is posted, the next call is its prune, whose answer drops.
    let t = h.submit(Origin::LocalApi, 100, backup_keeping(1)).unwrap();
    let id = t.op_id.clone();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(px.tasks_of("vzdump", 100), 4);
    px.inject(100, Fault::DropAfterPost);
    t.finished().await.unwrap();
    assert_eq!(px.tasks_of("prunebackups", 100), 1, "prune posted again");
    assert_eq!(px.guest(100).unwrap().backups.len(), 1);
    assert_eq!(store.op(&id).unwrap().state, OpStatus::Succeeded);
}

/// UPID start times are whole seconds: an ambiguous snapshot moments after another on the same
/// guest must be matched to its own task, never to the earlier op's (which would mark it done
/// while its own task still runs, or never ran).
#[tokio::test(start_paused = true)]
async fn an_ambiguous_post_is_never_matched_to_an_earlier_ops_task() {
    let px = node(&[(100, "running")], 50);
    let store = MemoryStore::new();
    let (e, _) = engine(&px, &store, EngineConfig::default());
    let h = e.handle();
    let first = h.submit(Origin::LocalApi, 100, snap("one")).unwrap();
    let first_id = first.op_id.clone();
    first.finished().await.unwrap();
    px.inject(100, Fault::DropAfterPost);
    let second = h.submit(Origin::LocalApi, 100, snap("two")).unwrap();
    let second_id = second.op_id.clone();
    second.finished().await.unwrap();
    let upid = |id: &str| store.op(id).unwrap().steps[0].upid.clone().unwrap();
    assert_ne!(
        upid(&first_id),
        upid(&second_id),
        "the second op took the first op's task"
    );
    assert_eq!(px.tasks_of("vzsnapshot", 100), 2);
    assert_eq!(px.guest(100).unwrap().snapshots, vec!["one", "two"]);
}
