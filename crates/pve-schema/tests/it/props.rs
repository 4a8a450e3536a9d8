//! Property tests: arbitrary input never panics, and the 400 text for a property-string parameter
//! is exactly "invalid format - " followed by the parser's error.

use proptest::prelude::*;
use serde_json::{Map, Value};

const PROPERTY_PARAMS: [&str; 5] = ["net0", "mp0", "rootfs", "features", "dev0"];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[a-z0-9=,:;/._ -]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z0-9]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings built from the vocabulary of LXC property strings, so many of them get past the
/// first checks and reach the inner rules.
fn property_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("bridge"),
        Just("ip"),
        Just("ip6"),
        Just("gw"),
        Just("hwaddr"),
        Just("mtu"),
        Just("tag"),
        Just("firewall"),
        Just("mp"),
        Just("size"),
        Just("backup"),
        Just("volume"),
        Just("nesting"),
        Just("mount"),
        Just("mountoptions"),
        Just("acl"),
        Just("x"),
        Just(""),
    ];
    let value = prop_oneof![
        Just("eth0".to_owned()),
        Just("vmbr0".to_owned()),
        Just("dhcp".to_owned()),
        Just("10.0.0.1/24".to_owned()),
        Just("yes".to_owned()),
        Just("8G".to_owned()),
        Just("/data/..".to_owned()),
        Just("local:8".to_owned()),
        "[ -~]{0,12}",
    ];
    prop::collection::vec((key, value, any::<bool>()), 0..6).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(k, v, bare)| if bare { v } else { format!("{k}={v}") })
            .collect::<Vec<_>>()
            .join(",")
    })
}

proptest! {
    #[test]
    fn property_string_errors_are_the_parser_errors(idx in 0usize..5, text in prop_oneof![property_text(), ".{0,60}"]) {
        let ep = pve_schema::embedded().find("PUT", "/nodes/pve/lxc/101/config").expect("found");
        let name = PROPERTY_PARAMS[idx];
        let mut params = Map::new();
        params.insert(name.to_owned(), Value::String(text.clone()));
        let report = ep.check_params(&params);
        let parsed = ep.parse_property_param(name, &text);
        match (report.errors.0.get(name), parsed) {
            (None, Ok(_)) => {}
            (Some(msg), Err(err)) => {
                let nl = if err.ends_with('\n') { "" } else { "\n" };
                prop_assert_eq!(msg, &format!("invalid format - {err}{nl}"));
            }
            (msg, parsed) => prop_assert!(false, "validate {:?} vs parse {:?} for {:?}", msg, parsed, text),
        }
    }

    #[test]
    fn arbitrary_json_never_panics(values in prop::collection::vec(json_value(), 5)) {
        let schema = pve_schema::embedded();
        for (method, path) in [("POST", "/nodes/pve/lxc"), ("PUT", "/nodes/pve/lxc/101/config"), ("POST", "/nodes/pve/vzdump"), ("POST", "/storage")] {
            let ep = schema.find(method, path).expect("found");
            let mut params = Map::new();
            for (name, value) in ["net0", "rootfs", "onboot", "prune-backups", "vmid"].iter().zip(&values) {
                params.insert((*name).to_owned(), value.clone());
            }
            let _ = ep.check_params(&params);
            let _ = ep.validate_returns(&values[0]);
        }
        for value in &values {
            let _ = pve_schema::parse_boolean(value);
        }
    }

    #[test]
    fn arbitrary_paths_never_panic(path in "(/[a-z0-9{}:._-]{0,8}){0,8}", method in "[A-Za-z]{0,7}") {
        if let Ok(ep) = pve_schema::embedded().find(&method, &path) {
            let _ = ep.validate_params(&Map::new());
        }
    }
}
