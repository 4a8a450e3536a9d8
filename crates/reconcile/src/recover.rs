//! Crash recovery: the one recovery path for every op, whoever asked for it (reconcile, a signed
//! job, the local API, a selftest). It reads only the journal. When the engine is built it
//! claims the turn of every guest with an unfinished op ([`GuestQueues::claim`]), so nothing new
//! runs on that guest first; at its first cycle it settles each guest's ops in a task of its own
//! in that turn (a vzdump being re-attached may take hours and holds up nothing else), and the
//! engine plans nothing for the guest until they are settled.
//!
//! For each op neither final nor pending a signature, steps are settled in order:
//! - `posted` with a UPID: re-attach (`wait`) and record the task's end;
//! - `posted` without a UPID: the synchronous call returned, so it is done;
//! - `intent` (no UPID): the crash fell between the intent and the UPID write. The node's task
//!   list is searched for a task of the step's type on that guest, started by our token at or
//!   after the intent (one second of slack for clock granularity). Found: its UPID is recorded
//!   and re-attached. Not found: the POST never ran, the step is `failed` ("never posted") and
//!   the op `abandoned`. A synchronous step (the config PUT) leaves no task to find, so it is
//!   abandoned too; the next cycle re-reads the config and plans from what is really there.
//!
//! A POST is never re-sent. When steps remain after the settled one, the op is `abandoned`
//! (remaining steps `skipped`) and the engine re-plans from actual state, which is what makes
//! the remaining work happen exactly once. An op is `succeeded` only if every step is done.
//! An interrupted signed op is closed as failed ("interrupted"): its signature is not kept, so
//! the operator re-signs if the goal still stands.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use journal::{OpKind, OpRecord, OpStatus, StepStatus};
use pve::Upid;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::exec::{ExecError, Executor};
use crate::plan::Step;
use crate::ports::{Proxmox, ProxmoxError, Store, TaskEnd};
use crate::queue::{GuestQueues, Turn};

/// Guests whose interrupted ops are being settled; the engine plans nothing for them meanwhile.
pub(crate) type Recovering = Arc<Mutex<BTreeSet<u32>>>;

/// One guest's unfinished ops, oldest first, with the guest's turn claimed.
pub(crate) struct GuestRecovery {
    vmid: u32,
    turn: Turn,
    ops: Vec<OpRecord>,
}

/// First delay after Proxmox could not be reached during recovery; doubles up to a minute.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Looks for the task a POST at `intent_at` may have started. `None` for synchronous steps.
///
/// UPID start times are whole seconds, so the search window (from a second before the intent)
/// can hold the task of an earlier op of the same type on the same guest, moments before:
/// `owned` says whether a task is already recorded by another step, and such a task is never
/// taken for this one.
pub async fn resolve_intent<P: Proxmox>(
    px: &P,
    vmid: u32,
    task_type: Option<&'static str>,
    intent_at: i64,
    owned: impl Fn(&Upid) -> bool,
) -> Result<Option<Upid>, ProxmoxError> {
    let Some(task_type) = task_type else {
        return Ok(None);
    };
    let since = intent_at - 1;
    let mut found = px.find_tasks(vmid, task_type, since).await?;
    found.retain(|t| i64::try_from(t.starttime).unwrap_or(i64::MAX) >= since && !owned(&t.upid));
    // The earliest one after the intent is ours; a later one would be someone else's retry.
    found.sort_by_key(|t| t.starttime);
    Ok(found.into_iter().next().map(|t| t.upid))
}

