//! Simulated removable filesystems, driven by `POST /_sim/usb`: a USB disk's filesystem,
//! named by its filesystem UUID, is plugged in or pulled, mounted or not, and its
//! `/dev/disk/by-uuid/<uuid>` symlink appears and vanishes in a directory the test names, so
//! a watcher (inotify) sees real filesystem events.
//!
//! The model: a filesystem has one mount path. While it is present and mounted that path is a
//! mount point for [`crate::activation`], so a `dir` storage with `is_mountpoint` on it is
//! active. Pulling the disk removes the mount as well (systemd stops a mount unit whose
//! device went away); plugging it back in mounts it again unless the request says
//! `"mounted": false`, which leaves the remount to the agent (a later request with
//! `"mounted": true` stands for the agent's mount helper).
//!
//! The symlink is created the way udev does it: under a temporary name in the same directory,
//! then renamed over `<uuid>` (systemd `udev-node.c` `node_symlink`), so watchers see
//! `IN_MOVED_TO`; removal is a plain unlink (`IN_DELETE`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::state::{Filesystem, State};

/// Default block device of a simulated filesystem.
const DEFAULT_DEVICE: &str = "/dev/sdb1";

/// The body of `POST /_sim/usb` with a `uuid`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbRequest {
    /// Filesystem UUID (also the symlink's name).
    pub uuid: String,
    /// Plugged in (`true`) or pulled (`false`).
    pub present: bool,
    /// Mount path; required the first time a UUID is named.
    #[serde(default)]
    pub mount: Option<String>,
    /// Whether it is mounted while present (default: `present`).
    #[serde(default)]
    pub mounted: Option<bool>,
    /// Block device (default `/dev/sdb1`); the symlink points at `../../<basename>`.
    #[serde(default)]
    pub device: Option<String>,
    /// Directory holding the by-uuid symlink (kept from earlier requests when absent).
    #[serde(default)]
    pub by_uuid_dir: Option<PathBuf>,
}

