//! The validator: `check_prop`, `check_type` and `check_object` of pve-common `JSONSchema.pm`,
//! ported from the reference checker (`reference/pve_schema.py`) with its check order and texts.
//!
//! Per scalar the order is: type, format, pattern, maxLength, minLength, maximum, minimum, enum;
//! the first failure ends the checks of that value. Errors are keyed by parameter path (`net0`,
//! `net0.mtu`, `list[2]`, `_root` for the value itself); several messages for one key are joined
//! with a newline.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::format::check_format;
use crate::pattern;
use crate::scalar::{as_float, is_integer, is_number, perl_str, python_str, truthy};

/// Error messages keyed by parameter path, as in PVE's 400 `errors` object.
pub(crate) type ErrorMap = BTreeMap<String, String>;

/// Upper bounds (exclusive) for indexed parameters `name<N>` of one API subtree.
pub(crate) type IndexLimits = &'static [(&'static str, u64)];

/// pve-container `LXC/Config.pm`: MAX_LXC_NETWORKS=32, MAX_MOUNT_POINTS=256, MAX_UNUSED_DISKS=256,
/// MAX_DEVICES=256. The apidoc collapses `net0..net31` into `net[n]`; real PVE knows each key.
pub(crate) const LXC_INDEX_LIMITS: IndexLimits =
    &[("net", 32), ("mp", 256), ("unused", 256), ("dev", 256)];

/// `add_error`: an empty path becomes `_root`; repeated keys are joined with a newline (as the
/// reference checker does; see the crate docs for PVE's own separator).
pub(crate) fn add_error(errors: &mut ErrorMap, path: &str, msg: &str) {
    let path = if path.is_empty() { "_root" } else { path };
    errors
        .entry(path.to_owned())
        .and_modify(|e| {
            e.push('\n');
            e.push_str(msg);
        })
        .or_insert_with(|| msg.to_owned());
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The type name of a schema's `type`, or `None` when it imposes no type (missing, empty, `any`).
fn type_name(typ: Option<&Value>) -> Option<Cow<'_, str>> {
    if !truthy(typ) {
        return None;
    }
    let name = match typ? {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(python_str(other)),
    };
    (name != "any").then_some(name)
}

/// `check_type`: `false` (with an error recorded) when `value` does not have type `typ`.
pub(crate) fn check_type(
    path: &str,
    typ: Option<&Value>,
    value: &Value,
    errors: &mut ErrorMap,
) -> bool {
    let Some(typ) = type_name(typ) else {
        return true;
    };
    let typ = typ.as_ref();
    let fail = |errors: &mut ErrorMap, msg: String| {
        add_error(errors, path, &msg);
        false
    };
    match typ {
        "null" => {
            return if value.is_null() {
                true
            } else {
                fail(
                    errors,
                    "type check ('null') failed - value is not null".to_owned(),
                )
            }
        }
        "array" => {
            return value.is_array() || fail(errors, "type check ('array') failed".to_owned());
        }
        "object" => {
            return value.is_object() || fail(errors, "type check ('object') failed".to_owned());
        }
        _ => {}
    }
    match value {
        Value::Array(_) => return fail(errors, format!("type check ('{typ}') failed - got ARRAY")),
        Value::Object(_) => return fail(errors, format!("type check ('{typ}') failed - got HASH")),
        Value::Bool(_) => {
            // JSON true/false decode to JSON::PP::Boolean references in Perl.
            return typ == "boolean"
                || fail(
                    errors,
                    format!("type check ('{typ}') failed - got JSON::PP::Boolean"),
                );
        }
        _ => {}
    }
    let s = perl_str(value);
    match typ {
        "boolean" if s != "0" && s != "1" => {
            fail(errors, format!("type check ('boolean') failed - got '{s}'"))
        }
        "integer" if !is_integer(&s) => {
            fail(errors, format!("type check ('integer') failed - got '{s}'"))
        }
        "number" if !is_number(&s) => {
            fail(errors, format!("type check ('number') failed - got '{s}'"))
        }
        _ => true,
    }
}

