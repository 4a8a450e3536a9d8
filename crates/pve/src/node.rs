//! Node- and cluster-level reads: version, `/cluster/resources`, node status, disks, SMART, USB.

use reqwest::Method;
use serde::Deserialize;

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::lenient;

/// `GET /version`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VersionInfo {
    /// Full version, e.g. `9.1.3`.
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    /// Release, e.g. `9.1`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub release: Option<String>,
    /// Git commit of pve-manager.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub repoid: Option<String>,
}

/// Filter of `/cluster/resources` (PVE accepts only these; `lxc` gives 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    /// Guests (LXC and QEMU).
    Vm,
    /// Storages.
    Storage,
    /// Nodes.
    Node,
    /// SDN zones.
    Sdn,
}

impl ResourceType {
    fn as_str(self) -> &'static str {
        match self {
            ResourceType::Vm => "vm",
            ResourceType::Storage => "storage",
            ResourceType::Node => "node",
            ResourceType::Sdn => "sdn",
        }
    }
}

/// An entry of `GET /cluster/resources`. Guest statistics lag by about 10 s (pvestatd's RRD
/// broadcast); use `status/current` for the authoritative power state.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClusterResource {
    /// `lxc/101`, `storage/pve1/local`, `node/pve1`.
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// `lxc`, `qemu`, `node`, `storage`, `pool`, `sdn`, ….
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub resource_type: String,
    /// Node.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub node: Option<String>,
    /// Guest id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub vmid: Option<u64>,
    /// `running`/`stopped`, `online`/`offline`, `available`, `unknown`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Guest name.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Storage id.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub storage: Option<String>,
    /// Guest lock.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub lock: Option<String>,
    /// Tags.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tags: Option<String>,
    /// Template flag.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub template: Option<bool>,
    /// CPU usage.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpu: Option<f64>,
    /// CPUs.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Memory used, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub mem: Option<u64>,
    /// Memory limit, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxmem: Option<u64>,
    /// Disk used, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
    /// Storage plugin type.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub plugintype: Option<String>,
}

/// Memory or swap counters of a node.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MemoryCounters {
    /// Bytes total.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub total: Option<u64>,
    /// Bytes used.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub used: Option<u64>,
    /// Bytes free.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub free: Option<u64>,
}

/// `GET /nodes/{node}/status` (the fields the agent reports).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// CPU usage 0..1.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpu: Option<f64>,
    /// Load averages; PVE sends them as strings.
    #[serde(default, deserialize_with = "lenient::f64_vec")]
    pub loadavg: Vec<f64>,
    /// Memory.
    #[serde(default)]
    pub memory: MemoryCounters,
    /// Swap.
    #[serde(default)]
    pub swap: MemoryCounters,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
    /// `pve-manager/9.1.x/…`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub pveversion: Option<String>,
    /// Running kernel.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub kversion: Option<String>,
}

/// An entry of `GET /nodes/{node}/disks/list`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DiskInfo {
    /// `/dev/sda`.
    #[serde(deserialize_with = "lenient::string")]
    pub devpath: String,
    /// Bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub size: Option<u64>,
    /// Model.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub model: Option<String>,
    /// Serial.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub serial: Option<String>,
    /// `hdd`, `ssd`, `nvme`, `usb`, ….
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    pub disk_type: Option<String>,
    /// SMART health (`PASSED`, `OK`, `UNKNOWN`, …).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub health: Option<String>,
    /// Wearout percentage (or `N/A`).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub wearout: Option<String>,
    /// What uses it (`LVM`, `ZFS`, `mounted`, …).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub used: Option<String>,
}

/// One SMART attribute (ATA).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SmartAttribute {
    /// Attribute id.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Normalized value.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub normalized: Option<String>,
    /// Threshold.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub threshold: Option<String>,
    /// Raw value.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub raw: Option<String>,
    /// When it failed, if it did.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub fail: Option<String>,
}

/// `GET /nodes/{node}/disks/smart`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SmartInfo {
    /// Overall health; `UNKNOWN` when smartctl failed (PVE swallows its errors).
    #[serde(deserialize_with = "lenient::string")]
    pub health: String,
    /// `ata` or `text`.
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    pub smart_type: Option<String>,
    /// ATA attributes.
    #[serde(default)]
    pub attributes: Vec<SmartAttribute>,
    /// NVMe/SAS output.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub text: Option<String>,
    /// Wearout percentage.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub wearout: Option<f64>,
}

