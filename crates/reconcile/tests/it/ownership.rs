//! Ownership is provenance (DESIGN.md §4.6, issue 11 items 1-3): naming a guest in a desired
//! state never makes it managed, a managed guest that vanishes or is replaced on its vmid is
//! released before anything acts on it, guests adopted by earlier versions get an identity, and
//! a lower generation is accepted only once after a signed reset.

use journal::NewAuditEntry;
use reconcile::desired::MAX_GENERATION;
use reconcile::fakes::{adopt, FakeGuest, MemoryStore};
use reconcile::normalize::with_identity;
use reconcile::{EngineConfig, Ingest, Store};
use serde_json::json;

use crate::support::{cycle_until, engine, ingest, node};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn managed(store: &MemoryStore, vmid: u32) -> bool {
    store
        .guests()
        .unwrap()
        .iter()
        .any(|g| g.vmid == vmid && g.managed)
}

#[tokio::test(start_paused = true)]
async fn a_named_guest_waits_for_a_signed_adoption_and_is_never_touched() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    // What a compromised hub sent: stop someone else's guest, starve it, cut its network.
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"stopped","config":{"memory":16,
                "net0":"name=eth0,bridge=vmbr0,firewall=1,ip=10.0.0.9/24"}},
            {"vmid":150,"state":"running"}]}),
    );
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    assert!(px.mutations().is_empty(), "{:?}", px.mutations());
    assert!(!managed(&store, 100) && !managed(&store, 150));
    let now = status.borrow().clone();
    assert_eq!(now.pending_signature.len(), 1, "{now:#?}");
    let pending = &now.pending_signature[0];
    assert_eq!(
        (
            pending.vmid,
            pending.action.as_str(),
            pending.target.as_str()
        ),
        (100, "guest.adopt", "vmid:100")
    );
    assert!(pending.reason.starts_with("adoption-needs-signature"));
    assert!(
        now.errors[&100].starts_with("adoption-needs-signature"),
        "{now:#?}"
    );
    assert!(now.errors[&150].contains("not on this node"), "{now:#?}");
    // A guest created later on the named vmid is not the agent's either.
    px.put_guest(150, FakeGuest::new("stopped"));
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    assert!(px.mutations().is_empty(), "{:?}", px.mutations());
    let vmids: Vec<u32> = status
        .borrow()
        .pending_signature
        .iter()
        .map(|p| p.vmid)
        .collect();
    assert_eq!(vmids, vec![100, 150]);
}

#[tokio::test(start_paused = true)]
async fn a_vanished_guest_is_released_and_its_successor_on_the_vmid_starts_unmanaged() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    e.reconcile().await.unwrap();
    assert!(managed(&store, 100));
    // Destroyed outside the agent.
    px.remove_guest(100);
    e.reconcile().await.unwrap();
    assert!(!managed(&store, 100), "a vanished guest stays managed");
    assert!(store
        .audit_entries()
        .iter()
        .any(|a| a.outcome == "released" && a.reason.as_deref() == Some("vanished")));
    // PVE hands the lowest free vmid to the next guest; a stale desired state wants it stopped.
    px.put_guest(100, FakeGuest::new("running"));
    ingest(
        &mut e,
        json!({"v":1,"generation":2,"guests":[{"vmid":100,"state":"stopped"}]}),
    );
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    assert_eq!(px.tasks_of("vzshutdown", 100), 0, "{:?}", px.calls());
    assert_eq!(px.guest(100).unwrap().status, "running");
    assert_eq!(status.borrow().pending_signature[0].action, "guest.adopt");
}

