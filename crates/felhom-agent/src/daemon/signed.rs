//! Verification of signed ops in wire form, shared by every intake (the local ops directory
//! and the hub): `authz::verify` against the operators file, this host's id and the journal's
//! replay guard (a second journal connection, so verification never waits for the engine).

use std::path::PathBuf;

use authz::{Operators, Policy, SignedInput, VerifyError};
use serde_json::json;
use tracing::info;

use crate::ledger::JournalLedger;

/// What to do with one signed op.
pub enum Verdict {
    /// Verified: run it.
    Run(Box<authz::VerifiedOp>),
    /// Refused by verification; the value is the result recorded for the sender.
    Rejected(serde_json::Value),
    /// Could not be decided now (store or operators file unavailable): try again later.
    Retry(String),
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
    pub fn verify(&self, wire: &[u8], origin: &str) -> Verdict {
        let operators = match &self.operators_file {
            Some(path) => match Operators::load(path) {
                Ok(o) => o,
                Err(e) => return Verdict::Retry(format!("operators file: {e}")),
            },
            None => {
                return Verdict::Rejected(json!({"result": "rejected", "reason": "unknown-key",
                    "detail": "no operators_file is configured: no operator can sign"}))
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
                let recorded = r
                    .redelivery()
                    .map(|d| json!({"state": d.state, "outcome": d.outcome}));
                Verdict::Rejected(json!({"result": "rejected", "reason": r.reason().as_str(),
                    "code": r.audit_reason(), "detail": r.detail(), "recorded": recorded}))
            }
            Err(e @ VerifyError::Ledger(_)) => Verdict::Retry(reconcile::error_chain(&e)),
        }
    }
}
