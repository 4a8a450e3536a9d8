//! `POST /nodes/{node}/vzdump` and its worker (pve-manager `PVE/API2/VZDump.pm:37-180`,
//! `PVE/VZDump.pm`, `PVE/VZDump/LXC.pm`). The archive volume holds the guest's config so a
//! restore round-trips it.
//!
//! Simplification: archive names use UTC where PVE uses the node's local time.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::acl::perm_message;
use crate::activation;
use crate::conf::{self, CtConf};
use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::{ArchivedMount, State, Volume};
use crate::tasks::Work;

/// A backup job as the worker sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Guests to back up (on this node).
    pub vmids: Vec<u32>,
    /// Guests the caller lacks `VM.Backup` on (checked in the worker, `VZDump.pm:1418`).
    pub denied: Vec<u32>,
    /// Guests the begin phase locked with `lock: backup`.
    #[serde(default)]
    pub locked: Vec<u32>,
    /// Guests that failed already in the begin phase.
    #[serde(default)]
    pub failed: Vec<u32>,
    /// Target storage.
    pub storage: String,
    /// `compress` (`0`, `1`, `gzip`, `lzo`, `zstd`).
    pub compress: String,
    /// `mode`.
    pub mode: String,
    /// `notes-template`.
    pub notes_template: Option<String>,
    /// `protected`.
    pub protected: bool,
}

