//! The local API's records (schema version 3): controller tokens and the ops the local API
//! queues on a guest.
//!
//! A token row holds its public id, its guest, and a hash of its secret (computed by the
//! `localapi` crate); the secret itself is never handed to the journal. Revocation only sets
//! `revoked_at`: a revoked token is never reactivated, and the row stays so its id keeps
//! naming it in the audit log. [`Journal::release_guest`] revokes a destroyed guest's tokens
//! in the same transaction.
//!
//! A local-API op is one row that moves `queued` → `running` (with the task's UPID once
//! posted) → `succeeded`/`failed`; `refused` is an op that never got a place in the guest's
//! queue, `abandoned` one the agent found unfinished after a restart without a task to follow.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::audit::append_in;
use crate::{Journal, JournalError, NewAuditEntry};

/// A stored local-API token (no secret: only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalApiToken {
    /// Public id (16 lower-case hex digits).
    pub id: String,
    /// The one guest it acts for.
    pub vmid: u32,
    /// Hash of the secret (hex).
    pub hash: String,
    /// When it was minted, Unix seconds.
    pub created_at: i64,
    /// When it was revoked, Unix seconds; `None` while active.
    pub revoked_at: Option<i64>,
}

/// What a local-API op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalApiAction {
    /// `POST /snapshot`.
    Snapshot,
    /// `POST /rollback`.
    Rollback,
    /// `POST /backup` (vzdump).
    Backup,
}

/// Where a local-API op stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalApiOpState {
    /// Journaled and waiting in the guest's queue.
    Queued,
    /// Its turn came; `upid` is set once the task was posted.
    Running,
    /// The task ended OK.
    Succeeded,
    /// It failed (`error` says why).
    Failed,
    /// Found unfinished after a restart with no task to follow.
    Abandoned,
    /// Never queued (the guest's queue was full).
    Refused,
}

words!(LocalApiAction {
    Snapshot => "snapshot",
    Rollback => "rollback",
    Backup => "backup",
});
words!(LocalApiOpState {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Abandoned => "abandoned",
    Refused => "refused",
});

impl LocalApiOpState {
    /// Whether the op will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, LocalApiOpState::Queued | LocalApiOpState::Running)
    }
}

/// A local-API op to record (state `queued`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLocalApiOp {
    /// Unique id (what the local API answers as `op_id`).
    pub op_id: String,
    /// The guest.
    pub vmid: u32,
    /// What it does.
    pub action: LocalApiAction,
    /// The snapshot (snapshot, rollback).
    pub snapshot: Option<String>,
    /// The target storage (backup).
    pub storage: Option<String>,
    /// Now, Unix seconds.
    pub at: i64,
}

/// A stored local-API op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalApiOp {
    /// Id.
    pub op_id: String,
    /// Guest.
    pub vmid: u32,
    /// What it does.
    pub action: LocalApiAction,
    /// Snapshot name, if any.
    pub snapshot: Option<String>,
    /// Target storage, if any.
    pub storage: Option<String>,
    /// State.
    pub state: LocalApiOpState,
    /// The task, once posted.
    pub upid: Option<String>,
    /// Why it failed, was refused or abandoned.
    pub error: Option<String>,
    /// Journaled, Unix seconds.
    pub created_at: i64,
    /// Its turn came, Unix seconds.
    pub started_at: Option<i64>,
    /// Ended, Unix seconds.
    pub finished_at: Option<i64>,
}

const OP_COLUMNS: &str =
    "op_id, vmid, action, snapshot, storage, state, upid, error, created_at, started_at, finished_at";

fn op_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(LocalApiOp, String, String)> {
    let action: String = r.get(2)?;
    let state: String = r.get(5)?;
    Ok((
        LocalApiOp {
            op_id: r.get(0)?,
            vmid: r.get(1)?,
            // Placeholders; checked by `decode_op` so a bad word is a Corrupt error.
            action: LocalApiAction::Snapshot,
            snapshot: r.get(3)?,
            storage: r.get(4)?,
            state: LocalApiOpState::Queued,
            upid: r.get(6)?,
            error: r.get(7)?,
            created_at: r.get(8)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
        },
        action,
        state,
    ))
}

