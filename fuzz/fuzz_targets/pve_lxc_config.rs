//! A guest's config as the client reads it (`pve::decode_answer`, then `pve::decode_data` into
//! `pve::LxcConfig`: lenient numbers and flags, the description quirk, `lxc` raw pairs), and
//! the property strings inside it (`netN`, `mpN`, `features`) through `pve::property_value`.
//! Never panics.
//!
//! Input: status (2 bytes), body.
#![no_main]

use felhom_fuzz::{status, Input};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let status = status(&mut input);
    let path = "/nodes/pve1/lxc/101/config";
    let Ok(data) = pve::decode_answer("GET", path, status, "Reason", input.rest()) else {
        return;
    };
    let Ok(cfg) = pve::decode_data::<pve::LxcConfig>("GET", path, data) else {
        return;
    };
    for (_, net) in cfg.nets() {
        let _ = pve::property_value(net, "hwaddr");
    }
    for (_, mp) in cfg.mount_points() {
        let _ = pve::property_value(mp, "mp");
    }
    if let Some(features) = cfg.other.get("features") {
        let _ = pve::property_value(features, "nesting");
    }
});
