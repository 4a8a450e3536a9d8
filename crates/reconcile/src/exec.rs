//! Executors: run one journaled op (a sequence of steps on one guest), journal before act.
//!
//! For each step: commit the intent, POST, commit the UPID as soon as it is known, wait for
//! the task, commit the end. A POST that failed ambiguously (it may have reached PVE) is never
//! re-sent: the task list is searched for it exactly as crash recovery does
//! ([`crate::recover::resolve_intent`]). The op is recorded `succeeded` only when every step is
//! done and OK; the first failure fails the op and skips the rest.

use std::sync::Arc;

use journal::{NewAuditEntry, NewOp, NewStep, OpKind, OpStatus, StepStatus};
use pve::Upid;
use tracing::{info, warn};

use crate::crash;
use crate::gate::DestroyAuthority;
use crate::plan::Step;
use crate::ports::{Clock, Posted, Proxmox, ProxmoxError, Store, StoreError, SystemClock, TaskEnd};

/// Prefixes of the op ids the agent makes itself: reconcile (`rc-`), pending signatures
/// (`pending-`), the engine handle's origins (`la-` local API, `st-` selftest). A signed op's
/// id (chosen by an operator) in this namespace is refused, so the two never meet.
pub const INTERNAL_OP_ID_PREFIXES: &[&str] = &["rc-", "pending-", "la-", "st-"];

/// Whether `op_id` is in the agent's own namespace ([`INTERNAL_OP_ID_PREFIXES`]).
pub fn is_internal_op_id(op_id: &str) -> bool {
    INTERNAL_OP_ID_PREFIXES.iter().any(|p| op_id.starts_with(p))
}

/// Why an op did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The journal refused a write; the step it guarded did not run.
    #[error("journal write failed for op {op_id}")]
    Journal {
        /// The op.
        op_id: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// An op with this id is in the journal already: refused, never continued (its step rows
    /// are another op's).
    #[error("op id {op_id} is already in the journal; refused")]
    OpIdExists {
        /// The op.
        op_id: String,
    },
    /// A Proxmox call failed.
    #[error("step {step} of op {op_id} on guest {vmid} failed")]
    Proxmox {
        /// The op.
        op_id: String,
        /// The guest.
        vmid: u32,
        /// The step.
        step: &'static str,
        /// The cause.
        #[source]
        source: ProxmoxError,
    },
    /// A task ended with an error.
    #[error("step {step} of op {op_id} on guest {vmid}: task ended with {exitstatus}")]
    TaskFailed {
        /// The op.
        op_id: String,
        /// The guest.
        vmid: u32,
        /// The step.
        step: &'static str,
        /// PVE's exit status.
        exitstatus: String,
    },
    /// The guest on this vmid is not the one the agent manages (its identity line is missing or
    /// another's), or it is gone: released, and nothing of the op ran.
    #[error("guest {vmid} is not the guest this agent manages ({why}); released, nothing done")]
    IdentityChanged {
        /// The guest.
        vmid: u32,
        /// `identity-changed` or `vanished`.
        why: &'static str,
    },
    /// A destroy step without an authority for this guest (a bug: refused before any POST).
    #[error("destroy of guest {vmid} without authority")]
    Unauthorized {
        /// The guest.
        vmid: u32,
    },
}

/// An op to run.
#[derive(Debug, Clone)]
pub struct OpSpec {
    /// Unique id (a signed op keeps its own id).
    pub op_id: String,
    /// Reconcile or signed.
    pub kind: OpKind,
    /// The guest.
    pub vmid: u32,
    /// Desired generation served, if any.
    pub generation: Option<u64>,
    /// Steps.
    pub steps: Vec<Step>,
    /// Required when `steps` holds a destroy.
    pub authority: Option<DestroyAuthority>,
    /// How long to wait for each step's task; `None`: the step kind's own limit.
    pub wait_limit: Option<std::time::Duration>,
}

/// Runs ops against Proxmox, journaling every transition.
pub struct Executor<P, S> {
    pub(crate) px: Arc<P>,
    pub(crate) store: Arc<S>,
    // A trait object, not a third type parameter: it is read a few times per op, and every
    // type that carries an executor (engine, handle) would otherwise carry it too.
    pub(crate) clock: Arc<dyn Clock>,
}

