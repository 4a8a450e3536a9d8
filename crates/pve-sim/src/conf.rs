//! CT configuration files in PVE's `.conf` format: rendering, digest, description encoding,
//! property strings and the JSON typing of `GET .../config`.
//!
//! The simulator keeps each option as the string PVE would write to
//! `/etc/pve/nodes/<node>/lxc/<vmid>.conf`; the digest is the SHA-1 of the rendered file, as in
//! pve-container `src/PVE/LXC/Config.pm:1131-1135`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::schema;

/// One section of a config file: option name → value as written to the file.
/// `description` holds the text as it reads back (every line ends in `\n`).
pub type Section = BTreeMap<String, String>;

/// A CT config: the current section plus named snapshot sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CtConf {
    /// Current options.
    pub main: Section,
    /// Snapshot name → options at snapshot time (plus `snaptime`, `description`, `parent`).
    pub snapshots: BTreeMap<String, Section>,
}

impl CtConf {
    /// The `lock` value, if any.
    pub fn lock(&self) -> Option<&str> {
        self.main.get("lock").map(String::as_str)
    }

    /// PVE's `check_lock`: "CT is locked (<lock>)" (pve-guest-common `AbstractConfig.pm:336-340`).
    pub fn check_lock(&self) -> Result<(), String> {
        match self.lock() {
            Some(lock) => Err(format!("CT is locked ({lock})\n")),
            None => Ok(()),
        }
    }

    /// The raw `.conf` text, as `write_pct_config` produces it: description as `#` comment
    /// lines first, then the options sorted by name, then `[snapname]` sections sorted by name.
    pub fn render(&self) -> String {
        let mut raw = render_section(&self.main);
        for (name, section) in &self.snapshots {
            raw.push_str(&format!("\n[{name}]\n"));
            raw.push_str(&render_section(section));
        }
        raw
    }

    /// SHA-1 hex of the rendered file.
    pub fn digest(&self) -> String {
        hex::encode(Sha1::digest(self.render().as_bytes()))
    }
}

fn render_section(section: &Section) -> String {
    let mut raw = String::new();
    if let Some(descr) = section.get("description") {
        for line in perl_split_lines(descr) {
            raw.push('#');
            raw.push_str(&encode_text(line));
            raw.push('\n');
        }
    }
    for (key, value) in section {
        if key == "description" {
            continue;
        }
        raw.push_str(&format!("{key}: {value}\n"));
    }
    raw
}

