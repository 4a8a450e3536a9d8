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
//! Start reading at [`Journal::open`], then `signed_ops.rs` and `audit.rs`.

mod audit;
mod error;
mod open;
mod schema;
mod signed_ops;

pub use audit::{AuditCheck, AuditEntry, BrokenLink, NewAuditEntry};
pub use error::JournalError;
pub use open::{Journal, DB_FILE_NAME};
pub use schema::SCHEMA_VERSION;
pub use signed_ops::{AdmitOutcome, NewSignedOp, OpState, SignedOpRecord};
