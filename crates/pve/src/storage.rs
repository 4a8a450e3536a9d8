//! Storage: node storage status and content, volume delete, cluster storage config CRUD
//! (dir, nfs, cifs, pbs).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{api_path, Client, Params};
use crate::error::{Error, Result};
use crate::lenient;
use crate::secret::Secret;
use crate::task::TaskRef;
use crate::tls::Fingerprint;
use crate::vmid::Vmid;

/// An entry of `GET /nodes/{node}/storage`, also `…/storage/{id}/status`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StorageStatus {
    /// Storage id (absent in the single-storage status answer).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub storage: Option<String>,
    /// Plugin type (`dir`, `nfs`, `pbs`, …).
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    pub storage_type: Option<String>,
    /// Allowed content, comma list.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub content: Option<String>,
    /// Shared between nodes.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub shared: Option<bool>,
    /// Reachable and activated.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub active: Option<bool>,
    /// Enabled in the config.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
    /// Bytes total.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub total: Option<u64>,
    /// Bytes used.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub used: Option<u64>,
    /// Bytes available.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub avail: Option<u64>,
}

/// An entry of `GET …/storage/{id}/content`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StorageContent {
    /// Volume id, `storage:…`.
    #[serde(deserialize_with = "lenient::string")]
    pub volid: String,
    /// Content type (`backup`, `rootdir`, `vztmpl`, …).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub content: Option<String>,
    /// Format (`tar.zst`, `raw`, `pbs-ct`, …).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub format: Option<String>,
    /// Size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub size: Option<u64>,
    /// Creation time, epoch seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub ctime: Option<u64>,
    /// Owning guest.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub vmid: Option<u64>,
    /// `lxc` or `qemu` for backups.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub subtype: Option<String>,
    /// First line of the notes.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub notes: Option<String>,
    /// Protected backup.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub protected: Option<bool>,
    /// Encryption key fingerprint (PBS), or a flag.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub encrypted: Option<String>,
}

/// An entry of `GET /storage` (cluster config, secrets never included by PVE).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StorageConfig {
    /// Storage id.
    #[serde(deserialize_with = "lenient::string")]
    pub storage: String,
    /// Plugin type.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub storage_type: String,
    /// Every other option as PVE returned it.
    #[serde(flatten)]
    pub options: BTreeMap<String, Value>,
}

/// The type-specific part of a new storage.
#[derive(Debug, Clone)]
pub enum StorageKind {
    /// A local directory.
    Dir {
        /// Directory path.
        path: String,
    },
    /// An NFS export (mounted at `path`, default `/mnt/pve/<id>`).
    Nfs {
        /// Server.
        server: String,
        /// Export path.
        export: String,
        /// Mount options.
        options: Option<String>,
    },
    /// A CIFS/SMB share.
    Cifs {
        /// Server.
        server: String,
        /// Share name.
        share: String,
        /// User name.
        username: Option<String>,
        /// Password (stored by PVE outside storage.cfg).
        password: Option<Secret>,
        /// Domain.
        domain: Option<String>,
        /// Subdirectory.
        subdir: Option<String>,
    },
    /// A Proxmox Backup Server datastore.
    Pbs {
        /// Server.
        server: String,
        /// Datastore.
        datastore: String,
        /// `user@realm!token`.
        username: String,
        /// The token secret.
        password: Secret,
        /// PBS certificate fingerprint.
        fingerprint: Option<Fingerprint>,
        /// Namespace.
        namespace: Option<String>,
        /// Port (default 8007).
        port: Option<u16>,
        /// Encryption key JSON, or `autogen` to have PVE generate one (returned once).
        encryption_key: Option<Secret>,
    },
}

/// A new cluster storage definition (`POST /storage`).
#[derive(Debug, Clone)]
pub struct NewStorage {
    /// Storage id.
    pub id: String,
    /// Type and its options.
    pub kind: StorageKind,
    /// Allowed content, comma list (`backup`, `rootdir,images`, …).
    pub content: Option<String>,
    /// Restrict to these nodes (comma list).
    pub nodes: Option<String>,
    /// Retention, `keep-last=3,keep-daily=7`.
    pub prune_backups: Option<String>,
    /// Create disabled.
    pub disable: Option<bool>,
}

impl NewStorage {
    /// A storage with only the type-specific options.
    pub fn new(id: impl Into<String>, kind: StorageKind) -> Self {
        NewStorage {
            id: id.into(),
            kind,
            content: None,
            nodes: None,
            prune_backups: None,
            disable: None,
        }
    }

