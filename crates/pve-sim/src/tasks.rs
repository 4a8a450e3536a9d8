//! Tasks: UPIDs, the task record, and the engine that runs a worker in two phases.
//!
//! A PVE worker forks, checks its preconditions (locks, names) and then works for a while.
//! The simulator mirrors that: [`State::start_task`] runs the *begin* phase at once (a
//! failure ends the task immediately, like a worker that dies on `check_lock`) and the
//! *finish* phase runs when the task's duration has passed ([`State::finish_task`]). Both
//! phases are plain functions of the state, so a restarted simulator resumes in-flight tasks
//! by finishing them at `starttime + duration`.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::conf::CtConf;
use crate::state::{Guest, State, Volume};
use crate::{lxc, snapshot, storage, vzdump};

/// Seconds since the epoch.
pub fn now() -> i64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a worker does. Serialised with the task so in-flight work survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Work {
    /// `vzstart`.
    Start {
        /// The guest to start.
        vmid: u32,
    },
    /// `vzstop` (hard stop).
    Stop {
        /// The guest to stop.
        vmid: u32,
    },
    /// `vzshutdown`.
    Shutdown {
        /// The guest to shut down.
        vmid: u32,
    },
    /// `vzreboot`.
    Reboot {
        /// The guest to reboot.
        vmid: u32,
    },
    /// `vzcreate` / `vzrestore`: the final config and new volumes, the guest it replaces.
    Create {
        /// The guest being created or restored over.
        vmid: u32,
        /// The config the guest has once the task succeeds.
        conf: CtConf,
        /// Volumes allocated for it (volid, volume), removed again if the task fails.
        volumes: Vec<(String, Volume)>,
        /// The guest a `force=1` restore replaces: its volumes are destroyed on success,
        /// it is put back on failure.
        previous: Option<Box<Guest>>,
        /// The `ostemplate` volid: a template, or the backup archive of a restore.
        source: String,
        /// Whether this is a restore (`vzrestore`) rather than a create from a template.
        restore: bool,
        /// `start=1`: start the guest once it exists.
        start: bool,
    },
    /// `vzdestroy`.
    Destroy {
        /// The guest to destroy.
        vmid: u32,
    },
    /// `resize`: new size of one mount point in bytes.
    Resize {
        /// The guest owning the mount point.
        vmid: u32,
        /// The mount point key (`rootfs`, `mp0`, …).
        disk: String,
        /// The new size in bytes.
        size: u64,
    },
    /// `vzsnapshot`.
    Snapshot {
        /// The guest to snapshot.
        vmid: u32,
        /// The snapshot name.
        name: String,
        /// The snapshot description, if one was given.
        description: Option<String>,
    },
    /// `vzrollback`.
    Rollback {
        /// The guest to roll back.
        vmid: u32,
        /// The snapshot to roll back to.
        name: String,
        /// `start=1`: start the guest after the rollback.
        start: bool,
    },
    /// `vzdelsnapshot`.
    DelSnapshot {
        /// The guest owning the snapshot.
        vmid: u32,
        /// The snapshot to delete.
        name: String,
    },
    /// `vzdump`: `denied` lack `VM.Backup`; `locked` is filled by the begin phase.
    Vzdump(vzdump::Job),
    /// `imgdel`.
    ImgDel {
        /// The volume (backup archive) to delete.
        volid: String,
    },
    /// `prunebackups`: the backups the retention marked `remove` when the task started.
    Prune {
        /// The guest whose backups are pruned (`None`: every guest on the storage).
        vmid: Option<u32>,
        /// Volume ids to remove.
        victims: Vec<String>,
    },
}

impl Work {
    /// The guest this work is about (fault injection is per guest).
    pub fn vmid(&self) -> Option<u32> {
        match self {
            Work::Start { vmid }
            | Work::Stop { vmid }
            | Work::Shutdown { vmid }
            | Work::Reboot { vmid }
            | Work::Create { vmid, .. }
            | Work::Destroy { vmid }
            | Work::Resize { vmid, .. }
            | Work::Snapshot { vmid, .. }
            | Work::Rollback { vmid, .. }
            | Work::DelSnapshot { vmid, .. } => Some(*vmid),
            Work::Vzdump(job) => job.vmids.first().copied(),
            Work::ImgDel { .. } => None,
            Work::Prune { vmid, .. } => *vmid,
        }
    }

    fn begin(&mut self, st: &mut State, log: &mut Vec<String>) -> Result<(), String> {
        match self {
            Work::Start { vmid } | Work::Reboot { vmid } => lxc::begin_start(st, *vmid),
            Work::Stop { vmid } | Work::Shutdown { vmid } => lxc::begin_power(st, *vmid),
            Work::Create { .. } => lxc::begin_create(self, st, log),
            Work::Destroy { vmid } => lxc::begin_destroy(st, *vmid),
            Work::Resize { vmid, .. } => st.guest(*vmid).map(|_| ()),
            Work::Snapshot { vmid, name, .. } => snapshot::begin_create(st, *vmid, name),
            Work::Rollback { vmid, name, .. } => snapshot::begin_rollback(st, *vmid, name, log),
            Work::DelSnapshot { vmid, name } => snapshot::begin_delete(st, *vmid, name),
            Work::Vzdump(job) => vzdump::begin(job, st, log),
            Work::ImgDel { .. } | Work::Prune { .. } => Ok(()),
        }
    }

