//! The reference hub's state: one JSON file under `--state`, rewritten atomically (write a
//! temporary file, fsync, rename, fsync the directory) after every change, so a `kill -9`
//! leaves either the old or the new state and a restart continues where it stopped — the API
//! key included.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hub::HubDirectedConfig;
use serde::{Deserialize, Serialize};

use crate::HubSimError;

const STATE_FILE: &str = "hub-state.json";
/// Outcomes kept per host.
const MAX_OUTCOMES: usize = 200;
/// Audit entries kept per host (the oldest go first).
const MAX_AUDIT: usize = 10_000;

/// Everything the hub remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// The one Bearer key agents use.
    pub api_key: String,
    /// Per host.
    pub hosts: BTreeMap<String, HostRecord>,
}

/// What the hub knows of one host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostRecord {
    /// Desired state as the admin put it.
    pub desired: Option<serde_json::Value>,
    /// Its generation (0 without one).
    pub generation: u64,
    /// Signed ops waiting for an outcome.
    pub ops: Vec<QueuedOp>,
    /// Outcomes the agent reported (newest last).
    pub outcomes: Vec<serde_json::Value>,
    /// Polling config sent down.
    pub config: HubDirectedConfig,
    /// The latest report.
    pub last_report: Option<serde_json::Value>,
    /// Reports received.
    pub reports: u64,
    /// Last authenticated agent request, Unix ms.
    pub last_seen_ms: Option<u64>,
    /// When the hub first heard of the host (admin put or first check-in), Unix ms.
    pub registered_ms: u64,
    /// Highest audit sequence stored.
    pub audit_seq: u64,
    /// Audit entries received (newest last).
    pub audit: Vec<serde_json::Value>,
    /// Ranges the agent said it left out.
    pub audit_gaps: Vec<serde_json::Value>,
}

/// A signed op in the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedOp {
    /// From the payload's `op_id`, else `sha256:<hex>` of the wire document.
    pub op_id: String,
    /// The wire form, exactly as posted.
    pub wire: serde_json::Value,
    /// Unix ms.
    pub queued_ms: u64,
}

/// The state file and its contents.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// The contents.
    pub data: Persisted,
}

impl Store {
    /// Opens the state under `dir`, creating it (with a fresh API key) on first start.
    pub fn open(dir: &Path) -> Result<Store, HubSimError> {
        std::fs::create_dir_all(dir).map_err(|source| HubSimError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let data = serde_json::from_slice(&bytes).map_err(|e| HubSimError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Store { path, data })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let store = Store {
                    path,
                    data: Persisted {
                        api_key: new_key()?,
                        hosts: BTreeMap::new(),
                    },
                };
                store.save()?;
                Ok(store)
            }
            Err(source) => Err(HubSimError::Io { path, source }),
        }
    }

    /// The host's record, created on first use.
    pub fn host(&mut self, id: &str, now_ms: u64) -> &mut HostRecord {
        self.data
            .hosts
            .entry(id.to_owned())
            .or_insert_with(|| HostRecord {
                registered_ms: now_ms,
                ..HostRecord::default()
            })
    }

    /// Writes the state atomically.
    pub fn save(&self) -> Result<(), HubSimError> {
        let io = |source| HubSimError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let bytes = serde_json::to_vec(&self.data).map_err(|e| HubSimError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl HostRecord {
    /// Records an agent's outcome and drops the op from the queue.
    pub fn record_outcome(&mut self, op_id: &str, outcome: serde_json::Value) {
        self.ops.retain(|op| op.op_id != op_id);
        self.outcomes.push(outcome);
        if self.outcomes.len() > MAX_OUTCOMES {
            let excess = self.outcomes.len() - MAX_OUTCOMES;
            self.outcomes.drain(..excess);
        }
    }

    /// Stores audit entries newer than the acknowledged sequence; returns the new ack.
    pub fn record_audit(&mut self, entries: &[hub::AuditEntry]) -> u64 {
        for e in entries {
            if e.seq <= self.audit_seq {
                continue;
            }
            self.audit_seq = e.seq;
            if let Ok(v) = serde_json::to_value(e) {
                self.audit.push(v);
            }
        }
        if self.audit.len() > MAX_AUDIT {
            let excess = self.audit.len() - MAX_AUDIT;
            self.audit.drain(..excess);
        }
        self.audit_seq
    }
}

fn new_key() -> Result<String, HubSimError> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| HubSimError::Random {
        reason: e.to_string(),
    })?;
    Ok(format!("hubsim-{}", hex::encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let key = s.data.api_key.clone();
        assert!(key.starts_with("hubsim-") && key.len() > 40);
        s.host("h1", 5).generation = 9;
        s.save().unwrap();
        let s2 = Store::open(dir.path()).unwrap();
        assert_eq!(s2.data.api_key, key);
        assert_eq!(s2.data.hosts["h1"].generation, 9);
        assert_eq!(s2.data.hosts["h1"].registered_ms, 5);
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{nope").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(HubSimError::Corrupt { .. })
        ));
    }
}
