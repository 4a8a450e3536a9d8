//! "Never panics" properties of the parsers the client runs on the hub's answers (issue 19):
//! [`hub::Directive::parse`], [`hub::read_directive_answer`] and [`hub::read_ack_answer`], the
//! same functions the fuzz targets `hub_directive` and `hub_answer` feed.

use hub::{read_ack_answer, read_directive_answer, Directive, Fetched};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, ETAG};
use reqwest::StatusCode;

const GOOD: &str = r#"{"v":1,"generation":3,"desired":{"v":1,"generation":3,"guests":[]},"ops":[{"payload":"e30=","signature":"x"}],"config":{"poll_interval_s":30,"jitter_s":5,"update_window":{"start":"03:30","duration_min":60}},"ack":{"audit_seq":7}}"#;

fn headers(encoding: Option<&[u8]>, etag: Option<&[u8]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = encoding.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        h.insert(CONTENT_ENCODING, v);
    }
    if let Some(v) = etag.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        h.insert(ETAG, v);
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn directive_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Directive::parse(&bytes);
    }

    #[test]
    fn directive_never_panics_on_mutated_good_bodies(index in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut bytes = GOOD.as_bytes().to_vec();
        let i = index % bytes.len();
        bytes[i] = byte;
        bytes.truncate(bytes.len() - cut % 4);
        if let Ok(d) = Directive::parse(&bytes) {
            // What parses re-serializes and parses again to the same directive.
            let again = Directive::parse(&serde_json::to_vec(&d).unwrap()).unwrap();
            prop_assert_eq!(again, d);
        }
    }

    #[test]
    fn answers_never_panic(
        status in prop_oneof![Just(200u16), Just(304u16), 100u16..1000],
        gzip in any::<bool>(),
        encoding in prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        etag in prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            Just(GOOD.as_bytes().to_vec()),
            Just(br#"{"v":1,"ack":{"audit_seq":3}}"#.to_vec()),
        ],
        conditional in any::<bool>(),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let (body, h) = if gzip {
            (hub::gzip_bytes(&body), headers(Some(b"gzip"), etag.as_deref()))
        } else {
            (body, headers(encoding.as_deref(), etag.as_deref()))
        };
        let url = "https://hub.example/api/v1/hosts/h1/desired";
        match read_directive_answer(status, &h, body.clone(), url, conditional) {
            Ok(Fetched::NotModified) => prop_assert!(conditional && status == StatusCode::NOT_MODIFIED),
            Ok(Fetched::Changed { .. }) => prop_assert_eq!(status, StatusCode::OK),
            Err(_) => {}
        }
        let _ = read_ack_answer(status, &h, body, url);
    }
}
