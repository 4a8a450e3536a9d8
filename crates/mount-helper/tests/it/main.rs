//! Integration tests of the mount helper.
//!
//! - `tree`: `FakeHost`, a fake `/dev`, `/sys`, mount table and mount root in a temp dir, and
//!   `Recorder`, the fake `Runner` that records every argv.
//! - `mount`: the happy path's exact systemd-mount argv, and one test per refusal (missing
//!   link, not a block device, SATA/NVMe/dm, stacked, mounted, unsafe mount point, malformed
//!   mount table), each asserting that nothing was run.
//! - `unmount`: the systemd-umount argv and tool failures.
//! - `binary`: the real `felhom-mount-helper` binary's argv handling, stderr line and exit codes.
//! - `agreement`: the helper accepts exactly the UUIDs `privileged::FsUuid` produces, and both
//!   crates use the same mount root.

mod agreement;
mod binary;
mod mount;
mod tree;
mod unmount;
