//! The official Proxmox VE 9.1 API schema, embedded, and a validator that answers like PVE.
//!
//! This crate owns `reference/pve-apidoc.json` (compiled in, parsed once on first use by
//! [`embedded`]) and a port of the reference checker `reference/pve_schema.py`, which mirrors
//! pve-common `PVE::JSONSchema`: the same check order (type, format, pattern, lengths, range,
//! enum), the same error texts, keyed like the `errors` object of PVE's HTTP 400
//! "Parameter verification failed." response. The simulator validates every request with it and
//! tests check the client's requests against it. It never does I/O, never logs and never talks
//! HTTP: callers map [`FindError`] to 501 and [`ParamErrors`] to 400 themselves.
//!
//! Start reading at [`Schema::find`] and [`Endpoint::validate_params`]; the rules live in
//! `check.rs` (objects and scalars), `format.rs` (named formats), `property_string.rs`
//! (`net0=name=eth0,...`) and `pattern.rs` (Perl regexes for Rust).
//!
//! Known differences from PVE that this crate shares with the reference checker: several messages
//! for one key are joined with a newline, whereas PVE's `add_error` joins them with the two
//! characters `\n` (`join('\n', ...)` in single quotes); named formats the checker does not
//! implement are not checked (see [`Report::notes`]); `oneOf`/`type-property` schemas (SDN fabrics)
//! are not interpreted.
//!
//! Where the checker itself differs from PVE, this crate follows PVE: alias entries of a
//! property-string format are never required (qemu `efidisk0=local:1` is valid), `keyAlias` is
//! honoured (qemu `net0=virtio=MAC` sets `model`), and a literal `net[n]` key is an unknown
//! parameter rather than being accepted unchecked.

mod check;
mod error;
mod format;
mod ip;
mod pattern;
mod property_string;
mod scalar;
mod schema;

use std::sync::OnceLock;

pub use error::{Error, FindError};
pub use scalar::{parse_boolean, parse_boolean_text};
pub use schema::{parse_property_string, Endpoint, ParamErrors, Report, Schema};

/// The schema file compiled into the crate (Proxmox VE 9.1, pve-docs 9.1.3).
pub const EMBEDDED_JSON: &str = include_str!("../../../reference/pve-apidoc.json");

/// The embedded schema, parsed on first use. Panics only if the embedded file is corrupt, which
/// is a build-time asset checked by this crate's tests.
pub fn embedded() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::from_json(EMBEDDED_JSON).expect("embedded pve-apidoc.json is a valid schema")
    })
}

/// Every distinct `pattern` string in a schema value (recursively), e.g. to precompile them.
pub fn patterns(value: &serde_json::Value) -> Vec<&str> {
    fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(p)) = map.get("pattern") {
                    out.push(p);
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out
}

/// Compile a schema `pattern` (Perl `qr//` source) the way the validator does; `Err` carries the
/// compile errors. Exposed so tests can prove every pattern of the schema is usable.
pub fn compile_pattern(pattern: &str) -> Result<(), String> {
    pattern::compile(pattern).map(|_| ())
}

/// Validate one value against one schema (a parameter's or a `returns` schema) with the same rules
/// as [`Endpoint::validate_params`]; errors about the value itself are keyed `_root`.
pub fn check_value(
    schema: &serde_json::Value,
    value: &serde_json::Value,
) -> Result<(), ParamErrors> {
    let mut errors = check::ErrorMap::new();
    check::check_prop(Some(value), schema, "", &mut errors, &mut Vec::new());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ParamErrors(errors))
    }
}
