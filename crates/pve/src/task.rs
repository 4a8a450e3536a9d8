//! Tasks: what a mutating call returns ([`TaskRef`]), and waiting for a UPID to finish.
//!
//! A POST is not success (DESIGN.md §3.2): a UPID only means "the worker started"; errors inside
//! the worker never become HTTP errors (pve-common `RESTEnvironment.pm:520-664`). A task is done
//! only when its status is `stopped`, and it succeeded only if `exitstatus` is `OK` or
//! `WARNINGS: N` (`UPID.pm:70-91`, `status_is_error`).

use std::future::Future;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::upid::Upid;

/// What a mutating call returned: done synchronously, or a task to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// The call completed synchronously (PVE returned `null`).
    Sync,
    /// A worker task was started.
    Task(Upid),
}

impl TaskRef {
    /// `null` → `Sync`; a `UPID:` string → `Task`; anything else is not a task answer.
    pub(crate) fn from_data(data: &Value) -> Option<TaskRef> {
        match data {
            Value::Null => Some(TaskRef::Sync),
            Value::String(s) => s.parse().ok().map(TaskRef::Task),
            _ => None,
        }
    }

    /// The UPID, if there is one.
    pub fn upid(&self) -> Option<&Upid> {
        match self {
            TaskRef::Sync => None,
            TaskRef::Task(u) => Some(u),
        }
    }
}

/// A successful task end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `exitstatus == "OK"`.
    Ok,
    /// `exitstatus == "WARNINGS: N"`: success, but N warnings were logged.
    Warnings(u32),
}

impl TaskOutcome {
    /// Interprets an exit status: `Ok(outcome)` for success, `Err(text)` for a failure.
    pub fn from_exitstatus(exitstatus: &str) -> std::result::Result<TaskOutcome, String> {
        if exitstatus == "OK" {
            return Ok(TaskOutcome::Ok);
        }
        if let Some(n) = exitstatus.strip_prefix("WARNINGS: ") {
            if let Ok(n) = n.trim().parse::<u32>() {
                return Ok(TaskOutcome::Warnings(n));
            }
        }
        Err(exitstatus.to_owned())
    }

    /// The number of warnings (0 for `Ok`).
    pub fn warnings(&self) -> u32 {
        match self {
            TaskOutcome::Ok => 0,
            TaskOutcome::Warnings(n) => *n,
        }
    }
}

/// `running` or `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// The worker process still exists.
    Running,
    /// The worker ended; see `exitstatus`.
    Stopped,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub upid: Upid,
    /// Running or stopped.
    pub status: TaskState,
    /// Present once stopped: `OK`, `WARNINGS: N` or the error text.
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub exitstatus: Option<String>,
    /// Task type.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "crate::lenient::opt_string"
    )]
    pub task_type: Option<String>,
    /// Task object id.
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub id: Option<String>,
    /// The user without `!tokenid` (PVE splits it here).
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub user: Option<String>,
    /// The token name, for token-started tasks.
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub tokenid: Option<String>,
    /// Start time, epoch seconds.
    #[serde(default, deserialize_with = "crate::lenient::opt_u64")]
    pub starttime: Option<u64>,
}

/// An entry of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskListEntry {
    /// The task.
    pub upid: Upid,
    /// Task type.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "crate::lenient::opt_string"
    )]
    pub task_type: Option<String>,
    /// Task object id.
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub id: Option<String>,
    /// Start, epoch seconds.
    #[serde(default, deserialize_with = "crate::lenient::opt_u64")]
    pub starttime: Option<u64>,
    /// End, epoch seconds (finished tasks).
    #[serde(default, deserialize_with = "crate::lenient::opt_u64")]
    pub endtime: Option<u64>,
    /// `OK`, `WARNINGS: N`, an error text, or `RUNNING`.
    #[serde(default, deserialize_with = "crate::lenient::opt_string")]
    pub status: Option<String>,
}

