//! Stateful fakes of the engine's ports (feature `fakes`), for the engine's own tests and
//! for any crate that drives the engine without a simulator process.
//!
//! [`FakeProxmox`] is a small node: guests with a power state, a lock, an allowlisted config
//! with a digest, snapshots and backups; every mutating call starts a task with a real UPID
//! that runs for the configured time on Tokio's clock (so paused-time tests control it) and
//! shows in [`Proxmox::find_tasks`]. Its effect is applied when the task ends OK; a failed task
//! changes nothing, as in PVE. Faults are injected per call: [`Fault::FailTask`] (the task ends
//! with an error), [`Fault::DropAfterPost`] (the call acts but the answer is lost: the
//! ambiguous POST), [`Fault::Refuse`] (the call provably never ran), plus
//! [`FakeProxmox::set_task_ms`] for slow tasks and [`FakeProxmox::set_lock`].
//!
//! [`MemoryStore`] keeps the journal's records in memory with the journal's rules (an op id is
//! recorded once, an intent needs a planned step, `succeeded` needs every step done, a newer
//! generation only) and can fail its next write ([`MemoryStore::fail_next_write`]).
//!
//! [`FakeClock`] is a wall clock that starts where a test puts it and follows Tokio's clock
//! from there (paused time moves it too), and can jump. Hand the same one to the engine and to
//! [`FakeProxmox::with_clock`], so the fake's task start times and the journal agree.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use journal::{
    DesiredStateRecord, GuestRecord, NewAuditEntry, NewDesiredState, NewOp, OpRecord, OpState,
    OpStatus, StepRecord, StepStatus,
};
use pve::{SnapshotName, Upid};
use tokio::time::Instant;

use crate::gate::DestroyAuthority;
use crate::ports::{
    Clock, Condition, FoundTask, GuestConfig, GuestState, Posted, Proxmox, ProxmoxError, Store,
    StoreError, SystemClock, TaskEnd,
};

/// The token user the fake's tasks run as (what recovery filters the task list by).
pub const FAKE_USER: &str = "felhom-agent@pve!agent";
/// The fake node's name.
pub const FAKE_NODE: &str = "fake";

// ---------------------------------------------------------------------------------------------
// Clock

/// A wall clock for tests (see the module docs). Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<FakeTime>>,
}

#[derive(Debug)]
struct FakeTime {
    /// The wall time at `origin`.
    start: time::OffsetDateTime,
    /// Tokio's time when `start` was set.
    origin: Instant,
}

impl FakeClock {
    /// A clock that reads `start` now and moves on with Tokio's clock. Create it inside the
    /// runtime whose (paused) time it is to follow.
    pub fn at(start: time::OffsetDateTime) -> Self {
        FakeClock {
            inner: Arc::new(Mutex::new(FakeTime {
                start,
                origin: Instant::now(),
            })),
        }
    }

    /// Jumps the wall time forward by `by` (Tokio's clock does not move).
    pub fn advance(&self, by: Duration) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.start += by;
    }

    /// Sets the wall time to `to` from now on (also backwards, as an NTP step can).
    pub fn set(&self, to: time::OffsetDateTime) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *t = FakeTime {
            start: to,
            origin: Instant::now(),
        };
    }
}

impl Clock for FakeClock {
    fn now(&self) -> time::OffsetDateTime {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.start + t.origin.elapsed()
    }
}

/// The fake node's wall clock (its tasks' start times): the system's unless a test shares its
/// [`FakeClock`].
#[derive(Clone)]
struct NodeClock(Arc<dyn Clock>);

impl Default for NodeClock {
    fn default() -> Self {
        NodeClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for NodeClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeClock")
    }
}

// ---------------------------------------------------------------------------------------------
// Proxmox

/// A fault for the next mutating call on a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call starts its task, which ends with this exit status (nothing changes).
    FailTask(String),
    /// The call acts (its task starts and runs) but the connection drops before the answer.
    DropAfterPost,
    /// The call is refused before it acts (connection refused, a 400): provably never ran.
    Refuse,
}

