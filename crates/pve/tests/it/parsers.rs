//! "Never panics" properties of every parser the client runs on PVE's answers (issue 19): the
//! same public functions the fuzz targets feed (`fuzz/fuzz_targets/pve_*.rs`), so CI covers
//! that ground on stable. Each also asserts the round trip where one exists.

use proptest::prelude::*;
use pve::{
    append_property, decode_answer, decode_data, decode_task_ref, property_value, LxcConfig,
    StorageConfig, StorageContent, StorageStatus, TaskListEntry, TaskLogLine, TaskOutcome,
    TaskStatus, Upid,
};
use serde_json::Value;

/// Small JSON values of every kind, nested a few levels: the shapes PVE could send.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        "UPID:[a-z0-9]{1,4}:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:[a-z]{1,8}:[0-9]{0,3}:[a-z@!]{1,8}:"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("upid".to_owned()),
                    Just("status".to_owned()),
                    Just("exitstatus".to_owned()),
                    Just("volid".to_owned()),
                    Just("n".to_owned()),
                    Just("t".to_owned()),
                    Just("lxc".to_owned()),
                    "(net|mp)[0-9]{1,2}",
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Everything the client decodes `data` into, as it would for each endpoint.
fn decode_every_shape(data: &Value) {
    let _ = decode_data::<TaskStatus>("GET", "/status", data.clone()).map(|s| {
        let _ = s.exitstatus.as_deref().map(TaskOutcome::from_exitstatus);
    });
    let _ = decode_data::<Vec<TaskLogLine>>("GET", "/log", data.clone());
    let _ = decode_data::<Vec<TaskListEntry>>("GET", "/tasks", data.clone());
    let _ = decode_data::<Vec<StorageContent>>("GET", "/content", data.clone());
    let _ = decode_data::<Vec<StorageStatus>>("GET", "/storage", data.clone());
    let _ = decode_data::<Vec<StorageConfig>>("GET", "/storage", data.clone());
    let _ = decode_data::<LxcConfig>("GET", "/config", data.clone());
    let _ = decode_task_ref("POST", "/start", data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn upid_never_panics_and_round_trips(s in prop_oneof![
        "\\PC{0,90}",
        "UPID:[a-zA-Z0-9-]{1,6}:[0-9A-Fa-f]{7,9}:[0-9A-Fa-f]{7,10}:[0-9A-Fa-f]{7,9}:[^:]{0,6}:[^:]{0,4}:[^:]{0,8}:?",
    ]) {
        if let Ok(u) = s.parse::<Upid>() {
            prop_assert_eq!(u.to_string(), s.clone());
            let again = Upid::new(u.node(), u.pid(), u.pstart(), u.starttime(), u.task_type(), u.id(), u.user());
            let again = again.expect("a parsed UPID's fields render to a UPID");
            prop_assert_eq!(
                (again.node(), again.pid(), again.pstart(), again.starttime(), again.task_type(), again.id(), again.user()),
                (u.node(), u.pid(), u.pstart(), u.starttime(), u.task_type(), u.id(), u.user())
            );
        }
    }

    #[test]
    fn property_strings_never_panic_and_append_round_trips(
        s in "[a-z0-9=,: ./-]{0,60}|\\PC{0,40}",
        key in "[a-z]{1,8}",
        value in "[A-Za-z0-9:=._/-]{0,20}",
    ) {
        let _ = property_value(&s, &key);
        if property_value(&s, &key).is_none() {
            let mut rendered = s.clone();
            append_property(&mut rendered, &key, &value);
            prop_assert_eq!(property_value(&rendered, &key), Some(value.as_str()));
        }
    }

    #[test]
    fn answers_never_panic(status in prop_oneof![Just(200u16), any::<u16>()], reason in "\\PC{0,30}", body in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(data) = decode_answer("GET", "/x", status, &reason, &body) {
            decode_every_shape(&data);
        }
    }

    #[test]
    fn json_answers_never_panic(status in prop_oneof![Just(200u16), 400u16..600], data in json()) {
        let body = serde_json::json!({"data": data, "message": "x\n", "errors": {"vmid": "bad"}}).to_string();
        if let Ok(data) = decode_answer("GET", "/x", status, "Reason", body.as_bytes()) {
            decode_every_shape(&data);
        }
    }
}
