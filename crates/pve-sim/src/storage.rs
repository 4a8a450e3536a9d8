//! Node storage status and content, and volume deletion (pve-storage
//! `API2/Storage/Status.pm`, `Content.pm`). The cluster storage config is in
//! [`crate::storage_cfg`]; whether a storage is active is decided by [`crate::activation`].

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::activation;
use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::{State, Storage};
use crate::storage_cfg::shared;
use crate::tasks::{self, Work};

fn missing(id: &str) -> ApiError {
    ApiError::Fail(format!("storage '{id}' does not exist\n"))
}

fn sto<'a>(st: &'a State, id: &str) -> Result<&'a Storage, ApiError> {
    st.storages.get(id).ok_or_else(|| missing(id))
}

/// `activate_storage` for a synchronous caller: its error as a 500.
fn activate(st: &State, id: &str) -> Result<(), ApiError> {
    activation::activate(st, id).map_err(|e| ApiError::Fail(format!("{e}\n")))
}

/// One entry of `storage_info` (pve-storage `Storage.pm:1440-1527`): every storage starts
/// as `active: 0` with zero figures; an enabled one that activates gets its real figures.
/// Activation errors are only warned in PVE, never answered.
fn status_object(st: &State, id: &str, s: &Storage) -> Map<String, Value> {
    let mut out = Map::new();
    let active = activation::active(st, id, s);
    out.insert("storage".into(), json!(id));
    out.insert("type".into(), json!(s.kind));
    out.insert("content".into(), json!(s.content().join(",")));
    out.insert("shared".into(), json!(i32::from(shared(s))));
    out.insert(
        "enabled".into(),
        json!(i32::from(activation::enabled_here(st, id, s))),
    );
    out.insert("active".into(), json!(i32::from(active)));
    let (total, used) = if active {
        (s.total, st.storage_used(id).min(s.total))
    } else {
        (0, 0)
    };
    out.insert("total".into(), json!(total));
    out.insert("used".into(), json!(used));
    out.insert("avail".into(), json!(total - used));
    if total > 0 {
        out.insert("used_fraction".into(), json!(used as f64 / total as f64));
    }
    out
}

/// The storages `storage_info` visits for a `content` filter: with a filter only enabled
/// storages that have one of the content types (`Storage.pm:1453-1462`).
fn visited<'a>(
    st: &'a State,
    content: Option<&'a str>,
) -> impl Iterator<Item = (&'a String, &'a Storage)> + 'a {
    st.storages.iter().filter(move |(id, s)| match content {
        None => true,
        Some(c) => {
            activation::enabled_here(st, id, s)
                && c.split(',').any(|c| s.content().iter().any(|x| x == c))
        }
    })
}

