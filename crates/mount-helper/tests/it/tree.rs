//! A fake host in a temp dir, built the way the kernel and udev lay the real one out.
//!
//! - `dev/<name>`: a regular file standing for the device node (the helper's evidence for "block
//!   device" is sysfs, so no `mknod` is needed; see `check.rs`).
//! - `dev/disk/by-uuid/<UUID> -> ../../<name>`, as udev writes it.
//! - `sys/devices/<path>/dev` holding `major:minor`, and `sys/class/block/<name> ->
//!   ../../devices/<path>`.
//! - `sys/devices/…/usbN/subsystem -> sys/bus/usb` for a USB bus.
//! - `proc/self/mountinfo`, `srv/felhom/mounts` (0755).

use std::cell::RefCell;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use mount_helper::{Argv, Paths, Runner};

/// A USB stick's first partition: xHCI controller, bus 2, port 1, a SCSI disk `sdb`.
pub const USB_BUS: &str = "pci0000:00/0000:00:14.0/usb2";
pub const USB_DISK: &str =
    "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";
pub const USB_PART: &str =
    "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb/sdb1";
/// The host's SATA disk.
pub const SATA_PART: &str = "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1";
/// The host's NVMe drive.
pub const NVME_PART: &str = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p3";
/// An LVM-thin volume (another guest's disk).
pub const DM: &str = "virtual/block/dm-3";

pub const UUID: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
pub const VFAT: &str = "1A2B-3C4D";

/// The mount table of a PVE host with nothing of ours mounted.
pub const BASE_MOUNTS: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/mapper/pve-root rw,errors=remount-ro
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 22 8:2 / /boot/efi rw,relatime shared:13 - vfat /dev/sda2 rw
";

pub struct FakeHost {
    dir: tempfile::TempDir,
    pub paths: Paths,
}

impl FakeHost {
    /// An empty host: no block devices, the base mount table, the mount root.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let paths = Paths {
            dev_by_uuid: root.join("dev/disk/by-uuid"),
            sys_class_block: root.join("sys/class/block"),
            mountinfo: root.join("proc/self/mountinfo"),
            mount_root: root.join("srv/felhom/mounts"),
        };
        for d in [
            &paths.dev_by_uuid,
            &paths.sys_class_block,
            &root.join("sys/devices"),
            &root.join("sys/bus/usb"),
            &root.join("sys/bus/pci"),
            &root.join("proc/self"),
            &paths.mount_root,
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::set_permissions(&paths.mount_root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(&paths.mountinfo, BASE_MOUNTS).unwrap();
        FakeHost { dir, paths }
    }

    /// The host with a USB bus and the USB stick `sdb` (8:16) with partition `sdb1` (8:17).
    pub fn with_usb_stick() -> Self {
        let host = FakeHost::new();
        host.bus(USB_BUS, "usb");
        host.block("sdb", USB_DISK, "8:16");
        host.block("sdb1", USB_PART, "8:17");
        host
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Marks `sys/devices/<rel>` as a device of `subsystem` (`usb`, `pci`).
    pub fn bus(&self, rel: &str, subsystem: &str) {
        let dir = self.path("sys/devices").join(rel);
        fs::create_dir_all(&dir).unwrap();
        symlink(self.path("sys/bus").join(subsystem), dir.join("subsystem")).unwrap();
    }

    /// A block device `name` at `sys/devices/<rel>` with the given `dev` file, its class link
    /// and its node in `dev/`.
    pub fn block(&self, name: &str, rel: &str, dev: &str) {
        let dir = self.path("sys/devices").join(rel);
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::write(dir.join("dev"), format!("{dev}\n")).unwrap();
        symlink(
            Path::new("../../devices").join(rel),
            self.paths.sys_class_block.join(name),
        )
        .unwrap();
        fs::write(self.path("dev").join(name), "").unwrap();
    }

    /// `dev/disk/by-uuid/<uuid> -> <target>` (udev writes `../../sdb1`).
    pub fn link(&self, uuid: &str, target: &str) {
        symlink(target, self.paths.dev_by_uuid.join(uuid)).unwrap();
    }

    /// Appends a line to the mount table.
    pub fn mounted(&self, line: &str) {
        let mut text = fs::read_to_string(&self.paths.mountinfo).unwrap();
        text.push_str(line);
        text.push('\n');
        fs::write(&self.paths.mountinfo, text).unwrap();
    }

    pub fn link_text(&self, uuid: &str) -> String {
        self.paths.dev_by_uuid.join(uuid).display().to_string()
    }

    pub fn mount_point_text(&self, uuid: &str) -> String {
        self.paths.mount_root.join(uuid).display().to_string()
    }
}

/// What the fake tool does when run.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Exit(Option<i32>),
    CannotStart,
}

/// The fake [`Runner`]: records each argv as strings and answers with `outcome`.
pub struct Recorder {
    pub calls: RefCell<Vec<Vec<String>>>,
    pub outcome: Outcome,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder::answering(Outcome::Exit(Some(0)))
    }

    pub fn answering(outcome: Outcome) -> Self {
        Recorder {
            calls: RefCell::new(vec![]),
            outcome,
        }
    }

    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.borrow().clone()
    }
}

impl Runner for Recorder {
    fn run(&self, argv: &Argv) -> io::Result<Option<i32>> {
        let mut call = vec![argv.program.to_owned()];
        call.extend(argv.args.iter().map(|a| a.to_string_lossy().into_owned()));
        self.calls.borrow_mut().push(call);
        match self.outcome {
            Outcome::Exit(code) => Ok(code),
            Outcome::CannotStart => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}
