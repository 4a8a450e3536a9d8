//! CT snapshots: list, create, rollback, delete, snapshot config, and their worker phases
//! (pve-container `API2/LXC/Snapshot.pm`, pve-guest-common `AbstractConfig.pm:730-1208`).

use serde_json::{json, Value};

use crate::conf::{self, Section};
use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::State;
use crate::tasks::Work;

/// Keys of the current config that are not copied into a snapshot section.
fn not_snapshotted(key: &str) -> bool {
    matches!(
        key,
        "lock" | "description" | "parent" | "snapstate" | "snaptime"
    )
}

/// `GET .../snapshot`: snapshots in hash (unordered) order plus a trailing `current` entry.
pub fn list(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    call.sim.with_state(|st| {
        let g = st.guest(vmid)?;
        let mut items: Vec<Value> = Vec::new();
        for (name, snap) in &g.conf.snapshots {
            let mut item = json!({
                "name": name,
                "description": snap.get("description").cloned().unwrap_or_default(),
            });
            if let Some(t) = snap.get("snaptime").and_then(|t| t.parse::<i64>().ok()) {
                item["snaptime"] = json!(t);
            }
            if let Some(p) = snap.get("parent") {
                item["parent"] = json!(p);
            }
            if let Some(s) = snap.get("snapstate") {
                item["snapstate"] = json!(s);
            }
            items.push(item);
        }
        // Perl hash order is unspecified; rotate by vmid so clients cannot rely on sorting.
        if !items.is_empty() {
            let n = items.len();
            items.rotate_left(vmid as usize % n);
        }
        let mut current = json!({
            "name": "current",
            "description": "You are here!",
            "running": if g.running { 1 } else { 0 },
            "digest": g.conf.digest(),
        });
        if let Some(p) = g.conf.main.get("parent") {
            current["parent"] = json!(p);
        }
        items.push(current);
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `GET .../snapshot/{snapname}/config`.
pub fn get_config(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let name = call.str("snapname").unwrap_or_default();
    call.sim.with_state(|st| {
        let g = st.guest(vmid)?;
        let snap = g
            .conf
            .snapshots
            .get(&name)
            .ok_or_else(|| format!("snapshot '{name}' does not exist\n"))?;
        let mut out = conf::section_to_json(snap);
        out.insert("digest".into(), json!(g.conf.digest()));
        Ok(Reply::data(Value::Object(out)))
    })
}

/// `POST .../snapshot`: reserved names fail synchronously; everything else in the worker.
pub fn create(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let name = call.str("snapname").unwrap_or_default();
    if name == "current" || name == "vzdump" {
        return Err(ApiError::Fail(format!(
            "unable to use snapshot name '{name}' (reserved name)\n"
        )));
    }
    let description = call.str("description");
    let user = call.user.clone();
    call.sim.mutate(|st| {
        st.guest(vmid)?;
        let work = Work::Snapshot {
            vmid,
            name,
            description,
        };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "vzsnapshot",
            &vmid.to_string(),
            &user,
            work
        ))))
    })
}

/// `POST .../snapshot/{snapname}/rollback`.
pub fn rollback(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let name = call.str("snapname").unwrap_or_default();
    let start = call.flag("start");
    let user = call.user.clone();
    call.sim.mutate(|st| {
        st.guest(vmid)?;
        let work = Work::Rollback { vmid, name, start };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "vzrollback",
            &vmid.to_string(),
            &user,
            work
        ))))
    })
}

/// `DELETE .../snapshot/{snapname}`.
pub fn delete(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let name = call.str("snapname").unwrap_or_default();
    let user = call.user.clone();
    call.sim.mutate(|st| {
        st.guest(vmid)?;
        let work = Work::DelSnapshot { vmid, name };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "vzdelsnapshot",
            &vmid.to_string(),
            &user,
            work
        ))))
    })
}

// ---- worker phases ----

