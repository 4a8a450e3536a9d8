//! Integration tests of pve-schema.
//!
//! - `embedded`: the compiled-in schema: every pattern compiles, every method is found from a
//!   concrete path, empty parameters never panic and only report required parameters.
//! - `crosscheck`: a corpus of requests checked by both this crate and the reference checker
//!   `reference/pve_schema.py`; validity, error keys and texts must agree.
//! - `props`: property tests for property-string parameters and arbitrary JSON values.
//! - `reference_copy`: the vendored schema and checker equal the shared reference copies.

mod crosscheck;
mod embedded;
mod props;
mod reference_copy;
