//! The daemon's side of the hub protocol: what the agent reports ([`AgentReport`], the
//! [`hub::ReportSource`]) and what it does with what the hub sends ([`consume`]: desired
//! states into the engine, signed ops through verification into the engine).
//!
//! Reporting never decides anything (the Mender lesson in peer-systems-notes.md): an op's
//! outcome is decided and journaled by the engine first; the report only carries it, and a
//! failed report changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use authz::RecordedState;
use hub::{
    now_rfc3339, AuditEntry, CollectContext, HostReport, OpOutcome, OpOutcomeKind,
    PendingSignature, Received, ReconcileError, RejectedDesired, ReportSource,
};
use reconcile::{DesiredInput, EngineStatus, JobResult, SignedJob};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::signed::{Verdict, Verifier};
use crate::config::{Config, HubConfig};
use collect::SmartSnapshot;

/// How many outcomes of signed ops are kept for reports (the hub drops an op from its queue
/// once it has seen the outcome, so only recent ones matter).
const MAX_OUTCOMES: usize = 100;
/// New signed ops verified per directive at most (issue 11 item 4): each costs a signature
/// check and an audit entry, so a hub flooding its directive with junk gets a bounded budget.
/// The rest are refused unverified as `too-many-ops` (the hub drops them from its queue).
pub const MAX_OPS_PER_DIRECTIVE: usize = 16;
/// Of those refused unverified, how many get an outcome in the report (the rest are counted
/// in the log): the report's outcome list stays useful for the ops that did run.
const MAX_REFUSED_OUTCOMES: usize = 32;
/// Audit entries read per report at most (the report's size bound trims further).
const AUDIT_BATCH: u32 = 2000;
/// How long the cloudflared probe waits; it is on loopback, so anything slower is "not ready".
const CLOUDFLARED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The hub client as configured: URL, key, request limit and the optional certificate pin.
pub fn hub_client(config: &Config, hub_cfg: &HubConfig) -> anyhow::Result<hub::HubClient> {
    use anyhow::Context as _;
    let mut options = hub::ClientOptions::new(
        hub_cfg.url.clone(),
        config.host_id.clone(),
        hub_cfg.api_key.value.clone(),
    );
    options.request_timeout = std::time::Duration::from_secs(hub_cfg.request_timeout_s);
    options.pin = hub_cfg.fingerprint;
    hub::HubClient::new(options).context("cannot set up the hub client")
}

/// The cloudflared probe, when `cloudflared.metrics_addr` is configured.
pub fn cloudflared_probe(config: &Config) -> anyhow::Result<Option<collect::CloudflaredProbe>> {
    use anyhow::Context as _;
    config
        .cloudflared
        .as_ref()
        .map(|c| {
            collect::CloudflaredProbe::new(&c.metrics_addr.to_string(), CLOUDFLARED_TIMEOUT)
                .context("cannot set up the cloudflared probe")
        })
        .transpose()
}

/// Assembles the host report from the collectors, the engine's status and the journal.
pub struct AgentReport {
    host_id: String,
    client: pve::Client,
    collector: Mutex<collect::HostCollector>,
    status: watch::Receiver<EngineStatus>,
    state_dir: PathBuf,
    outcomes: Arc<Mutex<Vec<OpOutcome>>>,
    first_seen: Mutex<BTreeMap<String, String>>,
    cloudflared: Option<collect::CloudflaredProbe>,
    smart: watch::Receiver<SmartSnapshot>,
    #[cfg(debug_assertions)]
    fault: Option<String>,
}

impl AgentReport {
    /// A report source for this host. `outcomes` is shared with [`consume`]; `smart` is
    /// published by the SMART task (`daemon::smart::run`).
    pub fn new(
        host_id: String,
        client: pve::Client,
        state_dir: PathBuf,
        status: watch::Receiver<EngineStatus>,
        outcomes: Arc<Mutex<Vec<OpOutcome>>>,
        cloudflared: Option<collect::CloudflaredProbe>,
        smart: watch::Receiver<SmartSnapshot>,
    ) -> Self {
        let filesystems = vec![PathBuf::from("/"), state_dir.clone()];
        AgentReport {
            host_id,
            client,
            collector: Mutex::new(collect::HostCollector::new(
                collect::ProcRoot::system(),
                filesystems,
            )),
            status,
            state_dir,
            outcomes,
            first_seen: Mutex::new(BTreeMap::new()),
            cloudflared,
            smart,
            // Test-only fault injection (debug builds): `wedge-hub-collect` makes report
            // collection hang so the watchdog test can see the pings stop.
            #[cfg(debug_assertions)]
            fault: std::env::var("FELHOM_FAULT").ok(),
        }
    }

