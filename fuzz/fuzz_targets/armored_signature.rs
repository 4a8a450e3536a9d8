//! The armored SSHSIG parser must never panic, whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = authz::parse_armored(data);
});
