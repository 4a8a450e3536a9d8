//! Guest configuration: the typed [`LxcConfig`], the [`ConfigUpdate`] builder, and the
//! config GET/PUT calls.
//!
//! Two quirks are handled here, once:
//! - **description**: PVE stores it as `#` comment lines and appends `"\n"` to every line on
//!   read (pve-container `LXC/Config.pm:1174-1176`), so `"hello"` reads back as `"hello\n"`.
//!   [`LxcConfig::description`] has exactly one trailing newline stripped, so what was written
//!   compares equal to what is read.
//! - **netN hwaddr**: updating `netN` without `hwaddr` makes PVE mint a new random MAC
//!   (`LXC/Config.pm:1566-1580`). [`Client::update_lxc_config`] re-adds the current `hwaddr`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tracing::debug;

use crate::client::{Client, Params};
use crate::error::{Error, Result};
use crate::lenient;
use crate::task::TaskRef;
use crate::vmid::Vmid;

/// A guest configuration: the common keys typed, every other key (`netN`, `mpN`, `features`,
/// `unusedN`, …) as its raw property string in `other`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LxcConfig {
    /// SHA-1 of the raw config; send it back to make an update conditional.
    pub digest: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Description, with the one trailing newline PVE adds on read removed.
    pub description: Option<String>,
    /// Cores.
    pub cores: Option<u64>,
    /// CPU limit (may be fractional; PVE sometimes sends it as a string).
    pub cpulimit: Option<f64>,
    /// CPU weight.
    pub cpuunits: Option<u64>,
    /// Memory, MiB.
    pub memory: Option<u64>,
    /// Swap, MiB.
    pub swap: Option<u64>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Protection against removal.
    pub protection: Option<bool>,
    /// Unprivileged container.
    pub unprivileged: Option<bool>,
    /// Template.
    pub template: Option<bool>,
    /// OS type.
    pub ostype: Option<String>,
    /// Architecture.
    pub arch: Option<String>,
    /// Tags, `;`-separated.
    pub tags: Option<String>,
    /// Config lock (`backup`, `snapshot`, `create`, …).
    pub lock: Option<String>,
    /// Root filesystem property string.
    pub rootfs: Option<String>,
    /// Snapshot this state derives from.
    pub parent: Option<String>,
    /// Every other key, values as strings (numbers and 0/1 flags rendered as text).
    pub other: BTreeMap<String, String>,
    /// Raw `lxc.*` entries (`[key, value]` pairs), when present.
    pub raw_lxc: Vec<(String, String)>,
}

impl LxcConfig {
    /// The `netN` property string.
    pub fn net(&self, index: u32) -> Option<&str> {
        self.other.get(&format!("net{index}")).map(String::as_str)
    }

    /// All `netN` entries, by index.
    pub fn nets(&self) -> BTreeMap<u32, &str> {
        indexed(&self.other, "net")
    }

    /// All `mpN` entries, by index.
    pub fn mount_points(&self) -> BTreeMap<u32, &str> {
        indexed(&self.other, "mp")
    }

    fn from_map(mut map: Map<String, Value>) -> std::result::Result<Self, String> {
        fn take<T>(
            map: &mut Map<String, Value>,
            key: &str,
            conv: fn(&Value) -> Option<T>,
        ) -> std::result::Result<Option<T>, String> {
            match map.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => conv(&v)
                    .map(Some)
                    .ok_or_else(|| format!("config key {key:?} has an unexpected value {v}")),
            }
        }
        let s = lenient::value_to_string;
        let u = lenient::value_to_u64;
        let b = lenient::value_to_bool;
        let mut cfg = LxcConfig {
            digest: take(&mut map, "digest", s)?,
            hostname: take(&mut map, "hostname", s)?,
            description: take(&mut map, "description", s)?.map(strip_description),
            cores: take(&mut map, "cores", u)?,
            cpulimit: take(&mut map, "cpulimit", lenient::value_to_f64)?,
            cpuunits: take(&mut map, "cpuunits", u)?,
            memory: take(&mut map, "memory", u)?,
            swap: take(&mut map, "swap", u)?,
            onboot: take(&mut map, "onboot", b)?,
            protection: take(&mut map, "protection", b)?,
            unprivileged: take(&mut map, "unprivileged", b)?,
            template: take(&mut map, "template", b)?,
            ostype: take(&mut map, "ostype", s)?,
            arch: take(&mut map, "arch", s)?,
            tags: take(&mut map, "tags", s)?,
            lock: take(&mut map, "lock", s)?,
            rootfs: take(&mut map, "rootfs", s)?,
            parent: take(&mut map, "parent", s)?,
            ..LxcConfig::default()
        };
        if let Some(raw) = map.remove("lxc") {
            cfg.raw_lxc = parse_raw_lxc(&raw)?;
        }
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            let text = lenient::value_to_string(&v).unwrap_or_else(|| v.to_string());
            cfg.other.insert(k, text);
        }
        Ok(cfg)
    }
}

