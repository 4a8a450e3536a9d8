//! The one recovery path on the fakes: an op left by a "crashed" agent (journal rows as the
//! crash left them, and the node as Proxmox would have it), whoever asked for it.

use journal::{OpKind, OpRecord, OpStatus, StepRecord, StepStatus};
use reconcile::fakes::MemoryStore;
use reconcile::{EngineConfig, Proxmox};
use serde_json::json;

use crate::support::{cycle_until, engine, ingest, node};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn crashed(
    op_id: &str,
    kind: OpKind,
    step: &str,
    params: &str,
    state: StepStatus,
    upid: Option<String>,
) -> OpRecord {
    let at = now();
    OpRecord {
        op_id: op_id.into(),
        kind,
        vmid: 100,
        generation: None,
        state: OpStatus::Running,
        created_at: at,
        updated_at: at,
        error: None,
        steps: vec![StepRecord {
            idx: 0,
            kind: step.into(),
            params: params.into(),
            state,
            upid,
            intent_at: Some(at),
            posted_at: None,
            finished_at: None,
            exitstatus: None,
        }],
    }
}

async fn settled(store: &MemoryStore, op_id: &str) -> OpRecord {
    for _ in 0..200 {
        if let Some(op) = store.op(op_id).filter(|o| o.state.is_final()) {
            return op;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{op_id} never settled: {:#?}", store.op(op_id));
}

#[tokio::test(start_paused = true)]
async fn a_post_whose_upid_was_never_journaled_is_found_and_reattached() {
    for (kind, step, params, task_type) in [
        (OpKind::Reconcile, "start", "{}", "vzstart"),
        (
            OpKind::LocalApi,
            "snapshot",
            r#"{"name":"pre"}"#,
            "vzsnapshot",
        ),
        (
            OpKind::LocalApi,
            "vzdump",
            r#"{"storage":"local"}"#,
            "vzdump",
        ),
    ] {
        let px = node(&[(100, "stopped")], 500);
        // The POST happened before the crash: the task runs on the node.
        let name: pve::SnapshotName = "pre".parse().unwrap();
        match step {
            "start" => px.start(100).await.unwrap(),
            "snapshot" => px.snapshot(100, &name, "x").await.unwrap(),
            _ => px.vzdump(100, "local").await.unwrap(),
        };
        let store = MemoryStore::new();
        store.manage(100);
        store.put_op(crashed(
            "op-1",
            kind,
            step,
            params,
            StepStatus::Intent,
            None,
        ));
        let (mut e, _status) = engine(&px, &store, EngineConfig::default());
        e.reconcile().await.unwrap();
        let op = settled(&store, "op-1").await;
        assert_eq!(op.state, OpStatus::Succeeded, "{step}: {op:#?}");
        assert!(op.steps[0].upid.is_some());
        assert_eq!(px.tasks_of(task_type, 100), 1, "{step}: posted twice");
    }
}

#[tokio::test(start_paused = true)]
async fn an_intent_without_a_task_is_abandoned_and_never_posted_by_recovery() {
    let px = node(&[(100, "stopped")], 10);
    let store = MemoryStore::new();
    store.manage(100);
    store.put_op(crashed(
        "op-1",
        OpKind::LocalApi,
        "snapshot",
        r#"{"name":"pre"}"#,
        StepStatus::Intent,
        None,
    ));
    let (mut e, _status) = engine(&px, &store, EngineConfig::default());
    e.reconcile().await.unwrap();
    let op = settled(&store, "op-1").await;
    assert_eq!(op.state, OpStatus::Abandoned);
    assert!(op.error.unwrap_or_default().contains("never posted"));
    assert_eq!(px.tasks_of("vzsnapshot", 100), 0);
}

#[tokio::test(start_paused = true)]
async fn nothing_runs_on_a_recovering_guest_before_its_op_is_settled() {
    // A long vzdump was running when the agent died; the desired state wants the guest stopped.
    let px = node(&[(100, "running")], 5_000);
    let upid = match px.vzdump(100, "local").await.unwrap() {
        reconcile::Posted::Task(u) => u,
        reconcile::Posted::Sync => unreachable!(),
    };
    let store = MemoryStore::new();
    reconcile::fakes::adopt(&px, &store, 100);
    store.put_op(crashed(
        "bk-1",
        OpKind::LocalApi,
        "vzdump",
        r#"{"storage":"local"}"#,
        StepStatus::Posted,
        Some(upid.to_string()),
    ));
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"stopped"}]}),
    );
    // The first cycle returns at once (recovery runs in its own task) and plans nothing for 100.
    e.reconcile().await.unwrap();
    assert!(status.borrow().errors[&100].contains("interrupted by a restart"));
    assert_eq!(px.tasks_of("vzshutdown", 100), 0);
    // Then the backup ends, the op is settled, and the guest is shut down once.
    cycle_until(&mut e, &status, 30, |s| {
        s.errors.is_empty() && s.last_cycle_ops == 0
    })
    .await;
    assert_eq!(store.op("bk-1").unwrap().state, OpStatus::Succeeded);
    assert_eq!(px.guest(100).unwrap().backups, vec!["local"]);
    assert_eq!(px.tasks_of("vzshutdown", 100), 1);
    let shutdown_at = px.calls().iter().position(|c| c == "shutdown 100").unwrap();
    let vzdump_settled = px.calls().iter().position(|c| c == "wait 100").unwrap();
    assert!(vzdump_settled < shutdown_at, "{:?}", px.calls());
}
