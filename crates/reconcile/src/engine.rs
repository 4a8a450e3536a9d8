//! The engine: the level-triggered reconcile loop (STYLE.md "The loop").
//!
//! `reconcile()` never learns *why* it runs: it reads actual state, plans against the last
//! accepted desired state, classifies, runs benign ops through the per-guest queues and records
//! pending signatures, then returns when to run again. Inputs arrive on channels so any source
//! can feed it: a `watch` of raw desired-state documents (the local file today, the hub later)
//! and an `mpsc` of verified signed ops. What the hub report needs is published on a `watch` of
//! [`EngineStatus`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use authz::VerifiedOp;
use journal::{NewDesiredState, NewOp, NewStep, OpKind, OpStatus};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
// Tokio's clock, so backoff and the list-lag window run on paused time in tests.
use tokio::time::Instant;
use tracing::{error, info, info_span, warn, Instrument};

use crate::actual::{Actual, ConfigCache};
use crate::desired::{self, Acceptance, DesiredState};
use crate::exec::{ExecError, Executor, OpSpec};
use crate::handle::EngineHandle;
use crate::jobs::{self, JobOutcome};
use crate::plan::{Note, Step};
use crate::ports::{Clock, Proxmox, ProxmoxError, Store, SystemClock};
use crate::preview::{self, ClassifiedOp, Verdict};
use crate::queue::{GuestQueues, DEFAULT_PARALLEL, DEFAULT_QUEUE_DEPTH};
use crate::recover::{self, GuestRecovery, Recovering};

/// How long `/cluster/resources` may lag behind a change (pve-api-notes §2.2: ~10 s on a real
/// node); guests mutated more recently are read with `status/current`.
const LIST_LAG: Duration = Duration::from_secs(15);

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Run a cycle at least this often.
    pub resync: Duration,
    /// Guests mutated in parallel.
    pub parallel: usize,
    /// Ops queued per guest before "busy".
    pub queue_depth: usize,
    /// First retry delay of a failing guest.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            resync: Duration::from_secs(10),
            parallel: DEFAULT_PARALLEL,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// The `generation` a refused document claims, for the report; `None` when it has none.
fn offered_generation(bytes: &[u8]) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    doc.get("generation")?.as_u64()
}

/// The journal id of the pending op for `step` under `generation`.
fn pending_op_id(step: &PendingStep, generation: Option<u64>) -> String {
    format!(
        "pending-{}-{}-g{}",
        step.action,
        step.vmid,
        generation.unwrap_or(0)
    )
}

/// A raw desired-state document and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInput {
    /// The bytes.
    pub bytes: Arc<[u8]>,
    /// `file:/path`, `hub`, …
    pub source: String,
}

/// What happened to a desired-state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ingest {
    /// Newer generation: stored and in force.
    Accepted {
        /// Its generation.
        generation: u64,
    },
    /// The same document as the one in force.
    Unchanged,
    /// Older generation: ignored.
    Ignored {
        /// Its generation.
        generation: u64,
        /// The one in force.
        current: u64,
    },
    /// Invalid, or same generation with different content: rejected, the old one stays.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// A desired-state document the engine did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Its generation, when the document had a readable one.
    pub generation: Option<u64>,
    /// Why it was not taken.
    pub reason: String,
}

/// A destroy (or other destructive step) waiting for an operator signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingStep {
    /// The guest.
    pub vmid: u32,
    /// The step (`destroy`).
    pub step: String,
    /// The action an operator must sign (`guest.destroy`).
    pub action: String,
    /// The target to sign (`vmid:101`).
    pub target: String,
    /// Why it was planned.
    pub reason: String,
}

/// What the engine reports (for the hub report and `plan`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStatus {
    /// Cycles run.
    pub cycle: u64,
    /// The generation in force.
    pub generation: Option<u64>,
    /// Steps waiting for a signature.
    pub pending_signature: Vec<PendingStep>,
    /// Per-guest reconcile errors (also locked / missing guests).
    pub errors: BTreeMap<u32, String>,
    /// Guests on the node that the agent never managed.
    pub unmanaged: Vec<u32>,
    /// The last desired-state document that was offered and not taken (older or rejected);
    /// `None` once one is accepted or the one in force is offered again. The hub report's
    /// `desired.rejected` is this.
    pub refused: Option<Refusal>,
    /// The last signed-job outcomes, newest last.
    pub signed: Vec<JobOutcome>,
    /// API reads of the last cycle (list + status + config reads).
    pub last_cycle_reads: u32,
    /// Ops started in the last cycle.
    pub last_cycle_ops: u32,
}

