//! Signed operations and their nonces: what makes an operator's authorization run once.
//!
//! [`Journal::admit_signed_op`] is the one write that accepts an op. In a single `IMMEDIATE`
//! transaction it prunes nonces past their keep-until time, looks the op up by `op_id` (same
//! payload: a redelivery, answered with the recorded state and outcome; different payload: a
//! conflict), then by nonce (already used: a replay), and only then inserts the nonce, the op
//! and the caller's audit entry together. With `synchronous=FULL` the commit is durable when it
//! returns, so an accepted nonce stays accepted across a crash or restart.
//!
//! Nonces are kept until `keep_until` (the op's expiry plus the clock-skew allowance, chosen by
//! the caller): after that the op would be rejected as expired anyway, so forgetting its nonce
//! reopens nothing. Op records are kept: they carry the outcome a redelivery is answered with.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::audit::append_in;
use crate::{Journal, JournalError, NewAuditEntry};

/// An op being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSignedOp {
    /// The op's id (unique).
    pub op_id: String,
    /// Its nonce (unique while kept).
    pub nonce: String,
    /// The operator principal that signed it.
    pub signer: String,
    /// SHA-256 (hex) of the exact payload bytes.
    pub payload_sha256: String,
    /// The action, e.g. `guest.destroy`.
    pub action: String,
    /// The target, e.g. `vmid:101`.
    pub target: String,
    /// The op's `expires_at`, Unix seconds.
    pub expires_at: i64,
    /// When its nonce may be forgotten, Unix seconds.
    pub keep_until: i64,
    /// Now, Unix seconds.
    pub accepted_at: i64,
}

/// Where an accepted op stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// Verified and recorded; not started.
    Accepted,
    /// The executor has started it.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
}

impl OpState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Accepted => "accepted",
            OpState::Running => "running",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<OpState> {
        Some(match s {
            "accepted" => OpState::Accepted,
            "running" => OpState::Running,
            "succeeded" => OpState::Succeeded,
            "failed" => OpState::Failed,
            _ => return None,
        })
    }
}

/// A recorded op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOpRecord {
    /// Its id.
    pub op_id: String,
    /// SHA-256 (hex) of the payload it was accepted with.
    pub payload_sha256: String,
    /// Its action.
    pub action: String,
    /// Its target.
    pub target: String,
    /// Its signer.
    pub signer: String,
    /// Where it stands.
    pub state: OpState,
    /// The recorded outcome (JSON text), once there is one.
    pub outcome: Option<String>,
    /// When it was accepted, Unix seconds.
    pub accepted_at: i64,
    /// Last state change, Unix seconds.
    pub updated_at: i64,
}

/// What [`Journal::admit_signed_op`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitOutcome {
    /// New: nonce, op and audit entry are recorded.
    Admitted,
    /// The same op (same id, same payload) was accepted before: here is its record. Nothing was
    /// written; the op must not run again.
    Redelivery(SignedOpRecord),
    /// The op id was accepted before with a different payload. Nothing was written.
    OpIdConflict {
        /// SHA-256 of the payload recorded under that id.
        recorded_sha256: String,
    },
    /// The nonce was used before by another op. Nothing was written.
    NonceReused {
        /// The op that used it.
        by_op_id: String,
    },
}

