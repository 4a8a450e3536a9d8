//! The desired state, whole documents, through the parser the daemon runs on the hub's
//! `desired` and on the local desired file: `reconcile::parse_desired`, which parses every
//! section it knows (the `backup` section the local API reads, the `storage` manifest and the
//! guests' `volumes` included). It may not panic, and a document that parses round-trips: its
//! canonical form parses to the same document (same SHA-256, same guests and volumes, same
//! backup policies, same storage targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) = reconcile::parse_desired(data) else {
        return;
    };
    let again = reconcile::parse_desired(doc.canonical.as_bytes())
        .expect("the canonical form of an accepted document parses");
    assert_eq!(again.sha256, doc.sha256);
    assert_eq!(again.guests, doc.guests);
    assert_eq!(again.backup, doc.backup);
    assert_eq!(again.storage, doc.storage);
});
