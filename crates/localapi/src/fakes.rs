//! In-memory implementations of every port, with injectable faults and latency, for tests and
//! the load benchmark. [`FakeGuests`] models the per-guest queue the reconcile engine provides:
//! mutations of one guest run one at a time (it counts any overlap it sees), different guests
//! in parallel.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pve::{SnapshotName, Vmid};

use crate::policy::BackupPolicy;
use crate::ports::{
    Audit, AuditEvent, BackupState, BackupStatus, CallSummary, Clock, GuestMount, GuestOps,
    GuestView, OpAccepted, OpDone, OpError, PortError, PortFuture, RestoreTestState,
    RestoreTestStatus, SystemClock, TokenId, TokenRecord, TokenState, TokenStore,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Test doubles: a panic elsewhere must not hide the state from the assertion that follows.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------

/// Tokens in a map. `set_failing(true)` makes every call fail.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    records: Mutex<BTreeMap<TokenId, TokenRecord>>,
    failing: AtomicBool,
}

impl MemoryTokenStore {
    /// Makes every call fail (a broken database).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), PortError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(PortError::new("tokens", "injected failure"));
        }
        Ok(())
    }
}

impl TokenStore for MemoryTokenStore {
    fn insert(&self, record: &TokenRecord) -> Result<(), PortError> {
        self.check()?;
        let mut records = lock(&self.records);
        if records.contains_key(&record.id) {
            return Err(PortError::new(
                "tokens",
                format!("token id {} exists", record.id),
            ));
        }
        records.insert(record.id, record.clone());
        Ok(())
    }

    fn lookup(&self, id: TokenId) -> Result<Option<TokenRecord>, PortError> {
        self.check()?;
        Ok(lock(&self.records).get(&id).cloned())
    }

    fn revoke(&self, id: TokenId, at: SystemTime) -> Result<bool, PortError> {
        self.check()?;
        let mut records = lock(&self.records);
        match records.get_mut(&id) {
            Some(r) if r.state == TokenState::Active => {
                r.state = TokenState::Revoked;
                r.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn revoke_all(&self, vmid: Vmid, at: SystemTime) -> Result<usize, PortError> {
        self.check()?;
        let mut n = 0;
        for r in lock(&self.records).values_mut() {
            if r.vmid == vmid && r.state == TokenState::Active {
                r.state = TokenState::Revoked;
                r.revoked_at = Some(at);
                n += 1;
            }
        }
        Ok(n)
    }

    fn list(&self) -> Result<Vec<TokenRecord>, PortError> {
        self.check()?;
        Ok(lock(&self.records).values().cloned().collect())
    }
}

// ---------------------------------------------------------------------------------------------

/// What the server asked [`FakeGuests`] to do, in order of asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The guest.
    pub vmid: Vmid,
    /// `list_snapshots`, `snapshot`, `rollback`, `backup`, `storage`, `backup_policy`,
    /// `backup_status`, `restore_test_status`.
    pub action: &'static str,
    /// The snapshot name, for snapshot and rollback.
    pub name: Option<String>,
}

/// One mutation as the fake queue executed it.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The guest.
    pub vmid: Vmid,
    /// `snapshot`, `rollback`, `backup`.
    pub action: &'static str,
    /// When it started running.
    pub started: Instant,
    /// When it ended.
    pub ended: Instant,
}

/// A guest as the fake knows it.
#[derive(Debug, Clone)]
pub struct FakeGuest {
    /// Mounts for `GET /storage`.
    pub mounts: Vec<GuestMount>,
    /// Existing snapshots (made through the local API, as far as rollback is concerned).
    pub snapshots: Vec<SnapshotName>,
    /// Which of `snapshots` someone else made (root, an operator): no rollback to those.
    pub foreign_snapshots: Vec<SnapshotName>,
    /// Backup policy.
    pub policy: Option<BackupPolicy>,
    /// Latest backup.
    pub backup: BackupStatus,
    /// Latest restore test.
    pub restore_test: RestoreTestStatus,
}

impl Default for FakeGuest {
    fn default() -> Self {
        FakeGuest {
            mounts: Vec::new(),
            snapshots: Vec::new(),
            foreign_snapshots: Vec::new(),
            policy: None,
            backup: BackupStatus::never(),
            restore_test: RestoreTestStatus {
                state: RestoreTestState::Never,
                last_run_at: None,
                last_pass_at: None,
            },
        }
    }
}

#[derive(Default)]
struct Inner {
    guests: Mutex<HashMap<Vmid, FakeGuest>>,
    queues: Mutex<HashMap<Vmid, Arc<tokio::sync::Mutex<()>>>>,
    running: Mutex<HashMap<Vmid, usize>>,
    calls: Mutex<Vec<Call>>,
    executions: Mutex<Vec<Execution>>,
    overlaps: AtomicUsize,
    next_op: AtomicU64,
    op_latency_ms: AtomicU64,
    read_latency_us: AtomicU64,
    busy: Mutex<HashMap<Vmid, bool>>,
    failing_reads: AtomicBool,
    failing_ops: AtomicBool,
    pending: Mutex<HashMap<Vmid, usize>>,
}

/// Guests in memory, implementing [`GuestOps`] and [`GuestView`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct FakeGuests {
    inner: Arc<Inner>,
    clock: Arc<dyn Clock>,
}

