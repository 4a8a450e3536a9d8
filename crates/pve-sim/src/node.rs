//! Node-level endpoints: version, node list and status, cluster resources, disks, SMART and
//! USB (pve-manager `PVE/API2/Nodes.pm`, `Cluster.pm:263+`, `Hardware/USB.pm`; pve-storage
//! `API2/Disks.pm`). Figures are plausible constants, not measurements.

use serde_json::{json, Value};

use crate::envelope::{ApiError, Reply};
use crate::lxc::guest_status;
use crate::server::{check_node, Call};
use crate::tasks::now;

/// The simulated pve-manager version.
pub const PVE_VERSION: &str = "9.1.9";
const REPOID: &str = "ee7bad0a";
const MAXMEM: u64 = 64 << 30;
const MAXCPU: u64 = 16;

/// `GET /version`.
pub fn version(_call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::data(
        json!({"version": PVE_VERSION, "release": "9.1", "repoid": REPOID}),
    ))
}

fn fingerprint(call: &Call) -> Option<String> {
    let pem = std::fs::read(call.sim.state_dir().join(crate::tls::CERT_FILE)).ok()?;
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).ok()?;
    Some(crate::tls::fingerprint(&der))
}

/// `GET /nodes`: details only with `Sys.Audit` on the node.
pub fn list_nodes(call: &Call) -> Result<Reply, ApiError> {
    let (node, uptime, audit) = call.sim.with_state(|st| {
        let audit = call.is_root()
            || st
                .access
                .has_all(&call.user, &format!("/nodes/{}", st.node), &["Sys.Audit"]);
        (st.node.clone(), now() - st.boot_time, audit)
    });
    let mut entry =
        json!({"node": node, "status": "online", "id": format!("node/{node}"), "type": "node"});
    if audit {
        entry["cpu"] = json!(0.0421);
        entry["maxcpu"] = json!(MAXCPU);
        entry["mem"] = json!(MAXMEM / 5);
        entry["maxmem"] = json!(MAXMEM);
        entry["uptime"] = json!(uptime);
        entry["level"] = json!("");
        if let Some(fp) = fingerprint(call) {
            entry["ssl_fingerprint"] = json!(fp);
        }
    }
    Ok(Reply::data(json!([entry])))
}

/// `GET /nodes/{node}/status` (loadavg as strings, like PVE).
pub fn status(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let uptime = call.sim.with_state(|st| now() - st.boot_time);
    Ok(Reply::data(json!({
        "cpu": 0.0421,
        "wait": 0.0012,
        "idle": 0,
        "loadavg": ["0.42", "0.37", "0.30"],
        "memory": {"total": MAXMEM, "used": MAXMEM / 5, "free": MAXMEM - MAXMEM / 5, "available": MAXMEM - MAXMEM / 5},
        "swap": {"total": 8u64 << 30, "used": 0, "free": 8u64 << 30},
        "rootfs": {"total": 100u64 << 30, "used": 12u64 << 30, "avail": 88u64 << 30, "free": 88u64 << 30},
        "uptime": uptime,
        "cpuinfo": {"cpus": MAXCPU, "cores": 8, "sockets": 1, "model": "AMD Ryzen 7 5700G with Radeon Graphics", "mhz": "3800.000", "hvm": "1", "flags": "fpu vme de pse"},
        "kversion": "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z)",
        "pveversion": format!("pve-manager/{PVE_VERSION}/{REPOID}"),
        "current-kernel": {"sysname": "Linux", "release": "6.17.2-1-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z)", "machine": "x86_64"},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "ksm": {"shared": 0},
    })))
}

