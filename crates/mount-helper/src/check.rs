//! The checks before a mount, in the order they run. Each reads only the locations in
//! [`Paths`] and refuses with its own [`Error`] variant.
//!
//! 1. **The link.** `<dev_by_uuid>/<UUID>` exists ([`Error::LinkMissing`]).
//! 2. **A block device.** The link resolves to `<dev>/<name>` directly in the device directory,
//!    and the kernel's block class has that name with a `dev` file holding `major:minor`
//!    ([`Error::NotBlockDevice`]). The evidence is sysfs, not `stat(2)` of the node: `/dev` and
//!    `/dev/disk/by-uuid` are written only by root and udev, and the kernel's own list of block
//!    devices is what the USB check walks next; it also lets the tests build a fake tree without
//!    `mknod`, so the code that runs in production is the code that is tested.
//! 3. **On a USB bus.** `<sys_class_block>/<name>` resolves into `/sys/devices/…`, and one
//!    component of that path is a USB bus, `usbN`, whose `subsystem` link names `usb` (in real
//!    sysfs, `/sys/devices/pci0000:00/0000:00:14.0/usb2/subsystem -> ../../../bus/usb`)
//!    ([`Error::NotUsb`]). A partition's sysfs directory is inside its disk's, so a partition of
//!    a USB disk passes; a SATA or NVMe disk (`…/ata1/…`, `…/nvme/nvme0/…`), a device-mapper or
//!    LVM volume (`/sys/devices/virtual/block/dm-N`, even one on top of a USB disk), an md
//!    array or a loop device does not. The `subsystem` link keeps a directory that merely has a
//!    usb-like name from counting. udev's `usb_id` builtin likewise sets `ID_BUS=usb` from a
//!    parent device in the usb subsystem.
//! 4. **Nothing stacked on it.** `<sys_class_block>/<name>/holders` is empty: no LVM, RAID or
//!    dm-crypt device uses it ([`Error::Held`]).
//! 5. **Not mounted.** No line of the host's mount table (PID 1's, see [`Paths::mountinfo`])
//!    has the device's `major:minor` (field 3), or `/dev/<name>` or the by-uuid link as its
//!    source (btrfs reports an anonymous device number, so the source is checked too)
//!    ([`Error::AlreadyMounted`]); and nothing is mounted on the mount point
//!    ([`Error::MountPointBusy`]).
//! 6. **The mount point.** It is `<mount_root>/<UUID>`, one component under the root by
//!    construction; the root is a real directory (not a symlink) that neither group nor others
//!    can write; the mount point, if it exists, is a real directory (a symlink there would
//!    redirect the mount) ([`Error::MountPointUnsafe`]).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::mountinfo::{self, DevNum};
use crate::paths::Paths;
use crate::uuid::FsUuid;
use crate::Error;

/// A device that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The by-uuid link, as it is handed to systemd-mount.
    pub link: PathBuf,
    /// The kernel name (`sdb1`).
    pub name: String,
    /// Its device number.
    pub dev: DevNum,
    /// The USB bus it hangs off (`usb2`).
    pub usb_bus: String,
    /// Where it will be mounted.
    pub mount_point: PathBuf,
}

/// Runs every check for mounting `uuid`; see the module docs for what each one is and why.
pub fn check_mountable(paths: &Paths, uuid: &FsUuid) -> Result<Checked, Error> {
    let link = paths.link(uuid);
    let name = block_device_name(paths, &link)?;
    let dev = block_device_number(paths, &link, &name)?;
    let usb_bus = usb_bus(paths, &name)?;
    not_held(paths, &name)?;
    let mount_point = paths.mount_point(uuid);
    not_mounted(paths, &link, &name, dev, &mount_point)?;
    mount_point_is_safe(paths, uuid, &mount_point)?;
    Ok(Checked {
        link,
        name,
        dev,
        usb_bus,
        mount_point,
    })
}

/// Checks 1 and 2 (first half): the link exists and resolves to a node directly in `/dev`;
/// returns the node's name.
fn block_device_name(paths: &Paths, link: &Path) -> Result<String, Error> {
    match fs::symlink_metadata(link) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(Error::LinkMissing {
                link: link.to_owned(),
            })
        }
        Err(err) => return Err(Error::read(link)(err)),
    }
    let not_block = |reason: String| Error::NotBlockDevice {
        link: link.to_owned(),
        reason,
    };
    let target = match fs::canonicalize(link) {
        Ok(target) => target,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(not_block("the link is dangling".to_owned()))
        }
        Err(err) => return Err(Error::read(link)(err)),
    };
    let dev_dir = paths
        .dev_dir()
        .and_then(|dir| fs::canonicalize(dir).ok())
        .ok_or_else(|| not_block("no device directory".to_owned()))?;
    let name = match (target.parent(), target.file_name()) {
        (Some(parent), Some(name)) if parent == dev_dir => name.to_str(),
        _ => None,
    };
    name.map(str::to_owned).ok_or_else(|| {
        not_block(format!(
            "it points to {}, not to a device node in {}",
            target.display(),
            dev_dir.display()
        ))
    })
}

