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