#[tokio::test(start_paused = true)]
async fn a_guest_replaced_between_two_cycles_is_released_before_anything_runs() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    adopt(&px, &store, 100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[{"vmid":100,"state":"running"}]}),
    );
    e.reconcile().await.unwrap();
    // Destroyed and recreated behind the agent's back between two list reads: the list still
    // shows a running 100.
    px.put_guest(100, FakeGuest::new("running"));
    ingest(
        &mut e,
        json!({"v":1,"generation":2,"guests":[{"vmid":100,"state":"stopped"}]}),
    );
    e.reconcile().await.unwrap();
    assert_eq!(px.tasks_of("vzshutdown", 100), 0, "{:?}", px.calls());
    assert!(!managed(&store, 100));
    let error = status.borrow().errors[&100].clone();
    assert!(
        error.contains("not the guest this agent manages"),
        "{error}"
    );
    assert!(store
        .audit_entries()
        .iter()
        .any(|a| a.outcome == "released" && a.reason.as_deref() == Some("identity-changed")));
    cycle_until(&mut e, &status, 5, |s| {
        s.pending_signature
            .iter()
            .any(|p| p.action == "guest.adopt")
    })
    .await;
    assert_eq!(px.tasks_of("vzshutdown", 100), 0);
}

#[tokio::test(start_paused = true)]
async fn a_guest_adopted_by_an_earlier_version_gets_an_identity_and_keeps_its_text() {
    let px = node(&[(100, "running")], 10);
    let mut g = FakeGuest::new("running");
    g.config
        .insert("description".into(), "customer notes".into());
    px.put_guest(100, g);
    let store = MemoryStore::new();
    store.manage(100);
    let (mut e, status) = engine(&px, &store, EngineConfig::default());
    ingest(
        &mut e,
        json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"running","config":{"description":"customer notes"}}]}),
    );
    cycle_until(&mut e, &status, 10, |s| {
        s.last_cycle_ops == 0 && s.errors.is_empty()
    })
    .await;
    let record = store.guests().unwrap().remove(0);
    let identity = record.identity.clone().expect("an identity was recorded");
    // It dates from when the guest was first managed, not from now.
    assert_eq!(record.identity_at, Some(record.first_seen));
    assert_eq!(
        px.guest(100).unwrap().config["description"],
        with_identity("customer notes", &identity)
    );
    assert_eq!(px.mutations(), vec!["set_config 100"]);
    // The hub rewrites the description: the identity line stays.
    ingest(
        &mut e,
        json!({"v":1,"generation":2,"guests":[
            {"vmid":100,"state":"running","config":{"description":"new notes"}}]}),
    );
    cycle_until(&mut e, &status, 10, |s| {
        s.last_cycle_ops == 0 && s.errors.is_empty()
    })
    .await;
    assert_eq!(
        px.guest(100).unwrap().config["description"],
        with_identity("new notes", &identity)
    );
    assert!(managed(&store, 100));
    // Quiet afterwards: the identity line is not a difference.
    let before = px.mutations().len();
    for _ in 0..3 {
        e.reconcile().await.unwrap();
    }
    assert_eq!(px.mutations().len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_lower_generation_is_accepted_once_and_only_after_a_signed_reset() {
    let px = node(&[(100, "running")], 10);
    let store = MemoryStore::new();
    let (mut e, _status) = engine(&px, &store, EngineConfig::default());
    let doc = |generation: u64| json!({"v":1,"generation":generation,"guests":[]});
    assert_eq!(
        ingest(&mut e, doc(MAX_GENERATION)),
        Ingest::Accepted {
            generation: MAX_GENERATION
        }
    );
    assert!(matches!(ingest(&mut e, doc(7)), Ingest::Ignored { .. }));
    let audit = NewAuditEntry::new(now(), "desired", "reset-armed");
    // An expired arming is no arming.
    store
        .arm_desired_reset("reset-old", "alice", now() - 900, now() - 300, &audit)
        .unwrap();
    assert!(matches!(ingest(&mut e, doc(7)), Ingest::Ignored { .. }));
    store
        .arm_desired_reset("reset-1", "alice", now(), now() + 600, &audit)
        .unwrap();
    assert_eq!(ingest(&mut e, doc(7)), Ingest::Accepted { generation: 7 });
    // Used up: the next lower one is ignored again, a newer one accepted as always.
    assert!(matches!(ingest(&mut e, doc(6)), Ingest::Ignored { .. }));
    assert_eq!(ingest(&mut e, doc(8)), Ingest::Accepted { generation: 8 });
    assert_eq!(store.latest_desired().unwrap().unwrap().generation, 8);
}
