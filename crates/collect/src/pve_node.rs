//! PVE's view of the node and its guests, from one `GET /nodes/{node}/status` and one
//! `GET /cluster/resources?type=vm` per report (a constant number of reads, whatever the
//! guest count: DESIGN §6).

use hub::{CollectorError, GuestReport, GuestSpec, GuestUsage, PveNodeReport};

/// What the PVE collector produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PveCollection {
    /// Node status, if it could be read.
    pub node: Option<PveNodeReport>,
    /// Guests on this node, if they could be read (`managed` is false: the binary marks the
    /// ones in its provenance).
    pub guests: Option<Vec<GuestReport>>,
    /// What failed.
    pub errors: Vec<CollectorError>,
}

/// Reads node status and guests.
pub async fn collect_pve(client: &pve::Client) -> PveCollection {
    let mut out = PveCollection::default();
    match client.node_status().await {
        Ok(s) => out.node = Some(node_report(&s)),
        Err(e) => out.errors.push(CollectorError {
            collector: "pve_node".into(),
            message: crate::error_chain(&e),
        }),
    }
    match client.cluster_resources(Some(pve::ResourceType::Vm)).await {
        Ok(r) => out.guests = Some(guests_from_resources(&r, client.node())),
        Err(e) => out.errors.push(CollectorError {
            collector: "pve_guests".into(),
            message: crate::error_chain(&e),
        }),
    }
    out
}

/// The node fields the hub shows.
pub fn node_report(s: &pve::NodeStatus) -> PveNodeReport {
    PveNodeReport {
        pve_version: s.pveversion.clone(),
        kernel: s.kversion.clone(),
        cpu: s.cpu,
    }
}

/// Guests of `node` from `/cluster/resources`, sorted by vmid.
pub fn guests_from_resources(resources: &[pve::ClusterResource], node: &str) -> Vec<GuestReport> {
    let mut guests: Vec<GuestReport> = resources
        .iter()
        .filter(|r| matches!(r.resource_type.as_str(), "lxc" | "qemu"))
        .filter(|r| r.node.as_deref() == Some(node))
        .filter_map(|r| {
            Some(GuestReport {
                vmid: r.vmid?,
                kind: r.resource_type.clone(),
                name: r.name.clone(),
                status: r.status.clone().unwrap_or_else(|| "unknown".into()),
                managed: false,
                lock: r.lock.clone().filter(|l| !l.is_empty()),
                template: r.template.unwrap_or(false),
                spec: GuestSpec {
                    cores: r.maxcpu,
                    memory_bytes: r.maxmem,
                    disk_bytes: r.maxdisk,
                },
                usage: GuestUsage {
                    cpu: r.cpu,
                    memory_bytes: r.mem,
                    disk_bytes: r.disk,
                    uptime_s: r.uptime,
                },
            })
        })
        .collect();
    guests.sort_by_key(|g| g.vmid);
    guests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_of_this_node_only_sorted() {
        let res: Vec<pve::ClusterResource> = serde_json::from_value(serde_json::json!([
            {"id": "lxc/102", "type": "lxc", "node": "pve", "vmid": 102, "status": "stopped", "name": "b", "maxcpu": 2, "maxmem": 1073741824, "maxdisk": 8589934592u64, "template": 0},
            {"id": "lxc/101", "type": "lxc", "node": "pve", "vmid": "101", "status": "running", "name": "a", "cpu": 0.05, "mem": 1000, "uptime": 77, "lock": "backup"},
            {"id": "lxc/200", "type": "lxc", "node": "other", "vmid": 200, "status": "running"},
            {"id": "storage/pve/local", "type": "storage", "node": "pve", "storage": "local"},
            {"id": "qemu/300", "type": "qemu", "node": "pve", "vmid": 300, "status": "running", "template": 1}
        ]))
        .unwrap();
        let g = guests_from_resources(&res, "pve");
        assert_eq!(
            g.iter().map(|g| g.vmid).collect::<Vec<_>>(),
            vec![101, 102, 300]
        );
        assert_eq!(g[0].lock.as_deref(), Some("backup"));
        assert_eq!(g[0].usage.uptime_s, Some(77));
        assert_eq!(g[1].spec.memory_bytes, Some(1 << 30));
        assert_eq!(g[1].spec.cores, Some(2.0));
        assert!(g[2].template && g[2].kind == "qemu");
        assert!(g.iter().all(|g| !g.managed));
    }
}
