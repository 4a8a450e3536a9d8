//! Normalization: one canonical text per config value, so that nothing diffs spuriously.
//!
//! PVE returns the same setting in several spellings: booleans as `1`/`0`, numbers as strings,
//! the description with a trailing `"\n"` per line (pve-container `LXC/Config.pm:1174-1176`),
//! property strings (`net0`) in its own key order, and `net0` always with the `hwaddr` it
//! minted (`LXC/Config.pm:1566-1580`) and `type=veth`. The desired state may use any of the
//! equivalent JSON spellings. Both sides are brought to the canonical form here and compared
//! with [`differs`]; the desired side is validated at the same time ([`canonical_desired`]).
//!
//! The allowlist of hub-settable LXC options lives here too ([`allowed`]): everything that can
//! hold or expose customer data or needs root (`rootfs`, `mpN`, `unusedN`, `features`,
//! `protection`, `lxc.*`, `hookscript`, `devN`, `unprivileged`, `ostype`, `arch`, …) is not
//! settable from a desired state at all (see docs/desired-state-v1.md).

use std::collections::BTreeMap;

use serde_json::Value;

/// How a config key's value is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Description,
    Int { min: i64, max: i64 },
    Float { max: f64 },
    Bool,
    Tags,
    Net,
}

fn kind(key: &str) -> Option<Kind> {
    Some(match key {
        "hostname" | "startup" | "nameserver" | "searchdomain" => Kind::Text,
        "description" => Kind::Description,
        "cores" => Kind::Int { min: 1, max: 8192 },
        "cpuunits" => Kind::Int {
            min: 0,
            max: 500_000,
        },
        "memory" => Kind::Int {
            min: 16,
            max: i64::MAX,
        },
        "swap" => Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "cpulimit" => Kind::Float { max: 8192.0 },
        "onboot" => Kind::Bool,
        "tags" => Kind::Tags,
        _ if net_index(key).is_some() => Kind::Net,
        _ => return None,
    })
}

/// The `N` of `netN` (PVE allows net0..net31).
pub fn net_index(key: &str) -> Option<u32> {
    let n = key.strip_prefix("net")?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok().filter(|i| *i < 32)
}

/// The line the agent appends to a managed guest's description: the guest's identity beyond its
/// vmid (DESIGN.md §4.6). A guest on a reused vmid does not carry it, so it is never inherited.
pub const IDENTITY_PREFIX: &str = "felhom-identity: ";

