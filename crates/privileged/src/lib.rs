//! The fence: the agent's only root operations, exactly three, run through `sudo -n` against a
//! shipped allowlist (`packaging/sudoers.d/felhom-agent`). This crate never makes a network
//! call (it has no HTTP, socket or async dependency; `tests/fence.rs` enforces both) and never
//! runs a shell: every command line is an argv built from validated newtypes.
//!
//! Start reading at [`Privileged`] (the three operations), then [`invocation`] (the exact argv of
//! each) and [`args`] (what a valid argument is).
//!
//! # The three operations, and why each needs root (DESIGN.md §3.1, seed §3)
//!
//! 1. **Golden-image create**: `pct create <vmid> <storage>:vztmpl/<name> --storage S
//!    --hostname H --features keyctl=1,nesting=1 --unprivileged 1 --memory M --cores C
//!    --net0 name=eth0,bridge=B,ip=dhcp`. Docker in an LXC needs `keyctl=1`, and PVE lets only
//!    `root@pam` set any feature but `nesting` (pve-container `src/PVE/LXC.pm:1655-1756`). An API
//!    token is never `root@pam`, so this one build runs as root; every per-customer guest is then
//!    provisioned by a token-authorized *restore* of that image, which keeps `keyctl`.
//! 2. **Host mounts by UUID**: `felhom-mount-helper mount <uuid>` and `felhom-mount-helper
//!    unmount <uuid>` (`/usr/libexec/felhom-agent/`, the `mount-helper` crate, root-owned in the
//!    Debian package). Mounting is a root-only syscall. The helper derives the device
//!    (`/dev/disk/by-uuid/<uuid>`) and the mount point (`/srv/felhom/mounts/<uuid>`) from the one
//!    UUID, refuses unless the device is a block device on a USB bus that nothing is stacked on
//!    and that is mounted nowhere, and then runs `systemd-mount --no-block --collect
//!    --options=nosuid,nodev,noexec` (or `systemd-umount`): transient mount units make the mount
//!    visible to systemd (ordering, clean stop on unplug) without editing fstab. A sudoers rule
//!    can only match strings, so it could not tell a USB disk from a host partition or another
//!    guest's LVM volume, nor tie the device to its mount point; the helper can. The mount root
//!    is a constant, never configuration.
//! 3. **SMART and sensors**: `smartctl --json=c -a <device>` needs raw device access (and
//!    CAP_SYS_RAWIO for ATA pass-through); `sensors -j` is run the same way so all hardware
//!    readings share one path. Both are parsed into typed readings ([`SmartReading`],
//!    [`SensorReadings`]); smartctl's exit status is a bit mask handled as smartctl(8)
//!    documents (bits 0-1 fatal, the rest information).
//!
//! # The sudoers design
//!
//! Commands are given to sudo by absolute path (`/usr/sbin/pct`,
//! `/usr/libexec/felhom-agent/felhom-mount-helper`, `/usr/sbin/smartctl`, `/usr/bin/sensors`);
//! `sudo` itself is found on PATH by the [`Runner`]. Each sudoers rule pins the arguments with a
//! regular expression (sudo ≥ 1.9.10: an argument list starting with `^` and ending with `$` is
//! a POSIX ERE matched against all arguments joined by single spaces; PVE 8 ships sudo 1.9.13,
//! PVE 9 1.9.16). The
//! regexes encode the same shapes as the newtypes in [`args`], in the fixed order of
//! [`invocation`], anchored at both ends, so no option can be added, reordered or replaced.
//! Because sudo matches the joined string, an argument containing a space could regroup into
//! what looks like two; every token the regexes allow is space-free, so at worst such an argv
//! hands a tool one value with a space in it, which the tool itself rejects — and the agent
//! never builds one. The mount rules pass one UUID and a verb to the helper; the helper, not the
//! regex, decides which device may be mounted where.
//!
//! Everything runs with a time limit: on expiry sudo gets SIGTERM (which it relays to the root
//! command) and, after a grace period, SIGKILL.

pub mod args;
mod error;
pub mod invocation;
mod ops;
pub mod runner;
pub mod sensors;
pub mod smart;

pub use args::{
    BlockDevice, Bridge, Cores, FsUuid, Hostname, MemoryMib, StorageId, TemplateVolume, Vmid,
};
pub use error::Error;
pub use invocation::{GoldenImageSpec, Invocation, Program, MOUNT_HELPER, MOUNT_ROOT};
pub use ops::Privileged;
pub use runner::{Output, Runner, SudoRunner};
pub use sensors::{ChipReading, SensorReadings};
pub use smart::{SmartReading, SmartStatus};
