//! Crash tests: the real `felhom-agent run` against the simulator with slow tasks, stopped at
//! every step boundary of a multi-step op ([shutdown, set_config]) by a debug-build crash point
//! and killed with a real SIGKILL; restarted without it. After each: no task duplicated, the
//! config PUT sent exactly once, the guest converged, no op "succeeded" with a step not done,
//! nothing left unfinished, and `audit verify` passes.

use std::time::Duration;

use serde_json::json;

use crate::engine_support::{wait_for, Harness};

fn crash_at(point: &str) {
    let h = Harness::new(1, 1500);
    h.adopt(&[100]);
    h.desired(&json!({"v":1,"generation":1,"guests":[
        {"vmid":100,"state":"stopped","config":{"hostname":"crashed"}}]}));
    let first = h.start(Some(point));
    let name = point.split(':').next().unwrap();
    first.wait_log(&format!("CRASHPOINT {name}"), Duration::from_secs(60));
    first.kill9();

    let second = h.start(None);
    let converged = wait_for(Duration::from_secs(60), || {
        let (status, hostname, _) = h.guest(100)?;
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        let idle = j.unfinished_ops().ok()?.is_empty();
        (status == "stopped" && hostname.as_deref() == Some("crashed") && idle).then_some(())
    });
    assert!(
        converged.is_some(),
        "{point}: not converged\n{}",
        second.log()
    );
    // One more cycle must change nothing.
    std::thread::sleep(Duration::from_secs(3));
    let log = second.stop();
    assert_eq!(
        h.tasks_of("vzshutdown", 100),
        1,
        "{point}: shutdown duplicated\n{log}"
    );
    assert_eq!(
        h.requests("PUT", "/lxc/100/config"),
        1,
        "{point}: config PUT not exactly once\n{log}"
    );
    let j = h.journal();
    for op in j.ops_of(100).unwrap() {
        if op.state == journal::OpStatus::Succeeded {
            assert!(
                op.steps
                    .iter()
                    .all(|s| s.state == journal::StepStatus::Done),
                "{point}: {op:?}"
            );
        }
        assert!(
            op.state.is_final() || op.state == journal::OpStatus::PendingSignature,
            "{point}: {op:?}"
        );
    }
    let (code, out) = h.audit_verify();
    assert_eq!(code, 0, "{point}: {out}");
}

#[test]
fn crash_after_intent_of_the_first_step() {
    crash_at("after-intent:1");
}

#[test]
fn crash_after_post_of_the_first_step() {
    crash_at("after-post:1");
}

#[test]
fn crash_after_upid_of_the_first_step() {
    crash_at("after-upid:1");
}

#[test]
fn crash_after_the_first_step() {
    crash_at("after-step:1");
}

#[test]
fn crash_after_intent_of_the_second_step() {
    crash_at("after-intent:2");
}

#[test]
fn crash_after_post_of_the_second_step() {
    crash_at("after-post:2");
}

#[test]
fn crash_after_the_second_step() {
    crash_at("after-step:2");
}