    /// When `key` was first seen (RFC 3339), remembered across reports; keys not in `live`
    /// are forgotten.
    fn since(&self, key: &str, live: &BTreeSet<String>) -> String {
        let mut seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|k, _| live.contains(k));
        seen.entry(key.to_owned())
            .or_insert_with(now_rfc3339)
            .clone()
    }

    fn audit_since(&self, acked: u64) -> Vec<AuditEntry> {
        let journal = match journal::Journal::open_read_only(&self.state_dir) {
            Ok(j) => j,
            Err(e) => {
                warn!(error = %e, "cannot read the audit log for the report");
                return Vec::new();
            }
        };
        // Forward from the ack, oldest first (issue 11 item 6: the newest 2,000 above the ack
        // were sent, and older unacknowledged entries were skipped for good).
        let after = i64::try_from(acked).unwrap_or(i64::MAX);
        let tail = match journal.audit_after(after, AUDIT_BATCH) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "cannot read the audit log for the report");
                return Vec::new();
            }
        };
        tail.into_iter()
            .filter(|e| u64::try_from(e.seq).is_ok_and(|s| s > acked))
            .map(|e| AuditEntry {
                seq: u64::try_from(e.seq).unwrap_or_default(),
                at: e.entry.at,
                kind: e.entry.kind,
                actor: e.entry.actor,
                action: e.entry.action,
                target: e.entry.target,
                op_id: e.entry.op_id,
                outcome: e.entry.outcome,
                reason: e.entry.reason,
                detail: e.entry.detail,
                prev_hash: e.prev_hash,
                hash: e.hash,
            })
            .collect()
    }
}

impl ReportSource for AgentReport {
    async fn collect(&self, ctx: &CollectContext) -> HostReport {
        #[cfg(debug_assertions)]
        if self.fault.as_deref() == Some("wedge-hub-collect") && ctx.received_generation.is_some() {
            warn!("fault injected: report collection wedged");
            std::future::pending::<()>().await;
        }
        let mut report = HostReport::empty(self.host_id.clone(), env!("CARGO_PKG_VERSION"));
        report.host = {
            let mut c = self.collector.lock().unwrap_or_else(|e| e.into_inner());
            c.collect()
        };
        report.host.smart = self.smart.borrow().reports();
        // Both reads are bounded (request and probe timeouts), so run them side by side.
        let (pve, cloudflared) = tokio::join!(collect::collect_pve(&self.client), async {
            match &self.cloudflared {
                Some(probe) => Some(probe.probe().await),
                None => None,
            }
        });
        report.cloudflared = cloudflared;
        report.host.pve = pve.node;
        report.host.errors.extend(pve.errors);
        let status = self.status.borrow().clone();
        if let Some(mut guests) = pve.guests {
            for g in &mut guests {
                g.managed = u32::try_from(g.vmid).is_ok_and(|v| !status.unmanaged.contains(&v));
            }
            report.guests = guests;
        }
        report.desired.applied_generation = status.generation;
        report.desired.rejected = status.refused.as_ref().map(|r| RejectedDesired {
            generation: r.generation.unwrap_or(0),
            reason: r.reason.clone(),
        });
        let mut live = BTreeSet::new();
        for p in &status.pending_signature {
            live.insert(format!("pending:{}:{}", p.vmid, p.action));
        }
        for vmid in status.errors.keys() {
            live.insert(format!("error:{vmid}"));
        }
        report.pending_signature = status
            .pending_signature
            .iter()
            .map(|p| PendingSignature {
                vmid: Some(u64::from(p.vmid)),
                action: p.action.clone(),
                step: format!("{}: {}", p.step, p.reason),
                generation: status.generation,
                since: self.since(&format!("pending:{}:{}", p.vmid, p.action), &live),
            })
            .collect();
        report.reconcile_errors = status
            .errors
            .iter()
            .map(|(vmid, error)| ReconcileError {
                vmid: u64::from(*vmid),
                error: error.clone(),
                since: self.since(&format!("error:{vmid}"), &live),
                attempts: 1,
            })
            .collect();
        report.op_outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        report.audit.entries = self.audit_since(ctx.audit_acked);
        report
    }
}

