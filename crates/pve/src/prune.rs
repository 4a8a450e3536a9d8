//! Pruning backups by retention: `GET` (a dry run) and `DELETE` (a `prunebackups` task) of
//! `/nodes/{node}/storage/{storage}/prunebackups` (pve-storage `API2/Storage/PruneBackups.pm`;
//! there is no POST).
//!
//! [`Retention`] is PVE's `prune-backups` property string (pve-storage `Plugin.pm`, the
//! `prune-backups` format): `keep-last`, `keep-hourly`, `keep-daily`, `keep-weekly`,
//! `keep-monthly`, `keep-yearly`, each a count of periods. A backup kept by any option is kept.
//! All zero means keep everything, which PVE spells `keep-all=1`; [`Retention::to_property`]
//! never writes that, and [`Client::prune_backups`] refuses an empty retention rather than
//! send a request whose meaning depends on the storage's own option.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::task::TaskRef;
use crate::vmid::Vmid;

/// How many periods of each kind to keep. Serializes as its field names (the desired state's
/// canonical form of a storage policy's `keep`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// The newest N backups.
    pub last: u32,
    /// The newest backup of each of the last N hours that have one.
    pub hourly: u32,
    /// … days.
    pub daily: u32,
    /// … ISO weeks.
    pub weekly: u32,
    /// … months.
    pub monthly: u32,
    /// … years.
    pub yearly: u32,
}

impl Retention {
    /// Whether nothing is kept by count (PVE reads that as keep-all).
    pub fn is_empty(&self) -> bool {
        self.pairs().iter().all(|(_, n)| *n == 0)
    }

    fn pairs(&self) -> [(&'static str, u32); 6] {
        [
            ("keep-last", self.last),
            ("keep-hourly", self.hourly),
            ("keep-daily", self.daily),
            ("keep-weekly", self.weekly),
            ("keep-monthly", self.monthly),
            ("keep-yearly", self.yearly),
        ]
    }

    /// `keep-last=3,keep-daily=7`: the non-zero options in PVE's order.
    pub fn to_property(&self) -> String {
        self.pairs()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One backup in a dry run, with what pruning would do to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PruneMark {
    /// The backup's volume id.
    pub volid: String,
    /// Its creation time (epoch seconds).
    pub ctime: i64,
    /// `keep`, `remove`, `protected` or `renamed` (the last two are never removed).
    pub mark: String,
    /// Its guest.
    #[serde(default)]
    pub vmid: Option<u32>,
}

impl Client {
    /// `GET …/prunebackups`: what [`Client::prune_backups`] would keep and remove for `vmid`'s
    /// container backups on `storage` (changes nothing).
    pub async fn prune_dry_run(
        &self,
        storage: &str,
        vmid: Vmid,
        keep: &Retention,
    ) -> Result<Vec<PruneMark>> {
        let path = api_path(&["nodes", self.node(), "storage", storage, "prunebackups"]);
        self.call(Method::GET, &path, params(vmid, keep)?).await
    }

    /// `DELETE …/prunebackups`: removes `vmid`'s container backups on `storage` that `keep`
    /// does not cover. A `prunebackups` task whose UPID id is `<vmid>@<storage>`. Needs
    /// `Datastore.AllocateSpace` on the storage and `VM.Backup` on the guest.
    pub async fn prune_backups(
        &self,
        storage: &str,
        vmid: Vmid,
        keep: &Retention,
    ) -> Result<TaskRef> {
        let path = api_path(&["nodes", self.node(), "storage", storage, "prunebackups"]);
        self.call_task(Method::DELETE, &path, params(vmid, keep)?)
            .await
    }
}

fn params(vmid: Vmid, keep: &Retention) -> Result<Params> {
    if keep.is_empty() {
        return Err(Error::invalid(
            "prune-backups",
            "an empty retention would keep everything or defer to the storage's option",
        ));
    }
    Ok(Params::new()
        .str("prune-backups", keep.to_property())
        .str("type", "lxc")
        .int("vmid", i64::from(vmid.get())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_in_pves_order() {
        let r = Retention {
            last: 3,
            daily: 7,
            weekly: 4,
            ..Retention::default()
        };
        assert_eq!(r.to_property(), "keep-last=3,keep-daily=7,keep-weekly=4");
        assert!(Retention::default().is_empty());
        assert_eq!(Retention::default().to_property(), "");
    }

    #[test]
    fn an_empty_retention_is_never_sent() {
        let vmid = Vmid::new(101).unwrap();
        assert!(params(vmid, &Retention::default()).is_err());
    }
}
