//! The truly ambiguous POST, for every kind of op: the simulator's `/_sim/drop` with
//! `"after": true` lets Proxmox act (the task starts) and then closes the connection without an
//! answer, so the agent never sees the UPID. The executor must not POST again: it searches the
//! task list for the task its POST started, journals it, waits for it, and the op succeeds with
//! exactly one task in the simulator.

use std::time::Duration;

use journal::{OpKind, OpStatus};
use reqwest::StatusCode;
use serde_json::json;

use crate::engine_support::wait_for;
use crate::localapi_crash::{harness, post, settled, token, wait_listening};

fn drop_after(h: &crate::engine_support::Harness, path: &str) {
    h.rt.block_on(h.sim.control(
        "POST",
        "/_sim/drop",
        Some(json!({"count": 1, "path_prefix": path, "method": "POST", "after": true})),
    ))
    .expect("drop rule");
}

#[test]
fn a_reconcile_start_whose_answer_is_lost_is_found_not_sent_again() {
    let (h, _port) = harness(300);
    let (status, _, _) = h.guest(100).unwrap();
    let (want, path, task_type) = if status == "running" {
        ("stopped", "status/shutdown", "vzshutdown")
    } else {
        ("running", "status/start", "vzstart")
    };
    drop_after(&h, &format!("/nodes/{}/lxc/100/{path}", h.sim.info.node));
    h.desired(&json!({"v":1,"generation":2,"guests":[{"vmid":100,"state":want}]}));
    let agent = h.start(None);
    let done = wait_for(Duration::from_secs(60), || {
        let (now, _, _) = h.guest(100)?;
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        let ops = j.ops_of(100).ok()?;
        (now == want && !ops.is_empty() && ops.iter().all(|o| o.state.is_final())).then_some(ops)
    });
    let log = agent.stop();
    let ops = done.unwrap_or_else(|| panic!("never converged\n{log}"));
    assert!(
        log.contains("ambiguous post"),
        "the drop did not happen:\n{log}"
    );
    assert_eq!(
        h.tasks_of(task_type, 100),
        1,
        "{task_type} posted twice\n{log}"
    );
    let op = ops.iter().find(|o| o.kind == OpKind::Reconcile).unwrap();
    assert_eq!(op.state, OpStatus::Succeeded, "{op:#?}");
    assert!(op.steps[0].upid.is_some(), "the found task is journaled");
}

/// A local-API op whose POST is dropped after Proxmox acted: answered as if nothing happened.
fn local_api(route: &str, body: serde_json::Value, sim_path: &str, task_type: &str) {
    let (h, port) = harness(200);
    let agent = h.start(None);
    let token = token(&h);
    wait_listening(&h, port, &token);
    if route == "/rollback" {
        let made = post(&h, port, &token, "/snapshot", json!({"name":"base"}))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(made.0, StatusCode::CREATED, "{made:?}");
    }
    drop_after(&h, &format!("/nodes/{}{sim_path}", h.sim.info.node));
    let (status, answer) = post(&h, port, &token, route, body).join().unwrap().unwrap();
    assert!(status.is_success(), "{route}: {status} {answer}");
    let ops = wait_for(Duration::from_secs(60), || {
        let ops = settled(&h);
        ops.iter()
            .any(|o| o.op_id == answer["op_id"].as_str().unwrap_or_default())
            .then_some(ops)
    })
    .expect("the op");
    let log = agent.stop();
    let op = ops
        .iter()
        .find(|o| o.op_id == answer["op_id"].as_str().unwrap_or_default())
        .unwrap();
    assert_eq!(op.state, OpStatus::Succeeded, "{op:#?}\n{log}");
    assert!(
        log.contains("ambiguous post"),
        "the drop did not happen:\n{log}"
    );
    assert_eq!(
        h.tasks_of(task_type, 100),
        1,
        "{task_type} posted twice\n{log}"
    );
}

#[test]
fn a_local_api_snapshot_whose_answer_is_lost_is_found_not_sent_again() {
    local_api(
        "/snapshot",
        json!({"name":"lost-answer"}),
        "/lxc/100/snapshot",
        "vzsnapshot",
    );
}

#[test]
fn a_local_api_backup_whose_answer_is_lost_is_found_not_sent_again() {
    local_api("/backup", json!({}), "/vzdump", "vzdump");
}

#[test]
fn a_local_api_rollback_whose_answer_is_lost_is_found_not_sent_again() {
    local_api(
        "/rollback",
        json!({"name":"base"}),
        "/lxc/100/snapshot/base/rollback",
        "vzrollback",
    );
}
