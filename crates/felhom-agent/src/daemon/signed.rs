//! Verification of signed ops in wire form, shared by every intake (the local ops directory
//! and the hub): `authz::verify` against the operators file, this host's id and the journal's
//! replay guard (a second journal connection, so verification never waits for the engine's
//! lock; its commits run off the async workers like the engine's).

use std::path::PathBuf;

use authz::{Operators, Policy, RecordedState, SignedInput, VerifyError};
use serde::Serialize;
use tracing::info;

use crate::ledger::JournalLedger;

/// What to do with one signed op.
pub enum Verdict {
    /// Verified: run it.
    Run(Box<authz::VerifiedOp>),
    /// Refused by verification; what the sender is told.
    Rejected(Refused),
    /// Could not be decided now (store or operators file unavailable): try again later.
    Retry(String),
}

/// Why verification refused an op, as the sender is told: the ops directory writes it as the
/// op's `.result.json`, the hub link turns it into an op outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// Always `rejected` (the result file's discriminator).
    pub result: &'static str,
    /// The protocol reason (`unknown-key`, `replay`, `expired`, …).
    pub reason: &'static str,
    /// The finer audit code (`replay-redelivery`, `no-operators-file`, …).
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// For an identical redelivery of an op accepted before: what was recorded for it.
    pub recorded: Option<Recorded>,
}

/// The recorded state of an op delivered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Where it stands.
    pub state: RecordedState,
    /// Its recorded outcome (JSON text), if it finished.
    pub outcome: Option<String>,
}

/// The inputs of verification.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The journal's directory.
    pub state_dir: PathBuf,
    /// Operators and roles; absent means every op is refused.
    pub operators_file: Option<PathBuf>,
    /// This host's id.
    pub host_id: String,
    /// Allowed clock skew (`authz.clock_skew_s`).
    pub clock_skew: std::time::Duration,
    /// Longest accepted lifetime (`authz.max_lifetime_s`).
    pub max_lifetime: std::time::Duration,
}

impl Verifier {
    /// The verifier for `config` (host id, operators file, journal, `authz.*` bounds).
    pub fn for_config(config: &crate::config::Config) -> Verifier {
        Verifier {
            state_dir: config.state_dir.clone(),
            operators_file: config.operators_file.clone(),
            host_id: config.host_id.clone(),
            clock_skew: std::time::Duration::from_secs(config.authz.clock_skew_s),
            max_lifetime: std::time::Duration::from_secs(config.authz.max_lifetime_s),
        }
    }

    /// Verifies `wire` (the JSON wire form); `origin` names where it came from, for the log.
    /// It reads the operators file and commits to the journal (the replay guard and the audit
    /// entry): blocking work, run off the async workers
    /// ([`crate::journal_handle::off_worker`]).
    pub fn verify(&self, wire: &[u8], origin: &str) -> Verdict {
        crate::journal_handle::off_worker(|| self.verify_blocking(wire, origin))
    }

    fn verify_blocking(&self, wire: &[u8], origin: &str) -> Verdict {
        let operators = match &self.operators_file {
            Some(path) => match Operators::load(path) {
                Ok(o) => o,
                Err(e) => return Verdict::Retry(format!("operators file: {e}")),
            },
            None => {
                return Verdict::Rejected(Refused {
                    result: "rejected",
                    reason: "unknown-key",
                    code: "no-operators-file",
                    detail: "no operators_file is configured: no operator can sign".into(),
                    recorded: None,
                })
            }
        };
        let mut journal = match journal::Journal::open(&self.state_dir) {
            Ok(j) => j,
            Err(e) => return Verdict::Retry(e.to_string()),
        };
        let mut policy = Policy::new(self.host_id.clone(), time::OffsetDateTime::now_utc());
        policy.clock_skew = self.clock_skew;
        policy.max_lifetime = self.max_lifetime;
        match authz::verify(
            SignedInput::Wire(wire),
            &operators,
            &policy,
            &mut JournalLedger(&mut journal),
        ) {
            Ok(op) => {
                info!(op_id = op.op_id(), action = %op.action(), origin, "signed op accepted");
                Verdict::Run(Box::new(op))
            }
            Err(VerifyError::Rejected(r)) => {
                info!(origin, reason = r.audit_reason(), "signed op rejected");
                Verdict::Rejected(Refused {
                    result: "rejected",
                    reason: r.reason().as_str(),
                    code: r.audit_reason(),
                    detail: r.detail().to_owned(),
                    recorded: r.redelivery().map(|d| Recorded {
                        state: d.state,
                        outcome: d.outcome.clone(),
                    }),
                })
            }
            Err(e @ VerifyError::Ledger(_)) => Verdict::Retry(reconcile::error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.result.json` of a rejected op file keeps its shape (ops-dir users read it).
    #[test]
    fn a_refusal_serializes_as_the_result_file_documents_it() {
        let refused = Refused {
            result: "rejected",
            reason: "replay",
            code: "replay-redelivery",
            detail: "op op-1 was accepted before (state succeeded)".into(),
            recorded: Some(Recorded {
                state: RecordedState::Succeeded,
                outcome: Some(r#"{"ok":true}"#.into()),
            }),
        };
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({"result": "rejected", "reason": "replay", "code": "replay-redelivery",
                "detail": "op op-1 was accepted before (state succeeded)",
                "recorded": {"state": "succeeded", "outcome": "{\"ok\":true}"}})
        );
        let none = Refused {
            recorded: None,
            ..refused
        };
        assert_eq!(
            serde_json::to_value(&none).unwrap()["recorded"],
            serde_json::Value::Null
        );
    }
}
