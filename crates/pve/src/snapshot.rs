//! Snapshots: the validated [`SnapshotName`] and list/create/rollback/delete.

use std::fmt;
use std::str::FromStr;

use reqwest::Method;
use serde::Deserialize;

use crate::client::Params;
use crate::error::{Error, Result};
use crate::lenient;
use crate::task::TaskRef;
use crate::vmid::Vmid;
use crate::Client;

/// A snapshot name PVE will accept: pve-configid `^[a-z][a-z0-9_-]+$` (case-insensitive,
/// pve-common `JSONSchema.pm` `pve_verify_configid`), at most 40 characters (schema
/// `maxLength=40`), and not the reserved `current` or `vzdump` (pve-container `Snapshot.pm`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotName(String);

impl SnapshotName {
    /// Longest name PVE accepts.
    pub const MAX_LEN: usize = 40;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SnapshotName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let reject = |why: &str| Err(Error::invalid("snapshot name", format!("{s:?} {why}")));
        if s.len() < 2 || s.len() > Self::MAX_LEN {
            return reject("must be 2 to 40 characters long");
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return reject("must start with a letter");
        }
        if !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return reject("may contain only letters, digits, '_' and '-'");
        }
        if s == "current" || s == "vzdump" {
            return reject("is reserved by proxmox");
        }
        Ok(SnapshotName(s.to_owned()))
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotName({})", self.0)
    }
}

/// An entry of `GET …/snapshot`. The list is unordered and ends with a `current` pseudo-entry
/// ("You are here!"); [`Client::list_snapshots`] drops that entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SnapshotInfo {
    /// Snapshot name.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Description, trailing newline stripped (it reads back like the config description).
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    /// Creation time, epoch seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub snaptime: Option<u64>,
    /// Parent snapshot.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub parent: Option<String>,
    /// Set while a snapshot operation is incomplete (`prepare`, `delete`).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub snapstate: Option<String>,
}

fn description<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(lenient::opt_string(d)?.map(|s| s.strip_suffix('\n').map(str::to_owned).unwrap_or(s)))
}

impl Client {
    /// `GET …/snapshot`, without the `current` pseudo-entry.
    pub async fn list_snapshots(&self, vmid: Vmid) -> Result<Vec<SnapshotInfo>> {
        let path = self.lxc_snapshot_path(vmid, &[]);
        let all: Vec<SnapshotInfo> = self.call(Method::GET, &path, Params::new()).await?;
        Ok(all.into_iter().filter(|s| s.name != "current").collect())
    }

    /// `POST …/snapshot` (UPID `vzsnapshot`). Includes every volume mount point, `backup=0`
    /// ones too.
    pub async fn create_snapshot(
        &self,
        vmid: Vmid,
        name: &SnapshotName,
        description: Option<&str>,
    ) -> Result<TaskRef> {
        let path = self.lxc_snapshot_path(vmid, &[]);
        let params = Params::new()
            .str("snapname", name.as_str())
            .opt_str("description", description);
        self.call_task(Method::POST, &path, params).await
    }

    /// `POST …/snapshot/{name}/rollback` (UPID `vzrollback`). A running guest is killed first
    /// and restarted only with `start`.
    pub async fn rollback_snapshot(
        &self,
        vmid: Vmid,
        name: &SnapshotName,
        start: bool,
    ) -> Result<TaskRef> {
        let path = self.lxc_snapshot_path(vmid, &[name.as_str(), "rollback"]);
        let params = Params::new().opt_bool("start", start.then_some(true));
        self.call_task(Method::POST, &path, params).await
    }

    /// `DELETE …/snapshot/{name}` (UPID `vzdelsnapshot`); `force` drops the config entry even
    /// if removing the disk snapshot fails.
    pub async fn delete_snapshot(
        &self,
        vmid: Vmid,
        name: &SnapshotName,
        force: bool,
    ) -> Result<TaskRef> {
        let path = self.lxc_snapshot_path(vmid, &[name.as_str()]);
        let params = Params::new().opt_bool("force", force.then_some(true));
        self.call_task(Method::DELETE, &path, params).await
    }

    fn lxc_snapshot_path(&self, vmid: Vmid, rest: &[&str]) -> String {
        let id = vmid.to_string();
        let mut parts = vec!["nodes", self.node(), "lxc", id.as_str(), "snapshot"];
        parts.extend_from_slice(rest);
        crate::client::api_path(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        for ok in ["ab", "pre-upgrade", "Daily_2026", "a1", &"x".repeat(40)] {
            assert!(ok.parse::<SnapshotName>().is_ok(), "{ok}");
        }
        for bad in [
            "x",
            "1abc",
            "_a",
            "-a",
            "a.b",
            "a b",
            "ä1",
            "current",
            "vzdump",
            &"x".repeat(41),
        ] {
            let e = bad.parse::<SnapshotName>().unwrap_err();
            assert!(e.to_string().starts_with("invalid snapshot name"), "{e}");
        }
    }

    #[test]
    fn list_entry_decodes() {
        let s: SnapshotInfo = serde_json::from_value(serde_json::json!({
            "name": "pre", "description": "before upgrade\n", "snaptime": "1714557600", "parent": "older"
        }))
        .unwrap();
        assert_eq!(s.description.as_deref(), Some("before upgrade"));
        assert_eq!(s.snaptime, Some(1_714_557_600));
    }

    /// The same rule as PVE, written independently as a regex.
    fn pve_accepts(s: &str) -> bool {
        let re = regex::Regex::new(r"(?i)^[a-z][a-z0-9_-]+$").unwrap();
        re.is_match(s) && s.len() <= 40 && s != "current" && s != "vzdump"
    }

    proptest! {
        #[test]
        fn matches_pve_rule(s in "[a-zA-Z0-9_.\\- ]{0,45}") {
            prop_assert_eq!(s.parse::<SnapshotName>().is_ok(), pve_accepts(&s));
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z][a-z0-9_-]{1,39}") {
            prop_assume!(s != "current" && s != "vzdump");
            let n: SnapshotName = s.parse().unwrap();
            prop_assert_eq!(n.to_string(), s);
        }
    }
}
