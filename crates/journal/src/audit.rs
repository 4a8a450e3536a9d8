//! The audit log: append-only and hash-chained.
//!
//! Entry `n` stores `prev_hash` (entry `n-1`'s hash; 64 zeros for the first) and
//! `hash = SHA-256(prev_hash bytes ‖ canonical(entry))`. The canonical encoding is a domain tag,
//! the sequence number and time as big-endian integers, then each text field as `0x00` (absent)
//! or `0x01 ‖ u32 BE length ‖ UTF-8 bytes`, in a fixed order: unambiguous, so no two different
//! entries encode alike. Editing, deleting or reordering any entry breaks the chain at that
//! entry, which [`Journal::audit_verify`] reports. Truncating the *end* of the log cannot be
//! seen from the file alone; the hub keeps the last hash it was sent for that.
//! Triggers make the table append-only for the agent itself.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::{Journal, JournalError};

/// `prev_hash` of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain tag of the canonical encoding (bump with any change to it).
const ENCODING_TAG: &[u8] = b"felhom-audit-v1\0";

/// An entry to append. Text fields are free-form but must never carry secrets: callers put
/// identifiers, fingerprints and reasons here, never key material or signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// When it happened, Unix seconds.
    pub at: i64,
    /// What kind of event, e.g. `signed_op`.
    pub kind: String,
    /// Who asked (an operator principal, or a key fingerprint when the key is unknown).
    pub actor: Option<String>,
    /// The action asked for.
    pub action: Option<String>,
    /// What it targets, e.g. `vmid:101`.
    pub target: Option<String>,
    /// The operation's id.
    pub op_id: Option<String>,
    /// `accepted`, `rejected`, …
    pub outcome: String,
    /// A short machine-readable reason (`replay`, `bad-signature`, …).
    pub reason: Option<String>,
    /// Human-readable detail.
    pub detail: Option<String>,
}

/// One audit field: a value, or nothing (`Option`s pass through), so a builder call reads the
/// same whether the caller has the value for sure or only maybe.
pub trait AuditField {
    /// The field as stored.
    fn into_field(self) -> Option<String>;
}