/// One guest of the fake node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGuest {
    /// `running` or `stopped`.
    pub status: String,
    /// A config lock.
    pub lock: Option<String>,
    /// Allowlisted config keys, canonical.
    pub config: BTreeMap<String, String>,
    /// Bumped by every config change.
    pub digest: u64,
    /// Snapshot names.
    pub snapshots: Vec<String>,
    /// Backup archives made (storage ids, oldest first).
    pub backups: Vec<String>,
}

impl FakeGuest {
    /// A guest in `status` with no config.
    pub fn new(status: &str) -> Self {
        FakeGuest {
            status: status.to_owned(),
            lock: None,
            config: BTreeMap::new(),
            digest: 1,
            snapshots: Vec::new(),
            backups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
enum Effect {
    Status(&'static str),
    Config(BTreeMap<String, String>),
    Destroy,
    Snapshot(String),
    DeleteSnapshot(String),
    Rollback {
        start: bool,
    },
    Backup(String),
    /// Keep the newest `keep` backups on the storage.
    Prune {
        storage: String,
        keep: usize,
    },
}

#[derive(Debug)]
struct Task {
    upid: Upid,
    vmid: u32,
    ends: Instant,
    exitstatus: String,
    effect: Option<Effect>,
    applied: bool,
}

#[derive(Debug, Default)]
struct Node {
    guests: BTreeMap<u32, FakeGuest>,
    tasks: Vec<Task>,
    faults: HashMap<u32, VecDeque<Fault>>,
    task_ms: u64,
    calls: Vec<String>,
    pid: u32,
    clock: NodeClock,
}

/// A stateful fake Proxmox node (see the module docs). Cheap to clone; clones share the node.
#[derive(Debug, Clone, Default)]
pub struct FakeProxmox {
    node: Arc<Mutex<Node>>,
}

impl FakeProxmox {
    /// A node with these guests and tasks that take `task_ms`.
    pub fn new(guests: impl IntoIterator<Item = (u32, FakeGuest)>, task_ms: u64) -> Self {
        let fake = FakeProxmox::default();
        {
            let mut node = fake.lock();
            node.guests = guests.into_iter().collect();
            node.task_ms = task_ms;
        }
        fake
    }

    /// Stamps the node's tasks with this wall clock (the engine's, so a task the journal's
    /// intent precedes is found in the task list).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.lock().clock = NodeClock(clock);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a fault for the next mutating call on `vmid`.
    pub fn inject(&self, vmid: u32, fault: Fault) {
        self.lock().faults.entry(vmid).or_default().push_back(fault);
    }

    /// Sets how long new tasks take.
    pub fn set_task_ms(&self, ms: u64) {
        self.lock().task_ms = ms;
    }

    /// Locks or unlocks a guest (as a backup or a migration would).
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) {
        if let Some(g) = self.lock().guests.get_mut(&vmid) {
            g.lock = lock.map(str::to_owned);
        }
    }

    /// A guest as it is now (tasks that ended are applied first).
    pub fn guest(&self, vmid: u32) -> Option<FakeGuest> {
        let mut node = self.lock();
        settle(&mut node);
        node.guests.get(&vmid).cloned()
    }

    /// Adds or replaces a guest (one created behind the agent's back).
    pub fn put_guest(&self, vmid: u32, guest: FakeGuest) {
        self.lock().guests.insert(vmid, guest);
    }

    /// Removes a guest (one destroyed behind the agent's back).
    pub fn remove_guest(&self, vmid: u32) {
        self.lock().guests.remove(&vmid);
    }

    /// How many tasks of `task_type` were started on `vmid`.
    pub fn tasks_of(&self, task_type: &str, vmid: u32) -> usize {
        self.lock()
            .tasks
            .iter()
            .filter(|t| t.vmid == vmid && t.upid.task_type() == task_type)
            .count()
    }

    /// Every call made, in order, as `name vmid` (reads included).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Mutating calls only.
    pub fn mutations(&self) -> Vec<String> {
        const READS: [&str; 6] = ["guests", "status", "config", "snapshots", "wait", "tasks"];
        self.calls()
            .into_iter()
            .filter(|c| !READS.iter().any(|r| c.split(' ').next() == Some(*r)))
            .collect()
    }

    /// Starts a task: checks existence and lock, takes the next fault, records the call.
    fn post(
        &self,
        call: &'static str,
        vmid: u32,
        task_type: &str,
        effect: Effect,
    ) -> Result<Posted, ProxmoxError> {
        let mut node = self.lock();
        settle(&mut node);
        node.calls.push(format!("{call} {vmid}"));
        let fault = node.faults.get_mut(&vmid).and_then(VecDeque::pop_front);
        if fault == Some(Fault::Refuse) {
            return Err(ProxmoxError::Call {
                call,
                never_ran: true,
                source: "connection refused (injected)".into(),
            });
        }
        let Some(guest) = node.guests.get(&vmid) else {
            return Err(ProxmoxError::NoSuchGuest { vmid });
        };
        if let Some(lock) = &guest.lock {
            return Err(ProxmoxError::Locked {
                vmid,
                lock: lock.clone(),
            });
        }
        node.pid += 1;
        let starttime = u64::try_from(node.clock.0.now().unix_timestamp()).unwrap_or(0);
        let upid = Upid::new(
            FAKE_NODE,
            node.pid,
            1,
            starttime,
            task_type,
            &vmid.to_string(),
            FAKE_USER,
        )
        .map_err(|e| ProxmoxError::Call {
            call,
            never_ran: true,
            source: Box::new(e),
        })?;
        let exitstatus = match &fault {
            Some(Fault::FailTask(e)) => e.clone(),
            _ => "OK".to_owned(),
        };
        let ends = Instant::now() + Duration::from_millis(node.task_ms);
        node.tasks.push(Task {
            upid: upid.clone(),
            vmid,
            ends,
            exitstatus,
            effect: Some(effect),
            applied: false,
        });
        if fault == Some(Fault::DropAfterPost) {
            return Err(ProxmoxError::Call {
                call,
                never_ran: false,
                source: "connection closed before the answer (injected)".into(),
            });
        }
        Ok(Posted::Task(upid))
    }
}

/// Applies the effects of tasks that ended OK.
fn settle(node: &mut Node) {
    let now = Instant::now();
    let mut effects = Vec::new();
    for task in node
        .tasks
        .iter_mut()
        .filter(|t| !t.applied && t.ends <= now)
    {
        task.applied = true;
        if task.exitstatus == "OK" {
            if let Some(effect) = task.effect.take() {
                effects.push((task.vmid, effect));
            }
        }
    }
    for (vmid, effect) in effects {
        if let Effect::Destroy = effect {
            node.guests.remove(&vmid);
            continue;
        }
        let Some(g) = node.guests.get_mut(&vmid) else {
            continue;
        };
        match effect {
            Effect::Status(s) => g.status = s.to_owned(),
            Effect::Config(changes) => {
                g.config.extend(changes);
                g.digest += 1;
            }
            Effect::Snapshot(name) => g.snapshots.push(name),
            Effect::DeleteSnapshot(name) => g.snapshots.retain(|n| *n != name),
            Effect::Rollback { start } => {
                g.status = if start { "running" } else { "stopped" }.to_owned();
            }
            Effect::Backup(storage) => g.backups.push(storage),
            Effect::Prune { storage, keep } => {
                // Oldest first: the first `excess` on that storage go.
                let on = g.backups.iter().filter(|s| **s == storage).count();
                let mut excess = on.saturating_sub(keep);
                g.backups.retain(|s| {
                    let gone = *s == storage && excess > 0;
                    excess -= usize::from(gone);
                    !gone
                });
            }
            Effect::Destroy => {}
        }
    }
}

impl Proxmox for FakeProxmox {
    async fn guests(&self) -> Result<Vec<GuestState>, ProxmoxError> {
        let mut node = self.lock();
        settle(&mut node);
        node.calls.push("guests 0".into());
        Ok(node
            .guests
            .iter()
            .map(|(vmid, g)| GuestState {
                vmid: *vmid,
                status: Condition::from_pve(&g.status),
                lock: g.lock.clone(),
                name: g.config.get("hostname").cloned(),
            })
            .collect())
    }

    async fn guest_status(&self, vmid: u32) -> Result<GuestState, ProxmoxError> {
        let mut node = self.lock();
        settle(&mut node);
        node.calls.push(format!("status {vmid}"));
        let g = node
            .guests
            .get(&vmid)
            .ok_or(ProxmoxError::NoSuchGuest { vmid })?;
        Ok(GuestState {
            vmid,
            status: Condition::from_pve(&g.status),
            lock: g.lock.clone(),
            name: g.config.get("hostname").cloned(),
        })
    }

    async fn guest_config(&self, vmid: u32) -> Result<GuestConfig, ProxmoxError> {
        let mut node = self.lock();
        settle(&mut node);
        node.calls.push(format!("config {vmid}"));
        let g = node
            .guests
            .get(&vmid)
            .ok_or(ProxmoxError::NoSuchGuest { vmid })?;
        let mut values = g.config.clone();
        let identity = match values.remove("description") {
            Some(d) => {
                let (text, identity) = crate::normalize::split_identity(&d);
                if !text.is_empty() {
                    values.insert("description".into(), text);
                }
                identity
            }
            None => None,
        };
        Ok(GuestConfig {
            digest: Some(format!("digest-{}", g.digest)),
            values,
            identity,
        })
    }

    async fn start(&self, vmid: u32) -> Result<Posted, ProxmoxError> {
        self.post("start", vmid, "vzstart", Effect::Status("running"))
    }

    async fn shutdown(&self, vmid: u32) -> Result<Posted, ProxmoxError> {
        self.post("shutdown", vmid, "vzshutdown", Effect::Status("stopped"))
    }

    async fn stop(&self, vmid: u32) -> Result<Posted, ProxmoxError> {
        self.post("stop", vmid, "vzstop", Effect::Status("stopped"))
    }

    async fn set_config(
        &self,
        vmid: u32,
        changes: &BTreeMap<String, String>,
        digest: Option<&str>,
    ) -> Result<Posted, ProxmoxError> {
        let current = self.guest(vmid).map(|g| format!("digest-{}", g.digest));
        if let (Some(want), Some(have)) = (digest, current) {
            if want != have {
                return Err(ProxmoxError::Call {
                    call: "set config",
                    never_ran: true,
                    source: "config digest mismatch".into(),
                });
            }
        }
        // PVE applies a config PUT synchronously; the fake's task is only for the fault model.
        match self.post(
            "set_config",
            vmid,
            "vzconfig",
            Effect::Config(changes.clone()),
        )? {
            Posted::Task(_) => {
                let mut node = self.lock();
                if let Some(t) = node.tasks.last_mut() {
                    t.ends = Instant::now();
                }
                settle(&mut node);
                Ok(Posted::Sync)
            }
            Posted::Sync => Ok(Posted::Sync),
        }
    }

    async fn destroy(&self, authority: &DestroyAuthority) -> Result<Posted, ProxmoxError> {
        self.post("destroy", authority.vmid(), "vzdestroy", Effect::Destroy)
    }

    async fn snapshot(
        &self,
        vmid: u32,
        name: &SnapshotName,
        _description: &str,
    ) -> Result<Posted, ProxmoxError> {
        self.post(
            "snapshot",
            vmid,
            "vzsnapshot",
            Effect::Snapshot(name.to_string()),
        )
    }

    async fn delete_snapshot(
        &self,
        vmid: u32,
        name: &SnapshotName,
    ) -> Result<Posted, ProxmoxError> {
        self.post(
            "delete_snapshot",
            vmid,
            "vzdelsnapshot",
            Effect::DeleteSnapshot(name.to_string()),
        )
    }

    async fn rollback(
        &self,
        vmid: u32,
        _name: &SnapshotName,
        start: bool,
    ) -> Result<Posted, ProxmoxError> {
        self.post("rollback", vmid, "vzrollback", Effect::Rollback { start })
    }

    async fn vzdump(&self, vmid: u32, storage: &str) -> Result<Posted, ProxmoxError> {
        self.post("vzdump", vmid, "vzdump", Effect::Backup(storage.to_owned()))
    }

    /// The fake's backups have no times, so they all fall in one period: `keep-last` keeps
    /// that many, any period option one more when `keep-last` is zero.
    async fn prune(
        &self,
        vmid: u32,
        storage: &str,
        keep: &pve::Retention,
    ) -> Result<Posted, ProxmoxError> {
        let periods = [
            keep.hourly,
            keep.daily,
            keep.weekly,
            keep.monthly,
            keep.yearly,
        ];
        let keep =
            keep.last as usize + usize::from(keep.last == 0 && periods.iter().any(|&n| n > 0));
        self.post(
            "prune",
            vmid,
            "prunebackups",
            Effect::Prune {
                storage: storage.to_owned(),
                keep,
            },
        )
    }

    async fn snapshots(&self, vmid: u32) -> Result<Vec<String>, ProxmoxError> {
        let mut node = self.lock();
        settle(&mut node);
        node.calls.push(format!("snapshots {vmid}"));
        let g = node
            .guests
            .get(&vmid)
            .ok_or(ProxmoxError::NoSuchGuest { vmid })?;
        Ok(g.snapshots.clone())
    }

    async fn wait(&self, upid: &Upid, limit: Duration) -> Result<TaskEnd, ProxmoxError> {
        let ends = {
            let mut node = self.lock();
            node.calls.push(format!("wait {}", upid.id()));
            node.tasks
                .iter()
                .find(|t| t.upid == *upid)
                .map(|t| t.ends)
                .ok_or_else(|| ProxmoxError::Call {
                    call: "wait",
                    never_ran: true,
                    source: format!("no such task {upid}").into(),
                })?
        };
        if tokio::time::timeout(limit, tokio::time::sleep_until(ends))
            .await
            .is_err()
        {
            return Err(ProxmoxError::Call {
                call: "wait",
                never_ran: false,
                source: "task still running at the wait limit".into(),
            });
        }
        let mut node = self.lock();
        settle(&mut node);
        let exit = node
            .tasks
            .iter()
            .find(|t| t.upid == *upid)
            .map(|t| t.exitstatus.clone())
            .unwrap_or_default();
        Ok(if exit == "OK" {
            TaskEnd::Ok(exit)
        } else {
            TaskEnd::Failed(exit)
        })
    }

    async fn find_tasks(
        &self,
        vmid: u32,
        task_type: &'static str,
        since: i64,
    ) -> Result<Vec<FoundTask>, ProxmoxError> {
        let mut node = self.lock();
        node.calls.push(format!("tasks {vmid}"));
        Ok(node
            .tasks
            .iter()
            .filter(|t| t.vmid == vmid && t.upid.task_type() == task_type)
            .filter(|t| i64::try_from(t.upid.starttime()).unwrap_or(0) >= since)
            .map(|t| FoundTask {
                upid: t.upid.clone(),
                starttime: t.upid.starttime(),
            })
            .collect())
    }
}

/// Makes `vmid` managed as a signed adoption leaves it: the identity line in the fake guest's
/// description and the same identity in the store (since time 0). Returns the identity.
pub fn adopt(px: &FakeProxmox, store: &MemoryStore, vmid: u32) -> String {
    let identity = format!("{:032x}", u128::from(vmid) * 0x9e37_79b9_7f4a_7c15);
    if let Some(mut g) = px.guest(vmid) {
        let text = g
            .config
            .get("description")
            .map(|d| crate::normalize::split_identity(d).0)
            .unwrap_or_default();
        g.config.insert(
            "description".into(),
            crate::normalize::with_identity(&text, &identity),
        );
        px.put_guest(vmid, g);
    }
    store.manage_with_identity(vmid, &identity, 0);
    identity
}

// ---------------------------------------------------------------------------------------------
// Store

#[derive(Debug)]
struct Reset {
    op_id: String,
    until: i64,
    used: Option<i64>,
}

fn desired_record(state: &NewDesiredState) -> DesiredStateRecord {
    DesiredStateRecord {
        generation: state.generation,
        sha256: state.sha256.clone(),
        body: state.body.clone(),
        source: state.source.clone(),
        accepted_at: state.accepted_at,
    }
}

#[derive(Debug, Default)]
struct Records {
    resets: Vec<Reset>,
    desired: Vec<DesiredStateRecord>,
    guests: BTreeMap<u32, GuestRecord>,
    ops: Vec<OpRecord>,
    audit: Vec<NewAuditEntry>,
    signed: HashMap<String, (OpState, Option<String>)>,
    fail_next: bool,
}

/// The journal's records in memory, with the journal's rules (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<Records>>,
}

/// What a failed fake write reports.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FakeStoreError(String);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next write fails (as a full disk would), recording nothing.
    pub fn fail_next_write(&self) {
        self.lock().fail_next = true;
    }

    /// One op.
    pub fn op(&self, op_id: &str) -> Option<OpRecord> {
        self.lock().ops.iter().find(|o| o.op_id == op_id).cloned()
    }

    /// Every op, oldest first.
    pub fn ops(&self) -> Vec<OpRecord> {
        self.lock().ops.clone()
    }

    /// Every audit entry, oldest first.
    pub fn audit_entries(&self) -> Vec<NewAuditEntry> {
        self.lock().audit.clone()
    }

    /// Records a guest as managed the way a version before 0.7.0 adopted it (named in a
    /// desired state; no identity yet).
    pub fn manage(&self, vmid: u32) {
        self.lock().guests.insert(
            vmid,
            GuestRecord {
                vmid,
                managed: true,
                adopted_generation: Some(1),
                adopted_op: None,
                created_by_op: None,
                scratch: false,
                first_seen: 0,
                last_seen: 0,
                identity: None,
                identity_at: None,
            },
        );
    }

    /// Records a guest as adopted by a signed op with `identity` since `since`.
    pub fn manage_with_identity(&self, vmid: u32, identity: &str, since: i64) {
        self.lock().guests.insert(
            vmid,
            GuestRecord {
                vmid,
                managed: true,
                adopted_generation: None,
                adopted_op: Some(format!("adopt-{vmid}")),
                created_by_op: None,
                scratch: false,
                first_seen: since,
                last_seen: since,
                identity: Some(identity.to_owned()),
                identity_at: Some(since),
            },
        );
    }

    /// Puts an op as a crashed agent left it (for recovery tests).
    pub fn put_op(&self, op: OpRecord) {
        self.lock().ops.push(op);
    }

    /// A signed op's recorded state and outcome.
    pub fn signed_state(&self, op_id: &str) -> Option<(OpState, Option<String>)> {
        self.lock().signed.get(op_id).cloned()
    }

    /// Runs one write under the store's rules: a pending injected failure fails it whole.
    fn write<T>(
        &self,
        what: &'static str,
        audit: Option<&NewAuditEntry>,
        f: impl FnOnce(&mut Records) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let mut r = self.lock();
        if std::mem::take(&mut r.fail_next) {
            return Err(StoreError::new(
                what,
                FakeStoreError("database or disk is full (injected)".into()),
            ));
        }
        let out = f(&mut r).map_err(|e| StoreError::new(what, FakeStoreError(e)))?;
        if let Some(a) = audit {
            r.audit.push(a.clone());
        }
        Ok(out)
    }
}

fn op_mut<'a>(r: &'a mut Records, op_id: &str) -> Result<&'a mut OpRecord, String> {
    r.ops
        .iter_mut()
        .find(|o| o.op_id == op_id)
        .ok_or_else(|| format!("no op {op_id}"))
}