impl Journal {
    /// Accepts `op` once, durably, recording `audit` in the same transaction; see the module
    /// docs for the order of checks.
    pub fn admit_signed_op(
        &mut self,
        op: &NewSignedOp,
        audit: &NewAuditEntry,
    ) -> Result<AdmitOutcome, JournalError> {
        let during = "admitting a signed op";
        let sql = JournalError::sql(during);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let pruned = tx
            .execute("DELETE FROM nonces WHERE keep_until < ?1", [op.accepted_at])
            .map_err(JournalError::sql(during))?;
        if pruned > 0 {
            tracing::debug!(pruned, "expired nonces pruned");
        }
        if let Some(record) = select_op(&tx, &op.op_id)? {
            // Nothing to write: dropping the transaction rolls back the prune too, which is
            // harmless (it is redone next time).
            return Ok(if record.payload_sha256 == op.payload_sha256 {
                AdmitOutcome::Redelivery(record)
            } else {
                AdmitOutcome::OpIdConflict {
                    recorded_sha256: record.payload_sha256,
                }
            });
        }
        let used_by: Option<String> = tx
            .query_row(
                "SELECT op_id FROM nonces WHERE nonce = ?1",
                [&op.nonce],
                |r| r.get(0),
            )
            .optional()
            .map_err(JournalError::sql(during))?;
        if let Some(by_op_id) = used_by {
            return Ok(AdmitOutcome::NonceReused { by_op_id });
        }
        tx.execute(
            "INSERT INTO nonces (nonce, op_id, signer, payload_sha256, expires_at, keep_until,
                                 accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                op.nonce,
                op.op_id,
                op.signer,
                op.payload_sha256,
                op.expires_at,
                op.keep_until,
                op.accepted_at
            ],
        )
        .map_err(JournalError::sql(during))?;
        tx.execute(
            "INSERT INTO signed_ops (op_id, payload_sha256, action, target, signer, state,
                                     outcome, accepted_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', NULL, ?6, ?6)",
            params![
                op.op_id,
                op.payload_sha256,
                op.action,
                op.target,
                op.signer,
                op.accepted_at
            ],
        )
        .map_err(JournalError::sql(during))?;
        append_in(&tx, audit).map_err(JournalError::sql(during))?;
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(AdmitOutcome::Admitted)
    }

    /// The recorded op with this id.
    pub fn signed_op(&self, op_id: &str) -> Result<Option<SignedOpRecord>, JournalError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(JournalError::sql("reading a signed op"))?;
        select_op(&tx, op_id)
    }

    /// Records the op's new state and, when finished, its outcome (a JSON document).
    pub fn set_signed_op_state(
        &mut self,
        op_id: &str,
        state: OpState,
        outcome: Option<&str>,
        now: i64,
    ) -> Result<(), JournalError> {
        let during = "recording a signed op's state";
        let changed = self
            .conn
            .execute(
                "UPDATE signed_ops SET state = ?2, outcome = ?3, updated_at = ?4
                 WHERE op_id = ?1",
                params![op_id, state.as_str(), outcome, now],
            )
            .map_err(JournalError::sql(during))?;
        if changed == 0 {
            return Err(JournalError::Corrupt {
                table: "signed_ops",
                key: op_id.to_owned(),
                problem: "no such op".to_owned(),
            });
        }
        Ok(())
    }

    /// Deletes nonces whose keep-until time is before `now`; returns how many.
    pub fn prune_nonces(&mut self, now: i64) -> Result<usize, JournalError> {
        self.conn
            .execute("DELETE FROM nonces WHERE keep_until < ?1", [now])
            .map_err(JournalError::sql("pruning nonces"))
    }

    /// How many nonces are kept.
    pub fn nonce_count(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row("SELECT count(*) FROM nonces", [], |r| r.get::<_, i64>(0))
            .map(|n| n.unsigned_abs())
            .map_err(JournalError::sql("counting nonces"))
    }
}

