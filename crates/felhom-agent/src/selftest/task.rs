//! `selftest task --vmid N`: one reversible snapshot → rollback → delete cycle on guest N,
//! each task waited for, the guest left as it was (same power state, same snapshots). Each of
//! the three is an op of kind `selftest` run by the reconcile executor (journaled, intent before
//! the POST, recovered by the daemon if this command is killed): this module posts nothing
//! itself.

/// The executor the selftest submits to.
pub type SelftestHandle =
    reconcile::EngineHandle<crate::pve_port::PveProxmox, crate::journal_port::JournalStore>;

use std::time::{SystemTime, UNIX_EPOCH};

use pve::{Client, SnapshotName, Vmid};
use reconcile::{GuestOp, Origin};

use super::{describe, Report};
use crate::journal_handle::JournalHandle;

/// Options of the task selftest.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// The guest to exercise.
    pub vmid: Vmid,
    /// The executor (built over the same journal with [`SelftestHandle::standalone`], its
    /// wait limit the command's `--task-timeout-s`).
    pub handle: SelftestHandle,
    /// The journal the ops are recorded in (to name each op's task in the report).
    pub journal: JournalHandle,
}

/// Runs the cycle. Stops at the first failure; if the snapshot was created but a later step
/// failed, it still tries to delete the snapshot so nothing of the selftest stays behind, and
/// reports that clean-up too.
pub async fn task(client: &Client, options: &TaskOptions) -> Report {
    let mut report = Report::default();
    let vmid = options.vmid;

    let before = match client.lxc_status(vmid).await {
        Ok(s) => s,
        Err(e) => {
            report.fail("guest", describe(&e));
            return report;
        }
    };
    if let Some(lock) = &before.lock {
        report.fail(
            "guest",
            format!("guest {vmid} is locked ({lock}); try again when its task is done"),
        );
        return report;
    }
    report.ok("guest", format!("guest {vmid} is {}", before.status));
    let snapshots_before = match snapshot_names(client, vmid).await {
        Ok(names) => names,
        Err(e) => {
            report.fail("snapshots", describe(&e));
            return report;
        }
    };

    let name = match selftest_snapshot_name() {
        Ok(n) => n,
        Err(e) => {
            report.fail("snapshot", describe(&e));
            return report;
        }
    };
    let op = |op: GuestOp| run_op(&options.handle, &options.journal, vmid, op);

    match op(GuestOp::Snapshot {
        name: name.clone(),
        description: "felhom-agent selftest".into(),
    })
    .await
    {
        Ok(detail) => report.ok("snapshot", format!("created {name} ({detail})")),
        Err(e) => {
            report.fail("snapshot", e);
            return report;
        }
    }

    // Rollback hard-stops a running container; the executor asks PVE to start it again when
    // it ran (pve-container Snapshot.pm), so the guest ends as it began.
    match op(GuestOp::Rollback { name: name.clone() }).await {
        Ok(detail) => report.ok("rollback", format!("rolled back to {name} ({detail})")),
        Err(e) => {
            report.fail("rollback", e);
            match op(GuestOp::DeleteSnapshot { name: name.clone() }).await {
                Ok(_) => report.ok("cleanup", format!("deleted {name} after the failure")),
                Err(e) => report.fail(
                    "cleanup",
                    format!("snapshot {name} is left on guest {vmid}: {e}"),
                ),
            }
            return report;
        }
    }

    match op(GuestOp::DeleteSnapshot { name: name.clone() }).await {
        Ok(detail) => report.ok("delete", format!("deleted {name} ({detail})")),
        Err(e) => {
            report.fail("delete", e);
            return report;
        }
    }

    match (
        client.lxc_status(vmid).await,
        snapshot_names(client, vmid).await,
    ) {
        (Ok(after), Ok(snapshots_after)) => {
            if after.status != before.status {
                report.fail(
                    "unchanged",
                    format!("guest was {} and is now {}", before.status, after.status),
                );
            } else if snapshots_after != snapshots_before {
                report.fail(
                    "unchanged",
                    format!("snapshots were {snapshots_before:?} and are now {snapshots_after:?}"),
                );
            } else {
                report.ok(
                    "unchanged",
                    format!(
                        "guest {vmid} is {} with {} snapshot(s) as before",
                        after.status,
                        snapshots_after.len()
                    ),
                );
            }
        }
        (Err(e), _) | (_, Err(e)) => report.fail("unchanged", describe(&e)),
    }
    report
}

/// Submits one op through the executor and waits for it; the detail names its task (read back
/// from the journal) and any warnings.
async fn run_op(
    handle: &SelftestHandle,
    journal: &JournalHandle,
    vmid: Vmid,
    op: GuestOp,
) -> Result<String, String> {
    let ticket = handle
        .submit(Origin::Selftest, vmid.get(), op)
        .map_err(|e| reconcile::error_chain(&e))?;
    let op_id = ticket.op_id.clone();
    ticket.finished().await.map_err(|e| e.to_string())?;
    let record = journal
        .with(|j| j.op(&op_id))
        .map_err(|e| reconcile::error_chain(&e))?;
    let step = record.and_then(|r| r.steps.into_iter().next());
    Ok(match step {
        Some(journal::StepRecord {
            upid: Some(upid),
            exitstatus,
            ..
        }) => match exitstatus.as_deref() {
            Some("OK") | None => upid,
            Some(other) => format!("{upid}, {other}"),
        },
        _ => "synchronous".into(),
    })
}

async fn snapshot_names(client: &Client, vmid: Vmid) -> pve::Result<Vec<String>> {
    let mut names: Vec<String> = client
        .list_snapshots(vmid)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    // PVE lists snapshots in hash order (pve-container Snapshot.pm); compare as sets.
    names.sort();
    Ok(names)
}

/// `felhom-st-<unix seconds, hex>`: unique per run, within pve-configid's 40 characters.
fn selftest_snapshot_name() -> pve::Result<SnapshotName> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("felhom-st-{secs:x}").parse()
}