/// `check_prop`: validate one value (`None` or JSON null = absent) against its schema.
pub(crate) fn check_prop(
    value: Option<&Value>,
    schema: &Value,
    path: &str,
    errors: &mut ErrorMap,
    notes: &mut Vec<String>,
) {
    // PVE skips alias entries entirely: they are optional and remapped to their target
    // (pve-common `JSONSchema.pm` check_prop, "aliases are always optional"). The reference
    // checker lacks this and reports e.g. qemu `efidisk0.volume` as missing.
    if truthy(schema.get("alias")) {
        return;
    }
    let value = match value {
        None | Some(Value::Null) => {
            if schema.get("type").and_then(Value::as_str) == Some("null") {
                return;
            }
            if !truthy(schema.get("optional")) {
                add_error(errors, path, "property is missing and it is not optional");
            }
            return;
        }
        Some(v) => v,
    };
    if !check_type(path, schema.get("type"), value, errors) {
        return;
    }
    match value {
        Value::Array(items) => {
            if let Some(item_schema @ Value::Object(_)) = schema.get("items") {
                for (i, el) in items.iter().enumerate() {
                    check_prop(
                        Some(el),
                        item_schema,
                        &format!("{path}[{i}]"),
                        errors,
                        notes,
                    );
                }
            }
            return;
        }
        Value::Object(_) => {
            if schema.get("properties").is_some() || schema.get("additionalProperties").is_some() {
                let empty = Map::new();
                let props = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                check_object(
                    path,
                    props,
                    value,
                    schema.get("additionalProperties"),
                    errors,
                    notes,
                    None,
                );
            }
            return;
        }
        _ => {}
    }
    check_scalar(&perl_str(value), schema, path, errors, notes);
}

fn check_scalar(
    s: &str,
    schema: &Value,
    path: &str,
    errors: &mut ErrorMap,
    notes: &mut Vec<String>,
) {
    if let Some(fmt) = schema.get("format").filter(|f| truthy(Some(f))) {
        if let Err(msg) = check_format(fmt, s, path, notes) {
            let nl = if msg.ends_with('\n') { "" } else { "\n" };
            add_error(errors, path, &format!("invalid format - {msg}{nl}"));
            return;
        }
    }
    if let Some(Value::String(pat)) = schema.get("pattern").filter(|p| truthy(Some(p))) {
        let ok = match pattern::compiled(pat) {
            Ok(re) => re.full_match(s),
            Err(err) => {
                notes.push(format!("{path}: pattern {pat:?} not checkable ({err})"));
                true
            }
        };
        if !ok {
            add_error(errors, path, "value does not match the regex pattern");
            return;
        }
    }
    let len = s.chars().count() as f64;
    if let Some(max) = schema.get("maxLength").filter(|v| !v.is_null()) {
        if as_float(max).is_some_and(|max| len > max.trunc()) {
            let msg = format!("value may only be {} characters long", python_str(max));
            add_error(errors, path, &msg);
            return;
        }
    }
    if let Some(min) = schema.get("minLength").filter(|v| !v.is_null()) {
        if as_float(min).is_some_and(|min| len < min.trunc()) {
            let msg = format!("value must be at least {} characters long", python_str(min));
            add_error(errors, path, &msg);
            return;
        }
    }
    if is_number(s) {
        if let Ok(n) = s.parse::<f64>() {
            if let Some(max) = schema.get("maximum").filter(|v| !v.is_null()) {
                if as_float(max).is_some_and(|max| n > max) {
                    let msg = format!("value must have a maximum value of {}", python_str(max));
                    add_error(errors, path, &msg);
                    return;
                }
            }
            if let Some(min) = schema.get("minimum").filter(|v| !v.is_null()) {
                if as_float(min).is_some_and(|min| n < min) {
                    let msg = format!("value must have a minimum value of {}", python_str(min));
                    add_error(errors, path, &msg);
                    return;
                }
            }
        }
    }
    if let Some(Value::Array(choices)) = schema.get("enum") {
        if choices.is_empty() {
            return;
        }
        let texts: Vec<String> = choices.iter().map(python_str).collect();
        if !texts.iter().any(|t| t == s) {
            let msg = format!(
                "value '{s}' does not have a value in the enumeration '{}'",
                texts.join(", ")
            );
            add_error(errors, path, &msg);
        }
    }
}

