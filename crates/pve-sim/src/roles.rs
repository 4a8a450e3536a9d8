//! Built-in roles and the privilege list of Proxmox VE 9.1.

/// Privileges of the `FelhomAgent` role: exactly what the host agent needs to manage containers,
/// snapshots, backups and storages of one node. It deliberately lacks `Sys.Modify` (so
/// `GET /nodes/{node}/hardware/usb` answers 403) and anything under `Permissions.*`/`User.*`.
pub const FELHOM_AGENT_PRIVS: [&str; 16] = [
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

/// Every privilege PVE 9.1 knows (pve-access-control `src/PVE/AccessControl.pm`, `$privgroups`):
/// the `Administrator` role holds all of them.
pub const ALL_PRIVS: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// Name of the role granted to the agent's user and token by default.
pub const FELHOM_AGENT_ROLE: &str = "FelhomAgent";

/// Privileges of a built-in role, `None` for names that are not built in.
/// `NoAccess` exists and is empty: an ACL with it hides everything below (see `acl.rs`).
pub fn builtin(name: &str) -> Option<Vec<String>> {
    let privs: &[&str] = match name {
        "Administrator" => ALL_PRIVS,
        FELHOM_AGENT_ROLE => &FELHOM_AGENT_PRIVS,
        "NoAccess" => &[],
        "PVEAuditor" => &[
            "Datastore.Audit",
            "Mapping.Audit",
            "Pool.Audit",
            "SDN.Audit",
            "Sys.Audit",
            "VM.Audit",
        ],
        _ => return None,
    };
    Some(privs.iter().map(|p| p.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felhom_agent_privileges_are_known_and_lack_sys_modify() {
        for p in FELHOM_AGENT_PRIVS {
            assert!(ALL_PRIVS.contains(&p), "{p} is not a PVE privilege");
        }
        assert!(!FELHOM_AGENT_PRIVS.contains(&"Sys.Modify"));
        assert_eq!(builtin("FelhomAgent").map(|v| v.len()), Some(16));
    }
}
