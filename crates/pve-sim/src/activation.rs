//! Storage activation: whether PVE could activate a storage on this node right now, and the
//! text `activate_storage` dies with when it could not. One function decides it for every
//! caller (status, content, vzdump, restore, volume allocation, resize, storage create), as
//! PVE's `PVE::Storage::activate_storage` does (pve-storage `Storage.pm:1334-1368`).
//!
//! What makes a storage inactive in the simulator:
//! - `disable 1` or a `nodes` list without this node (`Storage.pm:264-290`);
//! - the `/_sim/storage/{id}` knob `{"reachable": false}`: the backend does not answer;
//! - a `dir` storage with `is_mountpoint` whose mount path is not mounted, i.e. no
//!   present and mounted `/_sim/usb` filesystem has that mount path (`DirPlugin.pm:104-124,
//!   227-253`).

use crate::state::{State, Storage};

/// The path that must be a mount point for a `dir` storage, from `is_mountpoint`: a boolean
/// (`yes`/`1`/`on`/`true`) means the storage `path` itself, any other non-boolean value is
/// the path (`parse_is_mountpoint`, pve-storage `DirPlugin.pm:114-122`).
pub fn required_mount(s: &Storage) -> Option<String> {
    if s.kind != "dir" {
        return None;
    }
    let value = s.props.get("is_mountpoint")?;
    match pve_schema::parse_boolean_text(value) {
        Some(true) => s.props.get("path").map(|p| normalize(p)),
        Some(false) => None,
        None => Some(normalize(value)),
    }
}