/// An entry of `GET /nodes/{node}/hardware/usb`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UsbDevice {
    /// Bus number.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub busnum: Option<u64>,
    /// Device number.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub devnum: Option<u64>,
    /// Port path.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub usbpath: Option<String>,
    /// Vendor id (hex).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub vendid: Option<String>,
    /// Product id (hex).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub prodid: Option<String>,
    /// Manufacturer.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub manufacturer: Option<String>,
    /// Product.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub product: Option<String>,
    /// Serial.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub serial: Option<String>,
    /// Speed.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub speed: Option<String>,
}

impl Client {
    /// `GET /version`; any valid token may call it (the cheapest "is the API up" probe).
    pub async fn version(&self) -> Result<VersionInfo> {
        self.call(Method::GET, "/version", Params::new()).await
    }

    /// `GET /cluster/resources`, optionally filtered. One request for every guest: the
    /// reconcile loop's steady-state read.
    pub async fn cluster_resources(
        &self,
        filter: Option<ResourceType>,
    ) -> Result<Vec<ClusterResource>> {
        let params = Params::new().opt_str("type", filter.map(ResourceType::as_str));
        self.call(Method::GET, "/cluster/resources", params).await
    }

    /// `GET /nodes/{node}/status` (needs `Sys.Audit` on the node).
    pub async fn node_status(&self) -> Result<NodeStatus> {
        let path = api_path(&["nodes", self.node(), "status"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `GET /nodes/{node}/disks/list`, with SMART health unless `skip_smart`.
    pub async fn list_disks(&self, skip_smart: bool) -> Result<Vec<DiskInfo>> {
        let path = api_path(&["nodes", self.node(), "disks", "list"]);
        let params = Params::new().opt_bool("skipsmart", skip_smart.then_some(true));
        self.call(Method::GET, &path, params).await
    }

    /// `GET /nodes/{node}/disks/smart?disk=/dev/X` (needs `Sys.Audit` on `/`).
    pub async fn disk_smart(&self, disk: &str) -> Result<SmartInfo> {
        // PVE's pattern ^/dev/[a-zA-Z0-9\/]+$, checked here so a typo never reaches smartctl.
        let ok = disk.strip_prefix("/dev/").is_some_and(|d| {
            !d.is_empty() && d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'/')
        });
        if !ok {
            return Err(Error::invalid("disk", format!("{disk:?} is not /dev/NAME")));
        }
        let path = api_path(&["nodes", self.node(), "disks", "smart"]);
        self.call(Method::GET, &path, Params::new().str("disk", disk))
            .await
    }

    /// `GET /nodes/{node}/hardware/usb`. Needs `Sys.Modify` on `/`, which the agent's role
    /// deliberately lacks (it reads USB disks from `/dev/disk/by-uuid` instead).
    pub async fn usb_devices(&self) -> Result<Vec<UsbDevice>> {
        let path = api_path(&["nodes", self.node(), "hardware", "usb"]);
        self.call(Method::GET, &path, Params::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_status_with_string_loadavg() {
        let s: NodeStatus = serde_json::from_value(json!({
            "cpu": 0.02, "loadavg": ["0.10","0.05","0.01"],
            "memory": {"total": 16_000_000_000u64, "used": "8000000000", "free": 8_000_000_000u64},
            "uptime": 1234, "pveversion": "pve-manager/9.1.3/abc", "extra": {"x": 1}
        }))
        .unwrap();
        assert_eq!(s.loadavg, vec![0.10, 0.05, 0.01]);
        assert_eq!(s.memory.used, Some(8_000_000_000));
        assert_eq!(s.swap, MemoryCounters::default());
    }

    #[test]
    fn cluster_resources_mixed_entries() {
        let r: Vec<ClusterResource> = serde_json::from_value(json!([
            {"id":"lxc/101","type":"lxc","vmid":101,"node":"pve1","status":"running","template":0,"maxmem":536870912},
            {"id":"storage/pve1/local","type":"storage","storage":"local","node":"pve1","status":"available","plugintype":"dir"},
            {"id":"node/pve1","type":"node","node":"pve1","status":"online"}
        ]))
        .unwrap();
        assert_eq!(r[0].vmid, Some(101));
        assert_eq!(r[0].template, Some(false));
        assert_eq!(r[1].storage.as_deref(), Some("local"));
        assert_eq!(r[2].resource_type, "node");
    }

    #[test]
    fn smart_and_usb() {
        let s: SmartInfo = serde_json::from_value(json!({
            "health":"PASSED","type":"ata","attributes":[{"id":" 5","name":"Reallocated_Sector_Ct","value":100,"normalized":100,"threshold":10,"raw":"0","fail":"-"}]
        }))
        .unwrap();
        assert_eq!(s.attributes[0].normalized.as_deref(), Some("100"));
        let u: UsbDevice = serde_json::from_value(
            json!({"busnum":1,"devnum":"3","vendid":"0781","prodid":"5581","speed":"480"}),
        )
        .unwrap();
        assert_eq!(u.devnum, Some(3));
    }
}
