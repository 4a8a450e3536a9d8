//! Signed one-shot jobs: operator-signed ops run outside the reconcile loop, once per `op_id`.
//!
//! The caller verifies first (`authz::verify` with the journal as replay guard: a replayed or
//! redelivered op never gets here, it is answered from the recorded outcome). A job runs
//! through the guest's queue, is journaled as an op of kind `signed` under the signed op's id,
//! and its outcome is recorded on the signed op (`signed_ops.state`/`outcome`) and audited.
//!
//! `guest.destroy`: only a guest this agent manages (an unmanaged guest is never touched, even
//! with a signature); `stop` first if it runs, then `destroy` with `purge`.
//!
//! `guest.adopt`: an existing guest this agent does not manage becomes managed (DESIGN.md §4.6):
//! the agent writes a fresh identity line into its description (one journaled step), then
//! records the adoption with that identity. A crash between the two leaves the guest unmanaged
//! (a stray line is no identity the journal knows); the operator signs a new adoption.
//!
//! `desired.reset`: arms the acceptance of one desired state with a lower generation until the
//! op expires (recovery from a poisoned generation); the engine offers the current document
//! again at once.
//!
//! A signed op naming a guest whose identity began after the op was issued (another guest on a
//! reused vmid, adopted since) is refused `identity-changed`. Every other action is refused as
//! "not supported yet" (recorded) until its capability lands.

use authz::{Action, Target, VerifiedOp};
use journal::{GuestRecord, NewAuditEntry, OpKind, OpStatus};
use serde::Serialize;

use crate::exec::{ExecError, Executor, OpSpec};
use crate::gate::DestroyAuthority;
use crate::plan::Step;
use crate::ports::{Proxmox, ProxmoxError, Store};
use crate::queue::GuestQueues;

/// How a signed job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum JobResult {
    /// Done.
    Succeeded,
    /// Ran and failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Not run.
    Refused {
        /// A short code: `not-supported`, `not-managed`, `busy`, `no-such-guest`, `expired`.
        reason: String,
        /// Detail.
        detail: String,
    },
}

/// A signed job's outcome, as recorded and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobOutcome {
    /// The signed op's id.
    pub op_id: String,
    /// Its action.
    pub action: String,
    /// Its target (`vmid:101`).
    pub target: String,
    /// The signer.
    pub signer: String,
    /// The result.
    #[serde(flatten)]
    pub result: JobResult,
}

impl JobOutcome {
    /// The JSON recorded on the signed op and written beside a processed op file.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// What the journal says about an op's target guest: its provenance record (`None`: never
/// seen, or the op targets no guest), or `Err` when the journal could not be read.
pub type TargetRecord = Result<Option<GuestRecord>, ()>;

/// Runs one verified op with the journal's record of its target guest.
pub async fn run_signed<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    queues: &GuestQueues,
    op: &VerifiedOp,
    record: TargetRecord,
) -> JobOutcome {
    let managed = record
        .as_ref()
        .is_ok_and(|r| r.as_ref().is_some_and(|r| r.managed));
    let mut outcome = JobOutcome {
        op_id: op.op_id().to_owned(),
        action: op.action().as_str().to_owned(),
        target: op.target().to_string(),
        signer: op.signer().to_owned(),
        result: JobResult::Succeeded,
    };
    if crate::exec::is_internal_op_id(op.op_id()) {
        outcome.result = JobResult::Refused {
            reason: "reserved-op-id".into(),
            detail: format!(
                "op id {} is in the agent's own namespace ({}); sign it with another id",
                op.op_id(),
                crate::exec::INTERNAL_OP_ID_PREFIXES.join(", ")
            ),
        };
        return finish(exec, op, outcome);
    }
    let issued = op.issued_at().unix_timestamp();
    if let Ok(Some(r)) = &record {
        if r.managed && r.identity_at.is_some_and(|at| at > issued) {
            outcome.result = JobResult::Refused {
                reason: "identity-changed".into(),
                detail: format!(
                    "guest {} became the guest this agent manages after the op was issued; sign a new op",
                    r.vmid
                ),
            };
            return finish(exec, op, outcome);
        }
    }
    outcome.result = match (op.action(), op.target()) {
        (Action::GuestDestroy, Target::Vmid(vmid)) if managed => {
            match DestroyAuthority::signed(op, *vmid) {
                Ok(authority) => {
                    let vmid = *vmid;
                    exec.record_or_log(op.op_id(), "signed op running", |s| {
                        s.set_signed_op_state(
                            op.op_id(),
                            journal::OpState::Running,
                            None,
                            exec.now(),
                        )
                    });
                    match queues.run(vmid, destroy(exec, op, vmid, authority)).await {
                        Ok(result) => result,
                        Err(busy) => JobResult::Refused {
                            reason: "busy".into(),
                            detail: busy.to_string(),
                        },
                    }
                }
                Err(e) => JobResult::Refused {
                    reason: "not-authorized".into(),
                    detail: e.to_string(),
                },
            }
        }
        (Action::GuestDestroy, Target::Vmid(vmid)) => JobResult::Refused {
            reason: "not-managed".into(),
            detail: format!("guest {vmid} is not managed by this agent; it is never touched"),
        },
        (Action::GuestAdopt, Target::Vmid(vmid)) => match &record {
            Err(()) => JobResult::Refused {
                reason: "journal-unavailable".into(),
                detail: "the journal could not be read; nothing was done".into(),
            },
            Ok(_) if managed => JobResult::Refused {
                reason: "already-managed".into(),
                detail: format!("guest {vmid} is managed by this agent already"),
            },
            Ok(_) => {
                let vmid = *vmid;
                exec.record_or_log(op.op_id(), "signed op running", |s| {
                    s.set_signed_op_state(op.op_id(), journal::OpState::Running, None, exec.now())
                });
                match queues.run(vmid, adopt(exec, op, vmid)).await {
                    Ok(result) => result,
                    Err(busy) => JobResult::Refused {
                        reason: "busy".into(),
                        detail: busy.to_string(),
                    },
                }
            }
        },
        (Action::DesiredReset, Target::Host) => arm_reset(exec, op),
        (action, _) => JobResult::Refused {
            reason: "not-supported".into(),
            detail: format!("{action} is not supported by this agent yet"),
        },
    };
    finish(exec, op, outcome)
}