fn is_mount_key(key: &str) -> bool {
    key == "rootfs"
        || key
            .strip_prefix("mp")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The `volume` of every rootfs/mpN of a section.
fn mount_volumes(section: &Section) -> Vec<String> {
    section
        .iter()
        .filter(|(k, _)| is_mount_key(k))
        .filter_map(|(k, v)| conf::parse_prop(k, v).ok()?.get("volume").cloned())
        .collect()
}

/// Whether every mount point of the config can be snapshotted: each volume (rootfs and
/// every `mpN`, `backup=0` ones included) must sit on a snapshot-capable storage, and a
/// bind or device mount point can never be (pve-container `LXC/Config.pm:88-112`
/// `has_feature` without `backup_only`, pve-storage `Storage.pm:502-516`).
fn snapshot_capable(st: &State, main: &Section) -> bool {
    main.iter().filter(|(k, _)| is_mount_key(k)).all(|(k, v)| {
        let volume = conf::parse_prop(k, v)
            .ok()
            .and_then(|m| m.get("volume").cloned())
            .unwrap_or_default();
        let storage = volume.split_once(':').map(|(s, _)| s);
        !volume.starts_with('/')
            && storage
                .and_then(|s| st.storages.get(s))
                .is_some_and(|s| crate::activation::can_snapshot(&s.kind))
    })
}

/// `snapshot_prepare`, in PVE's order: template, lock, name, then the snapshot feature of
/// every volume (pve-guest-common `AbstractConfig.pm:730-756`); then `lock: snapshot` and a
/// section with `snapstate: prepare`.
pub fn begin_create(st: &mut State, vmid: u32, name: &str) -> Result<(), String> {
    let g = st.guest(vmid)?;
    if g.conf.main.get("template").map(String::as_str) == Some("1") {
        return Err("you can't take a snapshot if it's a template\n".into());
    }
    g.conf.check_lock()?;
    if g.conf.snapshots.contains_key(name) {
        return Err(format!("snapshot name '{name}' already used\n"));
    }
    if !snapshot_capable(st, &g.conf.main) {
        return Err("snapshot feature is not available\n".into());
    }
    let g = st.guest_mut(vmid)?;
    g.conf.main.insert("lock".into(), "snapshot".into());
    let mut snap: Section = Section::new();
    snap.insert("snapstate".into(), "prepare".into());
    g.conf.snapshots.insert(name.to_string(), snap);
    Ok(())
}

/// `snapshot_commit`: the section gets the current options, `parent` moves on, unlock.
pub fn finish_create(
    st: &mut State,
    vmid: u32,
    name: &str,
    description: Option<&str>,
    now: i64,
) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    let mut snap: Section = g
        .conf
        .main
        .iter()
        .filter(|(k, _)| !not_snapshotted(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(parent) = g.conf.main.get("parent") {
        snap.insert("parent".into(), parent.clone());
    }
    if let Some(d) = description.and_then(conf::normalize_description) {
        snap.insert("description".into(), d);
    }
    snap.insert("snaptime".into(), now.to_string());
    g.conf.snapshots.insert(name.to_string(), snap);
    g.conf.main.insert("parent".into(), name.to_string());
    g.conf.main.remove("lock");
    Ok(())
}

/// Failure of a snapshot task: drop the prepared section.
pub fn abort_create(st: &mut State, vmid: u32, name: &str) {
    if let Ok(g) = st.guest_mut(vmid) {
        if g.conf
            .snapshots
            .get(name)
            .is_some_and(|s| s.contains_key("snapstate"))
        {
            g.conf.snapshots.remove(name);
        }
    }
}

/// Rollback start: checks, hard stop of a running CT, `lock: rollback`.
pub fn begin_rollback(
    st: &mut State,
    vmid: u32,
    name: &str,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    g.conf.check_lock()?;
    let snap = g
        .conf
        .snapshots
        .get(name)
        .ok_or_else(|| format!("snapshot '{name}' does not exist\n"))?;
    if snap.contains_key("snapstate") {
        return Err(format!(
            "unable to rollback to incomplete snapshot (snapstate = {})\n",
            snap["snapstate"]
        ));
    }
    if g.running {
        // A running CT is killed first (pve-container LXC/Config.pm:278-283).
        g.running = false;
        log.push(format!("stopping CT {vmid} (rollback)"));
    }
    g.conf.main.insert("lock".into(), "rollback".into());
    Ok(())
}

/// Rollback end: the snapshot's options become current (description and unusedN kept),
/// `parent` = the snapshot, optional start.
pub fn finish_rollback(
    st: &mut State,
    vmid: u32,
    name: &str,
    start: bool,
    now: i64,
) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    let snap = g
        .conf
        .snapshots
        .get(name)
        .cloned()
        .ok_or_else(|| format!("snapshot '{name}' does not exist\n"))?;
    let mut main: Section = g
        .conf
        .main
        .iter()
        .filter(|(k, _)| k.as_str() == "description" || k.starts_with("unused"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in snap.iter().filter(|(k, _)| {
        !matches!(
            k.as_str(),
            "snaptime" | "snapstate" | "description" | "parent"
        )
    }) {
        main.insert(k.clone(), v.clone());
    }
    // Volumes of the current config that the snapshot does not reference (added after it)
    // are kept as unusedN, not lost (pve-container `LXC/Config.pm:291-322`).
    let snap_volumes: Vec<String> = mount_volumes(&snap);
    for volid in mount_volumes(&g.conf.main) {
        if volid.starts_with('/') || snap_volumes.contains(&volid) {
            continue;
        }
        if main
            .iter()
            .any(|(k, v)| k.starts_with("unused") && *v == volid)
        {
            continue;
        }
        if let Some(n) = (0..256).find(|n| !main.contains_key(&format!("unused{n}"))) {
            main.insert(format!("unused{n}"), volid);
        }
    }
    main.insert("parent".into(), name.to_string());
    g.conf.main = main;
    if start {
        g.running = true;
        g.started = now;
    }
    Ok(())
}

/// Delete start: lock check, existence, `lock: snapshot-delete`.
pub fn begin_delete(st: &mut State, vmid: u32, name: &str) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    g.conf.check_lock()?;
    if !g.conf.snapshots.contains_key(name) {
        return Err(format!("snapshot '{name}' does not exist\n"));
    }
    g.conf.main.insert("lock".into(), "snapshot-delete".into());
    Ok(())
}

/// Delete end: remove the section, re-link children to its parent, unlock.
pub fn finish_delete(st: &mut State, vmid: u32, name: &str) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    let removed = g.conf.snapshots.remove(name).unwrap_or_default();
    let grandparent = removed.get("parent").cloned();
    let relink = |section: &mut Section| {
        if section.get("parent").map(String::as_str) == Some(name) {
            match &grandparent {
                Some(p) => section.insert("parent".into(), p.clone()),
                None => section.remove("parent"),
            };
        }
    };
    for snap in g.conf.snapshots.values_mut() {
        relink(snap);
    }
    relink(&mut g.conf.main);
    g.conf.main.remove("lock");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_create_rollback_delete_cycle() {
        let mut st = State::seed("pve", 1, 1_700_000_000).expect("seed");
        begin_create(&mut st, 100, "s1").expect("begin");
        assert_eq!(st.guests[&100].conf.lock(), Some("snapshot"));
        assert_eq!(
            begin_create(&mut st, 100, "s2"),
            Err("CT is locked (snapshot)\n".into())
        );
        finish_create(&mut st, 100, "s1", Some("first"), 1_700_000_001).expect("finish");
        assert_eq!(
            st.guests[&100].conf.snapshots["s1"]["description"],
            "first\n"
        );
        assert_eq!(
            begin_create(&mut st, 100, "s1"),
            Err("snapshot name 's1' already used\n".into())
        );
        st.guests
            .get_mut(&100)
            .expect("ct")
            .conf
            .main
            .insert("memory".into(), "1024".into());
        let mut log = Vec::new();
        begin_rollback(&mut st, 100, "s1", &mut log).expect("rollback");
        assert!(
            !st.guests[&100].running,
            "running CT is killed before rollback"
        );
        finish_rollback(&mut st, 100, "s1", false, 1_700_000_002).expect("rollback end");
        assert_eq!(st.guests[&100].conf.main["memory"], "512");
        assert_eq!(st.guests[&100].conf.main["parent"], "s1");
        begin_delete(&mut st, 100, "s1").expect("delete");
        finish_delete(&mut st, 100, "s1").expect("delete end");
        assert!(st.guests[&100].conf.snapshots.is_empty());
        assert!(!st.guests[&100].conf.main.contains_key("parent"));
    }
}