    pub(crate) fn to_params(&self) -> Params {
        let p = Params::new()
            .str("storage", self.id.clone())
            .opt_str("content", self.content.clone())
            .opt_str("nodes", self.nodes.clone())
            .opt_str("prune-backups", self.prune_backups.clone())
            .opt_bool("disable", self.disable);
        let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
        match &self.kind {
            StorageKind::Dir { path } => p.str("type", "dir").str("path", path.clone()),
            StorageKind::Nfs {
                server,
                export,
                options,
            } => p
                .str("type", "nfs")
                .str("server", server.clone())
                .str("export", export.clone())
                .opt_str("options", options.clone()),
            StorageKind::Cifs {
                server,
                share,
                username,
                password,
                domain,
                subdir,
            } => p
                .str("type", "cifs")
                .str("server", server.clone())
                .str("share", share.clone())
                .opt_str("username", username.clone())
                .opt_str("password", secret(password))
                .opt_str("domain", domain.clone())
                .opt_str("subdir", subdir.clone()),
            StorageKind::Pbs {
                server,
                datastore,
                username,
                password,
                fingerprint,
                namespace,
                port,
                encryption_key,
            } => p
                .str("type", "pbs")
                .str("server", server.clone())
                .str("datastore", datastore.clone())
                .str("username", username.clone())
                .str("password", password.expose())
                .opt_str("fingerprint", fingerprint.map(|f| f.to_string()))
                .opt_str("namespace", namespace.clone())
                .opt_int("port", port.map(i64::from))
                .opt_str("encryption-key", secret(encryption_key)),
        }
    }
}

/// The answer of `POST /storage`.
#[derive(Debug, Clone)]
pub struct CreatedStorage {
    /// Storage id.
    pub storage: String,
    /// Plugin type.
    pub storage_type: String,
    /// With `encryption-key=autogen`: the generated key, returned only this once.
    pub encryption_key: Option<Secret>,
}

#[derive(Deserialize)]
struct CreatedStorageWire {
    #[serde(deserialize_with = "lenient::string")]
    storage: String,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    storage_type: String,
    #[serde(default)]
    config: Option<BTreeMap<String, Value>>,
}

impl Client {
    /// `GET /nodes/{node}/storage`, optionally only storages allowing `content`.
    pub async fn list_node_storage(&self, content: Option<&str>) -> Result<Vec<StorageStatus>> {
        let path = api_path(&["nodes", self.node(), "storage"]);
        self.call(
            Method::GET,
            &path,
            Params::new().opt_str("content", content),
        )
        .await
    }

