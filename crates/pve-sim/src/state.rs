//! The simulated cluster's model (guests, storages, volumes, tasks, access control) and its
//! persistence: one JSON file written atomically (temp file + rename) after every mutation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::acl::{Access, AclEntry, Token, User};
use crate::conf::{self, CtConf, Section};
use crate::roles::FELHOM_AGENT_ROLE;
use crate::tasks::Task;

/// The agent's user, its token name and the root token name (fixed by DESIGN.md §4.3).
pub const AGENT_USER: &str = "felhom-agent@pve";
/// Token name of the agent's privilege-separated token.
pub const AGENT_TOKEN: &str = "agent";
/// Token name of root's non-separated token.
pub const ROOT_TOKEN: &str = "sim";

/// The seeded container template.
pub const TEMPLATE_VOLID: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";

/// A container on this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Guest {
    /// Its config file.
    pub conf: CtConf,
    /// Whether it runs.
    pub running: bool,
    /// Epoch seconds of the last start (for `uptime`).
    pub started: i64,
}

/// A storage of the cluster config (`/etc/pve/storage.cfg`), plus simulated runtime state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Storage {
    /// Plugin type (`dir`, `lvmthin`, `nfs`, `cifs`, `pbs`, ...).
    pub kind: String,
    /// Options as written to storage.cfg (`content`, `path`, `server`, ...), without secrets.
    pub props: BTreeMap<String, String>,
    /// Options stored outside storage.cfg (`password`, `encryption-key`): never echoed.
    pub secrets: BTreeMap<String, String>,
    /// Simulated capacity in bytes.
    pub total: u64,
}

impl Storage {
    /// The content types (`content` option) as a list.
    pub fn content(&self) -> Vec<String> {
        self.props
            .get("content")
            .map(|c| c.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether the storage is enabled (no `disable=1`).
    pub fn enabled(&self) -> bool {
        self.props.get("disable").map(String::as_str) != Some("1")
    }
}

/// A volume on a storage (disk image, template or backup archive).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    /// Content type (`rootdir`, `images`, `vztmpl`, `backup`, `iso`).
    pub content: String,
    /// Format (`raw`, `tzst`, `tar`, `subvol`).
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time (epoch seconds).
    pub ctime: i64,
    /// Owning guest.
    pub vmid: Option<u32>,
    /// Backup notes (full text; listings show the first line).
    pub notes: Option<String>,
    /// Backup protection flag.
    pub protected: bool,
    /// `lxc` for container backups.
    pub subtype: Option<String>,
    /// For backups: the guest config inside the archive (`./etc/vzdump/pct.conf`).
    pub archive: Option<CtConf>,
    /// Simulated file content (a tag set with `/_sim/volume`): vzdump copies it into the
    /// archive for mount points it includes, restore writes it back.
    #[serde(default)]
    pub data: Option<String>,
    /// For backups: the mount points whose files the archive holds, with their data tags.
    #[serde(default)]
    pub archived_mounts: Vec<ArchivedMount>,
    /// For PBS backups made with an encryption key: the key's fingerprint (`encrypted`).
    #[serde(default)]
    pub encrypted: Option<String>,
}

/// One mount point whose files a backup archive holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchivedMount {
    /// `rootfs` or `mpN`.
    pub key: String,
    /// Path inside the CT (`/` for rootfs).
    pub mp: String,
    /// The data tag of the volume at backup time.
    pub data: Option<String>,
}

/// Test knobs of a storage id (`/_sim/storage/{id}`), kept apart from the storage definition
/// so a knob can be set before the storage is created (`POST /storage` activates it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StorageKnob {
    /// The backend does not answer (NFS/CIFS server down, PBS unreachable).
    pub unreachable: bool,
    /// Added to every storage status read that visits this storage.
    pub latency_ms: u64,
    /// PBS only: the server certificate's SHA-256 fingerprint; when set, the storage's
    /// `fingerprint` must match it (a self-signed certificate).
    #[serde(default)]
    pub server_fingerprint: Option<String>,
    /// PBS only: the datastores the server has; when set, `datastore` must be one of them.
    #[serde(default)]
    pub datastores: Option<Vec<String>>,
}

/// A simulated removable filesystem (`/_sim/usb`), identified by its filesystem UUID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filesystem {
    /// Where it is mounted when mounted (`/mnt/usb1`).
    pub mount: String,
    /// Block device (`/dev/sdb1`); the by-uuid symlink points at `../../<basename>`.
    pub device: String,
    /// The disk is plugged in.
    pub present: bool,
    /// The filesystem is mounted at `mount` (only while present).
    pub mounted: bool,
    /// Directory holding the by-uuid symlink, if the test named one.
    pub by_uuid_dir: Option<PathBuf>,
}