/// Reads the unfinished ops (whoever asked for them: reconcile, a signed job, the local API, a
/// selftest) and claims the turn of each guest that has one. Synchronous, so the engine does
/// it before anything else can queue work on those guests.
pub(crate) fn claim<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    queues: &GuestQueues,
) -> Result<Vec<GuestRecovery>, ExecError> {
    let ops = exec
        .with_store(|s| s.unfinished_ops())
        .map_err(|source| ExecError::Journal {
            op_id: "*".to_owned(),
            source,
        })?;
    let mut by_guest: BTreeMap<u32, Vec<OpRecord>> = BTreeMap::new();
    for op in ops {
        by_guest.entry(op.vmid).or_default().push(op);
    }
    let mut out = Vec::new();
    for (vmid, ops) in by_guest {
        match queues.claim(vmid) {
            Some(turn) => out.push(GuestRecovery { vmid, turn, ops }),
            // Only possible if something already runs on the guest, which nothing can before
            // the engine exists; left for the next start rather than run concurrently.
            None => warn!(
                vmid,
                "guest busy at startup; its interrupted ops wait for the next start"
            ),
        }
    }
    Ok(out)
}

/// Settles each claimed guest's ops in a task of its own, in the guest's turn, so a long task
/// being re-attached (a vzdump takes hours) never holds up the engine's cycles or other
/// guests. The guest leaves `recovering` when its ops are settled. A Proxmox error is retried
/// with backoff; a journal error leaves the remaining ops for the next start.
pub(crate) fn spawn<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    recoveries: Vec<GuestRecovery>,
    recovering: &Recovering,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    {
        let mut set = recovering.lock().unwrap_or_else(|e| e.into_inner());
        set.extend(recoveries.iter().map(|r| r.vmid));
    }
    for GuestRecovery { vmid, turn, ops } in recoveries {
        let (exec, recovering) = (exec.clone(), recovering.clone());
        tasks.spawn(async move {
            turn.run(async {
                'ops: for op in &ops {
                    info!(op_id = %op.op_id, vmid, kind = op.kind.as_str(), "recovering op");
                    let mut delay = RETRY_MIN;
                    loop {
                        match settle(&exec, op).await {
                            Ok(state) => {
                                info!(op_id = %op.op_id, state = state.as_str(), "op settled");
                                break;
                            }
                            Err(e @ ExecError::Proxmox { .. }) => {
                                warn!(op_id = %op.op_id, error = %crate::error_chain(&e), retry_in_s = delay.as_secs(), "recovery could not reach proxmox");
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(RETRY_MAX);
                            }
                            Err(e) => {
                                tracing::error!(op_id = %op.op_id, error = %crate::error_chain(&e), "recovery stopped for this guest; the next start tries again");
                                break 'ops;
                            }
                        }
                    }
                }
            })
            .await;
            recovering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&vmid);
        });
    }
    tasks
}

