//! `journal::Journal` as `authz`'s replay guard and audit sink: neither library depends on the
//! other; the binary wires them. Used by `op verify` and by the daemon's signed-op intake.

use authz::ports::AuditEvent;
use authz::{Admission, Claim, LedgerError};

/// `journal::Journal` as `authz`'s replay guard and audit sink.
pub struct JournalLedger<'a>(pub &'a mut journal::Journal);

fn entry(event: &AuditEvent) -> journal::NewAuditEntry {
    journal::NewAuditEntry::new(event.at, "signed_op", event.outcome.as_str())
        .actor(&event.actor)
        .action(&event.action)
        .target(&event.target)
        .op_id(&event.op_id)
        .reason(&event.reason)
        .detail(&event.detail)
}

impl authz::ReplayGuard for JournalLedger<'_> {
    fn admit(&mut self, claim: &Claim, accepted: &AuditEvent) -> Result<Admission, LedgerError> {
        let op = journal::NewSignedOp {
            op_id: claim.op_id.clone(),
            nonce: claim.nonce.clone(),
            signer: claim.signer.clone(),
            payload_sha256: claim.payload_sha256.clone(),
            action: claim.action.as_str().to_owned(),
            target: claim.target.to_string(),
            expires_at: claim.expires_at,
            keep_until: claim.keep_until,
            accepted_at: claim.now,
        };
        let outcome = self
            .0
            .admit_signed_op(&op, &entry(accepted))
            .map_err(|e| LedgerError(Box::new(e)))?;
        Ok(match outcome {
            journal::AdmitOutcome::Admitted => Admission::Admitted,
            journal::AdmitOutcome::Redelivery(record) => Admission::Redelivery(authz::Redelivery {
                state: match record.state {
                    journal::OpState::Accepted => authz::RecordedState::Accepted,
                    journal::OpState::Running => authz::RecordedState::Running,
                    journal::OpState::Succeeded => authz::RecordedState::Succeeded,
                    journal::OpState::Failed => authz::RecordedState::Failed,
                },
                outcome: record.outcome,
            }),
            journal::AdmitOutcome::OpIdConflict { .. } => Admission::OpIdConflict,
            journal::AdmitOutcome::NonceReused { by_op_id } => Admission::NonceReused { by_op_id },
        })
    }
}

impl authz::AuditSink for JournalLedger<'_> {
    fn record(&mut self, event: &AuditEvent) -> Result<(), LedgerError> {
        self.0
            .append_audit(&entry(event))
            .map(drop)
            .map_err(|e| LedgerError(Box::new(e)))
    }
}