fn step_mut<'a>(r: &'a mut Records, op_id: &str, idx: u32) -> Result<&'a mut StepRecord, String> {
    op_mut(r, op_id)?
        .steps
        .iter_mut()
        .find(|s| s.idx == idx)
        .ok_or_else(|| format!("no step {idx} of {op_id}"))
}

fn record_of(op: &NewOp) -> OpRecord {
    OpRecord {
        op_id: op.op_id.clone(),
        kind: op.kind,
        vmid: op.vmid,
        generation: op.generation,
        state: op.state,
        created_at: op.at,
        updated_at: op.at,
        error: None,
        steps: op
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRecord {
                idx: i as u32,
                kind: s.kind.clone(),
                params: s.params.clone(),
                state: StepStatus::Planned,
                upid: None,
                intent_at: None,
                posted_at: None,
                finished_at: None,
                exitstatus: None,
            })
            .collect(),
    }
}

impl Store for MemoryStore {
    fn latest_desired(&self) -> Result<Option<DesiredStateRecord>, StoreError> {
        Ok(self.lock().desired.last().cloned())
    }

    fn accept_desired(
        &self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.write("accepting a desired state", Some(audit), |r| {
            if r.desired
                .last()
                .is_some_and(|d| d.generation >= state.generation)
            {
                return Err("generation is not newer than the stored one".into());
            }
            r.desired.push(desired_record(state));
            Ok(())
        })
    }

