//! The local API wired into the agent (DESIGN.md §3.6, §4.4a; docs/local-api.md): the
//! `localapi` crate's ports implemented on the journal, the reconcile engine's per-guest queues
//! and the Proxmox client, and [`start`], which the daemon calls after building the engine.
//!
//! - [`JournalTokens`]: tokens in the journal (`local_api_tokens`, only a hash of each secret);
//!   minting and revoking are audited.
//! - [`JournalAudit`] (in `localapi_audit.rs`): every call into the journal's hash-chained
//!   audit log, batched by a writer thread of its own; a mutation's record is never dropped.
//! - [`HandleOps`]: snapshot, rollback and backup submitted through the reconcile engine's
//!   [`AgentHandle`]: journaled as ops of kind `local_api`, run by the one executor in the
//!   guest's queue (never overlapping a reconcile step or an operator op on the same guest),
//!   recovered after a crash like every other op. This module posts nothing to Proxmox itself.
//! - [`GuestFacts`]: `guest_exists` (managed in the journal and present in Proxmox), the backup
//!   policy (the `backup` section of the last accepted desired state), the backup status (the
//!   journal: the latest op with a `vzdump` step, whoever asked for it). `storage` is empty and
//!   `restore_test_status` is `never` until those capabilities land.
//!
//! Start reading at [`start`], then [`HandleOps`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use journal::{Journal, JournalError, LocalApiToken, NewAuditEntry, OpRecord, OpStatus};
use localapi::{
    BackupPolicy, BackupSection, BackupState, BackupStatus, GuestMount, GuestOps, GuestView,
    Limits, OpAccepted, OpDone, OpError, PortError, PortFuture, Ports, RestoreTestState,
    RestoreTestStatus, SystemClock, TokenHash, TokenId, TokenRecord, TokenState, TokenStore,
};
use pve::{SnapshotName, Vmid};
use reconcile::{GuestOp, OpFailure, OpTicket, Origin, SubmitError};

use crate::config::Config;
use crate::journal_handle::JournalHandle;

