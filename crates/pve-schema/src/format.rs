//! Named formats (`format: "pve-vmid"`, `"pve-configid-list"`, ...) and their error texts.
//!
//! PVE registers a validator per format name (pve-common `JSONSchema.pm` register_format, plus
//! pve-storage, pve-container and pve-manager). The reference checker implements a subset
//! (`NAMED_FORMATS` in `reference/pve_schema.py`); we implement the same subset with the same
//! messages. Formats outside it are reported as notes, never as errors, exactly like the checker.
//! The suffixes `-list` (split like `PVE::ParseUtils::split_list`) and `-opt` (empty allowed)
//! apply to every named format.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Map, Value};

use crate::ip::{self, Version};
use crate::property_string;
use crate::scalar::py_is_space;

/// Content types a storage may hold (pve-storage `PVE/Storage/Plugin.pm` valid_content_types).
const STORAGE_CONTENT: [&str; 7] = [
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];

/// How one named format is checked.
enum Named {
    /// Registered but without a check here (`string`, `pve-ct-timezone`).
    Any,
    /// Whole-string regex with a message; `{v}` is replaced by the value.
    Regex { re: Regex, msg: &'static str },
    /// `PVE::JSONSchema::parse_id` style ids (`pve-storage-id`).
    Id { kind: &'static str },
    /// `ip`, `ipv4`, `ipv6`, `CIDR`, `CIDRv4`, `CIDRv6`.
    Ip {
        version: Option<Version>,
        cidr: bool,
        msg: &'static str,
    },
    /// `pve-ipv4-config` / `pve-ipv6-config`: a CIDR or one of the keywords.
    IpConfig { version: Version },
    /// `disk-size`.
    DiskSize,
    /// `pve-storage-content`.
    Content,
    /// `pve-lxc-mp-string` (pve-container `LXC/Config.pm` verify_lxc_mp_string).
    LxcMpString,
    /// A named property-string format (`prune-backups`).
    PropertyString {
        format: Map<String, Value>,
        prune: bool,
    },
}

fn anchored(re: &str) -> Regex {
    Regex::new(&format!(r"\A(?:{re})\z")).expect("static format regex")
}

static NAMED: LazyLock<HashMap<&'static str, Named>> = LazyLock::new(|| {
    let rx = |re: &str, msg: &'static str| Named::Regex {
        re: anchored(re),
        msg,
    };
    let ip = |version, cidr, msg| Named::Ip { version, cidr, msg };
    let mut m = HashMap::new();
    m.insert("string", Named::Any);
    m.insert(
        "pve-node",
        rx(
            r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?",
            "value does not look like a valid node name",
        ),
    );
    m.insert(
        "pve-vmid",
        rx(r"[1-9][0-9]{2,8}", "value does not look like a valid VM ID"),
    );
    m.insert(
        "pve-configid",
        rx(r"[a-z][a-z0-9_-]+", "invalid configuration ID '{v}'"),
    );
    m.insert("pve-storage-id", Named::Id { kind: "storage" });
    m.insert(
        "pve-poolid",
        rx(r"[A-Za-z0-9_\-]+", "invalid pool ID '{v}'"),
    );
    m.insert(
        "pve-volume-id",
        rx(
            r"(?i:[a-z][a-z0-9\-_.]*[a-z0-9]):.+",
            "unable to parse volume ID '{v}'",
        ),
    );
    m.insert("pve-storage-content", Named::Content);
    m.insert(
        "pve-bridge-id",
        rx(r"[-_.\w\d]+", "invalid bridge ID '{v}'"),
    );
    m.insert(
        "dns-name",
        rx(
            r"(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)",
            "value does not look like a valid DNS name",
        ),
    );
    m.insert(
        "mac-addr",
        rx(
            r"(?i:[a-f0-9][02468ace](?::[a-f0-9]{2}){5})",
            "value does not look like a valid unicast MAC address",
        ),
    );
    m.insert(
        "pve-tag",
        rx(r"(?i:[a-z0-9_][a-z0-9_\-+.]*)", "invalid tag '{v}'"),
    );
    m.insert(
        "ipv4",
        ip(
            Some(Version::V4),
            false,
            "value does not look like a valid IPv4 address",
        ),
    );
    m.insert(
        "ipv6",
        ip(
            Some(Version::V6),
            false,
            "value does not look like a valid IPv6 address",
        ),
    );
    m.insert(
        "ip",
        ip(None, false, "value does not look like a valid IP address"),
    );
    m.insert(
        "CIDR",
        ip(None, true, "value does not look like a valid CIDR network"),
    );
    m.insert(
        "CIDRv4",
        ip(
            Some(Version::V4),
            true,
            "value does not look like a valid IPv4 CIDR network",
        ),
    );
    m.insert(
        "CIDRv6",
        ip(
            Some(Version::V6),
            true,
            "value does not look like a valid IPv6 CIDR network",
        ),
    );
    m.insert(
        "pve-ipv4-config",
        Named::IpConfig {
            version: Version::V4,
        },
    );
    m.insert(
        "pve-ipv6-config",
        Named::IpConfig {
            version: Version::V6,
        },
    );
    m.insert("disk-size", Named::DiskSize);
    m.insert(
        "email",
        rx(
            r"[\w+\-~]+(\.[\w+\-~]+)*@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*",
            "value does not look like a valid email address",
        ),
    );
    m.insert(
        "prune-backups",
        Named::PropertyString {
            format: prune_backups_format(),
            prune: true,
        },
    );
    m.insert("pve-lxc-mp-string", Named::LxcMpString);
    m.insert("pve-ct-timezone", Named::Any);
    m
});