impl<'de> Deserialize<'de> for LxcConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = Map::deserialize(d)?;
        LxcConfig::from_map(map).map_err(serde::de::Error::custom)
    }
}

fn parse_raw_lxc(v: &Value) -> std::result::Result<Vec<(String, String)>, String> {
    let items = v.as_array().ok_or("config key \"lxc\" is not a list")?;
    items
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([k, v]) => Ok((
                lenient::value_to_string(k).unwrap_or_default(),
                lenient::value_to_string(v).unwrap_or_default(),
            )),
            _ => Err(format!("config key \"lxc\" has a malformed entry {pair}")),
        })
        .collect()
}

/// PVE appends "\n" to each description line on read; remove the final one.
fn strip_description(d: String) -> String {
    match d.strip_suffix('\n') {
        Some(s) => s.to_owned(),
        None => d,
    }
}

fn indexed<'a>(other: &'a BTreeMap<String, String>, prefix: &str) -> BTreeMap<u32, &'a str> {
    other
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?;
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((n.parse().ok()?, v.as_str()))
        })
        .collect()
}

/// The value of `key` in a PVE property string (`name=eth0,bridge=vmbr0,hwaddr=…`).
pub fn property_value<'a>(property_string: &'a str, key: &str) -> Option<&'a str> {
    property_string.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == key).then_some(v.trim())
    })
}

/// Appends `key=value` to a property string: how [`Client::update_lxc_config`] resends the
/// current `hwaddr` of a `netN`. When `key` was absent and `value` has no `,` and no outer
/// whitespace, [`property_value`] reads `value` back (the fuzz target `pve_property_string`
/// asserts it).
pub fn append_property(property_string: &mut String, key: &str, value: &str) {
    property_string.push(',');
    property_string.push_str(key);
    property_string.push('=');
    property_string.push_str(value);
}

/// A config change: keys to set and keys to delete, optionally conditional on a `digest`.
/// Values use PVE's option names and formats (`net0` is a property string).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigUpdate {
    set: BTreeMap<String, Value>,
    delete: Vec<String>,
    digest: Option<String>,
}