impl<P, S> Clone for Executor<P, S> {
    fn clone(&self) -> Self {
        Executor {
            px: self.px.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<P, S> Executor<P, S> {
    /// Unix seconds now, on the injected clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// An entry the agent writes on its own account, stamped now; the rest is named with the
    /// journal's builder.
    pub(crate) fn agent_entry(&self, kind: &str, outcome: &str) -> NewAuditEntry {
        NewAuditEntry::new(self.now(), kind, outcome).actor("agent")
    }
}

impl<P: Proxmox, S: Store> Executor<P, S> {
    /// An executor over these ports, on the system clock.
    pub fn new(px: Arc<P>, store: Arc<S>) -> Self {
        Executor::with_clock(px, store, Arc::new(SystemClock))
    }

    /// An executor over these ports and this wall clock.
    pub fn with_clock(px: Arc<P>, store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Executor { px, store, clock }
    }

    /// Runs a journal write whose failure cannot change an outcome already decided (the op
    /// ran; nothing is undone) but must be seen: it is logged at error level with `what`.
    pub(crate) fn record_or_log<T, E: std::error::Error + 'static>(
        &self,
        op_id: &str,
        what: &'static str,
        f: impl FnOnce(&S) -> Result<T, E>,
    ) {
        if let Err(e) = self.with_store(f) {
            tracing::error!(op_id, what, error = %crate::error_chain(&e), "journal write failed");
        }
    }

    pub(crate) fn with_store<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.store)
    }

    /// Records the op and runs its steps in order; `Ok` only if every step ended OK.
    pub async fn run(&self, spec: &OpSpec) -> Result<(), ExecError> {
        self.record(spec)?;
        self.run_recorded(spec).await
    }

    /// The journal form of `spec` (state `planned`, its steps `planned`).
    pub(crate) fn new_op(&self, spec: &OpSpec) -> NewOp {
        NewOp {
            op_id: spec.op_id.clone(),
            kind: spec.kind,
            vmid: spec.vmid,
            generation: spec.generation,
            state: OpStatus::Planned,
            steps: spec
                .steps
                .iter()
                .map(|s| NewStep {
                    kind: s.kind().to_owned(),
                    params: s.params_json(),
                })
                .collect(),
            at: self.now(),
        }
    }

    /// The audit entry of a newly recorded op.
    pub(crate) fn planned_audit(&self, spec: &OpSpec) -> NewAuditEntry {
        let detail = spec
            .steps
            .iter()
            .map(Step::describe)
            .collect::<Vec<_>>()
            .join(" -> ");
        self.agent_entry(spec.kind.as_str(), "planned")
            .action("op")
            .vmid(spec.vmid)
            .op_id(&spec.op_id)
            .detail(detail)
    }

    /// Records the op as planned (before anything runs).
    pub(crate) fn record(&self, spec: &OpSpec) -> Result<(), ExecError> {
        let (new, entry) = (self.new_op(spec), self.planned_audit(spec));
        let inserted = self
            .with_store(|s| s.insert_op(&new, &entry))
            .map_err(|source| ExecError::Journal {
                op_id: spec.op_id.clone(),
                source,
            })?;
        if !inserted {
            warn!(op_id = %spec.op_id, vmid = spec.vmid, "op id already journaled; refused");
            return Err(ExecError::OpIdExists {
                op_id: spec.op_id.clone(),
            });
        }
        Ok(())
    }

    /// Runs the steps of an op already recorded as planned, journaling every transition, and
    /// finishes it: `succeeded` only if every step ended OK, `failed` at the first failure.
    pub(crate) async fn run_recorded(&self, spec: &OpSpec) -> Result<(), ExecError> {
        let journal_err = |source| ExecError::Journal {
            op_id: spec.op_id.clone(),
            source,
        };
        let kind_word = spec.kind.as_str();
        let identity = match self.check_identity(spec).await {
            Ok(identity) => identity,
            Err(err) => {
                self.fail_unstarted(spec, &crate::error_chain(&err));
                return Err(err);
            }
        };
        for (idx, step) in spec.steps.iter().enumerate() {
            let idx = idx as u32;
            if let Err(err) = self.run_step(spec, idx, step, identity.as_deref()).await {
                self.fail(spec, step.kind(), &err);
                return Err(err);
            }
        }
        self.with_store(|s| {
            s.finish_op(
                &spec.op_id,
                OpStatus::Succeeded,
                None,
                self.now(),
                &self
                    .agent_entry(kind_word, "succeeded")
                    .action("op")
                    .vmid(spec.vmid)
                    .op_id(&spec.op_id),
            )
        })
        .map_err(journal_err)?;
        info!(op_id = %spec.op_id, vmid = spec.vmid, "op succeeded");
        Ok(())
    }

