//! `POST /nodes/{node}/lxc`: create from a template or restore from a backup, and the worker
//! phases of `vzcreate`/`vzrestore` (pve-container `API2/LXC.pm:140-657`,
//! `LXC/Create.pm:293-346,527-581`).

use serde_json::json;

use crate::activation;
use crate::conf::{self, CtConf, Section};
use crate::envelope::{ApiError, Reply};
use crate::lxc::{allocate_if_new, apply_option, check_option_perm};
use crate::server::{check_node, Call};
use crate::state::{ArchivedMount, Guest, State, Volume};
use crate::tasks::Work;

/// Parameters of the create call that are not CT options.
const NON_OPTIONS: &[&str] = &[
    "node",
    "vmid",
    "ostemplate",
    "storage",
    "restore",
    "force",
    "unique",
    "start",
    "pool",
    "password",
    "ssh-public-keys",
    "bwlimit",
    "ignore-unpack-errors",
    "ha-managed",
];

/// Keys of a backed-up config that a restore does not take over (`Create.pm:293-346`).
fn skipped_on_restore(key: &str) -> bool {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(
        key,
        "digest" | "rootfs" | "parent" | "template" | "lock" | "snapstate" | "snaptime"
    ) || matches!(base, "unused" | "mp")
}

/// Check `check_volume_access` for the template or archive.
pub fn check_volume_access(st: &State, user: &str, volid: &str) -> Result<(), ApiError> {
    if user == "root@pam" {
        return Ok(());
    }
    let storage = volid.split(':').next().unwrap_or_default();
    let path = format!("/storage/{storage}");
    match st.volumes.get(volid) {
        Some(v) if v.content == "backup" => {
            st.access
                .check(user, &path, &["Datastore.AllocateSpace"])
                .map_err(ApiError::Forbidden)?;
            if let Some(owner) = v.vmid {
                st.access
                    .check(user, &format!("/vms/{owner}"), &["VM.Backup"])
                    .map_err(ApiError::Forbidden)?;
            }
            Ok(())
        }
        _ => st
            .access
            .check_any(user, &path, &["Datastore.AllocateSpace", "Datastore.Audit"])
            .map_err(ApiError::Forbidden),
    }
}

