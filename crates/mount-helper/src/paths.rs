//! Where the helper looks: fixed constants in the binary, a temp dir in tests.

use std::path::{Path, PathBuf};

use crate::uuid::FsUuid;

/// The file-system locations the helper reads and the mount root it mounts under.
///
/// The binary uses [`Paths::system`] and nothing else: it runs as root through sudo, so no path
/// may come from the environment, a config file or an argument. Tests point the fields at a fake
/// tree in a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// udev's links, `/dev/disk/by-uuid`. Device nodes are expected in the directory two levels
    /// up (`/dev`), where udev's `../../sdb1` links point.
    pub dev_by_uuid: PathBuf,
    /// The kernel's block class, `/sys/class/block`. Its entries link into `/sys/devices`, the
    /// directory found two levels up plus `devices`.
    pub sys_class_block: PathBuf,
    /// The mount table, `/proc/1/mountinfo`: PID 1's, the host namespace where systemd will
    /// mount. Not `/proc/self/mountinfo`: the helper runs inside the agent unit's sandbox, whose
    /// namespace hides some host mounts (`ProtectHome=yes` covers `/home`, `/root` and
    /// `/run/user`, submounts included), so a disk mounted there would look unmounted. sudo's
    /// root can read PID 1's table despite `ProtectProc=invisible`.
    pub mountinfo: PathBuf,
    /// Where filesystems are mounted, `/srv/felhom/mounts` (the agent's `privileged::MOUNT_ROOT`).
    pub mount_root: PathBuf,
}

impl Paths {
    /// The real host's locations.
    pub fn system() -> Paths {
        Paths {
            dev_by_uuid: PathBuf::from("/dev/disk/by-uuid"),
            sys_class_block: PathBuf::from("/sys/class/block"),
            mountinfo: PathBuf::from("/proc/1/mountinfo"),
            mount_root: PathBuf::from("/srv/felhom/mounts"),
        }
    }

    /// `<dev_by_uuid>/<uuid>`, the device as the helper and systemd-mount name it.
    pub fn link(&self, uuid: &FsUuid) -> PathBuf {
        self.dev_by_uuid.join(uuid.as_str())
    }

    /// `<mount_root>/<uuid>`, the only place `uuid` can be mounted.
    pub fn mount_point(&self, uuid: &FsUuid) -> PathBuf {
        self.mount_root.join(uuid.as_str())
    }

    /// The directory device nodes live in (`/dev`).
    pub(crate) fn dev_dir(&self) -> Option<&Path> {
        self.dev_by_uuid.parent()?.parent()
    }

    /// The sysfs device tree (`/sys/devices`).
    pub(crate) fn sys_devices(&self) -> Option<PathBuf> {
        Some(self.sys_class_block.parent()?.parent()?.join("devices"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_paths_are_the_fixed_ones() {
        let paths = Paths::system();
        let uuid = FsUuid::parse("1A2B-3C4D").unwrap();
        assert_eq!(paths.link(&uuid), Path::new("/dev/disk/by-uuid/1A2B-3C4D"));
        assert_eq!(
            paths.mount_point(&uuid),
            Path::new("/srv/felhom/mounts/1A2B-3C4D")
        );
        assert_eq!(paths.mountinfo, Path::new("/proc/1/mountinfo"));
        assert_eq!(paths.dev_dir(), Some(Path::new("/dev")));
        assert_eq!(paths.sys_devices(), Some(PathBuf::from("/sys/devices")));
    }
}
