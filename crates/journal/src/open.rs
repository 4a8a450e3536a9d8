//! Opening the database file: permissions, pragmas, migrations.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::schema::{self, classify_open_error};
use crate::JournalError;

/// The database file's name inside the state directory.
pub const DB_FILE_NAME: &str = "felhom-agent.db";

/// How long a writer waits for another connection's lock before failing. The agent has one
/// writer; this covers a CLI command (`op verify`, `audit tail`) running beside the daemon.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's journal: one SQLite connection to `STATE_DIR/felhom-agent.db`.
#[derive(Debug)]
pub struct Journal {
    pub(crate) conn: Connection,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`.
    ///
    /// A missing state directory is created 0700 and a missing database file 0600 (SQLite gives
    /// the `-wal` and `-shm` files the database file's mode). The connection runs in WAL mode
    /// with `synchronous=FULL` (a commit is on disk when it returns: a nonce accepted once stays
    /// accepted across a power cut), `foreign_keys=ON` and a busy timeout. The schema is brought
    /// to [`crate::SCHEMA_VERSION`]; a file that is not a felhom-agent database, or one written
    /// by a newer binary, is refused untouched.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        if !state_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|source| JournalError::StateDir {
                    path: state_dir.to_owned(),
                    source,
                })?;
        }
        let path = state_dir.join(DB_FILE_NAME);
        ensure_file(&path)?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|source| classify_open_error(&path, source))?;
        configure(&conn, &path)?;
        schema::migrate(&mut conn, &path)?;
        Ok(Journal { conn, path })
    }

    /// Opens an existing journal read-only, for commands that must change nothing (`plan`,
    /// `audit verify|tail`). Never creates, migrates or claims a file: a missing file is
    /// [`JournalError::Missing`], one the daemon has not migrated yet [`JournalError::Outdated`],
    /// and a foreign or newer one is refused like [`Journal::open`] does.
    pub fn open_read_only(state_dir: &Path) -> Result<Journal, JournalError> {
        let path = state_dir.join(DB_FILE_NAME);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => return Err(JournalError::NotAFile { path }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::Missing { path })
            }
            Err(source) => return Err(JournalError::CreateFile { path, source }),
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|source| classify_open_error(&path, source))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|source| classify_open_error(&path, source))?;
        let found = schema::check_version(&conn, &path)?;
        if found < schema::SCHEMA_VERSION {
            return Err(JournalError::Outdated {
                path,
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        Ok(Journal { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (always [`crate::SCHEMA_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<u32, JournalError> {
        self.conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(JournalError::sql("reading the schema version"))
    }
}

/// Creates the file 0600 if it is missing; refuses anything that is not a regular file.
fn ensure_file(path: &Path) -> Result<(), JournalError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(_) => Err(JournalError::NotAFile {
            path: path.to_owned(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
            .map_err(|source| JournalError::CreateFile {
                path: path.to_owned(),
                source,
            }),
        Err(source) => Err(JournalError::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|source| classify_open_error(path, source))?;
    // The first statement that reads the header: garbage files fail here with NOTADB.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|source| classify_open_error(path, source))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stayed {mode}, wanted wal"
            )),
        });
    }
    for (pragma, value) in [("synchronous", "FULL"), ("foreign_keys", "ON")] {
        conn.pragma_update(None, pragma, value)
            .map_err(|source| classify_open_error(path, source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_private_file_with_wal_full_sync_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let journal = Journal::open(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(journal.path()), 0o600);
        assert_eq!(mode(&state), 0o700);
        let get = |sql: &str| -> String {
            journal
                .conn
                .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(get("PRAGMA journal_mode"), "Text(\"wal\")");
        // FULL = 2
        assert_eq!(get("PRAGMA synchronous"), "Integer(2)");
        assert_eq!(get("PRAGMA foreign_keys"), "Integer(1)");
        assert_eq!(journal.schema_version().unwrap(), crate::SCHEMA_VERSION);
    }

    #[test]
    fn reopening_keeps_version_and_applies_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let journal = Journal::open(dir.path()).unwrap();
        let rows: i64 = journal
            .conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, i64::from(crate::SCHEMA_VERSION));
    }

    #[test]
    fn refuses_a_file_that_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE_NAME), vec![b'x'; 4096]).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::NotOurDatabase { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not an SQLite database"), "{err}");
    }

    #[test]
    fn refuses_another_programs_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE customers (id INTEGER);")
            .unwrap();
        drop(other);
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("not a felhom-agent database"),
            "{err}"
        );
        // Untouched: the foreign table is still the only one.
        let other = Connection::open(&path).unwrap();
        let n: i64 = other
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn refuses_a_database_from_a_newer_binary() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal
            .conn
            .execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)",
                [crate::SCHEMA_VERSION + 1],
            )
            .unwrap();
        drop(journal);
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::TooNew { found, supported, .. }
                if found == crate::SCHEMA_VERSION + 1 && supported == crate::SCHEMA_VERSION),
            "{err:?}"
        );
    }

    #[test]
    fn read_only_open_changes_nothing_and_refuses_what_open_refuses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Journal::open_read_only(dir.path()),
            Err(JournalError::Missing { .. })
        ));
        assert!(!dir.path().join(DB_FILE_NAME).exists());
        let mut journal = Journal::open(dir.path()).unwrap();
        journal
            .append_audit(&crate::NewAuditEntry {
                at: 1,
                kind: "k".into(),
                actor: None,
                action: None,
                target: None,
                op_id: None,
                outcome: "o".into(),
                reason: None,
                detail: None,
            })
            .unwrap();
        drop(journal);
        let mut ro = Journal::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.audit_verify().unwrap().entries, 1);
        assert!(ro
            .append_audit(&crate::NewAuditEntry {
                at: 2,
                kind: "k".into(),
                actor: None,
                action: None,
                target: None,
                op_id: None,
                outcome: "o".into(),
                reason: None,
                detail: None,
            })
            .is_err());
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(DB_FILE_NAME), vec![b'x'; 4096]).unwrap();
        assert!(matches!(
            Journal::open_read_only(other.path()),
            Err(JournalError::NotOurDatabase { .. })
        ));
    }

    #[test]
    fn refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.db");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(DB_FILE_NAME)).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::NotAFile { .. }), "{err:?}");
    }
}