impl Default for FakeGuests {
    fn default() -> Self {
        FakeGuests::new(Arc::new(SystemClock))
    }
}

impl FakeGuests {
    /// No guests yet; times come from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        FakeGuests {
            inner: Arc::new(Inner::default()),
            clock,
        }
    }

    /// Adds (or replaces) a guest.
    pub fn add(&self, vmid: Vmid, guest: FakeGuest) {
        lock(&self.inner.guests).insert(vmid, guest);
    }

    /// Removes a guest (it was destroyed).
    pub fn destroy(&self, vmid: Vmid) {
        lock(&self.inner.guests).remove(&vmid);
    }

    /// A copy of a guest's state.
    pub fn guest(&self, vmid: Vmid) -> Option<FakeGuest> {
        lock(&self.inner.guests).get(&vmid).cloned()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.calls).clone()
    }

    /// Every executed mutation so far.
    pub fn executions(&self) -> Vec<Execution> {
        lock(&self.inner.executions).clone()
    }

    /// How many times a mutation started while another of the same guest was running.
    pub fn overlaps(&self) -> usize {
        self.inner.overlaps.load(Ordering::SeqCst)
    }

    /// How long each mutation runs.
    pub fn set_op_latency(&self, d: Duration) {
        self.inner
            .op_latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// How long each read takes.
    pub fn set_read_latency(&self, d: Duration) {
        self.inner
            .read_latency_us
            .store(d.as_micros() as u64, Ordering::SeqCst);
    }

    /// Makes mutations of `vmid` answer [`OpError::Busy`].
    pub fn set_busy(&self, vmid: Vmid, busy: bool) {
        lock(&self.inner.busy).insert(vmid, busy);
    }

    /// Makes every read fail.
    pub fn set_failing_reads(&self, failing: bool) {
        self.inner.failing_reads.store(failing, Ordering::SeqCst);
    }

    /// Makes every mutation fail when it runs.
    pub fn set_failing_ops(&self, failing: bool) {
        self.inner.failing_ops.store(failing, Ordering::SeqCst);
    }

    /// Waits until no mutation is queued or running.
    pub async fn idle(&self) {
        loop {
            let pending: usize = lock(&self.inner.pending).values().sum();
            if pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn record(&self, vmid: Vmid, action: &'static str, name: Option<&SnapshotName>) {
        lock(&self.inner.calls).push(Call {
            vmid,
            action,
            name: name.map(|n| n.as_str().to_owned()),
        });
    }

    async fn read<T>(
        &self,
        vmid: Vmid,
        action: &'static str,
        f: impl FnOnce(&FakeGuest) -> T,
    ) -> Result<T, PortError> {
        self.record(vmid, action, None);
        let us = self.inner.read_latency_us.load(Ordering::SeqCst);
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if self.inner.failing_reads.load(Ordering::SeqCst) {
            return Err(PortError::new("guests", "injected read failure"));
        }
        let guests = lock(&self.inner.guests);
        let guest = guests
            .get(&vmid)
            .ok_or_else(|| PortError::new("guests", format!("no guest {}", vmid.get())))?;
        Ok(f(guest))
    }

    fn op_id(&self) -> String {
        format!(
            "op-{}",
            self.inner.next_op.fetch_add(1, Ordering::SeqCst) + 1
        )
    }

    /// Checks the guest and the busy fault, then counts the op as pending.
    fn admit(&self, vmid: Vmid) -> Result<(), OpError> {
        if !lock(&self.inner.guests).contains_key(&vmid) {
            return Err(OpError::GuestGone { vmid });
        }
        if lock(&self.inner.busy).get(&vmid).copied().unwrap_or(false) {
            return Err(OpError::Busy {
                vmid,
                retry_after: Duration::from_secs(2),
            });
        }
        *lock(&self.inner.pending).entry(vmid).or_default() += 1;
        Ok(())
    }

    /// Runs `apply` as the guest's next queued mutation.
    async fn run_queued(
        &self,
        vmid: Vmid,
        action: &'static str,
        apply: impl FnOnce(&mut FakeGuest, SystemTime),
    ) -> Result<(), OpError> {
        let queue = lock(&self.inner.queues)
            .entry(vmid)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let result = {
            let _turn = queue.lock().await;
            {
                let mut running = lock(&self.inner.running);
                let n = running.entry(vmid).or_default();
                if *n > 0 {
                    self.inner.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                *n += 1;
            }
            let started = Instant::now();
            let ms = self.inner.op_latency_ms.load(Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let result = if self.inner.failing_ops.load(Ordering::SeqCst) {
                Err(OpError::Failed {
                    vmid,
                    action,
                    reason: "injected failure".into(),
                })
            } else {
                match lock(&self.inner.guests).get_mut(&vmid) {
                    Some(g) => {
                        apply(g, self.clock.now());
                        Ok(())
                    }
                    None => Err(OpError::GuestGone { vmid }),
                }
            };
            *lock(&self.inner.running).entry(vmid).or_default() -= 1;
            lock(&self.inner.executions).push(Execution {
                vmid,
                action,
                started,
                ended: Instant::now(),
            });
            result
        };
        *lock(&self.inner.pending).entry(vmid).or_default() -= 1;
        result
    }
}

impl GuestOps for FakeGuests {
    fn list_snapshots(&self, vmid: Vmid) -> PortFuture<'_, Result<Vec<SnapshotName>, PortError>> {
        Box::pin(self.read(vmid, "list_snapshots", |g| g.snapshots.clone()))
    }

    fn snapshot(&self, vmid: Vmid, name: SnapshotName) -> PortFuture<'_, Result<OpDone, OpError>> {
        Box::pin(async move {
            self.record(vmid, "snapshot", Some(&name));
            if let Some(g) = lock(&self.inner.guests).get(&vmid) {
                if g.snapshots.contains(&name) {
                    return Err(OpError::Conflict {
                        vmid,
                        what: format!("snapshot {name}"),
                    });
                }
            }
            self.admit(vmid)?;
            let op_id = self.op_id();
            // Like the real queue, the op runs to its end even if the caller stops waiting.
            let this = self.clone();
            let task = tokio::spawn(async move {
                this.run_queued(vmid, "snapshot", move |g, _| g.snapshots.push(name))
                    .await
            });
            match task.await {
                Ok(result) => result.map(|()| OpDone { op_id }),
                Err(join) => Err(OpError::Failed {
                    vmid,
                    action: "snapshot",
                    reason: join.to_string(),
                }),
            }
        })
    }

    fn rollback(
        &self,
        vmid: Vmid,
        name: SnapshotName,
    ) -> PortFuture<'_, Result<OpAccepted, OpError>> {
        Box::pin(async move {
            self.record(vmid, "rollback", Some(&name));
            let foreign = lock(&self.inner.guests)
                .get(&vmid)
                .is_some_and(|g| g.foreign_snapshots.contains(&name));
            if foreign {
                return Err(OpError::RollbackNotAllowed { vmid, name });
            }
            self.admit(vmid)?;
            let op_id = self.op_id();
            let this = self.clone();
            tokio::spawn(async move {
                // Rolling back discards the snapshots taken after `name`.
                let _ = this
                    .run_queued(vmid, "rollback", move |g, _| {
                        if let Some(pos) = g.snapshots.iter().position(|s| *s == name) {
                            g.snapshots.truncate(pos + 1);
                        }
                    })
                    .await;
            });
            Ok(OpAccepted { op_id })
        })
    }

    fn backup(&self, vmid: Vmid) -> PortFuture<'_, Result<OpAccepted, OpError>> {
        Box::pin(async move {
            self.record(vmid, "backup", None);
            {
                let mut guests = lock(&self.inner.guests);
                let Some(g) = guests.get_mut(&vmid) else {
                    return Err(OpError::GuestGone { vmid });
                };
                // As the agent: no policy, no target.
                if g.policy.is_none() {
                    return Err(OpError::NoBackupPolicy { vmid });
                }
                if matches!(g.backup.state, BackupState::Queued | BackupState::Running) {
                    return Err(OpError::Conflict {
                        vmid,
                        what: "queued backup".into(),
                    });
                }
            }
            self.admit(vmid)?;
            let op_id = self.op_id();
            if let Some(g) = lock(&self.inner.guests).get_mut(&vmid) {
                g.backup.state = BackupState::Queued;
                g.backup.op_id = Some(op_id.clone());
                g.backup.started_at = None;
                g.backup.finished_at = None;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let result = this
                    .run_queued(vmid, "backup", |g, now| {
                        g.backup.state = BackupState::Succeeded;
                        g.backup.started_at = Some(now);
                        g.backup.finished_at = Some(now);
                        g.backup.last_success_at = Some(now);
                    })
                    .await;
                if result.is_err() {
                    if let Some(g) = lock(&this.inner.guests).get_mut(&vmid) {
                        g.backup.state = BackupState::Failed;
                    }
                }
            });
            Ok(OpAccepted { op_id })
        })
    }
}

