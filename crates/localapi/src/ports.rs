//! The narrow traits the server needs from the rest of the agent, and the types they speak.
//!
//! The `felhom-agent` binary implements them with the journal (tokens, audit, backup and
//! restore-test status) and the reconcile engine (the per-guest queue that serializes every
//! mutation of one guest, DESIGN.md §6 and seed §10). [`crate::fakes`] holds one in-memory
//! implementation of each, with injectable faults and latency, for tests and the benchmark.
//!
//! Every method takes the caller's own [`Vmid`], which the server got from the token and never
//! from the request: an implementation can rely on that and needs no authorization of its own.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use pve::{SnapshotName, Vmid};
use serde::Serialize;

use crate::policy::BackupPolicy;

/// The future an async port method returns (boxed so the traits stay object-safe and the
/// server can hold `Arc<dyn …>`).
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A port's backend failed (database, reconcile engine). The client sees only `internal`.
#[derive(Debug, thiserror::Error)]
#[error("{port} port failed: {what}")]
pub struct PortError {
    /// Which port: `"tokens"`, `"guests"`, ….
    pub port: &'static str,
    /// What was being done, for the log.
    pub what: String,
    /// The backend's error, if any.
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

impl PortError {
    /// A failure without an underlying error.
    pub fn new(port: &'static str, what: impl Into<String>) -> Self {
        PortError {
            port,
            what: what.into(),
            source: None,
        }
    }

    /// A failure caused by `source`.
    pub fn with_source(
        port: &'static str,
        what: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        PortError {
            port,
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// The public half of a token: 8 random bytes, written as 16 lower-case hex digits. It names the
/// token in the store, the audit log and the CLI; knowing it grants nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub(crate) [u8; 8]);

impl TokenId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 16;

    /// The raw bytes (for a database key).
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// From raw bytes (as a store reads them back).
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        TokenId(bytes)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// A string that is not 16 lower-case hex digits.
#[derive(Debug, thiserror::Error)]
#[error("token id must be 16 lower-case hex digits")]
pub struct BadTokenId;

impl FromStr for TokenId {
    type Err = BadTokenId;

    fn from_str(s: &str) -> Result<Self, BadTokenId> {
        let lower_hex = s.len() == Self::HEX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex {
            return Err(BadTokenId);
        }
        let mut out = [0u8; 8];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadTokenId)?;
        Ok(TokenId(out))
    }
}

/// What the store keeps instead of the secret: SHA-256 over a domain tag, the token id and the
/// secret (see [`crate::token`] for why a plain, unkeyed hash is enough here).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    /// The raw digest (for a database column).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From a raw digest (as a store reads it back).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenHash(bytes)
    }
}

impl fmt::Debug for TokenHash {
    // Not a secret, but there is no reason to spread it through logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Whether a token may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Accepted.
    Active,
    /// Revoked by the operator, by rotation, or because its guest is gone. Never reactivated.
    Revoked,
}

/// One stored token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Public id.
    pub id: TokenId,
    /// The one guest this token acts for.
    pub vmid: Vmid,
    /// Hash of the secret.
    pub hash: TokenHash,
    /// Active or revoked.
    pub state: TokenState,
    /// When it was minted.
    pub created_at: SystemTime,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
}

/// Durable token storage (the journal in the agent). Calls are short and synchronous; the
/// server calls [`TokenStore::lookup`] once per request.
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new active token. An existing id is an error (ids are random; a clash is a bug).
    fn insert(&self, record: &TokenRecord) -> Result<(), PortError>;
    /// The token with this id, active or revoked.
    fn lookup(&self, id: TokenId) -> Result<Option<TokenRecord>, PortError>;
    /// Revokes one token; `false` if it did not exist or was already revoked.
    fn revoke(&self, id: TokenId, at: SystemTime) -> Result<bool, PortError>;
    /// Revokes every active token of `vmid`; returns how many.
    fn revoke_all(&self, vmid: Vmid, at: SystemTime) -> Result<usize, PortError>;
    /// Every token, for `felhom-agent localapi tokens`.
    fn list(&self) -> Result<Vec<TokenRecord>, PortError>;
}

// ---------------------------------------------------------------------------------------------
// Guests

/// Speed class of a mount, set once when its storage target was attached (seed §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageClass {
    /// For hot volumes (databases, configuration).
    Fast,
    /// For bulk volumes (media).
    Slow,
}

/// A mount point available inside the caller's guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestMount {
    /// Path inside the guest, e.g. `/mnt/bulk`.
    pub path: String,
    /// Fast or slow.
    pub class: StorageClass,
    /// Whether the guest's vzdump includes it (`backup=0` mount points do not, seed §7).
    pub backup: bool,
}

