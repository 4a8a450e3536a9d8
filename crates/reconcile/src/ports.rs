//! The narrow traits the engine needs from the outside world: [`Proxmox`] (a handful of guest
//! calls), [`Store`] (what it journals) and [`Clock`] (the wall clock), in this crate's own
//! types. The binary wires
//! `pve::Client` and `journal::Journal` to them (`felhom-agent`'s `pve_port.rs` and
//! `journal_port.rs`); the engine's tests use the stateful fakes in [`crate::fakes`] (feature
//! `fakes`), which inject the faults that matter: a failed task, a connection dropped after the
//! POST acted, a slow task.

use std::collections::BTreeMap;
use std::future::Future;

use journal::{GuestRecord, NewAuditEntry, NewDesiredState, NewOp, OpRecord, OpStatus, StepStatus};

use pve::{SnapshotName, Upid};

use crate::gate::DestroyAuthority;

/// The wall clock: what every unix timestamp the engine writes or compares comes from (journal
/// times, a signed op's expiry before its first step, a `desired.reset`'s window, the ids of the
/// ops it makes).
///
/// Elapsed time (backoff, the list-lag window, task waits) stays on Tokio's clock, which tests
/// pause and advance; wall time cannot come from there (a paused Tokio clock has no epoch), so
/// it has this port. [`crate::fakes::FakeClock`] follows Tokio's clock from a chosen instant,
/// so on paused time one `tokio::time::advance` moves both, and can also jump (an NTP step).
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> time::OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// A guest's power condition as PVE reports it (`status` of `/cluster/resources` or
/// `status/current`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `running`.
    Running,
    /// `stopped`.
    Stopped,
    /// Anything else PVE says (a transitional or unknown state): the planner waits.
    Other(String),
}

impl Condition {
    /// From PVE's word.
    pub fn from_pve(word: &str) -> Self {
        match word {
            "running" => Condition::Running,
            "stopped" => Condition::Stopped,
            other => Condition::Other(other.to_owned()),
        }
    }

    /// PVE's word.
    pub fn as_str(&self) -> &str {
        match self {
            Condition::Running => "running",
            Condition::Stopped => "stopped",
            Condition::Other(word) => word,
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A guest as the node lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestState {
    /// Guest id.
    pub vmid: u32,
    /// Running, stopped, or what else PVE says.
    pub status: Condition,
    /// Config lock, if any.
    pub lock: Option<String>,
    /// Hostname.
    pub name: Option<String>,
}

impl GuestState {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.status == Condition::Running
    }
}

/// A guest's config: its digest and the allowlisted keys, canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// PVE's digest of the raw config.
    pub digest: Option<String>,
    /// Allowlisted keys, canonical ([`crate::normalize::actual_config`]); the description
    /// without the agent's identity line.
    pub values: BTreeMap<String, String>,
    /// The identity line's token, if the config has one ([`crate::normalize::identity_of`]).
    pub identity: Option<String>,
}

/// What a mutating call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Done synchronously.
    Sync,
    /// A task to wait for.
    Task(Upid),
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// `OK` or `WARNINGS: N`.
    Ok(String),
    /// Any other exit status.
    Failed(String),
}

/// A task found in the node's task list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTask {
    /// The UPID.
    pub upid: Upid,
    /// Start time, epoch seconds.
    pub starttime: u64,
}