/// Every storage status read recomputes all visited storages, and each one that is slow to
/// answer (an unreachable NFS: ~10 s, PBS: ~7 s) delays the whole answer (pve-storage
/// `Storage.pm:1483-1524`, `NFSPlugin.pm:174-216`). Disabled storages are not activated.
/// The sleep happens outside the state lock.
async fn status_latency(call: &Call<'_>, content: Option<&str>) {
    let ms: u64 = call.sim.with_state(|st| {
        visited(st, content)
            .filter(|(id, s)| activation::enabled_here(st, id, s))
            .map(|(id, _)| activation::latency_ms(st, id))
            .sum()
    });
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// `GET /nodes/{node}/storage`: storages with `Datastore.Audit` or `Datastore.AllocateSpace`;
/// an unknown `storage` filter is 400 `No such storage.` (`Status.pm:217-219`).
pub async fn node_list(call: &Call<'_>) -> Result<Reply, ApiError> {
    check_node(call)?;
    let content = call.str("content");
    let only = call.str("storage");
    let enabled = call.flag("enabled");
    status_latency(call, content.as_deref()).await;
    call.sim.with_state(|st| {
        let infos: Vec<(&String, &Storage)> = visited(st, content.as_deref()).collect();
        if let Some(o) = &only {
            if !infos.iter().any(|(id, _)| *id == o) {
                return Err(ApiError::param("storage", "No such storage."));
            }
        }
        let items: Vec<Value> = infos
            .into_iter()
            .filter(|(id, _)| {
                st.access.has_any(
                    &call.user,
                    &format!("/storage/{id}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )
            })
            .filter(|(id, _)| only.as_ref().is_none_or(|o| o == *id))
            .filter(|(_, s)| !enabled || s.enabled())
            .map(|(id, s)| Value::Object(status_object(st, id, s)))
            .collect();
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `GET /nodes/{node}/storage/{storage}/status`: 200 with `active: 0` and zeros for a storage
/// that does not activate, never an error; 400 `No such storage.` for an unknown id
/// (`Status.pm:327-408`).
pub async fn status(call: &Call<'_>) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    status_latency(call, None).await;
    call.sim.with_state(|st| {
        let s = st
            .storages
            .get(&id)
            .ok_or_else(|| ApiError::param("storage", "No such storage."))?;
        let mut out = status_object(st, &id, s);
        out.remove("storage");
        out.remove("used_fraction");
        Ok(Reply::data(Value::Object(out)))
    })
}

/// The file path of a volume on a directory-like storage.
fn volume_path(st: &State, volid: &str) -> String {
    let (sid, name) = volid.split_once(':').unwrap_or(("", volid));
    let base = st
        .storages
        .get(sid)
        .and_then(|s| s.props.get("path").cloned())
        .unwrap_or_else(|| format!("/mnt/pve/{sid}"));
    match name.strip_prefix("backup/") {
        Some(file) => format!("{base}/dump/{file}"),
        None => format!("{base}/{name}"),
    }
}

/// `GET .../content` (`content`, `vmid`), sorted by volid case-insensitively. The storage
/// is activated first, so one that does not activate answers 500 with the activation error
/// (`Content.pm:23-185`), after its latency.
pub async fn content(call: &Call<'_>) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    let content = call.str("content");
    let vmid = call.int("vmid");
    let ms = call.sim.with_state(|st| activation::latency_ms(st, &id));
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    call.sim.with_state(|st| {
        sto(st, &id)?;
        activate(st, &id)?;
        let prefix = format!("{id}:");
        let allocate = st.access.has_all(
            &call.user,
            &format!("/storage/{id}"),
            &["Datastore.Allocate"],
        );
        let mut items: Vec<(String, Value)> = st
            .volumes
            .iter()
            .filter(|(volid, _)| volid.starts_with(&prefix))
            .filter(|(_, v)| content.as_ref().is_none_or(|c| c == &v.content))
            .filter(|(_, v)| vmid.is_none_or(|want| v.vmid.map(i64::from) == Some(want)))
            .filter(|(_, v)| {
                allocate
                    || v.vmid.is_none_or(|o| {
                        st.access.has_any(
                            &call.user,
                            &format!("/vms/{o}"),
                            &["VM.Audit", "VM.Backup"],
                        )
                    })
            })
            .map(|(volid, v)| {
                let mut item = json!({
                    "volid": volid,
                    "content": v.content,
                    "format": v.format,
                    "size": v.size,
                    "ctime": v.ctime,
                });
                if let Some(o) = v.vmid {
                    item["vmid"] = json!(o);
                }
                if let Some(sub) = &v.subtype {
                    item["subtype"] = json!(sub);
                }
                if let Some(notes) = &v.notes {
                    item["notes"] = crate::vzdump::notes_first_line(notes);
                }
                if v.protected {
                    item["protected"] = json!(1);
                }
                if let Some(fp) = &v.encrypted {
                    item["encrypted"] = json!(fp);
                }
                if v.content == "rootdir" || v.content == "images" {
                    item["used"] = json!(v.size / 8);
                }
                (volid.to_lowercase(), item)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Reply::data(Value::Array(
            items.into_iter().map(|(_, v)| v).collect(),
        )))
    })
}

/// `DELETE .../content/{volume}`: a UPID, or with `delay` the task's outcome.
pub async fn delete_volume(call: &Call<'_>) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    let volume = call.str("volume").unwrap_or_default();
    let volid = if volume.contains(':') {
        volume
    } else {
        format!("{id}:{volume}")
    };
    let user = call.user.clone();
    let upid = call.sim.mutate(|st| {
        sto(st, &id)?;
        activate(st, &id)?;
        let owner = st
            .volumes
            .get(&volid)
            .filter(|v| v.content == "backup")
            .and_then(|v| v.vmid);
        check_backup_removal(st, &user, &id, owner)?;
        // The worker has no id (`fork_worker('imgdel', undef, ...)` in Content.pm); a volid
        // could not be one anyway: UPID ids exclude '/'.
        Ok::<_, ApiError>(call.sim.start_task(
            st,
            "imgdel",
            "",
            &user,
            Work::ImgDel {
                volid: volid.clone(),
            },
        ))
    })?;
    let Some(delay) = call.int("delay") else {
        return Ok(Reply::data(json!(upid)));
    };
    let deadline = tasks::now_ms() + delay * 1000;
    loop {
        let status = call.sim.with_state(|st| {
            st.tasks
                .iter()
                .find(|t| t.upid == upid)
                .and_then(|t| t.exitstatus.clone())
        });
        match status {
            Some(s) if !tasks::is_error(&s) => return Ok(Reply::null()),
            Some(s) => return Err(ApiError::Fail(format!("{s}\n"))),
            None if tasks::now_ms() >= deadline => return Ok(Reply::data(json!(upid))),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Who may remove backups from `storage`: root; for one guest's backups (`owner`)
/// `Datastore.AllocateSpace` on the storage and `VM.Backup` on the guest; otherwise
/// `Datastore.Allocate` (pve-storage `Content.pm` delete, `PruneBackups.pm`).
pub(crate) fn check_backup_removal(
    st: &State,
    user: &str,
    storage: &str,
    owner: Option<u32>,
) -> Result<(), ApiError> {
    if user == "root@pam" {
        return Ok(());
    }
    let spath = format!("/storage/{storage}");
    match owner {
        Some(v) => {
            st.access
                .check(user, &spath, &["Datastore.AllocateSpace"])
                .map_err(ApiError::Forbidden)?;
            st.access
                .check(user, &format!("/vms/{v}"), &["VM.Backup"])
                .map_err(ApiError::Forbidden)
        }
        None => st
            .access
            .check(user, &spath, &["Datastore.Allocate"])
            .map_err(ApiError::Forbidden),
    }
}

/// Worker of `imgdel`: protected backups refuse (pve-storage `Storage.pm:1831-1839`).
pub fn finish_imgdel(st: &mut State, volid: &str, log: &mut Vec<String>) -> Result<(), String> {
    let path = volume_path(st, volid);
    let v = st
        .volumes
        .get(volid)
        .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
    if v.protected {
        return Err(format!("cannot remove protected archive '{path}'"));
    }
    if v.content == "backup" {
        log.push(format!("Removed volume '{volid}' ({path})"));
    }
    st.volumes.remove(volid);
    Ok(())
}
