//! Integration tests of the `pve` client against in-process HTTPS fakes.
//!
//! End-to-end tests against `felhom-pve-sim` are added separately; these cover what a fake can
//! pin down precisely: the TLS pin, error mapping, task waiting and request encoding.

/// In-process HTTPS fake of the PVE API (axum + axum-server + rcgen, ring provider).
mod fake;

/// Error answers (401/403/400/500/501/595, garbage) mapped to `Error` variants.
mod errors;
/// The fence: no process spawning in the source, no tokio "process" feature in the manifest.
mod fence;
/// "Never panics" properties of the answer parsers (UPID, property strings, task status and
/// log, storage listings, guest config), the same functions the fuzz targets feed.
mod parsers;
/// Request encoding: JSON bodies, 0/1 booleans, path escaping, the hwaddr and description quirks.
mod requests;
/// `wait_task`: outcomes, failures with log tail, timeout, cancellation, transient errors.
mod tasks;
/// Strict leaf pinning: right pin, wrong pin, impostor key, connection reuse, connect errors.
mod tls_pin;

/// Typed calls end to end with real effects, each test ending with the schema audit.
mod sim_calls;
/// End to end against the real `felhom-pve-sim` process: the running simulator, clients pinned
/// to it, its `/_sim/` controls and the schema audit of its request log.
mod sim_env;
/// Every error variant produced by the simulator; inputs refused before anything is sent.
mod sim_errors;
/// `wait_task` across a `kill -9` and restart of the simulator.
mod sim_restart;