fn select_op(
    tx: &rusqlite::Transaction<'_>,
    op_id: &str,
) -> Result<Option<SignedOpRecord>, JournalError> {
    let row = tx
        .query_row(
            "SELECT op_id, payload_sha256, action, target, signer, state, outcome, accepted_at,
                    updated_at
             FROM signed_ops WHERE op_id = ?1",
            [op_id],
            |r| {
                Ok((
                    SignedOpRecord {
                        op_id: r.get(0)?,
                        payload_sha256: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        signer: r.get(4)?,
                        state: OpState::Accepted,
                        outcome: r.get(6)?,
                        accepted_at: r.get(7)?,
                        updated_at: r.get(8)?,
                    },
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()
        .map_err(JournalError::sql("reading a signed op"))?;
    match row {
        None => Ok(None),
        Some((mut record, state)) => {
            record.state = OpState::parse(&state).ok_or_else(|| JournalError::Corrupt {
                table: "signed_ops",
                key: op_id.to_owned(),
                problem: format!("unknown state {state:?}"),
            })?;
            Ok(Some(record))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op_id: &str, nonce: &str, sha: &str, now: i64) -> NewSignedOp {
        NewSignedOp {
            op_id: op_id.into(),
            nonce: nonce.into(),
            signer: "alice".into(),
            payload_sha256: sha.into(),
            action: "guest.destroy".into(),
            target: "vmid:101".into(),
            expires_at: now + 600,
            keep_until: now + 720,
            accepted_at: now,
        }
    }

    fn audit(op_id: &str, now: i64) -> NewAuditEntry {
        NewAuditEntry {
            at: now,
            kind: "signed_op".into(),
            actor: Some("alice".into()),
            action: Some("guest.destroy".into()),
            target: Some("vmid:101".into()),
            op_id: Some(op_id.into()),
            outcome: "accepted".into(),
            reason: None,
            detail: None,
        }
    }

    #[test]
    fn admits_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let first = op("op-00000001", "nonce-aaaaaaaaaaaaaaaa", "aa", 1000);
        assert_eq!(
            j.admit_signed_op(&first, &audit("op-00000001", 1000))
                .unwrap(),
            AdmitOutcome::Admitted
        );
        drop(j);
        let mut j = Journal::open(dir.path()).unwrap();
        // Same op again: redelivery with the recorded state, nothing written.
        match j
            .admit_signed_op(&first, &audit("op-00000001", 1001))
            .unwrap()
        {
            AdmitOutcome::Redelivery(record) => {
                assert_eq!(record.state, OpState::Accepted);
                assert_eq!(record.signer, "alice");
            }
            other => panic!("{other:?}"),
        }
        // Same id, other payload.
        let changed = op("op-00000001", "nonce-bbbbbbbbbbbbbbbb", "bb", 1002);
        assert_eq!(
            j.admit_signed_op(&changed, &audit("op-00000001", 1002))
                .unwrap(),
            AdmitOutcome::OpIdConflict {
                recorded_sha256: "aa".into()
            }
        );
        // Other id, same nonce.
        let reused = op("op-00000002", "nonce-aaaaaaaaaaaaaaaa", "cc", 1003);
        assert_eq!(
            j.admit_signed_op(&reused, &audit("op-00000002", 1003))
                .unwrap(),
            AdmitOutcome::NonceReused {
                by_op_id: "op-00000001".into()
            }
        );
        // Only the one accept reached the audit log.
        assert_eq!(j.audit_verify().unwrap().entries, 1);
    }

    #[test]
    fn redelivery_returns_the_recorded_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let first = op("op-00000001", "nonce-aaaaaaaaaaaaaaaa", "aa", 1000);
        j.admit_signed_op(&first, &audit("op-00000001", 1000))
            .unwrap();
        j.set_signed_op_state(
            "op-00000001",
            OpState::Succeeded,
            Some(r#"{"upid":"x"}"#),
            1010,
        )
        .unwrap();
        match j
            .admit_signed_op(&first, &audit("op-00000001", 1020))
            .unwrap()
        {
            AdmitOutcome::Redelivery(record) => {
                assert_eq!(record.state, OpState::Succeeded);
                assert_eq!(record.outcome.as_deref(), Some(r#"{"upid":"x"}"#));
                assert_eq!(record.updated_at, 1010);
            }
            other => panic!("{other:?}"),
        }
        // Outcomes must be JSON.
        assert!(j
            .set_signed_op_state("op-00000001", OpState::Failed, Some("not json"), 1030)
            .is_err());
    }

    #[test]
    fn nonces_are_pruned_after_keep_until_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let first = op("op-00000001", "nonce-aaaaaaaaaaaaaaaa", "aa", 1000);
        j.admit_signed_op(&first, &audit("op-00000001", 1000))
            .unwrap();
        assert_eq!(j.prune_nonces(1720).unwrap(), 0);
        assert_eq!(j.nonce_count().unwrap(), 1);
        assert_eq!(j.prune_nonces(1721).unwrap(), 1);
        assert_eq!(j.nonce_count().unwrap(), 0);
        // The op record stays for redelivery answers.
        assert!(j.signed_op("op-00000001").unwrap().is_some());
    }

    #[test]
    fn an_error_mid_transaction_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        // Make the last statement of the transaction (the audit insert) fail.
        j.conn
            .execute_batch(
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit
                 BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;",
            )
            .unwrap();
        let first = op("op-00000001", "nonce-aaaaaaaaaaaaaaaa", "aa", 1000);
        let err = j
            .admit_signed_op(&first, &audit("op-00000001", 1000))
            .unwrap_err();
        assert!(matches!(err, JournalError::Sql { .. }), "{err:?}");
        assert_eq!(j.nonce_count().unwrap(), 0);
        assert!(j.signed_op("op-00000001").unwrap().is_none());
        // After the fault clears the same op is admitted normally.
        j.conn.execute_batch("DROP TRIGGER fail_audit;").unwrap();
        assert_eq!(
            j.admit_signed_op(&first, &audit("op-00000001", 1000))
                .unwrap(),
            AdmitOutcome::Admitted
        );
    }
}
