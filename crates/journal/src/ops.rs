//! The op journal (schema version 2, one vocabulary for every kind since version 4):
//! multi-step operations with per-step state and in-flight UPIDs, so that a restarted agent can
//! resume or compensate what it was doing, whoever asked for the op (reconcile, a signed job,
//! the local API, a selftest).
//!
//! The write order is the crash-safety contract the reconcile engine relies on: an op and its
//! planned steps are inserted first; a step's `intent` is committed *before* its POST; the UPID
//! right after the POST returns; `done`/`failed` when the task ended; the op is `succeeded`
//! only when every step is `done`. Each transition is its own transaction on a
//! `synchronous=FULL` connection, so a crash or a full disk leaves the previous state intact.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::audit::append_in;
use crate::{Journal, JournalError, NewAuditEntry};

/// Where an op (a sequence of steps on one guest) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    /// Recorded, no step started.
    Planned,
    /// A step has been started.
    Running,
    /// Every step done and OK.
    Succeeded,
    /// A step failed.
    Failed,
    /// Interrupted (crash) and not continued; the engine re-plans from actual state.
    Abandoned,
    /// Needs an operator signature before anything runs.
    PendingSignature,
    /// Never ran and never will (for example a migrated local-API op that found its guest's
    /// queue full).
    Refused,
}

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Not started.
    Planned,
    /// About to be POSTed (committed before the POST).
    Intent,
    /// POSTed; `upid` is set for task calls.
    Posted,
    /// Finished OK.
    Done,
    /// Finished with an error, or never ran.
    Failed,
    /// Not run (an earlier step failed or the op was abandoned).
    Skipped,
}

/// Who asked for an op. Every kind runs through the same executor and recovery path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Planned by the reconcile engine.
    Reconcile,
    /// A signed one-shot job (`op_id` is the signed op's id).
    Signed,
    /// Asked for by a guest's controller through the local API.
    LocalApi,
    /// `felhom-agent selftest task`.
    Selftest,
}

words!(OpStatus {
    Planned => "planned",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Abandoned => "abandoned",
    PendingSignature => "pending_signature",
    Refused => "refused",
});
words!(StepStatus {
    Planned => "planned",
    Intent => "intent",
    Posted => "posted",
    Done => "done",
    Failed => "failed",
    Skipped => "skipped",
});
words!(OpKind {
    Reconcile => "reconcile",
    Signed => "signed",
    LocalApi => "local_api",
    Selftest => "selftest",
});

impl OpStatus {
    /// Whether the op will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpStatus::Succeeded | OpStatus::Failed | OpStatus::Abandoned | OpStatus::Refused
        )
    }
}

/// A step to record with a new op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    /// `start`, `shutdown`, `stop`, `set_config`, `destroy`, `snapshot`, `rollback`,
    /// `delete_snapshot`, `vzdump`.
    pub kind: String,
    /// Parameters, a JSON document.
    pub params: String,
}

/// An op to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOp {
    /// Unique id.
    pub op_id: String,
    /// Reconcile or signed.
    pub kind: OpKind,
    /// The guest.
    pub vmid: u32,
    /// The desired-state generation it serves, if any.
    pub generation: Option<u64>,
    /// Initial state: `Planned` or `PendingSignature`.
    pub state: OpStatus,
    /// Its steps, in order.
    pub steps: Vec<NewStep>,
    /// Now, Unix seconds.
    pub at: i64,
}

/// A stored step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Position, from 0.
    pub idx: u32,
    /// Kind.
    pub kind: String,
    /// Parameters (JSON).
    pub params: String,
    /// State.
    pub state: StepStatus,
    /// The task, once known.
    pub upid: Option<String>,
    /// When the intent was recorded.
    pub intent_at: Option<i64>,
    /// When the POST returned.
    pub posted_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// The task's exit status or the error.
    pub exitstatus: Option<String>,
}