/// `POST /nodes/{node}/lxc` (also used by `/_sim/pct/create` with `root@pam`).
pub fn create(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let restore = call.flag("restore");
    let force = call.flag("force");
    let unique = call.flag("unique");
    let storage = call.str("storage").unwrap_or_else(|| "local".into());
    let ostemplate = call.str("ostemplate").unwrap_or_default();
    let mounts = mount_params(call);
    // PVE refuses mpN without rootfs for create and restore alike (pve-container
    // `API2/LXC.pm`, before it branches on `restore`).
    if !mounts.is_empty() && !mounts.iter().any(|(k, _)| k == "rootfs") {
        return Err(ApiError::Fail(
            "mount points configured, but 'rootfs' not set - aborting\n".into(),
        ));
    }
    let user = call.user.clone();
    let root = call.is_root();
    let node = call.sim.node();
    call.sim.mutate(|st| {
        let existing = st.guests.get(&vmid).cloned();
        // Permissions (LXC.pm:140-260).
        if !root {
            let vm = format!("/vms/{vmid}");
            if existing.is_some() && restore && force {
                st.access
                    .check_any(&user, &vm, &["VM.Backup", "VM.Allocate"])
                    .map_err(|_| {
                        ApiError::Forbidden(crate::acl::perm_message(&format!("{vm}, VM.Backup")))
                    })?;
            } else {
                st.access
                    .check(&user, &vm, &["VM.Allocate"])
                    .map_err(ApiError::Forbidden)?;
            }
            st.access
                .check(
                    &user,
                    &format!("/storage/{storage}"),
                    &["Datastore.AllocateSpace"],
                )
                .map_err(ApiError::Forbidden)?;
            if call.str("unprivileged").as_deref() == Some("0") {
                st.access
                    .check(&user, "/", &["Sys.Modify"])
                    .map_err(ApiError::Forbidden)?;
            }
            check_volume_access(st, &user, &ostemplate)?;
            for (k, v) in call
                .params
                .iter()
                .filter(|(k, _)| !NON_OPTIONS.contains(&k.as_str()))
            {
                let new = conf::param_to_conf(k, v);
                check_option_perm(st, &user, vmid, k, Some(&new), None)?;
            }
        }
        // Synchronous checks (LXC.pm:280-330).
        if let Some(g) = &existing {
            if !(restore && force) {
                return Err(ApiError::Fail(format!(
                    "CT {vmid} already exists on node '{node}'\n"
                )));
            }
            if g.running {
                return Err(ApiError::Fail("can't overwrite running container\n".into()));
            }
            if g.conf.main.get("protection").map(String::as_str) == Some("1") {
                return Err(ApiError::Fail(format!(
                    "unable to restore CT {vmid} - protection mode enabled\n"
                )));
            }
            g.conf.check_lock()?;
        }
        // Every storage a new mount point lands on is checked and activated before the task
        // starts (`check_and_activate_storage`, LXC.pm:346-407): the explicit rootfs/mpN
        // storages, or `storage` when no rootfs is given.
        let mut targets: Vec<String> = mount_params(call)
            .iter()
            .filter_map(|(k, v)| {
                let volume = conf::parse_prop(k, v).ok()?.get("volume").cloned()?;
                let (sid, _) = volume.split_once(':')?;
                Some(sid.to_string())
            })
            .collect();
        if !call.params.contains_key("rootfs") {
            targets.push(storage.clone());
        }
        for sid in &targets {
            check_and_activate(st, &user, sid)?;
        }
        let source = st
            .volumes
            .get(&ostemplate)
            .cloned()
            .ok_or_else(|| ApiError::Fail(format!("volume '{ostemplate}' does not exist\n")))?;
        if restore && source.content != "backup" {
            return Err(ApiError::Fail(format!(
                "unable to restore from '{ostemplate}' - not a backup archive\n"
            )));
        }
        let volumes_before: Vec<String> = st.volumes.keys().cloned().collect();
        let built = build_conf(call, st, vmid, restore, unique, &storage, &source);
        // Volumes allocated while building belong to the worker (or go away on error).
        let new_volumes: Vec<(String, Volume)> = st
            .volumes
            .keys()
            .filter(|k| !volumes_before.contains(k))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|k| st.volumes.remove(&k).map(|v| (k, v)))
            .collect();
        let ct = built?;
        let mut new_volumes = new_volumes;
        if restore {
            restore_files(&ct, &mut new_volumes, &source.archived_mounts);
        }
        let kind = if restore { "vzrestore" } else { "vzcreate" };
        let work = Work::Create {
            vmid,
            conf: ct,
            volumes: new_volumes,
            previous: existing.map(Box::new),
            source: ostemplate.clone(),
            restore,
            start: call.flag("start"),
        };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            kind,
            &vmid.to_string(),
            &user,
            work
        ))))
    })
}

/// The `rootfs`/`mpN` parameters, a bare number meaning `<storage>:<GiB>` (LXC.pm:369-375).
fn mount_params(call: &Call) -> Vec<(String, String)> {
    let storage = call.str("storage").unwrap_or_else(|| "local".into());
    call.params
        .iter()
        .filter(|(k, _)| k.as_str() == "rootfs" || is_mp_key(k))
        .map(|(k, v)| {
            let text = conf::param_to_conf(k, v);
            let bare = text.split(',').next().unwrap_or("");
            let text = if !bare.is_empty() && bare.parse::<f64>().is_ok() {
                format!("{storage}:{text}")
            } else {
                text
            };
            (k.clone(), text)
        })
        .collect()
}

