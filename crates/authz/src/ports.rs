//! The narrow traits `authz` needs from the outside world, and an in-memory fake of them.
//!
//! Direction of dependency: `authz` defines these traits and depends on no storage crate;
//! `journal` depends on nothing of ours; the binary adapts `journal::Journal` to these traits.
//! That keeps the verifier (and its fuzz target) free of SQLite and keeps the journal a general
//! store that later issues extend without touching authorization code.

use std::collections::HashMap;

use crate::{Action, Target};

/// What [`ReplayGuard::admit`] is asked to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The op's id.
    pub op_id: String,
    /// Its nonce.
    pub nonce: String,
    /// Who signed it.
    pub signer: String,
    /// SHA-256 (hex) of the exact payload bytes.
    pub payload_sha256: String,
    /// Its action.
    pub action: Action,
    /// Its target.
    pub target: Target,
    /// `expires_at`, Unix seconds.
    pub expires_at: i64,
    /// When the nonce may be forgotten (`expires_at` + clock skew), Unix seconds.
    pub keep_until: i64,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Where an op accepted before stands, as the replay guard recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedState {
    /// Verified and recorded; not started.
    Accepted,
    /// The executor has started it.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
}

impl RecordedState {
    /// The word (`accepted`, `running`, `succeeded`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedState::Accepted => "accepted",
            RecordedState::Running => "running",
            RecordedState::Succeeded => "succeeded",
            RecordedState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RecordedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recorded state of an op accepted before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redelivery {
    /// Where it stands.
    pub state: RecordedState,
    /// The recorded outcome (JSON text), if any.
    pub outcome: Option<String>,
}

/// The replay guard's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// New; recorded durably together with the accept audit event.
    Admitted,
    /// The same op (same id and payload) was accepted before; nothing recorded.
    Redelivery(Redelivery),
    /// The op id was accepted before with another payload; nothing recorded.
    OpIdConflict,
    /// The nonce was used by another op; nothing recorded.
    NonceReused {
        /// That op.
        by_op_id: String,
    },
}

/// How a verification ended, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// The op was accepted.
    Accepted,
    /// The op was refused.
    Rejected,
}

impl AuditOutcome {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Accepted => "accepted",
            AuditOutcome::Rejected => "rejected",
        }
    }
}

/// One audit record of a verification. Holds identifiers and reasons only: never key material,
/// never signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Now, Unix seconds.
    pub at: i64,
    /// The signer's principal, or `key SHA256:…` for a key not in the operators file; `None`
    /// before the signature was parsed.
    pub actor: Option<String>,
    /// The action, once the signed payload was parsed.
    pub action: Option<String>,
    /// The target (`vmid:101`, …), once the signed payload was parsed.
    pub target: Option<String>,
    /// The op id, once the signed payload was parsed.
    pub op_id: Option<String>,
    /// Accepted or rejected.
    pub outcome: AuditOutcome,
    /// `accepted`, a rejection word, or a precise replay code.
    pub reason: String,
    /// Detail, including the payload's SHA-256.
    pub detail: String,
}

/// The store failed; the verification fails closed.
#[derive(Debug, thiserror::Error)]
#[error("replay/audit store failed")]
pub struct LedgerError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

/// Durable, once-only acceptance.
pub trait ReplayGuard {
    /// Atomically: if neither the op id nor the nonce was seen, record both and `accepted`
    /// (the audit event) durably and answer [`Admission::Admitted`]; otherwise record nothing
    /// and say why.
    fn admit(&mut self, claim: &Claim, accepted: &AuditEvent) -> Result<Admission, LedgerError>;
}

/// Where rejections are recorded.
pub trait AuditSink {
    /// Appends one event durably.
    fn record(&mut self, event: &AuditEvent) -> Result<(), LedgerError>;
}

/// An in-memory [`ReplayGuard`] + [`AuditSink`] for tests, with an injectable fault.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    ops: HashMap<String, (String, Redelivery)>,
    nonces: HashMap<String, String>,
    /// Every event recorded, in order.
    pub events: Vec<AuditEvent>,
    /// When set, the next call fails (and records nothing).
    pub fail_next: bool,
}

impl MemoryLedger {
    fn fault(&mut self) -> Result<(), LedgerError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(LedgerError("injected fault".into()));
        }
        Ok(())
    }

    /// Sets the recorded state of an accepted op (what the executor would do).
    pub fn finish(&mut self, op_id: &str, state: RecordedState, outcome: Option<&str>) {
        if let Some((_, r)) = self.ops.get_mut(op_id) {
            r.state = state;
            r.outcome = outcome.map(str::to_owned);
        }
    }
}

impl ReplayGuard for MemoryLedger {
    fn admit(&mut self, claim: &Claim, accepted: &AuditEvent) -> Result<Admission, LedgerError> {
        self.fault()?;
        if let Some((sha, record)) = self.ops.get(&claim.op_id) {
            return Ok(if *sha == claim.payload_sha256 {
                Admission::Redelivery(record.clone())
            } else {
                Admission::OpIdConflict
            });
        }
        if let Some(by) = self.nonces.get(&claim.nonce) {
            return Ok(Admission::NonceReused {
                by_op_id: by.clone(),
            });
        }
        self.nonces.insert(claim.nonce.clone(), claim.op_id.clone());
        self.ops.insert(
            claim.op_id.clone(),
            (
                claim.payload_sha256.clone(),
                Redelivery {
                    state: RecordedState::Accepted,
                    outcome: None,
                },
            ),
        );
        self.events.push(accepted.clone());
        Ok(Admission::Admitted)
    }
}

impl AuditSink for MemoryLedger {
    fn record(&mut self, event: &AuditEvent) -> Result<(), LedgerError> {
        self.fault()?;
        self.events.push(event.clone());
        Ok(())
    }
}
