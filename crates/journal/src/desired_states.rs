//! Accepted desired states and guest provenance (schema versions 2 and 5).
//!
//! A desired state is stored when it is accepted, *before* the engine acts on it, so the agent
//! keeps reconciling against the last accepted state when its source is down. Accepting one
//! makes no guest managed (DESIGN.md §4.6): provenance rows (`guests`) are written only by agent
//! code paths — `managed` by a signed adoption ([`Journal::adopt_guest`]) or by creation,
//! `scratch` never from hub input — and a guest that vanished or was replaced is released
//! ([`Journal::release_guest`]) with its tokens and pending ops in one transaction.
//!
//! A signed `desired.reset` arms ([`Journal::arm_desired_reset`]) the acceptance of one lower
//! generation until the op expires ([`Journal::accept_desired_state_after_reset`]).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::audit::append_in;
use crate::{Journal, JournalError, NewAuditEntry};

/// A desired state to record as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDesiredState {
    /// Its generation (strictly greater than every stored one).
    pub generation: u64,
    /// SHA-256 (hex) of its canonical form.
    pub sha256: String,
    /// The canonical JSON text.
    pub body: String,
    /// Where it came from (`file:/etc/…`, `hub`).
    pub source: String,
    /// Now, Unix seconds.
    pub accepted_at: i64,
}

/// A stored desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredStateRecord {
    /// Generation.
    pub generation: u64,
    /// SHA-256 (hex) of `body`.
    pub sha256: String,
    /// Canonical JSON text.
    pub body: String,
    /// Where it came from.
    pub source: String,
    /// When it was accepted, Unix seconds.
    pub accepted_at: i64,
}

/// What the agent knows about a guest's origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestRecord {
    /// Guest id.
    pub vmid: u32,
    /// Whether the agent manages it (adopted or created, and not since destroyed).
    pub managed: bool,
    /// The generation that first named it, for a guest adopted by a version before 0.7.0
    /// (when naming a guest in a desired state adopted it).
    pub adopted_generation: Option<u64>,
    /// The signed `guest.adopt` op that adopted it.
    pub adopted_op: Option<String>,
    /// The identity marker the agent wrote into the guest's config; `None` until written.
    pub identity: Option<String>,
    /// When that identity began, Unix seconds (a signed op issued before is refused).
    pub identity_at: Option<i64>,
    /// The op (transaction) that created it, if the agent created it.
    pub created_by_op: Option<String>,
    /// Tagged scratch by agent code (e.g. a restore test); never set from hub input.
    pub scratch: bool,
    /// First recorded, Unix seconds.
    pub first_seen: i64,
    /// Last changed, Unix seconds.
    pub last_seen: i64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn insert_desired(tx: &rusqlite::Transaction<'_>, state: &NewDesiredState) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO desired_states (generation, sha256, body, source, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            to_i64(state.generation),
            state.sha256,
            state.body,
            state.source,
            state.accepted_at
        ],
    )
    .map(drop)
}

