//! The privileges the agent's PVE role (`FelhomAgent`) must grant, and a check against a
//! [`PermissionMap`] for the selftest.

use crate::access::PermissionMap;

/// The privileges of the `FelhomAgent` role, and why each is needed:
///
/// - `VM.Audit`: read guest lists, status and config.
/// - `VM.PowerMgmt`: start, stop, shutdown and reboot guests.
/// - `VM.Allocate`: create, restore and destroy guests; change the `nesting` feature.
/// - `VM.Config.CPU`: set `cores`, `cpulimit`, `cpuunits`.
/// - `VM.Config.Memory`: set `memory` and `swap`.
/// - `VM.Config.Disk`: set `rootfs`/`mpN` and resize disks.
/// - `VM.Config.Network`: set `netN`, `hostname`, `nameserver`, `searchdomain`.
/// - `VM.Config.Options`: set `description`, `onboot`, `tags` and other plain options.
/// - `VM.Snapshot`: create and delete snapshots.
/// - `VM.Snapshot.Rollback`: roll a guest back to a snapshot.
/// - `VM.Backup`: run vzdump, restore over a guest, delete a guest's backups.
/// - `Datastore.Audit`: list storages, their status and content (also in `/cluster/resources`).
/// - `Datastore.AllocateSpace`: allocate guest volumes and write backups.
/// - `Datastore.Allocate`: add/remove storage definitions, prune and delete volumes.
/// - `Sys.Audit`: node status, disk list and SMART health.
/// - `SDN.Use`: attach `netN` to a bridge (checked on `/sdn/zones/localnetwork/<bridge>`).
///
/// Deliberately absent: `Sys.Modify`. The USB list endpoint needs it (pve-manager
/// `API2/Hardware/USB.pm:13-51`), so the agent reads USB disks from `/dev/disk/by-uuid`
/// instead; [`crate::Client::usb_devices`] still exists for operators with a wider token.
pub const FELHOM_AGENT_PRIVILEGES: &[&str] = &[
    "VM.Audit",
    "VM.PowerMgmt",
    "VM.Allocate",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Disk",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
    "VM.Backup",
    "Datastore.Audit",
    "Datastore.AllocateSpace",
    "Datastore.Allocate",
    "Sys.Audit",
    "SDN.Use",
];

/// The agent privileges not held on `path`, in [`FELHOM_AGENT_PRIVILEGES`] order.
pub fn missing_privileges(map: &PermissionMap, path: &str) -> Vec<&'static str> {
    FELHOM_AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !map.has(path, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn exactly_sixteen_distinct_without_sys_modify() {
        let set: std::collections::BTreeSet<_> = FELHOM_AGENT_PRIVILEGES.iter().collect();
        assert_eq!(FELHOM_AGENT_PRIVILEGES.len(), 16);
        assert_eq!(set.len(), 16);
        assert!(!FELHOM_AGENT_PRIVILEGES.contains(&"Sys.Modify"));
    }

    #[test]
    fn reports_what_is_missing_on_the_path() {
        let full: BTreeMap<String, bool> = FELHOM_AGENT_PRIVILEGES
            .iter()
            .filter(|p| **p != "VM.Backup" && **p != "SDN.Use")
            .map(|p| (p.to_string(), true))
            .collect();
        let mut paths = BTreeMap::new();
        paths.insert("/".to_owned(), full);
        let map = PermissionMap::new(paths);
        assert_eq!(missing_privileges(&map, "/"), vec!["VM.Backup", "SDN.Use"]);
        assert_eq!(missing_privileges(&map, "/vms/101").len(), 16);
    }
}
