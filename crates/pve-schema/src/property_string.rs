//! Property strings: `name=eth0,bridge=vmbr0,firewall=1`, `local-lvm:8,mp=/data`, ...
//!
//! Mirrors `PVE::JSONSchema::parse_property_string` (pve-common `JSONSchema.pm`) as the reference
//! checker does: comma-separated `key=value` parts plus at most one bare value for the format's
//! `default_key`, aliases resolved, booleans normalised with the lenient `parse_boolean`
//! (`on/off/yes/no/true/false`), then the result is checked like an object that allows no
//! additional properties. Errors of that check come back as one "format error" text listing
//! `path.key: message` lines in key order, as PVE raises them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::check::{check_members, ErrorMap};
use crate::scalar::{parse_boolean_text, py_is_space, truthy};

/// Parse `data` against `format` and validate the result. `path` prefixes error keys (the parameter
/// name, e.g. `net0`). `prune` enables the `prune-backups` rule that `keep-all` excludes the others.
/// Returns the parsed key/value pairs in the order they were set.
pub(crate) fn parse(
    format: &Map<String, Value>,
    data: &str,
    path: &str,
    notes: &mut Vec<String>,
    prune: bool,
) -> Result<Map<String, Value>, String> {
    let mut res: Map<String, Value> = Map::new();
    let mut default_key: Option<&str> = None;
    for part in data.split(',') {
        if part.chars().all(py_is_space) {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if res.contains_key(k) {
                    return Err(format!(
                        "duplicate key in comma-separated list property: {k}"
                    ));
                }
                let mut key = k.to_owned();
                let mut schema = format.get(k).filter(|s| truthy(Some(s)));
                if let Some(alias) = schema
                    .and_then(|s| s.get("alias"))
                    .filter(|a| truthy(Some(a)))
                {
                    // keyAlias (qemu `net[n]`: `virtio=MAC` stores `model=virtio`) is honoured like
                    // PVE does; the reference checker ignores it.
                    if let Some(Value::String(key_alias)) = schema.and_then(|s| s.get("keyAlias")) {
                        if res.contains_key(key_alias) {
                            return Err(format!("key alias '{key_alias}' is already defined"));
                        }
                        res.insert(key_alias.clone(), Value::String(k.to_owned()));
                    }
                    key = alias
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| alias.to_string());
                    schema = format.get(&key).filter(|s| truthy(Some(s)));
                    if res.contains_key(&key) {
                        return Err(format!("key '{key}' is already defined (via alias)"));
                    }
                }
                let Some(schema) = schema else {
                    return Err(format!(
                        "invalid key in comma-separated list property: {key}"
                    ));
                };
                res.insert(key, Value::String(normalise(schema, v)));
            }
            None => {
                if let Some(key) = default_key {
                    return Err(format!(
                        "duplicate key in comma-separated list property: {key}"
                    ));
                }
                if let Some((key, schema)) =
                    format.iter().find(|(_, s)| truthy(s.get("default_key")))
                {
                    default_key = Some(key);
                    if res.contains_key(key) {
                        return Err(format!(
                            "duplicate key in comma-separated list property: {key}"
                        ));
                    }
                    res.insert(key.clone(), Value::String(normalise(schema, part)));
                } else {
                    return Err(
                        "value without key, but schema does not define a default key".to_owned(),
                    );
                }
            }
            Some(_) => return Err("missing key in comma-separated list property".to_owned()),
        }
    }

    let mut errors = ErrorMap::new();
    check_members(
        path,
        format,
        &res,
        Some(&json!(0)),
        &mut errors,
        notes,
        None,
    );
    if !errors.is_empty() {
        let mut msg = String::from("format error\n");
        for (k, v) in &errors {
            msg.push_str(&format!("{k}: {v}\n"));
        }
        return Err(msg);
    }
    if prune && keep_all_with_others(&res) {
        return Err("keep-all cannot be set together with other options.".to_owned());
    }
    Ok(res)
}

