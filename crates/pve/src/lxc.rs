//! LXC guests: list, status, power, create, restore, destroy, resize. The configuration
//! (read, update, the description and hwaddr quirks) lives in `lxc_config.rs`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::lenient;
use crate::lxc_config::is_indexed;
use crate::task::TaskRef;
use crate::vmid::Vmid;

/// A guest as listed by `GET /nodes/{node}/lxc` or read by `status/current`.
#[derive(Debug, Clone, Deserialize)]
pub struct LxcStatus {
    /// Guest id.
    pub vmid: Vmid,
    /// `running` or `stopped`.
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    /// Hostname.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Config lock, if any (`backup`, `snapshot`, …).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub lock: Option<String>,
    /// Tags, `;`-separated.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tags: Option<String>,
    /// Whether this is a template.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub template: Option<bool>,
    /// CPU limit (cores).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpus: Option<f64>,
    /// CPU usage (0..cpus).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpu: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub mem: Option<u64>,
    /// Memory limit, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxmem: Option<u64>,
    /// Swap limit, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxswap: Option<u64>,
    /// Root disk used, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub disk: Option<u64>,
    /// Root disk size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Seconds since start (0 when stopped).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
}

impl LxcStatus {
    /// `status == "running"`.
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// Parameters of a fresh container create (`POST /nodes/{node}/lxc`).
#[derive(Debug, Clone)]
pub struct CreateLxc {
    /// New guest id.
    pub vmid: Vmid,
    /// Template volid, e.g. `local:vztmpl/debian-13-standard_13.1-1_amd64.tar.zst`.
    pub ostemplate: String,
    /// Storage for the root disk. Always sent: PVE's default `local` usually cannot hold
    /// container directories.
    pub storage: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Cores.
    pub cores: Option<u32>,
    /// Memory, MiB.
    pub memory: Option<u32>,
    /// Swap, MiB.
    pub swap: Option<u32>,
    /// Root filesystem (`storage:GiB`); PVE's default is `<storage>:4`.
    pub rootfs: Option<String>,
    /// `netN` property strings.
    pub nets: BTreeMap<u32, String>,
    /// `mpN` property strings.
    pub mount_points: BTreeMap<u32, String>,
    /// `features` (only `nesting` is allowed to a token).
    pub features: Option<String>,
    /// Unprivileged (PVE default 1).
    pub unprivileged: Option<bool>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Start after creation.
    pub start: Option<bool>,
    /// Tags.
    pub tags: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Resource pool.
    pub pool: Option<String>,
    /// Authorized keys for root.
    pub ssh_public_keys: Option<String>,
    /// Any other option, by PVE name (booleans are sent as 0/1).
    pub extra: BTreeMap<String, Value>,
}

impl CreateLxc {
    /// A create with only the required parameters.
    pub fn new(vmid: Vmid, ostemplate: impl Into<String>, storage: impl Into<String>) -> Self {
        CreateLxc {
            vmid,
            ostemplate: ostemplate.into(),
            storage: storage.into(),
            hostname: None,
            cores: None,
            memory: None,
            swap: None,
            rootfs: None,
            nets: BTreeMap::new(),
            mount_points: BTreeMap::new(),
            features: None,
            unprivileged: None,
            onboot: None,
            start: None,
            tags: None,
            description: None,
            pool: None,
            ssh_public_keys: None,
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn to_params(&self) -> Params {
        let mut p = Params::new();
        for (k, v) in &self.extra {
            p = p.value(k, v.clone());
        }
        p = p
            .int("vmid", i64::from(self.vmid.get()))
            .str("ostemplate", self.ostemplate.clone())
            .str("storage", self.storage.clone())
            .opt_str("hostname", self.hostname.clone())
            .opt_int("cores", self.cores.map(i64::from))
            .opt_int("memory", self.memory.map(i64::from))
            .opt_int("swap", self.swap.map(i64::from))
            .opt_str("rootfs", self.rootfs.clone())
            .opt_str("features", self.features.clone())
            .opt_bool("unprivileged", self.unprivileged)
            .opt_bool("onboot", self.onboot)
            .opt_bool("start", self.start)
            .opt_str("tags", self.tags.clone())
            .opt_str("description", self.description.clone())
            .opt_str("pool", self.pool.clone())
            .opt_str("ssh-public-keys", self.ssh_public_keys.clone());
        for (i, v) in &self.nets {
            p = p.str(&format!("net{i}"), v.clone());
        }
        for (i, v) in &self.mount_points {
            p = p.str(&format!("mp{i}"), v.clone());
        }
        p
    }
}

/// Parameters of a restore (`POST /nodes/{node}/lxc` with `restore=1`).
///
/// Without `rootfs`/`mpN` overrides every volume mount point of the backup, `backup=0` ones
/// included, comes back **empty** at its recorded size on `storage` (pve-container
/// `Create.pm:293-346`). `force` over an existing guest destroys all its old volumes.
/// `unique` regenerates every backed-up MAC and then overrides a `netN` given in `overrides`.
#[derive(Debug, Clone)]
pub struct RestoreLxc {
    /// Target guest id.
    pub vmid: Vmid,
    /// Backup volid (`pbs:backup/ct/101/…` or `local:backup/vzdump-lxc-101-….tar.zst`).
    pub archive: String,
    /// Storage for the restored volumes.
    pub storage: String,
    /// Overwrite an existing (stopped) guest.
    pub force: bool,
    /// New MAC addresses.
    pub unique: bool,
    /// Start afterwards.
    pub start: Option<bool>,
    /// Options that win over the backed-up config (`hostname`, `rootfs`, `netN`, …).
    pub overrides: BTreeMap<String, Value>,
}

impl RestoreLxc {
    /// A restore with no force, no unique and no overrides.
    pub fn new(vmid: Vmid, archive: impl Into<String>, storage: impl Into<String>) -> Self {
        RestoreLxc {
            vmid,
            archive: archive.into(),
            storage: storage.into(),
            force: false,
            unique: false,
            start: None,
            overrides: BTreeMap::new(),
        }
    }

    pub(crate) fn to_params(&self) -> Params {
        let mut p = Params::new();
        for (k, v) in &self.overrides {
            p = p.value(k, v.clone());
        }
        let p = p
            .int("vmid", i64::from(self.vmid.get()))
            .str("ostemplate", self.archive.clone())
            .str("storage", self.storage.clone())
            .bool("restore", true)
            .opt_bool("start", self.start);
        // Only sent when set: `unique` requires `restore` and `force=0` is PVE's default.
        let p = if self.force { p.bool("force", true) } else { p };
        if self.unique {
            p.bool("unique", true)
        } else {
            p
        }
    }
}

/// Options of `DELETE /nodes/{node}/lxc/{vmid}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestroyOptions {
    /// Also remove the guest from backup jobs, replication and HA.
    pub purge: bool,
    /// Also delete unreferenced volumes named for this vmid on all enabled storages.
    pub destroy_unreferenced_disks: bool,
    /// Destroy even if running (after a hard stop).
    pub force: bool,
}

impl Client {
    pub(crate) fn lxc_path(&self, vmid: Vmid, rest: &[&str]) -> String {
        let id = vmid.to_string();
        let mut parts = vec!["nodes", self.node(), "lxc", id.as_str()];
        parts.extend_from_slice(rest);
        api_path(&parts)
    }