/// Everything the simulator persists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The node name.
    pub node: String,
    /// Epoch seconds at first start (node uptime, task `pstart`).
    pub boot_time: i64,
    /// Users, tokens, roles, ACLs.
    pub access: Access,
    /// vmid → container.
    pub guests: BTreeMap<u32, Guest>,
    /// Storage id → storage.
    pub storages: BTreeMap<String, Storage>,
    /// Volume id → volume.
    pub volumes: BTreeMap<String, Volume>,
    /// All tasks, oldest first.
    pub tasks: Vec<Task>,
    /// vmid → exit status the next task of that guest ends with (`/_sim/fail-next`).
    pub fail_next: BTreeMap<u32, String>,
    /// Next fake worker PID.
    pub next_pid: u32,
    /// Storage id → test knobs (reachability, latency).
    #[serde(default)]
    pub storage_knobs: BTreeMap<String, StorageKnob>,
    /// Filesystem UUID → removable filesystem (`/_sim/usb`).
    #[serde(default)]
    pub filesystems: BTreeMap<String, Filesystem>,
}

/// A UUID-shaped random secret, like PVE's token secrets.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

impl State {
    /// A fresh cluster: users, tokens and ACLs of DESIGN.md §4.3, storages `local` and
    /// `local-lvm`, the Debian template and `guests` containers from vmid 100.
    pub fn seed(node: &str, guests: u32, now: i64) -> Result<State, getrandom::Error> {
        let mut access = Access::default();
        let mut root = User::default();
        root.tokens.insert(
            ROOT_TOKEN.into(),
            Token {
                secret: new_secret()?,
                privsep: false,
            },
        );
        access.users.insert("root@pam".into(), root);
        let mut agent = User::default();
        agent.tokens.insert(
            AGENT_TOKEN.into(),
            Token {
                secret: new_secret()?,
                privsep: true,
            },
        );
        access.users.insert(AGENT_USER.into(), agent);
        for (ugid, role) in [
            ("root@pam".to_string(), "Administrator"),
            (AGENT_USER.to_string(), FELHOM_AGENT_ROLE),
            (format!("{AGENT_USER}!{AGENT_TOKEN}"), FELHOM_AGENT_ROLE),
        ] {
            access.set_acl(
                AclEntry {
                    path: "/".into(),
                    ugid,
                    role: role.into(),
                    propagate: true,
                },
                false,
            );
        }
        let mut storages = BTreeMap::new();
        storages.insert(
            "local".to_string(),
            Storage {
                kind: "dir".into(),
                props: BTreeMap::from([
                    ("content".into(), "vztmpl,iso,backup".into()),
                    ("path".into(), "/var/lib/vz".into()),
                ]),
                secrets: BTreeMap::new(),
                total: 100 << 30,
            },
        );
        storages.insert(
            "local-lvm".to_string(),
            Storage {
                kind: "lvmthin".into(),
                props: BTreeMap::from([
                    ("content".into(), "rootdir,images".into()),
                    ("thinpool".into(), "data".into()),
                    ("vgname".into(), "pve".into()),
                ]),
                secrets: BTreeMap::new(),
                total: 200 << 30,
            },
        );
        let mut state = State {
            node: node.to_string(),
            boot_time: now - 86_400,
            access,
            guests: BTreeMap::new(),
            storages,
            volumes: BTreeMap::new(),
            tasks: Vec::new(),
            fail_next: BTreeMap::new(),
            next_pid: 0x0001_0000,
            storage_knobs: BTreeMap::new(),
            filesystems: BTreeMap::new(),
        };
        state.volumes.insert(
            TEMPLATE_VOLID.to_string(),
            Volume {
                content: "vztmpl".into(),
                format: "tzst".into(),
                size: 123_456_789,
                ctime: now - 86_400,
                vmid: None,
                notes: None,
                protected: false,
                subtype: None,
                archive: None,
                data: None,
                archived_mounts: Vec::new(),
                encrypted: None,
            },
        );
        for i in 0..guests {
            let vmid = 100 + i;
            let mut main = Section::new();
            main.insert("arch".into(), "amd64".into());
            main.insert("cores".into(), "1".into());
            main.insert("hostname".into(), format!("ct{vmid}"));
            main.insert("memory".into(), "512".into());
            main.insert(
                "net0".into(),
                format!(
                    "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
                    conf::random_mac()
                ),
            );
            main.insert("ostype".into(), "debian".into());
            main.insert("swap".into(), "512".into());
            main.insert("unprivileged".into(), "1".into());
            let volid = format!("local-lvm:vm-{vmid}-disk-0");
            main.insert("rootfs".into(), format!("{volid},size=4G"));
            state.volumes.insert(volid, disk_volume(vmid, 4 << 30, now));
            let running = i % 2 == 0;
            state.guests.insert(
                vmid,
                Guest {
                    conf: CtConf {
                        main,
                        snapshots: BTreeMap::new(),
                    },
                    running,
                    started: now,
                },
            );
        }
        Ok(state)
    }

