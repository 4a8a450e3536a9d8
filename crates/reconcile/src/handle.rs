//! The engine handle: how every part of the agent other than the reconcile loop asks for a guest
//! mutation (DESIGN.md §3 invariant 9). Today the local API and `selftest task` submit through
//! it; the backup scheduler, restore tests and provisioning will too.
//!
//! [`EngineHandle::submit`] takes a place in the guest's queue (or answers [`SubmitError::Busy`]
//! at once, journaling nothing), records the op in the journal as `planned` (a backup only if
//! no other backup of the guest is open, checked in the same transaction), and runs it in a task
//! of its own through the same [`Executor`] and per-guest queue as reconcile ops and signed jobs:
//! intent before the POST, the UPID as soon as it is known, one recovery path after a crash. The
//! caller gets an [`OpTicket`]; dropping it never cancels the op.
//!
//! In its turn, before the first step, the op checks what would make it fail without acting:
//! the guest must exist and carry no lock, and a snapshot name must be free. Such a failure is
//! journaled as the op's failure and returned as a typed [`OpFailure`], so the local API can
//! answer 404, 409 or 503 without reading error strings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use journal::OpKind;
use pve::SnapshotName;
use tokio::sync::oneshot;
use tracing::warn;

use crate::exec::{ExecError, Executor, OpSpec};
use crate::plan::Step;
use crate::ports::{Clock, Proxmox, ProxmoxError, Store, StoreError};
use crate::queue::{Busy, GuestQueues, DEFAULT_QUEUE_DEPTH};

/// A guest mutation asked for outside the reconcile loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOp {
    /// Take a snapshot (its name must be free).
    Snapshot {
        /// The name.
        name: SnapshotName,
        /// Its description in PVE (who asked).
        description: String,
    },
    /// Delete a snapshot.
    DeleteSnapshot {
        /// The name.
        name: SnapshotName,
    },
    /// Roll back to a snapshot (a running guest is started again afterwards).
    Rollback {
        /// The name.
        name: SnapshotName,
    },
    /// Back up with vzdump, then prune that guest's backups on the target to `keep` (none
    /// when `None`); at most one open backup per guest.
    Backup {
        /// The PVE storage id of the target.
        storage: String,
        /// The agent's retention for this guest on that target.
        keep: Option<pve::Retention>,
    },
}

impl GuestOp {
    fn word(&self) -> &'static str {
        match self {
            GuestOp::Snapshot { .. } => "snapshot",
            GuestOp::DeleteSnapshot { .. } => "delete_snapshot",
            GuestOp::Rollback { .. } => "rollback",
            GuestOp::Backup { .. } => "backup",
        }
    }

    fn steps(&self) -> Vec<Step> {
        match self {
            GuestOp::Snapshot { name, description } => vec![Step::Snapshot {
                name: name.clone(),
                description: description.clone(),
            }],
            GuestOp::DeleteSnapshot { name } => vec![Step::DeleteSnapshot { name: name.clone() }],
            GuestOp::Rollback { name } => vec![Step::Rollback { name: name.clone() }],
            GuestOp::Backup { storage, keep } => {
                let mut steps = vec![Step::Vzdump {
                    storage: storage.clone(),
                }];
                // An empty retention would keep everything: nothing to prune.
                if let Some(keep) = keep.filter(|k| !k.is_empty()) {
                    steps.push(Step::Prune {
                        storage: storage.clone(),
                        keep,
                    });
                }
                steps
            }
        }
    }
}

/// Who submits: the op's kind in the journal and the prefix of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A guest's controller through the local API (`la-…`).
    LocalApi,
    /// `felhom-agent selftest task` (`st-…`).
    Selftest,
}

impl Origin {
    fn kind(self) -> OpKind {
        match self {
            Origin::LocalApi => OpKind::LocalApi,
            Origin::Selftest => OpKind::Selftest,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Origin::LocalApi => "la",
            Origin::Selftest => "st",
        }
    }
}