/// A stored op with its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// Id.
    pub op_id: String,
    /// Kind.
    pub kind: OpKind,
    /// Guest.
    pub vmid: u32,
    /// Generation served.
    pub generation: Option<u64>,
    /// State.
    pub state: OpStatus,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// Why it failed or was abandoned.
    pub error: Option<String>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
}

fn corrupt(key: &str, problem: &str) -> JournalError {
    JournalError::Corrupt {
        table: "ops",
        key: key.to_owned(),
        problem: problem.to_owned(),
    }
}

/// The rows of a new op: the op and its steps, all `planned`.
fn insert_rows(tx: &rusqlite::Transaction<'_>, op: &NewOp) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO ops (op_id, kind, vmid, generation, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            op.op_id,
            op.kind.as_str(),
            op.vmid,
            op.generation.map(|g| i64::try_from(g).unwrap_or(i64::MAX)),
            op.state.as_str(),
            op.at
        ],
    )?;
    for (idx, step) in op.steps.iter().enumerate() {
        tx.execute(
            "INSERT INTO op_steps (op_id, idx, kind, params, state)
             VALUES (?1, ?2, ?3, ?4, 'planned')",
            params![op.op_id, idx as i64, step.kind, step.params],
        )?;
    }
    Ok(())
}

impl Journal {
    /// Runs `body` and appends `audit` in one IMMEDIATE transaction: a state change and its
    /// audit entry commit together or not at all.
    pub(crate) fn write<T>(
        &mut self,
        during: &'static str,
        audit: Option<&NewAuditEntry>,
        body: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        let out = body(&tx).map_err(JournalError::sql(during))?;
        if let Some(entry) = audit {
            append_in(&tx, entry).map_err(JournalError::sql(during))?;
        }
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(out)
    }

    /// Records a new op with its steps (all `planned`) and `audit`. Returns `false`, writing
    /// nothing, when an op with this id exists (so a pending op is recorded once).
    pub fn insert_op(&mut self, op: &NewOp, audit: &NewAuditEntry) -> Result<bool, JournalError> {
        let exists: bool = self
            .conn
            .query_row("SELECT 1 FROM ops WHERE op_id = ?1", [&op.op_id], |_| {
                Ok(true)
            })
            .optional()
            .map_err(JournalError::sql("reading an op"))?
            .unwrap_or(false);
        if exists {
            return Ok(false);
        }
        self.write("recording an op", Some(audit), |tx| {
            insert_rows(tx, op)?;
            Ok(true)
        })
    }

    /// Records a new op like [`Journal::insert_op`] unless `vmid` already has an unfinished op
    /// (planned or running) with a step of `exclusive_step`; checked and inserted in one
    /// transaction, so two concurrent callers cannot both pass. `Ok(Err(op_id))` names the open
    /// op that prevented it (nothing written).
    pub fn insert_op_unless_open(
        &mut self,
        op: &NewOp,
        exclusive_step: &str,
        audit: &NewAuditEntry,
    ) -> Result<Result<(), String>, JournalError> {
        let during = "recording an op";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        let open: Option<String> = tx
            .query_row(
                "SELECT ops.op_id FROM ops JOIN op_steps USING (op_id)
                 WHERE ops.vmid = ?1 AND op_steps.kind = ?2
                   AND ops.state IN ('planned', 'running')
                 ORDER BY ops.created_at DESC LIMIT 1",
                params![op.vmid, exclusive_step],
                |r| r.get(0),
            )
            .optional()
            .map_err(JournalError::sql(during))?;
        if let Some(open) = open {
            // Dropping the transaction rolls it back: nothing written.
            return Ok(Err(open));
        }
        insert_rows(&tx, op).map_err(JournalError::sql(during))?;
        append_in(&tx, audit).map_err(JournalError::sql(during))?;
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(Ok(()))
    }

    /// The latest op on `vmid` with a step of `step_kind` that was not refused, whatever asked
    /// for it (for example the latest backup: `vzdump`).
    pub fn latest_op_with_step(
        &self,
        vmid: u32,
        step_kind: &str,
    ) -> Result<Option<OpRecord>, JournalError> {
        Ok(self
            .ops_where(
                "vmid = ?1 AND state != 'refused'
                 AND op_id IN (SELECT op_id FROM op_steps WHERE kind = ?2)",
                params![vmid, step_kind],
            )?
            .pop())
    }