/// Trailing slashes do not change a path (PVE compares `Cwd::realpath` results).
fn normalize(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Whether `path` is a mount point: `/`, or the mount path of a plugged-in, mounted
/// `/_sim/usb` filesystem (`path_is_mounted` checks `/proc/mounts`, `DirPlugin.pm:104-112`).
pub fn is_mounted(st: &State, path: &str) -> bool {
    let path = normalize(path);
    path == "/"
        || st
            .filesystems
            .values()
            .any(|fs| fs.present && fs.mounted && normalize(&fs.mount) == path)
}

/// `storage_check_enabled`: the texts for a disabled storage or one not on this node.
pub fn check_enabled(st: &State, id: &str, s: &Storage) -> Result<(), String> {
    if !s.enabled() {
        return Err(format!("storage '{id}' is disabled"));
    }
    if let Some(nodes) = s.props.get("nodes") {
        if !nodes.split(',').any(|n| n.trim() == st.node) {
            return Err(format!(
                "storage '{id}' is not available on node '{}'",
                st.node
            ));
        }
    }
    Ok(())
}

/// Whether the storage is enabled on this node (`enabled` in status answers).
pub fn enabled_here(st: &State, id: &str, s: &Storage) -> bool {
    check_enabled(st, id, s).is_ok()
}

/// The error `activate_storage` dies with (without the trailing newline), `None` when the
/// storage activates. Does not check `disable` (see [`check_enabled`]).
pub fn error(st: &State, id: &str, s: &Storage) -> Option<String> {
    let knob = st.storage_knobs.get(id);
    if knob.is_some_and(|k| k.unreachable) {
        return Some(unreachable_text(id, s));
    }
    if s.kind == "pbs" {
        if let Some(e) = knob.and_then(|k| pbs_error(id, s, k)) {
            return Some(e);
        }
    }
    let mp = required_mount(s)?;
    if is_mounted(st, &mp) {
        return None;
    }
    Some(format!(
        "unable to activate storage '{id}' - directory is expected to be a mount point but is not mounted: '{mp}'"
    ))
}

/// PBS `activate_storage` against a reachable server: the certificate pin (PVE's API client
/// accepts a self-signed certificate only through the configured `fingerprint`:
/// pve-apiclient `LWP.pm` `manual_verify_fingerprint`), then the datastore list
/// (`PBSPlugin.pm:844-861`).
fn pbs_error(id: &str, s: &Storage, knob: &crate::state::StorageKnob) -> Option<String> {
    if let Some(server) = &knob.server_fingerprint {
        let pinned = s.props.get("fingerprint");
        if !pinned.is_some_and(|p| p.eq_ignore_ascii_case(server)) {
            return Some(format!(
                "{id}: error fetching datastores - fingerprint '{}' not verified, abort!",
                server.to_ascii_uppercase()
            ));
        }
    }
    let datastore = s.props.get("datastore").map(String::as_str).unwrap_or("");
    match &knob.datastores {
        Some(list) if !list.iter().any(|d| d == datastore) => Some(format!(
            "{id}: Cannot find datastore '{datastore}', check permissions and existence!"
        )),
        _ => None,
    }
}

/// What an unreachable backend looks like per plugin.
fn unreachable_text(id: &str, s: &Storage) -> String {
    match s.kind.as_str() {
        // `check_connection` fails (showmount / smbclient): Storage.pm:1352-1355.
        "nfs" | "cifs" => format!("storage '{id}' is not online"),
        // `scan_datastores` fails inside `activate_storage` (PBSPlugin.pm:833-861); the LWP
        // part of the text is the simulator's rendering of a connect timeout.
        "pbs" => {
            let server = s.props.get("server").map(String::as_str).unwrap_or("");
            let port = s.props.get("port").map(String::as_str).unwrap_or("8007");
            format!(
                "{id}: error fetching datastores - 500 Can't connect to {server}:{port} (Connection timed out)"
            )
        }
        // The base plugin's 2 s `-d $path` test on a hung mount (Plugin.pm:1958-1963).
        "dir" | "btrfs" => {
            let path = s.props.get("path").map(String::as_str).unwrap_or("");
            format!(
                "unable to activate storage '{id}' - directory '{path}' does not exist or is unreachable"
            )
        }
        _ => format!("storage '{id}' is not online"),
    }
}

/// `check_enabled` then `error`, as `PVE::Storage::activate_storage` runs them; the storage
/// must exist (`storage '{id}' does not exist` otherwise).
pub fn activate(st: &State, id: &str) -> Result<(), String> {
    let s = st
        .storages
        .get(id)
        .ok_or_else(|| format!("storage '{id}' does not exist"))?;
    check_enabled(st, id, s)?;
    match error(st, id, s) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `activate_volumes`: activate the storage of every volume (sorted by storage id, where PVE
/// walks a hash); paths (bind/device mount points) have no storage (pve-storage
/// `Storage.pm:1390-1413`).
pub fn activate_volumes<'a>(
    st: &State,
    volids: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let mut sids: Vec<&str> = volids
        .into_iter()
        .filter(|v| !v.starts_with('/'))
        .filter_map(|v| v.split_once(':').map(|(sid, _)| sid))
        .collect();
    sids.sort_unstable();
    sids.dedup();
    sids.into_iter().try_for_each(|sid| activate(st, sid))
}

/// Whether the storage is active: enabled here and activatable.
pub fn active(st: &State, id: &str, s: &Storage) -> bool {
    enabled_here(st, id, s) && error(st, id, s).is_none()
}

/// The latency knob of a storage id (`/_sim/storage/{id}` `latency_ms`).
pub fn latency_ms(st: &State, id: &str) -> u64 {
    st.storage_knobs.get(id).map_or(0, |k| k.latency_ms)
}

/// Whether container volumes on this storage type support snapshots: lvmthin, zfspool,
/// btrfs and rbd do; dir/NFS/CIFS only for qcow2 images, never for CT raw or subvol volumes
/// (pve-storage `Plugin.pm:1575-1624` `volume_has_feature`, `LvmThinPlugin.pm:408-431`).
pub fn can_snapshot(kind: &str) -> bool {
    matches!(kind, "lvmthin" | "zfspool" | "btrfs" | "rbd" | "zfs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Filesystem;
    use std::collections::BTreeMap;

    fn dir(props: &[(&str, &str)]) -> Storage {
        Storage {
            kind: "dir".into(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: BTreeMap::new(),
            total: 1 << 30,
        }
    }

    #[test]
    fn is_mountpoint_is_a_boolean_or_a_path() {
        let s = dir(&[("path", "/mnt/usb1/pve/"), ("is_mountpoint", "yes")]);
        assert_eq!(required_mount(&s).as_deref(), Some("/mnt/usb1/pve"));
        let s = dir(&[("path", "/mnt/usb1/pve"), ("is_mountpoint", "/mnt/usb1")]);
        assert_eq!(required_mount(&s).as_deref(), Some("/mnt/usb1"));
        let s = dir(&[("path", "/mnt/usb1"), ("is_mountpoint", "0")]);
        assert_eq!(required_mount(&s), None);
        assert_eq!(required_mount(&dir(&[("path", "/x")])), None);
    }

    #[test]
    fn unmounted_dir_storage_fails_with_pves_text() {
        let mut st = State::seed("pve", 0, 1_700_000_000).expect("seed");
        st.storages.insert(
            "usb1".into(),
            dir(&[("path", "/mnt/usb1"), ("is_mountpoint", "1")]),
        );
        assert_eq!(
            activate(&st, "usb1"),
            Err("unable to activate storage 'usb1' - directory is expected to be a mount point but is not mounted: '/mnt/usb1'".into())
        );
        st.filesystems.insert(
            "u-1".into(),
            Filesystem {
                mount: "/mnt/usb1/".into(),
                device: "/dev/sdb1".into(),
                present: true,
                mounted: true,
                by_uuid_dir: None,
            },
        );
        assert_eq!(activate(&st, "usb1"), Ok(()));
    }
}