/// Find the schema for `key`: a direct entry, or the collapsed `name[n]` entry for `name<N>`
/// (with `N` below the subtree's limit). Returns the schema and whether it came from `name[n]`.
/// A literal `name[n]` key is not a parameter PVE knows, so it is not found.
pub(crate) fn lookup_property<'a>(
    props: &'a Map<String, Value>,
    key: &str,
    limits: Option<IndexLimits>,
) -> Option<(&'a Value, bool)> {
    if key.ends_with("[n]") {
        return None;
    }
    if let Some(schema) = props.get(key) {
        return Some((schema, false));
    }
    let split = key.find(|c: char| !c.is_ascii_lowercase())?;
    let (name, index) = key.split_at(split);
    if name.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let schema = props.get(&format!("{name}[n]"))?;
    if let Some(limit) = limits.and_then(|l| l.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)) {
        // An index too large for u64 is certainly above the limit.
        if index.parse::<u64>().map_or(true, |i| i >= limit) {
            return None;
        }
    }
    Some((schema, true))
}

/// `check_object`: required properties first (in schema order), then every given key (in the
/// given order): indexed keys are checked, `requires` is enforced, unknown keys are refused when
/// `additional` is explicitly false and checked against it when it is a schema. Unset
/// `additionalProperties` allows anything, which is what PVE does for `returns` objects.
pub(crate) fn check_object(
    path: &str,
    props: &Map<String, Value>,
    value: &Value,
    additional: Option<&Value>,
    errors: &mut ErrorMap,
    notes: &mut Vec<String>,
    limits: Option<IndexLimits>,
) {
    let Value::Object(obj) = value else {
        add_error(errors, path, "an object is required");
        return;
    };
    check_members(path, props, obj, additional, errors, notes, limits);
}