impl GuestView for FakeGuests {
    fn guest_exists(&self, vmid: Vmid) -> PortFuture<'_, Result<bool, PortError>> {
        Box::pin(async move {
            if self.inner.failing_reads.load(Ordering::SeqCst) {
                return Err(PortError::new("guests", "injected read failure"));
            }
            Ok(lock(&self.inner.guests).contains_key(&vmid))
        })
    }

    fn storage(&self, vmid: Vmid) -> PortFuture<'_, Result<Vec<GuestMount>, PortError>> {
        Box::pin(self.read(vmid, "storage", |g| g.mounts.clone()))
    }

    fn backup_policy(&self, vmid: Vmid) -> PortFuture<'_, Result<Option<BackupPolicy>, PortError>> {
        Box::pin(self.read(vmid, "backup_policy", |g| g.policy.clone()))
    }

    fn backup_status(&self, vmid: Vmid) -> PortFuture<'_, Result<BackupStatus, PortError>> {
        Box::pin(self.read(vmid, "backup_status", |g| g.backup.clone()))
    }

    fn restore_test_status(
        &self,
        vmid: Vmid,
    ) -> PortFuture<'_, Result<RestoreTestStatus, PortError>> {
        Box::pin(self.read(vmid, "restore_test_status", |g| g.restore_test.clone()))
    }
}