fn is_mp_key(key: &str) -> bool {
    key.strip_prefix("mp")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// `check_and_activate_storage` (LXC.pm:346-360): enabled on this node, `rootdir` content,
/// `Datastore.AllocateSpace`, then `activate_storage`.
fn check_and_activate(st: &State, user: &str, sid: &str) -> Result<(), ApiError> {
    let sto = st
        .storages
        .get(sid)
        .ok_or_else(|| ApiError::Fail(format!("storage '{sid}' does not exist\n")))?;
    activation::check_enabled(st, sid, sto).map_err(|e| ApiError::Fail(format!("{e}\n")))?;
    if !sto.content().iter().any(|c| c == "rootdir") {
        return Err(ApiError::param(
            "storage",
            format!("storage '{sid}' does not support container directories"),
        ));
    }
    if user != "root@pam" {
        st.access
            .check(
                user,
                &format!("/storage/{sid}"),
                &["Datastore.AllocateSpace"],
            )
            .map_err(ApiError::Forbidden)?;
    }
    activation::activate(st, sid).map_err(|e| ApiError::Fail(format!("{e}\n")))
}

/// The archive is extracted into the freshly mounted tree: each new volume gets the files the
/// archive holds for its mount path; a mount point the backup excluded (`backup=0`) comes back
/// empty (LXC.pm:471-527, `Create.pm:227`).
fn restore_files(ct: &CtConf, volumes: &mut [(String, Volume)], archived: &[ArchivedMount]) {
    for (key, value) in ct
        .main
        .iter()
        .filter(|(k, _)| k.as_str() == "rootfs" || is_mp_key(k))
    {
        let Ok(map) = conf::parse_prop(key, value) else {
            continue;
        };
        let mp = if key == "rootfs" {
            "/".to_string()
        } else {
            map.get("mp").cloned().unwrap_or_default()
        };
        let volid = map.get("volume").cloned().unwrap_or_default();
        if let Some((_, v)) = volumes.iter_mut().find(|(id, _)| *id == volid) {
            v.data = archived
                .iter()
                .find(|m| m.mp == mp)
                .and_then(|m| m.data.clone());
        }
    }
}

/// The new config: the archive's (restore) or defaults, then explicit parameters.
fn build_conf(
    call: &Call,
    st: &mut State,
    vmid: u32,
    restore: bool,
    unique: bool,
    storage: &str,
    source: &Volume,
) -> Result<CtConf, ApiError> {
    let mut ct = CtConf::default();
    if restore {
        let archive = source.archive.clone().unwrap_or_default();
        for (k, v) in &archive.main {
            if !skipped_on_restore(k) {
                ct.main.insert(k.clone(), v.clone());
            }
        }
        // Storage-only mode: every volume mount point is recreated empty at its
        // recorded size on `storage` (LXC.pm:471-527).
        if !call.params.contains_key("rootfs") {
            for (k, v) in archive
                .main
                .iter()
                .filter(|(k, _)| k.as_str() == "rootfs" || k.starts_with("mp"))
            {
                let mut map = conf::parse_prop(k, v).unwrap_or_default();
                let gib = map
                    .get("size")
                    .and_then(|s| conf::parse_size(s))
                    .unwrap_or(4 << 30) as f64
                    / (1u64 << 30) as f64;
                map.insert("volume".into(), format!("{storage}:{gib}"));
                map.remove("size");
                let value = allocate_if_new(st, vmid, k, &conf::print_prop(k, &map))?;
                ct.main.insert(k.clone(), value);
            }
        }
    } else {
        ct.main.insert("arch".into(), "amd64".into());
        ct.main.insert("ostype".into(), "debian".into());
    }
    let mounts = mount_params(call);
    for (k, v) in call
        .params
        .iter()
        .filter(|(k, _)| !NON_OPTIONS.contains(&k.as_str()))
    {
        match mounts.iter().find(|(m, _)| m == k) {
            Some((_, text)) => apply_option(st, vmid, &mut ct, k, &json!(text))?,
            None => apply_option(st, vmid, &mut ct, k, v)?,
        }
    }
    if restore && unique {
        // unique=1 regenerates the MAC of every backed-up netN, overriding a netN passed
        // in the same request (Create.pm:572-578).
        if let Some(archive) = &source.archive {
            for (k, v) in archive.main.iter().filter(|(k, _)| k.starts_with("net")) {
                let fresh = conf::with_new_hwaddr(k, v).map_err(|e| ApiError::param(k, e))?;
                ct.main.insert(k.clone(), fresh);
            }
        }
    }
    if !ct.main.contains_key("rootfs") {
        let value = allocate_if_new(st, vmid, "rootfs", &format!("{storage}:4"))?;
        ct.main.insert("rootfs".into(), value);
    }
    ct.main
        .entry("hostname".into())
        .or_insert_with(|| format!("CT{vmid}"));
    ct.main
        .entry("memory".into())
        .or_insert_with(|| "512".into());
    ct.main.entry("swap".into()).or_insert_with(|| "512".into());
    if !restore {
        ct.main
            .entry("unprivileged".into())
            .or_insert_with(|| "1".into());
    }
    Ok(ct)
}

/// Worker start: the config appears with `lock: create`, the new volumes exist.
pub fn begin_create(work: &Work, st: &mut State, log: &mut Vec<String>) -> Result<(), String> {
    let Work::Create {
        vmid,
        conf,
        volumes,
        source,
        restore,
        ..
    } = work
    else {
        return Ok(());
    };
    // The archive (or template) is read in the worker: its storage is activated first, and
    // a failure ends the task before anything is created (LXC.pm:422-440).
    let sid = source.split(':').next().unwrap_or_default();
    if let Err(e) = activation::activate(st, sid) {
        let what = if *restore { "restore" } else { "create" };
        return Err(format!("unable to {what} CT {vmid} - {e}"));
    }
    let mut main: Section = conf.main.clone();
    main.insert("lock".into(), "create".into());
    st.guests.insert(
        *vmid,
        Guest {
            conf: CtConf {
                main,
                snapshots: Default::default(),
            },
            running: false,
            started: 0,
        },
    );
    for (volid, v) in volumes {
        st.volumes.insert(volid.clone(), v.clone());
        log.push(format!(
            "  Logical volume \"{}\" created.",
            volid.split(':').nth(1).unwrap_or(volid)
        ));
    }
    if *restore {
        log.push(format!(
            "recovering backed-up configuration from '{source}'"
        ));
        log.push(format!("restoring '{source}' now.."));
    } else {
        let file = source.split('/').next_back().unwrap_or(source);
        log.push(format!(
            "extracting archive '/var/lib/vz/template/cache/{file}'"
        ));
    }
    Ok(())
}

/// Worker end: unlock, destroy the replaced CT's old volumes, optionally start.
pub fn finish_create(
    work: &Work,
    st: &mut State,
    log: &mut Vec<String>,
    now: i64,
) -> Result<(), String> {
    let Work::Create {
        vmid,
        volumes,
        previous,
        restore,
        start,
        ..
    } = work
    else {
        return Ok(());
    };
    if let Some(prev) = previous {
        // force=1 destroys every volume of the old config (LXC.pm:536-545).
        for (k, v) in &prev.conf.main {
            let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
            if matches!(base, "rootfs" | "mp" | "unused") {
                let volid = v.split(',').next().unwrap_or(v).to_string();
                if !volumes.iter().any(|(n, _)| n == &volid) {
                    st.volumes.remove(&volid);
                }
            }
        }
    }
    if *restore {
        log.push("merging backed-up configuration..".into());
    } else {
        log.push("Total bytes read: 524288000 (500MiB, 106MiB/s)".into());
        log.push("Detected container architecture: amd64".into());
    }
    let g = st.guest_mut(*vmid)?;
    g.conf.main.remove("lock");
    if *start {
        g.running = true;
        g.started = now;
    }
    Ok(())
}

/// Failure: remove the new config and volumes, put a replaced CT back.
pub fn abort_create(work: &Work, st: &mut State) {
    let Work::Create {
        vmid,
        volumes,
        previous,
        ..
    } = work
    else {
        return;
    };
    st.guests.remove(vmid);
    for (volid, _) in volumes {
        st.volumes.remove(volid);
    }
    if let Some(prev) = previous {
        st.guests.insert(*vmid, (**prev).clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_skips_volume_and_snapshot_keys() {
        assert!(skipped_on_restore("rootfs"));
        assert!(skipped_on_restore("mp3"));
        assert!(skipped_on_restore("unused0"));
        assert!(!skipped_on_restore("net0"));
        assert!(!skipped_on_restore("features"));
    }

    #[test]
    fn non_options_are_not_config_keys() {
        for k in NON_OPTIONS {
            assert!(!crate::schema::is_ct_conf_key(k) || *k == "pool", "{k}");
        }
    }
}