/// The `prune-backups` property-string format (pve-common `JSONSchema.pm` $prune_backups_format).
fn prune_backups_format() -> Map<String, Value> {
    let mut format = Map::new();
    format.insert("keep-all".into(), json!({"type": "boolean", "optional": 1}));
    for key in [
        "keep-last",
        "keep-hourly",
        "keep-daily",
        "keep-weekly",
        "keep-monthly",
        "keep-yearly",
    ] {
        format.insert(
            key.into(),
            json!({"type": "integer", "minimum": 0, "optional": 1}),
        );
    }
    format
}

/// The property-string format registered under `name` (only `prune-backups`), if any.
pub(crate) fn named_property_format(name: &str) -> Option<(&'static Map<String, Value>, bool)> {
    match NAMED.get(name) {
        Some(Named::PropertyString { format, prune }) => Some((format, *prune)),
        _ => None,
    }
}

static DISK_SIZE: LazyLock<Regex> = LazyLock::new(|| anchored(r"(\d+(\.\d+)?)([KMGT](?:iB)?)?"));

/// `PVE::JSONSchema::parse_size` as a predicate: `12`, `1.5G`, `4GiB`, ...
pub(crate) fn is_disk_size(v: &str) -> bool {
    DISK_SIZE.is_match(v)
}

