//! The operators file parser (`authz::Operators::parse`, what `Operators::load` runs on the
//! file's bytes) never panics; whatever it accepts gives every operator at least one role.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = authz::Operators::parse(data) {
        for op in ops.iter() {
            assert!(!op.roles().is_empty());
        }
    }
});
