//! The wire-form parser, and the envelope/signature parsers on what it yields, must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(wire) = authz::wire::parse_wire(data) {
        let _ = authz::parse_payload(&wire.payload);
        let _ = authz::parse_armored(wire.signature.as_bytes());
    }
});