pub use crate::localapi_audit::{JournalAudit, AUDIT_KIND};
/// `Retry-After` when the guest's queue is full or the guest is locked.
const BUSY_RETRY: Duration = Duration::from_secs(5);
/// A positive `guest_exists` answer is reused this long (it is asked on every call).
const EXISTS_TTL: Duration = Duration::from_secs(5);
/// The step of a backup op in the journal.
const BACKUP_STEP: &str = "vzdump";

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_unix(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn now() -> i64 {
    unix(SystemTime::now())
}

fn tokens_err(what: &str, source: JournalError) -> PortError {
    PortError::with_source("tokens", what, source)
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// [`TokenStore`] on the journal. `actor` names who mints and revokes in the audit log
/// (`cli` for the command line, `agent` for the daemon's own revocations).
pub struct JournalTokens {
    journal: JournalHandle,
    actor: &'static str,
}

impl JournalTokens {
    /// A store over `journal`, auditing its changes as `actor`.
    pub fn new(journal: JournalHandle, actor: &'static str) -> Self {
        JournalTokens { journal, actor }
    }
}

fn record_of(t: LocalApiToken) -> Result<TokenRecord, PortError> {
    let bad = |what: &str| PortError::new("tokens", format!("stored token {}: {what}", t.id));
    let id: TokenId = t.id.parse().map_err(|_| bad("malformed id"))?;
    let vmid = Vmid::new(t.vmid).map_err(|_| bad("invalid vmid"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&t.hash, &mut hash).map_err(|_| bad("malformed hash"))?;
    Ok(TokenRecord {
        id,
        vmid,
        hash: TokenHash::from_bytes(hash),
        state: if t.revoked_at.is_some() {
            TokenState::Revoked
        } else {
            TokenState::Active
        },
        created_at: from_unix(t.created_at),
        revoked_at: t.revoked_at.map(from_unix),
    })
}

impl TokenStore for JournalTokens {
    fn insert(&self, record: &TokenRecord) -> Result<(), PortError> {
        let row = LocalApiToken {
            id: record.id.to_string(),
            vmid: record.vmid.get(),
            hash: hex::encode(record.hash.as_bytes()),
            created_at: unix(record.created_at),
            revoked_at: record.revoked_at.map(unix),
        };
        let audit = NewAuditEntry::new(now(), AUDIT_KIND, "ok")
            .actor(self.actor)
            .action("token.mint")
            .vmid(row.vmid)
            .detail(format!("token id {}", row.id));
        self.journal
            .with(|j| j.insert_local_api_token(&row, &audit))
            .map_err(|e| tokens_err("storing a token", e))
    }

    fn lookup(&self, id: TokenId) -> Result<Option<TokenRecord>, PortError> {
        let row = self
            .journal
            .read(|j| j.local_api_token(&id.to_string()))
            .map_err(|e| tokens_err("reading a token", e))?;
        row.map(record_of).transpose()
    }

    fn revoke(&self, id: TokenId, at: SystemTime) -> Result<bool, PortError> {
        self.journal.with(|journal| {
            let vmid = journal
                .local_api_token(&id.to_string())
                .map_err(|e| tokens_err("reading a token", e))?
                .map(|t| t.vmid);
            let audit = NewAuditEntry::new(now(), AUDIT_KIND, "ok")
                .actor(self.actor)
                .action("token.revoke")
                .vmid(vmid)
                .detail(format!("token id {id}"));
            journal
                .revoke_local_api_token(&id.to_string(), unix(at), &audit)
                .map_err(|e| tokens_err("revoking a token", e))
        })
    }

    fn revoke_all(&self, vmid: Vmid, at: SystemTime) -> Result<usize, PortError> {
        let audit = NewAuditEntry::new(now(), AUDIT_KIND, "ok")
            .actor(self.actor)
            .action("token.revoke_guest")
            .vmid(vmid.get());
        self.journal
            .with(|j| j.revoke_local_api_tokens_of(vmid.get(), unix(at), &audit))
            .map_err(|e| tokens_err("revoking a guest's tokens", e))
    }

    fn list(&self) -> Result<Vec<TokenRecord>, PortError> {
        let rows = self
            .journal
            .with(|j| j.local_api_tokens())
            .map_err(|e| tokens_err("listing tokens", e))?;
        rows.into_iter().map(record_of).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state of the ops and the view

/// The engine handle the daemon wires in: the executor over the Proxmox client and the journal.
pub type AgentHandle =
    reconcile::EngineHandle<crate::pve_port::PveProxmox, crate::journal_port::JournalStore>;

struct Shared {
    journal: JournalHandle,
    handle: AgentHandle,
    /// For reads only (guest status, snapshot names); every mutation goes through `handle`.
    client: pve::Client,
    /// The parsed `backup` section and the generation it came from.
    backup: Mutex<Option<(u64, Option<Arc<BackupSection>>)>>,
    /// Guests recently seen to exist, and when.
    seen: Mutex<std::collections::HashMap<u32, Instant>>,
}

impl Shared {
    /// The `backup` section of the last accepted desired state (re-parsed when the generation
    /// changes).
    fn backup_section(&self) -> Result<Option<Arc<BackupSection>>, PortError> {
        let err = |what: &str, e: JournalError| PortError::with_source("guests", what, e);
        let generation = self
            .journal
            .read(|j| j.latest_desired_generation())
            .map_err(|e| err("reading the desired generation", e))?;
        let Some(generation) = generation else {
            return Ok(None);
        };
        let mut cache = self.backup.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, section)) = cache.as_ref() {
            if *g == generation {
                return Ok(section.clone());
            }
        }
        let record = self
            .journal
            .read(|j| j.latest_desired_state())
            .map_err(|e| err("reading the desired state", e))?;
        let Some(record) = record else {
            return Ok(None);
        };
        // The journal holds only accepted documents, so this parse succeeds unless the file
        // was edited behind the agent's back; then no backup answer is better than a guess.
        let doc = reconcile::parse_desired(record.body.as_bytes()).map_err(|e| {
            PortError::with_source(
                "guests",
                format!("parsing desired state generation {}", record.generation),
                e,
            )
        })?;
        let section = doc.backup.map(Arc::new);
        *cache = Some((record.generation, section.clone()));
        Ok(section)
    }

    /// The snapshots of `vmid` the journal says were made through the local API, oldest
    /// first: those whose latest succeeded create-or-delete op is a local-API snapshot. One
    /// root or an operator made (even reusing a deleted local-API snapshot's name through the
    /// agent) is not one. Made by hand outside the agent after a local-API one of the same name
    /// was deleted by hand too: not detectable here. Whether each still exists is Proxmox's to
    /// say.
    fn local_snapshots(&self, vmid: Vmid) -> Result<Vec<String>, PortError> {
        let ops = self
            .journal
            .read(|j| j.snapshot_ops(vmid.get()))
            .map_err(|e| PortError::with_source("ops", "reading the guest's snapshot ops", e))?;
        // name -> (made through the local API, when); later ops overwrite earlier ones.
        let mut latest: std::collections::HashMap<String, (bool, i64)> = Default::default();
        for op in ops
            .iter()
            .filter(|op| op.state == journal::OpStatus::Succeeded)
        {
            for step in &op.steps {
                if !matches!(step.kind.as_str(), "snapshot" | "delete_snapshot") {
                    continue;
                }
                let params: serde_json::Value =
                    serde_json::from_str(&step.params).unwrap_or_default();
                if let Some(name) = params.get("name").and_then(|n| n.as_str()) {
                    let ours = op.kind == journal::OpKind::LocalApi && step.kind == "snapshot";
                    latest.insert(name.to_owned(), (ours, op.created_at));
                }
            }
        }
        let mut ours: Vec<(i64, String)> = latest
            .into_iter()
            .filter(|(_, (ours, _))| *ours)
            .map(|(name, (_, at))| (at, name))
            .collect();
        ours.sort();
        Ok(ours.into_iter().map(|(_, name)| name).collect())
    }

    fn made_through_local_api(&self, vmid: Vmid, name: &SnapshotName) -> Result<bool, PortError> {
        Ok(self
            .local_snapshots(vmid)?
            .iter()
            .any(|n| n == name.as_str()))
    }

    /// A controller's `POST /backup` runs when the policy says one is due, or when the last
    /// success is at least [`MIN_BACKUP_SPACING`] old: a compromised controller cannot fill
    /// the target with backups. An open backup is left to the submission's conflict answer.
    fn backup_spacing(&self, vmid: Vmid, policy: &BackupPolicy) -> Result<(), OpError> {
        let err = |e| PortError::with_source("guests", "reading backups", e);
        let (open, last) = self.journal.read(|j| {
            let open = j
                .latest_op_with_step(vmid.get(), BACKUP_STEP)
                .map_err(err)?
                .is_some_and(|op| !op.state.is_final());
            let last = j.last_step_done(vmid.get(), BACKUP_STEP).map_err(err)?;
            Ok::<_, OpError>((open, last))
        })?;
        let (Some(last), false) = (last, open) else {
            return Ok(());
        };
        let now = SystemTime::now();
        let last = from_unix(last);
        let due = localapi::is_due(policy, Some(last), now);
        let spaced_at = last + MIN_BACKUP_SPACING;
        if due.due || now >= spaced_at {
            return Ok(());
        }
        let next = due.next_at.map_or(spaced_at, |n| n.min(spaced_at));
        Err(OpError::BackupNotDue {
            vmid,
            retry_after: next.duration_since(now).unwrap_or(Duration::from_secs(1)),
        })
    }

    fn backup_policy(&self, vmid: Vmid) -> Result<Option<BackupPolicy>, PortError> {
        Ok(self
            .backup_section()?
            .and_then(|s| s.policy_for(vmid).cloned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Ops

/// [`GuestOps`] through the engine handle.
#[derive(Clone)]
pub struct HandleOps {
    shared: Arc<Shared>,
}

/// [`GuestView`] on the journal and Proxmox.
#[derive(Clone)]
pub struct GuestFacts {
    shared: Arc<Shared>,
}

/// The shortest time between two controller-requested backups of a guest that are not due
/// by its policy (issue 11 item 8).
pub const MIN_BACKUP_SPACING: Duration = Duration::from_secs(3600);

/// Local-API snapshots a guest may hold at once (issue 11 item 8: one token made 40 in a
/// row). Snapshots root or an operator made do not count.
pub const MAX_LOCAL_API_SNAPSHOTS: usize = 10;

fn submit_error(vmid: Vmid, e: SubmitError) -> OpError {
    match e {
        SubmitError::Busy(_) => OpError::Busy {
            vmid,
            retry_after: BUSY_RETRY,
        },
        SubmitError::Conflict { what, .. } => OpError::Conflict { vmid, what },
        SubmitError::Journal(source) => {
            OpError::Port(PortError::with_source("ops", "journaling an op", source))
        }
    }
}

fn op_failure(vmid: Vmid, e: OpFailure) -> OpError {
    match e {
        OpFailure::GuestGone { .. } => OpError::GuestGone { vmid },
        OpFailure::Locked { .. } => OpError::Busy {
            vmid,
            retry_after: BUSY_RETRY,
        },
        OpFailure::Conflict { what, .. } => OpError::Conflict { vmid, what },
        OpFailure::Failed { action, reason, .. } => OpError::Failed {
            vmid,
            action,
            reason,
        },
    }
}

impl HandleOps {
    fn submit(&self, vmid: Vmid, op: GuestOp) -> Result<OpTicket, OpError> {
        self.shared
            .handle
            .submit(Origin::LocalApi, vmid.get(), op)
            .map_err(|e| submit_error(vmid, e))
    }
}

impl GuestOps for HandleOps {
    fn list_snapshots(&self, vmid: Vmid) -> PortFuture<'_, Result<Vec<SnapshotName>, PortError>> {
        Box::pin(async move {
            let list = self
                .shared
                .client
                .list_snapshots(vmid)
                .await
                .map_err(|e| PortError::with_source("ops", "listing snapshots", e))?;
            // A name PVE holds but the local API could not express cannot be asked for anyway.
            Ok(list.iter().filter_map(|s| s.name.parse().ok()).collect())
        })
    }

    fn snapshot(&self, vmid: Vmid, name: SnapshotName) -> PortFuture<'_, Result<OpDone, OpError>> {
        Box::pin(async move {
            // A compromised controller must not fill the guest's storage with snapshots: past
            // the cap, an operator deletes one (the oldest is named) before the next.
            let existing = self.list_snapshots(vmid).await?;
            let ours: Vec<String> = self
                .shared
                .local_snapshots(vmid)?
                .into_iter()
                .filter(|n| existing.iter().any(|e| e.as_str() == n))
                .collect();
            if ours.len() >= MAX_LOCAL_API_SNAPSHOTS {
                if let Some(oldest) = ours.first().and_then(|n| n.parse().ok()) {
                    return Err(OpError::SnapshotLimit {
                        vmid,
                        limit: MAX_LOCAL_API_SNAPSHOTS,
                        oldest,
                    });
                }
            }
            let ticket = self.submit(
                vmid,
                GuestOp::Snapshot {
                    name,
                    description: "taken through the felhom local api".into(),
                },
            )?;
            let op_id = ticket.op_id.clone();
            ticket.finished().await.map_err(|e| op_failure(vmid, e))?;
            Ok(OpDone { op_id })
        })
    }

    fn rollback(
        &self,
        vmid: Vmid,
        name: SnapshotName,
    ) -> PortFuture<'_, Result<OpAccepted, OpError>> {
        Box::pin(async move {
            if !self.shared.made_through_local_api(vmid, &name)? {
                return Err(OpError::RollbackNotAllowed { vmid, name });
            }
            let ticket = self.submit(vmid, GuestOp::Rollback { name })?;
            Ok(OpAccepted {
                op_id: ticket.op_id,
            })
        })
    }

    fn backup(&self, vmid: Vmid) -> PortFuture<'_, Result<OpAccepted, OpError>> {
        Box::pin(async move {
            // Without a policy there is no target: refuse rather than guess a storage.
            let Some(policy) = self.shared.backup_policy(vmid)? else {
                return Err(OpError::NoBackupPolicy { vmid });
            };
            self.shared.backup_spacing(vmid, &policy)?;
            // vzdump never prunes (`remove=0`); the op's second step prunes by the agent's
            // own retention for this policy (`BackupPolicy::retention`).
            let keep = Some(policy.retention());
            let ticket = self.submit(
                vmid,
                GuestOp::Backup {
                    storage: policy.target,
                    keep,
                },
            )?;
            Ok(OpAccepted {
                op_id: ticket.op_id,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// View

impl GuestView for GuestFacts {
    fn guest_exists(&self, vmid: Vmid) -> PortFuture<'_, Result<bool, PortError>> {
        Box::pin(async move {
            let shared = &self.shared;
            // Seen in Proxmox moments ago, and still managed then: a release since would have
            // revoked the caller's token in the same transaction, so the request would not be
            // here.
            {
                let seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen
                    .get(&vmid.get())
                    .is_some_and(|at| at.elapsed() < EXISTS_TTL)
                {
                    return Ok(true);
                }
            }
            // `false` revokes the caller's tokens, so it is answered only when certain: the
            // journal says the guest is not managed, or Proxmox says it does not exist.
            let managed = shared
                .journal
                .read(|j| j.guests())
                .map_err(|e| PortError::with_source("guests", "reading provenance", e))?
                .iter()
                .any(|g| g.vmid == vmid.get() && g.managed);
            if !managed {
                return Ok(false);
            }
            match shared.client.lxc_status(vmid).await {
                Ok(_) => {
                    let mut seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.insert(vmid.get(), Instant::now());
                    Ok(true)
                }
                Err(pve::Error::NoSuchGuest { .. }) => Ok(false),
                Err(e) => Err(PortError::with_source("guests", "reading guest status", e)),
            }
        })
    }

    fn storage(&self, _vmid: Vmid) -> PortFuture<'_, Result<Vec<GuestMount>, PortError>> {
        // The storage capability (seed §7: targets, classes, mount points) has not landed;
        // until it does no guest has mounts the agent manages.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn backup_policy(&self, vmid: Vmid) -> PortFuture<'_, Result<Option<BackupPolicy>, PortError>> {
        Box::pin(async move { self.shared.backup_policy(vmid) })
    }

    fn backup_status(&self, vmid: Vmid) -> PortFuture<'_, Result<BackupStatus, PortError>> {
        Box::pin(async move {
            let err = |e| PortError::with_source("guests", "reading backups", e);
            self.shared.journal.read(|j| {
                let latest = j
                    .latest_op_with_step(vmid.get(), BACKUP_STEP)
                    .map_err(err)?;
                let last_success = j.last_step_done(vmid.get(), BACKUP_STEP).map_err(err)?;
                Ok(backup_status_of(latest, last_success))
            })
        })
    }

    fn restore_test_status(
        &self,
        _vmid: Vmid,
    ) -> PortFuture<'_, Result<RestoreTestStatus, PortError>> {
        // The restore-test capability (seed §8) has not landed: no test has ever run.
        Box::pin(async {
            Ok(RestoreTestStatus {
                state: RestoreTestState::Never,
                last_run_at: None,
                last_pass_at: None,
            })
        })
    }
}

fn backup_status_of(latest: Option<OpRecord>, last_success: Option<i64>) -> BackupStatus {
    let Some(op) = latest else {
        return BackupStatus::never();
    };
    // The backup is the vzdump step: done means the archive exists, whatever became of the
    // prune after it (failed, or skipped by a restart; the next backup prunes again).
    let vzdump = op.steps.iter().find(|s| s.kind == BACKUP_STEP);
    if let Some(step) = vzdump.filter(|s| s.state == journal::StepStatus::Done) {
        return BackupStatus {
            state: BackupState::Succeeded,
            started_at: step.intent_at.map(from_unix),
            finished_at: step.finished_at.map(from_unix),
            op_id: Some(op.op_id),
            last_success_at: last_success.map(from_unix),
        };
    }
    let state = match op.state {
        OpStatus::Planned | OpStatus::PendingSignature => BackupState::Queued,
        OpStatus::Running => BackupState::Running,
        OpStatus::Succeeded => BackupState::Succeeded,
        OpStatus::Failed | OpStatus::Abandoned | OpStatus::Refused => BackupState::Failed,
    };
    BackupStatus {
        state,
        started_at: op.steps.first().and_then(|s| s.intent_at).map(from_unix),
        finished_at: op.state.is_final().then(|| from_unix(op.updated_at)),
        op_id: Some(op.op_id),
        last_success_at: last_success.map(from_unix),
    }
}

// ---------------------------------------------------------------------------------------------
// Start

/// The ports over the agent's journal, the engine handle and the Proxmox client (reads).
pub fn ports(
    state_dir: &Path,
    journal: JournalHandle,
    handle: AgentHandle,
    client: pve::Client,
) -> anyhow::Result<Ports> {
    // Request-path reads on a read-only connection of their own (journal_handle.rs).
    let reader = Journal::open_read_only(state_dir)
        .context("cannot open the journal for the local api's reads")?;
    let journal = journal.with_reader(reader);
    let shared = Arc::new(Shared {
        journal: journal.clone(),
        handle,
        client,
        backup: Mutex::new(None),
        seen: Mutex::new(std::collections::HashMap::new()),
    });
    let audit_journal = Journal::open(state_dir).context("cannot open the journal for audit")?;
    let audit = JournalAudit::start(audit_journal).context("cannot start the audit writer")?;
    Ok(Ports {
        tokens: Arc::new(JournalTokens::new(journal, "agent")),
        ops: Arc::new(HandleOps {
            shared: shared.clone(),
        }),
        view: Arc::new(GuestFacts { shared }),
        audit: Arc::new(audit),
        clock: Arc::new(SystemClock),
    })
}

/// Starts the local API on every `local_api.listen` address, with the TLS identity in
/// `state_dir/localapi` (created on first start). `None` when `local_api.listen` is empty.
///
/// Call with the engine's journal and `engine.handle()`; stop it with
/// `Running::shutdown(grace)`. Ops still running then are followed again at the next start by
/// the engine's recovery, like every other op.
pub async fn start(
    config: &Config,
    journal: JournalHandle,
    handle: AgentHandle,
    client: pve::Client,
) -> anyhow::Result<Option<localapi::Running>> {
    start_with(
        &config.local_api.listen,
        &config.state_dir,
        Limits::default(),
        journal,
        handle,
        client,
    )
    .await
}

/// [`start`] with explicit addresses, state directory and limits (tests).
pub async fn start_with(
    listen: &[SocketAddr],
    state_dir: &Path,
    limits: Limits,
    journal: JournalHandle,
    handle: AgentHandle,
    client: pve::Client,
) -> anyhow::Result<Option<localapi::Running>> {
    if listen.is_empty() {
        tracing::info!("local api disabled (local_api.listen is empty)");
        return Ok(None);
    }
    let identity = localapi::Identity::load_or_create(state_dir, listen)
        .context("cannot load the local api certificate")?;
    tracing::info!(fingerprint = %identity.fingerprint(), "local api identity");
    let ports = ports(state_dir, journal, handle, client)?;
    let running = localapi::start(listen, identity.server_config()?, ports, limits)
        .await
        .context("cannot start the local api")?;
    Ok(Some(running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_status_follows_the_latest_op() {
        assert_eq!(backup_status_of(None, None), BackupStatus::never());
        let op = |state| OpRecord {
            op_id: "b1".into(),
            kind: journal::OpKind::LocalApi,
            vmid: 101,
            generation: None,
            state,
            created_at: 5,
            updated_at: 9,
            error: None,
            steps: vec![journal::StepRecord {
                idx: 0,
                kind: BACKUP_STEP.into(),
                params: "{}".into(),
                state: journal::StepStatus::Posted,
                upid: None,
                intent_at: Some(6),
                posted_at: Some(6),
                finished_at: None,
                exitstatus: None,
            }],
        };
        let s = backup_status_of(Some(op(OpStatus::Running)), Some(3));
        assert_eq!(s.state, BackupState::Running);
        assert_eq!(s.started_at, Some(from_unix(6)));
        assert_eq!(s.finished_at, None);
        assert_eq!(s.last_success_at, Some(from_unix(3)));
        let s = backup_status_of(Some(op(OpStatus::Abandoned)), None);
        assert_eq!(s.state, BackupState::Failed);
        assert_eq!(s.finished_at, Some(from_unix(9)));
        assert_eq!(
            backup_status_of(Some(op(OpStatus::Planned)), None).state,
            BackupState::Queued
        );
        // The vzdump done, the prune after it skipped by a restart: the backup succeeded.
        let mut done = op(OpStatus::Abandoned);
        done.steps[0].state = journal::StepStatus::Done;
        done.steps[0].finished_at = Some(8);
        let s = backup_status_of(Some(done), Some(8));
        assert_eq!(s.state, BackupState::Succeeded);
        assert_eq!(s.finished_at, Some(from_unix(8)));
    }
}
