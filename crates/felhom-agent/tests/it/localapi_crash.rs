//! Crash tests of local-API ops: the real `felhom-agent run` with its local API, a controller
//! token minted by the CLI, `POST /snapshot` and `POST /backup` over pinned HTTPS, the agent
//! stopped at each step boundary by a crash point and killed with SIGKILL, then restarted
//! without it. The one recovery path settles the op exactly as it does reconcile ops: no task
//! is ever posted twice, a POST whose UPID was never recorded is found in the task list, a task
//! that was running is re-attached, and nothing is left unfinished.
//!
//! The truly ambiguous POST (Proxmox acted, the agent never saw the answer) is tested with the
//! simulator's `/_sim/drop` `"after": true`, without any crash.

use std::net::TcpListener;
use std::time::Duration;

use journal::{OpKind, OpStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::engine_support::{wait_for, Harness};
use crate::localapi::{cli, mint, pinned};

/// A harness whose agent serves the local API on a fixed loopback port (the same after the
/// restart), with guest 100 in the desired state as it is, so no reconcile op runs.
pub(crate) fn harness(task_ms: u64) -> (Harness, u16) {
    let h = Harness::new(1, task_ms);
    h.adopt(&[100]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&h.config).unwrap()).unwrap();
    config["local_api"] = json!({"listen": [format!("127.0.0.1:{port}")]});
    std::fs::write(&h.config, config.to_string()).unwrap();
    let (status, _, _) = h.guest(100).expect("guest 100");
    h.desired(&json!({"v":1,"generation":1,"guests":[
        {"vmid":100,"state":status},
    ],"backup":{"guests":{"100":{"schedule":"daily","target":"local","keep_last":3}}}}));
    (h, port)
}

/// Mints a token for guest 100 (adopted by the harness), once the desired state that carries
/// its backup policy has been accepted: before that `POST /backup` is rightly refused with
/// `no_backup_policy`, and a test that raced the hub loop failed on a slow machine.
pub(crate) fn token(h: &Harness) -> String {
    let ready = wait_for(Duration::from_secs(30), || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        let adopted = j.guests().ok()?.iter().any(|g| g.vmid == 100 && g.managed);
        let accepted = j.latest_desired_generation().ok()?.is_some_and(|g| g >= 1);
        (adopted && accepted).then_some(())
    });
    assert!(
        ready.is_some(),
        "guest 100 never adopted or desired state never accepted"
    );
    mint(&h.config, 100).1
}

/// `POST path` as guest 100's controller, in a thread of its own (the agent may be frozen).
pub(crate) fn post(
    h: &Harness,
    port: u16,
    token: &str,
    path: &str,
    body: Value,
) -> std::thread::JoinHandle<Result<(StatusCode, Value), String>> {
    let (code, out, err) = cli(&h.config, &["fingerprint"]);
    assert_eq!(code, 0, "{err}");
    let fingerprint: pve::Fingerprint = out.trim().parse().unwrap();
    let (url, token) = (format!("https://127.0.0.1:{port}{path}"), token.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = pinned(fingerprint)
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
        })
    })
}

/// Waits for the local API to answer (the daemon is up and has recovered).
pub(crate) fn wait_listening(h: &Harness, port: u16, token: &str) {
    let up = wait_for(Duration::from_secs(30), || {
        let (code, out, _) = cli(&h.config, &["fingerprint"]);
        if code != 0 {
            return None;
        }
        let fingerprint: pve::Fingerprint = out.trim().parse().ok()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            pinned(fingerprint)
                .get(format!("https://127.0.0.1:{port}/backup/status"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == StatusCode::OK)
                .map(drop)
        })
    });
    assert!(up.is_some(), "local api not answering on {port}");
}

/// The local-API ops of guest 100 once none is unfinished.
pub(crate) fn settled(h: &Harness) -> Vec<journal::OpRecord> {
    let ops = wait_for(Duration::from_secs(60), || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        j.unfinished_ops().ok()?.is_empty().then_some(())?;
        Some(
            j.ops_of(100)
                .ok()?
                .into_iter()
                .filter(|o| o.kind == OpKind::LocalApi)
                .collect::<Vec<_>>(),
        )
    });
    ops.expect("local api op never settled")
}

