//! Integration tests of the collectors.
//!
//! - `host`: `HostCollector` over fixture proc files and real `statvfs`.
//! - `cloudflared`: the `/ready` probe against a fake metrics server on loopback.

mod cloudflared;
mod host;
