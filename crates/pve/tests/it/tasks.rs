use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use pve::{Error, PollPolicy, TaskOutcome, Upid, WaitOptions};

use crate::fake::{self, Answer, Fake};

/// The UPID lives on pve2 while the client's node is pve1: status must be asked of pve2.
const UPID: &str = "UPID:pve2:0003A1F2:01B2C3D4:66F0A1B2:vzsnapshot:101:felhom-agent@pve!agent:";

fn upid() -> Upid {
    UPID.parse().unwrap()
}

/// A task that reports `running` for `running_polls` status reads, then `exitstatus`.
/// `fail_poll` (1-based) answers 595 once, like a flapping proxy hop.
async fn task_fake(
    running_polls: usize,
    exitstatus: &'static str,
    fail_poll: Option<usize>,
) -> (Fake, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let fake = fake::serve(move |seen| {
        if seen.path.ends_with("/log") {
            let lines: Vec<_> = (1..=30).map(|n| json!({"n": n, "t": format!("line {n}")})).collect();
            return Answer::data(json!(lines));
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if fail_poll == Some(n) {
            return Answer::error(595, "Errors during connection establishment, proxy handshake: Connection refused", "");
        }
        let mut status = json!({
            "upid": UPID, "node": "pve2", "pid": 238066, "pstart": 28492756, "starttime": 1727046066,
            "type": "vzsnapshot", "id": "101", "user": "felhom-agent@pve", "tokenid": "agent",
            "status": "running"
        });
        if n > running_polls {
            status["status"] = json!("stopped");
            status["exitstatus"] = json!(exitstatus);
        }
        Answer::data(status)
    })
    .await;
    (fake, polls)
}

#[tokio::test]
async fn ok_after_some_polls() {
    let (fake, polls) = task_fake(3, "OK", None).await;
    let outcome = fake
        .client()
        .wait_task(&upid(), WaitOptions::new(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Ok);
    assert_eq!(polls.load(Ordering::SeqCst), 4);
    let seen = fake.seen();
    assert!(seen.iter().all(|s| s.method == "GET"));
    assert!(
        seen[0]
            .path
            .starts_with("/api2/json/nodes/pve2/tasks/UPID%3Apve2%3A"),
        "{}",
        seen[0].path
    );
    assert!(seen[0].path.ends_with("/status"));
}

#[tokio::test]
async fn warnings_count_as_success() {
    let (fake, _) = task_fake(0, "WARNINGS: 2", None).await;
    let outcome = fake
        .client()
        .wait_task(&upid(), WaitOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Warnings(2));
    assert_eq!(outcome.warnings(), 2);
}

#[tokio::test]
async fn failure_carries_the_log_tail() {
    let (fake, _) = task_fake(1, "snapshot feature is not available", None).await;
    let options = WaitOptions::default().log_tail_lines(5);
    let err = fake.client().wait_task(&upid(), options).await.unwrap_err();
    match &err {
        Error::TaskFailed {
            upid: u,
            exitstatus,
            log_tail,
        } => {
            assert_eq!(u, &upid());
            assert_eq!(exitstatus, "snapshot feature is not available");
            assert_eq!(
                log_tail,
                &["line 26", "line 27", "line 28", "line 29", "line 30"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .contains("snapshot feature is not available"));
    let log_req = fake
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/log"))
        .unwrap();
    assert!(log_req.query.unwrap().contains("limit=0"));
}

#[tokio::test]
async fn timeout_leaves_the_task_alone() {
    let (fake, _) = task_fake(usize::MAX, "OK", None).await;
    let err = fake
        .client()
        .wait_task(&upid(), WaitOptions::new(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TaskTimeout { .. }), "{err:?}");
    assert!(
        fake.seen().iter().all(|s| s.method == "GET"),
        "no stop request may be sent"
    );
}

#[tokio::test]
async fn cancel_signal_stops_waiting() {
    let (fake, _) = task_fake(usize::MAX, "OK", None).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let client = fake.client();
    let waiter = tokio::spawn(async move {
        client
            .wait_task(
                &upid(),
                WaitOptions::new(Duration::from_secs(30)).cancel_on(rx),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(true).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(res, Err(Error::TaskWaitCancelled { .. })),
        "{res:?}"
    );
}

#[tokio::test]
async fn cancel_future_and_drop_are_safe() {
    let (fake, polls) = task_fake(usize::MAX, "OK", None).await;
    let client = fake.client();
    let res = client
        .wait_task_until(
            &upid(),
            WaitOptions::default(),
            tokio::time::sleep(Duration::from_millis(80)),
        )
        .await;
    assert!(matches!(res, Err(Error::TaskWaitCancelled { .. })));
    // Dropping the future mid-wait (tokio::time::timeout) stops the polling.
    let _ = tokio::time::timeout(
        Duration::from_millis(80),
        client.wait_task(&upid(), WaitOptions::default()),
    )
    .await;
    let after_drop = polls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(polls.load(Ordering::SeqCst), after_drop);
}

#[tokio::test]
async fn transient_proxy_error_while_polling_is_retried() {
    let (fake, polls) = task_fake(2, "OK", Some(2)).await;
    let outcome = fake
        .client()
        .wait_task(&upid(), WaitOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Ok);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

/// A task that stops after ~1 s is noticed without hammering: the adaptive schedule makes at
/// most a handful of requests (25+50+100+200 ms, then one per 250 ms), a fixed 1 s poll fewer.
#[tokio::test]
async fn adaptive_polling_is_bounded() {
    let started = std::time::Instant::now();
    let stop_at = Duration::from_millis(1000);
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let fake = fake::serve(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let stopped = started.elapsed() >= stop_at;
        let mut s = json!({"upid": UPID, "status": if stopped { "stopped" } else { "running" }});
        if stopped {
            s["exitstatus"] = json!("OK");
        }
        Answer::data(s)
    })
    .await;
    let client = fake.client();
    client
        .wait_task(&upid(), WaitOptions::default())
        .await
        .unwrap();
    let n = polls.load(Ordering::SeqCst);
    // 1 s of waiting: 4 ramp-up polls (375 ms) + ~3 steady ones + the final one.
    assert!((3..=10).contains(&n), "{n} status requests");

    polls.store(0, Ordering::SeqCst);
    let options = WaitOptions::default().policy(PollPolicy::fixed(Duration::from_millis(400)));
    client.wait_task(&upid(), options).await.unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 1, "already stopped: one poll");
}
