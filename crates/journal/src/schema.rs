//! Forward-only schema migrations.
//!
//! The database carries `PRAGMA application_id` = [`APPLICATION_ID`] (so another program's
//! SQLite file is recognised and refused) and a `schema_version` table with one row per applied
//! migration. Migrations are applied in order, each in its own transaction together with its
//! `schema_version` row; there are no down-migrations, and a database newer than the binary is
//! refused rather than guessed at. Add a migration by appending to [`MIGRATIONS`], never by
//! editing one that shipped.

use rusqlite::{Connection, TransactionBehavior};

use crate::JournalError;

/// `PRAGMA application_id` of a felhom-agent database: ASCII "FELH".
pub(crate) const APPLICATION_ID: i32 = 0x4645_4C48;

/// The schema version this binary writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: signed operations, their nonces and the audit log (issue 3).
    r#"
    CREATE TABLE nonces (
        nonce          TEXT PRIMARY KEY,
        op_id          TEXT NOT NULL,
        signer         TEXT NOT NULL,
        payload_sha256 TEXT NOT NULL,
        expires_at     INTEGER NOT NULL,
        keep_until     INTEGER NOT NULL,
        accepted_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX nonces_keep_until ON nonces (keep_until);

    CREATE TABLE signed_ops (
        op_id          TEXT PRIMARY KEY,
        payload_sha256 TEXT NOT NULL,
        action         TEXT NOT NULL,
        target         TEXT NOT NULL,
        signer         TEXT NOT NULL,
        state          TEXT NOT NULL
                       CHECK (state IN ('accepted', 'running', 'succeeded', 'failed')),
        outcome        TEXT CHECK (outcome IS NULL OR json_valid(outcome)),
        accepted_at    INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        actor     TEXT,
        action    TEXT,
        target    TEXT,
        op_id     TEXT,
        outcome   TEXT NOT NULL,
        reason    TEXT,
        detail    TEXT,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    ) STRICT;
    -- Append-only inside the agent. Someone with write access to the file can drop these;
    -- the hash chain (audit_verify) is what detects that.
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    "#,
    // 2: the reconcile engine (issue 4): accepted desired states, guest provenance, and the
    // op journal with per-step state and in-flight UPIDs.
    r#"
    CREATE TABLE desired_states (
        generation  INTEGER PRIMARY KEY,
        sha256      TEXT NOT NULL,
        body        TEXT NOT NULL,
        source      TEXT NOT NULL,
        accepted_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE guests (
        vmid               INTEGER PRIMARY KEY,
        managed            INTEGER NOT NULL CHECK (managed IN (0, 1)),
        adopted_generation INTEGER,
        created_by_op      TEXT,
        scratch            INTEGER NOT NULL DEFAULT 0 CHECK (scratch IN (0, 1)),
        first_seen         INTEGER NOT NULL,
        last_seen          INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE ops (
        op_id      TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('reconcile', 'signed')),
        vmid       INTEGER NOT NULL,
        generation INTEGER,
        state      TEXT NOT NULL CHECK (state IN ('planned', 'running', 'succeeded', 'failed',
                                                  'abandoned', 'pending_signature')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        error      TEXT
    ) STRICT;
    CREATE INDEX ops_state ON ops (state);

    CREATE TABLE op_steps (
        op_id       TEXT NOT NULL REFERENCES ops (op_id),
        idx         INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        params      TEXT NOT NULL CHECK (json_valid(params)),
        state       TEXT NOT NULL CHECK (state IN ('planned', 'intent', 'posted', 'done',
                                                   'failed', 'skipped')),
        upid        TEXT,
        intent_at   INTEGER,
        posted_at   INTEGER,
        finished_at INTEGER,
        exitstatus  TEXT,
        PRIMARY KEY (op_id, idx)
    ) STRICT;
    "#,
    // 3: the local API (issue 6): per-guest controller tokens (only a hash of each secret) and
    // the snapshot/rollback/backup ops the local API queues. Those ops get a table of their own
    // rather than rows in `ops`: `ops.kind` admits only 'reconcile' and 'signed' (a shipped
    // CHECK, which SQLite cannot alter in place), and reconcile's crash recovery must not try
    // to resume steps it has no executor for.
    r#"
    CREATE TABLE local_api_tokens (
        id         TEXT PRIMARY KEY,
        vmid       INTEGER NOT NULL,
        hash       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    CREATE INDEX local_api_tokens_vmid ON local_api_tokens (vmid);

    CREATE TABLE local_api_ops (
        op_id       TEXT PRIMARY KEY,
        vmid        INTEGER NOT NULL,
        action      TEXT NOT NULL CHECK (action IN ('snapshot', 'rollback', 'backup')),
        snapshot    TEXT,
        storage     TEXT,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                                                   'abandoned', 'refused')),
        upid        TEXT,
        error       TEXT,
        created_at  INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER
    ) STRICT;
    CREATE INDEX local_api_ops_guest ON local_api_ops (vmid, action);
    "#,
    // 4: one executor (issue 10): local-API ops become ops of kind 'local_api' with one step
    // each, history included, and `local_api_ops` goes. `ops` and `op_steps` are rebuilt
    // because their shipped CHECKs cannot be altered in place; the new `ops.kind` and
    // `op_steps.kind` have no CHECK (the Rust side refuses an unknown word as corrupt), so the
    // capabilities still to come add kinds without another rebuild. The states keep their
    // CHECK, with `refused` added (an op that never ran: a full queue, a refused signed job).
    // Children first: dropping `op_steps` before `ops` keeps the foreign key satisfied, and
    // renaming `ops_v4` to `ops` rewrites the reference in `op_steps_v4`.
    r#"
    CREATE TABLE ops_v4 (
        op_id      TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        vmid       INTEGER NOT NULL,
        generation INTEGER,
        state      TEXT NOT NULL CHECK (state IN ('planned', 'running', 'succeeded', 'failed',
                                                  'abandoned', 'pending_signature', 'refused')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        error      TEXT
    ) STRICT;
    CREATE TABLE op_steps_v4 (
        op_id       TEXT NOT NULL REFERENCES ops_v4 (op_id),
        idx         INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        params      TEXT NOT NULL CHECK (json_valid(params)),
        state       TEXT NOT NULL CHECK (state IN ('planned', 'intent', 'posted', 'done',
                                                   'failed', 'skipped')),
        upid        TEXT,
        intent_at   INTEGER,
        posted_at   INTEGER,
        finished_at INTEGER,
        exitstatus  TEXT,
        PRIMARY KEY (op_id, idx)
    ) STRICT;
    INSERT INTO ops_v4 SELECT op_id, kind, vmid, generation, state, created_at, updated_at, error
        FROM ops;
    INSERT INTO op_steps_v4 SELECT * FROM op_steps;

    -- A local-API op was one row; it becomes an op with one step. `backup` is the `vzdump`
    -- step. Queued = planned (step planned); running without a UPID = the intent was taken
    -- (step intent, so recovery searches the task list); running with a UPID = posted;
    -- abandoned keeps its word; refused never ran (step skipped).
    INSERT INTO ops_v4 (op_id, kind, vmid, generation, state, created_at, updated_at, error)
        SELECT op_id, 'local_api', vmid, NULL,
               CASE state WHEN 'queued' THEN 'planned' ELSE state END,
               created_at, coalesce(finished_at, started_at, created_at), error
        FROM local_api_ops;
    INSERT INTO op_steps_v4 (op_id, idx, kind, params, state, upid, intent_at, posted_at,
                             finished_at, exitstatus)
        SELECT op_id, 0,
               CASE action WHEN 'backup' THEN 'vzdump' ELSE action END,
               CASE action WHEN 'backup' THEN json_object('storage', coalesce(storage, ''))
                           ELSE json_object('name', coalesce(snapshot, '')) END,
               CASE
                   WHEN state = 'queued' THEN 'planned'
                   WHEN state = 'running' AND upid IS NULL THEN 'intent'
                   WHEN state = 'running' THEN 'posted'
                   WHEN state = 'succeeded' THEN 'done'
                   WHEN state = 'refused' THEN 'skipped'
                   ELSE 'failed'
               END,
               upid, started_at, CASE WHEN upid IS NULL THEN NULL ELSE started_at END,
               finished_at,
               CASE WHEN state = 'succeeded' THEN 'OK' ELSE error END
        FROM local_api_ops;

    DROP TABLE op_steps;
    DROP TABLE ops;
    DROP TABLE local_api_ops;
    ALTER TABLE ops_v4 RENAME TO ops;
    ALTER TABLE op_steps_v4 RENAME TO op_steps;
    CREATE INDEX ops_state ON ops (state);
    CREATE INDEX ops_guest ON ops (vmid, created_at);
    "#,
    // 5: ownership is provenance (issue 11, DESIGN.md §4.6). A guest becomes managed by a signed
    // `guest.adopt` (`adopted_op`) or by agent creation, no longer by being named in a desired
    // state; rows adopted that way by earlier versions keep `managed = 1` (their
    // `adopted_generation` says how). `identity` is the marker the agent wrote into the guest's
    // config (NULL until written; an earlier version's guest gets one at the next cycle), and
    // `identity_at` when that identity began, so a signed op issued before it is refused.
    // `desired_resets`: a verified `desired.reset` arms the acceptance of one lower generation
    // until it expires; using it records when and which generation.
    r#"
    ALTER TABLE guests ADD COLUMN adopted_op TEXT;
    ALTER TABLE guests ADD COLUMN identity TEXT;
    ALTER TABLE guests ADD COLUMN identity_at INTEGER;

    CREATE TABLE desired_resets (
        op_id           TEXT PRIMARY KEY,
        signer          TEXT NOT NULL,
        armed_at        INTEGER NOT NULL,
        armed_until     INTEGER NOT NULL,
        used_at         INTEGER,
        used_generation INTEGER
    ) STRICT;
    "#,
];

/// Brings a freshly opened connection to [`SCHEMA_VERSION`], or refuses the file.
pub(crate) fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<u32, JournalError> {
    let open_err = |source| JournalError::Open {
        path: path.to_owned(),
        source,
    };
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|source| classify_open_error(path, source))?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(open_err)?;
    let current = match (app_id, objects) {
        (0, 0) => {
            // A new, empty file: claim it.
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|source| JournalError::Migrate { version: 0, source })?;
            conn.execute_batch(
                "CREATE TABLE schema_version (
                     version    INTEGER PRIMARY KEY,
                     applied_at INTEGER NOT NULL
                 ) STRICT;",
            )
            .map_err(|source| JournalError::Migrate { version: 0, source })?;
            0
        }
        (APPLICATION_ID, _) => conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_version",
                [],
                |r| r.get::<_, u32>(0),
            )
            .map_err(|_| JournalError::NotOurDatabase {
                path: path.to_owned(),
                found: "felhom application id but no schema_version table".to_owned(),
            })?,
        (0, n) => {
            return Err(JournalError::NotOurDatabase {
                path: path.to_owned(),
                found: format!("an SQLite database with {n} foreign schema objects"),
            })
        }
        (other, _) => {
            return Err(JournalError::NotOurDatabase {
                path: path.to_owned(),
                found: format!("an SQLite database with application_id {other:#x}"),
            })
        }
    };
    if current > SCHEMA_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_owned(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        let migrate_err = |source| JournalError::Migrate { version, source };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migrate_err)?;
        tx.execute_batch(sql).map_err(migrate_err)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, unixepoch())",
            [version],
        )
        .map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
        tracing::info!(version, "journal schema migrated");
    }
    Ok(SCHEMA_VERSION)
}