/// Check 2 (second half): the kernel has a block device of that name.
fn block_device_number(paths: &Paths, link: &Path, name: &str) -> Result<DevNum, Error> {
    let dev_file = paths.sys_class_block.join(name).join("dev");
    let text = match fs::read_to_string(&dev_file) {
        Ok(text) => text,
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Err(Error::NotBlockDevice {
                link: link.to_owned(),
                reason: format!("the kernel has no block device {name}"),
            })
        }
        Err(err) => return Err(Error::read(dev_file)(err)),
    };
    DevNum::parse(&text).ok_or_else(|| Error::NotBlockDevice {
        link: link.to_owned(),
        reason: format!("{} is not major:minor", dev_file.display()),
    })
}

/// Check 3: the device's sysfs path has a `usbN` component on the usb bus; returns its name.
fn usb_bus(paths: &Paths, name: &str) -> Result<String, Error> {
    let entry = paths.sys_class_block.join(name);
    let sysfs = fs::canonicalize(&entry).map_err(Error::read(&entry))?;
    let not_usb = || Error::NotUsb {
        device: name.to_owned(),
        sysfs: sysfs.clone(),
    };
    let devices = paths
        .sys_devices()
        .and_then(|dir| fs::canonicalize(dir).ok())
        .ok_or_else(not_usb)?;
    let relative = sysfs.strip_prefix(&devices).map_err(|_| not_usb())?;
    let mut dir = devices.clone();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            return Err(not_usb());
        };
        dir.push(part);
        let Some(part) = part.to_str() else {
            continue;
        };
        if is_usb_bus_name(part) && subsystem_is_usb(&dir) {
            return Ok(part.to_owned());
        }
    }
    Err(not_usb())
}

/// `usb1`, `usb12`: the name the kernel gives a USB bus's root hub device.
fn is_usb_bus_name(name: &str) -> bool {
    name.strip_prefix("usb").is_some_and(|n| {
        !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn subsystem_is_usb(dir: &Path) -> bool {
    fs::read_link(dir.join("subsystem"))
        .ok()
        .is_some_and(|target| target.file_name().is_some_and(|n| n == "usb"))
}

/// Check 4: no block device is stacked on this one.
fn not_held(paths: &Paths, name: &str) -> Result<(), Error> {
    let dir = paths.sys_class_block.join(name).join("holders");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Every real block device has the directory; a fake tree may leave it out.
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::read(dir)(err)),
    };
    let mut holders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::read(&dir))?;
        holders.push(entry.file_name().to_string_lossy().into_owned());
    }
    if holders.is_empty() {
        Ok(())
    } else {
        holders.sort();
        Err(Error::Held {
            device: name.to_owned(),
            holders: holders.join(","),
        })
    }
}

/// Check 5: the device is mounted nowhere and nothing is mounted on the mount point.
fn not_mounted(
    paths: &Paths,
    link: &Path,
    name: &str,
    dev: DevNum,
    mount_point: &Path,
) -> Result<(), Error> {
    let text = fs::read_to_string(&paths.mountinfo).map_err(Error::read(&paths.mountinfo))?;
    let mounts = mountinfo::parse(&text, &paths.mountinfo)?;
    // The source as mount(8) and systemd write it: the kernel node or the link itself.
    let node = format!("/dev/{name}");
    let link_text = link.to_string_lossy();
    let point_text = mount_point.to_string_lossy();
    for mount in &mounts {
        if mount.dev == dev || mount.source == node || mount.source == link_text {
            return Err(Error::AlreadyMounted {
                device: name.to_owned(),
                mount_point: mount.mount_point.clone(),
            });
        }
    }
    if let Some(mount) = mounts.iter().find(|m| m.mount_point == point_text) {
        return Err(Error::MountPointBusy {
            mount_point: mount_point.to_owned(),
            source_device: mount.source.clone(),
        });
    }
    Ok(())
}

/// Check 6: the mount point is `<root>/<uuid>`, the root is a real directory only root can
/// write, and the mount point is absent or a real directory.
fn mount_point_is_safe(paths: &Paths, uuid: &FsUuid, mount_point: &Path) -> Result<(), Error> {
    let unsafe_path = |path: &Path, reason| Error::MountPointUnsafe {
        path: path.to_owned(),
        reason,
    };
    // By construction (FsUuid is one component); checked anyway, it is the reason for the helper.
    if mount_point.parent() != Some(paths.mount_root.as_path())
        || mount_point.file_name() != Some(uuid.as_str().as_ref())
    {
        return Err(unsafe_path(
            mount_point,
            "not directly under the mount root",
        ));
    }
    let root = &paths.mount_root;
    let meta = match fs::symlink_metadata(root) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(unsafe_path(root, "the mount root does not exist"))
        }
        Err(err) => return Err(Error::read(root)(err)),
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_path(root, "the mount root is not a directory"));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_path(
            root,
            "the mount root is writable by group or others",
        ));
    }
    match fs::symlink_metadata(mount_point) {
        Ok(meta) if meta.file_type().is_dir() => Ok(()),
        Ok(_) => Err(unsafe_path(mount_point, "exists and is not a directory")),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::read(mount_point)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_bus_names() {
        for good in ["usb1", "usb2", "usb12"] {
            assert!(is_usb_bus_name(good), "{good}");
        }
        for bad in [
            "usb", "usb0", "usb01", "usb1a", "2-1", "xhci.usb", "usb-1", "Usb1",
        ] {
            assert!(!is_usb_bus_name(bad), "{bad}");
        }
    }
}