    fn finish(&self, st: &mut State, log: &mut Vec<String>, now: i64) -> Result<(), String> {
        match self {
            Work::Start { vmid } => lxc::finish_start(st, *vmid, now),
            Work::Stop { vmid } | Work::Shutdown { vmid } => lxc::finish_stop(st, *vmid),
            Work::Reboot { vmid } => lxc::finish_start(st, *vmid, now),
            Work::Create { .. } => lxc::finish_create(self, st, log, now),
            Work::Destroy { vmid } => lxc::finish_destroy(st, *vmid, log),
            Work::Resize { vmid, disk, size } => lxc::finish_resize(st, *vmid, disk, *size, log),
            Work::Snapshot {
                vmid,
                name,
                description,
            } => snapshot::finish_create(st, *vmid, name, description.as_deref(), now),
            Work::Rollback { vmid, name, start } => {
                snapshot::finish_rollback(st, *vmid, name, *start, now)
            }
            Work::DelSnapshot { vmid, name } => snapshot::finish_delete(st, *vmid, name),
            Work::Vzdump(job) => vzdump::finish(job, st, log, now),
            Work::ImgDel { volid } => storage::finish_imgdel(st, volid, log),
            Work::Prune { victims, .. } => crate::prune::finish(st, victims, log),
        }
    }

    /// Undo the begin phase after an injected failure or an abort.
    fn abort(&self, st: &mut State) {
        match self {
            Work::Create { .. } => lxc::abort_create(self, st),
            Work::Destroy { vmid }
            | Work::Snapshot { vmid, .. }
            | Work::Rollback { vmid, .. }
            | Work::DelSnapshot { vmid, .. } => {
                if let Work::Snapshot { name, .. } = self {
                    snapshot::abort_create(st, *vmid, name);
                }
                if let Ok(g) = st.guest_mut(*vmid) {
                    g.conf.main.remove("lock");
                }
            }
            Work::Vzdump(job) => vzdump::abort(job, st),
            _ => {}
        }
    }
}

/// A task as PVE's task index knows it, plus the simulator's bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// The UPID.
    pub upid: String,
    /// Fake worker PID.
    pub pid: u32,
    /// Fake process start (clock ticks since boot).
    pub pstart: u64,
    /// Epoch seconds.
    pub starttime: i64,
    /// Task type (`vzstart`, ...).
    pub kind: String,
    /// Task id (usually the vmid).
    pub id: String,
    /// Authenticated id, `!tokenid` included.
    pub user: String,
    /// Epoch milliseconds when the worker is done.
    pub end_at_ms: i64,
    /// Epoch seconds of the end, once stopped.
    pub endtime: Option<i64>,
    /// `OK`, `WARNINGS: N` or the error, once stopped.
    pub exitstatus: Option<String>,
    /// Log lines (the final `TASK ...` line included once stopped).
    pub log: Vec<String>,
    /// The work.
    pub work: Work,
    /// Exit status injected by `/_sim/fail-next`.
    pub injected: Option<String>,
}

impl Task {
    /// Whether the worker still runs.
    pub fn running(&self) -> bool {
        self.exitstatus.is_none()
    }

    /// The owning user without `!tokenid`, and the token id.
    pub fn user_and_token(&self) -> (&str, Option<&str>) {
        match self.user.split_once('!') {
            Some((u, t)) => (u, Some(t)),
            None => (&self.user, None),
        }
    }

    /// The vmid the task is about, from its id.
    pub fn vmid(&self) -> Option<u32> {
        self.id.parse().ok()
    }
}

static UPID_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    // pve-common `src/PVE/UPID.pm:7-58`.
    regex::Regex::new(
        r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
    )
    .unwrap_or_else(|e| panic!("static UPID regex: {e}"))
});

/// The node of a well-formed UPID, `None` if it does not parse.
pub fn upid_node(upid: &str) -> Option<String> {
    UPID_RE.captures(upid).map(|c| c[1].to_string())
}

/// Exit status from a final log line (pve-common `UPID.pm:70-91`).
pub fn exitstatus_line(status: &str) -> String {
    if status == "OK" || status.starts_with("WARNINGS: ") {
        format!("TASK {status}")
    } else {
        format!("TASK ERROR: {status}")
    }
}

/// Whether an exit status counts as failure (`status_is_error`).
pub fn is_error(status: &str) -> bool {
    !(status == "OK" || status.starts_with("WARNINGS: "))
}

