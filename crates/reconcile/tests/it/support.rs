//! Shared setup: an engine on the fakes, desired-state documents, waiting on paused time.

use std::sync::Arc;
use std::time::Duration;

use reconcile::fakes::{FakeGuest, FakeProxmox, MemoryStore};
use reconcile::{DesiredInput, Engine, EngineConfig, EngineStatus, Ingest};
use serde_json::Value;
use tokio::sync::watch;

pub type TestEngine = Engine<FakeProxmox, MemoryStore>;

pub fn node(guests: &[(u32, &str)], task_ms: u64) -> FakeProxmox {
    FakeProxmox::new(guests.iter().map(|(v, s)| (*v, FakeGuest::new(s))), task_ms)
}

pub fn engine(
    px: &FakeProxmox,
    store: &MemoryStore,
    config: EngineConfig,
) -> (TestEngine, watch::Receiver<EngineStatus>) {
    Engine::new(Arc::new(px.clone()), Arc::new(store.clone()), config).expect("engine")
}

pub fn ingest(engine: &mut TestEngine, doc: Value) -> Ingest {
    engine
        .ingest(&DesiredInput {
            bytes: doc.to_string().into_bytes().into(),
            source: "test".into(),
        })
        .expect("ingest")
}

/// Runs cycles (time passing as the engine asks) until `done` holds; at most `max` cycles.
pub async fn cycle_until(
    engine: &mut TestEngine,
    status: &watch::Receiver<EngineStatus>,
    max: usize,
    mut done: impl FnMut(&EngineStatus) -> bool,
) -> EngineStatus {
    for _ in 0..max {
        let action = engine.reconcile().await.expect("cycle");
        let now = status.borrow().clone();
        if done(&now) {
            return now;
        }
        tokio::time::sleep(action.delay().min(Duration::from_secs(1))).await;
    }
    panic!("not done after {max} cycles: {:#?}", status.borrow());
}