/// Records a job's outcome (signed-op state and one audit entry) and returns it.
fn finish<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    op: &VerifiedOp,
    outcome: JobOutcome,
) -> JobOutcome {
    let state = match outcome.result {
        JobResult::Succeeded => journal::OpState::Succeeded,
        _ => journal::OpState::Failed,
    };
    let json = outcome.to_json();
    let word = match &outcome.result {
        JobResult::Succeeded => "succeeded",
        JobResult::Failed { .. } => "failed",
        JobResult::Refused { .. } => "refused",
    };
    // The signer asked for it, so the entry names the signer, not the agent.
    let entry = NewAuditEntry::new(exec.now(), "signed_job", word)
        .actor(op.signer())
        .action(op.action().as_str())
        .target(op.target().to_string())
        .op_id(op.op_id())
        .detail(json.clone());
    exec.record_or_log(op.op_id(), "signed op outcome", |s| {
        s.set_signed_op_state(op.op_id(), state, Some(&json), exec.now())?;
        s.audit(&entry)
    });
    outcome
}

/// `Some(refused)` when the op may no longer start at the executor's clock: its signature was
/// valid at intake, but the op may have waited (the engine's cycle, the guest's queue) since.
fn expired<P, S>(exec: &Executor<P, S>, op: &VerifiedOp, what: &str) -> Option<JobResult> {
    (!op.may_start(exec.clock.now())).then(|| JobResult::Refused {
        reason: "expired".into(),
        detail: format!(
            "the signature expired ({}) before {what} could start; nothing was done",
            op.expires_at()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ),
    })
}

async fn adopt<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    op: &VerifiedOp,
    vmid: u32,
) -> JobResult {
    if let Some(refused) = expired(exec, op, &format!("the adoption of guest {vmid}")) {
        return refused;
    }
    match exec.px.guest_status(vmid).await {
        Ok(_) => {}
        Err(ProxmoxError::NoSuchGuest { .. }) => {
            return JobResult::Refused {
                reason: "no-such-guest".into(),
                detail: format!("guest {vmid} does not exist; only an existing guest is adopted"),
            }
        }
        Err(e) => {
            return JobResult::Failed {
                error: crate::error_chain(&e),
            }
        }
    }
    let identity = match crate::normalize::new_identity() {
        Ok(identity) => identity,
        Err(e) => {
            return JobResult::Failed {
                error: format!("no randomness for the guest's identity: {e}"),
            }
        }
    };
    let spec = OpSpec {
        op_id: op.op_id().to_owned(),
        kind: OpKind::Signed,
        vmid,
        generation: None,
        steps: vec![Step::MarkIdentity {
            identity: identity.clone(),
        }],
        authority: None,
        wait_limit: None,
    };
    match exec.run(&spec).await {
        Ok(()) => {
            let entry = NewAuditEntry::new(exec.now(), "guest", "adopted")
                .actor(op.signer())
                .action("adopt")
                .vmid(vmid)
                .op_id(op.op_id())
                .detail(format!(
                    "guest {vmid} is managed from now on, by a signed guest.adopt"
                ));
            match exec
                .with_store(|s| s.adopt_guest(vmid, op.op_id(), &identity, exec.now(), &entry))
            {
                Ok(_) => JobResult::Succeeded,
                Err(e) => JobResult::Failed {
                    error: format!(
                        "the identity line was written but the adoption was not recorded: {}",
                        crate::error_chain(&e)
                    ),
                },
            }
        }
        Err(ExecError::OpIdExists { op_id }) => JobResult::Refused {
            reason: "op-id-exists".into(),
            detail: format!("op id {op_id} is already in the journal"),
        },
        Err(e) => JobResult::Failed {
            error: crate::error_chain(&e),
        },
    }
}