impl ConfigUpdate {
    /// An empty update.
    pub fn new() -> Self {
        ConfigUpdate::default()
    }
    /// Sets a string option.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.insert(key.into(), Value::String(value.into()));
        self
    }
    /// Sets an integer option.
    pub fn set_int(mut self, key: impl Into<String>, value: i64) -> Self {
        self.set.insert(key.into(), Value::from(value));
        self
    }
    /// Sets a boolean option (sent as 0/1).
    pub fn set_bool(mut self, key: impl Into<String>, value: bool) -> Self {
        self.set.insert(key.into(), Value::from(u8::from(value)));
        self
    }
    /// `hostname`.
    pub fn hostname(self, v: impl Into<String>) -> Self {
        self.set("hostname", v)
    }
    /// `description` (a trailing newline is meaningless: PVE drops it).
    pub fn description(self, v: impl Into<String>) -> Self {
        self.set("description", v)
    }
    /// `cores`.
    pub fn cores(self, v: u32) -> Self {
        self.set_int("cores", i64::from(v))
    }
    /// `memory` in MiB.
    pub fn memory(self, mib: u32) -> Self {
        self.set_int("memory", i64::from(mib))
    }
    /// `swap` in MiB.
    pub fn swap(self, mib: u32) -> Self {
        self.set_int("swap", i64::from(mib))
    }
    /// `onboot`.
    pub fn onboot(self, v: bool) -> Self {
        self.set_bool("onboot", v)
    }
    /// `tags`.
    pub fn tags(self, v: impl Into<String>) -> Self {
        self.set("tags", v)
    }
    /// `netN` (property string; `hwaddr` may be left out, see [`Client::update_lxc_config`]).
    pub fn net(self, index: u32, v: impl Into<String>) -> Self {
        self.set(format!("net{index}"), v)
    }
    /// `mpN` (property string, e.g. `local-lvm:8,mp=/data,backup=0` for a new volume).
    pub fn mount_point(self, index: u32, v: impl Into<String>) -> Self {
        self.set(format!("mp{index}"), v)
    }
    /// Removes an option.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.delete.push(key.into());
        self
    }
    /// Makes the update conditional on the config still having this digest.
    pub fn digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
    /// The `netN` keys being set without a `hwaddr`.
    pub fn nets_without_hwaddr(&self) -> Vec<String> {
        self.set
            .iter()
            .filter(|(k, _)| is_indexed(k, "net"))
            .filter(|(_, v)| {
                v.as_str()
                    .is_some_and(|s| property_value(s, "hwaddr").is_none())
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.is_empty() {
            // PVE would answer 500 "no options specified".
            return Err(Error::invalid("config update", "nothing to set or delete"));
        }
        for key in self.set.keys().chain(self.delete.iter()) {
            let ok = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                });
            if !ok {
                return Err(Error::invalid(
                    "config update",
                    format!("{key:?} is not an option name"),
                ));
            }
            if key == "digest" || key == "delete" {
                return Err(Error::invalid(
                    "config update",
                    format!("{key:?} is not an option"),
                ));
            }
        }
        if let Some(both) = self.delete.iter().find(|k| self.set.contains_key(*k)) {
            return Err(Error::invalid(
                "config update",
                format!("{both:?} is both set and deleted"),
            ));
        }
        Ok(())
    }

    /// The request body: set keys, `delete` as a comma list, `digest`.
    pub(crate) fn to_params(&self) -> Params {
        let mut p = Params::new();
        for (k, v) in &self.set {
            p = p.value(k, v.clone());
        }
        if !self.delete.is_empty() {
            p = p.str("delete", self.delete.join(","));
        }
        p.opt_str("digest", self.digest.clone())
    }
}