/// Feeds what the hub publishes into the engine until the channel closes: a new desired
/// state goes to `desired`; each signed op not seen before is verified and run, its outcome
/// recorded in `outcomes` for the next reports.
pub async fn consume(
    mut received: watch::Receiver<Option<Arc<Received>>>,
    desired: watch::Sender<Option<DesiredInput>>,
    jobs: mpsc::Sender<SignedJob>,
    verifier: Verifier,
    outcomes: Arc<Mutex<Vec<OpOutcome>>>,
) {
    let mut seen_ops: BTreeSet<String> = BTreeSet::new();
    // The engine judges every document the hub sends (`reconcile::accept`); this only skips
    // handing it the same one twice, by content: a rewritten generation must reach it.
    let mut last_sent: Option<Arc<serde_json::Value>> = None;
    loop {
        let current = received.borrow_and_update().clone();
        if let Some(r) = current {
            if let Some(doc) = &r.desired {
                if last_sent.as_deref() != Some(doc.as_ref()) {
                    match serde_json::to_vec(doc.as_ref()) {
                        Ok(bytes) => {
                            info!(generation = r.generation, "desired state from the hub");
                            desired.send_replace(Some(DesiredInput {
                                bytes: bytes.into(),
                                source: "hub".into(),
                            }));
                            last_sent = Some(doc.clone());
                        }
                        Err(e) => warn!(error = %e, "cannot re-encode the hub's desired state"),
                    }
                }
            }
            let current: BTreeSet<String> = r.ops.iter().map(op_key).collect();
            // The hub keeps an op queued until it sees the outcome in a report; forget ops it
            // no longer sends, so this set stays small. One sent again later is verified again
            // and the journal's replay guard answers with the recorded outcome.
            seen_ops.retain(|k| current.contains(k));
            let mut budget = MAX_OPS_PER_DIRECTIVE;
            let mut over = 0usize;
            for op in r.ops.iter() {
                if !seen_ops.insert(op_key(op)) {
                    continue;
                }
                let outcome = if budget == 0 {
                    over += 1;
                    (over <= MAX_REFUSED_OUTCOMES)
                        .then(|| op_id_of(op))
                        .flatten()
                        .map(|op_id| OpOutcome {
                            op_id,
                            outcome: OpOutcomeKind::Rejected,
                            reason: Some(format!(
                                "too-many-ops: at most {MAX_OPS_PER_DIRECTIVE} new ops per directive"
                            )),
                            at: now_rfc3339(),
                        })
                } else {
                    budget -= 1;
                    run_op(op, &jobs, &verifier).await
                };
                if let Some(outcome) = outcome {
                    let mut list = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                    list.push(outcome);
                    let excess = list.len().saturating_sub(MAX_OUTCOMES);
                    list.drain(..excess);
                }
            }
            if over > 0 {
                warn!(
                    refused = over,
                    cap = MAX_OPS_PER_DIRECTIVE,
                    "hub directive carries more new signed ops than the cap; the rest refused unverified"
                );
            }
        }
        if received.changed().await.is_err() {
            return;
        }
    }
}

/// Verifies and runs one wire op; `None` when it could not be decided now (it is retried
/// when the hub sends it again after a restart).
async fn run_op(
    op: &serde_json::Value,
    jobs: &mpsc::Sender<SignedJob>,
    verifier: &Verifier,
) -> Option<OpOutcome> {
    let wire = serde_json::to_vec(op).ok()?;
    let op_id_hint = op_id_of(op);
    let verdict = {
        let verifier = verifier.clone();
        tokio::task::spawn_blocking(move || verifier.verify(&wire, "hub"))
            .await
            .ok()?
    };
    match verdict {
        Verdict::Run(verified) => {
            let op_id = verified.op_id().to_owned();
            let (reply, rx) = oneshot::channel();
            jobs.send(SignedJob {
                op: *verified,
                reply,
            })
            .await
            .ok()?;
            let outcome = rx.await.ok()?;
            let (kind, reason) = match outcome.result {
                JobResult::Succeeded => (OpOutcomeKind::Done, None),
                JobResult::Failed { error } => (OpOutcomeKind::Failed, Some(error)),
                JobResult::Refused { reason, detail } => {
                    (OpOutcomeKind::Failed, Some(format!("{reason}: {detail}")))
                }
            };
            Some(OpOutcome {
                op_id,
                outcome: kind,
                reason,
                at: now_rfc3339(),
            })
        }
        Verdict::Rejected(refused) => {
            // An identical redelivery carries the outcome recorded the first time.
            let (kind, reason) = match refused.recorded.as_ref().map(|r| r.state) {
                Some(RecordedState::Succeeded) => (OpOutcomeKind::Done, None),
                Some(RecordedState::Failed) => {
                    (OpOutcomeKind::Failed, Some("failed earlier".to_owned()))
                }
                Some(RecordedState::Accepted | RecordedState::Running) | None => {
                    (OpOutcomeKind::Rejected, Some(refused.reason.to_owned()))
                }
            };
            Some(OpOutcome {
                op_id: op_id_hint?,
                outcome: kind,
                reason,
                at: now_rfc3339(),
            })
        }
        Verdict::Retry(why) => {
            warn!(error = %why, "signed op from the hub not processed; will retry on redelivery");
            None
        }
    }
}

/// What identifies a wire op for deduplication: its payload text.
fn op_key(op: &serde_json::Value) -> String {
    op.get("payload")
        .map(|p| p.to_string())
        .unwrap_or_else(|| op.to_string())
}

/// The `op_id` inside a wire op's payload, read without trusting it (for reporting a
/// rejection only; nothing is authorized by it).
fn op_id_of(op: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let b64 = op.get("payload")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let payload: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(payload.get("op_id")?.as_str()?.to_owned())
}
