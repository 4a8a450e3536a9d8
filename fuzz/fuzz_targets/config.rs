//! The configuration file and its environment overlay (`felhom_agent::config::parse`, the pure
//! first half of `config::load`: JSON, key table, `FELHOM_AGENT_<SECTION>_<KEY>` variables,
//! serde) never panic.
//!
//! Input: the file text up to NUL, then environment entries `NAME=VALUE` separated by NUL
//! (names and values may be any bytes, as on Linux).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use felhom_fuzz::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let Ok(text) = std::str::from_utf8(input.field()) else {
        return;
    };
    let mut env = Vec::new();
    loop {
        let entry = input.field();
        if entry.is_empty() {
            break;
        }
        let (name, value) = match entry.iter().position(|&b| b == b'=') {
            Some(i) => (&entry[..i], &entry[i + 1..]),
            None => (entry, &[][..]),
        };
        env.push((
            OsString::from_vec(name.to_vec()),
            OsString::from_vec(value.to_vec()),
        ));
    }
    let _ = felhom_agent::config::parse(Path::new("/etc/felhom-agent/config.json"), text, &env);
});
