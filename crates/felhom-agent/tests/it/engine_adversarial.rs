//! The adversarial-hub suite, through the local source (desired file + ops dir) against the
//! real simulator and the real `felhom-agent run`: a compromised hub may drop, relabel,
//! reorder and replay, and still never gets customer data destroyed without a signature.

use std::time::Duration;

use serde_json::json;

use crate::engine_support::{has_pending, wait_for, Harness, HOST};
use crate::{agent, run};

const T: Duration = Duration::from_secs(60);

#[test]
fn a_compromised_hub_cannot_destroy_and_signed_ops_are_bound() {
    // Simulator guests: 100 running, 101 stopped, 102 running, 103 stopped.
    let h = Harness::new(4, 200);
    h.desired(&json!({"v":1,"generation":1,"guests":[
        {"vmid":100,"state":"running"},{"vmid":101,"state":"stopped"},{"vmid":102,"state":"running"}]}));
    let agent_proc = h.start(None);
    // Issue 11 item 1: naming guests does not make them the agent's. The adoption waits for a
    // signature, `plan` says so, and nothing is managed.
    let accepted = wait_for(T, || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        (j.latest_desired_state().ok()??.generation == 1).then_some(())
    });
    assert!(accepted.is_some(), "{}", agent_proc.log());
    std::thread::sleep(Duration::from_secs(1));
    assert!(h.journal().guests().unwrap().iter().all(|g| !g.managed));
    let (code, out, err) = run(agent().args(["plan", "--config"]).arg(&h.config));
    assert_eq!(code, 0, "{err}");
    for vmid in [100, 101, 102] {
        assert!(
            out.contains(&format!("{vmid}\tadoption-needs-signature")),
            "{out}"
        );
    }
    // The operator signs each adoption; the agent writes the guest's identity and manages it.
    for vmid in [100, 101, 102] {
        let op = h.signed_op("alice", "guest.adopt", &format!("vmid:{vmid}"), HOST);
        let name = format!("adopt-{vmid}.json");
        h.drop_op(&name, &op);
        let (dir, result) = h.op_result(&name);
        assert_eq!(
            (dir.as_str(), result["result"].as_str()),
            ("done", Some("succeeded")),
            "{result}"
        );
    }
    let adopted = wait_for(T, || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        (j.guests()
            .ok()?
            .iter()
            .filter(|g| g.managed && g.identity.is_some())
            .count()
            == 3)
            .then_some(())
    });
    assert!(adopted.is_some(), "{}", agent_proc.log());

    // A managed guest dropped, another relabelled "scratch"/"ephemeral" then dropped too.
    h.desired(&json!({"v":1,"generation":2,"guests":[
        {"vmid":100,"state":"running"},
        {"vmid":102,"state":"running","config":{"tags":"scratch;ephemeral","description":"ephemeral scratch"}}]}));
    assert!(
        wait_for(T, || has_pending(&h.state(), 101).then_some(())).is_some(),
        "{}",
        agent_proc.log()
    );
    assert!(wait_for(T, || h
        .guest(102)
        .and_then(|g| g.2)
        .filter(|t| t.contains("scratch")))
    .is_some());
    h.desired(&json!({"v":1,"generation":3,"guests":[{"vmid":100,"state":"running"}]}));
    assert!(
        wait_for(T, || has_pending(&h.state(), 102).then_some(())).is_some(),
        "{}",
        agent_proc.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    // Generations 2 and 3 both leave 101 out: one open pending op for it, not one per
    // generation (the newer replaces the older).
    let open_101: Vec<String> = h
        .journal()
        .pending_ops()
        .unwrap()
        .into_iter()
        .filter(|o| o.vmid == 101)
        .map(|o| o.op_id)
        .collect();
    assert_eq!(
        open_101,
        ["pending-guest.destroy-101-g3"],
        "{}",
        agent_proc.log()
    );
    assert_eq!(h.requests("DELETE", "/lxc/101"), 0);
    assert_eq!(h.requests("DELETE", "/lxc/102"), 0);
    assert!(h.guest(101).is_some() && h.guest(102).is_some());

    // `plan` reports both as needs-signature and 103 as unmanaged, changing nothing.
    let audit_before = h.journal().audit_verify().unwrap().entries;
    let (code, out, err) = run(agent().args(["plan", "--config"]).arg(&h.config));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("101\tdestroy\tneeds-signature"), "{out}");
    assert!(out.contains("102\tdestroy\tneeds-signature"), "{out}");
    assert!(out.contains("103\tunmanaged"), "{out}");
    assert_eq!(h.journal().audit_verify().unwrap().entries, audit_before);

    // An older generation is ignored; the same generation with other content is rejected.
    h.desired(&json!({"v":1,"generation":1,"guests":[]}));
    let ignored = wait_for(T, || {
        let tail = h.journal().audit_tail(50).ok()?;
        tail.iter()
            .any(|e| e.entry.kind == "desired" && e.entry.outcome == "ignored")
            .then_some(())
    });
    assert!(ignored.is_some());
    h.desired(&json!({"v":1,"generation":3,"guests":[{"vmid":100,"state":"stopped"}]}));
    let rejected = wait_for(T, || {
        let tail = h.journal().audit_tail(50).ok()?;
        tail.iter()
            .find(|e| e.entry.kind == "desired" && e.entry.outcome == "rejected")
            .map(|e| e.entry.detail.clone().unwrap_or_default())
    });
    assert!(rejected.unwrap().contains("different content"));
    assert_eq!(
        h.journal()
            .latest_desired_state()
            .unwrap()
            .unwrap()
            .generation,
        3
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        h.guest(100).unwrap().0,
        "running",
        "a rejected document must not act"
    );

    // Signed ops: another host -> wrong-host; an unmanaged guest -> refused, untouched.
    let other_host = h.signed_op("alice", "guest.destroy", "vmid:101", "host-2");
    h.drop_op("a-wrong-host.json", &other_host);
    let (dir, result) = h.op_result("a-wrong-host.json");
    assert_eq!(
        (dir.as_str(), result["reason"].as_str()),
        ("rejected", Some("wrong-host")),
        "{result}"
    );
    let unknown_key = h.signed_op("mallory", "guest.destroy", "vmid:101", HOST);
    h.drop_op("b-mallory.json", &unknown_key);
    assert_eq!(h.op_result("b-mallory.json").1["reason"], "unknown-key");
    let unmanaged = h.signed_op("alice", "guest.destroy", "vmid:103", HOST);
    h.drop_op("c-unmanaged.json", &unmanaged);
    let (dir, result) = h.op_result("c-unmanaged.json");
    assert_eq!(
        (dir.as_str(), result["reason"].as_str()),
        ("done", Some("not-managed")),
        "{result}"
    );
    assert!(h.guest(103).is_some());

    // Issue 11 item 5: an operator-chosen op id shaped like an internal one ran against that
    // op's step rows. The agent's own namespace is refused before anything runs, and 102's
    // pending op is left as it was.
    let pending_102 = h
        .journal()
        .pending_ops()
        .unwrap()
        .into_iter()
        .find(|o| o.vmid == 102)
        .expect("102 waits for a signature");
    let shaped = h.signed_op_with(
        "alice",
        "guest.destroy",
        "vmid:102",
        HOST,
        &["--op-id", &pending_102.op_id],
    );
    h.drop_op("c2-shaped.json", &shaped);
    let (dir, result) = h.op_result("c2-shaped.json");
    assert_eq!(
        (
            dir.as_str(),
            result["result"].as_str(),
            result["reason"].as_str()
        ),
        ("done", Some("refused"), Some("reserved-op-id")),
        "{result}"
    );
    assert!(h.guest(102).is_some());
    assert_eq!(h.tasks_of("vzdestroy", 102), 0);
    let after = h.journal().op(&pending_102.op_id).unwrap().unwrap();
    assert_eq!(
        (after.state, after.steps.len()),
        (pending_102.state, pending_102.steps.len())
    );

    // The right signature destroys exactly its target, once.
    let destroy_101 = h.signed_op("alice", "guest.destroy", "vmid:101", HOST);
    h.drop_op("d-destroy-101.json", &destroy_101);
    let (dir, result) = h.op_result("d-destroy-101.json");
    assert_eq!(
        (dir.as_str(), result["result"].as_str()),
        ("done", Some("succeeded")),
        "{result}"
    );
    assert!(h.guest(101).is_none());
    assert!(h.guest(102).is_some(), "another vmid must not be touched");
    assert!(wait_for(T, || (!has_pending(&h.state(), 101)).then_some(())).is_some());
    assert!(has_pending(&h.state(), 102));

    // Replayed: refused, nothing runs twice.
    h.drop_op("e-replay.json", &destroy_101);
    let (dir, result) = h.op_result("e-replay.json");
    assert_eq!(
        (dir.as_str(), result["reason"].as_str()),
        ("rejected", Some("replay")),
        "{result}"
    );
    assert_eq!(result["recorded"]["state"], "succeeded", "{result}");
    assert_eq!(h.tasks_of("vzdestroy", 101), 1);
    assert_eq!(h.tasks_of("vzdestroy", 102), 0);

    // Issue 11 item 2: guest 102 destroyed outside the agent (as root on the node). The agent
    // releases it with its controller's token in one transaction; a new guest on the vmid
    // would start unmanaged and never see that token.
    let (id, _token) = crate::localapi::mint(&h.config, 102);
    h.rt.block_on(async {
        let pve = h.sim.client(true).unwrap();
        let v = pve::Vmid::new(102).unwrap();
        if let pve::TaskRef::Task(upid) = pve.stop_lxc(v).await.unwrap() {
            pve.wait_task(&upid, pve::WaitOptions::default())
                .await
                .unwrap();
        }
        let destroy = pve.destroy_lxc(v, pve::DestroyOptions::default());
        if let pve::TaskRef::Task(upid) = destroy.await.unwrap() {
            pve.wait_task(&upid, pve::WaitOptions::default())
                .await
                .unwrap();
        }
    });
    let released = wait_for(T, || {
        let j = journal::Journal::open_read_only(&h.state()).ok()?;
        let g = j.guests().ok()?.into_iter().find(|g| g.vmid == 102)?;
        (!g.managed).then_some(j.local_api_token(&id).ok()??.revoked_at)
    });
    assert!(
        matches!(released, Some(Some(_))),
        "102 not released with its token revoked: {released:?}\n{}",
        agent_proc.log()
    );
    assert!(
        !has_pending(&h.state(), 102),
        "a released guest's destroy stays pending"
    );

    let log = agent_proc.stop();
    assert!(
        !log.contains(h.sim.info.token.split_once('=').unwrap().1),
        "token leaked"
    );
    let (code, out) = h.audit_verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("audit chain intact:"), "{out}");
    let (code, out, _) = run(agent()
        .args(["audit", "tail", "-n", "5", "--config"])
        .arg(&h.config));
    assert_eq!((code, out.lines().count()), (0, 5), "{out}");
}

