//! The hub's HTTP answers as the client reads them once the body is in memory
//! (`hub::read_directive_answer`, `hub::read_ack_answer`): status, `Content-Encoding`, `ETag`,
//! gzip within the bound, then the directive or the ack. Never panics; a 304 is accepted only
//! for a conditional request and a directive only from a 200.
//!
//! Input: status (2 bytes), flags (1: conditional, 2: gzip the body), `Content-Encoding` up to
//! NUL, `ETag` up to NUL, body.
#![no_main]

use felhom_fuzz::{status, Input};
use http::header::{CONTENT_ENCODING, ETAG};
use http::{HeaderMap, HeaderValue, StatusCode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let status = StatusCode::from_u16(status(&mut input)).expect("100..=999");
    let flags = input.byte();
    let encoding = input.field();
    let etag = input.field();
    let mut body = input.rest().to_vec();
    let mut headers = HeaderMap::new();
    if flags & 2 != 0 {
        body = hub::gzip_bytes(&body);
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else if let Ok(v) = HeaderValue::from_bytes(encoding) {
        if !encoding.is_empty() {
            headers.insert(CONTENT_ENCODING, v);
        }
    }
    if let Ok(v) = HeaderValue::from_bytes(etag) {
        if !etag.is_empty() {
            headers.insert(ETAG, v);
        }
    }
    let conditional = flags & 1 != 0;
    let url = "https://hub.example.invalid/api/v1/hosts/h1/desired";
    match hub::read_directive_answer(status, &headers, body.clone(), url, conditional) {
        Ok(hub::Fetched::NotModified) => {
            assert!(conditional && status == StatusCode::NOT_MODIFIED)
        }
        Ok(hub::Fetched::Changed { .. }) => assert_eq!(status, StatusCode::OK),
        Err(_) => {}
    }
    if let Ok(ack) = hub::read_ack_answer(status, &headers, body, url) {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ack.v, hub::PROTOCOL_VERSION);
    }
});
