//! `collect`: the host-side collectors behind the hub report (seed §5).
//!
//! It owns reading the host: CPU/RAM/swap/load/uptime from the proc root and `statvfs` of
//! configured paths ([`HostCollector`]), PVE's node status and guests in two constant reads
//! ([`collect_pve`]), cloudflared's readiness from its metrics server ([`CloudflaredProbe`])
//! and the cadence and cache of SMART reads ([`SmartCache`]). It fills the `hub` crate's report
//! types and never fails a whole report: a broken source becomes `null` fields plus a
//! `host.errors` entry.
//!
//! It never runs anything as root (SMART reads come through a [`SmartReader`] the binary
//! implements with the `privileged` crate) and never writes anything.
//!
//! Start reading at `host.rs`, then `procfs.rs` (the parsers), `cloudflared.rs`, `smart.rs`,
//! `pve_node.rs`.

#![warn(missing_docs)]

mod cloudflared;
mod error;
mod host;
mod procfs;
mod pve_node;
mod smart;

pub use cloudflared::CloudflaredProbe;
pub use error::CollectError;
pub use host::{statvfs, HostCollector};
pub use procfs::{
    parse_loadavg, parse_meminfo, parse_stat, parse_uptime, CpuTimes, MemInfo, ProcRoot, StatSample,
};
pub use pve_node::{collect_pve, guests_from_resources, node_report, PveCollection};
pub use smart::{SmartCache, SmartReader, SmartSnapshot, SmartValues};

/// An error and its sources on one line (for a report's `errors[].message`).
pub(crate) use pve::error_chain;