/// Booleans inside property strings accept `on/off/yes/no/true/false` and are stored as `1`/`0`.
fn normalise(schema: &Value, v: &str) -> String {
    if schema.get("type").and_then(Value::as_str) == Some("boolean") {
        if let Some(b) = parse_boolean_text(v) {
            return if b { "1" } else { "0" }.to_owned();
        }
    }
    v.to_owned()
}

/// `keep-all=1` together with any positive `keep-*` (pve-common `JSONSchema.pm` validate_prune_backups).
fn keep_all_with_others(res: &Map<String, Value>) -> bool {
    let keep_all = res.get("keep-all").and_then(Value::as_str) == Some("1");
    let positive = res
        .iter()
        .filter(|(k, _)| k.as_str() != "keep-all")
        .filter_map(|(_, v)| v.as_str())
        .any(|v| !v.starts_with('-') && v.chars().any(|c| c.is_numeric() && c != '0'));
    keep_all && positive
}

/// Convert a parsed property string into plain key/value text.
pub(crate) fn to_text_map(res: Map<String, Value>) -> BTreeMap<String, String> {
    res.into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net_format() -> Map<String, Value> {
        let v = json!({
            "name": {"type": "string", "pattern": "[-_.\\w\\d]+"},
            "bridge": {"type": "string", "optional": 1, "format": "pve-bridge-id"},
            "firewall": {"type": "boolean", "optional": 1},
            "mtu": {"type": "integer", "minimum": 64, "maximum": 65535, "optional": 1},
            "ip": {"type": "string", "optional": 1, "format": "pve-ipv4-config"}
        });
        v.as_object().cloned().unwrap_or_default()
    }

    fn run(data: &str) -> Result<Map<String, Value>, String> {
        parse(&net_format(), data, "net0", &mut Vec::new(), false)
    }

    #[test]
    fn parses_and_normalises_booleans() {
        let res = run("name=eth0,bridge=vmbr0,firewall=yes,ip=dhcp").expect("valid");
        assert_eq!(res["name"], "eth0");
        assert_eq!(res["firewall"], "1");
        assert_eq!(res["ip"], "dhcp");
    }

    #[test]
    fn error_texts_match_pve() {
        assert_eq!(
            run("name=eth0,name=eth1").unwrap_err(),
            "duplicate key in comma-separated list property: name"
        );
        assert_eq!(
            run("name=eth0,foo=1").unwrap_err(),
            "invalid key in comma-separated list property: foo"
        );
        assert_eq!(
            run("name=eth0,mtu=").unwrap_err(),
            "missing key in comma-separated list property"
        );
        assert_eq!(
            run("eth0").unwrap_err(),
            "value without key, but schema does not define a default key"
        );
        assert_eq!(
            run("name=eth0,mtu=10,firewall=maybe").unwrap_err(),
            "format error\nnet0.firewall: type check ('boolean') failed - got 'maybe'\n\
             net0.mtu: value must have a minimum value of 64\n"
        );
        assert_eq!(
            run("bridge=vmbr0").unwrap_err(),
            "format error\nnet0.name: property is missing and it is not optional\n"
        );
    }

    #[test]
    fn default_key_and_aliases() {
        let format = json!({
            "volume": {"type": "string", "default_key": 1},
            "file": {"alias": "volume"},
            "size": {"type": "string", "optional": 1, "format": "disk-size"}
        });
        let format = format.as_object().cloned().unwrap_or_default();
        let res = parse(&format, "local:8,size=8G", "rootfs", &mut Vec::new(), false).expect("ok");
        assert_eq!(res["volume"], "local:8");
        let res = parse(&format, "file=local:8", "rootfs", &mut Vec::new(), false).expect("ok");
        assert_eq!(res["volume"], "local:8");
        assert_eq!(
            parse(&format, "local:8,file=x", "rootfs", &mut Vec::new(), false).unwrap_err(),
            "key 'volume' is already defined (via alias)"
        );
        assert_eq!(
            parse(&format, "a,b", "rootfs", &mut Vec::new(), false).unwrap_err(),
            "duplicate key in comma-separated list property: volume"
        );
    }
}