/// Kills the agent at `point` during the local-API op `path`, restarts it, and checks how the
/// op ended and that exactly `tasks` tasks of `task_type` exist for guest 100.
fn crash_at(
    point: &str,
    path: &str,
    body: Value,
    task_type: &str,
    end: OpStatus,
    tasks: usize,
) -> journal::OpRecord {
    let (h, port) = harness(1500);
    let first = h.start(Some(point));
    let token = token(&h);
    wait_listening(&h, port, &token);
    let call = post(&h, port, &token, path, body);
    let name = point.split(':').next().unwrap();
    first.wait_log(&format!("CRASHPOINT {name}"), Duration::from_secs(60));
    first.kill9();
    // The controller's request died with the agent.
    let answer = call.join().unwrap();
    assert!(
        !matches!(answer, Ok((StatusCode::CREATED, _))),
        "{point}: {answer:?}"
    );

    let second = h.start(None);
    let ops = settled(&h);
    std::thread::sleep(Duration::from_secs(2));
    let log = second.stop();
    assert_eq!(ops.len(), 1, "{point}: {ops:#?}\n{log}");
    assert_eq!(ops[0].state, end, "{point}: {:#?}\n{log}", ops[0]);
    if end == OpStatus::Succeeded {
        assert!(ops[0]
            .steps
            .iter()
            .all(|s| s.state == journal::StepStatus::Done));
    }
    assert_eq!(
        h.tasks_of(task_type, 100),
        tasks,
        "{point}: {task_type} tasks\n{log}"
    );
    let (code, out) = h.audit_verify();
    assert_eq!(code, 0, "{point}: {out}");
    ops.into_iter().next().unwrap()
}

/// A backup op killed at `point`: its vzdump is found or re-attached and done (one task); the
/// prune after it is skipped by the restart's re-plan (the next backup prunes again), so the
/// op ends abandoned while the backup counts as a success.
fn backup_crash(point: &str) {
    let op = crash_at(
        point,
        "/backup",
        json!({}),
        "vzdump",
        OpStatus::Abandoned,
        1,
    );
    let states: Vec<_> = op
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("vzdump", journal::StepStatus::Done),
            ("prune", journal::StepStatus::Skipped)
        ],
        "{op:#?}"
    );
}

fn snapshot(point: &str, end: OpStatus, tasks: usize) {
    crash_at(
        point,
        "/snapshot",
        json!({"name":"before-crash"}),
        "vzsnapshot",
        end,
        tasks,
    );
}

#[test]
fn snapshot_killed_between_the_intent_and_the_post_is_abandoned_and_never_posted() {
    snapshot("after-intent:1", OpStatus::Abandoned, 0);
}

#[test]
fn snapshot_killed_after_the_post_before_its_upid_is_found_in_the_task_list() {
    snapshot("after-post:1", OpStatus::Succeeded, 1);
}

#[test]
fn snapshot_killed_while_its_task_runs_is_reattached() {
    snapshot("after-upid:1", OpStatus::Succeeded, 1);
}

#[test]
fn backup_killed_after_the_post_before_its_upid_is_found_in_the_task_list() {
    backup_crash("after-post:1");
}

#[test]
fn backup_killed_while_vzdump_runs_is_reattached() {
    backup_crash("after-upid:1");
}

#[test]
fn rollback_killed_after_the_post_before_its_upid_is_found_in_the_task_list() {
    // A snapshot to roll back to, taken through the agent before the crash run.
    let (h, port) = harness(300);
    let first = h.start(None);
    let token = token(&h);
    wait_listening(&h, port, &token);
    let made = post(&h, port, &token, "/snapshot", json!({"name":"base"}))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(made.0, StatusCode::CREATED, "{made:?}");
    first.stop();
    let crashing = h.start(Some("after-post:1"));
    wait_listening(&h, port, &token);
    let call = post(&h, port, &token, "/rollback", json!({"name":"base"}));
    crashing.wait_log("CRASHPOINT after-post", Duration::from_secs(60));
    crashing.kill9();
    let _ = call.join();
    let second = h.start(None);
    let ops = settled(&h);
    let log = second.stop();
    let rollback: Vec<_> = ops
        .iter()
        .filter(|o| o.steps[0].kind == "rollback")
        .collect();
    assert_eq!(rollback.len(), 1, "{ops:#?}");
    assert_eq!(
        rollback[0].state,
        OpStatus::Succeeded,
        "{:#?}\n{log}",
        rollback[0]
    );
    assert_eq!(h.tasks_of("vzrollback", 100), 1, "{log}");
}