    fn accept_desired_after_reset(
        &self,
        state: &NewDesiredState,
        now: i64,
        audit: &NewAuditEntry,
    ) -> Result<Option<String>, StoreError> {
        let armed = {
            let r = self.lock();
            r.resets
                .iter()
                .rev()
                .find(|x| x.used.is_none() && x.until >= now)
                .map(|x| x.op_id.clone())
        };
        let Some(op_id) = armed else {
            return Ok(None);
        };
        self.write(
            "accepting a desired state after a reset",
            Some(audit),
            |r| {
                r.desired.retain(|d| d.generation < state.generation);
                r.desired.push(desired_record(state));
                if let Some(x) = r.resets.iter_mut().find(|x| x.op_id == op_id) {
                    x.used = Some(now);
                }
                Ok(Some(op_id))
            },
        )
    }

    fn arm_desired_reset(
        &self,
        op_id: &str,
        _signer: &str,
        _at: i64,
        until: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.write("arming a desired-state reset", Some(audit), |r| {
            if !r.resets.iter().any(|x| x.op_id == op_id) {
                r.resets.push(Reset {
                    op_id: op_id.to_owned(),
                    until,
                    used: None,
                });
            }
            Ok(())
        })
    }

    fn adopt_guest(
        &self,
        vmid: u32,
        op_id: &str,
        identity: &str,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        if self.lock().guests.get(&vmid).is_some_and(|g| g.managed) {
            return Ok(false);
        }
        self.write("adopting a guest", Some(audit), |r| {
            r.guests.insert(
                vmid,
                GuestRecord {
                    vmid,
                    managed: true,
                    adopted_generation: None,
                    adopted_op: Some(op_id.to_owned()),
                    created_by_op: None,
                    scratch: false,
                    first_seen: at,
                    last_seen: at,
                    identity: Some(identity.to_owned()),
                    identity_at: Some(at),
                },
            );
            Ok(true)
        })
    }