fn decode_op(
    (mut op, action, state): (LocalApiOp, String, String),
) -> Result<LocalApiOp, JournalError> {
    let corrupt = |problem: &str| JournalError::Corrupt {
        table: "local_api_ops",
        key: op.op_id.clone(),
        problem: problem.to_owned(),
    };
    op.action = LocalApiAction::parse(&action).ok_or_else(|| corrupt("unknown action"))?;
    op.state = LocalApiOpState::parse(&state).ok_or_else(|| corrupt("unknown state"))?;
    Ok(op)
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocalApiToken> {
    Ok(LocalApiToken {
        id: r.get(0)?,
        vmid: r.get(1)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

impl Journal {
    /// Stores a new active token with `audit`. An existing id is an error (ids are random).
    pub fn insert_local_api_token(
        &mut self,
        token: &LocalApiToken,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        self.write("recording a local api token", Some(audit), |tx| {
            tx.execute(
                "INSERT INTO local_api_tokens (id, vmid, hash, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    token.id,
                    token.vmid,
                    token.hash,
                    token.created_at,
                    token.revoked_at
                ],
            )
        })
        .map(drop)
    }

    /// The token with this id, active or revoked.
    pub fn local_api_token(&self, id: &str) -> Result<Option<LocalApiToken>, JournalError> {
        self.conn
            .query_row(
                "SELECT id, vmid, hash, created_at, revoked_at FROM local_api_tokens
                 WHERE id = ?1",
                [id],
                token_row,
            )
            .optional()
            .map_err(JournalError::sql("reading a local api token"))
    }

    /// Revokes one active token, with `audit`; `false` (writing nothing) if it is unknown or
    /// already revoked.
    pub fn revoke_local_api_token(
        &mut self,
        id: &str,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, JournalError> {
        let changed = self.revoke_where(
            "revoking a local api token",
            "UPDATE local_api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
            audit,
        )?;
        Ok(changed > 0)
    }

    /// Revokes every active token of `vmid`, with `audit` if any was; returns how many.
    pub fn revoke_local_api_tokens_of(
        &mut self,
        vmid: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<usize, JournalError> {
        self.revoke_where(
            "revoking a guest's local api tokens",
            "UPDATE local_api_tokens SET revoked_at = ?2 WHERE vmid = ?1 AND revoked_at IS NULL",
            params![vmid, at],
            audit,
        )
    }

    /// Runs one revoking UPDATE and appends `audit` in the same transaction, only if a row
    /// changed (revoking nothing leaves no audit entry).
    fn revoke_where(
        &mut self,
        during: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
        audit: &NewAuditEntry,
    ) -> Result<usize, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        let changed = tx.execute(sql, params).map_err(JournalError::sql(during))?;
        if changed == 0 {
            return Ok(0);
        }
        append_in(&tx, audit).map_err(JournalError::sql(during))?;
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(changed)
    }

    /// Every token, by guest then creation.
    pub fn local_api_tokens(&self) -> Result<Vec<LocalApiToken>, JournalError> {
        let during = "listing local api tokens";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, vmid, hash, created_at, revoked_at FROM local_api_tokens
                 ORDER BY vmid, created_at, id",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map([], token_row)
            .map_err(JournalError::sql(during))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))
    }

    /// Records a local-API op as `queued`, with `audit`.
    pub fn insert_local_api_op(
        &mut self,
        op: &NewLocalApiOp,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        self.write("recording a local api op", Some(audit), |tx| {
            tx.execute(
                "INSERT INTO local_api_ops (op_id, vmid, action, snapshot, storage, state,
                                            created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                params![
                    op.op_id,
                    op.vmid,
                    op.action.as_str(),
                    op.snapshot,
                    op.storage,
                    op.at
                ],
            )
        })
        .map(drop)
    }

    /// Marks an op `running` (its turn in the guest's queue came).
    pub fn local_api_op_started(&mut self, op_id: &str, at: i64) -> Result<(), JournalError> {
        self.write("starting a local api op", None, |tx| {
            tx.execute(
                "UPDATE local_api_ops SET state = 'running', started_at = ?2
                 WHERE op_id = ?1 AND state = 'queued'",
                params![op_id, at],
            )
        })
        .map(drop)
    }

    /// Records the task an op posted, right after the POST returned.
    pub fn local_api_op_posted(&mut self, op_id: &str, upid: &str) -> Result<(), JournalError> {
        self.write("recording a local api op's task", None, |tx| {
            tx.execute(
                "UPDATE local_api_ops SET upid = ?2 WHERE op_id = ?1",
                params![op_id, upid],
            )
        })
        .map(drop)
    }

    /// Ends an op in a final `state`, with `audit`. An op already final is left as it is.
    pub fn finish_local_api_op(
        &mut self,
        op_id: &str,
        state: LocalApiOpState,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        if !state.is_final() {
            return Err(JournalError::Corrupt {
                table: "local_api_ops",
                key: op_id.to_owned(),
                problem: format!("cannot finish in state {}", state.as_str()),
            });
        }
        self.write("finishing a local api op", Some(audit), |tx| {
            tx.execute(
                "UPDATE local_api_ops SET state = ?2, error = ?3, finished_at = ?4
                 WHERE op_id = ?1 AND state IN ('queued', 'running')",
                params![op_id, state.as_str(), error, at],
            )
        })
        .map(drop)
    }

    /// One op.
    pub fn local_api_op(&self, op_id: &str) -> Result<Option<LocalApiOp>, JournalError> {
        Ok(self
            .local_api_ops_where("op_id = ?1", params![op_id])?
            .into_iter()
            .next())
    }

    /// The latest op of `action` on `vmid` that was queued (refused ones are skipped: they
    /// never ran and say nothing about the guest).
    pub fn latest_local_api_op(
        &self,
        vmid: u32,
        action: LocalApiAction,
    ) -> Result<Option<LocalApiOp>, JournalError> {
        Ok(self
            .local_api_ops_where(
                "vmid = ?1 AND action = ?2 AND state != 'refused'",
                params![vmid, action.as_str()],
            )?
            .pop())
    }

    /// When the latest successful op of `action` on `vmid` ended, Unix seconds.
    pub fn last_local_api_success(
        &self,
        vmid: u32,
        action: LocalApiAction,
    ) -> Result<Option<i64>, JournalError> {
        self.conn
            .query_row(
                "SELECT max(finished_at) FROM local_api_ops
                 WHERE vmid = ?1 AND action = ?2 AND state = 'succeeded'",
                params![vmid, action.as_str()],
                |r| r.get(0),
            )
            .map_err(JournalError::sql("reading local api ops"))
    }

    /// Ops still `queued` or `running`: what a restarted agent must settle.
    pub fn unfinished_local_api_ops(&self) -> Result<Vec<LocalApiOp>, JournalError> {
        self.local_api_ops_where("state IN ('queued', 'running')", params![])
    }

    fn local_api_ops_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<LocalApiOp>, JournalError> {
        let during = "reading local api ops";
        let sql = format!(
            "SELECT {OP_COLUMNS} FROM local_api_ops WHERE {condition}
             ORDER BY created_at, rowid"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(JournalError::sql(during))?;
        let rows: Vec<_> = stmt
            .query_map(args, op_row)
            .map_err(JournalError::sql(during))?
            .collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))?;
        rows.into_iter().map(decode_op).collect()
    }

    /// The generation of the latest accepted desired state, without reading its body (to know
    /// when a cached section must be re-read).
    pub fn latest_desired_generation(&self) -> Result<Option<u64>, JournalError> {
        self.conn
            .query_row("SELECT max(generation) FROM desired_states", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|g| g.map(|g| u64::try_from(g).unwrap_or(0)))
            .map_err(JournalError::sql("reading the desired generation"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewDesiredState;

    fn audit(action: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: 1,
            kind: "local_api".to_owned(),
            actor: Some("cli".to_owned()),
            action: Some(action.to_owned()),
            target: Some("vmid:101".to_owned()),
            op_id: None,
            outcome: "ok".to_owned(),
            reason: None,
            detail: None,
        }
    }

    fn token(id: &str, vmid: u32) -> LocalApiToken {
        LocalApiToken {
            id: id.to_owned(),
            vmid,
            hash: format!("hash-of-{id}"),
            created_at: 100,
            revoked_at: None,
        }
    }

    fn open() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        (dir, j)
    }

    fn audit_count(j: &Journal) -> usize {
        j.audit_tail(1000).unwrap().len()
    }

    #[test]
    fn tokens_insert_lookup_revoke_list() {
        let (_d, mut j) = open();
        j.insert_local_api_token(&token("aaaa", 101), &audit("token.mint"))
            .unwrap();
        j.insert_local_api_token(&token("bbbb", 101), &audit("token.mint"))
            .unwrap();
        j.insert_local_api_token(&token("cccc", 102), &audit("token.mint"))
            .unwrap();
        // A duplicate id is refused and records nothing.
        let before = audit_count(&j);
        assert!(j
            .insert_local_api_token(&token("aaaa", 103), &audit("token.mint"))
            .is_err());
        assert_eq!(audit_count(&j), before);
        assert_eq!(j.local_api_token("aaaa").unwrap().unwrap().vmid, 101);
        assert_eq!(j.local_api_token("zzzz").unwrap(), None);

        assert!(j
            .revoke_local_api_token("aaaa", 200, &audit("token.revoke"))
            .unwrap());
        let before = audit_count(&j);
        assert!(!j
            .revoke_local_api_token("aaaa", 300, &audit("token.revoke"))
            .unwrap());
        assert!(!j
            .revoke_local_api_token("none", 300, &audit("token.revoke"))
            .unwrap());
        assert_eq!(audit_count(&j), before, "a no-op revoke is not audited");
        // Revocation is final: the first time stays.
        assert_eq!(
            j.local_api_token("aaaa").unwrap().unwrap().revoked_at,
            Some(200)
        );

        assert_eq!(
            j.revoke_local_api_tokens_of(101, 400, &audit("token.revoke_guest"))
                .unwrap(),
            1
        );
        assert_eq!(
            j.revoke_local_api_tokens_of(101, 500, &audit("token.revoke_guest"))
                .unwrap(),
            0
        );
        let all = j.local_api_tokens().unwrap();
        let ids: Vec<(&str, u32, Option<i64>)> = all
            .iter()
            .map(|t| (t.id.as_str(), t.vmid, t.revoked_at))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("aaaa", 101, Some(200)),
                ("bbbb", 101, Some(400)),
                ("cccc", 102, None)
            ]
        );
    }

    #[test]
    fn releasing_a_guest_revokes_its_tokens_only() {
        let (_d, mut j) = open();
        j.accept_desired_state(
            &NewDesiredState {
                generation: 1,
                sha256: "s".into(),
                body: "{}".into(),
                source: "test".into(),
                accepted_at: 1,
                vmids: vec![101, 102],
            },
            &audit("accept"),
        )
        .unwrap();
        j.insert_local_api_token(&token("aaaa", 101), &audit("token.mint"))
            .unwrap();
        j.insert_local_api_token(&token("cccc", 102), &audit("token.mint"))
            .unwrap();
        j.release_guest(101, 77, &audit("release")).unwrap();
        assert_eq!(
            j.local_api_token("aaaa").unwrap().unwrap().revoked_at,
            Some(77)
        );
        assert_eq!(j.local_api_token("cccc").unwrap().unwrap().revoked_at, None);
    }

    #[test]
    fn ops_move_forward_and_report_the_latest() {
        let (_d, mut j) = open();
        let new = |id: &str, action, at| NewLocalApiOp {
            op_id: id.to_owned(),
            vmid: 101,
            action,
            snapshot: None,
            storage: Some("backup-usb".into()),
            at,
        };
        assert_eq!(
            j.latest_local_api_op(101, LocalApiAction::Backup).unwrap(),
            None
        );
        j.insert_local_api_op(&new("b1", LocalApiAction::Backup, 10), &audit("backup"))
            .unwrap();
        j.local_api_op_started("b1", 11).unwrap();
        j.local_api_op_posted("b1", "UPID:x").unwrap();
        assert_eq!(j.unfinished_local_api_ops().unwrap().len(), 1);
        j.finish_local_api_op("b1", LocalApiOpState::Succeeded, None, 20, &audit("backup"))
            .unwrap();
        // Final is final.
        j.finish_local_api_op("b1", LocalApiOpState::Failed, Some("late"), 30, &audit("x"))
            .unwrap();
        let b1 = j.local_api_op("b1").unwrap().unwrap();
        assert_eq!(b1.state, LocalApiOpState::Succeeded);
        assert_eq!(b1.upid.as_deref(), Some("UPID:x"));
        assert_eq!((b1.started_at, b1.finished_at), (Some(11), Some(20)));
        assert!(j
            .finish_local_api_op("b1", LocalApiOpState::Running, None, 1, &audit("x"))
            .is_err());

        j.insert_local_api_op(&new("b2", LocalApiAction::Backup, 40), &audit("backup"))
            .unwrap();
        j.finish_local_api_op("b2", LocalApiOpState::Failed, Some("boom"), 41, &audit("b"))
            .unwrap();
        j.insert_local_api_op(&new("b3", LocalApiAction::Backup, 50), &audit("backup"))
            .unwrap();
        j.finish_local_api_op(
            "b3",
            LocalApiOpState::Refused,
            Some("busy"),
            50,
            &audit("b"),
        )
        .unwrap();
        j.insert_local_api_op(&new("s1", LocalApiAction::Snapshot, 60), &audit("snap"))
            .unwrap();
        // The latest backup that was queued is b2 (b3 was refused), the last success b1.
        let latest = j
            .latest_local_api_op(101, LocalApiAction::Backup)
            .unwrap()
            .unwrap();
        assert_eq!(latest.op_id, "b2");
        assert_eq!(latest.error.as_deref(), Some("boom"));
        assert_eq!(
            j.last_local_api_success(101, LocalApiAction::Backup)
                .unwrap(),
            Some(20)
        );
        assert_eq!(
            j.last_local_api_success(102, LocalApiAction::Backup)
                .unwrap(),
            None
        );
        let open: Vec<String> = j
            .unfinished_local_api_ops()
            .unwrap()
            .into_iter()
            .map(|o| o.op_id)
            .collect();
        assert_eq!(open, vec!["s1".to_owned()]);
    }

    #[test]
    fn latest_desired_generation() {
        let (_d, mut j) = open();
        assert_eq!(j.latest_desired_generation().unwrap(), None);
        for g in [3, 7] {
            j.accept_desired_state(
                &NewDesiredState {
                    generation: g,
                    sha256: "s".into(),
                    body: "{}".into(),
                    source: "test".into(),
                    accepted_at: 1,
                    vmids: vec![],
                },
                &audit("accept"),
            )
            .unwrap();
        }
        assert_eq!(j.latest_desired_generation().unwrap(), Some(7));
    }
}