/// `PVE::ParseUtils::split_list`: split on NUL if present (empty items kept), otherwise on commas,
/// semicolons and whitespace.
pub(crate) fn split_list(txt: &str) -> Vec<String> {
    if txt.contains('\0') {
        return txt.split('\0').map(str::to_owned).collect();
    }
    txt.split(|c: char| c == ',' || c == ';' || py_is_space(c))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Check `value` against a schema `format` (a named format or an inline property-string format).
/// `Err` carries the text PVE puts after "invalid format - ".
pub(crate) fn check_format(
    fmt: &Value,
    value: &str,
    path: &str,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let name = match fmt {
        Value::Object(format) => {
            return property_string::parse(format, value, path, notes, false).map(|_| ())
        }
        Value::String(name) => name.as_str(),
        other => {
            notes.push(format!("{path}: format {other} not checked by this tool"));
            return Ok(());
        }
    };
    if name == "regex" {
        return Ok(());
    }
    let (base, kind) = if let Some(base) = name.strip_suffix("-list") {
        (base, Kind::List)
    } else if let Some(base) = name.strip_suffix("-opt") {
        (base, Kind::Opt)
    } else {
        (name, Kind::Single)
    };
    let Some(named) = NAMED.get(base) else {
        notes.push(format!(
            "{path}: named format '{name}' not checked by this tool"
        ));
        return Ok(());
    };
    let values = match kind {
        Kind::List => split_list(value),
        Kind::Opt if value.is_empty() => Vec::new(),
        Kind::Opt | Kind::Single => vec![value.to_owned()],
    };
    for v in &values {
        check_named(named, v, path, notes)?;
    }
    Ok(())
}

enum Kind {
    Single,
    List,
    Opt,
}

fn check_named(named: &Named, v: &str, path: &str, notes: &mut Vec<String>) -> Result<(), String> {
    match named {
        Named::Any => Ok(()),
        Named::Regex { re, msg } => {
            if re.is_match(v) {
                Ok(())
            } else {
                Err(msg.replace("{v}", v))
            }
        }
        Named::Id { kind } => check_id(kind, v),
        Named::Ip { version, cidr, msg } => {
            if ip_ok(v, *version, *cidr) {
                Ok(())
            } else {
                Err((*msg).to_owned())
            }
        }
        Named::IpConfig { version } => {
            let keywords: &[&str] = match version {
                Version::V4 => &["dhcp", "manual"],
                Version::V6 => &["auto", "dhcp", "manual"],
            };
            if keywords.contains(&v) || ip_ok(v, Some(*version), true) {
                Ok(())
            } else {
                let n = if *version == Version::V4 { 4 } else { 6 };
                Err(format!("value does not look like a valid IPv{n} CIDR"))
            }
        }
        Named::DiskSize => {
            if is_disk_size(v) {
                Ok(())
            } else {
                Err(format!("value does not look like a valid disk size: {v}"))
            }
        }
        Named::Content => {
            if STORAGE_CONTENT.contains(&v) {
                Ok(())
            } else {
                Err(format!("invalid content type '{v}'"))
            }
        }
        Named::LxcMpString => check_lxc_mp_string(v),
        Named::PropertyString { format, prune } => {
            property_string::parse(format, v, path, notes, *prune).map(|_| ())
        }
    }
}

static ID: LazyLock<Regex> = LazyLock::new(|| anchored(r"(?i:[a-z][a-z0-9\-_.]*[a-z0-9])"));

/// `PVE::JSONSchema::parse_id`: at least two characters, a letter first, no trailing punctuation.
fn check_id(kind: &str, v: &str) -> Result<(), String> {
    if v.chars().count() < 2 {
        return Err(format!(
            "{kind} ID '{v}' cannot be shorter than 2 characters"
        ));
    }
    if !ID.is_match(v) {
        return Err(format!("{kind} ID '{v}' contains illegal characters"));
    }
    Ok(())
}

fn ip_ok(v: &str, version: Option<Version>, cidr: bool) -> bool {
    let parsed = if cidr {
        ip::ip_network(v).filter(|_| v.contains('/'))
    } else {
        ip::ip_address(v)
    };
    match (parsed, version) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(got), Some(want)) => got == want,
    }
}