    /// Before an op on a managed guest acts: is the guest on the vmid still the one whose
    /// identity the agent recorded (DESIGN.md §4.6)? One config read. A guest that lost its
    /// identity line or carries another's, or is gone, is released at once (provenance,
    /// tokens, pending ops, in one journal transaction) and the op does not run. Ops that write
    /// the identity, and guests without a recorded one (adopted by an earlier version, until
    /// the engine writes theirs), are not checked. Returns the identity it verified.
    async fn check_identity(&self, spec: &OpSpec) -> Result<Option<String>, ExecError> {
        if spec
            .steps
            .iter()
            .any(|s| matches!(s, Step::MarkIdentity { .. }))
        {
            return Ok(None);
        }
        let vmid = spec.vmid;
        let record = self
            .with_store(|s| s.guests())
            .map_err(|source| ExecError::Journal {
                op_id: spec.op_id.clone(),
                source,
            })?
            .into_iter()
            .find(|r| r.vmid == vmid);
        let Some(expected) = record.filter(|r| r.managed).and_then(|r| r.identity) else {
            return Ok(None);
        };
        let why = match self.px.guest_config(vmid).await {
            Ok(cfg) if cfg.identity.as_deref() == Some(expected.as_str()) => {
                return Ok(Some(expected))
            }
            Ok(_) => "identity-changed",
            Err(ProxmoxError::NoSuchGuest { .. }) => "vanished",
            Err(source) => {
                return Err(ExecError::Proxmox {
                    op_id: spec.op_id.clone(),
                    vmid,
                    step: "identity check",
                    source,
                })
            }
        };
        self.release(vmid, why, Some(&spec.op_id))
            .map_err(|source| ExecError::Journal {
                op_id: spec.op_id.clone(),
                source,
            })?;
        Err(ExecError::IdentityChanged { vmid, why })
    }

    /// Releases a managed guest that vanished or was replaced (`why`), audited.
    pub(crate) fn release(
        &self,
        vmid: u32,
        why: &str,
        op_id: Option<&str>,
    ) -> Result<(), StoreError> {
        warn!(vmid, why, "managed guest released");
        let mut entry = self.agent_entry("guest", "released")
            .action("release")
            .vmid(vmid)
            .reason(why)
            .detail(match why {
                "vanished" => format!("guest {vmid} is no longer on the node"),
                _ => format!(
                    "guest {vmid} does not carry the identity the agent recorded: another guest on a reused vmid starts unmanaged"
                ),
            });
        if let Some(op_id) = op_id {
            entry = entry.op_id(op_id);
        }
        self.with_store(|s| s.release_guest(vmid, self.now(), &entry))
    }

    /// Records an op that failed its checks before any step started (nothing was posted).
    pub(crate) fn fail_unstarted(&self, spec: &OpSpec, reason: &str) {
        warn!(op_id = %spec.op_id, vmid = spec.vmid, reason, "op not started");
        self.record_or_log(&spec.op_id, "op failure", |s| {
            s.finish_op(
                &spec.op_id,
                OpStatus::Failed,
                Some(reason),
                self.now(),
                &self
                    .agent_entry(spec.kind.as_str(), "failed")
                    .action("op")
                    .vmid(spec.vmid)
                    .op_id(&spec.op_id)
                    .reason("precondition")
                    .detail(reason.to_owned()),
            )
        });
    }

    /// Records an op as failed at `step` with `err`. If the journal itself fails here the op
    /// stays unfinished and recovery settles it at the next start; the write error is logged.
    pub(crate) fn fail(&self, spec: &OpSpec, step: &str, err: &ExecError) {
        let message = crate::error_chain(err);
        warn!(op_id = %spec.op_id, vmid = spec.vmid, step, error = %message, "op failed");
        self.record_or_log(&spec.op_id, "op failure", |s| {
            s.finish_op(
                &spec.op_id,
                OpStatus::Failed,
                Some(&message),
                self.now(),
                &self
                    .agent_entry(spec.kind.as_str(), "failed")
                    .action("op")
                    .vmid(spec.vmid)
                    .op_id(&spec.op_id)
                    .reason(step)
                    .detail(message.clone()),
            )
        });
    }

