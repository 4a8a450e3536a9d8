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

/// A signed `guest.destroy` whose answer is lost: the DELETE acted (the guest is gone), the
/// agent never saw the UPID. It finds the one `vzdestroy` task in the task list instead of
/// sending the DELETE again, and the destroy ends as any other: succeeded, the guest released in
/// the journal with its controller's token revoked, the pending destroy settled.
#[test]
fn a_signed_destroy_whose_answer_is_lost_is_found_not_sent_again() {
    use crate::engine_support::{has_pending, Harness, HOST};
    let h = Harness::new(2, 300);
    h.adopt(&[100, 101]);
    let (status, _, _) = h.guest(100).unwrap();
    // 101 is managed and no longer desired: its destroy waits for a signature.
    h.desired(&json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":status}]}));
    let agent = h.start(None);
    assert!(
        wait_for(Duration::from_secs(30), || has_pending(&h.state(), 101)
            .then_some(()))
        .is_some(),
        "no pending destroy\n{}",
        agent.log()
    );
    let (token_id, _token) = crate::localapi::mint(&h.config, 101);
    h.rt.block_on(h.sim.control(
        "POST",
        "/_sim/drop",
        Some(
            json!({"count": 1, "path_prefix": format!("/nodes/{}/lxc/101", h.sim.info.node),
            "method": "DELETE", "after": true}),
        ),
    ))
    .expect("drop rule");

    let wire = h.signed_op("alice", "guest.destroy", "vmid:101", HOST);
    h.drop_op("destroy-101.json", &wire);
    let (dir, result) = h.op_result("destroy-101.json");
    let released = wait_for(Duration::from_secs(30), || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        let g = j.guests().ok()?.into_iter().find(|g| g.vmid == 101)?;
        let revoked = j.local_api_token(&token_id).ok()??.revoked_at;
        (!g.managed && revoked.is_some() && !has_pending(&h.state(), 101)).then_some(())
    });
    let log = agent.stop();
    assert_eq!(
        (dir.as_str(), result["result"].as_str()),
        ("done", Some("succeeded")),
        "{result}\n{log}"
    );
    assert!(
        log.contains("ambiguous post"),
        "the drop did not happen:\n{log}"
    );
    assert_eq!(h.tasks_of("vzdestroy", 101), 1, "destroy sent twice\n{log}");
    assert_eq!(
        h.requests("DELETE", "/lxc/101"),
        1,
        "the DELETE was sent again\n{log}"
    );
    assert!(h.guest(101).is_none(), "guest 101 still exists");
    assert!(h.guest(100).is_some(), "another guest was touched");
    assert!(
        released.is_some(),
        "101 not released, its token not revoked or its pending destroy not settled\n{log}"
    );
    let op_id = result["op_id"].as_str().expect("op id");
    let op = h.journal().op(op_id).unwrap().expect("the signed op");
    assert_eq!(op.kind, OpKind::Signed);
    assert_eq!(op.state, OpStatus::Succeeded, "{op:#?}");
    let destroy = op.steps.iter().find(|s| s.kind == "destroy").unwrap();
    assert!(
        destroy.upid.is_some(),
        "the found task is journaled: {op:#?}"
    );
}
