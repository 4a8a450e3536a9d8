//! What the local API reads from a request besides the token (`localapi::request`): the body
//! fields per route, the `{"name": …}` of snapshot and rollback, the empty body of backup, the
//! query string's names and the declared `Content-Length`. Never panics; a snapshot name that
//! parses is one PVE's rule accepts and parses again unchanged.
//!
//! Input: route selector (1 byte), query up to NUL, `Content-Length` value up to NUL, body.
#![no_main]

use felhom_fuzz::Input;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue};
use localapi::request;

const ROUTES: [&str; 8] = [
    "GET /storage",
    "POST /snapshot",
    "POST /rollback",
    "POST /backup",
    "GET /backup/due",
    "GET /backup/status",
    "GET /restore-test/status",
    "other",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let route = ROUTES[usize::from(input.byte()) % ROUTES.len()];
    let query = input.field();
    let length = input.field();
    let body = input.rest();
    let _ = request::check_body_fields(route, body);
    let _ = request::empty_object(body);
    if let Ok(name) = request::snapshot_name(body) {
        let again: pve::SnapshotName = name.as_str().parse().expect("an accepted name parses");
        assert_eq!(again, name);
    }
    if let Ok(query) = std::str::from_utf8(query) {
        let refusal = request::query_refusal(query);
        assert_eq!(refusal.code(), localapi::Code::UnexpectedParameter);
    }
    if let Ok(v) = HeaderValue::from_bytes(length) {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, v);
        let _ = request::declared_length(&headers);
    }
});