    fn set_guest_identity(
        &self,
        vmid: u32,
        identity: &str,
        since: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.write("recording a guest's identity", None, |r| {
            match r.guests.get_mut(&vmid) {
                Some(g) if g.managed && g.identity.is_none() => {
                    g.identity = Some(identity.to_owned());
                    g.identity_at = Some(since);
                    g.last_seen = at;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        self.write("appending to the audit log", Some(entry), |_| Ok(()))
    }

    fn guests(&self) -> Result<Vec<GuestRecord>, StoreError> {
        Ok(self.lock().guests.values().cloned().collect())
    }

    fn release_guest(&self, vmid: u32, at: i64, audit: &NewAuditEntry) -> Result<(), StoreError> {
        self.write("releasing a guest", Some(audit), |r| {
            if let Some(g) = r.guests.get_mut(&vmid) {
                g.managed = false;
                g.scratch = false;
                g.identity = None;
                g.identity_at = None;
                g.last_seen = at;
            }
            for op in r
                .ops
                .iter_mut()
                .filter(|o| o.vmid == vmid && o.state == OpStatus::PendingSignature)
            {
                op.state = OpStatus::Abandoned;
                op.error = Some("guest released".into());
                op.updated_at = at;
            }
            Ok(())
        })
    }

    fn insert_op(&self, op: &NewOp, audit: &NewAuditEntry) -> Result<bool, StoreError> {
        if self.lock().ops.iter().any(|o| o.op_id == op.op_id) {
            return Ok(false);
        }
        self.write("recording an op", Some(audit), |r| {
            r.ops.push(record_of(op));
            Ok(true)
        })
    }

    fn insert_op_unless_open(
        &self,
        op: &NewOp,
        exclusive_step: &str,
        audit: &NewAuditEntry,
    ) -> Result<Result<(), String>, StoreError> {
        let open = self
            .lock()
            .ops
            .iter()
            .rev()
            .find(|o| {
                o.vmid == op.vmid
                    && matches!(o.state, OpStatus::Planned | OpStatus::Running)
                    && o.steps.iter().any(|s| s.kind == exclusive_step)
            })
            .map(|o| o.op_id.clone());
        if let Some(open) = open {
            return Ok(Err(open));
        }
        self.write("recording an op", Some(audit), |r| {
            r.ops.push(record_of(op));
            Ok(Ok(()))
        })
    }

    fn step_intent(
        &self,
        op_id: &str,
        idx: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.write("recording a step's intent", Some(audit), |r| {
            let step = step_mut(r, op_id, idx)?;
            if step.state != StepStatus::Planned {
                return Err(format!("step {idx} of {op_id} is not planned"));
            }
            step.state = StepStatus::Intent;
            step.intent_at = Some(at);
            let op = op_mut(r, op_id)?;
            op.state = OpStatus::Running;
            op.updated_at = at;
            Ok(())
        })
    }

    fn step_posted(
        &self,
        op_id: &str,
        idx: u32,
        upid: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.write("recording a step's task", None, |r| {
            let step = step_mut(r, op_id, idx)?;
            step.state = StepStatus::Posted;
            step.upid = upid.map(str::to_owned);
            step.posted_at = Some(at);
            Ok(())
        })
    }

    fn step_finished(
        &self,
        op_id: &str,
        idx: u32,
        state: StepStatus,
        exitstatus: Option<&str>,
        at: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        self.write("recording a step's end", audit, |r| {
            let step = step_mut(r, op_id, idx)?;
            step.state = state;
            step.exitstatus = exitstatus.map(str::to_owned);
            step.finished_at = Some(at);
            Ok(())
        })
    }

    fn finish_op(
        &self,
        op_id: &str,
        state: OpStatus,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.write("finishing an op", Some(audit), |r| {
            let op = op_mut(r, op_id)?;
            if state == OpStatus::Succeeded && op.steps.iter().any(|s| s.state != StepStatus::Done)
            {
                return Err(format!("{op_id} cannot succeed with steps not done"));
            }
            for s in op
                .steps
                .iter_mut()
                .filter(|s| s.state == StepStatus::Planned)
            {
                s.state = StepStatus::Skipped;
                s.finished_at = Some(at);
            }
            op.state = state;
            op.error = error.map(str::to_owned);
            op.updated_at = at;
            Ok(())
        })
    }

    fn upid_recorded(&self, upid: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .ops
            .iter()
            .flat_map(|o| o.steps.iter())
            .any(|s| s.upid.as_deref() == Some(upid)))
    }

    fn unfinished_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        Ok(self
            .lock()
            .ops
            .iter()
            .filter(|o| matches!(o.state, OpStatus::Planned | OpStatus::Running))
            .cloned()
            .collect())
    }

    fn pending_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        Ok(self
            .lock()
            .ops
            .iter()
            .filter(|o| o.state == OpStatus::PendingSignature)
            .cloned()
            .collect())
    }

    fn set_signed_op_state(
        &self,
        op_id: &str,
        state: OpState,
        outcome: Option<&str>,
        _at: i64,
    ) -> Result<(), StoreError> {
        self.write("recording a signed op's outcome", None, |r| {
            r.signed
                .insert(op_id.to_owned(), (state, outcome.map(str::to_owned)));
            Ok(())
        })
    }
}
