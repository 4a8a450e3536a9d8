//! The desired state, whole documents, through the parsers the daemon runs on the hub's
//! `desired` and on the local desired file: `reconcile::parse_desired` (the engine's model) and
//! `felhom_agent::localapi_wiring::parse_backup_section` (the `backup` section the local API
//! reads from the last accepted state). Neither may panic; a backup section that parses
//! serializes and parses back to the same policies.
#![no_main]

use localapi::BackupSection;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = reconcile::parse_desired(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(section)) = felhom_agent::localapi_wiring::parse_backup_section(text) {
        let json = serde_json::to_value(&section).expect("a backup section serializes");
        let back: BackupSection = serde_json::from_value(json).expect("and parses back");
        assert_eq!(back, section);
    }
});