/// When to run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue: Duration,
}

impl Action {
    /// Run again after `d` (or sooner, when an input changes).
    pub fn requeue(d: Duration) -> Self {
        Action { requeue: d }
    }
    /// The delay.
    pub fn delay(&self) -> Duration {
        self.requeue
    }
}

/// Why a cycle failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Listing the node's guests failed.
    #[error("reading the node's guests failed")]
    Actual(#[source] ProxmoxError),
    /// The journal failed.
    #[error("journal failed")]
    Journal(#[source] crate::ports::StoreError),
    /// Crash recovery could not read what to recover.
    #[error("crash recovery could not start")]
    Recovery(#[source] ExecError),
}

/// A verified op for the engine, and where to send its outcome.
#[derive(Debug)]
pub struct SignedJob {
    /// The op (verified by `authz::verify`).
    pub op: VerifiedOp,
    /// Receives the outcome.
    pub reply: oneshot::Sender<JobOutcome>,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    delay: Duration,
}

/// The reconcile engine over a Proxmox port and a store.
pub struct Engine<P, S> {
    exec: Executor<P, S>,
    queues: GuestQueues,
    config: EngineConfig,
    desired: Option<Arc<DesiredState>>,
    cache: ConfigCache,
    backoff: HashMap<u32, Backoff>,
    cycle_backoff: Duration,
    mutated: HashMap<u32, Instant>,
    /// Guests with interrupted ops, their turns claimed at construction; settled from the first
    /// cycle on.
    claimed: Option<Vec<GuestRecovery>>,
    recovering: Recovering,
    /// Guests that were recovering at the last cycle (one that left is read fresh).
    was_recovering: BTreeSet<u32>,
    recovery_tasks: JoinSet<()>,
    status: EngineStatus,
    status_tx: watch::Sender<EngineStatus>,
    op_seq: u64,
}

impl<P: Proxmox, S: Store> Engine<P, S> {
    /// An engine on the system clock; loads the last accepted desired state from the store.
    pub fn new(
        px: Arc<P>,
        store: Arc<S>,
        config: EngineConfig,
    ) -> Result<(Self, watch::Receiver<EngineStatus>), EngineError> {
        Engine::with_clock(px, store, config, Arc::new(SystemClock))
    }

    /// An engine on this wall clock (journal times, signed-op expiry, `desired.reset`
    /// windows, op ids); loads the last accepted desired state from the store.
    pub fn with_clock(
        px: Arc<P>,
        store: Arc<S>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, watch::Receiver<EngineStatus>), EngineError> {
        let exec = Executor::with_clock(px, store, clock);
        let stored = exec
            .with_store(|s| s.latest_desired())
            .map_err(EngineError::Journal)?;
        let desired = match stored {
            Some(record) => match desired::parse(record.body.as_bytes()) {
                Ok(d) => Some(Arc::new(d)),
                Err(e) => {
                    warn!(generation = record.generation, error = %e, "stored desired state no longer parses");
                    None
                }
            },
            None => None,
        };
        let (status_tx, status_rx) = watch::channel(EngineStatus::default());
        let queues = GuestQueues::new(config.parallel, config.queue_depth);
        // Before anyone can queue work: the guests with interrupted ops are claimed for
        // recovery, which therefore goes first on each of them.
        let claimed = recover::claim(&exec, &queues).map_err(EngineError::Recovery)?;
        let mut engine = Engine {
            exec,
            queues,
            cycle_backoff: config.backoff_min,
            config,
            desired,
            cache: ConfigCache::default(),
            backoff: HashMap::new(),
            mutated: HashMap::new(),
            claimed: Some(claimed),
            recovering: Recovering::default(),
            was_recovering: BTreeSet::new(),
            recovery_tasks: JoinSet::new(),
            status: EngineStatus::default(),
            status_tx,
            op_seq: 0,
        };
        engine.status.generation = engine.desired.as_ref().map(|d| d.generation);
        Ok((engine, status_rx))
    }

    /// The handle through which everything outside the reconcile loop submits guest ops (the
    /// local API, `selftest task`, later the backup scheduler): same executor, same per-guest
    /// queues, same recovery.
    pub fn handle(&self) -> EngineHandle<P, S> {
        EngineHandle::new(self.exec.clone(), self.queues.clone())
    }

    /// The desired state in force.
    pub fn desired(&self) -> Option<&DesiredState> {
        self.desired.as_deref()
    }

    /// Parses a document and accepts, ignores or rejects it; an accepted one is journaled
    /// (with the adoption of its guests) before the engine acts on it.
    pub fn ingest(&mut self, input: &DesiredInput) -> Result<Ingest, EngineError> {
        let result = match desired::parse(&input.bytes) {
            Err(e) => Ingest::Rejected {
                reason: e.to_string(),
            },
            Ok(doc) => match desired::accept(self.desired.as_deref(), &doc) {
                Acceptance::Older { current } => {
                    // A signed `desired.reset` lets one lower generation in (a poisoned hub's
                    // recovery); without one it is ignored.
                    let record = self.record_of(&doc, input);
                    let entry = self.exec.agent_entry("desired", "accepted")
                        .action("accept")
                        .reason("desired-reset")
                        .detail(format!(
                            "generation {} (below {current}) sha256 {} from {}, after a signed desired.reset",
                            doc.generation, doc.sha256, input.source
                        ));
                    let reset = self
                        .exec
                        .with_store(|s| s.accept_desired_after_reset(&record, self.exec.now(), &entry))
                        .map_err(EngineError::Journal)?;
                    match reset {
                        Some(op_id) => {
                            warn!(generation = doc.generation, current, op_id = %op_id, "lower desired state accepted after a signed reset");
                            return Ok(self.took(doc));
                        }
                        None => Ingest::Ignored {
                            generation: doc.generation,
                            current,
                        },
                    }
                }
                Acceptance::Same => Ingest::Unchanged,
                Acceptance::Conflicting { current_sha256 } => Ingest::Rejected {
                    reason: format!(
                        "generation {} was already accepted with different content (sha256 {} vs {})",
                        doc.generation, current_sha256, doc.sha256
                    ),
                },
                Acceptance::Newer => {
                    for section in &doc.ignored_sections {
                        warn!(section = %section, "desired state section not supported yet, ignored");
                    }
                    let record = self.record_of(&doc, input);
                    let entry = self.exec.agent_entry("desired", "accepted").action("accept").detail(format!("generation {} sha256 {} from {}", doc.generation, doc.sha256, input.source));
                    self.exec
                        .with_store(|s| s.accept_desired(&record, &entry))
                        .map_err(EngineError::Journal)?;
                    info!(generation = doc.generation, "desired state accepted");
                    return Ok(self.took(doc));
                }
            },
        };
        match &result {
            Ingest::Ignored {
                generation,
                current,
            } => {
                let entry = self
                    .exec
                    .agent_entry("desired", "ignored")
                    .action("accept")
                    .reason("older-generation")
                    .detail(format!(
                        "generation {generation} < {current} from {}",
                        input.source
                    ));
                self.exec
                    .with_store(|s| s.audit(&entry))
                    .map_err(EngineError::Journal)?;
                info!(generation, current, "older desired state ignored");
                self.status.refused = Some(Refusal {
                    generation: Some(*generation),
                    reason: format!("older than the generation in force {current}"),
                });
            }
            Ingest::Rejected { reason } => {
                let entry = self
                    .exec
                    .agent_entry("desired", "rejected")
                    .action("accept")
                    .reason("invalid")
                    .detail(format!("{reason} (from {})", input.source));
                self.exec
                    .with_store(|s| s.audit(&entry))
                    .map_err(EngineError::Journal)?;
                warn!(reason = %reason, "desired state rejected");
                self.status.refused = Some(Refusal {
                    generation: offered_generation(&input.bytes),
                    reason: reason.clone(),
                });
            }
            Ingest::Unchanged => self.status.refused = None,
            Ingest::Accepted { .. } => {}
        }
        self.publish();
        Ok(result)
    }

    fn record_of(&self, doc: &DesiredState, input: &DesiredInput) -> NewDesiredState {
        NewDesiredState {
            generation: doc.generation,
            sha256: doc.sha256.clone(),
            body: doc.canonical.clone(),
            source: input.source.clone(),
            accepted_at: self.exec.now(),
        }
    }

    /// The document, journaled as accepted, is now the one in force.
    fn took(&mut self, doc: DesiredState) -> Ingest {
        let generation = doc.generation;
        self.status.generation = Some(generation);
        self.status.refused = None;
        self.desired = Some(Arc::new(doc));
        // Published with the next cycle: `generation` in the status means applied.
        Ingest::Accepted { generation }
    }

    fn publish(&self) {
        self.status_tx.send_replace(self.status.clone());
    }

    fn managed(&self) -> Result<(BTreeSet<u32>, BTreeMap<u32, journal::GuestRecord>), EngineError> {
        let records = self
            .exec
            .with_store(|s| s.guests())
            .map_err(EngineError::Journal)?;
        let managed = records
            .iter()
            .filter(|r| r.managed)
            .map(|r| r.vmid)
            .collect();
        Ok((managed, records.into_iter().map(|r| (r.vmid, r)).collect()))
    }

    /// One reconcile pass.
    pub async fn reconcile(&mut self) -> Result<Action, EngineError> {
        if let Some(claimed) = self.claimed.take() {
            self.recovery_tasks = recover::spawn(&self.exec, claimed, &self.recovering);
        }
        while self.recovery_tasks.try_join_next().is_some() {}
        let recovering: BTreeSet<u32> = self
            .recovering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A guest whose recovery just ended changed behind the list: read it fresh.
        for vmid in self.was_recovering.difference(&recovering) {
            self.mutated.insert(*vmid, Instant::now());
            self.cache.invalidate(*vmid);
        }
        self.was_recovering = recovering.clone();
        self.status.cycle += 1;
        let mut reads = 1u32;
        let mut actual = Actual {
            guests: self
                .exec
                .px
                .guests()
                .await
                .map_err(EngineError::Actual)?
                .into_iter()
                .map(|g| (g.vmid, g))
                .collect(),
        };
        // The list lags; trust status/current for guests acted on recently.
        let now_i = Instant::now();
        self.mutated
            .retain(|_, at| now_i.duration_since(*at) < LIST_LAG);
        for vmid in self.mutated.keys().copied().collect::<Vec<_>>() {
            reads += 1;
            match self.exec.px.guest_status(vmid).await {
                Ok(g) => {
                    // Once the list agrees with status/current it has caught up for this
                    // guest: back to the one list read.
                    if actual
                        .guests
                        .get(&vmid)
                        .is_some_and(|l| l.status == g.status && l.lock == g.lock)
                    {
                        self.mutated.remove(&vmid);
                    }
                    actual.guests.insert(vmid, g);
                }
                Err(ProxmoxError::NoSuchGuest { .. }) => {
                    actual.guests.remove(&vmid);
                    self.cache.invalidate(vmid);
                }
                Err(e) => warn!(vmid, error = %crate::error_chain(&e), "status read failed"),
            }
        }
        let (_, mut records) = self.managed()?;
        // A managed guest gone from the node is released at once: a later guest on the same
        // vmid starts unmanaged (DESIGN.md §4.6). One being recovered is left to its recovery.
        let vanished: Vec<u32> = records
            .values()
            .filter(|r| r.managed && !actual.guests.contains_key(&r.vmid))
            .filter(|r| !recovering.contains(&r.vmid))
            .map(|r| r.vmid)
            .collect();
        if !vanished.is_empty() {
            for vmid in &vanished {
                self.exec
                    .release(*vmid, "vanished", None)
                    .map_err(EngineError::Journal)?;
                self.cache.invalidate(*vmid);
            }
            records = self.managed()?.1;
        }
        let desired = self.desired.clone();
        let mut errors = BTreeMap::new();
        self.backoff.retain(|_, b| b.until > now_i);
        // Config reads: what changed in the desired state, plus one drift check.
        if let Some(d) = desired.as_deref() {
            let mut present: Vec<u32> = Vec::new();
            for (vmid, want) in &d.guests {
                if !actual.guests.contains_key(vmid) || want.config.is_empty() {
                    continue;
                }
                present.push(*vmid);
                if self.backoff.contains_key(vmid) {
                    continue;
                }
                if self.cache.needs_read(*vmid, want.config_hash()) {
                    reads += 1;
                    self.read_config(*vmid, want.config_hash(), &mut errors)
                        .await;
                }
            }
            if let Some(vmid) = self.cache.next_drift_check(&present) {
                reads += 1;
                let hash = self.cache.read_for(vmid).unwrap_or_default();
                self.read_config(vmid, hash, &mut errors).await;
            }
        }
        let cache = &self.cache;
        let configs = |vmid: u32| cache.get(vmid).cloned();
        let preview = preview::preview(desired.as_deref(), &actual, &configs, &records);
        let generation = desired.as_ref().map(|d| d.generation);
        let mut pending = Vec::new();
        let mut jobs = JoinSet::new();
        let mut started = 0u32;
        let preview_vmids: BTreeSet<u32> = preview.ops.iter().map(|o| o.op.vmid).collect();
        for ClassifiedOp { op, verdict, .. } in preview.ops {
            if recovering.contains(&op.vmid) {
                errors.insert(
                    op.vmid,
                    "settling an op interrupted by a restart; waiting".to_owned(),
                );
                continue;
            }
            if let Some(b) = self.backoff.get(&op.vmid) {
                errors.entry(op.vmid).or_insert_with(|| {
                    format!(
                        "backing off for {}s after a failure",
                        b.until.saturating_duration_since(now_i).as_secs()
                    )
                });
                continue;
            }
            match verdict {
                Verdict::Refused { reason } => {
                    errors.insert(op.vmid, reason);
                    continue;
                }
                Verdict::NeedsSignature { action, target } => {
                    let step = PendingStep {
                        vmid: op.vmid,
                        step: op
                            .steps
                            .iter()
                            .map(Step::kind)
                            .collect::<Vec<_>>()
                            .join(","),
                        action: action.as_str().to_owned(),
                        target: target.to_string(),
                        reason: op.reason.clone(),
                    };
                    self.record_pending(&step, generation)?;
                    pending.push(step);
                    continue;
                }
                Verdict::Run => {}
            }
            self.op_seq += 1;
            let spec = OpSpec {
                op_id: format!("rc-{}-{}-{}", op.vmid, self.exec.now(), self.op_seq),
                kind: OpKind::Reconcile,
                vmid: op.vmid,
                generation,
                steps: op.steps,
                authority: None,
                wait_limit: None,
            };
            let exec = self.exec.clone();
            let queues = self.queues.clone();
            started += 1;
            jobs.spawn(async move {
                let vmid = spec.vmid;
                let result = match queues.run(vmid, exec.run(&spec)).await {
                    Ok(r) => r.map_err(|e| crate::error_chain(&e)),
                    Err(busy) => Err(busy.to_string()),
                };
                (vmid, result)
            });
        }
        // A managed guest without an identity (adopted by an earlier version, or tagged by the
        // agent before it wrote identities) gets one, in a cycle where nothing else is planned
        // for it; its identity dates from when it was first managed.
        for record in records.values() {
            let vmid = record.vmid;
            let idle = actual.guests.get(&vmid).is_some_and(|g| g.lock.is_none());
            if !record.managed
                || record.identity.is_some()
                || !idle
                || preview_vmids.contains(&vmid)
                || recovering.contains(&vmid)
                || self.backoff.contains_key(&vmid)
            {
                continue;
            }
            let identity = match crate::normalize::new_identity() {
                Ok(identity) => identity,
                Err(e) => {
                    error!(vmid, error = %e, "no randomness for a guest identity");
                    continue;
                }
            };
            self.op_seq += 1;
            let spec = OpSpec {
                op_id: format!("rc-{vmid}-{}-{}", self.exec.now(), self.op_seq),
                kind: OpKind::Reconcile,
                vmid,
                generation,
                steps: vec![Step::MarkIdentity {
                    identity: identity.clone(),
                }],
                authority: None,
                wait_limit: None,
            };
            let (exec, queues, since) = (self.exec.clone(), self.queues.clone(), record.first_seen);
            started += 1;
            jobs.spawn(async move {
                let result = match queues.run(vmid, exec.run(&spec)).await {
                    Ok(Ok(())) => exec
                        .with_store(|s| s.set_guest_identity(vmid, &identity, since, exec.now()))
                        .map(drop)
                        .map_err(|e| crate::error_chain(&e)),
                    Ok(Err(e)) => Err(crate::error_chain(&e)),
                    Err(busy) => Err(busy.to_string()),
                };
                (vmid, result)
            });
        }
        while let Some(joined) = jobs.join_next().await {
            let (vmid, result) = match joined {
                Ok(done) => done,
                // A step task that panicked (a bug): which guest it served is lost with it, so
                // the least is to say so; its op stays open in the journal.
                Err(e) => {
                    error!(error = %e, "a reconcile step task ended abnormally");
                    continue;
                }
            };
            self.mutated.insert(vmid, Instant::now());
            self.cache.invalidate(vmid);
            match result {
                Ok(()) => {
                    self.backoff.remove(&vmid);
                }
                Err(e) => {
                    let delay = self
                        .backoff
                        .get(&vmid)
                        .map_or(self.config.backoff_min, |b| {
                            (b.delay * 2).min(self.config.backoff_max)
                        });
                    self.backoff.insert(
                        vmid,
                        Backoff {
                            until: Instant::now() + delay,
                            delay,
                        },
                    );
                    errors.insert(vmid, e);
                }
            }
        }
        self.settle_pending(&pending, generation)?;
        let mut unmanaged = Vec::new();
        for note in preview.notes {
            match note {
                Note::Unmanaged { vmid } => unmanaged.push(vmid),
                Note::NeedsAdoption { vmid } => {
                    errors.entry(vmid).or_insert_with(|| {
                        "adoption-needs-signature: not managed by this agent; sign guest.adopt"
                            .into()
                    });
                    pending.push(PendingStep {
                    vmid,
                    step: "adopt".into(),
                    action: authz::Action::GuestAdopt.as_str().to_owned(),
                    target: authz::Target::Vmid(vmid).to_string(),
                    reason: "adoption-needs-signature: named in the desired state, not managed by this agent; not touched".into(),
                    });
                }
                Note::Missing { vmid } => {
                    errors.entry(vmid).or_insert_with(|| {
                        "not on this node (provisioning is not supported yet)".into()
                    });
                }
                Note::Locked { vmid, lock } => {
                    errors
                        .entry(vmid)
                        .or_insert_with(|| format!("locked ({lock}); waiting"));
                }
                Note::OddStatus { vmid, status } => {
                    errors
                        .entry(vmid)
                        .or_insert_with(|| format!("status {status}; waiting"));
                }
                Note::ConfigUnknown { vmid } => {
                    errors
                        .entry(vmid)
                        .or_insert_with(|| "config unknown this cycle".into());
                }
            }
        }
        self.status.pending_signature = pending;
        self.status.errors = errors;
        self.status.unmanaged = unmanaged;
        self.status.last_cycle_reads = reads;
        self.status.last_cycle_ops = started;
        self.publish();
        // Something ran: look again soon (status/current shows the result at once).
        let delay = if started > 0 {
            Duration::from_millis(200)
        } else {
            self.config.resync
        };
        Ok(Action::requeue(delay))
    }

    async fn read_config(&mut self, vmid: u32, hash: u64, errors: &mut BTreeMap<u32, String>) {
        match self.exec.px.guest_config(vmid).await {
            Ok(cfg) => self.cache.insert(vmid, cfg, hash),
            Err(e) => {
                self.cache.invalidate(vmid);
                errors.insert(vmid, format!("reading config: {}", crate::error_chain(&e)));
            }
        }
    }

    fn record_pending(
        &mut self,
        step: &PendingStep,
        generation: Option<u64>,
    ) -> Result<(), EngineError> {
        let op = NewOp {
            op_id: pending_op_id(step, generation),
            kind: OpKind::Reconcile,
            vmid: step.vmid,
            generation,
            state: OpStatus::PendingSignature,
            steps: vec![NewStep {
                kind: step.step.clone(),
                params: "{}".into(),
            }],
            at: self.exec.now(),
        };
        let entry = self
            .exec
            .agent_entry("reconcile", "pending_signature")
            .action(&step.step)
            .vmid(step.vmid)
            .op_id(&op.op_id)
            .reason("needs-signature")
            .detail(format!(
                "{} on {}: {}",
                step.action, step.target, step.reason
            ));
        let new = self
            .exec
            .with_store(|s| s.insert_op(&op, &entry))
            .map_err(EngineError::Journal)?;
        if new {
            warn!(vmid = step.vmid, action = %step.action, "step needs an operator signature");
        }
        Ok(())
    }

    /// Pending ops not planned in this cycle are closed: the guest is back in the desired
    /// state or gone, or a newer generation planned the same step again (its op replaces the
    /// older one, so one guest has at most one open pending op however many generations pass).
    fn settle_pending(
        &mut self,
        still: &[PendingStep],
        generation: Option<u64>,
    ) -> Result<(), EngineError> {
        let current: BTreeSet<String> =
            still.iter().map(|p| pending_op_id(p, generation)).collect();
        let open = self
            .exec
            .with_store(|s| s.pending_ops())
            .map_err(EngineError::Journal)?;
        for op in open {
            if current.contains(&op.op_id) {
                continue;
            }
            let superseded = still.iter().any(|p| p.vmid == op.vmid);
            let (reason, detail) = if superseded {
                ("superseded", "planned again by a newer generation")
            } else {
                ("no-longer-needed", "no longer planned")
            };
            let entry = self
                .exec
                .agent_entry("reconcile", "abandoned")
                .action("op")
                .vmid(op.vmid)
                .op_id(&op.op_id)
                .reason(reason);
            self.exec
                .with_store(|s| {
                    s.finish_op(
                        &op.op_id,
                        OpStatus::Abandoned,
                        Some(detail),
                        self.exec.now(),
                        &entry,
                    )
                })
                .map_err(EngineError::Journal)?;
        }
        Ok(())
    }

    /// Runs a verified signed op (outside the reconcile cycle, through the guest's queue).
    pub async fn run_signed(&mut self, op: &VerifiedOp) -> JobOutcome {
        let record = match op.target() {
            authz::Target::Vmid(v) => match self.managed() {
                Ok((_, mut records)) => Ok(records.remove(v)),
                // Not knowing is not "unmanaged": the op is refused, and the log says why.
                Err(e) => {
                    error!(op_id = op.op_id(), error = %crate::error_chain(&e), "cannot read which guests are managed; signed op refused");
                    Err(())
                }
            },
            _ => Ok(None),
        };
        let outcome = jobs::run_signed(&self.exec, &self.queues, op, record).await;
        if let authz::Target::Vmid(v) = op.target() {
            self.mutated.insert(*v, Instant::now());
            self.cache.invalidate(*v);
        }
        self.status.signed.push(outcome.clone());
        let excess = self.status.signed.len().saturating_sub(50);
        self.status.signed.drain(..excess);
        self.publish();
        outcome
    }

    fn error_policy(&mut self, err: &EngineError) -> Action {
        let delay = self.cycle_backoff;
        self.cycle_backoff = (self.cycle_backoff * 2).min(self.config.backoff_max);
        warn!(error = %crate::error_chain(err), retry_in_s = delay.as_secs(), "reconcile failed");
        Action::requeue(delay)
    }

    /// Runs until `shutdown` turns true: ingests desired documents, runs signed jobs, and
    /// reconciles on change or timer.
    pub async fn run(
        mut self,
        mut desired_rx: watch::Receiver<Option<DesiredInput>>,
        mut jobs_rx: mpsc::Receiver<SignedJob>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut reason = "start";
        let mut last_input: Option<DesiredInput> = None;
        loop {
            let input = desired_rx.borrow_and_update().clone();
            if let Some(input) = input {
                if last_input.as_ref() != Some(&input) {
                    if let Err(e) = self.ingest(&input) {
                        warn!(error = %crate::error_chain(&e), "desired state not recorded");
                    }
                    last_input = Some(input);
                }
            }
            let span = info_span!("reconcile", cycle = self.status.cycle + 1, reason);
            let action = match self.reconcile().instrument(span).await {
                Ok(action) => {
                    self.cycle_backoff = self.config.backoff_min;
                    action
                }
                Err(err) => self.error_policy(&err),
            };
            reason = tokio::select! {
                // Cancel-safe: changed() and recv() only observe their channels.
                Ok(()) = desired_rx.changed() => "desired-changed",
                Some(job) = jobs_rx.recv() => {
                    let outcome = self.run_signed(&job.op).await;
                    // An armed reset applies to the document already offered: offer it again.
                    if job.op.action() == authz::Action::DesiredReset {
                        last_input = None;
                    }
                    let _ = job.reply.send(outcome);
                    "signed-job"
                }
                () = tokio::time::sleep(action.delay()) => "timer",
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
        }
    }
}