/// A Proxmox call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxmoxError {
    /// The guest does not exist: the call changed nothing.
    #[error("guest {vmid} does not exist")]
    NoSuchGuest {
        /// Guest id.
        vmid: u32,
    },
    /// A guest lock refused the call before it changed anything.
    #[error("guest {vmid} is locked ({lock})")]
    Locked {
        /// Guest id.
        vmid: u32,
        /// The lock.
        lock: String,
    },
    /// Any other failure. `never_ran` is true only when PVE provably did not act on it
    /// (connection refused, parameter or permission error).
    #[error("{call} failed")]
    Call {
        /// Which call.
        call: &'static str,
        /// Whether the request provably did not act.
        never_ran: bool,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProxmoxError {
    /// Whether the call provably changed nothing (so its step may be recorded as failed
    /// without looking for a task it might have started).
    pub fn never_ran(&self) -> bool {
        match self {
            ProxmoxError::NoSuchGuest { .. } | ProxmoxError::Locked { .. } => true,
            ProxmoxError::Call { never_ran, .. } => *never_ran,
        }
    }
}

/// The Proxmox calls the engine makes. Every method is one API request except `wait` (polls)
/// and `set_config` (may read once to keep `hwaddr`).
pub trait Proxmox: Send + Sync + 'static {
    /// Every guest of this node, from one `/cluster/resources?type=vm` read.
    fn guests(&self) -> impl Future<Output = Result<Vec<GuestState>, ProxmoxError>> + Send;
    /// One guest's authoritative state (`status/current`).
    fn guest_status(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<GuestState, ProxmoxError>> + Send;
    /// One guest's config.
    fn guest_config(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<GuestConfig, ProxmoxError>> + Send;
    /// Start.
    fn start(&self, vmid: u32) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Clean shutdown, hard stop after the timeout.
    fn shutdown(&self, vmid: u32) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Hard stop.
    fn stop(&self, vmid: u32) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Sets options (canonical values of allowlisted keys), conditional on `digest`; a `netN`
    /// keeps the guest's current `hwaddr`.
    fn set_config(
        &self,
        vmid: u32,
        changes: &BTreeMap<String, String>,
        digest: Option<&str>,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Destroys the guest (with `purge`). Only callable with a [`DestroyAuthority`]: an
    /// operator signature or the agent's own provenance proof.
    fn destroy(
        &self,
        authority: &DestroyAuthority,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Takes a snapshot named `name` with `description` (task `vzsnapshot`).
    fn snapshot(
        &self,
        vmid: u32,
        name: &SnapshotName,
        description: &str,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Deletes the snapshot `name` (task `vzdelsnapshot`).
    fn delete_snapshot(
        &self,
        vmid: u32,
        name: &SnapshotName,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Rolls back to the snapshot `name`, starting the guest afterwards when `start` (task
    /// `vzrollback`).
    fn rollback(
        &self,
        vmid: u32,
        name: &SnapshotName,
        start: bool,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Backs the guest up to `storage` with vzdump (task `vzdump`, its id the vmid).
    fn vzdump(
        &self,
        vmid: u32,
        storage: &str,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// Removes the guest's backups on `storage` that `keep` does not cover (task
    /// `prunebackups`, its id `<vmid>@<storage>`).
    fn prune(
        &self,
        vmid: u32,
        storage: &str,
        keep: &pve::Retention,
    ) -> impl Future<Output = Result<Posted, ProxmoxError>> + Send;
    /// The guest's snapshot names (without `current`).
    fn snapshots(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<Vec<String>, ProxmoxError>> + Send;
    /// Waits up to `limit` for a task to stop.
    fn wait(
        &self,
        upid: &Upid,
        limit: std::time::Duration,
    ) -> impl Future<Output = Result<TaskEnd, ProxmoxError>> + Send;
    /// Tasks of `task_type` on `vmid` started by this agent's token at or after `since`
    /// (epoch seconds), running or finished: how recovery finds a POST whose UPID it never
    /// recorded.
    fn find_tasks(
        &self,
        vmid: u32,
        task_type: &'static str,
        since: i64,
    ) -> impl Future<Output = Result<Vec<FoundTask>, ProxmoxError>> + Send;
}

/// A [`Store`] call failed; whatever it was to record is not recorded.
#[derive(Debug, thiserror::Error)]
#[error("journal: {what} failed")]
pub struct StoreError {
    /// What was being recorded or read, e.g. `recording a step's intent`.
    pub what: &'static str,
    /// The backend's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// Wraps a backend error.
    pub fn new(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError {
            what,
            source: Box::new(source),
        }
    }
}

/// What the engine journals. Each method is one transaction: a failure records nothing. The
/// implementation synchronizes itself (`&self`), so it can hand the work to whatever owns the
/// database. The binary adapts `journal::Journal`; [`crate::fakes::MemoryStore`] (feature
/// `fakes`) is the in-memory one the engine's tests use. The records are the journal's plain
/// data types (no I/O in them): the journal owns the op vocabulary, so there is one op-state
/// enum, not one per crate.
pub trait Store: Send + Sync + 'static {
    /// The last accepted desired state.
    fn latest_desired(&self) -> Result<Option<journal::DesiredStateRecord>, StoreError>;
    /// Accepts a desired state (it makes no guest managed).
    fn accept_desired(
        &self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Accepts a desired state that is not newer if a `desired.reset` is armed at `now`,
    /// using it up; `None` (nothing written) when none is.
    fn accept_desired_after_reset(
        &self,
        state: &NewDesiredState,
        now: i64,
        audit: &NewAuditEntry,
    ) -> Result<Option<String>, StoreError>;
    /// Arms a verified `desired.reset` until `until`.
    fn arm_desired_reset(
        &self,
        op_id: &str,
        signer: &str,
        at: i64,
        until: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Makes a guest managed by a signed adoption with its identity (`false`: managed already).
    fn adopt_guest(
        &self,
        vmid: u32,
        op_id: &str,
        identity: &str,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;
    /// Records the identity written into a managed guest that had none.
    fn set_guest_identity(
        &self,
        vmid: u32,
        identity: &str,
        since: i64,
        at: i64,
    ) -> Result<bool, StoreError>;
    /// Appends an audit entry.
    fn audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;
    /// Provenance records.
    fn guests(&self) -> Result<Vec<GuestRecord>, StoreError>;
    /// A guest was destroyed, vanished or replaced: no longer managed, its tokens revoked, its
    /// ops waiting for a signature abandoned.
    fn release_guest(&self, vmid: u32, at: i64, audit: &NewAuditEntry) -> Result<(), StoreError>;
    /// Records an op (false if the id exists).
    fn insert_op(&self, op: &NewOp, audit: &NewAuditEntry) -> Result<bool, StoreError>;
    /// Records an op unless the guest has an open op with a step of `exclusive_step`
    /// (`Ok(Err(open op id))`, nothing written); check and insert are one transaction.
    fn insert_op_unless_open(
        &self,
        op: &NewOp,
        exclusive_step: &str,
        audit: &NewAuditEntry,
    ) -> Result<Result<(), String>, StoreError>;
    /// Intent of a step, before its POST.
    fn step_intent(
        &self,
        op_id: &str,
        idx: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// The POST returned (UPID, or none for a synchronous call).
    fn step_posted(
        &self,
        op_id: &str,
        idx: u32,
        upid: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError>;
    /// A step ended.
    fn step_finished(
        &self,
        op_id: &str,
        idx: u32,
        state: StepStatus,
        exitstatus: Option<&str>,
        at: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError>;
    /// An op ended.
    fn finish_op(
        &self,
        op_id: &str,
        state: OpStatus,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Ops to resume after a restart.
    fn unfinished_ops(&self) -> Result<Vec<OpRecord>, StoreError>;
    /// Whether a step of any op has recorded `upid` as its task.
    fn upid_recorded(&self, upid: &str) -> Result<bool, StoreError>;
    /// Ops waiting for a signature.
    fn pending_ops(&self) -> Result<Vec<OpRecord>, StoreError>;
    /// Records a signed op's state and outcome (JSON).
    fn set_signed_op_state(
        &self,
        op_id: &str,
        state: journal::OpState,
        outcome: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError>;
}