impl AuditField for &str {
    fn into_field(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl AuditField for String {
    fn into_field(self) -> Option<String> {
        Some(self)
    }
}

impl AuditField for &String {
    fn into_field(self) -> Option<String> {
        Some(self.clone())
    }
}

impl<T: AuditField> AuditField for Option<T> {
    fn into_field(self) -> Option<String> {
        self.and_then(AuditField::into_field)
    }
}

impl<'a, T> AuditField for &'a Option<T>
where
    &'a T: AuditField,
{
    fn into_field(self) -> Option<String> {
        self.as_ref().and_then(AuditField::into_field)
    }
}

/// The one way every part of the agent builds an entry: the kind, the outcome and the time
/// are required, the rest is named (never positional), and a guest target is always written
/// `vmid:N`.
impl NewAuditEntry {
    /// An entry of `kind` with `outcome`, at `at` (Unix seconds).
    pub fn new(at: i64, kind: impl Into<String>, outcome: impl Into<String>) -> Self {
        NewAuditEntry {
            at,
            kind: kind.into(),
            actor: None,
            action: None,
            target: None,
            op_id: None,
            outcome: outcome.into(),
            reason: None,
            detail: None,
        }
    }

    /// Who asked.
    pub fn actor(mut self, actor: impl AuditField) -> Self {
        self.actor = actor.into_field();
        self
    }

    /// The action asked for.
    pub fn action(mut self, action: impl AuditField) -> Self {
        self.action = action.into_field();
        self
    }

    /// A guest as the target (`vmid:N`).
    pub fn vmid(mut self, vmid: impl Into<Option<u32>>) -> Self {
        self.target = vmid.into().map(|v| format!("vmid:{v}"));
        self
    }

    /// Any other target.
    pub fn target(mut self, target: impl AuditField) -> Self {
        self.target = target.into_field();
        self
    }

    /// The operation's id.
    pub fn op_id(mut self, op_id: impl AuditField) -> Self {
        self.op_id = op_id.into_field();
        self
    }

    /// The machine-readable reason.
    pub fn reason(mut self, reason: impl AuditField) -> Self {
        self.reason = reason.into_field();
        self
    }

    /// Human-readable detail; an empty one is none.
    pub fn detail(mut self, detail: impl AuditField) -> Self {
        self.detail = detail.into_field().filter(|d| !d.is_empty());
        self
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The entry's content.
    pub entry: NewAuditEntry,
    /// The previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Entries walked.
    pub entries: u64,
    /// The hash of the last entry (what an external anchor should hold).
    pub head: String,
    /// The first entry whose link does not hold, if any.
    pub first_broken: Option<BrokenLink>,
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The entry's sequence number.
    pub seq: i64,
    /// What does not match.
    pub problem: String,
}

impl Journal {
    /// Appends one entry in its own transaction and returns it as stored.
    pub fn append_audit(&mut self, entry: &NewAuditEntry) -> Result<AuditEntry, JournalError> {
        let during = "appending to the audit log";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        let stored = append_in(&tx, entry).map_err(JournalError::sql(during))?;
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(stored)
    }

    /// Appends `entries` in order in one transaction (one fsync for all of them), linked as
    /// if appended one by one; all or none are stored. Returns how many.
    pub fn append_audit_batch(&mut self, entries: &[NewAuditEntry]) -> Result<usize, JournalError> {
        let during = "appending to the audit log";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(JournalError::sql(during))?;
        for entry in entries {
            append_in(&tx, entry).map_err(JournalError::sql(during))?;
        }
        tx.commit().map_err(JournalError::sql(during))?;
        Ok(entries.len())
    }

    /// The last `n` entries, oldest first.
    pub fn audit_tail(&self, n: u32) -> Result<Vec<AuditEntry>, JournalError> {
        let during = "reading the audit log";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT * FROM (SELECT seq, at, kind, actor, action, target, op_id, outcome,
                                       reason, detail, prev_hash, hash
                                FROM audit ORDER BY seq DESC LIMIT ?1)
                 ORDER BY seq",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map([n], row_to_entry)
            .map_err(JournalError::sql(during))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))
    }

    /// Up to `n` entries after `seq`, oldest first: the hub report pages forward from the last
    /// acknowledged entry, so an entry the hub has not acknowledged is never skipped.
    pub fn audit_after(&self, seq: i64, n: u32) -> Result<Vec<AuditEntry>, JournalError> {
        let during = "reading the audit log";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at, kind, actor, action, target, op_id, outcome, reason, detail,
                        prev_hash, hash
                 FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map(params![seq, n], row_to_entry)
            .map_err(JournalError::sql(during))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql(during))
    }

    /// Walks the whole chain and reports the first broken link.
    pub fn audit_verify(&self) -> Result<AuditCheck, JournalError> {
        let during = "verifying the audit log";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at, kind, actor, action, target, op_id, outcome, reason, detail,
                        prev_hash, hash
                 FROM audit ORDER BY seq",
            )
            .map_err(JournalError::sql(during))?;
        let rows = stmt
            .query_map([], row_to_entry)
            .map_err(JournalError::sql(during))?;
        let mut prev = GENESIS.to_owned();
        let mut entries = 0u64;
        for (expected_seq, row) in (1i64..).zip(rows) {
            let stored = row.map_err(JournalError::sql(during))?;
            entries += 1;
            let problem = if stored.seq != expected_seq {
                Some(format!(
                    "expected entry {expected_seq}, found {}",
                    stored.seq
                ))
            } else if stored.prev_hash != prev {
                Some("prev_hash does not match the previous entry's hash".to_owned())
            } else if chain_hash(&stored.prev_hash, stored.seq, &stored.entry) != stored.hash {
                Some("content does not match its hash (entry edited)".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(AuditCheck {
                    entries,
                    head: prev,
                    first_broken: Some(BrokenLink {
                        seq: stored.seq,
                        problem,
                    }),
                });
            }
            prev = stored.hash;
        }
        Ok(AuditCheck {
            entries,
            head: prev,
            first_broken: None,
        })
    }
}