fn arm_reset<P: Proxmox, S: Store>(exec: &Executor<P, S>, op: &VerifiedOp) -> JobResult {
    if let Some(refused) = expired(exec, op, "the desired-state reset") {
        return refused;
    }
    let until = op.start_by().unix_timestamp();
    let entry = NewAuditEntry::new(exec.now(), "desired", "reset-armed")
        .actor(op.signer())
        .action("desired.reset")
        .op_id(op.op_id())
        .detail(format!(
            "one desired state with a lower generation is accepted until {}",
            op.expires_at()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ));
    match exec
        .with_store(|s| s.arm_desired_reset(op.op_id(), op.signer(), exec.now(), until, &entry))
    {
        Ok(()) => JobResult::Succeeded,
        Err(e) => JobResult::Failed {
            error: crate::error_chain(&e),
        },
    }
}

async fn destroy<P: Proxmox, S: Store>(
    exec: &Executor<P, S>,
    op: &VerifiedOp,
    vmid: u32,
    authority: DestroyAuthority,
) -> JobResult {
    // Verified at intake, the op may have waited for the engine's cycle and this guest's queue
    // since: it starts only while its signature is still valid.
    if let Some(refused) = expired(exec, op, &format!("the destroy of guest {vmid}")) {
        return refused;
    }
    let status = match exec.px.guest_status(vmid).await {
        Ok(s) => s,
        Err(ProxmoxError::NoSuchGuest { .. }) => {
            return JobResult::Refused {
                reason: "no-such-guest".into(),
                detail: format!("guest {vmid} does not exist"),
            }
        }
        Err(e) => {
            return JobResult::Failed {
                error: crate::error_chain(&e),
            }
        }
    };
    let mut steps = Vec::new();
    if status.is_running() {
        steps.push(Step::Stop);
    }
    steps.push(Step::Destroy);
    let spec = OpSpec {
        op_id: op.op_id().to_owned(),
        kind: OpKind::Signed,
        vmid,
        generation: None,
        steps,
        authority: Some(authority),
        wait_limit: None,
    };
    match exec.run(&spec).await {
        Ok(()) => {
            // Failing here leaves a destroyed guest `managed` with live local-API tokens: the
            // error log is how an operator learns of it.
            exec.record_or_log(op.op_id(), "release of the destroyed guest", |s| {
                s.release_guest(
                    vmid,
                    exec.now(),
                    &exec
                        .agent_entry("guest", "destroyed")
                        .action("release")
                        .vmid(vmid)
                        .op_id(op.op_id()),
                )?;
                // A destroy pending in the reconcile plan is settled by this one.
                for pending in s.pending_ops()?.into_iter().filter(|p| p.vmid == vmid) {
                    s.finish_op(
                        &pending.op_id,
                        OpStatus::Abandoned,
                        Some("superseded by a signed destroy"),
                        exec.now(),
                        &exec
                            .agent_entry("reconcile", "abandoned")
                            .action("op")
                            .vmid(vmid)
                            .op_id(&pending.op_id)
                            .reason("superseded")
                            .detail(op.op_id().to_owned()),
                    )?;
                }
                Ok::<_, crate::ports::StoreError>(())
            });
            JobResult::Succeeded
        }
        Err(ExecError::OpIdExists { op_id }) => JobResult::Refused {
            reason: "op-id-exists".into(),
            detail: format!("op id {op_id} is already in the journal"),
        },
        Err(e) => JobResult::Failed {
            error: crate::error_chain(&e),
        },
    }
}
