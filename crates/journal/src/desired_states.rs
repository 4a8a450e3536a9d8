//! Accepted desired states and guest provenance (schema version 2).
//!
//! A desired state is stored when it is accepted, *before* the engine acts on it, so the agent
//! keeps reconciling against the last accepted state when its source is down. Acceptance and
//! adoption (each guest named in it becomes managed) commit in one transaction together with
//! the audit entry. Provenance rows (`guests`) are written only by agent code paths: `managed`
//! by adoption or creation, `scratch` never from hub input.

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
    /// The guests it names: adopted (made managed) in the same transaction.
    pub vmids: Vec<u32>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRecord {
    /// Guest id.
    pub vmid: u32,
    /// Whether the agent manages it (adopted or created, and not since destroyed).
    pub managed: bool,
    /// The generation that first named it, if adopted.
    pub adopted_generation: Option<u64>,
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

impl Journal {
    /// Records `state` as accepted and adopts its guests, with `audit`, in one transaction.
    /// Returns the guests adopted now (not managed before).
    pub fn accept_desired_state(
        &mut self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<Vec<u32>, JournalError> {
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
        .map_err(sql())?;
        let mut adopted = Vec::new();
        for vmid in &state.vmids {
            let managed: Option<i64> = tx
                .query_row("SELECT managed FROM guests WHERE vmid = ?1", [vmid], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql())?;
            match managed {
                Some(1) => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE guests SET managed = 1, adopted_generation = ?2, last_seen = ?3
                         WHERE vmid = ?1",
                        params![vmid, to_i64(state.generation), state.accepted_at],
                    )
                    .map_err(sql())?;
                    adopted.push(*vmid);
                }
                None => {
                    tx.execute(
                        "INSERT INTO guests (vmid, managed, adopted_generation, created_by_op,
                                             scratch, first_seen, last_seen)
                         VALUES (?1, 1, ?2, NULL, 0, ?3, ?3)",
                        params![vmid, to_i64(state.generation), state.accepted_at],
                    )
                    .map_err(sql())?;
                    adopted.push(*vmid);
                }
            }
        }
        append_in(&tx, audit).map_err(sql())?;
        tx.commit().map_err(sql())?;
        Ok(adopted)
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
                        last_seen
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
                })
            })
            .map_err(JournalError::sql(during))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))
    }

    /// Marks a guest as no longer managed (it was destroyed) and revokes its local-API tokens,
    /// with `audit`, in one transaction.
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
            "UPDATE guests SET managed = 0, scratch = 0, last_seen = ?2 WHERE vmid = ?1",
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

    fn state(generation: u64, vmids: &[u32]) -> NewDesiredState {
        NewDesiredState {
            generation,
            sha256: format!("sha-{generation}"),
            body: "{}".to_owned(),
            source: "test".to_owned(),
            accepted_at: 10,
            vmids: vmids.to_vec(),
        }
    }

    #[test]
    fn accept_adopts_once_and_keeps_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.latest_desired_state().unwrap().is_none());
        let adopted = j
            .accept_desired_state(&state(1, &[101, 102]), &audit("desired"))
            .unwrap();
        assert_eq!(adopted, vec![101, 102]);
        let adopted = j
            .accept_desired_state(&state(2, &[102, 103]), &audit("desired"))
            .unwrap();
        assert_eq!(adopted, vec![103]);
        assert_eq!(j.latest_desired_state().unwrap().unwrap().generation, 2);
        let guests = j.guests().unwrap();
        assert_eq!(guests.len(), 3);
        assert!(guests.iter().all(|g| g.managed && !g.scratch));
        assert_eq!(guests[0].adopted_generation, Some(1));
        assert_eq!(j.audit_verify().unwrap().entries, 2);
    }

    #[test]
    fn an_older_generation_is_refused_and_nothing_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.accept_desired_state(&state(5, &[101]), &audit("desired"))
            .unwrap();
        assert!(j
            .accept_desired_state(&state(5, &[999]), &audit("desired"))
            .is_err());
        assert!(j.guests().unwrap().iter().all(|g| g.vmid != 999));
        assert_eq!(j.audit_verify().unwrap().entries, 1);
    }

    #[test]
    fn release_and_readopt() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.accept_desired_state(&state(1, &[101]), &audit("desired"))
            .unwrap();
        j.release_guest(101, 20, &audit("guest")).unwrap();
        assert!(!j.guests().unwrap()[0].managed);
        let adopted = j
            .accept_desired_state(&state(2, &[101]), &audit("desired"))
            .unwrap();
        assert_eq!(adopted, vec![101]);
    }
}
