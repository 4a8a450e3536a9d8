//! journal: the agent's single SQLite database (`felhom-agent.db` in the state directory) and
//! the records kept in it. It owns opening the file safely (created 0600, WAL,
//! `synchronous=FULL`, foreign keys on, a busy timeout), the forward-only schema migrations
//! (`schema.rs`, [`SCHEMA_VERSION`]), the signed-op and nonce records that make operator authorizations run once
//! ([`Journal::admit_signed_op`]), and the append-only, hash-chained audit log ([`Journal::append_audit`], [`Journal::audit_verify`]).
//!
//! It never decides anything: whether a signature is valid, whether an op may run or what an
//! audit entry means is the caller's business (`authz`, the reconciler). It depends on no other
//! crate of the workspace; the binary adapts it to the narrow traits its consumers define
//! (`authz::ReplayGuard`, `authz::AuditSink`). Every write is one transaction: an error part
//! way through leaves nothing half-recorded.
//!
//! Schema version 2 adds what the reconcile engine journals: accepted desired states and guest
//! provenance (`desired_states.rs`) and multi-step ops with per-step state and in-flight UPIDs
//! (`ops.rs`). [`Journal::open_read_only`] serves commands that must change nothing (`plan`,
//! `audit verify|tail`).
//!
//! Schema version 3 adds the local API's records (`local_api.rs`): controller tokens (only a
//! hash of each secret). Schema version 4 moves the local API's ops into the one op journal
//! (`ops.rs`), with their history: every op, whoever asked for it, has one vocabulary.
//!
//! Start reading at [`Journal::open`], then `signed_ops.rs`, `audit.rs` and `ops.rs`.

#[macro_use]
mod words;
mod audit;
mod desired_states;
mod error;
mod local_api;
mod open;
mod ops;
mod schema;
mod signed_ops;

pub use audit::{AuditCheck, AuditEntry, AuditField, BrokenLink, NewAuditEntry};
pub use desired_states::{DesiredStateRecord, GuestRecord, NewDesiredState};
pub use error::JournalError;
pub use local_api::LocalApiToken;
pub use open::{Journal, DB_FILE_NAME};
pub use ops::{NewOp, NewStep, OpKind, OpRecord, OpStatus, StepRecord, StepStatus};
pub use schema::SCHEMA_VERSION;
pub use signed_ops::{AdmitOutcome, NewSignedOp, OpState, SignedOpRecord};