async fn settle<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    op: &OpRecord,
) -> Result<OpStatus, ExecError> {
    let journal_err = |source| ExecError::Journal {
        op_id: op.op_id.clone(),
        source,
    };
    let mut outcome: Result<(), String> = Ok(());
    let mut all_done = true;
    for step in &op.steps {
        match step.state {
            StepStatus::Done => continue,
            StepStatus::Skipped | StepStatus::Planned => {
                all_done = false;
                break;
            }
            StepStatus::Failed => {
                outcome = Err(step.exitstatus.clone().unwrap_or_else(|| "failed".into()));
                break;
            }
            StepStatus::Posted | StepStatus::Intent => {}
        }
        let upid = match (&step.state, &step.upid) {
            (StepStatus::Posted, Some(upid)) => match upid.parse::<Upid>() {
                Ok(upid) => Some(upid),
                // Only a damaged row holds an unreadable UPID: nothing to re-attach to.
                Err(_) => {
                    outcome = Err(format!(
                        "interrupted: stored task id {upid:?} is unreadable"
                    ));
                    all_done = false;
                    break;
                }
            },
            (StepStatus::Posted, None) => None,
            _ => {
                let intent_at = step.intent_at.unwrap_or(op.created_at);
                match resolve_intent(
                    &*exec.px,
                    op.vmid,
                    Step::task_type_of(&step.kind),
                    intent_at,
                    |upid| exec.upid_owned(upid),
                )
                .await
                .map_err(|source| ExecError::Proxmox {
                    op_id: op.op_id.clone(),
                    vmid: op.vmid,
                    step: "recover",
                    source,
                })? {
                    Some(upid) => {
                        info!(op_id = %op.op_id, %upid, "found the task of an unrecorded post");
                        exec.with_store(|s| {
                            s.step_posted(&op.op_id, step.idx, Some(upid.as_str()), exec.now())
                        })
                        .map_err(journal_err)?;
                        Some(upid)
                    }
                    None => {
                        let why = if Step::task_type_of(&step.kind).is_some() {
                            "never posted: no task found after the intent"
                        } else {
                            "interrupted before its result was recorded; re-planned from a fresh read"
                        };
                        warn!(op_id = %op.op_id, step = %step.kind, why, "step did not run");
                        exec.with_store(|s| {
                            s.step_finished(
                                &op.op_id,
                                step.idx,
                                StepStatus::Failed,
                                Some(why),
                                exec.now(),
                                Some(
                                    &exec
                                        .agent_entry(op.kind.as_str(), "failed")
                                        .action(&step.kind)
                                        .vmid(op.vmid)
                                        .op_id(&op.op_id)
                                        .reason("recovery")
                                        .detail(why.to_owned()),
                                ),
                            )
                        })
                        .map_err(journal_err)?;
                        outcome = Err(why.to_owned());
                        all_done = false;
                        break;
                    }
                }
            }
        };
        let end = match &upid {
            None => TaskEnd::Ok("OK".to_owned()),
            Some(upid) => exec
                .px
                .wait(upid, Step::wait_limit_of(&step.kind))
                .await
                .map_err(|source| ExecError::Proxmox {
                    op_id: op.op_id.clone(),
                    vmid: op.vmid,
                    step: "recover",
                    source,
                })?,
        };
        exec.finish_step(op.kind, &op.op_id, op.vmid, step.idx, &step.kind, &end)?;
        if let TaskEnd::Failed(exit) = end {
            outcome = Err(exit);
            break;
        }
    }
    let (state, error) = match (&outcome, all_done) {
        (Ok(()), true) => (OpStatus::Succeeded, None),
        (Ok(()), false) => (
            OpStatus::Abandoned,
            Some(
                "interrupted by a restart; remaining steps re-planned from actual state".to_owned(),
            ),
        ),
        (Err(e), _) if e.starts_with("never posted") || e.starts_with("interrupted") => {
            (OpStatus::Abandoned, Some(e.clone()))
        }
        (Err(e), _) => (OpStatus::Failed, Some(e.clone())),
    };
    // A signed op's remaining steps need the signature, which is not kept: close it.
    let (state, error) = if op.kind == OpKind::Signed && state == OpStatus::Abandoned {
        (
            OpStatus::Failed,
            Some(format!("interrupted: {}", error.unwrap_or_default())),
        )
    } else {
        (state, error)
    };
    exec.with_store(|s| {
        s.finish_op(
            &op.op_id,
            state,
            error.as_deref(),
            exec.now(),
            &exec
                .agent_entry(op.kind.as_str(), state.as_str())
                .action("op")
                .vmid(op.vmid)
                .op_id(&op.op_id)
                .reason("recovery")
                .detail(error.clone()),
        )
    })
    .map_err(journal_err)?;
    if op.kind == OpKind::Signed {
        let signed_state = if state == OpStatus::Succeeded {
            journal::OpState::Succeeded
        } else {
            journal::OpState::Failed
        };
        let outcome = serde_json::json!({"result": state.as_str(), "error": error}).to_string();
        // The signed_ops row exists when the op came through authz::verify.
        exec.record_or_log(&op.op_id, "signed op outcome after recovery", |s| {
            s.set_signed_op_state(&op.op_id, signed_state, Some(&outcome), exec.now())
        });
        if state == OpStatus::Succeeded && op.steps.iter().any(|s| s.kind == "destroy") {
            exec.with_store(|s| {
                s.release_guest(
                    op.vmid,
                    exec.now(),
                    &exec
                        .agent_entry("guest", "destroyed")
                        .action("release")
                        .vmid(op.vmid)
                        .op_id(&op.op_id),
                )
            })
            .map_err(journal_err)?;
        }
    }
    Ok(state)
}