    /// A read a step needs before its intent failed: the step is recorded failed (it never
    /// ran) and the error returned.
    fn read_before_intent_failed(
        &self,
        spec: &OpSpec,
        idx: u32,
        step: &Step,
        source: ProxmoxError,
    ) -> ExecError {
        let op_id = spec.op_id.as_str();
        self.record_or_log(op_id, "step never ran", |s| {
            s.step_finished(
                op_id,
                idx,
                StepStatus::Failed,
                Some(&crate::error_chain(&source)),
                self.now(),
                None,
            )
        });
        ExecError::Proxmox {
            op_id: op_id.to_owned(),
            vmid: spec.vmid,
            step: step.kind(),
            source,
        }
    }

    /// Runs one step; `identity` is the guest's identity [`Executor::check_identity`] verified
    /// for this op, kept in any description the step writes.
    async fn run_step(
        &self,
        spec: &OpSpec,
        idx: u32,
        step: &Step,
        identity: Option<&str>,
    ) -> Result<(), ExecError> {
        let (op_id, vmid, kind_word) = (spec.op_id.as_str(), spec.vmid, spec.kind.as_str());
        let journal_err = |source| ExecError::Journal {
            op_id: op_id.to_owned(),
            source,
        };
        if matches!(step, Step::Destroy) && spec.authority.as_ref().is_none_or(|a| a.vmid() != vmid)
        {
            return Err(ExecError::Unauthorized { vmid });
        }
        let basis = match step {
            Step::Destroy => spec.authority.as_ref().map(|a| a.basis().to_owned()),
            other => Some(other.describe()),
        };
        // A rollback kills a running guest; it is started again only if it ran before. Read in
        // the guest's turn, before the intent (a read changes nothing).
        let start_after = match step {
            Step::Rollback { .. } => match self.px.guest_status(vmid).await {
                Ok(status) => status.is_running(),
                Err(source) => return Err(self.read_before_intent_failed(spec, idx, step, source)),
            },
            _ => false,
        };
        // What a config PUT writes: a description keeps the guest's identity line; marking
        // the identity keeps the description's text, conditional on the config just read.
        let config_put = match step {
            Step::SetConfig { changes, digest } => {
                let mut changes = changes.clone();
                if let (Some(text), Some(identity)) = (changes.get("description"), identity) {
                    let text = crate::normalize::with_identity(text, identity);
                    changes.insert("description".into(), text);
                }
                Some((changes, digest.clone()))
            }
            Step::MarkIdentity { identity } => match self.px.guest_config(vmid).await {
                Ok(cfg) => {
                    let text = cfg.values.get("description").cloned().unwrap_or_default();
                    let mut changes = std::collections::BTreeMap::new();
                    changes.insert(
                        "description".to_owned(),
                        crate::normalize::with_identity(&text, identity),
                    );
                    Some((changes, cfg.digest))
                }
                Err(source) => return Err(self.read_before_intent_failed(spec, idx, step, source)),
            },
            _ => None,
        };
        self.with_store(|s| {
            s.step_intent(
                op_id,
                idx,
                self.now(),
                &self
                    .agent_entry(kind_word, "started")
                    .action(step.kind())
                    .vmid(vmid)
                    .op_id(op_id)
                    .detail(basis),
            )
        })
        .map_err(journal_err)?;
        crash::point("after-intent");
        let intent_at = self.now();
        let posted = match step {
            Step::Start => self.px.start(vmid).await,
            Step::Shutdown => self.px.shutdown(vmid).await,
            Step::Stop => self.px.stop(vmid).await,
            Step::SetConfig { .. } | Step::MarkIdentity { .. } => match &config_put {
                Some((changes, digest)) => {
                    self.px.set_config(vmid, changes, digest.as_deref()).await
                }
                None => return Err(ExecError::Unauthorized { vmid }),
            },
            Step::Destroy => match &spec.authority {
                Some(authority) => self.px.destroy(authority).await,
                None => return Err(ExecError::Unauthorized { vmid }),
            },
            Step::Snapshot { name, description } => self.px.snapshot(vmid, name, description).await,
            Step::DeleteSnapshot { name } => self.px.delete_snapshot(vmid, name).await,
            Step::Rollback { name } => self.px.rollback(vmid, name, start_after).await,
            Step::Vzdump { storage } => self.px.vzdump(vmid, storage).await,
            Step::Prune { storage, keep } => self.px.prune(vmid, storage, keep).await,
        };
        // A POST that provably never ran, or whose task the search did not find, fails the
        // step; an ambiguous one that may have reached PVE is never sent again.
        let posted = match posted {
            Err(err) if !err.never_ran() => {
                warn!(op_id, vmid, step = step.kind(), error = %crate::error_chain(&err), "ambiguous post, searching the task list");
                match self.search_task(vmid, step, intent_at).await {
                    Some(upid) => {
                        info!(op_id, vmid, %upid, "found the task of the ambiguous post");
                        Ok(Posted::Task(upid))
                    }
                    None => Err(err),
                }
            }
            other => other,
        };
        let posted = match posted {
            Ok(p) => p,
            Err(err) => {
                let text = crate::error_chain(&err);
                self.with_store(|s| {
                    s.step_finished(
                        op_id,
                        idx,
                        StepStatus::Failed,
                        Some(&text),
                        self.now(),
                        None,
                    )
                })
                .map_err(journal_err)?;
                return Err(ExecError::Proxmox {
                    op_id: op_id.to_owned(),
                    vmid,
                    step: step.kind(),
                    source: err,
                });
            }
        };
        crash::point("after-post");
        let upid = match &posted {
            Posted::Sync => None,
            Posted::Task(u) => Some(u),
        };
        self.with_store(|s| s.step_posted(op_id, idx, upid.map(Upid::as_str), self.now()))
            .map_err(journal_err)?;
        let end = match upid {
            None => TaskEnd::Ok("OK".to_owned()),
            Some(upid) => {
                crash::point("after-upid");
                self.px
                    .wait(
                        upid,
                        spec.wait_limit
                            .unwrap_or_else(|| Step::wait_limit_of(step.kind())),
                    )
                    .await
                    .map_err(|source| ExecError::Proxmox {
                        op_id: op_id.to_owned(),
                        vmid,
                        step: step.kind(),
                        source,
                    })?
            }
        };
        self.finish_step(spec.kind, op_id, vmid, idx, step.kind(), &end)?;
        crash::point("after-step");
        match end {
            TaskEnd::Ok(_) => Ok(()),
            TaskEnd::Failed(exitstatus) => Err(ExecError::TaskFailed {
                op_id: op_id.to_owned(),
                vmid,
                step: step.kind(),
                exitstatus,
            }),
        }
    }

