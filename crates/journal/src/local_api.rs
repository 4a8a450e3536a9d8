//! The local API's records (schema version 3): controller tokens. (The ops the local API asks
//! for are ops like any other, kind `local_api`, in `ops.rs` since schema version 4.)
//!
//! A token row holds its public id, its guest, and a hash of its secret (computed by the
//! `localapi` crate); the secret itself is never handed to the journal. Revocation only sets
//! `revoked_at`: a revoked token is never reactivated, and the row stays so its id keeps
//! naming it in the audit log. [`Journal::release_guest`] revokes a destroyed guest's tokens
//! in the same transaction.

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
        for vmid in [101, 102] {
            j.adopt_guest(vmid, "adopt", "id", 1, &audit("adopt"))
                .unwrap();
        }
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
                },
                &audit("accept"),
            )
            .unwrap();
        }
        assert_eq!(j.latest_desired_generation().unwrap(), Some(7));
    }
}