/// State of the guest's latest backup as the journal knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    /// No backup was ever requested.
    None,
    /// Waiting in the guest's queue.
    Queued,
    /// vzdump is running.
    Running,
    /// The last backup finished with `exitstatus == "OK"`.
    Succeeded,
    /// The last backup failed (details in the agent's log and the hub report).
    Failed,
}

/// `GET /backup/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupStatus {
    /// Latest backup's state.
    pub state: BackupState,
    /// Its op id (as `POST /backup` returned it).
    pub op_id: Option<String>,
    /// When it started.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// End of the latest successful backup (drives `GET /backup/due`).
    pub last_success_at: Option<SystemTime>,
}

impl BackupStatus {
    /// A guest that never had a backup.
    pub fn never() -> Self {
        BackupStatus {
            state: BackupState::None,
            op_id: None,
            started_at: None,
            finished_at: None,
            last_success_at: None,
        }
    }
}

/// State of the guest's latest restore test (seed §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreTestState {
    /// Never run.
    Never,
    /// Running now.
    Running,
    /// The latest test restored, booted and passed its health checks.
    Passed,
    /// The latest test failed.
    Failed,
}

/// `GET /restore-test/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTestStatus {
    /// Latest test's state.
    pub state: RestoreTestState,
    /// When the latest test ran.
    pub last_run_at: Option<SystemTime>,
    /// When a test last passed.
    pub last_pass_at: Option<SystemTime>,
}

/// A mutation finished (`POST /snapshot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpDone {
    /// The journal's op id.
    pub op_id: String,
}

/// A mutation is journaled and queued (`POST /rollback`, `POST /backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpAccepted {
    /// The journal's op id.
    pub op_id: String,
}

/// Why a mutation was not done.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The guest's queue is full or the guest is locked by an operator op: try later.
    #[error("guest {vmid} is busy")]
    Busy {
        /// The guest.
        vmid: Vmid,
        /// A hint for `Retry-After`.
        retry_after: Duration,
    },
    /// The named snapshot already exists (snapshot) or a backup is already queued (backup).
    #[error("guest {vmid}: {what} already exists")]
    Conflict {
        /// The guest.
        vmid: Vmid,
        /// What exists.
        what: String,
    },
    /// `snapshot` when the guest already holds as many local-API snapshots as it may.
    #[error("guest {vmid} holds {limit} local-api snapshots already (oldest {oldest})")]
    SnapshotLimit {
        /// The guest.
        vmid: Vmid,
        /// How many it may hold.
        limit: usize,
        /// The oldest of them (an operator deletes one to make room).
        oldest: SnapshotName,
    },
    /// `backup` that the policy does not call due, within the minimum spacing of the last.
    #[error("guest {vmid}: no backup is due yet")]
    BackupNotDue {
        /// The guest.
        vmid: Vmid,
        /// When one will be allowed.
        retry_after: Duration,
    },
    /// `backup` for a guest without a backup policy in the desired state: there is no target,
    /// and the agent does not guess one. A client error, not a failure.
    #[error("guest {vmid} has no backup policy")]
    NoBackupPolicy {
        /// The guest.
        vmid: Vmid,
    },
    /// `rollback` to a snapshot that was not made through the local API for this guest (root
    /// or an operator made it): a rollback discards data, so a controller may only return to
    /// its own snapshots.
    #[error("guest {vmid}: snapshot {name} was not made through the local API")]
    RollbackNotAllowed {
        /// The guest.
        vmid: Vmid,
        /// The snapshot.
        name: SnapshotName,
    },
    /// The guest vanished meanwhile.
    #[error("guest {vmid} does not exist")]
    GuestGone {
        /// The guest.
        vmid: Vmid,
    },
    /// Proxmox or the executor failed; the detail is logged, the client sees `internal`.
    #[error("guest {vmid}: {action} failed: {reason}")]
    Failed {
        /// The guest.
        vmid: Vmid,
        /// `snapshot`, `rollback`, `backup`.
        action: &'static str,
        /// For the log.
        reason: String,
    },
    /// The backend failed.
    #[error("guest operation backend failed")]
    Port(#[from] PortError),
}

/// Mutations of one guest. In the agent these go through the guest's reconcile queue and the
/// journal, so a local-API snapshot never overlaps a reconcile step or an operator op on the
/// same guest.
///
/// Cancel-safety contract: the server may drop a returned future (client gone, wait bound
/// reached). Dropping must never cancel or half-do the op: once enqueued it runs to its end.
pub trait GuestOps: Send + Sync + 'static {
    /// Snapshot names of `vmid` (without PVE's `current` pseudo-entry).
    fn list_snapshots(&self, vmid: Vmid) -> PortFuture<'_, Result<Vec<SnapshotName>, PortError>>;
    /// Takes snapshot `name` and resolves when it is done (task `stopped`/`OK`).
    fn snapshot(&self, vmid: Vmid, name: SnapshotName) -> PortFuture<'_, Result<OpDone, OpError>>;
    /// Journals and enqueues a rollback to `name` and resolves once it is queued: the rollback
    /// stops the guest, and with it the controller that asked.
    fn rollback(
        &self,
        vmid: Vmid,
        name: SnapshotName,
    ) -> PortFuture<'_, Result<OpAccepted, OpError>>;
    /// Journals and enqueues a vzdump of `vmid` to its backup target; resolves once queued.
    fn backup(&self, vmid: Vmid) -> PortFuture<'_, Result<OpAccepted, OpError>>;
}