impl State {
    /// Start a worker: assign a UPID, consume an injected failure for the guest, run the
    /// begin phase. Returns the UPID; the task is already stopped if the begin phase failed.
    pub fn start_task(
        &mut self,
        kind: &str,
        id: &str,
        user: &str,
        mut work: Work,
        duration_ms: u64,
        now_ms: i64,
    ) -> String {
        let pid = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1 + (now_ms as u32 % 7));
        let starttime = now_ms / 1000;
        let pstart = ((starttime - self.boot_time).max(0) as u64) * 100;
        let upid = format!(
            "UPID:{}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:",
            self.node
        );
        let injected = work.vmid().and_then(|v| self.fail_next.remove(&v));
        let mut log = Vec::new();
        let begun = work.begin(self, &mut log);
        let mut task = Task {
            upid: upid.clone(),
            pid,
            pstart,
            starttime,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            end_at_ms: now_ms + duration_ms as i64,
            endtime: None,
            exitstatus: None,
            log,
            work,
            injected,
        };
        if let Err(err) = begun {
            end(&mut task, err.trim_end().to_string(), starttime);
        }
        self.tasks.push(task);
        upid
    }

    /// Run the finish phase of a running task. No-op for stopped or unknown tasks.
    pub fn finish_task(&mut self, upid: &str, now: i64) {
        let Some(idx) = self
            .tasks
            .iter()
            .position(|t| t.upid == upid && t.running())
        else {
            return;
        };
        let mut task = self.tasks.remove(idx);
        let status = match task.injected.clone() {
            Some(injected) if is_error(&injected) => {
                task.work.abort(self);
                task.log.push(injected.clone());
                injected
            }
            injected => match task.work.finish(self, &mut task.log, now) {
                Ok(()) => match injected {
                    Some(warnings) => {
                        let n: usize = warnings
                            .trim_start_matches("WARNINGS: ")
                            .parse()
                            .unwrap_or(1);
                        for i in 1..=n {
                            task.log.push(format!("WARN: simulated warning {i}"));
                        }
                        warnings
                    }
                    None => "OK".to_string(),
                },
                Err(err) => {
                    task.work.abort(self);
                    err.trim_end().to_string()
                }
            },
        };
        end(&mut task, status, now);
        self.tasks.insert(idx, task);
    }

    /// Abort a running task (`DELETE .../tasks/{upid}`): the worker gets SIGTERM and logs
    /// "received interrupt".
    pub fn stop_task(&mut self, upid: &str, now: i64) {
        let Some(idx) = self
            .tasks
            .iter()
            .position(|t| t.upid == upid && t.running())
        else {
            return;
        };
        let mut task = self.tasks.remove(idx);
        task.work.abort(self);
        end(&mut task, "received interrupt".to_string(), now);
        self.tasks.insert(idx, task);
    }
}

fn end(task: &mut Task, status: String, now: i64) {
    task.log.push(exitstatus_line(&status));
    task.exitstatus = Some(status);
    task.endtime = Some(now.max(task.starttime));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_parses_and_rejects() {
        let upid = "UPID:pve:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:felhom-agent@pve!agent:";
        assert_eq!(upid_node(upid).as_deref(), Some("pve"));
        assert_eq!(upid_node("UPID:pve:bad"), None);
        assert_eq!(
            upid_node(&upid[..upid.len() - 1]),
            None,
            "trailing colon is required"
        );
    }

    #[test]
    fn start_task_makes_a_parsable_upid_and_locked_start_fails_in_worker() {
        let mut st = State::seed("pve", 2, 1_700_000_000).expect("seed");
        st.guests
            .get_mut(&101)
            .expect("101")
            .conf
            .main
            .insert("lock".into(), "backup".into());
        let upid = st.start_task(
            "vzstart",
            "101",
            "root@pam",
            Work::Start { vmid: 101 },
            100,
            1_700_000_100_000,
        );
        assert!(upid_node(&upid).is_some(), "{upid}");
        let task = st.tasks.iter().find(|t| t.upid == upid).expect("task");
        assert_eq!(task.exitstatus.as_deref(), Some("CT is locked (backup)"));
        assert_eq!(
            task.log.last().map(String::as_str),
            Some("TASK ERROR: CT is locked (backup)")
        );
    }

    #[test]
    fn injected_warnings_succeed_and_injected_errors_abort() {
        let mut st = State::seed("pve", 2, 1_700_000_000).expect("seed");
        st.fail_next.insert(101, "WARNINGS: 2".into());
        let upid = st.start_task(
            "vzstart",
            "101",
            "root@pam",
            Work::Start { vmid: 101 },
            0,
            1_700_000_100_000,
        );
        st.finish_task(&upid, 1_700_000_101);
        assert!(st.guests[&101].running);
        let t = st.tasks.last().expect("task");
        assert_eq!(t.exitstatus.as_deref(), Some("WARNINGS: 2"));
        st.fail_next.insert(100, "boom".into());
        let upid = st.start_task(
            "vzstop",
            "100",
            "root@pam",
            Work::Stop { vmid: 100 },
            0,
            1_700_000_100_000,
        );
        st.finish_task(&upid, 1_700_000_101);
        assert!(
            st.guests[&100].running,
            "a failed stop leaves the CT running"
        );
        assert_eq!(
            st.tasks.last().and_then(|t| t.exitstatus.as_deref()),
            Some("boom")
        );
    }
}
