//! Crash recovery: runs at engine start, before the first cycle, and reads only the journal.
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

use std::collections::BTreeSet;

use journal::{OpKind, OpRecord, OpStatus, StepStatus};
use tracing::{info, warn};

use crate::exec::{audit, now, ExecError, Executor};
use crate::plan::Step;
use crate::ports::{Proxmox, ProxmoxError, Store, TaskEnd};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Ops settled, by id, with their final state.
    pub settled: Vec<(String, OpStatus)>,
    /// Guests touched by a recovered op (their cached state is stale).
    pub guests: BTreeSet<u32>,
}

/// Looks for the task a POST at `intent_at` may have started. `None` for synchronous steps.
pub async fn resolve_intent<P: Proxmox>(
    px: &P,
    vmid: u32,
    task_type: Option<&'static str>,
    intent_at: i64,
) -> Result<Option<String>, ProxmoxError> {
    let Some(task_type) = task_type else {
        return Ok(None);
    };
    let since = intent_at - 1;
    let mut found = px.find_tasks(vmid, task_type, since).await?;
    found.retain(|t| i64::try_from(t.starttime).unwrap_or(i64::MAX) >= since);
    // The earliest one after the intent is ours; a later one would be someone else's retry.
    found.sort_by_key(|t| t.starttime);
    Ok(found.into_iter().next().map(|t| t.upid))
}

/// Settles every unfinished op. An error (Proxmox unreachable, journal failure) leaves the
/// remaining ops as they are; the engine runs recovery again before its next cycle.
pub async fn recover<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
) -> Result<RecoveryReport, ExecError> {
    let ops = exec
        .with_store(|s| s.unfinished_ops())
        .map_err(|source| ExecError::Journal {
            op_id: "*".to_owned(),
            source,
        })?;
    let mut report = RecoveryReport::default();
    for op in ops {
        info!(op_id = %op.op_id, vmid = op.vmid, "recovering op");
        report.guests.insert(op.vmid);
        let state = settle(exec, &op).await?;
        report.settled.push((op.op_id.clone(), state));
    }
    Ok(report)
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
            (StepStatus::Posted, Some(upid)) => Some(upid.clone()),
            (StepStatus::Posted, None) => None,
            _ => {
                let intent_at = step.intent_at.unwrap_or(op.created_at);
                match resolve_intent(
                    &*exec.px,
                    op.vmid,
                    Step::task_type_of(&step.kind),
                    intent_at,
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
                        exec.with_store(|s| s.step_posted(&op.op_id, step.idx, Some(&upid), now()))
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
                                now(),
                                Some(&audit(
                                    op.kind.as_str(),
                                    Some(&step.kind),
                                    Some(op.vmid),
                                    Some(&op.op_id),
                                    "failed",
                                    Some("recovery"),
                                    Some(why.to_owned()),
                                )),
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
                .wait(upid)
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
            now(),
            &audit(
                op.kind.as_str(),
                Some("op"),
                Some(op.vmid),
                Some(&op.op_id),
                state.as_str(),
                Some("recovery"),
                error.clone(),
            ),
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
            s.set_signed_op_state(&op.op_id, signed_state, Some(&outcome), now())
        });
        if state == OpStatus::Succeeded && op.steps.iter().any(|s| s.kind == "destroy") {
            exec.with_store(|s| {
                s.release_guest(
                    op.vmid,
                    now(),
                    &audit(
                        "guest",
                        Some("release"),
                        Some(op.vmid),
                        Some(&op.op_id),
                        "destroyed",
                        None,
                        None,
                    ),
                )
            })
            .map_err(journal_err)?;
        }
    }
    Ok(state)
}