/// Filters for the task list. `source` defaults to PVE's `archive` (finished tasks only).
#[derive(Debug, Clone, Default)]
pub struct TaskListQuery {
    /// Only tasks of this guest.
    pub vmid: Option<crate::Vmid>,
    /// Only tasks of this type.
    pub typefilter: Option<String>,
    /// `archive`, `active` or `all`.
    pub source: Option<String>,
    /// Maximum entries (PVE default 50).
    pub limit: Option<u32>,
    /// Only tasks that ended with an error.
    pub errors: bool,
}

/// One task log line.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TaskLogLine {
    /// 1-based line number.
    #[serde(deserialize_with = "crate::lenient::u64")]
    pub n: u64,
    /// The text.
    #[serde(deserialize_with = "crate::lenient::string")]
    pub t: String,
}

/// How often to ask for a task's status. A policy is a list of first delays, then a steady cap.
///
/// The default ([`PollPolicy::adaptive`]) asks after 25, 50, 100 and 200 ms, then every 250 ms:
/// short tasks are noticed within a few tens of ms, long ones within 250 ms, at no more than
/// four requests a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPolicy {
    steps: Vec<Duration>,
    steady: Duration,
}

impl PollPolicy {
    /// Delays `steps` (in order) then `steady` forever.
    pub fn new(steps: Vec<Duration>, steady: Duration) -> Self {
        PollPolicy { steps, steady }
    }

    /// 25, 50, 100, 200 ms, then 250 ms.
    pub fn adaptive() -> Self {
        PollPolicy::new(
            [25, 50, 100, 200]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            Duration::from_millis(250),
        )
    }

    /// The same delay every time (e.g. a 1 s baseline for benchmarks).
    pub fn fixed(every: Duration) -> Self {
        PollPolicy::new(Vec::new(), every)
    }

    /// Delay before status check number `attempt` (0-based).
    pub fn delay(&self, attempt: usize) -> Duration {
        self.steps.get(attempt).copied().unwrap_or(self.steady)
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy::adaptive()
    }
}

/// Options for [`Client::wait_task`].
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up (with [`Error::TaskTimeout`]) after this long; the task keeps running.
    pub timeout: Duration,
    /// Poll schedule.
    pub policy: PollPolicy,
    /// How many log lines a failure carries.
    pub log_tail: usize,
    /// Optional cancel signal: waiting stops with [`Error::TaskWaitCancelled`] once it is `true`.
    pub cancel: Option<watch::Receiver<bool>>,
}

impl WaitOptions {
    /// Adaptive polling, 20 log lines on failure, the given timeout.
    pub fn new(timeout: Duration) -> Self {
        WaitOptions {
            timeout,
            policy: PollPolicy::adaptive(),
            log_tail: 20,
            cancel: None,
        }
    }

    /// Uses this poll policy.
    pub fn policy(mut self, policy: PollPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Carries `lines` log lines in a [`Error::TaskFailed`].
    pub fn log_tail_lines(mut self, lines: usize) -> Self {
        self.log_tail = lines;
        self
    }

    /// Stops waiting when `rx` turns `true` (or its sender is dropped).
    pub fn cancel_on(mut self, rx: watch::Receiver<bool>) -> Self {
        self.cancel = Some(rx);
        self
    }
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions::new(Duration::from_secs(600))
    }
}

impl Client {
    /// `GET /nodes/{upid.node}/tasks/{upid}/status`: task paths must name the UPID's node.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        let path = api_path(&["nodes", upid.node(), "tasks", upid.as_str(), "status"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `GET …/tasks/{upid}/log`; `limit = 0` means all lines (PVE semantics).
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<Vec<TaskLogLine>> {
        let path = api_path(&["nodes", upid.node(), "tasks", upid.as_str(), "log"]);
        let params = Params::new()
            .int("start", to_i64(start))
            .int("limit", to_i64(limit));
        self.call(Method::GET, &path, params).await
    }

