//! Backups: `POST /nodes/{node}/vzdump`.
//!
//! The call does not always return a UPID: when none of the given guests lives on this node it
//! returns the plain string `"OK"` (pve-manager `PVE/API2/VZDump.pm:97,114,118`). That is
//! surfaced as [`VzdumpOutcome::NotOnThisNode`], never as success of a backup.

use reqwest::Method;
use serde_json::Value;

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::upid::Upid;
use crate::vmid::Vmid;

/// Backup mode. PVE's default is `snapshot` (with a silent fallback to `suspend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VzdumpMode {
    /// Snapshot the volumes.
    Snapshot,
    /// Suspend the guest.
    Suspend,
    /// Stop the guest.
    Stop,
}

impl VzdumpMode {
    fn as_str(self) -> &'static str {
        match self {
            VzdumpMode::Snapshot => "snapshot",
            VzdumpMode::Suspend => "suspend",
            VzdumpMode::Stop => "stop",
        }
    }
}

/// Parameters of one vzdump run.
#[derive(Debug, Clone)]
pub struct VzdumpRequest {
    /// Guests to back up (usually one; the UPID `id` is the vmid only for a single guest).
    pub vmids: Vec<Vmid>,
    /// Target storage.
    pub storage: String,
    /// Mode (PVE default snapshot).
    pub mode: Option<VzdumpMode>,
    /// `0`, `gzip`, `lzo` or `zstd` (PVE default `0`: none). Ignored by PBS.
    pub compress: Option<String>,
    /// Notes template (`{{guestname}}` etc.).
    pub notes_template: Option<String>,
    /// Mark the backup protected.
    pub protected: Option<bool>,
    /// Prune afterwards (PVE default 1).
    pub remove: Option<bool>,
}

impl VzdumpRequest {
    /// Back up one guest to `storage` with PVE's defaults.
    pub fn new(vmid: Vmid, storage: impl Into<String>) -> Self {
        VzdumpRequest {
            vmids: vec![vmid],
            storage: storage.into(),
            mode: None,
            compress: None,
            notes_template: None,
            protected: None,
            remove: None,
        }
    }

    pub(crate) fn to_params(&self) -> Params {
        let ids: Vec<String> = self.vmids.iter().map(ToString::to_string).collect();
        Params::new()
            .str("vmid", ids.join(","))
            .str("storage", self.storage.clone())
            .opt_str("mode", self.mode.map(VzdumpMode::as_str))
            .opt_str("compress", self.compress.clone())
            .opt_str("notes-template", self.notes_template.clone())
            .opt_bool("protected", self.protected)
            .opt_bool("remove", self.remove)
    }
}

/// What vzdump answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VzdumpOutcome {
    /// A backup task was started.
    Task(Upid),
    /// None of the guests is on this node: nothing was backed up.
    NotOnThisNode,
}

impl VzdumpOutcome {
    pub(crate) fn from_data(data: &Value) -> Option<Self> {
        match data {
            Value::String(s) if s == "OK" => Some(VzdumpOutcome::NotOnThisNode),
            Value::String(s) => s.parse().ok().map(VzdumpOutcome::Task),
            _ => None,
        }
    }
}

impl Client {
    /// `POST /nodes/{node}/vzdump`. Missing `VM.Backup` fails inside the task, not here.
    pub async fn vzdump(&self, request: &VzdumpRequest) -> Result<VzdumpOutcome> {
        if request.vmids.is_empty() {
            return Err(Error::invalid("vzdump request", "no guest given"));
        }
        let path = api_path(&["nodes", self.node(), "vzdump"]);
        let data = self
            .call_value(Method::POST, &path, request.to_params())
            .await?;
        VzdumpOutcome::from_data(&data).ok_or_else(|| Error::Decode {
            method: "POST",
            path,
            detail: format!("expected a UPID or \"OK\", got {data}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ok_means_not_on_this_node() {
        assert_eq!(
            VzdumpOutcome::from_data(&json!("OK")),
            Some(VzdumpOutcome::NotOnThisNode)
        );
        let upid = "UPID:pve1:00001234:00ABCDEF:66F0A1B2:vzdump:101:a@pve!t:";
        assert_eq!(
            VzdumpOutcome::from_data(&json!(upid)),
            Some(VzdumpOutcome::Task(upid.parse().unwrap()))
        );
        assert_eq!(VzdumpOutcome::from_data(&json!(null)), None);
        assert_eq!(VzdumpOutcome::from_data(&json!("ok")), None);
    }

    #[test]
    fn params() {
        let mut r = VzdumpRequest::new(Vmid::new(101).unwrap(), "pbs1");
        r.vmids.push(Vmid::new(102).unwrap());
        r.mode = Some(VzdumpMode::Snapshot);
        r.protected = Some(true);
        let v = Value::Object(r.to_params().0);
        assert_eq!(
            v,
            json!({"vmid":"101,102","storage":"pbs1","mode":"snapshot","protected":1})
        );
    }
}
