//! `hub-sim`: the reference hub `felhom-hub-sim` (DESIGN §4.5), as a library for tests and
//! the demo and as a binary.
//!
//! It owns a faithful implementation of the hub side of protocol v1 (`docs/hub-protocol.md`):
//! Bearer authentication, conditional `GET …/desired` with ETags, gzip both ways, bounded
//! report intake, an op queue drained by reported outcomes, audit acknowledgement, and the
//! dead-man's switch (`GET /admin/alerts`). State persists under `--state` with atomic writes
//! and survives restarts (API key included). Test controls — injected garbage and status
//! codes, a listener outage, the request log — live on the separate admin listener.
//!
//! The agent API is plain HTTP by default; with [`Options::tls`] (`--tls`) it is HTTPS with a
//! self-signed certificate kept in the state directory, so tests can run the agent's hub client
//! the way it runs in production (TLS, pinned leaf) against a stable fingerprint.
//!
//! It is a test and reference hub, not a production one: one API key for all hosts, no admin
//! authentication, loopback only by default. It never verifies signed ops (it relays opaque
//! blobs, as a real hub must) and never judges desired states.
//!
//! Start reading at [`start`] (`server.rs`), then `agent_api.rs`, `admin_api.rs`, `store.rs`.

#![warn(missing_docs)]
// Handlers return an early `Response` as the error of small helpers (`admit`, `check_host`):
// the idiomatic axum shape; a cold path in a test hub, so its size does not matter.
#![allow(clippy::result_large_err)]

mod admin_api;
mod agent_api;
mod server;
mod state;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use admin_api::admin_app;
pub use agent_api::agent_app;
pub use server::{start, Options, ReadyInfo, RunningHub};
pub use state::{Faults, HubState, RequestRecord, StatusFault};
pub use store::{HostRecord, Persisted, QueuedOp, Store};

/// What can go wrong running the reference hub.
#[derive(Debug, thiserror::Error)]
pub enum HubSimError {
    /// Reading or writing the state.
    #[error("cannot access {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The state file does not parse.
    #[error("hub state {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// A listener cannot bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The agent listener's certificate cannot be created, read or used (`--tls`).
    #[error("cannot prepare the agent listener's certificate in {dir}")]
    Tls {
        /// The certificate directory (`STATE/tls`).
        dir: PathBuf,
        /// What failed.
        #[source]
        source: pve_sim::tls::TlsError,
    },
    /// The OS random source failed (API key generation).
    #[error("no randomness for the api key: {reason}")]
    Random {
        /// What failed.
        reason: String,
    },
}
