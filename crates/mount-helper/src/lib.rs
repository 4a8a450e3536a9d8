//! `felhom-mount-helper`: the root-owned program through which the agent mounts a USB
//! filesystem, and nothing else (DESIGN.md §3 invariant 1, operation 2 of the `privileged`
//! crate). sudo runs it as `felhom-mount-helper mount <UUID>` or `felhom-mount-helper unmount
//! <UUID>`; the sudoers rule pins exactly those argument lists.
//!
//! The helper exists because a sudoers rule can only match strings: it allowed any
//! `/dev/disk/by-uuid` device (host partitions, and on LVM-thin hosts other guests' volumes),
//! read-write, and checked the device UUID and the mount-point UUID independently. Here one UUID
//! names both the device (`/dev/disk/by-uuid/<UUID>`) and the mount point
//! (`/srv/felhom/mounts/<UUID>`), and before mounting the helper checks in sysfs and the mount
//! table that the device is a block device on a USB bus, that nothing is stacked on it, that it
//! is mounted nowhere and that the mount point is safe ([`check`] lists each check and why).
//! Then it runs `systemd-mount --no-block --collect --options=nosuid,nodev,noexec` by absolute
//! path, with no shell and a cleared environment.
//!
//! It never reads the environment, a config file or the network (its only dependency is
//! `thiserror`; `tests/fence.rs` enforces that). Every location it reads is a field of
//! [`Paths`], fixed in the binary and pointed at a fake tree in tests; the tool is run through
//! the [`Runner`] trait. Start reading at [`execute`], then [`check`].
//!
//! Exit codes: [`Error::exit_code`].

mod args;
pub mod check;
mod error;
pub mod mountinfo;
mod paths;
pub mod runner;
mod uuid;

pub use args::Request;
pub use check::{check_mountable, Checked};
pub use error::Error;
pub use mountinfo::DevNum;
pub use paths::Paths;
pub use runner::{mount_argv, unmount_argv, Argv, Runner, SystemRunner};
pub use uuid::FsUuid;

/// Carries out one request: for `mount`, every check and then systemd-mount; for `unmount`,
/// systemd-umount of that UUID's mount point. Nothing is run when a check fails.
pub fn execute(request: &Request, paths: &Paths, runner: &dyn Runner) -> Result<(), Error> {
    let argv = match request {
        Request::Mount(uuid) => mount_argv(&check_mountable(paths, uuid)?),
        Request::Unmount(uuid) => unmount_argv(paths, uuid),
    };
    match runner.run(&argv) {
        Ok(Some(0)) => Ok(()),
        Ok(code) => Err(Error::ToolFailed {
            program: argv.program,
            code,
        }),
        Err(source) => Err(Error::Spawn {
            program: argv.program,
            source,
        }),
    }
}