/// Why a `/_sim/usb` request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    /// The UUID cannot be a file name.
    #[error("invalid uuid '{uuid}': use letters, digits, '-' and '_'")]
    BadUuid {
        /// The UUID given.
        uuid: String,
    },
    /// First mention of a UUID without a mount path.
    #[error("unknown uuid '{uuid}': give its \"mount\" path")]
    NoMount {
        /// The UUID given.
        uuid: String,
    },
    /// A mount path that is not absolute.
    #[error("mount must be an absolute path, got '{mount}'")]
    BadMount {
        /// The path given.
        mount: String,
    },
    /// `mounted: true` for a pulled disk.
    #[error("a filesystem that is not present cannot be mounted")]
    MountedAbsent,
    /// Creating or removing the symlink failed.
    #[error("cannot update by-uuid symlink {path}")]
    Link {
        /// The symlink path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn valid_uuid(uuid: &str) -> bool {
    !uuid.is_empty()
        && uuid.len() <= 64
        && uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Apply a request: update the filesystem in the state first, then the symlink, so a watcher
/// that reacts to the event and asks the API already sees the new state (the caller holds the
/// state lock until this returns).
pub fn apply(st: &mut State, req: &UsbRequest) -> Result<(), UsbError> {
    if !valid_uuid(&req.uuid) {
        return Err(UsbError::BadUuid {
            uuid: req.uuid.clone(),
        });
    }
    let mounted = req.mounted.unwrap_or(req.present);
    if mounted && !req.present {
        return Err(UsbError::MountedAbsent);
    }
    if let Some(m) = &req.mount {
        if !m.starts_with('/') {
            return Err(UsbError::BadMount { mount: m.clone() });
        }
    }
    let previous = st.filesystems.get(&req.uuid).cloned();
    let mount = match (&req.mount, &previous) {
        (Some(m), _) => m.clone(),
        (None, Some(p)) => p.mount.clone(),
        (None, None) => {
            return Err(UsbError::NoMount {
                uuid: req.uuid.clone(),
            })
        }
    };
    let fs = Filesystem {
        mount,
        device: req
            .device
            .clone()
            .or_else(|| previous.as_ref().map(|p| p.device.clone()))
            .unwrap_or_else(|| DEFAULT_DEVICE.to_string()),
        present: req.present,
        mounted,
        by_uuid_dir: req
            .by_uuid_dir
            .clone()
            .or_else(|| previous.as_ref().and_then(|p| p.by_uuid_dir.clone())),
    };
    st.filesystems.insert(req.uuid.clone(), fs.clone());
    if let Some(dir) = &fs.by_uuid_dir {
        if fs.present {
            link(dir, &req.uuid, &fs.device)?;
        } else {
            unlink(dir, &req.uuid)?;
        }
    }
    Ok(())
}

/// Create `<dir>/<uuid>` → `../../<device basename>` via a temporary name and a rename.
/// An existing link with the same target is left alone (no event, as udev does not touch it).
fn link(dir: &Path, uuid: &str, device: &str) -> Result<(), UsbError> {
    let path = dir.join(uuid);
    let err = |source| UsbError::Link {
        path: path.clone(),
        source,
    };
    let name = Path::new(device)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sdb1".to_string());
    let target = PathBuf::from("../..").join(name);
    if std::fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".#{uuid}{:08x}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// Remove `<dir>/<uuid>`; a missing link is fine.
fn unlink(dir: &Path, uuid: &str) -> Result<(), UsbError> {
    let path = dir.join(uuid);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(UsbError::Link { path, source }),
    }
}

/// Whether every simulated filesystem is plugged in (the USB disk in `disks/list` and
/// `hardware/usb` disappears while one is pulled).
pub fn all_present(st: &State) -> bool {
    st.filesystems.values().all(|f| f.present)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uuid: &str, present: bool) -> UsbRequest {
        UsbRequest {
            uuid: uuid.into(),
            present,
            mount: None,
            mounted: None,
            device: None,
            by_uuid_dir: None,
        }
    }

    #[test]
    fn unplug_and_replug_move_the_symlink_and_the_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut st = State::seed("pve", 0, 1_700_000_000).expect("seed");
        let mut first = req("1a2b-3c4d", true);
        first.mount = Some("/mnt/usb1".into());
        first.by_uuid_dir = Some(dir.path().join("by-uuid"));
        apply(&mut st, &first).expect("plug");
        let link = dir.path().join("by-uuid/1a2b-3c4d");
        assert_eq!(
            std::fs::read_link(&link).expect("link"),
            PathBuf::from("../../sdb1")
        );
        assert!(crate::activation::is_mounted(&st, "/mnt/usb1"));
        apply(&mut st, &req("1a2b-3c4d", false)).expect("pull");
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(!crate::activation::is_mounted(&st, "/mnt/usb1"));
        let mut back = req("1a2b-3c4d", true);
        back.mounted = Some(false);
        apply(&mut st, &back).expect("replug");
        assert!(std::fs::read_link(&link).is_ok());
        assert!(!crate::activation::is_mounted(&st, "/mnt/usb1"));
        let leftovers = std::fs::read_dir(dir.path().join("by-uuid"))
            .expect("dir")
            .count();
        assert_eq!(leftovers, 1, "no temporary link left behind");
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut st = State::seed("pve", 0, 1_700_000_000).expect("seed");
        assert!(matches!(
            apply(&mut st, &req("../etc", true)),
            Err(UsbError::BadUuid { .. })
        ));
        assert!(matches!(
            apply(&mut st, &req("abcd", true)),
            Err(UsbError::NoMount { .. })
        ));
        let mut r = req("abcd", false);
        r.mount = Some("/mnt/x".into());
        r.mounted = Some(true);
        assert!(matches!(apply(&mut st, &r), Err(UsbError::MountedAbsent)));
    }
}