/// Appends inside the caller's transaction (so an accept and its audit entry commit together).
pub(crate) fn append_in(
    tx: &Transaction<'_>,
    entry: &NewAuditEntry,
) -> Result<AuditEntry, rusqlite::Error> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let hash = chain_hash(&prev_hash, seq, entry);
    tx.execute(
        "INSERT INTO audit (seq, at, kind, actor, action, target, op_id, outcome, reason, detail,
                            prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            seq,
            entry.at,
            entry.kind,
            entry.actor,
            entry.action,
            entry.target,
            entry.op_id,
            entry.outcome,
            entry.reason,
            entry.detail,
            prev_hash,
            hash
        ],
    )?;
    Ok(AuditEntry {
        seq,
        entry: entry.clone(),
        prev_hash,
        hash,
    })
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        entry: NewAuditEntry {
            at: r.get(1)?,
            kind: r.get(2)?,
            actor: r.get(3)?,
            action: r.get(4)?,
            target: r.get(5)?,
            op_id: r.get(6)?,
            outcome: r.get(7)?,
            reason: r.get(8)?,
            detail: r.get(9)?,
        },
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

/// `SHA-256(prev_hash bytes ‖ canonical(seq, entry))` as hex. A `prev_hash` that is not valid
/// hex is hashed as its text so a tampered value still yields a (non-matching) hash.
fn chain_hash(prev_hash: &str, seq: i64, entry: &NewAuditEntry) -> String {
    let mut h = Sha256::new();
    match hex::decode(prev_hash) {
        Ok(bytes) => h.update(bytes),
        Err(_) => h.update(prev_hash.as_bytes()),
    }
    h.update(canonical(seq, entry));
    hex::encode(h.finalize())
}

