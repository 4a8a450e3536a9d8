//! The hub directive as a whole (`hub::Directive::parse`, run on every 200 answer to
//! `GET …/desired`) never panics, and what it accepts serializes and parses back unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(directive) = hub::Directive::parse(data) {
        let again = serde_json::to_vec(&directive).expect("a directive serializes");
        let back = hub::Directive::parse(&again).expect("a serialized directive parses");
        assert_eq!(back, directive);
    }
});