/// `GET /cluster/resources` (`type` ∈ vm|storage|node|sdn): guests need `VM.Audit`,
/// storages `Datastore.Audit`; nodes are always listed.
pub fn cluster_resources(call: &Call) -> Result<Reply, ApiError> {
    let kind = call.str("type");
    let want = |k: &str| kind.as_deref().is_none_or(|t| t == k);
    let t = now();
    call.sim.with_state(|st| {
        let mut items = Vec::new();
        if want("vm") {
            for (vmid, g) in &st.guests {
                if !st.access.has_all(&call.user, &format!("/vms/{vmid}"), &["VM.Audit"]) {
                    continue;
                }
                let s = guest_status(*vmid, g, t);
                let mut e = json!({
                    "id": format!("lxc/{vmid}"), "type": "lxc", "vmid": vmid, "node": st.node,
                    "status": s["status"], "name": s["name"], "template": s.get("template").cloned().unwrap_or(json!(0)),
                    "maxcpu": s["cpus"], "cpu": s["cpu"], "mem": s["mem"], "maxmem": s["maxmem"],
                    "disk": s["disk"], "maxdisk": s["maxdisk"], "uptime": s["uptime"],
                    "netin": s["netin"], "netout": s["netout"], "diskread": s["diskread"], "diskwrite": s["diskwrite"],
                });
                for k in ["lock", "tags"] {
                    if let Some(v) = s.get(k) {
                        e[k] = v.clone();
                    }
                }
                items.push(e);
            }
        }
        if want("storage") {
            for (id, s) in &st.storages {
                if !st.access.has_all(&call.user, &format!("/storage/{id}"), &["Datastore.Audit"]) {
                    continue;
                }
                let used = st.storage_used(id).min(s.total);
                // pvestatd's view; the simulator has no 5-minute RRD lag.
                let reachable = crate::activation::active(st, id, s);
                let mut e = json!({
                    "id": format!("storage/{}/{id}", st.node), "type": "storage", "storage": id, "node": st.node,
                    "plugintype": s.kind, "status": if reachable { "available" } else { "unknown" },
                    "shared": i32::from(matches!(s.kind.as_str(), "nfs" | "cifs" | "pbs")), "content": s.content().join(","),
                });
                if reachable {
                    e["disk"] = json!(used);
                    e["maxdisk"] = json!(s.total);
                }
                items.push(e);
            }
        }
        if want("node") {
            let mut e = json!({"id": format!("node/{}", st.node), "type": "node", "node": st.node, "status": "online"});
            if call.is_root() || st.access.has_all(&call.user, &format!("/nodes/{}", st.node), &["Sys.Audit"]) {
                e["cpu"] = json!(0.0421);
                e["maxcpu"] = json!(MAXCPU);
                e["mem"] = json!(MAXMEM / 5);
                e["maxmem"] = json!(MAXMEM);
                e["disk"] = json!(12u64 << 30);
                e["maxdisk"] = json!(100u64 << 30);
                e["uptime"] = json!(t - st.boot_time);
                e["level"] = json!("");
                e["cgroup-mode"] = json!(2);
            }
            items.push(e);
        }
        Ok(Reply::data(Value::Array(items)))
    })
}

/// The seeded USB disk is there unless `/_sim/usb` pulled it or one of its filesystems.
fn usb_disk_present(call: &Call) -> bool {
    !call.sim.controls().usb_unplugged() && call.sim.with_state(crate::usb::all_present)
}

/// The simulated disks: two internal, one USB disk unless unplugged via `/_sim/usb`.
fn disks(call: &Call) -> Vec<Value> {
    let mut list = vec![
        json!({"devpath": "/dev/nvme0n1", "size": 1_000_204_886_016u64, "model": "Samsung SSD 980 PRO 1TB", "serial": "S5GXNF0R123456", "vendor": "unknown", "wwn": "eui.002538b111111111", "type": "nvme", "rpm": 0, "gpt": 1, "mounted": 0, "used": "LVM", "health": "PASSED", "wearout": 97, "osdid": -1, "osdid-list": [], "by_id_link": "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456"}),
        json!({"devpath": "/dev/sda", "size": 4_000_787_030_016u64, "model": "WDC_WD40EFPX-68C6CN0", "serial": "WD-WX12D3456789", "vendor": "ATA", "wwn": "0x50014ee2b1111111", "type": "hdd", "rpm": 5400, "gpt": 1, "mounted": 0, "used": "ext4", "health": "PASSED", "wearout": "N/A", "osdid": -1, "osdid-list": [], "by_id_link": "/dev/disk/by-id/ata-WDC_WD40EFPX-68C6CN0_WD-WX12D3456789"}),
    ];
    if usb_disk_present(call) {
        list.push(json!({"devpath": "/dev/sdb", "size": 2_000_398_934_016u64, "model": "Elements_25A3", "serial": "575836314142", "vendor": "WD", "wwn": "unknown", "type": "usb", "rpm": 0, "gpt": 1, "mounted": 0, "used": "ext4", "health": "PASSED", "wearout": "N/A", "osdid": -1, "osdid-list": [], "by_id_link": "/dev/disk/by-id/usb-WD_Elements_25A3_575836314142-0:0"}));
    }
    list
}