/// pve-container `LXC/Config.pm` verify_lxc_mp_string: no `/./`, `/../`, trailing `/.` or `/..`,
/// or leading `../`. The checker's `/\.\.?$` lets `$` match before one final newline; so do we.
fn check_lxc_mp_string(v: &str) -> Result<(), String> {
    let tail = v.strip_suffix('\n').unwrap_or(v);
    let bad = v.contains("/./")
        || v.contains("/../")
        || tail.ends_with("/.")
        || tail.ends_with("/..")
        || v.starts_with("../");
    if bad {
        Err(format!("{v} contains illegal character sequences"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fmt: &str, v: &str) -> Result<(), String> {
        check_format(&json!(fmt), v, "p", &mut Vec::new())
    }

    #[test]
    fn vmid_configid_and_storage_id_messages() {
        assert!(check("pve-vmid", "101").is_ok());
        assert_eq!(
            check("pve-vmid", "99").unwrap_err(),
            "value does not look like a valid VM ID"
        );
        assert_eq!(
            check("pve-configid", "X").unwrap_err(),
            "invalid configuration ID 'X'"
        );
        assert!(check("pve-configid", "snap_1").is_ok());
        assert_eq!(
            check("pve-storage-id", "a").unwrap_err(),
            "storage ID 'a' cannot be shorter than 2 characters"
        );
        assert_eq!(
            check("pve-storage-id", "ab-").unwrap_err(),
            "storage ID 'ab-' contains illegal characters"
        );
        assert!(check("pve-storage-id", "Local-LVM").is_ok());
    }

    #[test]
    fn list_and_opt_suffixes() {
        assert!(check("pve-configid-list", "swap,mp1;net0 unused0").is_ok());
        assert_eq!(
            check("pve-configid-list", "swap,Mp1").unwrap_err(),
            "invalid configuration ID 'Mp1'"
        );
        assert!(check("pve-vmid-list", "").is_ok());
        assert!(check("email-opt", "").is_ok());
        assert!(check("email-opt", "a@b.c").is_ok());
        assert!(check("email-opt", "nope").is_err());
        assert_eq!(split_list("a\0\0b"), vec!["a", "", "b"]);
        assert_eq!(split_list(" a, b;c  "), vec!["a", "b", "c"]);
    }

    #[test]
    fn unknown_named_format_is_a_note_not_an_error() {
        let mut notes = Vec::new();
        assert!(check_format(&json!("pve-userid"), "x", "userid", &mut notes).is_ok());
        assert_eq!(
            notes,
            vec!["userid: named format 'pve-userid' not checked by this tool"]
        );
    }

    #[test]
    fn disk_sizes_and_content() {
        for ok in ["8", "8G", "1.5T", "512MiB"] {
            assert!(check("disk-size", ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check("disk-size", "8GB").unwrap_err(),
            "value does not look like a valid disk size: 8GB"
        );
        assert!(check("pve-storage-content-list", "rootdir,images,backup").is_ok());
        assert_eq!(
            check("pve-storage-content-list", "rootdir,vm").unwrap_err(),
            "invalid content type 'vm'"
        );
    }

    #[test]
    fn lxc_mount_point_strings() {
        assert!(check("pve-lxc-mp-string", "/mnt/data").is_ok());
        for bad in ["/mnt/../etc", "/mnt/.", "../x", "/a/..\n", "/a/./b"] {
            assert_eq!(
                check("pve-lxc-mp-string", bad).unwrap_err(),
                format!("{bad} contains illegal character sequences")
            );
        }
    }

    #[test]
    fn ip_formats() {
        assert!(check("pve-ipv4-config", "dhcp").is_ok());
        assert!(check("pve-ipv4-config", "10.0.0.2/24").is_ok());
        assert_eq!(
            check("pve-ipv4-config", "10.0.0.2").unwrap_err(),
            "value does not look like a valid IPv4 CIDR"
        );
        assert!(check("pve-ipv6-config", "auto").is_ok());
        assert!(check("pve-ipv6-config", "auto").is_ok());
        assert_eq!(
            check("ipv4", "fe80::1").unwrap_err(),
            "value does not look like a valid IPv4 address"
        );
        assert!(check("ip", "fe80::1").is_ok());
        assert!(check("CIDRv6", "fd00::/8").is_ok());
        assert!(check("mac-addr", "BC:24:11:00:00:01").is_ok());
        assert_eq!(
            check("mac-addr", "01:00:00:00:00:01").unwrap_err(),
            "value does not look like a valid unicast MAC address"
        );
    }
}