    /// Whether another step already recorded `upid` as its task. A journal that cannot say is
    /// taken as "no" (the search then behaves as before the check existed), with a warning.
    pub(crate) fn upid_owned(&self, upid: &Upid) -> bool {
        match self.with_store(|s| s.upid_recorded(upid.as_str())) {
            Ok(owned) => owned,
            Err(e) => {
                warn!(%upid, error = %crate::error_chain(&e), "cannot tell whether a task is recorded");
                false
            }
        }
    }

    /// After an ambiguous POST: the task it may have started, searched for a few times over
    /// about two seconds (a task list read can fail right after a dropped connection, and a
    /// node may list a task a moment after forking it). `None` when none appeared: the POST is
    /// then taken not to have reached Proxmox, and the step fails without being sent again.
    async fn search_task(&self, vmid: u32, step: &Step, intent_at: i64) -> Option<Upid> {
        let mut delay = std::time::Duration::from_millis(100);
        for attempt in 1..=5 {
            let owned = |upid: &Upid| self.upid_owned(upid);
            match crate::recover::resolve_intent(
                &*self.px,
                vmid,
                step.task_type(),
                intent_at,
                owned,
            )
            .await
            {
                Ok(Some(upid)) => return Some(upid),
                Ok(None) if step.task_type().is_none() => return None,
                Ok(None) => {
                    tracing::debug!(vmid, attempt, "no task found yet");
                }
                Err(e) => {
                    warn!(vmid, attempt, error = %crate::error_chain(&e), "task list read failed");
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        None
    }

    /// Journals a step's end with its audit entry.
    pub(crate) fn finish_step(
        &self,
        kind: OpKind,
        op_id: &str,
        vmid: u32,
        idx: u32,
        step: &str,
        end: &TaskEnd,
    ) -> Result<(), ExecError> {
        let (state, exit, outcome) = match end {
            TaskEnd::Ok(e) => (StepStatus::Done, e.as_str(), "finished"),
            TaskEnd::Failed(e) => (StepStatus::Failed, e.as_str(), "failed"),
        };
        self.with_store(|s| {
            s.step_finished(
                op_id,
                idx,
                state,
                Some(exit),
                self.now(),
                Some(
                    &self
                        .agent_entry(kind.as_str(), outcome)
                        .action(step)
                        .vmid(vmid)
                        .op_id(op_id)
                        .detail(exit.to_owned()),
                ),
            )
        })
        .map_err(|source| ExecError::Journal {
            op_id: op_id.to_owned(),
            source,
        })
    }
}