/// Why a submission was not accepted (nothing runs).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The guest's queue is full; nothing was journaled.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// An op of the same kind is still open on the guest (a second backup).
    #[error("guest {vmid} already has {what}")]
    Conflict {
        /// The guest.
        vmid: u32,
        /// What is open, e.g. `backup la-backup-101-… (running)`.
        what: String,
    },
    /// The journal refused the op; nothing runs.
    #[error("journaling the op failed")]
    Journal(#[source] StoreError),
}

/// How an accepted op failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpFailure {
    /// The guest does not exist (any more).
    #[error("guest {vmid} does not exist")]
    GuestGone {
        /// The guest.
        vmid: u32,
    },
    /// The guest is locked (a backup, a snapshot, a migration); retry later.
    #[error("guest {vmid} is locked ({lock})")]
    Locked {
        /// The guest.
        vmid: u32,
        /// PVE's lock.
        lock: String,
    },
    /// What the op would create exists (a snapshot of that name).
    #[error("guest {vmid} already has {what}")]
    Conflict {
        /// The guest.
        vmid: u32,
        /// What exists.
        what: String,
    },
    /// It ran and failed (a task ended with an error, Proxmox or the journal failed).
    #[error("{action} on guest {vmid} failed: {reason}")]
    Failed {
        /// The guest.
        vmid: u32,
        /// `snapshot`, `rollback`, `backup`, …
        action: &'static str,
        /// Why, as one line.
        reason: String,
    },
}

/// An accepted op: its id at once, its outcome when it ends.
#[derive(Debug)]
pub struct OpTicket {
    /// The op's id in the journal (what the local API answers as `op_id`).
    pub op_id: String,
    done: oneshot::Receiver<Result<(), OpFailure>>,
    vmid: u32,
    action: &'static str,
}

impl OpTicket {
    /// Waits for the op to end. Dropping the ticket instead never cancels the op.
    pub async fn finished(self) -> Result<(), OpFailure> {
        self.done.await.unwrap_or_else(|_| {
            Err(OpFailure::Failed {
                vmid: self.vmid,
                action: self.action,
                reason: "the op's task ended without a result".into(),
            })
        })
    }
}

/// Submits guest ops to the engine's executor. Cheap to clone.
pub struct EngineHandle<P, S> {
    exec: Executor<P, S>,
    queues: GuestQueues,
    seq: Arc<AtomicU64>,
    wait_limit: Option<Duration>,
}

impl<P, S> std::fmt::Debug for EngineHandle<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("queues", &self.queues)
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

impl<P, S> Clone for EngineHandle<P, S> {
    fn clone(&self) -> Self {
        EngineHandle {
            exec: self.exec.clone(),
            queues: self.queues.clone(),
            seq: self.seq.clone(),
            wait_limit: self.wait_limit,
        }
    }
}

impl<P: Proxmox, S: Store> EngineHandle<P, S> {
    pub(crate) fn new(exec: Executor<P, S>, queues: GuestQueues) -> Self {
        EngineHandle {
            exec,
            queues,
            seq: Arc::new(AtomicU64::new(0)),
            wait_limit: None,
        }
    }

    /// A handle without an engine, for one-shot commands (`selftest task`): the same executor
    /// and journal, queues of its own, no recovery. An op it leaves unfinished (the command was
    /// killed) is settled by the daemon's recovery at its next start, like any other.
    pub fn standalone(px: Arc<P>, store: Arc<S>) -> Self {
        EngineHandle::new(
            Executor::new(px, store),
            GuestQueues::new(1, DEFAULT_QUEUE_DEPTH),
        )
    }