/// `YYYY-MM-DD HH:MM:SS` parts (UTC) of an epoch time.
pub fn civil(epoch: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

fn stamp(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}_{mo:02}_{d:02}-{h:02}_{mi:02}_{s:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), the time part of a PBS backup volid.
fn pbs_time(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn human_time(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

fn extension(compress: &str) -> &'static str {
    match compress {
        "1" | "lzo" => ".tar.lzo",
        "gzip" => ".tar.gz",
        "zstd" => ".tar.zst",
        _ => ".tar",
    }
}

/// Render a notes template: `{{cluster}} {{guestname}} {{node}} {{vmid}}`, `\n` and `\\`.
pub fn render_notes(template: &str, guestname: &str, vmid: u32, node: &str) -> String {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out.replace("{{guestname}}", guestname)
        .replace("{{vmid}}", &vmid.to_string())
        .replace("{{node}}", node)
        .replace("{{cluster}}", node)
}

/// `POST /nodes/{node}/vzdump`.
pub fn run(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let user = call.user.clone();
    if !call.is_root() {
        // pve-manager PVE/API2/Backup.pm:39-56.
        let root_only: std::collections::BTreeMap<String, String> =
            ["tmpdir", "dumpdir", "script", "job-id"]
                .iter()
                .filter(|k| call.params.contains_key(**k))
                .map(|k| (k.to_string(), "Only root may set this option.".to_string()))
                .collect();
        if !root_only.is_empty() {
            return Err(ApiError::Param(root_only));
        }
    }
    let storage = call.str("storage").unwrap_or_else(|| "local".into());
    let vmid_list: Vec<u32> = call
        .str("vmid")
        .unwrap_or_default()
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter_map(|v| v.parse().ok())
        .collect();
    call.sim.mutate(|st| {
        if !call.is_root() {
            for k in ["bwlimit", "performance", "ionice"] {
                if call.params.contains_key(k) {
                    st.access
                        .check(&user, "/", &["Sys.Modify"])
                        .map_err(ApiError::Forbidden)?;
                }
            }
            st.access
                .check(
                    &user,
                    &format!("/storage/{storage}"),
                    &["Datastore.AllocateSpace"],
                )
                .map_err(ApiError::Forbidden)?;
            if call.params.contains_key("prune-backups") {
                st.access
                    .check(
                        &user,
                        &format!("/storage/{storage}"),
                        &["Datastore.Allocate"],
                    )
                    .map_err(ApiError::Forbidden)?;
            }
        }
        let sto = st
            .storages
            .get(&storage)
            .ok_or_else(|| ApiError::Fail(format!("storage '{storage}' does not exist\n")))?;
        if !sto.content().iter().any(|c| c == "backup") {
            return Err(ApiError::Fail(format!(
                "can't use storage '{storage}' for backups - wrong content type\n"
            )));
        }
        let vmids: Vec<u32> = if call.flag("all") {
            st.guests.keys().copied().collect()
        } else {
            vmid_list
                .iter()
                .copied()
                .filter(|v| st.guests.contains_key(v))
                .collect()
        };
        if vmids.is_empty() {
            // None of the guests lives on this node (API2/VZDump.pm:97,114,118).
            return Ok(Reply::data(json!("OK")));
        }
        let denied = vmids
            .iter()
            .copied()
            .filter(|v| {
                user != "root@pam"
                    && !st
                        .access
                        .has_all(&user, &format!("/vms/{v}"), &["VM.Backup"])
            })
            .collect();
        let id = if vmids.len() == 1 {
            vmids[0].to_string()
        } else {
            String::new()
        };
        let job = Job {
            vmids,
            denied,
            locked: Vec::new(),
            failed: Vec::new(),
            storage,
            compress: call.str("compress").unwrap_or_else(|| "0".into()),
            mode: call.str("mode").unwrap_or_else(|| "snapshot".into()),
            notes_template: call.str("notes-template"),
            protected: call.flag("protected"),
        };
        Ok(Reply::data(json!(call.sim.start_task(
            st,
            "vzdump",
            &id,
            &user,
            Work::Vzdump(job)
        ))))
    })
}

/// `GET /nodes/{node}/vzdump/extractconfig?volume=`: the `pct.conf` inside a backup archive,
/// as raw text (pve-manager `API2/VZDump.pm:269-313`, pve-storage `Storage.pm:1938-1975`).
/// Needs read access to the archive and `VM.Backup` on its owner; the backup storage is
/// activated to read the file.
pub fn extract_config(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let volid = call.str("volume").unwrap_or_default();
    call.sim.with_state(|st| {
        crate::create::check_volume_access(st, &call.user, &volid)?;
        let v = st
            .volumes
            .get(&volid)
            .filter(|v| v.content == "backup")
            .ok_or_else(|| ApiError::Fail(format!("volume '{volid}' does not exist\n")))?;
        if let (Some(owner), false) = (v.vmid, call.is_root()) {
            st.access
                .check(&call.user, &format!("/vms/{owner}"), &["VM.Backup"])
                .map_err(ApiError::Forbidden)?;
        }
        let sid = volid.split(':').next().unwrap_or_default();
        activation::activate(st, sid).map_err(|e| ApiError::Fail(format!("{e}\n")))?;
        let conf = v.archive.as_ref().ok_or_else(|| {
            ApiError::Fail("ERROR: archive contains no configuration file\n".into())
        })?;
        Ok(Reply::data(json!(conf.render())))
    })
}

/// Worker start: permission and lock checks per guest, `lock: backup`.
pub fn begin(job: &mut Job, st: &mut State, log: &mut Vec<String>) -> Result<(), String> {
    // `PVE::VZDump->new` activates the target before the job logs anything; a failure is
    // the task's error, not `job errors` (pve-manager `VZDump.pm:686-722`).
    if let Err(e) = activation::activate(st, &job.storage) {
        return Err(format!("could not activate storage '{}': {e}", job.storage));
    }
    let list: Vec<String> = job.vmids.iter().map(u32::to_string).collect();
    log.push(format!(
        "INFO: starting new backup job: vzdump {} --storage {} --mode {} --compress {}",
        list.join(" "),
        job.storage,
        job.mode,
        job.compress
    ));
    for vmid in job.vmids.clone() {
        if job.denied.contains(&vmid) {
            log.push(format!(
                "ERROR: Backup of VM {vmid} failed - {}",
                perm_message(&format!("/vms/{vmid}, VM.Backup")).trim_end()
            ));
            job.failed.push(vmid);
            continue;
        }
        let Ok(g) = st.guest_mut(vmid) else {
            job.failed.push(vmid);
            continue;
        };
        if let Err(e) = g.conf.check_lock() {
            log.push(format!(
                "ERROR: Backup of VM {vmid} failed - {}",
                e.trim_end()
            ));
            job.failed.push(vmid);
            continue;
        }
        g.conf.main.insert("lock".into(), "backup".into());
        job.locked.push(vmid);
        log.push(format!("INFO: Starting Backup of VM {vmid} (lxc)"));
    }
    if job.locked.is_empty() {
        return Err("job errors".into());
    }
    Ok(())
}

/// Worker end: one archive per locked guest, unlock, `job errors` if any guest failed.
pub fn finish(job: &Job, st: &mut State, log: &mut Vec<String>, now: i64) -> Result<(), String> {
    let mut failed_late: Vec<u32> = Vec::new();
    let target_error = activation::activate(st, &job.storage).err();
    for &vmid in &job.locked {
        let mounts = backup_volumes(st, vmid);
        if let Ok(g) = st.guest_mut(vmid) {
            g.conf.main.remove("lock");
        }
        // The target went away while the job ran (a USB disk pulled), or a backed-up
        // volume's storage does not activate (`activate_volumes` in prepare): the guest fails.
        let volume_error = activation::activate_volumes(
            st,
            mounts
                .iter()
                .filter(|m| m.included)
                .map(|m| m.volume.as_str()),
        )
        .err();
        if let Some(e) = target_error.as_ref().or(volume_error.as_ref()) {
            log.push(format!("ERROR: Backup of VM {vmid} failed - {e}"));
            failed_late.push(vmid);
            continue;
        }
        let Ok(g) = st.guest_mut(vmid) else { continue };
        let mut archive_conf = CtConf {
            main: g.conf.main.clone(),
            snapshots: Default::default(),
        };
        archive_conf.main.remove("parent");
        let hostname = g
            .conf
            .main
            .get("hostname")
            .cloned()
            .unwrap_or_else(|| format!("CT{vmid}"));
        let running = g.running;
        let disk = archive_conf
            .main
            .get("rootfs")
            .and_then(|r| conf::parse_prop("rootfs", r).ok())
            .and_then(|m| m.get("size").and_then(|s| conf::parse_size(s)))
            .unwrap_or(4 << 30);
        let ext = extension(&job.compress);
        let target = st.storages.get(&job.storage);
        // PBS archives are `<sid>:backup/ct/<vmid>/<UTC time>` and ignore `compress`
        // (pve-storage `PBSPlugin.pm:226-233,607-628`); file storages write
        // `<path>/dump/vzdump-lxc-…` (`VZDump.pm:933-951`).
        let pbs = target.is_some_and(|s| s.kind == "pbs");
        let dump_dir = target
            .and_then(|s| s.props.get("path"))
            .map_or_else(|| "/var/lib/vz".to_string(), String::clone);
        let encrypted = target
            .filter(|_| pbs)
            .and_then(|s| s.props.get("encryption-key").cloned());
        let mut t = now;
        let volid = loop {
            let v = if pbs {
                format!("{}:backup/ct/{vmid}/{}", job.storage, pbs_time(t))
            } else {
                format!("{}:backup/vzdump-lxc-{vmid}-{}{ext}", job.storage, stamp(t))
            };
            if !st.volumes.contains_key(&v) {
                break v;
            }
            t += 1;
        };
        let file = volid.split('/').next_back().unwrap_or(&volid).to_string();
        let size = disk / 16 + u64::from(vmid);
        log.push(format!("INFO: Backup started at {}", human_time(now)));
        log.push(format!(
            "INFO: status = {}",
            if running { "running" } else { "stopped" }
        ));
        let prepare = |log: &mut Vec<String>| {
            log.push(format!("INFO: CT Name: {hostname}"));
            for m in &mounts {
                log.push(m.log_line());
            }
        };
        // Snapshot mode prepares before the mode line and falls back to suspend when a
        // backed-up volume cannot snapshot; stop and suspend prepare after it
        // (pve-manager `VZDump.pm:1066-1100`, pve-container `VZDump/LXC.pm:124-190`).
        let mut mode = if running { job.mode.as_str() } else { "stop" };
        if mode == "snapshot" {
            prepare(log);
            if mounts.iter().any(|m| m.included && !m.can_snapshot) {
                log.push("INFO: mode failure - some volumes do not support snapshots".into());
                log.push("INFO: trying 'suspend' mode instead".into());
                mode = "suspend";
            }
        }
        log.push(format!("INFO: backup mode: {mode}"));
        log.push("INFO: ionice priority: 7".into());
        if mode != "snapshot" {
            prepare(log);
        }
        if pbs {
            log.push(format!(
                "INFO: creating Proxmox Backup Server archive 'ct/{vmid}/{}'",
                pbs_time(t)
            ));
            if encrypted.is_some() {
                log.push("INFO: Using encryption key from file descriptor..".into());
            }
            log.push("INFO: Duration: 1.00s".into());
        } else {
            log.push(format!(
                "INFO: creating vzdump archive '{dump_dir}/dump/{file}'"
            ));
            log.push(format!(
                "INFO: Total bytes written: {size} ({} MiB, 100.0 MiB/s)",
                size >> 20
            ));
            log.push(format!("INFO: archive file size: {}MB", size >> 20));
        }
        let notes = job
            .notes_template
            .as_deref()
            .map(|t| render_notes(t, &hostname, vmid, &st.node));
        if notes.is_some() {
            log.push("INFO: adding notes to backup".into());
        }
        if job.protected {
            log.push("INFO: marking backup as protected".into());
        }
        st.volumes.insert(
            volid,
            Volume {
                content: "backup".into(),
                format: if pbs {
                    "pbs-ct".to_string()
                } else {
                    format!("tar{}", ext.trim_start_matches(".tar"))
                },
                size,
                // PVE reads a backup's ctime from its name (pve-storage `archive_info`), so a
                // name bumped past a same-second archive carries the bumped time.
                ctime: t,
                vmid: Some(vmid),
                notes,
                protected: job.protected,
                subtype: Some("lxc".into()),
                archive: Some(archive_conf),
                data: None,
                archived_mounts: mounts
                    .iter()
                    .filter(|m| m.included)
                    .map(|m| ArchivedMount {
                        key: m.key.clone(),
                        mp: m.mp.clone(),
                        data: m.data.clone(),
                    })
                    .collect(),
                encrypted,
            },
        );
        log.push(format!("INFO: Finished Backup of VM {vmid} (00:00:01)"));
        log.push(format!("INFO: Backup finished at {}", human_time(now)));
    }
    if job.failed.is_empty() && failed_late.is_empty() {
        log.push("INFO: Backup job finished successfully".into());
        Ok(())
    } else {
        Err("job errors".into())
    }
}

/// One mount point of a guest as vzdump's `prepare` sees it.
#[derive(Debug, Clone)]
struct BackupVolume {
    key: String,
    volume: String,
    mp: String,
    /// `volume`, `bind` or `device`.
    kind: &'static str,
    included: bool,
    /// `rootfs`, `enabled`, `disabled` or `not a volume`.
    reason: &'static str,
    can_snapshot: bool,
    data: Option<String>,
}

impl BackupVolume {
    /// The task log line (pve-container `VZDump/LXC.pm:157-176`).
    fn log_line(&self) -> String {
        if self.included {
            format!(
                "INFO: including mount point {} ('{}') in backup",
                self.key, self.mp
            )
        } else {
            format!(
                "INFO: excluding {} mount point {} ('{}') from backup ({})",
                self.kind, self.key, self.mp, self.reason
            )
        }
    }
}

/// The guest's mount points in `foreach_volume` order (rootfs, then mp0, mp1, …) with
/// `mountpoint_backup_enabled`: rootfs always, bind/device mounts never, volume mount points
/// only with `backup=1` (pve-container `LXC/Config.pm:66-86`).
fn backup_volumes(st: &State, vmid: u32) -> Vec<BackupVolume> {
    let Ok(g) = st.guest(vmid) else {
        return Vec::new();
    };
    let mut keys: Vec<(u32, &String)> = g
        .conf
        .main
        .keys()
        .filter_map(|k| match k.as_str() {
            "rootfs" => Some((0, k)),
            _ => k
                .strip_prefix("mp")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| (n + 1, k)),
        })
        .collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|(_, key)| {
            let map = conf::parse_prop(key, &g.conf.main[key]).ok()?;
            let volume = map.get("volume").cloned().unwrap_or_default();
            let mp = if key == "rootfs" {
                "/".to_string()
            } else {
                map.get("mp").cloned().unwrap_or_default()
            };
            let kind = if volume.starts_with("/dev/") {
                "device"
            } else if volume.starts_with('/') {
                "bind"
            } else {
                "volume"
            };
            let (included, reason) = if key == "rootfs" {
                (true, "rootfs")
            } else if kind != "volume" {
                (false, "not a volume")
            } else if map.get("backup").map(String::as_str) == Some("1") {
                (true, "enabled")
            } else {
                (false, "disabled")
            };
            let storage = volume.split(':').next().unwrap_or_default();
            let can_snapshot = kind == "volume"
                && st
                    .storages
                    .get(storage)
                    .is_some_and(|s| activation::can_snapshot(&s.kind));
            Some(BackupVolume {
                key: key.clone(),
                volume: volume.clone(),
                mp,
                kind,
                included,
                reason,
                can_snapshot,
                data: st.volumes.get(&volume).and_then(|v| v.data.clone()),
            })
        })
        .collect()
}

/// Undo: release the backup locks this job set.
pub fn abort(job: &Job, st: &mut State) {
    for vmid in &job.locked {
        if let Ok(g) = st.guest_mut(*vmid) {
            if g.conf.lock() == Some("backup") {
                g.conf.main.remove("lock");
            }
        }
    }
}

/// The volume listing view of a backup's notes: only the first line.
pub fn notes_first_line(notes: &str) -> Value {
    json!(notes.lines().next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(stamp(1_777_629_600), "2026_05_01-10_00_00");
        assert_eq!(human_time(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn notes_templates_render() {
        assert_eq!(
            render_notes(
                "{{guestname}} ({{vmid}}) on {{node}}\\nnext\\\\",
                "web",
                101,
                "pve"
            ),
            "web (101) on pve\nnext\\"
        );
    }
}
