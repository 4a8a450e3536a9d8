//! A guest entry's `volumes` list: each volume's own rules, then the rules between volumes
//! and the storage targets once the whole document is read.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::{
    object, only_keys, opt_count, opt_str, req_str, storage_id, BulkBackup, StorageClass,
    StorageSection, TargetType, VolumeKind,
};
use crate::desired::{field, DesiredError};

/// The largest volume (GiB): 1 PiB; bigger is a typo, and it keeps KiB arithmetic in u64.
pub const MAX_VOLUME_GB: u64 = 1 << 20;

const VOLUME_KEYS: &[&str] = &["name", "mp", "kind", "size_gb", "target", "backup"];

/// One volume of a guest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Unique within the guest.
    pub name: String,
    /// Mount path inside the guest.
    pub mp: String,
    /// Hot or bulk.
    pub kind: VolumeKind,
    /// Size in GiB (at least 1).
    pub size_gb: u64,
    /// The target id; required for bulk, optional for hot (then the guest's primary storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The backup decision of a bulk volume (hot volumes are always in the guest's backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BulkBackup>,
}

/// Parses a guest entry's `volumes` list (without the cross-check against the targets, which
/// [`check_volumes`] does once the whole document is read). Sorted by name.
pub(crate) fn parse_volumes(path: &str, v: &Value) -> Result<Vec<Volume>, DesiredError> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => return Err(field(path, "must be a list")),
    };
    let mut names = BTreeSet::new();
    let mut mps = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (j, entry) in list.iter().enumerate() {
        let vpath = format!("{path}[{j}]");
        let vol = parse_volume(&vpath, entry)?;
        if !names.insert(vol.name.clone()) {
            return Err(field(
                format!("{vpath}.name"),
                format!("duplicate volume name {:?}", vol.name),
            ));
        }
        if !mps.insert(vol.mp.clone()) {
            return Err(field(
                format!("{vpath}.mp"),
                format!("duplicate mount path {:?}", vol.mp),
            ));
        }
        out.push(vol);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn parse_volume(path: &str, v: &Value) -> Result<Volume, DesiredError> {
    let obj = object(path, v)?;
    only_keys(path, obj, VOLUME_KEYS)?;
    let name = req_str(path, obj, "name")?;
    let name_ok = (1..=32).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(field(
            format!("{path}.name"),
            format!("{name:?} is not a volume name ([a-z][a-z0-9_-]*, at most 32)"),
        ));
    }
    let mp = req_str(path, obj, "mp")?;
    // PVE refuses `.`/`..` components in `mp` (LXC Config.pm); the agent also keeps the path
    // plain (no empty components, no trailing slash, a conservative character set) so it
    // compares as written, and never mounts over the guest's root.
    let mp_ok = mp.len() > 1
        && mp.len() <= 255
        && mp.starts_with('/')
        && mp[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && mp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_.@".contains(&b));
    if !mp_ok {
        return Err(field(
            format!("{path}.mp"),
            format!("{mp:?} is not an absolute mount path (no ., .., // or trailing /)"),
        ));
    }
    let kind = VolumeKind::parse(path, obj, "kind")?;
    let size_gb = opt_count(path, obj, "size_gb", 1, MAX_VOLUME_GB)?
        .ok_or_else(|| field(format!("{path}.size_gb"), "missing"))?;
    let target = match opt_str(path, obj, "target")? {
        Some(s) => Some(storage_id(&format!("{path}.target"), s)?),
        None => None,
    };
    let backup = match obj.get("backup") {
        None | Some(Value::Null) => None,
        Some(_) => Some(BulkBackup::parse(path, obj, "backup")?),
    };
    match kind {
        VolumeKind::Bulk if target.is_none() => {
            return Err(field(
                format!("{path}.target"),
                "missing: a bulk volume names its target",
            ))
        }
        // Seed §8: each bulk volume carries an explicit own-backup decision, never a default.
        VolumeKind::Bulk if backup.is_none() => {
            return Err(field(
                format!("{path}.backup"),
                "missing: a bulk volume says \"own\" or \"none\"",
            ))
        }
        VolumeKind::Hot if backup.is_some() => {
            return Err(field(
                format!("{path}.backup"),
                "a hot volume is always in the guest's backup",
            ))
        }
        _ => {}
    }
    Ok(Volume {
        name: name.to_owned(),
        mp: mp.to_owned(),
        kind,
        size_gb,
        target,
        backup,
    })
}

/// The rules between volumes and targets: the target exists, can hold volumes, a hot volume's
/// is fast, and an `own` backup has a policy on its target. `path` is the guest's
/// `guests[i].volumes`; `raw` is that list as sent, for the index in the error path.
pub(crate) fn check_volumes(
    path: &str,
    raw: &Value,
    volumes: &[Volume],
    storage: Option<&StorageSection>,
) -> Result<(), DesiredError> {
    // In the order sent, so the first bad entry is the one named.
    let in_order = raw
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, v)| {
            let name = v.get("name").and_then(Value::as_str)?;
            volumes
                .iter()
                .find(|vol| vol.name == name)
                .map(|vol| (j, vol))
        });
    for (j, vol) in in_order {
        let Some(id) = &vol.target else { continue };
        let vpath = format!("{path}[{j}]");
        let Some(target) = storage.and_then(|s| s.target(id)) else {
            return Err(field(
                format!("{vpath}.target"),
                format!("no storage target {id:?}"),
            ));
        };
        // PBS stores backups only; it cannot hold a container volume (content `backup`).
        if target.kind == TargetType::Pbs {
            return Err(field(
                format!("{vpath}.target"),
                format!("{id:?} is a pbs target, which cannot hold volumes"),
            ));
        }
        if vol.kind == VolumeKind::Hot && target.class != StorageClass::Fast {
            return Err(field(
                format!("{vpath}.target"),
                format!("a hot volume needs a fast target; {id:?} is slow"),
            ));
        }
        if vol.backup == Some(BulkBackup::Own) && target.policy.backup_to.is_none() {
            return Err(field(
                format!("{vpath}.backup"),
                format!("\"own\" needs a backup policy (policy.backup_to) on target {id:?}"),
            ));
        }
    }
    Ok(())
}