/// A fresh identity: 128 random bits, hex.
pub fn new_identity() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn is_identity(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a description as PVE returns it into the text without the agent's identity lines and
/// the identity the last such line names (a malformed identity line counts as none).
pub fn split_identity(description: &str) -> (String, Option<String>) {
    let mut identity = None;
    let mut rest = Vec::new();
    let description = canonical_description(description);
    for line in description.split('\n') {
        match line.strip_prefix(IDENTITY_PREFIX) {
            Some(token) => identity = is_identity(token.trim()).then(|| token.trim().to_owned()),
            None => rest.push(line),
        }
    }
    (rest.join("\n"), identity)
}

/// The description to write: `text` (canonical, without identity lines) with the identity line.
pub fn with_identity(text: &str, identity: &str) -> String {
    if text.is_empty() {
        format!("{IDENTITY_PREFIX}{identity}")
    } else {
        format!("{text}\n{IDENTITY_PREFIX}{identity}")
    }
}

/// `netN` properties a desired state may set: what a managed guest's interface needs. The rest
/// (`link_down`, `hwaddr`, `rate`, `trunks`, `host-managed`, …) is refused.
pub const NET_PROPERTIES: &[&str] = &[
    "name", "bridge", "tag", "firewall", "ip", "gw", "ip6", "gw6", "type", "mtu",
];

/// Whether a desired state may set this LXC option.
pub fn allowed(key: &str) -> bool {
    kind(key).is_some()
}

/// The allowlist, for documentation and error messages (`netN` stands for net0..net31).
pub const ALLOWED_KEYS: &[&str] = &[
    "hostname",
    "cores",
    "cpulimit",
    "cpuunits",
    "memory",
    "swap",
    "description",
    "onboot",
    "startup",
    "tags",
    "nameserver",
    "searchdomain",
    "netN",
];

/// Validates a desired value and returns its canonical text.
pub fn canonical_desired(key: &str, value: &Value) -> Result<String, String> {
    let kind = kind(key).ok_or_else(|| {
        format!(
            "is not settable from a desired state (allowed: {})",
            ALLOWED_KEYS.join(", ")
        )
    })?;
    match (kind, value) {
        (Kind::Text, Value::String(s)) => {
            if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
                return Err("must be 1-255 printable characters".into());
            }
            if key == "hostname"
                && !s
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            {
                return Err("is not a DNS name".into());
            }
            Ok(s.clone())
        }
        (Kind::Description, Value::String(s)) => {
            if s.len() > 8192 {
                return Err("is longer than 8 KiB".into());
            }
            if s.lines()
                .any(|l| l.trim_start().starts_with(IDENTITY_PREFIX.trim_end()))
            {
                return Err(format!(
                    "must not carry a {:?} line: the agent writes the guest's identity itself",
                    IDENTITY_PREFIX.trim_end()
                ));
            }
            Ok(canonical_description(s))
        }
        (Kind::Int { min, max }, v) => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            }
            .ok_or("must be an integer")?;
            if n < min || n > max {
                return Err(format!("must be between {min} and {max}"));
            }
            Ok(n.to_string())
        }
        (Kind::Float { max }, v) => {
            let f = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|f| f.is_finite())
            .ok_or("must be a number")?;
            if !(0.0..=max).contains(&f) {
                return Err(format!("must be between 0 and {max}"));
            }
            Ok(canonical_float(f))
        }
        (Kind::Bool, v) => canonical_bool_value(v).ok_or_else(|| "must be a boolean".into()),
        (Kind::Tags, Value::String(s)) => Ok(canonical_tags(s)),
        (Kind::Net, Value::String(s)) => {
            let props = property_map(s);
            if props.is_empty() || props.contains_key("") {
                return Err("is not a key=value property string".into());
            }
            if props.contains_key("hwaddr") {
                return Err(
                    "must not carry hwaddr: the agent keeps the guest's current MAC".into(),
                );
            }
            check_net(&props)?;
            Ok(join_properties(&props))
        }
        _ => Err("has the wrong type".into()),
    }
}

/// What a hub may set on a managed guest's interface (issue 11): the properties of
/// [`NET_PROPERTIES`], the firewall on, a veth, a plain bridge name, a VLAN tag, and addresses
/// of the right shape. Unique addresses across guests are checked on the whole document
/// ([`crate::desired::parse`]).
fn check_net(props: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(key) = props.keys().find(|k| !NET_PROPERTIES.contains(&k.as_str())) {
        return Err(format!(
            "may not set {key} (a desired state may set {} in netN)",
            NET_PROPERTIES.join(", ")
        ));
    }
    if props.get("firewall").map(String::as_str) != Some("1") {
        return Err("must have firewall=1 (the guest's firewall stays on)".into());
    }
    if props.get("type").is_some_and(|t| t != "veth") {
        return Err("type must be veth".into());
    }
    let Some(bridge) = props.get("bridge") else {
        return Err("must name a bridge".into());
    };
    if bridge.is_empty()
        || bridge.len() > 15
        || !bridge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
    {
        return Err("bridge is not an interface name".into());
    }
    if let Some(tag) = props.get("tag") {
        if !tag.parse::<u16>().is_ok_and(|t| (1..=4094).contains(&t)) {
            return Err("tag must be a VLAN id 1-4094".into());
        }
    }
    if let Some(mtu) = props.get("mtu") {
        if !mtu.parse::<u16>().is_ok_and(|m| (64..=65520).contains(&m)) {
            return Err("mtu must be 64-65520".into());
        }
    }
    if let Some(ip) = props.get("ip") {
        let ok = matches!(ip.as_str(), "dhcp" | "manual") || parse_cidr::<std::net::Ipv4Addr>(ip);
        if !ok {
            return Err("ip must be dhcp, manual or an IPv4 address with /prefix".into());
        }
    }
    if let Some(ip) = props.get("ip6") {
        let ok = matches!(ip.as_str(), "dhcp" | "auto" | "manual")
            || parse_cidr::<std::net::Ipv6Addr>(ip);
        if !ok {
            return Err("ip6 must be dhcp, auto, manual or an IPv6 address with /prefix".into());
        }
    }
    if props
        .get("gw")
        .is_some_and(|g| g.parse::<std::net::Ipv4Addr>().is_err())
    {
        return Err("gw must be an IPv4 address".into());
    }
    if props
        .get("gw6")
        .is_some_and(|g| g.parse::<std::net::Ipv6Addr>().is_err())
    {
        return Err("gw6 must be an IPv6 address".into());
    }
    Ok(())
}

