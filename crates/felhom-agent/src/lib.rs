//! felhom-agent: the privileged host agent for Proxmox VE (DESIGN.md §1). This crate is the
//! glue around the library crates: the command line ([`cli`]), the configuration ([`config`],
//! start reading there), logging ([`logging`]), the daemon's wiring ([`daemon`]: engine, hub
//! link, local sources, SMART, liveness), the reconcile engine's ports on the journal and the
//! Proxmox client ([`journal_port`], [`pve_port`]), systemd notification ([`systemd`]) and,
//! with the `demo` feature (on by default, off in the Debian package), the demo. It never posts
//! a guest mutation of its own: the reconcile executor does, through `pve_port`. It
//! runs no root command itself; `privileged` does. Secrets are
//! `pve::Secret`s everywhere. `main.rs` only maps errors to exit codes.

pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod journal_port;
pub mod ledger;
pub mod localapi_audit;
pub mod localapi_wiring;
pub mod logging;
pub mod proxmox;
pub mod pve_port;
pub mod selftest;
pub mod systemd;