    /// Uses this wall clock (op ids, journal times) instead of the system's; for a
    /// [`EngineHandle::standalone`] handle (one from `Engine::handle` has the engine's clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.exec.clock = clock;
        self
    }

    /// Waits at most `limit` for each task of the ops it submits (instead of each step kind's
    /// own limit).
    pub fn with_wait_limit(mut self, limit: Duration) -> Self {
        self.wait_limit = Some(limit);
        self
    }

    fn op_id(&self, origin: Origin, op: &GuestOp, vmid: u32) -> String {
        // Nanoseconds on the injected clock, and a sequence number for two in the same one:
        // unique across restarts as long as the clock does not step back.
        let nanos = self.exec.clock.now().unix_timestamp_nanos();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{vmid}-{nanos}-{seq}", origin.prefix(), op.word())
    }

    /// Queues `op` on guest `vmid` (see the module docs). Must be called inside a Tokio
    /// runtime: the op runs in a task of its own.
    pub fn submit(&self, origin: Origin, vmid: u32, op: GuestOp) -> Result<OpTicket, SubmitError> {
        let place = self.queues.reserve(vmid)?;
        let spec = OpSpec {
            op_id: self.op_id(origin, &op, vmid),
            kind: origin.kind(),
            vmid,
            generation: None,
            steps: op.steps(),
            authority: None,
            wait_limit: self.wait_limit,
        };
        let (new, entry) = (self.exec.new_op(&spec), self.exec.planned_audit(&spec));
        match &op {
            GuestOp::Backup { .. } => {
                let recorded = self
                    .exec
                    .with_store(|s| s.insert_op_unless_open(&new, "vzdump", &entry))
                    .map_err(SubmitError::Journal)?;
                if let Err(open) = recorded {
                    return Err(SubmitError::Conflict {
                        vmid,
                        what: format!("backup {open} (open)"),
                    });
                }
            }
            _ => {
                let inserted = self
                    .exec
                    .with_store(|s| s.insert_op(&new, &entry))
                    .map_err(SubmitError::Journal)?;
                if !inserted {
                    return Err(SubmitError::Conflict {
                        vmid,
                        what: format!("op {} (already journaled)", spec.op_id),
                    });
                }
            }
        }
        let (tx, done) = oneshot::channel();
        let exec = self.exec.clone();
        let action = op.word();
        let op_id = spec.op_id.clone();
        tokio::spawn(async move {
            let result = place.run(run(&exec, &spec, &op)).await;
            // The submitter may have gone away; the op ran to its end regardless.
            let _ = tx.send(result);
        });
        Ok(OpTicket {
            op_id,
            done,
            vmid,
            action,
        })
    }
}

/// One submitted op in its turn: the checks that need no mutation, then the executor.
async fn run<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    spec: &OpSpec,
    op: &GuestOp,
) -> Result<(), OpFailure> {
    let vmid = spec.vmid;
    let action = op.word();
    if let Err(failure) = preflight(exec, vmid, op).await {
        exec.fail_unstarted(spec, &failure.to_string());
        return Err(failure);
    }
    exec.run_recorded(spec).await.map_err(|e| match e {
        ExecError::Proxmox {
            source: ProxmoxError::Locked { lock, .. },
            ..
        } => OpFailure::Locked { vmid, lock },
        ExecError::Proxmox {
            source: ProxmoxError::NoSuchGuest { .. },
            ..
        } => OpFailure::GuestGone { vmid },
        other => OpFailure::Failed {
            vmid,
            action,
            reason: crate::error_chain(&other),
        },
    })
}

async fn preflight<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    vmid: u32,
    op: &GuestOp,
) -> Result<(), OpFailure> {
    let failed = |e: ProxmoxError| OpFailure::Failed {
        vmid,
        action: op.word(),
        reason: crate::error_chain(&e),
    };
    let status = match exec.px.guest_status(vmid).await {
        Ok(s) => s,
        Err(ProxmoxError::NoSuchGuest { .. }) => return Err(OpFailure::GuestGone { vmid }),
        Err(e) => return Err(failed(e)),
    };
    if let Some(lock) = status.lock {
        return Err(OpFailure::Locked { vmid, lock });
    }
    if let GuestOp::Snapshot { name, .. } = op {
        let names = exec.px.snapshots(vmid).await.map_err(failed)?;
        if names.iter().any(|n| n == name.as_str()) {
            warn!(vmid, snapshot = %name, "snapshot exists");
            return Err(OpFailure::Conflict {
                vmid,
                what: format!("snapshot {name}"),
            });
        }
    }
    Ok(())
}
