//! The exact command lines of the three operations, built from validated arguments only.
//!
//! These functions are pure: they decide the argv, and `packaging/sudoers.d/felhom-agent` pins
//! the same argv with one regular expression per command. Keep the argument order fixed; the
//! sudoers file depends on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{
    BlockDevice, Bridge, Cores, FsUuid, Hostname, MemoryMib, StorageId, TemplateVolume, Vmid,
};

/// Where mount units put filesystems: `<MOUNT_ROOT>/<uuid>`. Fixed, never configurable; the mount
/// helper has the same constant (a test in the `mount-helper` crate checks they agree).
pub const MOUNT_ROOT: &str = "/srv/felhom/mounts";

/// Where the Debian package installs the mount helper (root:root 0755). Fixed, so the sudoers
/// rule can pin it.
pub const MOUNT_HELPER: &str = "/usr/libexec/felhom-agent/felhom-mount-helper";

/// A root tool the agent may run, with its absolute path on a PVE 8/9 (Debian 12/13) host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// `/usr/sbin/pct` (pve-container).
    Pct,
    /// `/usr/libexec/felhom-agent/felhom-mount-helper` (this project's `mount-helper` crate,
    /// shipped root-owned in the Debian package): checks the device and runs `systemd-mount` or
    /// `systemd-umount` itself.
    MountHelper,
    /// `/usr/sbin/smartctl` (smartmontools).
    Smartctl,
    /// `/usr/bin/sensors` (lm-sensors).
    Sensors,
}

impl Program {
    /// Every program, in sudoers order.
    pub const ALL: [Program; 4] = [
        Program::Pct,
        Program::MountHelper,
        Program::Smartctl,
        Program::Sensors,
    ];

    /// The absolute path passed to `sudo` (sudo matches commands by path, never by PATH lookup).
    pub fn path(self) -> &'static str {
        match self {
            Program::Pct => "/usr/sbin/pct",
            Program::MountHelper => MOUNT_HELPER,
            Program::Smartctl => "/usr/sbin/smartctl",
            Program::Sensors => "/usr/bin/sensors",
        }
    }

    /// The short name used in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Program::Pct => "pct",
            Program::MountHelper => "felhom-mount-helper",
            Program::Smartctl => "smartctl",
            Program::Sensors => "sensors",
        }
    }
}

/// One command to run as root: program, arguments and a time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    program: Program,
    args: Vec<String>,
    timeout: Duration,
}

impl Invocation {
    /// The program.
    pub fn program(&self) -> Program {
        self.program
    }

    /// The arguments after the program path.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// How long the command may run before it is terminated.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Replaces the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What the golden-image build container looks like (DESIGN.md §3.1, seed §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenImageSpec {
    /// The id of the build container.
    pub vmid: Vmid,
    /// The OS template to unpack.
    pub ostemplate: TemplateVolume,
    /// The storage for the root filesystem.
    pub storage: StorageId,
    /// The container's host name.
    pub hostname: Hostname,
    /// Memory in MiB.
    pub memory: MemoryMib,
    /// CPU cores.
    pub cores: Cores,
    /// The bridge for `net0` (DHCP).
    pub bridge: Bridge,
}

/// `pct create <vmid> <ostemplate> --storage S --hostname H --features keyctl=1,nesting=1
/// --unprivileged 1 --memory M --cores C --net0 name=eth0,bridge=B,ip=dhcp`.
pub fn golden_image_create(spec: &GoldenImageSpec) -> Invocation {
    Invocation {
        program: Program::Pct,
        args: vec![
            "create".to_owned(),
            spec.vmid.to_string(),
            spec.ostemplate.to_string(),
            "--storage".to_owned(),
            spec.storage.to_string(),
            "--hostname".to_owned(),
            spec.hostname.to_string(),
            "--features".to_owned(),
            "keyctl=1,nesting=1".to_owned(),
            "--unprivileged".to_owned(),
            "1".to_owned(),
            "--memory".to_owned(),
            spec.memory.get().to_string(),
            "--cores".to_owned(),
            spec.cores.get().to_string(),
            "--net0".to_owned(),
            format!("name=eth0,bridge={},ip=dhcp", spec.bridge),
        ],
        // Unpacking a template onto slow storage takes minutes.
        timeout: Duration::from_secs(600),
    }
}

/// Where the filesystem with `uuid` is mounted.
pub fn mount_point(uuid: &FsUuid) -> PathBuf {
    PathBuf::from(MOUNT_ROOT).join(uuid.as_str())
}

/// `felhom-mount-helper mount U`.
///
/// The helper derives the device (`/dev/disk/by-uuid/U`) and the mount point (`ROOT/U`) from
/// the one UUID, refuses unless the device is an unmounted block device on a USB bus, and then
/// runs `systemd-mount --no-block --collect --options=nosuid,nodev,noexec` (the
/// `mount-helper` crate's README lists every check and its exit code). `--no-block` returns
/// once the unit is queued, so the caller watches the mount point.
pub fn mount(uuid: &FsUuid) -> Invocation {
    Invocation {
        program: Program::MountHelper,
        args: vec!["mount".to_owned(), uuid.to_string()],
        timeout: Duration::from_secs(60),
    }
}

/// `felhom-mount-helper unmount U`: the helper runs `systemd-umount ROOT/U`.
pub fn unmount(uuid: &FsUuid) -> Invocation {
    Invocation {
        program: Program::MountHelper,
        args: vec!["unmount".to_owned(), uuid.to_string()],
        timeout: Duration::from_secs(60),
    }
}

/// `smartctl --json=c -a DEVICE`.
pub fn smart(device: &BlockDevice) -> Invocation {
    Invocation {
        program: Program::Smartctl,
        args: vec!["--json=c".to_owned(), "-a".to_owned(), device.to_string()],
        // A drive spinning up from standby can take tens of seconds to answer.
        timeout: Duration::from_secs(60),
    }
}

/// `sensors -j`.
pub fn sensors() -> Invocation {
    Invocation {
        program: Program::Sensors,
        args: vec!["-j".to_owned()],
        timeout: Duration::from_secs(15),
    }
}