    /// The guest or PVE's 500 "Configuration file 'nodes/<node>/lxc/<vmid>.conf' does not
    /// exist" (pve-guest-common `AbstractConfig.pm:50-61`).
    pub fn guest(&self, vmid: u32) -> Result<&Guest, String> {
        self.guests.get(&vmid).ok_or_else(|| self.no_conf(vmid))
    }

    /// Mutable variant of [`State::guest`].
    pub fn guest_mut(&mut self, vmid: u32) -> Result<&mut Guest, String> {
        let msg = self.no_conf(vmid);
        self.guests.get_mut(&vmid).ok_or(msg)
    }

    fn no_conf(&self, vmid: u32) -> String {
        format!(
            "Configuration file 'nodes/{}/lxc/{vmid}.conf' does not exist\n",
            self.node
        )
    }

    /// Bytes used on a storage by its volumes.
    pub fn storage_used(&self, storage: &str) -> u64 {
        let prefix = format!("{storage}:");
        self.volumes
            .iter()
            .filter(|(volid, _)| volid.starts_with(&prefix))
            .map(|(_, v)| v.size / 8)
            .sum::<u64>()
            + (1 << 30)
    }

    /// The next free disk of a guest on a storage. File-based storages (dir, NFS, CIFS) hold
    /// `<vmid>/vm-<vmid>-disk-N.raw`, or for size 0 the directory
    /// `<vmid>/subvol-<vmid>-disk-N.subvol`; block storages `vm-<vmid>-disk-N`. N is shared by
    /// both kinds (pve-storage `Plugin.pm` `get_next_vm_diskname`; pve-container
    /// `LXC.pm:2581-2625`).
    pub fn next_disk_volid(&self, storage: &str, vmid: u32, subvol: bool) -> String {
        let file_based = self
            .storages
            .get(storage)
            .is_some_and(|s| matches!(s.kind.as_str(), "dir" | "nfs" | "cifs"));
        let taken = |n: u32| {
            let names = [
                format!("vm-{vmid}-disk-{n}"),
                format!("subvol-{vmid}-disk-{n}"),
            ];
            self.volumes.keys().any(|v| {
                v.split_once(':').is_some_and(|(sid, name)| {
                    let base = name.rsplit('/').next().unwrap_or(name);
                    let stem = base.split('.').next().unwrap_or(base);
                    sid == storage && names.iter().any(|n| n == stem)
                })
            })
        };
        let n = (0..).find(|n| !taken(*n)).unwrap_or_default();
        match (file_based, subvol) {
            (true, true) => format!("{storage}:{vmid}/subvol-{vmid}-disk-{n}.subvol"),
            (true, false) => format!("{storage}:{vmid}/vm-{vmid}-disk-{n}.raw"),
            (false, _) => format!("{storage}:vm-{vmid}-disk-{n}"),
        }
    }
}

/// A fresh container disk volume.
pub fn disk_volume(vmid: u32, size: u64, now: i64) -> Volume {
    Volume {
        content: "rootdir".into(),
        format: "raw".into(),
        size,
        ctime: now,
        vmid: Some(vmid),
        notes: None,
        protected: false,
        subtype: None,
        archive: None,
        data: None,
        archived_mounts: Vec::new(),
        encrypted: None,
    }
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("cannot access state file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("state file {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Where the state lives: `<dir>/state.json`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created if missing by the caller).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The saved state, `None` on first start.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let path = self.file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Save atomically: write a temp file in the same directory, fsync, rename.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: self.file(),
            source,
        })?;
        write_atomic(&self.file(), &bytes)
    }
}

/// Write `bytes` to `path` atomically (temp file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_creates_guests_with_hwaddr_and_acls() {
        let s = State::seed("pve", 3, 1_700_000_000).expect("seed");
        assert_eq!(s.guests.len(), 3);
        let net0 = &s.guests[&101].conf.main["net0"];
        assert!(net0.contains("hwaddr=BC:24:11:"), "{net0}");
        assert!(s
            .access
            .has_all("felhom-agent@pve!agent", "/vms/101", &["VM.PowerMgmt"]));
        assert!(!s
            .access
            .has_all("felhom-agent@pve!agent", "/", &["Sys.Modify"]));
        assert!(s.access.has_all("root@pam!sim", "/", &["Sys.Modify"]));
    }

    #[test]
    fn store_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        assert!(store.load().expect("load").is_none());
        let s = State::seed("pve", 1, 1_700_000_000).expect("seed");
        store.save(&s).expect("save");
        let back = store.load().expect("load").expect("present");
        assert_eq!(back.guests[&100].conf, s.guests[&100].conf);
    }

    #[test]
    fn secrets_are_uuid_shaped() {
        let s = new_secret().expect("secret");
        assert_eq!(s.len(), 36);
        assert_eq!(s.matches('-').count(), 4);
    }
}