/// The schema version of an opened database, refusing a foreign or newer file; writes nothing.
pub(crate) fn check_version(
    conn: &Connection,
    path: &std::path::Path,
) -> Result<u32, JournalError> {
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|source| classify_open_error(path, source))?;
    if app_id != APPLICATION_ID {
        return Err(JournalError::NotOurDatabase {
            path: path.to_owned(),
            found: format!("an SQLite database with application_id {app_id:#x}"),
        });
    }
    let version = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get::<_, u32>(0),
        )
        .map_err(|_| JournalError::NotOurDatabase {
            path: path.to_owned(),
            found: "felhom application id but no schema_version table".to_owned(),
        })?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// SQLite says "file is not a database" for anything that is not SQLite: say it plainly.
pub(crate) fn classify_open_error(path: &std::path::Path, source: rusqlite::Error) -> JournalError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        JournalError::NotOurDatabase {
            path: path.to_owned(),
            found: "not an SQLite database".to_owned(),
        }
    } else {
        JournalError::Open {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::OpenOptionsExt;

    use rusqlite::params;

    use super::*;
    use crate::{Journal, OpKind, OpStatus, StepStatus, DB_FILE_NAME};

    /// A database as version 0.4.0 left it (schema 3), with local-API ops in every state.
    fn version_3(dir: &std::path::Path) {
        let path = dir.join(DB_FILE_NAME);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,
                                          applied_at INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        for (i, sql) in MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_version VALUES (?1, 0)", [i as i64 + 1])
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO ops VALUES ('rc-1', 'reconcile', 100, 1, 'succeeded', 1, 2, NULL);
             INSERT INTO op_steps VALUES ('rc-1', 0, 'start', '{}', 'done', 'UPID:s', 1, 1, 2, 'OK');",
        )
        .unwrap();
        // (op_id, action, snapshot, storage, state, upid)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let rows: &[Row] = &[
            (
                "la-ok",
                "snapshot",
                Some("pre"),
                None,
                "succeeded",
                Some("UPID:a"),
            ),
            (
                "la-bk",
                "backup",
                None,
                Some("usb"),
                "running",
                Some("UPID:b"),
            ),
            ("la-lost", "rollback", Some("pre"), None, "running", None),
            ("la-q", "snapshot", Some("q"), None, "queued", None),
            ("la-busy", "backup", None, Some("usb"), "refused", None),
            ("la-ab", "snapshot", Some("x"), None, "abandoned", None),
        ];
        for (id, action, snapshot, storage, state, upid) in rows {
            conn.execute(
                "INSERT INTO local_api_ops (op_id, vmid, action, snapshot, storage, state, upid,
                                            error, created_at, started_at, finished_at)
                 VALUES (?1, 101, ?2, ?3, ?4, ?5, ?6, NULL, 10, 11,
                         CASE WHEN ?5 IN ('queued', 'running') THEN NULL ELSE 12 END)",
                params![id, action, snapshot, storage, state, upid],
            )
            .unwrap();
        }
    }

    #[test]
    fn version_4_moves_local_api_ops_into_the_op_journal_with_their_history() {
        let dir = tempfile::tempdir().unwrap();
        version_3(dir.path());
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
        // Reconcile history is kept as it was.
        let rc = j.op("rc-1").unwrap().unwrap();
        assert_eq!(
            (rc.kind, rc.state),
            (OpKind::Reconcile, OpStatus::Succeeded)
        );
        assert_eq!(rc.steps[0].upid.as_deref(), Some("UPID:s"));
        let get = |id: &str| j.op(id).unwrap().unwrap();
        let ok = get("la-ok");
        assert_eq!(
            (ok.kind, ok.state, ok.vmid),
            (OpKind::LocalApi, OpStatus::Succeeded, 101)
        );
        assert_eq!(ok.steps[0].kind, "snapshot");
        assert_eq!(ok.steps[0].params, r#"{"name":"pre"}"#);
        assert_eq!(ok.steps[0].state, StepStatus::Done);
        assert_eq!(ok.updated_at, 12);
        let bk = get("la-bk");
        assert_eq!(
            (bk.state, bk.steps[0].state),
            (OpStatus::Running, StepStatus::Posted)
        );
        assert_eq!(bk.steps[0].kind, "vzdump");
        assert_eq!(bk.steps[0].params, r#"{"storage":"usb"}"#);
        assert_eq!(bk.steps[0].upid.as_deref(), Some("UPID:b"));
        // Running without a UPID: the intent was taken, so recovery searches the task list.
        let lost = get("la-lost");
        assert_eq!(lost.steps[0].state, StepStatus::Intent);
        assert_eq!(lost.steps[0].intent_at, Some(11));
        assert_eq!(get("la-q").state, OpStatus::Planned);
        assert_eq!(get("la-q").steps[0].state, StepStatus::Planned);
        let busy = get("la-busy");
        assert_eq!(
            (busy.state, busy.steps[0].state),
            (OpStatus::Refused, StepStatus::Skipped)
        );
        assert_eq!(get("la-ab").state, OpStatus::Abandoned);
        // What recovery must settle, in one list.
        let open: Vec<String> = j
            .unfinished_ops()
            .unwrap()
            .into_iter()
            .map(|o| o.op_id)
            .collect();
        assert_eq!(open, vec!["la-bk", "la-lost", "la-q"]);
        let gone: i64 = j
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'local_api_ops'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0);
        // The rebuilt tables keep their checks and the foreign key.
        assert!(j
            .conn
            .execute("UPDATE ops SET state = 'bogus' WHERE op_id = 'rc-1'", [])
            .is_err());
        assert!(j
            .conn
            .execute(
                "INSERT INTO op_steps (op_id, idx, kind, params, state)
                 VALUES ('nope', 0, 'start', '{}', 'planned')",
                [],
            )
            .is_err());
        assert!(j.audit_verify().unwrap().first_broken.is_none());
    }

    #[test]
    fn version_5_keeps_guests_adopted_by_a_desired_state_managed() {
        let dir = tempfile::tempdir().unwrap();
        version_3(dir.path());
        {
            let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
            conn.execute_batch(
                "INSERT INTO guests VALUES (101, 1, 3, NULL, 0, 5, 6);
                 INSERT INTO guests VALUES (102, 0, 2, NULL, 0, 5, 6);",
            )
            .unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        let guests = j.guests().unwrap();
        assert_eq!(guests.len(), 2);
        assert!(guests[0].managed && !guests[1].managed);
        assert_eq!(guests[0].adopted_generation, Some(3));
        assert_eq!(
            (
                guests[0].identity.as_deref(),
                guests[0].adopted_op.as_deref()
            ),
            (None, None)
        );
    }
}
