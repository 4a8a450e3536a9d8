//! Shared setup: an engine on the fakes, desired-state documents, waiting on paused time,
//! signed ops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authz::ports::MemoryLedger;
use authz::{Operators, Policy, SignedInput, VerifiedOp};

use reconcile::fakes::{FakeGuest, FakeProxmox, MemoryStore};
use reconcile::{DesiredInput, Engine, EngineConfig, EngineStatus, Ingest};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
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

/// One operator (`alice`, role `operator`) with an ed25519 key made from a fixed seed.
pub struct Signer {
    _dir: tempfile::TempDir,
    key: PathBuf,
    operators: Operators,
}

impl Signer {
    pub fn new() -> Signer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("alice");
        let private =
            ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]));
        private
            .write_openssh_file(&key, ssh_key::LineEnding::LF)
            .unwrap();
        let public = private.public_key().to_openssh().unwrap();
        let file = json!({"operators": [
            {"principal": "alice", "public_key": public, "roles": ["operator"]}]});
        let operators = Operators::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
        Signer {
            _dir: dir,
            key,
            operators,
        }
    }

    /// `action` on `target`, issued at `issued` for `ttl`, signed and verified at `now`.
    pub fn verified(
        &self,
        op_id: &str,
        action: &str,
        target: Value,
        issued: OffsetDateTime,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> VerifiedOp {
        let payload = serde_json::to_vec(&json!({
            "v": 1, "op_id": op_id, "nonce": format!("nonce-{op_id}-0000000000"),
            "issued_at": issued.format(&Rfc3339).unwrap(),
            "expires_at": (issued + ttl).format(&Rfc3339).unwrap(),
            "host_id": "host-1", "action": action, "target": target, "params": {}
        }))
        .unwrap();
        let signature = authz::sign::sign_with_key_file(&self.key, &payload).unwrap();
        authz::verify(
            SignedInput::Parts {
                payload: &payload,
                signature: signature.as_bytes(),
            },
            &self.operators,
            &Policy::new("host-1", now),
            &mut MemoryLedger::default(),
        )
        .expect("verified")
    }
}
