//! The reconcile executor's [`Proxmox`] port over the real `pve::Client`: the one place in the
//! binary that calls mutating client methods, and only on the executor's behalf (the fence test
//! in `crates/reconcile/tests/it/fence.rs` checks that nothing else does).

use std::collections::BTreeMap;

use pve::{
    Client, ConfigUpdate, DestroyOptions, ResourceType, SnapshotName, TaskListQuery, Upid, Vmid,
    VzdumpOutcome, VzdumpRequest, WaitOptions,
};

use reconcile::normalize;
use reconcile::{
    Condition, DestroyAuthority, FoundTask, GuestConfig, GuestState, Posted, Proxmox, ProxmoxError,
    TaskEnd,
};

/// The engine's Proxmox port on a `pve::Client`.
#[derive(Debug, Clone)]
pub struct PveProxmox {
    client: Client,
    token_user: String,
}

impl PveProxmox {
    /// `token_user` is the token's `user@realm!tokenid` (how UPIDs name the agent's tasks).
    pub fn new(client: Client, token_user: impl Into<String>) -> Self {
        PveProxmox {
            client,
            token_user: token_user.into(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn vmid(v: u32) -> Result<Vmid, ProxmoxError> {
    Vmid::new(v).map_err(|e| ProxmoxError::Call {
        call: "vmid",
        never_ran: true,
        source: Box::new(e),
    })
}

fn map(call: &'static str, v: u32) -> impl FnOnce(pve::Error) -> ProxmoxError {
    move |e| match e {
        pve::Error::NoSuchGuest { .. } => ProxmoxError::NoSuchGuest { vmid: v },
        pve::Error::Locked { ref lock, .. } => ProxmoxError::Locked {
            vmid: v,
            lock: lock.clone(),
        },
        other => ProxmoxError::Call {
            call,
            never_ran: other.is_retryable()
                || matches!(other.status(), Some(400) | Some(401) | Some(403)),
            source: Box::new(other),
        },
    }
}

fn posted(r: pve::TaskRef) -> Posted {
    match r {
        pve::TaskRef::Sync => Posted::Sync,
        pve::TaskRef::Task(u) => Posted::Task(u),
    }
}

impl Proxmox for PveProxmox {
    async fn guests(&self) -> Result<Vec<GuestState>, ProxmoxError> {
        let list = self
            .client
            .cluster_resources(Some(ResourceType::Vm))
            .await
            .map_err(map("cluster resources", 0))?;
        let node = self.client.node();
        Ok(list
            .into_iter()
            .filter(|r| r.resource_type == "lxc" && r.node.as_deref() == Some(node))
            .filter_map(|r| {
                Some(GuestState {
                    vmid: u32::try_from(r.vmid?).ok()?,
                    status: Condition::from_pve(r.status.as_deref().unwrap_or_default()),
                    lock: r.lock.filter(|l| !l.is_empty()),
                    name: r.name,
                })
            })
            .collect())
    }

    async fn guest_status(&self, v: u32) -> Result<GuestState, ProxmoxError> {
        let s = self
            .client
            .lxc_status(vmid(v)?)
            .await
            .map_err(map("guest status", v))?;
        Ok(GuestState {
            vmid: v,
            status: Condition::from_pve(&s.status),
            lock: s.lock.filter(|l| !l.is_empty()),
            name: s.name,
        })
    }

    async fn guest_config(&self, v: u32) -> Result<GuestConfig, ProxmoxError> {
        let cfg = self
            .client
            .lxc_config(vmid(v)?)
            .await
            .map_err(map("guest config", v))?;
        Ok(GuestConfig {
            digest: cfg.digest.clone(),
            values: normalize::actual_config(&cfg),
            identity: normalize::identity_of(&cfg),
        })
    }

    async fn start(&self, v: u32) -> Result<Posted, ProxmoxError> {
        self.client
            .start_lxc(vmid(v)?)
            .await
            .map(posted)
            .map_err(map("start", v))
    }

    async fn shutdown(&self, v: u32) -> Result<Posted, ProxmoxError> {
        self.client
            .shutdown_lxc(vmid(v)?, Some(60), true)
            .await
            .map(posted)
            .map_err(map("shutdown", v))
    }

    async fn stop(&self, v: u32) -> Result<Posted, ProxmoxError> {
        self.client
            .stop_lxc(vmid(v)?)
            .await
            .map(posted)
            .map_err(map("stop", v))
    }

    async fn set_config(
        &self,
        v: u32,
        changes: &BTreeMap<String, String>,
        digest: Option<&str>,
    ) -> Result<Posted, ProxmoxError> {
        let mut update = ConfigUpdate::new();
        for (k, val) in changes {
            // Canonical values are PVE's own spellings (0/1, integers, property strings);
            // netN has no hwaddr and the client re-adds the current one.
            update = update.set(k.clone(), val.clone());
        }
        if let Some(d) = digest {
            update = update.digest(d);
        }
        self.client
            .update_lxc_config(vmid(v)?, update)
            .await
            .map(posted)
            .map_err(map("set config", v))
    }

    async fn destroy(&self, authority: &DestroyAuthority) -> Result<Posted, ProxmoxError> {
        let v = authority.vmid();
        let options = DestroyOptions {
            purge: true,
            destroy_unreferenced_disks: false,
            force: false,
        };
        self.client
            .destroy_lxc(vmid(v)?, options)
            .await
            .map(posted)
            .map_err(map("destroy", v))
    }

    async fn snapshot(
        &self,
        v: u32,
        name: &SnapshotName,
        description: &str,
    ) -> Result<Posted, ProxmoxError> {
        self.client
            .create_snapshot(vmid(v)?, name, Some(description))
            .await
            .map(posted)
            .map_err(map("snapshot", v))
    }

    async fn delete_snapshot(&self, v: u32, name: &SnapshotName) -> Result<Posted, ProxmoxError> {
        self.client
            .delete_snapshot(vmid(v)?, name, false)
            .await
            .map(posted)
            .map_err(map("delete snapshot", v))
    }

    async fn rollback(
        &self,
        v: u32,
        name: &SnapshotName,
        start: bool,
    ) -> Result<Posted, ProxmoxError> {
        self.client
            .rollback_snapshot(vmid(v)?, name, start)
            .await
            .map(posted)
            .map_err(map("rollback", v))
    }

    async fn vzdump(&self, v: u32, storage: &str) -> Result<Posted, ProxmoxError> {
        // Never vzdump's own prune (`remove=1` is PVE's default): under keep-last=N a
        // compromised controller would rotate every pre-compromise backup out in N calls
        // (issue 11 item 8). Retention is the agent's to apply, from its own policy.
        match self.client.vzdump(&backup_request(vmid(v)?, storage)).await {
            Ok(VzdumpOutcome::Task(upid)) => Ok(Posted::Task(upid)),
            // PVE answers without a task when none of the guests is on this node: nothing ran.
            Ok(VzdumpOutcome::NotOnThisNode) => Err(ProxmoxError::NoSuchGuest { vmid: v }),
            Err(e) => Err(map("vzdump", v)(e)),
        }
    }

    async fn prune(
        &self,
        v: u32,
        storage: &str,
        keep: &pve::Retention,
    ) -> Result<Posted, ProxmoxError> {
        self.client
            .prune_backups(storage, vmid(v)?, keep)
            .await
            .map(posted)
            .map_err(map("prune backups", v))
    }

    async fn snapshots(&self, v: u32) -> Result<Vec<String>, ProxmoxError> {
        let list = self
            .client
            .list_snapshots(vmid(v)?)
            .await
            .map_err(map("list snapshots", v))?;
        Ok(list.into_iter().map(|s| s.name).collect())
    }

    async fn wait(&self, upid: &Upid, limit: std::time::Duration) -> Result<TaskEnd, ProxmoxError> {
        match self.client.wait_task(upid, WaitOptions::new(limit)).await {
            Ok(outcome) => Ok(TaskEnd::Ok(match outcome {
                pve::TaskOutcome::Ok => "OK".to_owned(),
                pve::TaskOutcome::Warnings(n) => format!("WARNINGS: {n}"),
            })),
            Err(pve::Error::TaskFailed { exitstatus, .. }) => Ok(TaskEnd::Failed(exitstatus)),
            Err(e) => Err(map("wait", 0)(e)),
        }
    }

    async fn find_tasks(
        &self,
        v: u32,
        task_type: &'static str,
        since: i64,
    ) -> Result<Vec<FoundTask>, ProxmoxError> {
        // A `prunebackups` task's id is `<vmid>@<storage>`, which the list's `vmid` filter (an
        // exact match on the id) never matches: list by type and match the id here.
        let prune = task_type == "prunebackups";
        let prune_prefix = format!("{v}@");
        let query = TaskListQuery {
            vmid: if prune { None } else { Some(vmid(v)?) },
            typefilter: Some(task_type.to_owned()),
            source: Some("all".to_owned()),
            limit: Some(100),
            ..TaskListQuery::default()
        };
        let list = self
            .client
            .list_tasks(&query)
            .await
            .map_err(map("task list", v))?;
        Ok(list
            .into_iter()
            .filter(|t| t.upid.user() == self.token_user && t.upid.task_type() == task_type)
            .filter(|t| {
                if prune {
                    t.upid.id().starts_with(&prune_prefix)
                } else {
                    t.upid.id() == v.to_string()
                }
            })
            .filter(|t| i64::try_from(t.upid.starttime()).unwrap_or(0) >= since)
            .map(|t| FoundTask {
                starttime: t.upid.starttime(),
                upid: t.upid,
            })
            .collect())
    }
}

/// The vzdump request of a backup step: `remove=0`, so a backup never prunes older ones.
fn backup_request(vmid: pve::Vmid, storage: &str) -> VzdumpRequest {
    let mut request = VzdumpRequest::new(vmid, storage.to_owned());
    request.remove = Some(false);
    request
}