impl Journal {
    /// Records `state` as accepted, with `audit`, in one transaction. A generation not newer
    /// than the stored one is refused and nothing is written.
    pub fn accept_desired_state(
        &mut self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        let during = "accepting a desired state";
        let sql = || JournalError::sql(during);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql())?;
        let newest: Option<i64> = tx
            .query_row("SELECT max(generation) FROM desired_states", [], |r| {
                r.get(0)
            })
            .map_err(sql())?;
        if newest.is_some_and(|g| g >= to_i64(state.generation)) {
            return Err(JournalError::Corrupt {
                table: "desired_states",
                key: state.generation.to_string(),
                problem: "generation is not newer than the stored one".to_owned(),
            });
        }
        insert_desired(&tx, state).map_err(sql())?;
        append_in(&tx, audit).map_err(sql())?;
        tx.commit().map_err(sql())
    }

    /// Records that the verified `desired.reset` op `op_id` lets one lower generation be
    /// accepted until `until` (Unix seconds), with `audit`, in one transaction. Arming the same
    /// op twice changes nothing.
    pub fn arm_desired_reset(
        &mut self,
        op_id: &str,
        signer: &str,
        at: i64,
        until: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        let during = "arming a desired-state reset";
        let sql = || JournalError::sql(during);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql())?;
        tx.execute(
            "INSERT INTO desired_resets (op_id, signer, armed_at, armed_until)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (op_id) DO NOTHING",
            params![op_id, signer, at, until],
        )
        .map_err(sql())?;
        append_in(&tx, audit).map_err(sql())?;
        tx.commit().map_err(sql())
    }

    /// Accepts `state` although its generation is not newer, if a `desired.reset` is armed and
    /// unexpired at `now`: the stored states of its generation and above are deleted, `state`
    /// inserted, the reset used up, `audit` appended — one transaction. Returns the reset's op
    /// id, or `None` (nothing written) when no reset is armed.
    pub fn accept_desired_state_after_reset(
        &mut self,
        state: &NewDesiredState,
        now: i64,
        audit: &NewAuditEntry,
    ) -> Result<Option<String>, JournalError> {
        let during = "accepting a desired state after a reset";
        let sql = || JournalError::sql(during);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql())?;
        let armed: Option<String> = tx
            .query_row(
                "SELECT op_id FROM desired_resets
                 WHERE used_at IS NULL AND armed_until >= ?1
                 ORDER BY armed_at DESC LIMIT 1",
                [now],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql())?;
        let Some(op_id) = armed else {
            return Ok(None);
        };
        tx.execute(
            "DELETE FROM desired_states WHERE generation >= ?1",
            [to_i64(state.generation)],
        )
        .map_err(sql())?;
        insert_desired(&tx, state).map_err(sql())?;
        tx.execute(
            "UPDATE desired_resets SET used_at = ?2, used_generation = ?3 WHERE op_id = ?1",
            params![op_id, now, to_i64(state.generation)],
        )
        .map_err(sql())?;
        append_in(&tx, audit).map_err(sql())?;
        tx.commit().map_err(sql())?;
        Ok(Some(op_id))
    }

    /// Makes guest `vmid` managed by the signed adoption `op_id`, with the identity marker the
    /// agent wrote into its config, and `audit`, in one transaction. `false` (nothing written)
    /// when it is managed already.
    pub fn adopt_guest(
        &mut self,
        vmid: u32,
        op_id: &str,
        identity: &str,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, JournalError> {
        let during = "adopting a guest";
        let sql = || JournalError::sql(during);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql())?;
        let managed: Option<i64> = tx
            .query_row("SELECT managed FROM guests WHERE vmid = ?1", [vmid], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql())?;
        if managed == Some(1) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO guests (vmid, managed, adopted_generation, created_by_op, scratch,
                                 first_seen, last_seen, adopted_op, identity, identity_at)
             VALUES (?1, 1, NULL, NULL, 0, ?2, ?2, ?3, ?4, ?2)
             ON CONFLICT (vmid) DO UPDATE SET managed = 1, adopted_generation = NULL,
                 created_by_op = NULL, scratch = 0, last_seen = ?2, adopted_op = ?3,
                 identity = ?4, identity_at = ?2",
            params![vmid, at, op_id, identity],
        )
        .map_err(sql())?;
        append_in(&tx, audit).map_err(sql())?;
        tx.commit().map_err(sql())?;
        Ok(true)
    }

    /// Records the identity marker written into a managed guest that had none (one adopted by
    /// an earlier version), its identity dating from `since`. `false` (nothing written) unless
    /// the guest is managed and has no identity yet.
    pub fn set_guest_identity(
        &mut self,
        vmid: u32,
        identity: &str,
        since: i64,
        at: i64,
    ) -> Result<bool, JournalError> {
        let changed = self
            .conn
            .execute(
                "UPDATE guests SET identity = ?2, identity_at = ?3, last_seen = ?4
                 WHERE vmid = ?1 AND managed = 1 AND identity IS NULL",
                params![vmid, identity, since, at],
            )
            .map_err(JournalError::sql("recording a guest's identity"))?;
        Ok(changed == 1)
    }

    /// The most recently accepted desired state.
    pub fn latest_desired_state(&self) -> Result<Option<DesiredStateRecord>, JournalError> {
        self.conn
            .query_row(
                "SELECT generation, sha256, body, source, accepted_at FROM desired_states
                 ORDER BY generation DESC LIMIT 1",
                [],
                |r| {
                    Ok(DesiredStateRecord {
                        generation: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        sha256: r.get(1)?,
                        body: r.get(2)?,
                        source: r.get(3)?,
                        accepted_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(JournalError::sql("reading the desired state"))
    }

    /// Every provenance record, by vmid.
    pub fn guests(&self) -> Result<Vec<GuestRecord>, JournalError> {
        let during = "reading guest provenance";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT vmid, managed, adopted_generation, created_by_op, scratch, first_seen,
                        last_seen, adopted_op, identity, identity_at
                 FROM guests ORDER BY vmid",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(GuestRecord {
                    vmid: r.get(0)?,
                    managed: r.get::<_, i64>(1)? == 1,
                    adopted_generation: r
                        .get::<_, Option<i64>>(2)?
                        .map(|g| u64::try_from(g).unwrap_or(0)),
                    created_by_op: r.get(3)?,
                    scratch: r.get::<_, i64>(4)? == 1,
                    first_seen: r.get(5)?,
                    last_seen: r.get(6)?,
                    adopted_op: r.get(7)?,
                    identity: r.get(8)?,
                    identity_at: r.get(9)?,
                })
            })
            .map_err(JournalError::sql(during))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))
    }

    /// Marks a guest as no longer managed (destroyed, vanished, or replaced by another guest on
    /// its vmid) — its identity forgotten, its local-API tokens revoked, its ops waiting for a
    /// signature abandoned — with `audit`, in one transaction.
    pub fn release_guest(
        &mut self,
        vmid: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        let during = "releasing a guest";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        tx.execute(
            "UPDATE guests SET managed = 0, scratch = 0, identity = NULL, identity_at = NULL,
                 last_seen = ?2
             WHERE vmid = ?1",
            params![vmid, at],
        )
        .map_err(JournalError::sql(during))?;
        // A destroyed guest's local-API tokens die with it, in the same transaction, so a later
        // guest that reuses the vmid never inherits a controller token (DESIGN.md §4.4a).
        tx.execute(
            "UPDATE local_api_tokens SET revoked_at = ?2 WHERE vmid = ?1 AND revoked_at IS NULL",
            params![vmid, at],
        )
        .map_err(JournalError::sql(during))?;
        // A destroy planned for the old guest must never run against a new one on the vmid.
        tx.execute(
            "UPDATE ops SET state = 'abandoned', error = 'guest released', updated_at = ?2
             WHERE vmid = ?1 AND state = 'pending_signature'",
            params![vmid, at],
        )
        .map_err(JournalError::sql(during))?;
        append_in(&tx, audit).map_err(JournalError::sql(during))?;
        tx.commit().map_err(JournalError::sql(during))
    }

    /// Records that agent code tagged a guest scratch (for example the restore test's temporary
    /// guest). Never call this with anything read from hub input.
    pub fn mark_scratch(&mut self, vmid: u32, at: i64) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO guests (vmid, managed, scratch, first_seen, last_seen)
                 VALUES (?1, 1, 1, ?2, ?2)
                 ON CONFLICT (vmid) DO UPDATE SET scratch = 1, managed = 1, last_seen = ?2",
                params![vmid, at],
            )
            .map(drop)
            .map_err(JournalError::sql("tagging a guest scratch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(kind: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: 1,
            kind: kind.to_owned(),
            actor: None,
            action: None,
            target: None,
            op_id: None,
            outcome: "accepted".to_owned(),
            reason: None,
            detail: None,
        }
    }

    fn state(generation: u64) -> NewDesiredState {
        NewDesiredState {
            generation,
            sha256: format!("sha-{generation}"),
            body: "{}".to_owned(),
            source: "test".to_owned(),
            accepted_at: 10,
        }
    }

    #[test]
    fn accepting_keeps_the_latest_and_adopts_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.latest_desired_state().unwrap().is_none());
        j.accept_desired_state(&state(1), &audit("desired"))
            .unwrap();
        j.accept_desired_state(&state(2), &audit("desired"))
            .unwrap();
        assert_eq!(j.latest_desired_state().unwrap().unwrap().generation, 2);
        assert!(j.guests().unwrap().is_empty());
        assert_eq!(j.audit_verify().unwrap().entries, 2);
    }

    #[test]
    fn an_older_generation_is_refused_and_nothing_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.accept_desired_state(&state(5), &audit("desired"))
            .unwrap();
        assert!(j
            .accept_desired_state(&state(5), &audit("desired"))
            .is_err());
        assert!(j
            .accept_desired_state(&state(4), &audit("desired"))
            .is_err());
        assert_eq!(j.audit_verify().unwrap().entries, 1);
    }

    #[test]
    fn adopt_release_and_readopt_with_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j
            .adopt_guest(101, "op-a", "id-1", 20, &audit("guest"))
            .unwrap());
        assert!(!j
            .adopt_guest(101, "op-b", "id-2", 21, &audit("guest"))
            .unwrap());
        let g = &j.guests().unwrap()[0];
        assert!(g.managed);
        assert_eq!(g.adopted_op.as_deref(), Some("op-a"));
        assert_eq!(g.identity.as_deref(), Some("id-1"));
        assert_eq!(g.identity_at, Some(20));
        j.release_guest(101, 30, &audit("guest")).unwrap();
        let g = &j.guests().unwrap()[0];
        assert!(!g.managed);
        assert_eq!(g.identity, None);
        // A managed guest keeps its identity; a released one gets none recorded by accident.
        assert!(!j.set_guest_identity(101, "id-x", 30, 30).unwrap());
        assert!(j
            .adopt_guest(101, "op-c", "id-3", 40, &audit("guest"))
            .unwrap());
        assert_eq!(j.guests().unwrap()[0].identity.as_deref(), Some("id-3"));
        assert!(!j.set_guest_identity(101, "id-x", 40, 40).unwrap());
    }

    #[test]
    fn a_reset_accepts_one_lower_generation_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let poisoned = 9_007_199_254_740_991;
        j.accept_desired_state(&state(3), &audit("desired"))
            .unwrap();
        j.accept_desired_state(&state(poisoned), &audit("desired"))
            .unwrap();
        // Not armed: nothing written.
        assert_eq!(
            j.accept_desired_state_after_reset(&state(4), 100, &audit("desired"))
                .unwrap(),
            None
        );
        j.arm_desired_reset("reset-1", "alice", 100, 200, &audit("signed"))
            .unwrap();
        // Expired: nothing.
        assert_eq!(
            j.accept_desired_state_after_reset(&state(4), 201, &audit("desired"))
                .unwrap(),
            None
        );
        assert_eq!(
            j.accept_desired_state_after_reset(&state(3), 150, &audit("desired"))
                .unwrap(),
            Some("reset-1".to_owned())
        );
        assert_eq!(j.latest_desired_state().unwrap().unwrap().generation, 3);
        // Used up: a second lower one is refused, a newer one accepted as usual.
        j.accept_desired_state(&state(5), &audit("desired"))
            .unwrap();
        assert_eq!(
            j.accept_desired_state_after_reset(&state(4), 150, &audit("desired"))
                .unwrap(),
            None
        );
        assert_eq!(j.latest_desired_state().unwrap().unwrap().generation, 5);
    }
}