#[test]
fn a_corrupt_or_foreign_journal_stops_the_agent_with_a_clear_message() {
    let h = Harness::new(0, 200);
    std::fs::create_dir_all(h.state()).unwrap();
    std::fs::write(h.state().join(journal::DB_FILE_NAME), vec![b'x'; 4096]).unwrap();
    let (code, _, err) = run(agent().arg("run").arg("--config").arg(&h.config));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a felhom-agent database"), "{err}");
    let (code, _, err) = run(agent().args(["audit", "verify", "--config"]).arg(&h.config));
    assert_ne!(code, 0);
    assert!(err.contains("not a felhom-agent database"), "{err}");
}

/// A signature is checked when the op arrives, but the destroy starts only when the engine's
/// cycle and the guest's queue let it. One that expired while waiting is refused, not run.
#[test]
fn a_signed_destroy_that_expires_while_waiting_is_refused_not_run() {
    // Simulator guests: 100 running, 101 stopped; every Proxmox task takes 6 s.
    let h = Harness::new(2, 6000);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&h.config).unwrap()).unwrap();
    config["authz"] = json!({"clock_skew_s": 1});
    std::fs::write(&h.config, config.to_string()).unwrap();
    h.desired(&json!({"v":1,"generation":1,"guests":[
        {"vmid":100,"state":"running"},{"vmid":101,"state":"stopped"}]}));
    h.adopt(&[100, 101]);
    let agent_proc = h.start(None);

    // Generation 2 starts 101: the cycle is busy with a 6 s task.
    h.desired(&json!({"v":1,"generation":2,"guests":[
        {"vmid":100,"state":"running"},{"vmid":101,"state":"running"}]}));
    assert!(
        wait_for(T, || (h.tasks_of("vzstart", 101) > 0).then_some(())).is_some(),
        "{}",
        agent_proc.log()
    );
    // Valid on arrival (2 s lifetime, 1 s skew), stale by the time the start has finished.
    let wire = h.signed_op_with("alice", "guest.destroy", "vmid:101", HOST, &["--ttl", "2s"]);
    h.drop_op("late-destroy-101.json", &wire);
    let (dir, result) = h.op_result("late-destroy-101.json");
    assert_eq!(
        (
            dir.as_str(),
            result["result"].as_str(),
            result["reason"].as_str()
        ),
        ("done", Some("refused"), Some("expired")),
        "{result}\n{}",
        agent_proc.log()
    );
    assert_eq!(h.tasks_of("vzdestroy", 101), 0, "a destroy was posted");
    assert!(h.guest(101).is_some(), "guest 101 is gone");
    agent_proc.stop();
}