    /// The last `lines` lines of a task log (two requests: the total, then the tail).
    pub async fn task_log_tail(&self, upid: &Upid, lines: usize) -> Result<Vec<String>> {
        if lines == 0 {
            return Ok(Vec::new());
        }
        // One request for everything is simpler and still small for the tasks we run; the log
        // API has no "from the end" option.
        let all = self.task_log(upid, 0, 0).await?;
        let skip = all.len().saturating_sub(lines);
        Ok(all.into_iter().skip(skip).map(|l| l.t).collect())
    }

    /// `GET /nodes/{node}/tasks` on this client's node.
    pub async fn list_tasks(&self, query: &TaskListQuery) -> Result<Vec<TaskListEntry>> {
        let path = api_path(&["nodes", self.node(), "tasks"]);
        let params = Params::new()
            .opt_int("vmid", query.vmid.map(|v| i64::from(v.get())))
            .opt_str("typefilter", query.typefilter.clone())
            .opt_str("source", query.source.clone())
            .opt_int("limit", query.limit.map(i64::from))
            .opt_bool("errors", query.errors.then_some(true));
        self.call(Method::GET, &path, params).await
    }

    /// Waits until the task has stopped and returns its outcome.
    ///
    /// Succeeds only on `stopped` with `OK` or `WARNINGS: N` (warnings are logged and returned).
    /// A failure carries the log tail. Transient transport errors while polling (connect
    /// failures, 595, request timeouts) are retried until the timeout: a status GET changes
    /// nothing, so repeating it is always safe.
    ///
    /// Cancel-safe: the future only issues read-only status/log GETs and keeps its state in
    /// local variables, so dropping it at any await point loses nothing and leaves no request
    /// half-applied; the task itself keeps running in PVE and can be waited for again by UPID.
    pub async fn wait_task(&self, upid: &Upid, options: WaitOptions) -> Result<TaskOutcome> {
        match options.cancel.clone() {
            Some(mut rx) => {
                let cancelled = async move {
                    // A dropped sender also ends the wait: nobody can un-cancel anymore.
                    let _ = rx.wait_for(|c| *c).await;
                };
                self.wait_task_until(upid, options, cancelled).await
            }
            None => {
                self.wait_task_until(upid, options, std::future::pending())
                    .await
            }
        }
    }

    /// Like [`Client::wait_task`], stopping with [`Error::TaskWaitCancelled`] when `cancel`
    /// completes (e.g. a shutdown token's `cancelled()`).
    pub async fn wait_task_until<F>(
        &self,
        upid: &Upid,
        options: WaitOptions,
        cancel: F,
    ) -> Result<TaskOutcome>
    where
        F: Future<Output = ()>,
    {
        tokio::pin!(cancel);
        let started = Instant::now();
        let deadline = started + options.timeout;
        let mut attempt = 0usize;
        // The schedule is measured from the start of the previous poll (not its end), so a
        // task is noticed within one step of stopping plus one answer, not one step plus a
        // whole round trip; MIN_POLL_GAP keeps a slow API from being polled back to back.
        let mut last_start = started;
        let mut last_end = started;
        loop {
            let wake = (last_start + options.policy.delay(attempt))
                .max(last_end + MIN_POLL_GAP)
                .min(deadline);
            tokio::select! {
                biased;
                () = &mut cancel => return Err(Error::TaskWaitCancelled { upid: upid.clone() }),
                () = tokio::time::sleep_until(wake) => {}
            }
            attempt += 1;
            last_start = Instant::now();
            let status = tokio::select! {
                biased;
                () = &mut cancel => return Err(Error::TaskWaitCancelled { upid: upid.clone() }),
                s = self.task_status(upid) => s,
            };
            last_end = Instant::now();
            match status {
                Ok(s) if s.status == TaskState::Stopped => {
                    return self.finish(upid, s.exitstatus, &options).await;
                }
                Ok(_) => debug!(%upid, attempt, "task still running"),
                Err(e) if poll_error_is_transient(&e) => {
                    warn!(%upid, attempt, error = %e, "task status poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::TaskTimeout {
                    upid: upid.clone(),
                    waited: started.elapsed(),
                });
            }
        }
    }