    /// The succeeded ops on `vmid` that created or deleted a snapshot, oldest first (which
    /// snapshots the local API made, and which of those are gone).
    pub fn snapshot_ops(&self, vmid: u32) -> Result<Vec<OpRecord>, JournalError> {
        self.ops_where(
            "vmid = ?1 AND state = 'succeeded'
             AND op_id IN (SELECT op_id FROM op_steps
                           WHERE kind IN ('snapshot', 'delete_snapshot'))",
            params![vmid],
        )
    }

    /// Whether any step of any op has recorded `upid` (the task of an ambiguous POST is never
    /// one another step already owns).
    pub fn upid_recorded(&self, upid: &str) -> Result<bool, JournalError> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM op_steps WHERE upid = ?1)",
                params![upid],
                |r| r.get(0),
            )
            .map_err(JournalError::sql("reading ops"))
    }

    /// When a step of `step_kind` last finished done on `vmid`, whatever became of the rest
    /// of its op (a backup op's vzdump is its backup, even if the prune after it failed or a
    /// restart skipped it).
    pub fn last_step_done(&self, vmid: u32, step_kind: &str) -> Result<Option<i64>, JournalError> {
        self.conn
            .query_row(
                "SELECT max(s.finished_at) FROM op_steps s JOIN ops o ON o.op_id = s.op_id
                 WHERE o.vmid = ?1 AND s.kind = ?2 AND s.state = 'done'",
                params![vmid, step_kind],
                |r| r.get(0),
            )
            .map_err(JournalError::sql("reading ops"))
    }

    /// Records a step's intent (before its POST) and marks the op running.
    pub fn step_intent(
        &mut self,
        op_id: &str,
        idx: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        let planned: bool = self
            .conn
            .query_row(
                "SELECT state = 'planned' FROM op_steps WHERE op_id = ?1 AND idx = ?2",
                params![op_id, idx],
                |r| r.get(0),
            )
            .optional()
            .map_err(JournalError::sql("reading a step"))?
            .unwrap_or(false);
        if !planned {
            return Err(corrupt(op_id, "step is not planned"));
        }
        self.write("recording a step's intent", Some(audit), |tx| {
            tx.execute(
                "UPDATE op_steps SET state = 'intent', intent_at = ?3
                 WHERE op_id = ?1 AND idx = ?2",
                params![op_id, idx, at],
            )?;
            tx.execute(
                "UPDATE ops SET state = 'running', updated_at = ?2 WHERE op_id = ?1",
                params![op_id, at],
            )
        })
        .map(drop)
    }

    /// Records that the POST returned, with its UPID (`None` for a synchronous call).
    pub fn step_posted(
        &mut self,
        op_id: &str,
        idx: u32,
        upid: Option<&str>,
        at: i64,
    ) -> Result<(), JournalError> {
        self.write("recording a step's task", None, |tx| {
            tx.execute(
                "UPDATE op_steps SET state = 'posted', upid = ?3, posted_at = ?4
                 WHERE op_id = ?1 AND idx = ?2",
                params![op_id, idx, upid, at],
            )
        })
        .map(drop)
    }

    /// Records a step's end: `Done`, `Failed` or `Skipped`, with the exit status or error.
    pub fn step_finished(
        &mut self,
        op_id: &str,
        idx: u32,
        state: StepStatus,
        exitstatus: Option<&str>,
        at: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), JournalError> {
        self.write("recording a step's end", audit, |tx| {
            tx.execute(
                "UPDATE op_steps SET state = ?3, exitstatus = ?4, finished_at = ?5
                 WHERE op_id = ?1 AND idx = ?2",
                params![op_id, idx, state.as_str(), exitstatus, at],
            )
        })
        .map(drop)
    }

    /// Finishes an op. Steps still `planned` become `skipped`. `Succeeded` is refused unless
    /// every step is `done`: "applied" is never recorded after a partial failure.
    pub fn finish_op(
        &mut self,
        op_id: &str,
        state: OpStatus,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        if state == OpStatus::Succeeded {
            let not_done: i64 = self
                .conn
                .query_row(
                    "SELECT count(*) FROM op_steps WHERE op_id = ?1 AND state != 'done'",
                    [op_id],
                    |r| r.get(0),
                )
                .map_err(JournalError::sql("reading an op's steps"))?;
            if not_done > 0 {
                return Err(corrupt(op_id, "cannot succeed with steps not done"));
            }
        }
        self.write("finishing an op", Some(audit), |tx| {
            tx.execute(
                "UPDATE op_steps SET state = 'skipped', finished_at = ?2
                 WHERE op_id = ?1 AND state = 'planned'",
                params![op_id, at],
            )?;
            tx.execute(
                "UPDATE ops SET state = ?2, error = ?3, updated_at = ?4 WHERE op_id = ?1",
                params![op_id, state.as_str(), error, at],
            )
        })
        .map(drop)
    }

    /// One op with its steps.
    pub fn op(&self, op_id: &str) -> Result<Option<OpRecord>, JournalError> {
        Ok(self
            .ops_where("op_id = ?1", params![op_id])?
            .into_iter()
            .next())
    }

    /// Ops that are not final and not pending a signature: what recovery must resume.
    pub fn unfinished_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.ops_where("state IN ('planned', 'running')", params![])
    }

    /// Ops waiting for an operator signature.
    pub fn pending_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.ops_where("state = 'pending_signature'", params![])
    }

    /// Every op of a guest, oldest first.
    pub fn ops_of(&self, vmid: u32) -> Result<Vec<OpRecord>, JournalError> {
        self.ops_where("vmid = ?1", params![vmid])
    }

    fn ops_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<OpRecord>, JournalError> {
        let during = "reading ops";
        let sql = format!(
            "SELECT op_id, kind, vmid, generation, state, created_at, updated_at, error
             FROM ops WHERE {condition} ORDER BY created_at, rowid"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(JournalError::sql(during))?;
        type Row = (
            String,
            String,
            u32,
            Option<i64>,
            String,
            i64,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(JournalError::sql(during))?
            .collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))?;
        let mut out = Vec::with_capacity(rows.len());
        for (op_id, kind, vmid, generation, state, created_at, updated_at, error) in rows {
            let kind = OpKind::parse(&kind).ok_or_else(|| corrupt(&op_id, "unknown kind"))?;
            let state = OpStatus::parse(&state).ok_or_else(|| corrupt(&op_id, "unknown state"))?;
            let steps = self.steps(&op_id)?;
            out.push(OpRecord {
                op_id,
                kind,
                vmid,
                generation: generation.map(|g| u64::try_from(g).unwrap_or(0)),
                state,
                created_at,
                updated_at,
                error,
                steps,
            });
        }
        Ok(out)
    }

    fn steps(&self, op_id: &str) -> Result<Vec<StepRecord>, JournalError> {
        let during = "reading op steps";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT idx, kind, params, state, upid, intent_at, posted_at, finished_at,
                        exitstatus
                 FROM op_steps WHERE op_id = ?1 ORDER BY idx",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map([op_id], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .map_err(JournalError::sql(during))?;
        let mut out = Vec::new();
        for row in rows {
            let (idx, kind, params, state, upid, intent_at, posted_at, finished_at, exitstatus) =
                row.map_err(JournalError::sql(during))?;
            let state =
                StepStatus::parse(&state).ok_or_else(|| corrupt(op_id, "unknown step state"))?;
            out.push(StepRecord {
                idx,
                kind,
                params,
                state,
                upid,
                intent_at,
                posted_at,
                finished_at,
                exitstatus,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit() -> NewAuditEntry {
        NewAuditEntry {
            at: 1,
            kind: "op".to_owned(),
            actor: None,
            action: None,
            target: None,
            op_id: None,
            outcome: "x".to_owned(),
            reason: None,
            detail: None,
        }
    }

    fn two_step(op_id: &str) -> NewOp {
        NewOp {
            op_id: op_id.to_owned(),
            kind: OpKind::Reconcile,
            vmid: 101,
            generation: Some(3),
            state: OpStatus::Planned,
            steps: vec![
                NewStep {
                    kind: "shutdown".into(),
                    params: "{}".into(),
                },
                NewStep {
                    kind: "set_config".into(),
                    params: r#"{"hostname":"a"}"#.into(),
                },
            ],
            at: 5,
        }
    }

    #[test]
    fn lifecycle_and_recovery_view() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.insert_op(&two_step("op-1"), &audit()).unwrap());
        assert!(!j.insert_op(&two_step("op-1"), &audit()).unwrap());
        j.step_intent("op-1", 0, 6, &audit()).unwrap();
        j.step_posted("op-1", 0, Some("UPID:x"), 7).unwrap();
        let open = j.unfinished_ops().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, OpStatus::Running);
        assert_eq!(open[0].steps[0].upid.as_deref(), Some("UPID:x"));
        assert_eq!(open[0].steps[1].state, StepStatus::Planned);
        j.step_finished("op-1", 0, StepStatus::Done, Some("OK"), 8, None)
            .unwrap();
        // Not every step done: "succeeded" is refused.
        assert!(j
            .finish_op("op-1", OpStatus::Succeeded, None, 9, &audit())
            .is_err());
        j.finish_op("op-1", OpStatus::Abandoned, Some("crash"), 9, &audit())
            .unwrap();
        let op = j.op("op-1").unwrap().unwrap();
        assert_eq!(op.state, OpStatus::Abandoned);
        assert_eq!(op.steps[1].state, StepStatus::Skipped);
        assert!(j.unfinished_ops().unwrap().is_empty());
        assert_eq!(j.ops_of(101).unwrap().len(), 1);
    }

    #[test]
    fn intent_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.insert_op(&two_step("op-2"), &audit()).unwrap();
        j.step_intent("op-2", 0, 6, &audit()).unwrap();
        assert!(j.step_intent("op-2", 0, 6, &audit()).is_err());
    }

    #[test]
    fn pending_ops_are_listed_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let mut op = two_step("pending-1");
        op.state = OpStatus::PendingSignature;
        j.insert_op(&op, &audit()).unwrap();
        assert!(j.unfinished_ops().unwrap().is_empty());
        assert_eq!(j.pending_ops().unwrap().len(), 1);
        j.finish_op("pending-1", OpStatus::Abandoned, None, 9, &audit())
            .unwrap();
        assert!(j.pending_ops().unwrap().is_empty());
    }

    fn backup(op_id: &str, at: i64) -> NewOp {
        NewOp {
            op_id: op_id.to_owned(),
            kind: OpKind::LocalApi,
            vmid: 101,
            generation: None,
            state: OpStatus::Planned,
            steps: vec![NewStep {
                kind: "vzdump".into(),
                params: r#"{"storage":"local"}"#.into(),
            }],
            at,
        }
    }

    #[test]
    fn an_exclusive_insert_refuses_while_the_same_kind_of_op_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let entries = |j: &Journal| j.audit_verify().unwrap().entries;
        assert_eq!(
            j.insert_op_unless_open(&backup("b1", 10), "vzdump", &audit())
                .unwrap(),
            Ok(())
        );
        let before = entries(&j);
        assert_eq!(
            j.insert_op_unless_open(&backup("b2", 11), "vzdump", &audit())
                .unwrap(),
            Err("b1".to_owned())
        );
        assert!(j.op("b2").unwrap().is_none(), "a refused insert wrote");
        assert_eq!(entries(&j), before, "a refused insert was audited");
        // Another guest, or another kind of step, is not affected.
        let mut other = backup("b3", 12);
        other.vmid = 102;
        assert_eq!(
            j.insert_op_unless_open(&other, "vzdump", &audit()).unwrap(),
            Ok(())
        );
        assert_eq!(
            j.insert_op_unless_open(&two_step("r1"), "shutdown", &audit())
                .unwrap(),
            Ok(())
        );
        // Once b1 ends, the next backup may be recorded; it is the latest, b1 the last success.
        j.step_intent("b1", 0, 13, &audit()).unwrap();
        j.step_posted("b1", 0, Some("UPID:b1"), 13).unwrap();
        j.step_finished("b1", 0, StepStatus::Done, Some("OK"), 20, None)
            .unwrap();
        j.finish_op("b1", OpStatus::Succeeded, None, 20, &audit())
            .unwrap();
        assert_eq!(
            j.insert_op_unless_open(&backup("b4", 30), "vzdump", &audit())
                .unwrap(),
            Ok(())
        );
        j.finish_op("b4", OpStatus::Refused, Some("busy"), 30, &audit())
            .unwrap();
        assert_eq!(
            j.latest_op_with_step(101, "vzdump").unwrap().unwrap().op_id,
            "b1",
            "a refused op says nothing about the guest"
        );
        assert_eq!(j.last_step_done(101, "vzdump").unwrap(), Some(20));
        assert!(j.upid_recorded("UPID:b1").unwrap());
        assert!(!j.upid_recorded("UPID:other").unwrap());
        assert_eq!(j.last_step_done(102, "vzdump").unwrap(), None);
        assert_eq!(j.last_step_done(101, "snapshot").unwrap(), None);
        // A backup whose vzdump is done counts even if the op did not succeed (its prune
        // failed, or a restart skipped it).
        let mut b5 = backup("b5", 40);
        b5.steps.push(NewStep {
            kind: "prune".into(),
            params: r#"{"storage":"local","keep":"keep-last=3"}"#.into(),
        });
        j.insert_op_unless_open(&b5, "vzdump", &audit())
            .unwrap()
            .unwrap();
        j.step_intent("b5", 0, 41, &audit()).unwrap();
        j.step_posted("b5", 0, Some("UPID:b5"), 41).unwrap();
        j.step_finished("b5", 0, StepStatus::Done, Some("OK"), 45, None)
            .unwrap();
        j.finish_op("b5", OpStatus::Failed, Some("prune failed"), 46, &audit())
            .unwrap();
        assert_eq!(j.last_step_done(101, "vzdump").unwrap(), Some(45));
    }

    /// Regression for issue 4's "a full disk fails the op cleanly with nothing half-recorded":
    /// SQLite reports a full disk as SQLITE_FULL; `max_page_count` produces exactly that error
    /// without filling a real filesystem.
    #[test]
    fn a_full_disk_fails_the_transition_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.insert_op(&two_step("op-full"), &audit()).unwrap());
        let audit_before = j.audit_verify().unwrap().entries;
        let pages: i64 = j
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        j.conn
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();

        // The intent needs new pages (a large audit detail): the write fails as a whole.
        let mut big = audit();
        big.detail = Some("x".repeat(200_000));
        let err = j.step_intent("op-full", 0, 5, &big).unwrap_err();
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        assert!(chain.contains("full"), "{chain}");

        let op = j.op("op-full").unwrap().unwrap();
        assert_eq!(
            op.state,
            OpStatus::Planned,
            "op state changed by a failed write"
        );
        assert_eq!(op.steps[0].state, StepStatus::Planned, "step half-recorded");
        assert_eq!(op.steps[0].intent_at, None);
        let check = j.audit_verify().unwrap();
        assert_eq!(check.entries, audit_before, "audit entry half-recorded");
        assert!(check.first_broken.is_none());

        // Space comes back: the same transition succeeds, once.
        j.conn
            .execute_batch("PRAGMA max_page_count = 1073741823")
            .unwrap();
        j.step_intent("op-full", 0, 6, &big).unwrap();
        let op = j.op("op-full").unwrap().unwrap();
        assert_eq!(op.steps[0].state, StepStatus::Intent);
        assert_eq!(j.audit_verify().unwrap().entries, audit_before + 1);
    }
}