/// `GET /nodes/{node}/disks/list`.
pub fn disks_list(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let skipsmart = call.flag("skipsmart");
    let mut list = disks(call);
    if skipsmart {
        for d in &mut list {
            if let Some(o) = d.as_object_mut() {
                o.remove("health");
                o.remove("wearout");
            }
        }
    }
    if call.str("type").as_deref() == Some("unused") {
        list.retain(|d| d.get("used").is_none());
    }
    Ok(Reply::data(Value::Array(list)))
}

/// `GET /nodes/{node}/disks/smart?disk=...` (Sys.Audit on `/`, checked by the schema).
pub fn disks_smart(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let disk = call.str("disk").unwrap_or_default();
    let found = disks(call)
        .into_iter()
        .find(|d| d["devpath"] == json!(disk));
    let Some(d) = found else {
        return Err(ApiError::Fail(format!(
            "{disk}: not a valid block device\n"
        )));
    };
    if call.flag("healthonly") {
        return Ok(Reply::data(json!({"health": "PASSED"})));
    }
    if d["type"] == json!("nvme") {
        return Ok(Reply::data(json!({
            "health": "PASSED", "type": "text", "wearout": 97,
            "text": "\nSMART/Health Information (NVMe Log 0x02)\nCritical Warning:                   0x00\nTemperature:                        38 Celsius\nAvailable Spare:                    100%\nPercentage Used:                    3%\n",
        })));
    }
    let attr = |id: u32, name: &str, value: u32, worst: u32, thresh: u32, raw: &str| json!({"id": format!("{id:>3}"), "name": name, "flags": "0x0032", "value": value, "normalized": value, "worst": worst, "threshold": thresh, "fail": "-", "raw": raw});
    Ok(Reply::data(json!({
        "health": "PASSED", "type": "ata",
        "attributes": [
            attr(1, "Raw_Read_Error_Rate", 200, 200, 51, "0"),
            attr(5, "Reallocated_Sector_Ct", 200, 200, 140, "0"),
            attr(9, "Power_On_Hours", 97, 97, 0, "2511"),
            attr(194, "Temperature_Celsius", 114, 104, 0, "36"),
            attr(197, "Current_Pending_Sector", 200, 200, 0, "0"),
        ],
    })))
}

/// `GET /nodes/{node}/hardware/usb` (Sys.Modify on `/`, checked by the schema).
pub fn hardware_usb(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let mut list = vec![
        json!({"busnum": 1, "devnum": 1, "port": 0, "level": 0, "class": 9, "vendid": "1d6b", "prodid": "0002", "speed": "480", "manufacturer": "Linux 6.17.2-1-pve xhci-hcd", "product": "xHCI Host Controller"}),
        json!({"busnum": 2, "devnum": 1, "port": 0, "level": 0, "class": 9, "vendid": "1d6b", "prodid": "0003", "speed": "5000", "manufacturer": "Linux 6.17.2-1-pve xhci-hcd", "product": "xHCI Host Controller"}),
    ];
    if usb_disk_present(call) {
        list.push(json!({"busnum": 2, "devnum": 2, "port": 1, "level": 1, "class": 0, "vendid": "1058", "prodid": "25a3", "speed": "5000", "usbpath": "1", "manufacturer": "Western Digital", "product": "Elements 25A3", "serial": "575836314142"}));
    }
    Ok(Reply::data(Value::Array(list)))
}