    /// `GET /nodes/{node}/storage/{storage}/status`.
    pub async fn storage_status(&self, storage: &str) -> Result<StorageStatus> {
        let path = api_path(&["nodes", self.node(), "storage", storage, "status"]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `GET /nodes/{node}/storage/{storage}/content`, filtered by content type and guest.
    pub async fn storage_content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<Vmid>,
    ) -> Result<Vec<StorageContent>> {
        let path = api_path(&["nodes", self.node(), "storage", storage, "content"]);
        let params = Params::new()
            .opt_str("content", content)
            .opt_int("vmid", vmid.map(|v| i64::from(v.get())));
        self.call(Method::GET, &path, params).await
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volid}` (UPID `imgdel`). The volid is
    /// one percent-encoded path component. A protected backup fails inside the task.
    pub async fn delete_volume(&self, storage: &str, volid: &str) -> Result<TaskRef> {
        if !volid.contains(':') {
            return Err(Error::invalid(
                "volume id",
                format!("{volid:?} has no storage prefix"),
            ));
        }
        let path = api_path(&["nodes", self.node(), "storage", storage, "content", volid]);
        self.call_task(Method::DELETE, &path, Params::new()).await
    }

    /// `GET /storage` (cluster-wide config), optionally of one type.
    pub async fn list_storage_config(
        &self,
        storage_type: Option<&str>,
    ) -> Result<Vec<StorageConfig>> {
        self.call(
            Method::GET,
            "/storage",
            Params::new().opt_str("type", storage_type),
        )
        .await
    }

    /// `GET /storage/{storage}`.
    pub async fn storage_config(&self, storage: &str) -> Result<StorageConfig> {
        let path = api_path(&["storage", storage]);
        self.call(Method::GET, &path, Params::new()).await
    }

    /// `POST /storage`. PVE activates the storage while creating it (for PBS it connects and
    /// lists datastores), so a wrong server or credential fails here.
    pub async fn create_storage(&self, storage: &NewStorage) -> Result<CreatedStorage> {
        let wire: CreatedStorageWire = self
            .call(Method::POST, "/storage", storage.to_params())
            .await?;
        let encryption_key = wire
            .config
            .as_ref()
            .and_then(|c| c.get("encryption-key"))
            .map(|v| match v {
                Value::String(s) => Secret::new(s.clone()),
                other => Secret::new(other.to_string()),
            });
        Ok(CreatedStorage {
            storage: wire.storage,
            storage_type: wire.storage_type,
            encryption_key,
        })
    }

    /// `PUT /storage/{storage}`: set options (booleans as 0/1) and delete others.
    pub async fn update_storage(
        &self,
        storage: &str,
        set: &BTreeMap<String, Value>,
        delete: &[&str],
    ) -> Result<()> {
        let mut params = Params::new();
        for (k, v) in set {
            params = params.value(k, v.clone());
        }
        if !delete.is_empty() {
            params = params.str("delete", delete.join(","));
        }
        let path = api_path(&["storage", storage]);
        let _: Value = self.call(Method::PUT, &path, params).await?;
        Ok(())
    }

    /// `DELETE /storage/{storage}`: removes the definition (never the data on it).
    pub async fn delete_storage(&self, storage: &str) -> Result<()> {
        let path = api_path(&["storage", storage]);
        let _: Value = self.call(Method::DELETE, &path, Params::new()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pbs_params_and_secret_redaction() {
        let s = NewStorage::new(
            "pbs1",
            StorageKind::Pbs {
                server: "10.0.0.5".into(),
                datastore: "store".into(),
                username: "backup@pbs!pve".into(),
                password: Secret::new("tok-secret"),
                fingerprint: None,
                namespace: Some("host1".into()),
                port: None,
                encryption_key: Some(Secret::new("autogen")),
            },
        );
        assert!(!format!("{s:?}").contains("tok-secret"));
        let v = Value::Object(s.to_params().0);
        assert_eq!(v["type"], "pbs");
        assert_eq!(v["password"], "tok-secret");
        assert_eq!(v["encryption-key"], "autogen");
        assert_eq!(v["namespace"], "host1");
        assert!(v.get("port").is_none());
    }

    #[test]
    fn dir_nfs_cifs_params() {
        let v = Value::Object(
            NewStorage::new(
                "d1",
                StorageKind::Dir {
                    path: "/mnt/x".into(),
                },
            )
            .to_params()
            .0,
        );
        assert_eq!(v, json!({"storage":"d1","type":"dir","path":"/mnt/x"}));
        let mut n = NewStorage::new(
            "n1",
            StorageKind::Nfs {
                server: "nas".into(),
                export: "/e".into(),
                options: None,
            },
        );
        n.content = Some("backup".into());
        n.disable = Some(false);
        let v = Value::Object(n.to_params().0);
        assert_eq!(
            v,
            json!({"storage":"n1","content":"backup","disable":0,"type":"nfs","server":"nas","export":"/e"})
        );
        let c = NewStorage::new(
            "c1",
            StorageKind::Cifs {
                server: "nas".into(),
                share: "s".into(),
                username: Some("u".into()),
                password: Some(Secret::new("pw")),
                domain: None,
                subdir: None,
            },
        );
        let v = Value::Object(c.to_params().0);
        assert_eq!(v["password"], "pw");
        assert_eq!(v["type"], "cifs");
    }

    #[test]
    fn lenient_status_and_content() {
        let s: StorageStatus = serde_json::from_value(json!({
            "storage":"local","type":"dir","content":"backup,iso","shared":0,"active":1,
            "enabled":1,"total":"100","used":40,"avail":60,"used_fraction":0.4
        }))
        .unwrap();
        assert_eq!(
            (s.total, s.active, s.shared),
            (Some(100), Some(true), Some(false))
        );
        let c: StorageContent = serde_json::from_value(json!({
            "volid":"pbs1:backup/ct/101/2026-05-01T10:00:00Z","content":"backup","format":"pbs-ct",
            "size":123,"ctime":1714557600,"vmid":101,"protected":1,"encrypted":"AA:BB"
        }))
        .unwrap();
        assert_eq!(c.vmid, Some(101));
        assert_eq!(c.protected, Some(true));
    }
}
