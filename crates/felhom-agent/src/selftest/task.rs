//! `selftest task --vmid N`: one reversible snapshot → rollback → delete cycle on guest N,
//! each task waited for, the guest left as it was (same power state, same snapshots).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pve::{Client, SnapshotName, TaskRef, Vmid, WaitOptions};

use super::{describe, Report};

/// Options of the task selftest.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// The guest to exercise.
    pub vmid: Vmid,
    /// Limit for each of the three tasks.
    pub task_timeout: Duration,
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
    let was_running = before.status == "running";
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
    let wait = WaitOptions::new(options.task_timeout);

    let created = run_task(
        client,
        client
            .create_snapshot(vmid, &name, Some("felhom-agent selftest"))
            .await,
        &wait,
    )
    .await;
    match created {
        Ok(detail) => report.ok("snapshot", format!("created {name} ({detail})")),
        Err(e) => {
            report.fail("snapshot", describe(&e));
            return report;
        }
    }

    // Rollback hard-stops a running container and starts it again only with `start=1`
    // (pve-container Snapshot.pm); ask for it so the guest ends as it began.
    let rolled = run_task(
        client,
        client.rollback_snapshot(vmid, &name, was_running).await,
        &wait,
    )
    .await;
    match rolled {
        Ok(detail) => report.ok("rollback", format!("rolled back to {name} ({detail})")),
        Err(e) => {
            report.fail("rollback", describe(&e));
            clean_up(client, vmid, &name, &wait, &mut report).await;
            return report;
        }
    }

    match run_task(
        client,
        client.delete_snapshot(vmid, &name, false).await,
        &wait,
    )
    .await
    {
        Ok(detail) => report.ok("delete", format!("deleted {name} ({detail})")),
        Err(e) => {
            report.fail("delete", describe(&e));
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

/// Waits for a mutating call's task; the detail names the UPID and any warnings.
async fn run_task(
    client: &Client,
    started: pve::Result<TaskRef>,
    wait: &WaitOptions,
) -> pve::Result<String> {
    match started? {
        TaskRef::Sync => Ok("synchronous".into()),
        TaskRef::Task(upid) => {
            let outcome = client.wait_task(&upid, wait.clone()).await?;
            Ok(match outcome.warnings() {
                0 => upid.to_string(),
                n => format!("{upid}, {n} warning(s)"),
            })
        }
    }
}

async fn clean_up(
    client: &Client,
    vmid: Vmid,
    name: &SnapshotName,
    wait: &WaitOptions,
    report: &mut Report,
) {
    match run_task(
        client,
        client.delete_snapshot(vmid, name, false).await,
        wait,
    )
    .await
    {
        Ok(_) => report.ok("cleanup", format!("deleted {name} after the failure")),
        Err(e) => report.fail(
            "cleanup",
            format!("snapshot {name} is left on guest {vmid}: {}", describe(&e)),
        ),
    }
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
