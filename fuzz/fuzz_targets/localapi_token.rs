//! The local API's `Authorization` header (`localapi::request::bearer`, the gate's first step)
//! and the token format under it (`localapi::token::parse`) never panic; only `Bearer ` and a
//! token of exactly the `fla_<16 hex>_<64 hex>` shape parse, and the id is the one it carries.
#![no_main]

use http::HeaderValue;
use localapi::token::{self, TOKEN_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        if let Some(presented) = localapi::request::bearer(&value) {
            assert!(data.starts_with(b"Bearer fla_"));
            assert_eq!(data.len(), 7 + TOKEN_LEN);
            assert_eq!(presented.id().to_string().as_bytes(), &data[11..27]);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(presented) = token::parse(s) {
            assert_eq!(s.len(), TOKEN_LEN);
            assert_eq!(presented.id().to_string(), s[4..20]);
        }
    }
});