    /// `GET /nodes/{node}/lxc`: all containers the token may see.
    pub async fn list_lxc(&self) -> Result<Vec<LxcStatus>> {
        let path = api_path(&["nodes", self.node(), "lxc"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `GET …/lxc/{vmid}/status/current`: authoritative state (`/cluster/resources` lags ~10 s).
    pub async fn lxc_status(&self, vmid: Vmid) -> Result<LxcStatus> {
        let path = self.lxc_path(vmid, &["status", "current"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `POST …/status/start` (UPID `vzstart`). A lock fails inside the task, not here.
    pub async fn start_lxc(&self, vmid: Vmid) -> Result<TaskRef> {
        let path = self.lxc_path(vmid, &["status", "start"]);
        self.call_task(Method::POST, &path, Params::new()).await
    }

    /// `POST …/status/stop` (UPID `vzstop`): a hard stop.
    pub async fn stop_lxc(&self, vmid: Vmid) -> Result<TaskRef> {
        let path = self.lxc_path(vmid, &["status", "stop"]);
        self.call_task(Method::POST, &path, Params::new()).await
    }

    /// `POST …/status/shutdown` (UPID `vzshutdown`): clean stop; PVE's default timeout is 60 s,
    /// and without `force_stop` a timeout fails the task.
    pub async fn shutdown_lxc(
        &self,
        vmid: Vmid,
        timeout_s: Option<u32>,
        force_stop: bool,
    ) -> Result<TaskRef> {
        let path = self.lxc_path(vmid, &["status", "shutdown"]);
        let params = Params::new()
            .opt_int("timeout", timeout_s.map(i64::from))
            .opt_bool("forceStop", force_stop.then_some(true));
        self.call_task(Method::POST, &path, params).await
    }

    /// `POST …/status/reboot` (UPID `vzreboot`); applies pending changes.
    pub async fn reboot_lxc(&self, vmid: Vmid, timeout_s: Option<u32>) -> Result<TaskRef> {
        let path = self.lxc_path(vmid, &["status", "reboot"]);
        let params = Params::new().opt_int("timeout", timeout_s.map(i64::from));
        self.call_task(Method::POST, &path, params).await
    }
    /// `POST /nodes/{node}/lxc` (UPID `vzcreate`).
    pub async fn create_lxc(&self, create: &CreateLxc) -> Result<TaskRef> {
        let path = api_path(&["nodes", self.node(), "lxc"]);
        self.call_task(Method::POST, &path, create.to_params())
            .await
    }

    /// `POST /nodes/{node}/lxc` with `restore=1` (UPID `vzrestore`).
    pub async fn restore_lxc(&self, restore: &RestoreLxc) -> Result<TaskRef> {
        let path = api_path(&["nodes", self.node(), "lxc"]);
        self.call_task(Method::POST, &path, restore.to_params())
            .await
    }

    /// `DELETE /nodes/{node}/lxc/{vmid}` (UPID `vzdestroy`).
    pub async fn destroy_lxc(&self, vmid: Vmid, options: DestroyOptions) -> Result<TaskRef> {
        let path = self.lxc_path(vmid, &[]);
        let params = Params::new()
            .opt_bool("purge", options.purge.then_some(true))
            .bool(
                "destroy-unreferenced-disks",
                options.destroy_unreferenced_disks,
            )
            .opt_bool("force", options.force.then_some(true));
        self.call_task(Method::DELETE, &path, params).await
    }

    /// `PUT …/resize` (UPID `resize`). `disk` is `rootfs` or `mpN`; `size` is PVE's
    /// `\+?\d+(\.\d+)?[KMGT]?` (a leading `+` grows by that much).
    pub async fn resize_lxc(
        &self,
        vmid: Vmid,
        disk: &str,
        size: &str,
        digest: Option<&str>,
    ) -> Result<TaskRef> {
        if disk != "rootfs" && !is_indexed(disk, "mp") {
            return Err(Error::invalid(
                "disk",
                format!("{disk:?} is not rootfs or mpN"),
            ));
        }
        if !valid_size(size) {
            return Err(Error::invalid(
                "size",
                format!("{size:?} does not match +?N[.N][K|M|G|T]"),
            ));
        }
        let path = self.lxc_path(vmid, &["resize"]);
        let params = Params::new()
            .str("disk", disk)
            .str("size", size)
            .opt_str("digest", digest);
        self.call_task(Method::PUT, &path, params).await
    }
}

fn valid_size(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let s = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn create_and_restore_params() {
        let vmid = Vmid::new(105).unwrap();
        let mut c = CreateLxc::new(vmid, "local:vztmpl/d.tar.zst", "local-lvm");
        c.hostname = Some("ct105".into());
        c.unprivileged = Some(true);
        c.nets.insert(0, "name=eth0,bridge=vmbr0,ip=dhcp".into());
        c.extra.insert("nameserver".into(), json!("1.1.1.1"));
        let v = Value::Object(c.to_params().0);
        assert_eq!(v["vmid"], 105);
        assert_eq!(v["unprivileged"], 1);
        assert_eq!(v["net0"], "name=eth0,bridge=vmbr0,ip=dhcp");
        assert_eq!(v["nameserver"], "1.1.1.1");
        assert!(v.get("restore").is_none());

        let mut r = RestoreLxc::new(vmid, "pbs:backup/ct/101/2026-05-01T10:00:00Z", "local-lvm");
        r.overrides.insert("onboot".into(), json!(true));
        let v = Value::Object(r.to_params().0);
        assert_eq!(v["restore"], 1);
        assert_eq!(v["onboot"], 1);
        assert!(v.get("force").is_none() && v.get("unique").is_none());
        r.force = true;
        r.unique = true;
        let v = Value::Object(r.to_params().0);
        assert_eq!(
            (v["force"].clone(), v["unique"].clone()),
            (json!(1), json!(1))
        );
    }

    #[test]
    fn size_pattern() {
        for ok in ["8G", "+2G", "10", "1.5T", "+0.5M"] {
            assert!(valid_size(ok), "{ok}");
        }
        for bad in ["2GB", "", "+", "G", "1.", ".5G", "-1G", "1,5G"] {
            assert!(!valid_size(bad), "{bad}");
        }
    }
}
