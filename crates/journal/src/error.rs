//! The journal's error type.

use std::path::PathBuf;

/// Everything that can go wrong opening or writing the journal. A failed write has been rolled
/// back: nothing of it is recorded.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory could not be created or inspected.
    #[error("cannot prepare state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created or inspected.
    #[error("cannot create database file {path}")]
    CreateFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path exists but is not a regular file (a symlink, a directory, …).
    #[error("{path} is not a regular file; refusing to use it as the journal")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// SQLite could not open or configure the file.
    #[error("cannot open database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a felhom-agent database (another SQLite database, or not SQLite at all).
    #[error("{path} is not a felhom-agent database ({found}); refusing to touch it")]
    NotOurDatabase {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// The database was written by a newer felhom-agent.
    #[error("{path} has schema version {found} but this felhom-agent knows only up to {supported}; upgrade the agent (never downgrade over a newer database)")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest version this binary knows.
        supported: u32,
    },
    /// A read-only open found no database file.
    #[error("{path} does not exist (the agent has not run here yet)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A read-only open found a database the daemon has not migrated yet.
    #[error("{path} has schema version {found}, older than this felhom-agent's {supported}; start the agent once to migrate it")]
    Outdated {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The version this binary writes.
        supported: u32,
    },
    /// A schema migration failed; the database stays at the previous version.
    #[error("migrating the journal to schema version {version} failed")]
    Migrate {
        /// The version being applied.
        version: u32,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A read or write failed; a write has been rolled back.
    #[error("journal {during} failed")]
    Sql {
        /// What was being done.
        during: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not have the shape this binary wrote (manual edit or corruption).
    #[error("journal row {table}/{key} is corrupt: {problem}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl JournalError {
    /// A closure mapping a rusqlite error to [`JournalError::Sql`].
    pub(crate) fn sql(during: &'static str) -> impl FnOnce(rusqlite::Error) -> JournalError {
        move |source| JournalError::Sql { during, source }
    }
}