fn parse_cidr<A: std::str::FromStr>(text: &str) -> bool {
    text.split_once('/').is_some_and(|(addr, prefix)| {
        addr.parse::<A>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
    })
}

/// The static address (without prefix) a canonical `netN` value claims, if any.
pub fn static_address(net: &str) -> Option<String> {
    let props = property_map(net);
    let ip = props.get("ip")?;
    ip.split_once('/').map(|(addr, _)| addr.to_owned())
}

/// The canonical text of a value as Proxmox returned it (lenient: PVE is the authority).
pub fn canonical_actual(key: &str, raw: &str) -> String {
    match kind(key) {
        Some(Kind::Description) => canonical_description(raw),
        Some(Kind::Int { .. }) => raw
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| raw.to_owned()),
        Some(Kind::Float { .. }) => raw
            .trim()
            .parse::<f64>()
            .map(canonical_float)
            .unwrap_or_else(|_| raw.to_owned()),
        Some(Kind::Bool) => {
            canonical_bool_value(&Value::String(raw.to_owned())).unwrap_or_else(|| raw.to_owned())
        }
        Some(Kind::Tags) => canonical_tags(raw),
        Some(Kind::Net) => join_properties(&property_map(raw)),
        Some(Kind::Text) | None => raw.to_owned(),
    }
}

/// The allowlisted keys of a guest's config, canonical.
pub fn actual_config(cfg: &pve::LxcConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.to_owned(), canonical_actual(k, &v));
        }
    };
    put("hostname", cfg.hostname.clone());
    // pve::LxcConfig already removed the one trailing newline PVE adds. The agent's identity
    // line is not part of what a desired state compares against.
    put(
        "description",
        cfg.description
            .as_deref()
            .map(|d| split_identity(d).0)
            .filter(|d| !d.is_empty()),
    );
    put("cores", cfg.cores.map(|v| v.to_string()));
    put("cpulimit", cfg.cpulimit.map(canonical_float));
    put("cpuunits", cfg.cpuunits.map(|v| v.to_string()));
    put("memory", cfg.memory.map(|v| v.to_string()));
    put("swap", cfg.swap.map(|v| v.to_string()));
    put(
        "onboot",
        cfg.onboot.map(|b| if b { "1" } else { "0" }.to_owned()),
    );
    put("tags", cfg.tags.clone());
    for (k, v) in &cfg.other {
        if allowed(k) {
            out.insert(k.clone(), canonical_actual(k, v));
        }
    }
    out
}

/// The identity the agent wrote into this config, if any.
pub fn identity_of(cfg: &pve::LxcConfig) -> Option<String> {
    cfg.description.as_deref().and_then(|d| split_identity(d).1)
}

/// Whether the desired canonical value differs from the actual one. For `netN` the actual
/// `hwaddr` is ignored (desired never has one; the current MAC is always kept) and so is PVE's
/// implicit `type=veth` when the desired side does not name a type.
pub fn differs(key: &str, desired: &str, actual: Option<&str>) -> bool {
    let Some(actual) = actual else {
        return true;
    };
    if kind(key) == Some(Kind::Net) {
        let want = property_map(desired);
        let mut have = property_map(actual);
        have.remove("hwaddr");
        if !want.contains_key("type") && have.get("type").is_some_and(|t| t == "veth") {
            have.remove("type");
        }
        return want != have;
    }
    desired != actual
}

/// A property string as an ordered map; keys and values trimmed, a bare value keyed by "".
pub fn property_map(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (String::new(), part.trim().to_owned()),
        })
        .collect()
}

