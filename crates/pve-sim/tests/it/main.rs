//! End-to-end tests of `felhom-pve-sim`: each test starts the real binary, reads its ready
//! line and talks HTTPS pinned to the printed fingerprint.
//!
//! Modules:
//! - `harness`: spawning the binary, the pinned client, request helpers.
//! - `protocol`: ready line, 401/403/400/501 shapes, reason phrase, request log.
//! - `lifecycle`: snapshots, tasks, locks, config digest/description/hwaddr.
//! - `backup`: vzdump, content listing, restore (unique, force), keyctl root-only rules.
//! - `persistence`: restart with the same `--state`.
//! - `storage`: storage types and PVE's config errors, `is_mountpoint` and `/_sim/usb`
//!   (mount, by-uuid symlink), unreachable targets (`active: 0`, latency knob), mount points'
//!   `backup` flag in archives and restores, snapshot refusal, mount point resize.
//! - `fault`: `/_sim/fault` injected 501 and 595/596/597/599 answers; `/_sim/drop` before
//!   and after processing.
//! - `proxmoxer`: Python's proxmoxer, unchanged, drives the simulator; the independent schema
//!   audit (tools/schema_audit.py) checks what it left in the request log.

mod backup;
mod fault;
mod harness;
mod lifecycle;
mod persistence;
mod protocol;
mod proxmoxer;
mod storage;