pub(crate) fn is_indexed(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

impl Client {
    /// `GET …/config`: the config with pending values merged in (PVE's default).
    pub async fn lxc_config(&self, vmid: Vmid) -> Result<LxcConfig> {
        let path = self.lxc_path(vmid, &["config"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `GET …/config?current=1`: the values the running guest actually uses.
    pub async fn lxc_config_current(&self, vmid: Vmid) -> Result<LxcConfig> {
        let path = self.lxc_path(vmid, &["config"]);
        self.call(Method::GET, &path, Params::new().bool("current", true))
            .await
    }

    /// `PUT …/config`: synchronous (returns [`TaskRef::Sync`]).
    ///
    /// When the update sets a `netN` without `hwaddr` and that interface exists, the current
    /// config is read first and its `hwaddr` re-added, because PVE would otherwise mint a new
    /// MAC. If the caller gave no `digest`, the digest of that read is sent, making the
    /// read-modify-write atomic: should the config change in between, PVE refuses with
    /// [`Error::DigestMismatch`] instead of us resending a stale MAC.
    pub async fn update_lxc_config(&self, vmid: Vmid, update: ConfigUpdate) -> Result<TaskRef> {
        update.validate()?;
        let mut update = update;
        let missing = update.nets_without_hwaddr();
        if !missing.is_empty() {
            let current = self.lxc_config(vmid).await?;
            for key in missing {
                let mac = current
                    .other
                    .get(&key)
                    .and_then(|v| property_value(v, "hwaddr"))
                    .map(str::to_owned);
                if let (Some(mac), Some(Value::String(v))) = (mac, update.set.get_mut(&key)) {
                    debug!(%vmid, key = %key, "resending current hwaddr");
                    append_property(v, "hwaddr", &mac);
                }
            }
            if update.digest.is_none() {
                update.digest = current.digest;
            }
        }
        let path = self.lxc_path(vmid, &["config"]);
        self.call_task(Method::PUT, &path, update.to_params()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_decodes_typed_and_other_keys() {
        let cfg: LxcConfig = serde_json::from_value(json!({
            "digest": "3f6c…",
            "hostname": "web1",
            "description": "line one\nline two\n",
            "cores": 2, "memory": "1024", "swap": 512, "cpulimit": "1.5",
            "onboot": 1, "unprivileged": 1, "protection": 0,
            "ostype": "debian", "arch": "amd64",
            "rootfs": "local-lvm:vm-101-disk-0,size=8G",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth",
            "mp0": "local-lvm:vm-101-disk-1,mp=/data,backup=0,size=8G",
            "features": "nesting=1",
            "lxc": [["lxc.apparmor.profile", "unconfined"]],
            "unused0": "local-lvm:vm-101-disk-2"
        }))
        .unwrap();
        assert_eq!(cfg.description.as_deref(), Some("line one\nline two"));
        assert_eq!(cfg.memory, Some(1024));
        assert_eq!(cfg.cpulimit, Some(1.5));
        assert_eq!(cfg.onboot, Some(true));
        assert_eq!(cfg.protection, Some(false));
        assert_eq!(cfg.other["features"], "nesting=1");
        assert_eq!(cfg.nets().len(), 1);
        assert_eq!(
            property_value(cfg.net(0).unwrap(), "hwaddr"),
            Some("BC:24:11:AA:BB:CC")
        );
        assert_eq!(
            cfg.mount_points()[&0],
            "local-lvm:vm-101-disk-1,mp=/data,backup=0,size=8G"
        );
        assert_eq!(
            cfg.raw_lxc,
            vec![("lxc.apparmor.profile".into(), "unconfined".into())]
        );
        assert!(cfg.other.contains_key("unused0"));
        assert!(!cfg.other.contains_key("hostname"));
    }

    #[test]
    fn description_keeps_inner_blank_lines() {
        let cfg: LxcConfig = serde_json::from_value(json!({"description": "a\n\nb\n"})).unwrap();
        assert_eq!(cfg.description.as_deref(), Some("a\n\nb"));
        let cfg: LxcConfig = serde_json::from_value(json!({"description": "x"})).unwrap();
        assert_eq!(cfg.description.as_deref(), Some("x"));
    }

    #[test]
    fn config_rejects_wrong_types_clearly() {
        let e = serde_json::from_value::<LxcConfig>(json!({"cores": "many"})).unwrap_err();
        assert!(e.to_string().contains("\"cores\""), "{e}");
        assert!(serde_json::from_value::<LxcConfig>(json!([1])).is_err());
    }

    #[test]
    fn update_encoding() {
        let u = ConfigUpdate::new()
            .hostname("web2")
            .cores(4)
            .onboot(true)
            .delete("mp1")
            .delete("swap")
            .digest("abc");
        u.validate().unwrap();
        assert_eq!(
            Value::Object(u.to_params().0).to_string(),
            r#"{"cores":4,"hostname":"web2","onboot":1,"delete":"mp1,swap","digest":"abc"}"#
        );
    }

    #[test]
    fn update_validation() {
        assert!(ConfigUpdate::new().validate().is_err());
        assert!(ConfigUpdate::new().set("Bad", "x").validate().is_err());
        assert!(ConfigUpdate::new().set("digest", "x").validate().is_err());
        let e = ConfigUpdate::new()
            .cores(1)
            .delete("cores")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("both set and deleted"), "{e}");
    }

    #[test]
    fn finds_nets_without_hwaddr() {
        let u = ConfigUpdate::new()
            .net(0, "name=eth0,bridge=vmbr0,ip=dhcp")
            .net(1, "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:00:01")
            .set("netmask", "x");
        assert_eq!(u.nets_without_hwaddr(), vec!["net0".to_owned()]);
    }
}