/// Perl's `split(/\n/, $text)`: trailing empty fields are dropped.
fn perl_split_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// pve-common `encode_text`: control characters, non-ASCII and `%` are percent-escaped so a
/// description line cannot break the file format.
fn encode_text(line: &str) -> String {
    let mut out = String::new();
    for b in line.bytes() {
        if !(0x20..=0x7e).contains(&b) || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// What a description reads back as after a write: every line gets `"\n"` appended and a
/// trailing newline is not doubled (pve-container `LXC/Config.pm:1174-1176,1248-1252`).
/// An empty description disappears (`None`).
pub fn normalize_description(text: &str) -> Option<String> {
    let lines = perl_split_lines(text);
    if lines.is_empty() {
        return None;
    }
    Some(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// Convert a request parameter into the string PVE writes to the config: booleans become
/// `1`/`0`, numbers their decimal text.
pub fn param_to_conf(key: &str, value: &Value) -> String {
    let is_bool = schema::ct_param(key)
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        == Some("boolean");
    if is_bool {
        if let Some(b) = pve_schema::parse_boolean(value) {
            return if b { "1" } else { "0" }.to_string();
        }
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        other => other.to_string(),
    }
}

/// JSON view of a section for `GET .../config`: integers and booleans become numbers
/// (booleans as 0/1), as `PVE::JSONSchema` types them on output.
pub fn section_to_json(section: &Section) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in section {
        // `snaptime` only exists in snapshot sections and is an epoch integer.
        let ty = if key == "snaptime" {
            "integer"
        } else {
            schema::ct_conf_return(key)
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("string")
        };
        let json = match ty {
            "integer" | "boolean" => value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(value.clone())),
            "number" => value
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .unwrap_or_else(|| Value::String(value.clone())),
            _ => Value::String(value.clone()),
        };
        out.insert(key.clone(), json);
    }
    out
}

/// The property-string format of an option (`net0`, `rootfs`, `mp0`, `features`).
fn format_of(key: &str) -> Option<&'static Value> {
    schema::ct_param(key)?
        .get("format")
        .filter(|f| f.is_object())
}

/// Parse a property-string option (`net0`, `rootfs`, `mpN`, `features`) into its keys.
pub fn parse_prop(key: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    let format = format_of(key).ok_or_else(|| format!("{key} is not a property string"))?;
    let mut map = pve_schema::parse_property_string(format, text)?;
    // Booleans inside property strings accept on/off/yes/no/true/false and are normalised
    // to 1/0 (pve-common `JSONSchema.pm:1061-1066,1114-1116`).
    for (k, v) in map.iter_mut() {
        if format
            .get(k)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            == Some("boolean")
        {
            *v = match v.to_ascii_lowercase().as_str() {
                "1" | "on" | "yes" | "true" => "1".to_string(),
                _ => "0".to_string(),
            };
        }
    }
    Ok(map)
}

/// Print a property string the way `PVE::JSONSchema::print_property_string` does: the
/// default key's bare value first, then required keys sorted, then the rest sorted.
pub fn print_prop(key: &str, map: &BTreeMap<String, String>) -> String {
    let format = format_of(key).and_then(Value::as_object);
    let mut default_key = None;
    let mut required = Vec::new();
    if let Some(format) = format {
        for (k, prop) in format {
            if prop.get("default_key").is_some_and(truthy) {
                default_key = Some(k.clone());
            } else if !prop.get("optional").is_some_and(truthy) && prop.get("alias").is_none() {
                required.push(k.clone());
            }
        }
    }
    required.sort();
    let mut parts = Vec::new();
    if let Some(v) = default_key.as_ref().and_then(|dk| map.get(dk)) {
        parts.push(v.clone());
    }
    let mut done: Vec<&String> = default_key.iter().collect();
    for k in required.iter().chain(map.keys()) {
        if done.contains(&k) {
            continue;
        }
        if let Some(v) = map.get(k) {
            parts.push(format!("{k}={v}"));
            done.push(k);
        }
    }
    parts.join(",")
}

fn truthy(v: &Value) -> bool {
    v.as_i64().map(|i| i != 0).or(v.as_bool()).unwrap_or(false)
}

/// A random, locally administered unicast MAC with Proxmox's default prefix `BC:24:11`
/// (pve-common `Tools.pm` `random_ether_addr`).
pub fn random_mac() -> String {
    let mut b = [0u8; 3];
    // getrandom only fails without an OS entropy source; fall back to the clock then.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = [(nanos >> 16) as u8, (nanos >> 8) as u8, nanos as u8];
    }
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// A `netN` value with `hwaddr` set: kept when given, generated otherwise
/// (pve-container `LXC/Config.pm:1566-1580`).
pub fn with_hwaddr(key: &str, text: &str) -> Result<String, String> {
    let mut map = parse_prop(key, text)?;
    if !map.contains_key("hwaddr") {
        map.insert("hwaddr".to_string(), random_mac());
    }
    // `type` defaults to veth and is written out (pve-container `LXC/Config.pm` parse_lxc_network).
    map.entry("type".to_string())
        .or_insert_with(|| "veth".to_string());
    Ok(print_prop(key, &map))
}

/// A `netN` value with a fresh `hwaddr` (restore with `unique=1`).
pub fn with_new_hwaddr(key: &str, text: &str) -> Result<String, String> {
    let mut map = parse_prop(key, text)?;
    map.insert("hwaddr".to_string(), random_mac());
    Ok(print_prop(key, &map))
}

/// Parse a PVE disk size (`4G`, `512M`, `1.5T`, bare bytes) into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (num, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        'B' => 1.0,
        'K' => 1024.0,
        'M' => 1024.0 * 1024.0,
        'G' => 1024.0 * 1024.0 * 1024.0,
        'T' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (value >= 0.0).then(|| (value * mult).round() as u64)
}

/// PVE's `format_size`: the largest unit that divides the size evenly (`4G`, `1536M`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_reads_back_with_trailing_newline() {
        assert_eq!(normalize_description("hello").as_deref(), Some("hello\n"));
        assert_eq!(normalize_description("hello\n").as_deref(), Some("hello\n"));
        assert_eq!(normalize_description("a\n\nb").as_deref(), Some("a\n\nb\n"));
        assert_eq!(normalize_description(""), None);
    }

    #[test]
    fn render_puts_description_first_and_sorts_keys() {
        let mut conf = CtConf::default();
        conf.main.insert("memory".into(), "512".into());
        conf.main
            .insert("description".into(), "50% off\nline2\n".into());
        conf.main.insert("cores".into(), "1".into());
        conf.snapshots.insert(
            "s1".into(),
            Section::from([("memory".into(), "256".into())]),
        );
        assert_eq!(
            conf.render(),
            "#50%25 off\n#line2\ncores: 1\nmemory: 512\n\n[s1]\nmemory: 256\n"
        );
        assert_eq!(conf.digest().len(), 40);
    }

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("1.5G"), Some(1536 << 20));
        assert_eq!(format_size(4 << 30), "4G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(parse_size("2GB"), None);
    }

    #[test]
    fn random_mac_is_proxmox_prefixed() {
        let mac = random_mac();
        assert!(mac.starts_with("BC:24:11:"));
        assert_eq!(mac.len(), 17);
    }
}