fn canonical(seq: i64, e: &NewAuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(ENCODING_TAG);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&e.at.to_be_bytes());
    let fields: [Option<&str>; 8] = [
        Some(&e.kind),
        e.actor.as_deref(),
        e.action.as_deref(),
        e.target.as_deref(),
        e.op_id.as_deref(),
        Some(&e.outcome),
        e.reason.as_deref(),
        e.detail.as_deref(),
    ];
    for field in fields {
        match field {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                // Audit fields are short; a field over 4 GiB cannot be stored anyway.
                let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_names_every_field_and_writes_guest_targets_one_way() {
        let none: Option<&str> = None;
        // By reference, as a caller holding an event reads its fields.
        let reason = Some("guest-id-attempt".to_owned());
        let e = NewAuditEntry::new(7, "local_api", "ok")
            .actor(Some("tok-1".to_owned()))
            .action("snapshot.create")
            .vmid(Some(101))
            .op_id(none)
            .reason(&reason)
            .detail("");
        assert_eq!(
            e,
            NewAuditEntry {
                at: 7,
                kind: "local_api".into(),
                actor: Some("tok-1".into()),
                action: Some("snapshot.create".into()),
                target: Some("vmid:101".into()),
                op_id: None,
                outcome: "ok".into(),
                reason: Some("guest-id-attempt".into()),
                detail: None,
            }
        );
        assert_eq!(NewAuditEntry::new(1, "k", "o").vmid(None).target, None);
        assert_eq!(
            NewAuditEntry::new(1, "k", "o")
                .target("node")
                .target
                .as_deref(),
            Some("node")
        );
    }

    pub(crate) fn entry(at: i64, outcome: &str, reason: &str) -> NewAuditEntry {
        NewAuditEntry::new(at, "signed_op", outcome)
            .actor("alice")
            .action("guest.destroy")
            .vmid(101)
            .op_id(format!("op-{at:08}"))
            .reason(reason)
    }

    fn journal_with(n: i64) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        for i in 1..=n {
            let outcome = if i % 2 == 0 { "accepted" } else { "rejected" };
            j.append_audit(&entry(i, outcome, "x")).unwrap();
        }
        (dir, j)
    }

    #[test]
    fn pages_forward_from_a_sequence_oldest_first() {
        let (_dir, j) = journal_with(5);
        let seqs = |after, n| {
            j.audit_after(after, n)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(0, 2), [1, 2]);
        assert_eq!(seqs(2, 2), [3, 4]);
        assert_eq!(seqs(4, 10), [5]);
        assert!(seqs(5, 10).is_empty());
    }

    #[test]
    fn chain_links_and_verifies() {
        let (_dir, j) = journal_with(5);
        let tail = j.audit_tail(3).unwrap();
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(tail[1].prev_hash, tail[0].hash);
        let check = j.audit_verify().unwrap();
        assert_eq!(check.entries, 5);
        assert_eq!(check.first_broken, None);
        assert_eq!(check.head, tail[2].hash);
    }

    #[test]
    fn a_batch_links_like_single_appends() {
        let (_dir, mut j) = journal_with(2);
        let batch: Vec<_> = (3..=6).map(|i| entry(i, "accepted", "b")).collect();
        assert_eq!(j.append_audit_batch(&batch).unwrap(), 4);
        let check = j.audit_verify().unwrap();
        assert_eq!((check.entries, check.first_broken), (6, None));
        let tail = j.audit_tail(6).unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(tail[2].prev_hash, tail[1].hash);
        assert_eq!(j.append_audit_batch(&[]).unwrap(), 0);
    }

    #[test]
    fn the_agent_cannot_update_or_delete_entries() {
        let (_dir, j) = journal_with(2);
        for sql in [
            "UPDATE audit SET outcome = 'accepted' WHERE seq = 1",
            "DELETE FROM audit WHERE seq = 1",
        ] {
            let err = j.conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (_dir, j) = journal_with(4);
        j.conn
            .execute_batch(
                "DROP TRIGGER audit_no_update;
                 UPDATE audit SET outcome = 'accepted' WHERE seq = 3;",
            )
            .unwrap();
        let broken = j.audit_verify().unwrap().first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("edited"), "{}", broken.problem);
    }

    #[test]
    fn a_deleted_entry_breaks_the_next_link() {
        let (_dir, j) = journal_with(4);
        j.conn
            .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 2;")
            .unwrap();
        let broken = j.audit_verify().unwrap().first_broken.unwrap();
        assert_eq!(broken.seq, 3);
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_following_link() {
        // An attacker who edits entry 2 and recomputes its hash breaks entry 3's prev_hash.
        let (_dir, j) = journal_with(3);
        let mut e2 = j.audit_tail(2).unwrap().remove(0);
        e2.entry.outcome = "accepted-forged".into();
        let new_hash = chain_hash(&e2.prev_hash, e2.seq, &e2.entry);
        j.conn
            .execute_batch("DROP TRIGGER audit_no_update;")
            .unwrap();
        j.conn
            .execute(
                "UPDATE audit SET outcome = ?1, hash = ?2 WHERE seq = 2",
                params![e2.entry.outcome, new_hash],
            )
            .unwrap();
        let broken = j.audit_verify().unwrap().first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("prev_hash"), "{}", broken.problem);
    }

    #[test]
    fn canonical_encoding_is_unambiguous_between_fields() {
        let mut a = entry(1, "rejected", "x");
        let mut b = a.clone();
        a.actor = Some("ab".into());
        a.action = Some("c".into());
        b.actor = Some("a".into());
        b.action = Some("bc".into());
        assert_ne!(canonical(1, &a), canonical(1, &b));
        let mut c = a.clone();
        c.detail = Some(String::new());
        assert_ne!(canonical(1, &a), canonical(1, &c));
    }
}
