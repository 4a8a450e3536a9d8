//! Integration tests of the hub crate.
//!
//! - `poll_loop`: the loop's schedule, health and acceptance rules on paused tokio time,
//!   over a scripted fake hub.
//! - `against_sim`: the real client and loop against the reference hub over HTTP.
//! - `parsers`: "never panics" properties of the answer parsers (the fuzz targets' functions).
//! - `schema`: real serialized messages validated against `docs/schemas/` (Python jsonschema).

mod against_sim;
mod parsers;
mod poll_loop;
mod schema;
