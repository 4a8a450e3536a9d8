//! Container endpoints: list, status, power, config get/update, destroy, resize, and the
//! worker phases of power, destroy and resize tasks (pve-container `src/PVE/API2/LXC.pm`,
//! `API2/LXC/Status.pm`, `API2/LXC/Config.pm`).
//!
//! Simplification: `[pve:pending]` is not simulated. Every accepted change applies at once,
//! also on a running CT (PVE would keep e.g. `features` pending until the next start), so
//! `current=1` returns the same values as the default view.

use serde_json::{json, Map, Value};

use crate::conf::{self, CtConf};
use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::{Guest, State};
use crate::tasks::Work;

pub use crate::create::{abort_create, begin_create, create, finish_create};
pub use crate::ctperm::check_option_perm;

/// Text of a digest mismatch (pve-common `Tools.pm:868-874`).
pub const DIGEST_MISMATCH: &str =
    "detected modified configuration - file changed by other user? Try again.\n";

/// The status object of one CT (list entry, `status/current`, cluster resources).
pub fn guest_status(vmid: u32, g: &Guest, now: i64) -> Map<String, Value> {
    let main = &g.conf.main;
    let mb = |k: &str, d: u64| {
        main.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(d) * 1024 * 1024
    };
    let maxmem = mb("memory", 512);
    let maxswap = mb("swap", 512);
    let maxdisk = main
        .get("rootfs")
        .and_then(|r| conf::parse_prop("rootfs", r).ok())
        .and_then(|m| m.get("size").and_then(|s| conf::parse_size(s)))
        .unwrap_or(4 << 30);
    let cpus: f64 = main
        .get("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1.0);
    let running = g.running;
    let mut out = Map::new();
    out.insert("vmid".into(), json!(vmid));
    out.insert(
        "status".into(),
        json!(if running { "running" } else { "stopped" }),
    );
    out.insert(
        "name".into(),
        json!(main
            .get("hostname")
            .cloned()
            .unwrap_or_else(|| format!("CT{vmid}"))),
    );
    out.insert("type".into(), json!("lxc"));
    out.insert("cpus".into(), json!(cpus));
    out.insert("maxmem".into(), json!(maxmem));
    out.insert("maxswap".into(), json!(maxswap));
    out.insert("maxdisk".into(), json!(maxdisk));
    out.insert("mem".into(), json!(if running { maxmem / 4 } else { 0 }));
    out.insert("swap".into(), json!(0));
    out.insert("disk".into(), json!(if running { maxdisk / 5 } else { 0 }));
    out.insert("cpu".into(), json!(if running { 0.0123 } else { 0.0 }));
    out.insert(
        "uptime".into(),
        json!(if running { (now - g.started).max(0) } else { 0 }),
    );
    for k in ["netin", "netout", "diskread", "diskwrite"] {
        out.insert(k.into(), json!(if running { 4096 } else { 0 }));
    }
    if let Some(lock) = main.get("lock") {
        out.insert("lock".into(), json!(lock));
    }
    if let Some(tags) = main.get("tags") {
        out.insert("tags".into(), json!(tags));
    }
    if main.get("template").map(String::as_str) == Some("1") {
        out.insert("template".into(), json!(1));
    }
    out
}

/// `GET /nodes/{node}/lxc`: only CTs with `VM.Audit` are listed.
pub fn list(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let now = crate::tasks::now();
    call.sim.with_state(|st| {
        let items: Vec<Value> = st
            .guests
            .iter()
            .filter(|(vmid, _)| {
                st.access
                    .has_all(&call.user, &format!("/vms/{vmid}"), &["VM.Audit"])
            })
            .map(|(vmid, g)| Value::Object(guest_status(*vmid, g, now)))
            .collect();
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `GET .../status/current`.
pub fn status_current(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    call.sim.with_state(|st| {
        let g = st.guest(vmid)?;
        let mut out = guest_status(vmid, g, crate::tasks::now());
        out.insert("ha".into(), json!({"managed": 0}));
        Ok(Reply::data(Value::Object(out)))
    })
}

/// `POST .../status/{start,stop,shutdown,reboot}`: synchronous state checks, then a task
/// whose worker checks the lock (pve-container `API2/LXC/Status.pm`).
pub fn power(call: &Call, kind: &str) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    if call.params.contains_key("skiplock") && !call.is_root() {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    let skiplock = call.flag("skiplock");
    let user = call.user.clone();
    call.sim.mutate(|st| {
        let g = st.guest(vmid)?;
        match (kind, g.running) {
            ("vzstart", true) => return Err(format!("CT {vmid} already running\n").into()),
            ("vzstop" | "vzshutdown", false) => {
                return Err(format!("CT {vmid} not running\n").into())
            }
            // Status.pm:504-553 really says "VM" here.
            ("vzreboot", false) => return Err(format!("VM {vmid} not running\n").into()),
            _ => {}
        }
        if skiplock {
            // root's skiplock: the worker ignores the lock.
            if let Ok(g) = st.guest_mut(vmid) {
                g.conf.main.remove("lock");
            }
        }
        let work = match kind {
            "vzstart" => Work::Start { vmid },
            "vzstop" => Work::Stop { vmid },
            "vzshutdown" => Work::Shutdown { vmid },
            _ => Work::Reboot { vmid },
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

/// `GET .../config` (`current`, `snapshot`).
pub fn get_config(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let snapname = call.str("snapshot");
    if snapname.is_some() && call.flag("current") {
        let msg = "cannot use 'snapshot' parameter with 'current'";
        return Err(ApiError::Param(
            [
                ("snapshot".to_string(), msg.to_string()),
                ("current".to_string(), msg.to_string()),
            ]
            .into(),
        ));
    }
    call.sim.with_state(|st| {
        let g = st.guest(vmid)?;
        let section = match &snapname {
            Some(name) => g
                .conf
                .snapshots
                .get(name)
                .ok_or_else(|| format!("snapshot '{name}' does not exist\n"))?,
            None => &g.conf.main,
        };
        let mut out = conf::section_to_json(section);
        out.remove("snapstate");
        out.insert("digest".into(), json!(g.conf.digest()));
        Ok(Reply::data(Value::Object(out)))
    })
}

/// Turn one `key=value` parameter into the config value: hwaddr for netN, description
/// encoding, `storage:GiB` allocation for mount points.
pub fn apply_option(
    st: &mut State,
    vmid: u32,
    ct: &mut CtConf,
    key: &str,
    value: &Value,
) -> Result<(), ApiError> {
    let text = conf::param_to_conf(key, value);
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match base {
        "description" => match conf::normalize_description(&text) {
            Some(d) => {
                ct.main.insert(key.into(), d);
            }
            None => {
                ct.main.remove(key);
            }
        },
        "net" => {
            let v = conf::with_hwaddr(key, &text)
                .map_err(|e| ApiError::param(key, format!("invalid format - {e}")))?;
            ct.main.insert(key.into(), v);
        }
        "mp" | "rootfs" => {
            let v = allocate_if_new(st, vmid, key, &text)?;
            if let Some(old) = ct.main.insert(key.into(), v) {
                if base == "mp" {
                    move_to_unused(ct, key, &old);
                }
            }
        }
        _ => {
            ct.main.insert(key.into(), text);
        }
    }
    Ok(())
}

/// `storage:GiB` → a new volume `storage:vm-<vmid>-disk-N,...,size=XG`; other values as is.
pub fn allocate_if_new(
    st: &mut State,
    vmid: u32,
    key: &str,
    text: &str,
) -> Result<String, ApiError> {
    let mut map = conf::parse_prop(key, text)
        .map_err(|e| ApiError::param(key, format!("invalid format - {e}")))?;
    let volume = map.get("volume").cloned().unwrap_or_default();
    let Some((storage, size)) = volume.split_once(':') else {
        return Ok(conf::print_prop(key, &map));
    };
    let Ok(gib) = size.parse::<f64>() else {
        return Ok(conf::print_prop(key, &map));
    };
    let sto = st
        .storages
        .get(storage)
        .ok_or_else(|| ApiError::Fail(format!("storage '{storage}' does not exist\n")))?;
    if !sto.content().iter().any(|c| c == "rootdir") {
        return Err(ApiError::Fail(format!(
            "storage '{storage}' does not allow content type 'rootdir' (Container)\n"
        )));
    }
    // `vdisk_alloc` activates the storage first (pve-storage `Storage.pm` `vdisk_alloc`).
    crate::activation::activate(st, storage).map_err(|e| ApiError::Fail(format!("{e}\n")))?;
    let bytes = (gib * (1u64 << 30) as f64) as u64;
    let subvol = bytes == 0;
    let volid = st.next_disk_volid(storage, vmid, subvol);
    let mut volume = crate::state::disk_volume(vmid, bytes, crate::tasks::now());
    if subvol && volid.ends_with(".subvol") {
        volume.format = "subvol".into();
    }
    st.volumes.insert(volid.clone(), volume);
    map.insert("volume".into(), volid);
    // A size-0 subvol has no quota and prints as `0T` (pve-common `format_size`).
    let size = if bytes == 0 {
        "0T".to_string()
    } else {
        conf::format_size(bytes)
    };
    map.insert("size".into(), size);
    Ok(conf::print_prop(key, &map))
}

fn move_to_unused(ct: &mut CtConf, _key: &str, old: &str) {
    let volid = old.split(',').next().unwrap_or(old).to_string();
    if let Some(n) = (0..256).find(|n| !ct.main.contains_key(&format!("unused{n}"))) {
        ct.main.insert(format!("unused{n}"), volid);
    }
}

/// `PUT .../config`: synchronous; lock check first, then digest, permissions, delete
/// validation and the update (pve-container `API2/LXC/Config.pm:111-272`).
pub fn put_config(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let delete: Vec<String> = call
        .str("delete")
        .map(|d| {
            d.split(|c: char| c == ',' || c == ';' || c.is_whitespace() || c == '\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let options: Vec<(String, Value)> = call
        .params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "node" | "vmid" | "digest" | "delete" | "revert"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    call.sim.mutate(|st| {
        let g = st.guest(vmid)?;
        g.conf.check_lock()?;
        if let Some(digest) = call.str("digest") {
            if digest != g.conf.digest() {
                return Err(ApiError::Fail(DIGEST_MISMATCH.into()));
            }
        }
        if options.is_empty() && delete.is_empty() && call.str("revert").is_none() {
            return Err(ApiError::Fail("no options specified\n".into()));
        }
        let old = g.conf.clone();
        for (k, v) in &options {
            let new = conf::param_to_conf(k, v);
            check_option_perm(
                st,
                &call.user,
                vmid,
                k,
                Some(&new),
                old.main.get(k).map(String::as_str),
            )?;
        }
        for k in &delete {
            check_option_perm(
                st,
                &call.user,
                vmid,
                k,
                None,
                old.main.get(k).map(String::as_str),
            )?;
            if options.iter().any(|(o, _)| o == k) {
                return Err(ApiError::param(
                    "delete",
                    format!("you can't use '-{k}' and -delete {k}' at the same time"),
                ));
            }
            if !crate::schema::is_ct_conf_key(k) {
                return Err(ApiError::param("delete", format!("unknown option '{k}'")));
            }
        }
        if options.iter().any(|(k, _)| k == "unprivileged") {
            return Err(ApiError::Fail(
                "unable to modify read-only option: 'unprivileged'\n".into(),
            ));
        }
        let mut ct = old.clone();
        for k in &delete {
            match k.trim_end_matches(|c: char| c.is_ascii_digit()) {
                "memory" | "rootfs" | "ostype" => {
                    return Err(ApiError::Fail(format!(
                        "unable to delete required option '{k}'\n"
                    )));
                }
                "mp" => {
                    if let Some(v) = ct.main.remove(k) {
                        move_to_unused(&mut ct, k, &v);
                    }
                }
                "unused" => {
                    if let Some(volid) = ct.main.remove(k) {
                        st.volumes.remove(&volid);
                    }
                }
                _ => {
                    ct.main.remove(k);
                }
            }
        }
        let running = st.guest(vmid)?.running;
        for (k, v) in &options {
            apply_option(st, vmid, &mut ct, k, v).map_err(|e| pending_error(k, running, e))?;
        }
        st.guest_mut(vmid)?.conf = ct;
        Ok(Reply::null())
    })
}

/// A mount point that could not be created during `PUT config` is collected per option and
/// answered as 400 (`vmconfig_apply_pending` / `vmconfig_hotplug_pending`, pve-container
/// `LXC/Config.pm:1630-1633,1752-1756`; `API2/LXC/Config.pm:250-259`).
fn pending_error(key: &str, running: bool, err: ApiError) -> ApiError {
    match err {
        ApiError::Fail(msg) if key.starts_with("mp") => {
            let text = if running {
                format!("unable to hotplug {key}: {msg}")
            } else {
                format!("unable to apply pending change {key} : {msg}")
            };
            ApiError::param(key, text)
        }
        other => other,
    }
}

/// `DELETE /nodes/{node}/lxc/{vmid}` (pve-container `LXC.pm:805-926`).
pub fn destroy(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let force = call.flag("force");
    let user = call.user.clone();
    call.sim.mutate(|st| {
        let g = st.guest(vmid)?;
        if g.conf.main.get("protection").map(String::as_str) == Some("1") {
            return Err(format!("can't remove CT {vmid} - protection mode enabled\n").into());
        }
        g.conf.check_lock()?;
        if g.running && !force {
            return Err(format!("unable to destroy CT {vmid} - container is running\n").into());
        }
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "vzdestroy",
            &vmid.to_string(),
            &user,
            Work::Destroy { vmid }
        ))))
    })
}

/// `PUT .../resize` (pve-container `LXC.pm:2307-2476`): synchronous checks, then a task.
pub fn resize(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let vmid = call.vmid()?;
    let disk = call.str("disk").unwrap_or_default();
    let size = call.str("size").unwrap_or_default();
    let user = call.user.clone();
    call.sim.mutate(|st| {
        let g = st.guest(vmid)?;
        g.conf.check_lock()?;
        if let Some(digest) = call.str("digest") {
            if digest != g.conf.digest() {
                return Err(ApiError::Fail(DIGEST_MISMATCH.into()));
            }
        }
        let value = g
            .conf
            .main
            .get(&disk)
            .ok_or_else(|| format!("disk '{disk}' does not exist\n"))?;
        let map = conf::parse_prop(&disk, value).map_err(|e| ApiError::param("disk", e))?;
        let volid = map.get("volume").cloned().unwrap_or_default();
        let storage = volid.split(':').next().unwrap_or_default().to_string();
        if call.user != "root@pam" {
            st.access
                .check(
                    &call.user,
                    &format!("/storage/{storage}"),
                    &["Datastore.AllocateSpace"],
                )
                .map_err(ApiError::Forbidden)?;
        }
        // `activate_volumes` before reading the size (pve-container `LXC.pm:2393`).
        crate::activation::activate(st, &storage).map_err(|e| ApiError::Fail(format!("{e}\n")))?;
        let current = map
            .get("size")
            .and_then(|s| conf::parse_size(s))
            .unwrap_or(0);
        let (grow, amount) = match size.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, size.as_str()),
        };
        let amount = conf::parse_size(amount)
            .ok_or_else(|| ApiError::param("size", "unable to parse size"))?;
        let new = if grow { current + amount } else { amount };
        if new < current {
            return Err("unable to shrink disk size\n".to_string().into());
        }
        if new == current {
            return Err("disk is already at specified size\n".to_string().into());
        }
        let work = Work::Resize {
            vmid,
            disk: disk.clone(),
            size: new,
        };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "resize",
            &vmid.to_string(),
            &user,
            work
        ))))
    })
}

// ---- worker phases ----

/// Lock check of start/stop/shutdown/reboot workers (the `mounted` lock is tolerated).
pub fn begin_power(st: &mut State, vmid: u32) -> Result<(), String> {
    let g = st.guest(vmid)?;
    match g.conf.lock() {
        Some("mounted") | None => Ok(()),
        Some(_) => g.conf.check_lock(),
    }
}

/// Start worker: the lock check, then `vm_start` activates every volume of the config, so a
/// mount point on a storage that does not activate (a pulled USB disk) fails the start
/// (pve-container `LXC.pm:3152-3155`).
pub fn begin_start(st: &mut State, vmid: u32) -> Result<(), String> {
    begin_power(st, vmid)?;
    let g = st.guest(vmid)?;
    let volids: Vec<String> = g
        .conf
        .main
        .iter()
        .filter(|(k, _)| {
            k.as_str() == "rootfs"
                || k.strip_prefix("mp")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .filter_map(|(k, v)| conf::parse_prop(k, v).ok()?.get("volume").cloned())
        .collect();
    crate::activation::activate_volumes(st, volids.iter().map(String::as_str))
}

/// The CT runs.
pub fn finish_start(st: &mut State, vmid: u32, now: i64) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    g.running = true;
    g.started = now;
    Ok(())
}

/// The CT is stopped.
pub fn finish_stop(st: &mut State, vmid: u32) -> Result<(), String> {
    st.guest_mut(vmid)?.running = false;
    Ok(())
}

/// Destroy worker start: lock check again, hard stop.
pub fn begin_destroy(st: &mut State, vmid: u32) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    g.conf.check_lock()?;
    g.running = false;
    g.conf.main.insert("lock".into(), "destroyed".into());
    Ok(())
}

/// Remove config, owned volumes (not backups) and ACLs of the CT.
pub fn finish_destroy(st: &mut State, vmid: u32, log: &mut Vec<String>) -> Result<(), String> {
    st.guests.remove(&vmid);
    let owned: Vec<String> = st
        .volumes
        .iter()
        .filter(|(_, v)| v.vmid == Some(vmid) && matches!(v.content.as_str(), "rootdir" | "images"))
        .map(|(k, _)| k.clone())
        .collect();
    for volid in owned {
        let name = volid.split(':').nth(1).unwrap_or(&volid).to_string();
        log.push(format!("  Logical volume \"{name}\" successfully removed."));
        st.volumes.remove(&volid);
    }
    let path = format!("/vms/{vmid}");
    st.access.acls.retain(|e| e.path != path);
    Ok(())
}

/// Grow a mount point's volume.
pub fn finish_resize(
    st: &mut State,
    vmid: u32,
    disk: &str,
    size: u64,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let g = st.guest_mut(vmid)?;
    let value = g
        .conf
        .main
        .get(disk)
        .cloned()
        .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
    let mut map = conf::parse_prop(disk, &value)?;
    let old = map.get("size").cloned().unwrap_or_default();
    map.insert("size".into(), conf::format_size(size));
    g.conf
        .main
        .insert(disk.to_string(), conf::print_prop(disk, &map));
    let volid = map.get("volume").cloned().unwrap_or_default();
    log.push(format!(
        "  Size of logical volume {volid} changed from {old} to {}.",
        conf::format_size(size)
    ));
    log.push(
        format!(
            "resize2fs 1.47.2 (1-Jan-2025)\nThe filesystem on {volid} is now {} (4k) blocks long.",
            size / 4096
        )
        .replace('\n', " "),
    );
    if let Some(v) = st.volumes.get_mut(&volid) {
        v.size = size;
    }
    Ok(())
}
