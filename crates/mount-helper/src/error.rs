//! The one error type of the helper, and the exit code of each variant.

use std::path::PathBuf;

/// Why the helper refused or failed. Every variant has its own exit code ([`Error::exit_code`]),
/// so the agent (and an operator reading `sudo` output) can tell the refusals apart.
///
/// `Display` is one lower-case line and never repeats the source; the binary prints the source
/// after it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The argument list is not `mount <UUID>` or `unmount <UUID>`.
    #[error("usage: felhom-mount-helper mount|unmount <UUID> ({reason})")]
    Usage {
        /// What was wrong with the arguments.
        reason: &'static str,
    },
    /// The UUID is not one of the two udev shapes.
    #[error("invalid fs uuid {value:?}: must be a lower-case 36-character UUID or an upper-case XXXX-XXXX serial")]
    InvalidUuid {
        /// The rejected value, cut to 64 characters.
        value: String,
    },
    /// There is no `/dev/disk/by-uuid/<UUID>` link: no such filesystem is attached.
    #[error("no filesystem with this uuid: {link} does not exist")]
    LinkMissing {
        /// The link that was looked for.
        link: PathBuf,
    },
    /// The link does not lead to a block device the kernel knows.
    #[error("{link} does not resolve to a block device: {reason}")]
    NotBlockDevice {
        /// The by-uuid link.
        link: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The device is not attached through a USB bus (a host disk, an NVMe drive, a
    /// device-mapper/LVM volume, …).
    #[error("{device} is not a USB device (its sysfs path {sysfs} has no usb bus)")]
    NotUsb {
        /// The kernel name of the device (`sda1`, `dm-3`).
        device: String,
        /// Its resolved `/sys/devices/…` path.
        sysfs: PathBuf,
    },
    /// Another block device is stacked on this one (LVM, RAID, dm-crypt).
    #[error("{device} is in use by {holders}")]
    Held {
        /// The kernel name of the device.
        device: String,
        /// The holders, comma-separated (`dm-0,dm-1`).
        holders: String,
    },
    /// The device is mounted already.
    #[error("{device} is already mounted at {mount_point}")]
    AlreadyMounted {
        /// The kernel name of the device.
        device: String,
        /// Where it is mounted (the first mount found).
        mount_point: String,
    },
    /// Something is mounted on the mount point already.
    #[error("{mount_point} is already a mount point (of {source_device})")]
    MountPointBusy {
        /// The mount point.
        mount_point: PathBuf,
        /// What is mounted there.
        source_device: String,
    },
    /// The mount point or the mount root is not what it must be.
    #[error("unsafe mount point {path}: {reason}")]
    MountPointUnsafe {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Reading sysfs, `/dev` or the mount table failed.
    #[error("cannot read {path}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The mount table has a line the helper cannot parse (it fails closed).
    #[error("cannot parse line {line} of {path}")]
    Mountinfo {
        /// The mount table.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// `systemd-mount`/`systemd-umount` could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The tool's absolute path.
        program: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `systemd-mount`/`systemd-umount` ran and failed (its own message is on stderr above).
    #[error("{program} exited with {}", exit_text(*code))]
    ToolFailed {
        /// The tool's absolute path.
        program: &'static str,
        /// Its exit code, `None` when killed by a signal.
        code: Option<i32>,
    },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("status {code}"),
        None => "a signal".to_owned(),
    }
}

impl Error {
    /// The process exit code for this error; 0 is success, and no two refusals share a code.
    ///
    /// | code | meaning |
    /// |---|---|
    /// | 2 | usage |
    /// | 3 | invalid UUID |
    /// | 4 | no by-uuid link |
    /// | 5 | not a block device |
    /// | 6 | not on a USB bus |
    /// | 7 | device already mounted |
    /// | 8 | mount point already in use |
    /// | 9 | device held by another block device |
    /// | 10 | mount point or mount root unsafe |
    /// | 11 | cannot read or parse system state |
    /// | 12 | cannot start the systemd tool |
    /// | 13 | the systemd tool failed |
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } => 2,
            Error::InvalidUuid { .. } => 3,
            Error::LinkMissing { .. } => 4,
            Error::NotBlockDevice { .. } => 5,
            Error::NotUsb { .. } => 6,
            Error::AlreadyMounted { .. } => 7,
            Error::MountPointBusy { .. } => 8,
            Error::Held { .. } => 9,
            Error::MountPointUnsafe { .. } => 10,
            Error::Read { .. } | Error::Mountinfo { .. } => 11,
            Error::Spawn { .. } => 12,
            Error::ToolFailed { .. } => 13,
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read { path, source }
    }
}
