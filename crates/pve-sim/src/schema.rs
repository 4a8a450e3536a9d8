//! Thin access to the embedded official schema (crate `pve-schema`) for the parts of the
//! simulator that need type or format information outside request validation.

use serde_json::Value;

/// The `info` object of `METHOD PATH` (a concrete path), or `Value::Null` when the schema
/// does not know it. Used for lookups of property formats and return types.
pub fn info(method: &str, path: &str) -> &'static Value {
    static NULL: Value = Value::Null;
    match pve_schema::embedded().find(method, path) {
        Ok(endpoint) => endpoint.info,
        Err(_) => &NULL,
    }
}

/// The parameter property schema of a CT config option (`net0` → `net[n]`), as declared by
/// `POST /nodes/{node}/lxc`.
pub fn ct_param(key: &str) -> Option<&'static Value> {
    let props = info("POST", "/nodes/pve/lxc")
        .get("parameters")?
        .get("properties")?;
    props.get(key).or_else(|| props.get(indexed(key)?.as_str()))
}

/// The return type of a CT config option as declared by `GET .../config`.
pub fn ct_conf_return(key: &str) -> Option<&'static Value> {
    let props = info("GET", "/nodes/pve/lxc/100/config")
        .get("returns")?
        .get("properties")?;
    props.get(key).or_else(|| props.get(indexed(key)?.as_str()))
}

/// Whether `key` is an option that lives in a CT config file (`hostname`, `net0`, ...).
pub fn is_ct_conf_key(key: &str) -> bool {
    key != "digest" && key != "lxc" && ct_conf_return(key).is_some()
}

/// `net0` → `net[n]`, `mp12` → `mp[n]`; `None` when the key carries no index.
pub fn indexed(key: &str) -> Option<String> {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    (base.len() < key.len() && !base.is_empty()).then(|| format!("{base}[n]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_keys_map_to_schema_names() {
        assert_eq!(indexed("net0").as_deref(), Some("net[n]"));
        assert_eq!(indexed("mp12").as_deref(), Some("mp[n]"));
        assert_eq!(indexed("hostname"), None);
    }
}
