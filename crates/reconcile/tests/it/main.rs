//! Integration tests of the reconcile crate, on its stateful fakes (feature `fakes`) and
//! paused Tokio time. End-to-end suites against the simulator and with `kill -9` live in the
//! `felhom-agent` crate's tests.
//!
//! - `clock`: the wall clock is injected: signed-op expiry, the `desired.reset` window, journal
//!   times and op ids follow the engine's clock, not the system's.
//! - `engine`: convergence, quiet steady state, the reversibility gate, unmanaged guests,
//!   backoff on paused time, the ambiguous POST, a journal that refuses the intent.
//! - `recovery`: the one recovery path for ops of every kind left by a crash.
//! - `handle`: ops submitted through `EngineHandle` (local API, selftest): journaled, queued,
//!   typed failures.
//! - `ownership`: provenance (DESIGN.md §4.6): no adoption by naming, release on vanish or
//!   replacement, identities for guests adopted by earlier versions, the signed reset.
//! - `fence`: no code outside this crate posts a mutating Proxmox call (DESIGN.md §3
//!   invariant 9), checked on the workspace's sources.
//! - `support`: the shared setup.

mod clock;
mod engine;
mod fence;
mod handle;
mod ownership;
mod recovery;
mod support;
