//! Integration tests: a real server over TLS on loopback with the in-memory fakes behind it.
//!
//! - `support`: the harness (server, fakes, three guests with a token each, pinned client).
//! - `auth`: forged, truncated, garbage and destroyed-guest tokens.
//! - `scoping`: a token only ever reaches its own guest; guest ids in query or body; snapshot
//!   name tricks; rollback only to the guest's own snapshots.
//! - `limits`: oversized and slow bodies, slow headers, a flood on one token.
//! - `serial`: concurrent mutations of one guest are serialized, other guests run in parallel.
//! - `pinning`: a client pinning the printed fingerprint connects, another pin is refused.
//! - `logs`: no token or secret in any log line.
//! - `routes`: what each route answers, errors and audit records.

mod auth;
mod limits;
mod logs;
mod pinning;
mod routes;
mod scoping;
mod serial;
mod support;