/// The body of [`check_object`] once `value` is known to be an object.
pub(crate) fn check_members(
    path: &str,
    props: &Map<String, Value>,
    obj: &Map<String, Value>,
    additional: Option<&Value>,
    errors: &mut ErrorMap,
    notes: &mut Vec<String>,
    limits: Option<IndexLimits>,
) {
    for (k, schema) in props {
        if k.ends_with("[n]") {
            continue; // indexed params are never required
        }
        check_prop(obj.get(k), schema, &join_path(path, k), errors, notes);
    }
    for (k, v) in obj {
        let newpath = join_path(path, k);
        if let Some((schema, indexed)) = lookup_property(props, k, limits) {
            if indexed {
                check_prop(Some(v), schema, &newpath, errors, notes);
            }
            if let Some(Value::String(req)) = schema.get("requires") {
                if obj.get(req).is_none_or(Value::is_null) {
                    add_error(
                        errors,
                        &join_path(path, req),
                        &format!("missing property required by '{newpath}'"),
                    );
                }
            }
            continue;
        }
        match additional {
            Some(a @ Value::Object(_)) => check_prop(Some(v), a, &newpath, errors, notes),
            Some(a) if !a.is_null() && !truthy(Some(a)) => add_error(
                errors,
                &newpath,
                "property is not defined in schema and the schema does not allow additional properties",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(schema: Value, value: Value) -> ErrorMap {
        let mut errors = ErrorMap::new();
        check_prop(Some(&value), &schema, "p", &mut errors, &mut Vec::new());
        errors
    }

    fn one(schema: Value, value: Value) -> Option<String> {
        run(schema, value).remove("p")
    }

    #[test]
    fn booleans_are_strict_at_top_level() {
        let b = json!({"type": "boolean"});
        assert_eq!(one(b.clone(), json!(1)), None);
        assert_eq!(one(b.clone(), json!("0")), None);
        assert_eq!(one(b.clone(), json!(true)), None);
        assert_eq!(
            one(b.clone(), json!("true")).as_deref(),
            Some("type check ('boolean') failed - got 'true'")
        );
        assert_eq!(
            one(b, json!(2)).as_deref(),
            Some("type check ('boolean') failed - got '2'")
        );
    }

    #[test]
    fn json_booleans_and_containers_for_scalars() {
        assert_eq!(
            one(json!({"type": "integer"}), json!(true)).as_deref(),
            Some("type check ('integer') failed - got JSON::PP::Boolean")
        );
        assert_eq!(
            one(json!({"type": "string"}), json!(["a"])).as_deref(),
            Some("type check ('string') failed - got ARRAY")
        );
        assert_eq!(
            one(json!({"type": "string"}), json!({})).as_deref(),
            Some("type check ('string') failed - got HASH")
        );
        assert_eq!(one(json!({"type": "string"}), json!(12)), None);
        assert_eq!(
            one(json!({"type": "array"}), json!("x")).as_deref(),
            Some("type check ('array') failed")
        );
    }

    #[test]
    fn integer_and_number_rules() {
        let i = json!({"type": "integer", "minimum": 1, "maximum": "16"});
        assert_eq!(one(i.clone(), json!("+4")), None);
        assert_eq!(one(i.clone(), json!(4.0)), None);
        assert_eq!(
            one(i.clone(), json!(4.5)).as_deref(),
            Some("type check ('integer') failed - got '4.5'")
        );
        assert_eq!(
            one(i.clone(), json!(17)).as_deref(),
            Some("value must have a maximum value of 16")
        );
        assert_eq!(
            one(i, json!("0")).as_deref(),
            Some("value must have a minimum value of 1")
        );
        let n = json!({"type": "number", "minimum": 0.5});
        assert_eq!(
            one(n.clone(), json!("0.25")).as_deref(),
            Some("value must have a minimum value of 0.5")
        );
        assert_eq!(
            one(n, json!("1,5")).as_deref(),
            Some("type check ('number') failed - got '1,5'")
        );
    }

    #[test]
    fn check_order_stops_at_first_failure() {
        let s = json!({"type": "string", "format": "pve-configid", "maxLength": 3, "enum": ["ab"]});
        assert_eq!(
            one(s.clone(), json!("A")).as_deref(),
            Some("invalid format - invalid configuration ID 'A'\n")
        );
        assert_eq!(
            one(s.clone(), json!("abcd")).as_deref(),
            Some("value may only be 3 characters long")
        );
        assert_eq!(
            one(s, json!("abc")).as_deref(),
            Some("value 'abc' does not have a value in the enumeration 'ab'")
        );
        let p = json!({"type": "string", "pattern": "[a-z]+", "minLength": 3});
        assert_eq!(
            one(p.clone(), json!("ab1")).as_deref(),
            Some("value does not match the regex pattern")
        );
        assert_eq!(
            one(p, json!("ab")).as_deref(),
            Some("value must be at least 3 characters long")
        );
    }

    #[test]
    fn objects_requires_and_additional_properties() {
        let props = json!({
            "vmid": {"type": "integer"},
            "storage": {"type": "string", "optional": 1},
            "protected": {"type": "boolean", "optional": 1, "requires": "storage"},
            "notes-template": {"type": "string", "optional": 1, "requires": "storage"},
            "net[n]": {"type": "string", "optional": 1}
        });
        let props = props.as_object().cloned().unwrap_or_default();
        let mut errors = ErrorMap::new();
        let value =
            json!({"protected": 1, "notes-template": "x", "net32": "a", "net[n]": "b", "zz": 1});
        check_object(
            "",
            &props,
            &value,
            Some(&json!(0)),
            &mut errors,
            &mut Vec::new(),
            Some(LXC_INDEX_LIMITS),
        );
        assert_eq!(errors["vmid"], "property is missing and it is not optional");
        assert_eq!(
            errors["storage"],
            "missing property required by 'protected'\nmissing property required by 'notes-template'"
        );
        let undefined =
            "property is not defined in schema and the schema does not allow additional properties";
        assert_eq!(errors["net32"], undefined);
        assert_eq!(errors["net[n]"], undefined);
        assert_eq!(errors["zz"], undefined);
        assert_eq!(errors.len(), 5);

        // Unset additionalProperties (returns objects) allows extra keys.
        let mut errors = ErrorMap::new();
        check_object(
            "",
            &props,
            &json!({"vmid": 1, "extra": 1}),
            None,
            &mut errors,
            &mut Vec::new(),
            None,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn arrays_check_items_with_indexed_paths() {
        let s = json!({"type": "array", "items": {"type": "integer"}});
        let errors = run(s, json!([1, "x", 3]));
        assert_eq!(errors["p[1]"], "type check ('integer') failed - got 'x'");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn null_and_missing() {
        assert_eq!(one(json!({"type": "null"}), json!(null)), None);
        assert_eq!(
            one(json!({"type": "null"}), json!(1)).as_deref(),
            Some("type check ('null') failed - value is not null")
        );
        assert_eq!(
            one(json!({"type": "string"}), json!(null)).as_deref(),
            Some("property is missing and it is not optional")
        );
    }
}
