//! PVE property strings (`netN`, `mpN`, `features`, `rootfs`) as the client reads them
//! (`pve::property_value`) and renders into them (`pve::append_property`, how a `netN`'s
//! current `hwaddr` is resent): never panics, and a key appended where it was absent reads back.
//!
//! Input: the property string up to NUL, the key up to NUL, the value.
#![no_main]

use felhom_fuzz::Input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (Ok(s), Ok(key), Ok(value)) = (
        std::str::from_utf8(input.field()),
        std::str::from_utf8(input.field()),
        std::str::from_utf8(input.rest()),
    ) else {
        return;
    };
    for k in [key, "hwaddr", "name", "bridge", "mp", "size", "nesting"] {
        let _ = pve::property_value(s, k);
    }
    // The round trip holds for what the client appends: a key that is a plain word, a value
    // from a property string (no comma, no outer whitespace).
    let plain_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric());
    if plain_key
        && !value.contains(',')
        && value.trim() == value
        && pve::property_value(s, key).is_none()
    {
        let mut rendered = s.to_owned();
        pve::append_property(&mut rendered, key, value);
        assert_eq!(pve::property_value(&rendered, key), Some(value));
    }
});