fn join_properties(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn canonical_description(s: &str) -> String {
    s.strip_suffix('\n').unwrap_or(s).to_owned()
}

fn canonical_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn canonical_bool_value(v: &Value) -> Option<String> {
    let b = match v {
        Value::Bool(b) => *b,
        Value::Number(n) => match n.as_i64() {
            Some(0) => false,
            Some(1) => true,
            _ => return None,
        },
        Value::String(s) => match s.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return None,
        },
        _ => return None,
    };
    Some(if b { "1" } else { "0" }.to_owned())
}

/// Tags are a set: PVE splits on `;`, `,` and spaces and may reorder them.
fn canonical_tags(s: &str) -> String {
    let mut tags: Vec<&str> = s.split([';', ',', ' ']).filter(|t| !t.is_empty()).collect();
    tags.sort_unstable();
    tags.dedup();
    tags.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn equivalent_spellings_are_equal() {
        let c = |k: &str, v: Value| canonical_desired(k, &v).unwrap();
        assert_eq!(c("onboot", json!(true)), "1");
        assert_eq!(c("onboot", json!(1)), "1");
        assert_eq!(c("onboot", json!("0")), "0");
        assert_eq!(c("memory", json!("1024")), "1024");
        assert_eq!(c("cpulimit", json!(2.0)), "2");
        assert_eq!(c("cpulimit", json!("1.50")), "1.5");
        assert_eq!(c("description", json!("hi\n")), "hi");
        assert_eq!(canonical_actual("onboot", "1"), "1");
        assert_eq!(canonical_actual("description", "hi\n"), "hi");
        assert_eq!(c("tags", json!("b;a, a")), canonical_actual("tags", "a;b"));
        let net = c("net0", json!("name=eth0,bridge=vmbr0,ip=dhcp,firewall=1"));
        assert!(!differs(
            "net0",
            &net,
            Some(&canonical_actual(
                "net0",
                "bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:00:01,ip=dhcp,name=eth0,type=veth"
            ))
        ));
        assert!(differs(
            "net0",
            &net,
            Some("bridge=vmbr1,hwaddr=BC:24:11:00:00:01,ip=dhcp,name=eth0")
        ));
    }

    #[test]
    fn data_bearing_and_root_only_keys_are_refused() {
        for key in [
            "rootfs",
            "mp0",
            "unused0",
            "features",
            "protection",
            "lxc",
            "hookscript",
            "dev0",
            "unprivileged",
            "ostype",
            "arch",
            "net32",
            "net01",
        ] {
            assert!(canonical_desired(key, &json!("x")).is_err(), "{key}");
        }
        let e =
            canonical_desired("net0", &json!("name=eth0,hwaddr=BC:24:11:00:00:01")).unwrap_err();
        assert!(e.contains("hwaddr"), "{e}");
        assert!(canonical_desired("memory", &json!(8)).is_err());
        assert!(canonical_desired("hostname", &json!("a b")).is_err());
        assert!(canonical_desired("onboot", &json!(2)).is_err());
    }

    #[test]
    fn net_is_narrowed_to_what_a_managed_guest_needs() {
        let ok = |v: &str| canonical_desired("net0", &json!(v));
        assert!(ok("name=eth0,bridge=vmbr0,firewall=1,ip=10.0.0.5/24,gw=10.0.0.1,tag=20").is_ok());
        assert!(ok("name=eth0,bridge=vmbr0,firewall=1,ip6=fd00::5/64,gw6=fd00::1").is_ok());
        for (value, word) in [
            ("name=eth0,bridge=vmbr0,ip=dhcp", "firewall=1"),
            ("name=eth0,bridge=vmbr0,firewall=0,ip=dhcp", "firewall=1"),
            ("name=eth0,bridge=vmbr0,firewall=1,link_down=1", "link_down"),
            ("name=eth0,bridge=vmbr0,firewall=1,rate=1", "rate"),
            ("name=eth0,bridge=vmbr0,firewall=1,trunks=1;2", "trunks"),
            ("name=eth0,firewall=1", "bridge"),
            ("name=eth0,bridge=vm br,firewall=1", "bridge"),
            ("name=eth0,bridge=vmbr0,firewall=1,tag=5000", "tag"),
            ("name=eth0,bridge=vmbr0,firewall=1,ip=10.0.0.300/24", "ip"),
            ("name=eth0,bridge=vmbr0,firewall=1,ip=10.0.0.3", "ip"),
            ("name=eth0,bridge=vmbr0,firewall=1,gw=evil", "gw"),
            ("name=eth0,bridge=vmbr0,firewall=1,type=phys", "type"),
        ] {
            let e = ok(value).unwrap_err();
            assert!(e.contains(word), "{value}: {e}");
        }
        assert_eq!(
            static_address("bridge=vmbr0,firewall=1,ip=10.0.0.5/24").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(static_address("bridge=vmbr0,firewall=1,ip=dhcp"), None);
    }

    #[test]
    fn the_identity_line_is_the_agents_own() {
        let id = "0123456789abcdef0123456789abcdef";
        let written = with_identity("customer notes\nline two", id);
        assert_eq!(
            split_identity(&format!("{written}\n")),
            ("customer notes\nline two".to_owned(), Some(id.to_owned()))
        );
        assert_eq!(
            split_identity(&with_identity("", id)),
            (String::new(), Some(id.to_owned()))
        );
        // A forged or malformed line is no identity; a hub cannot write one.
        assert_eq!(split_identity("felhom-identity: nope").1, None);
        let e = canonical_desired("description", &json!(format!("x\nfelhom-identity: {id}")))
            .unwrap_err();
        assert!(e.contains("identity"), "{e}");
        assert_eq!(new_identity().unwrap().len(), 32);
        assert_ne!(new_identity().unwrap(), new_identity().unwrap());
    }

    fn bool_spelling() -> impl Strategy<Value = (bool, Value)> {
        any::<bool>().prop_flat_map(|b| {
            let spellings = vec![
                json!(b),
                json!(u8::from(b)),
                json!(if b { "1" } else { "0" }),
                json!(if b { "true" } else { "false" }),
            ];
            (Just(b), proptest::sample::select(spellings))
        })
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(
            mem in 16i64..100_000, cores in 1i64..64, (_b, onboot) in bool_spelling(),
            desc in "[a-z ]{0,20}\n?", limit in 0u32..64,
        ) {
            let values = [
                ("memory", json!(mem)), ("cores", json!(cores.to_string())), ("onboot", onboot),
                ("description", json!(desc)), ("cpulimit", json!(f64::from(limit) / 4.0)),
            ];
            for (k, v) in values {
                let once = canonical_desired(k, &v).unwrap();
                prop_assert_eq!(canonical_actual(k, &once), once.clone());
                prop_assert_eq!(canonical_desired(k, &Value::String(once.clone())).unwrap(), once);
            }
        }

        #[test]
        fn reordered_property_strings_never_differ(
            mut parts in proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9.]{1,8}", 1..6),
            seed in any::<u64>(), mac in "[0-9A-F]{2}(:[0-9A-F]{2}){5}",
        ) {
            parts.retain(|k, _| NET_PROPERTIES.contains(&k.as_str()) && k != "type");
            parts.insert("bridge".into(), "vmbr0".into());
            parts.insert("firewall".into(), "1".into());
            for (k, v) in [("tag", "7"), ("mtu", "1500"), ("ip", "dhcp"), ("ip6", "auto"), ("gw", "10.0.0.1"), ("gw6", "fd00::1")] {
                if parts.contains_key(k) {
                    parts.insert(k.into(), v.into());
                }
            }
            let mut items: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let desired = canonical_desired("net0", &json!(items.join(","))).unwrap();
            // PVE's order, its hwaddr and type, extra spaces.
            let n = items.len();
            items.rotate_left((seed as usize) % n);
            items.push(format!("hwaddr={mac}"));
            items.push("type=veth".into());
            let actual = canonical_actual("net0", &items.join(" , "));
            prop_assert!(!differs("net0", &desired, Some(&actual)));
        }

        #[test]
        fn tags_compare_as_sets(mut tags in proptest::collection::vec("[a-z]{1,5}", 1..5), seed in any::<u64>()) {
            let a = canonical_tags(&tags.join(";"));
            let n = tags.len();
            tags.rotate_left((seed as usize) % n);
            prop_assert_eq!(canonical_tags(&tags.join(",")), a);
        }
    }
}
