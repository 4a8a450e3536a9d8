//! Request parameter parsing as pve-http-server does it (`AnyEvent.pm:923-947,1379-1391`,
//! `HTTPServer.pm:160-168`): form or JSON bodies, query merged over the body, repeated form
//! keys become arrays, path placeholders become parameters and must not conflict.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::envelope::ApiError;

/// Parse `a=1&b=2&b=3` into `{a:"1", b:["2","3"]}`.
pub fn parse_form(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| ApiError::param("body", format!("unable to parse form data - {e}")))?;
    let mut out = Map::new();
    for (k, v) in pairs {
        match out.get_mut(&k) {
            None => {
                out.insert(k, Value::String(v));
            }
            Some(Value::Array(list)) => list.push(Value::String(v)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v)]);
            }
        }
    }
    Ok(out)
}

/// Parse a POST/PUT body by content type: `application/json` (exact media type, parameters
/// after `;` ignored) or form-urlencoded (also the default without a content type).
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media.as_deref() == Some("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(Value::Null) => Ok(Map::new()),
            Ok(_) => Err(ApiError::param("body", "JSON body must be an object")),
            Err(e) => Err(ApiError::param(
                "body",
                format!("unable to parse JSON body - {e}"),
            )),
        }
    } else {
        parse_form(body)
    }
}

/// The text of a scalar parameter value, for comparisons with path values.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

/// Merge the path placeholders into the parameters. A parameter that repeats a placeholder
/// with another value gives PVE's 400 "duplicate parameter (already defined in URI) with
/// conflicting values!".
pub fn merge_path(
    mut params: Map<String, Value>,
    path_params: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, ApiError> {
    for (k, v) in path_params {
        if let Some(given) = params.get(k) {
            if value_text(given).as_deref() != Some(v.as_str()) {
                return Err(ApiError::param(
                    k,
                    "duplicate parameter (already defined in URI) with conflicting values!",
                ));
            }
        }
        params.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_form_keys_become_arrays() {
        let m = parse_form(b"a=1&b=x&b=y&b=z").expect("form");
        assert_eq!(Value::Object(m), json!({"a":"1","b":["x","y","z"]}));
    }

    #[test]
    fn json_body_needs_exact_media_type() {
        let m = parse_body(Some("application/json; charset=utf-8"), br#"{"a":1}"#).expect("json");
        assert_eq!(m["a"], json!(1));
        let m = parse_body(None, b"a=1").expect("form");
        assert_eq!(m["a"], json!("1"));
    }

    #[test]
    fn conflicting_path_value_is_rejected() {
        let path = BTreeMap::from([("vmid".to_string(), "101".to_string())]);
        let ok = merge_path(parse_form(b"vmid=101").expect("form"), &path).expect("same value");
        assert_eq!(ok["vmid"], json!("101"));
        let err = merge_path(parse_form(b"vmid=102").expect("form"), &path).expect_err("conflict");
        assert_eq!(
            err,
            ApiError::param(
                "vmid",
                "duplicate parameter (already defined in URI) with conflicting values!"
            )
        );
    }
}