// ---------------------------------------------------------------------------------------------

/// Audit events and summaries in lists.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
    summaries: Mutex<Vec<CallSummary>>,
}

impl MemoryAudit {
    /// Every event so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        lock(&self.events).clone()
    }

    /// Every summary so far.
    pub fn summaries(&self) -> Vec<CallSummary> {
        lock(&self.summaries).clone()
    }
}

impl Audit for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        lock(&self.events).push(event);
    }

    fn summary(&self, summary: CallSummary) {
        lock(&self.summaries).push(summary);
    }
}

// ---------------------------------------------------------------------------------------------

/// A clock that moves only when told (wall and monotonic time together).
#[derive(Debug)]
pub struct FakeClock {
    wall: SystemTime,
    mono: Instant,
    offset: Mutex<Duration>,
}

impl Default for FakeClock {
    /// Starts at 2026-01-10T00:00:00Z.
    fn default() -> Self {
        FakeClock::at(UNIX_EPOCH + Duration::from_secs(1_768_003_200))
    }
}

impl FakeClock {
    /// Starts at `wall`.
    pub fn at(wall: SystemTime) -> Self {
        FakeClock {
            wall,
            mono: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        *lock(&self.offset) += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        self.wall + *lock(&self.offset)
    }

    fn monotonic(&self) -> Instant {
        self.mono + *lock(&self.offset)
    }
}