/// Read-only views of one guest (actual state, desired state, journal).
pub trait GuestView: Send + Sync + 'static {
    /// Whether `vmid` exists and is managed. `false` kills the caller's tokens.
    fn guest_exists(&self, vmid: Vmid) -> PortFuture<'_, Result<bool, PortError>>;
    /// Mounts available to `vmid`.
    fn storage(&self, vmid: Vmid) -> PortFuture<'_, Result<Vec<GuestMount>, PortError>>;
    /// `vmid`'s backup policy from desired state (`None`: no scheduled backups).
    fn backup_policy(&self, vmid: Vmid) -> PortFuture<'_, Result<Option<BackupPolicy>, PortError>>;
    /// `vmid`'s latest backup, from the journal.
    fn backup_status(&self, vmid: Vmid) -> PortFuture<'_, Result<BackupStatus, PortError>>;
    /// `vmid`'s latest restore test, from the journal.
    fn restore_test_status(
        &self,
        vmid: Vmid,
    ) -> PortFuture<'_, Result<RestoreTestStatus, PortError>>;
}

// ---------------------------------------------------------------------------------------------
// Audit

/// One audited call. Holds the token id, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When the call ended.
    pub at: SystemTime,
    /// The authenticated token, if any.
    pub token_id: Option<TokenId>,
    /// Its guest, if authenticated.
    pub vmid: Option<Vmid>,
    /// `"POST /snapshot"`, or `"other"` for a path that is not a route.
    pub route: String,
    /// HTTP status sent.
    pub status: u16,
    /// `"ok"`, `"accepted"` or the error code sent (`"unauthorized"`, …).
    pub outcome: &'static str,
    /// What happened, for the operator (never a secret, never raw client bytes).
    pub detail: Option<String>,
    /// The request tried to name a guest (a `vmid`-like parameter): a compromised controller
    /// probing for other guests. Alert on it.
    pub guest_id_attempt: bool,
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The call authenticated, passed the limits and reached a mutating route's handler
    /// (snapshot, rollback, backup), whatever the handler then answered. A sink may shed read
    /// records under pressure; it must never drop one of these.
    pub mutation: bool,
}

/// The calls of one peer that were refused as `unauthorized` or `rate_limited` in one interval,
/// after the first (which is recorded as an [`AuditEvent`] of its own). See `summary.rs`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    /// When the interval ended.
    pub at: SystemTime,
    /// When the first of these calls' peer was first refused in the interval.
    pub since: SystemTime,
    /// The peer; `None` with [`CallSummary::other_addresses`] for the shared tally of addresses
    /// past the cap, or for calls whose address was unknown.
    pub peer: Option<IpAddr>,
    /// The tally of every address past the per-interval cap.
    pub other_addresses: bool,
    /// Calls counted.
    pub calls: u64,
    /// Calls per outcome code, by code.
    pub by_outcome: Vec<(&'static str, u64)>,
    /// Calls per route label, by label.
    pub by_route: Vec<(String, u64)>,
}

/// The audit sink (the journal's hash-chained audit log in the agent).
///
/// `record` and `summary` are called on the request path: they must not block (hand the
/// entry to a channel and write it from a task) and must not fail the request.
pub trait Audit: Send + Sync + 'static {
    /// Records one call.
    fn record(&self, event: AuditEvent);
    /// Records the summary of a peer's refused calls in one interval.
    fn summary(&self, summary: CallSummary);
}

// ---------------------------------------------------------------------------------------------
// Clock

/// Time, injected so rate limits and `backup/due` are testable.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time (audit, tokens, backup schedules).
    fn now(&self) -> SystemTime;
    /// Monotonic time (rate limiting).
    fn monotonic(&self) -> Instant;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_round_trips_and_rejects_other_forms() {
        let id = TokenId([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        assert_eq!(id.to_string(), "deadbeef00010203");
        assert_eq!("deadbeef00010203".parse::<TokenId>().unwrap(), id);
        for bad in [
            "",
            "deadbeef0001020",
            "DEADBEEF00010203",
            "deadbeef0001020g",
            "deadbeef000102030",
        ] {
            assert!(bad.parse::<TokenId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_hash_debug_hides_the_digest() {
        assert_eq!(format!("{:?}", TokenHash([0xab; 32])), "TokenHash(..)");
    }
}