    async fn finish(
        &self,
        upid: &Upid,
        exitstatus: Option<String>,
        options: &WaitOptions,
    ) -> Result<TaskOutcome> {
        let exitstatus = exitstatus.unwrap_or_else(|| "unexpected status".to_owned());
        match TaskOutcome::from_exitstatus(&exitstatus) {
            Ok(TaskOutcome::Ok) => {
                debug!(%upid, "task finished");
                Ok(TaskOutcome::Ok)
            }
            Ok(TaskOutcome::Warnings(n)) => {
                warn!(%upid, warnings = n, "task finished with warnings");
                Ok(TaskOutcome::Warnings(n))
            }
            Err(exitstatus) => {
                let log_tail = match self.task_log_tail(upid, options.log_tail).await {
                    Ok(tail) => tail,
                    Err(e) => {
                        warn!(%upid, error = %e, "cannot read log of failed task");
                        Vec::new()
                    }
                };
                Err(Error::TaskFailed {
                    upid: upid.clone(),
                    exitstatus,
                    log_tail,
                })
            }
        }
    }
}

/// Least time between the end of one status poll and the start of the next.
const MIN_POLL_GAP: Duration = Duration::from_millis(25);

fn poll_error_is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Proxy { .. }
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exitstatus_rules() {
        assert_eq!(TaskOutcome::from_exitstatus("OK"), Ok(TaskOutcome::Ok));
        assert_eq!(
            TaskOutcome::from_exitstatus("WARNINGS: 3"),
            Ok(TaskOutcome::Warnings(3))
        );
        assert_eq!(
            TaskOutcome::from_exitstatus("WARNINGS: 3")
                .unwrap()
                .warnings(),
            3
        );
        assert_eq!(
            TaskOutcome::from_exitstatus("CT is locked (backup)"),
            Err("CT is locked (backup)".to_owned())
        );
        assert!(TaskOutcome::from_exitstatus("ok").is_err());
        assert!(TaskOutcome::from_exitstatus("WARNINGS: x").is_err());
        assert!(TaskOutcome::from_exitstatus("unexpected status").is_err());
    }

    #[test]
    fn task_ref_from_data() {
        assert_eq!(TaskRef::from_data(&Value::Null), Some(TaskRef::Sync));
        let s = "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:root@pam:";
        assert_eq!(
            TaskRef::from_data(&Value::String(s.into())).and_then(|t| t.upid().cloned()),
            Some(s.parse().unwrap())
        );
        assert_eq!(TaskRef::from_data(&Value::String("OK".into())), None);
        assert_eq!(TaskRef::from_data(&serde_json::json!({"a":1})), None);
    }

    #[test]
    fn adaptive_schedule() {
        let p = PollPolicy::adaptive();
        let ms: Vec<u128> = (0..7).map(|i| p.delay(i).as_millis()).collect();
        assert_eq!(ms, vec![25, 50, 100, 200, 250, 250, 250]);
        // Never slower than the 250 ms target once steady.
        assert!((0..100).all(|i| p.delay(i) <= Duration::from_millis(250)));
        let f = PollPolicy::fixed(Duration::from_secs(1));
        assert_eq!(f.delay(0), Duration::from_secs(1));
        assert_eq!(f.delay(9), Duration::from_secs(1));
    }

    #[test]
    fn task_status_decodes_pve_shape() {
        let s: TaskStatus = serde_json::from_value(serde_json::json!({
            "upid": "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:agent@pve!hostagent:",
            "node": "pve1", "pid": 238066, "pstart": 28492756, "starttime": 1727046066,
            "type": "vzstart", "id": "101", "user": "agent@pve", "tokenid": "hostagent",
            "status": "stopped", "exitstatus": "WARNINGS: 2"
        }))
        .unwrap();
        assert_eq!(s.status, TaskState::Stopped);
        assert_eq!(s.exitstatus.as_deref(), Some("WARNINGS: 2"));
        assert_eq!(s.tokenid.as_deref(), Some("hostagent"));
    }
}
