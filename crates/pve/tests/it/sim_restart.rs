//! The simulator is killed with SIGKILL while a task runs and restarted on the same state and
//! port: a `wait_task` started before the kill rides through the outage (connect errors while
//! polling are retried) and reports the task's real outcome.

use std::time::{Duration, Instant};

use pve::{Error, SnapshotName, TaskOutcome, Vmid, WaitOptions};

use crate::sim_env::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_task_survives_a_simulator_restart() {
    let mut env = Env::start(2, 1500);
    let vmid = Vmid::new(101).unwrap();
    let name: SnapshotName = "before-restart".parse().unwrap();
    let upid = env
        .agent
        .create_snapshot(vmid, &name, Some("taken across a restart"))
        .await
        .unwrap()
        .upid()
        .cloned()
        .expect("a task");
    let started = Instant::now();
    let waiter = {
        let client = env.agent.clone();
        let upid = upid.clone();
        tokio::spawn(async move {
            client
                .wait_task(&upid, WaitOptions::new(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    env.sim.kill9();
    // While nothing listens, calls fail with a retryable connect error, and the waiter keeps
    // polling into the same wall.
    let fresh = env.client(&env.sim.info.token, env.fingerprint());
    let err = fresh.version().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter gave up during the outage"
    );
    tokio::task::block_in_place(|| env.sim.restart()).expect("restart the simulator");

    let outcome = waiter.await.expect("waiter task").expect("task outcome");
    assert_eq!(outcome, TaskOutcome::Ok);
    // The outcome is the task's real end, not a guess: it ran its full duration.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let snaps = env.agent.list_snapshots(vmid).await.unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].name, "before-restart");
    assert_eq!(
        snaps[0].description.as_deref(),
        Some("taken across a restart")
    );
    let cfg = env.agent.lxc_config(vmid).await.unwrap();
    assert_eq!(cfg.lock, None);
    // The restarted process answered the waiter's polls (its log starts empty).
    let log = env.audit().await;
    let status_path = format!("/nodes/pve/tasks/{upid}/status");
    let polls: Vec<_> = log.iter().filter(|e| e["path"] == status_path).collect();
    assert!(!polls.is_empty(), "{log:#?}");
    assert!(polls
        .iter()
        .any(|e| e["response"]["data"]["status"] == "stopped"));
}
