//! Task endpoints under `/nodes/{node}/tasks` (pve-manager `PVE/API2/Tasks.pm`).

use serde_json::{json, Map, Value};

use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::State;
use crate::tasks::{upid_node, Task};

/// Whether `user` owns the task: the same id, or the user owning the task's token.
fn owns(user: &str, task: &Task) -> bool {
    task.user == user
        || task.user_and_token().0 == user && task.user.contains('!') && !user.contains('!')
}

fn task_object(st: &State, t: &Task, for_list: bool) -> Map<String, Value> {
    let (user, token) = t.user_and_token();
    let mut out = Map::new();
    out.insert("upid".into(), json!(t.upid));
    out.insert("node".into(), json!(st.node));
    out.insert("pid".into(), json!(t.pid));
    out.insert("pstart".into(), json!(t.pstart));
    out.insert("starttime".into(), json!(t.starttime));
    out.insert("type".into(), json!(t.kind));
    out.insert("id".into(), json!(t.id));
    out.insert("user".into(), json!(user));
    if let Some(token) = token {
        out.insert("tokenid".into(), json!(token));
    }
    if for_list {
        if let Some(end) = t.endtime {
            out.insert("endtime".into(), json!(end));
        }
        out.insert(
            "status".into(),
            json!(t.exitstatus.clone().unwrap_or_else(|| "RUNNING".into())),
        );
    } else {
        out.insert(
            "status".into(),
            json!(if t.running() { "running" } else { "stopped" }),
        );
        if let Some(exit) = &t.exitstatus {
            out.insert("exitstatus".into(), json!(exit));
        }
    }
    out
}

/// Find a task by the `upid` parameter: 400 for unparsable or unknown UPIDs.
fn find<'a>(st: &'a State, call: &Call) -> Result<&'a Task, ApiError> {
    let upid = call.str("upid").unwrap_or_default();
    let node =
        upid_node(&upid).ok_or_else(|| ApiError::param("upid", "unable to parse worker upid"))?;
    st.tasks
        .iter()
        .find(|t| t.upid == upid && node == st.node)
        .ok_or_else(|| ApiError::param("upid", "no such task"))
}

fn check_access(st: &State, call: &Call, task: &Task, privilege: &str) -> Result<(), ApiError> {
    if call.is_root() || owns(&call.user, task) {
        return Ok(());
    }
    st.access
        .check(&call.user, &format!("/nodes/{}", st.node), &[privilege])
        .map_err(ApiError::Forbidden)
}

/// `GET /nodes/{node}/tasks`: newest first, own tasks unless `Sys.Audit` on the node.
pub fn list(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let start = call.int("start").unwrap_or(0).max(0) as usize;
    let limit = call.int("limit").unwrap_or(50).max(0) as usize;
    let source = call.str("source").unwrap_or_else(|| "archive".into());
    let vmid = call.str("vmid");
    let typefilter = call.str("typefilter");
    let userfilter = call.str("userfilter");
    let errors = call.flag("errors");
    call.sim.with_state(|st| {
        let audit = call.is_root()
            || st
                .access
                .has_all(&call.user, &format!("/nodes/{}", st.node), &["Sys.Audit"]);
        let mut tasks: Vec<&Task> = st
            .tasks
            .iter()
            .filter(|t| audit || owns(&call.user, t))
            .filter(|t| match source.as_str() {
                "active" => t.running(),
                "all" => true,
                _ => !t.running(),
            })
            .filter(|t| vmid.as_ref().is_none_or(|v| &t.id == v))
            .filter(|t| {
                typefilter
                    .as_ref()
                    .is_none_or(|f| t.kind.contains(f.as_str()))
            })
            .filter(|t| {
                userfilter
                    .as_ref()
                    .is_none_or(|f| t.user.contains(f.as_str()))
            })
            .filter(|t| !errors || t.exitstatus.as_deref().is_some_and(|s| s != "OK"))
            .collect();
        tasks.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
        let total = tasks.len() as u64;
        let items: Vec<Value> = tasks
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|t| Value::Object(task_object(st, t, true)))
            .collect();
        Ok(Reply {
            data: Value::Array(items),
            total: Some(total),
        })
    })
}

/// `GET .../tasks/{upid}/status`.
pub fn status(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    call.sim.with_state(|st| {
        let task = find(st, call)?;
        check_access(st, call, task, "Sys.Audit")?;
        Ok(Reply::data(Value::Object(task_object(st, task, false))))
    })
}

/// `GET .../tasks/{upid}/log` (`start` 0-based, `limit` default 50, 0 = all).
pub fn log(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let start = call.int("start").unwrap_or(0).max(0) as usize;
    let limit = call.int("limit").unwrap_or(50).max(0) as usize;
    call.sim.with_state(|st| {
        let task = find(st, call)?;
        check_access(st, call, task, "Sys.Audit")?;
        let lines: Vec<&str> = if task.log.is_empty() {
            // pve-common Tools.pm:751-799 answers an empty log with one "no content" line.
            vec!["no content"]
        } else {
            task.log.iter().map(String::as_str).collect()
        };
        let total = lines.len() as u64;
        let take = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<Value> = lines
            .iter()
            .enumerate()
            .skip(start)
            .take(take)
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect();
        Ok(Reply {
            data: Value::Array(items),
            total: Some(total),
        })
    })
}

/// `DELETE .../tasks/{upid}`: stop a running task (owner or `Sys.Modify`).
pub fn stop(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    call.sim.mutate(|st| {
        let task = find(st, call)?;
        check_access(st, call, task, "Sys.Modify")?;
        let upid = task.upid.clone();
        st.stop_task(&upid, crate::tasks::now());
        Ok(Reply::null())
    })
}
