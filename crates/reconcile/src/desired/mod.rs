//! Desired state v1 (DESIGN.md §4.2a; docs/desired-state-v1.md): the model, a strict parser,
//! and the canonical form whose SHA-256 decides "same generation, different content".
//!
//! `{"v":1,"generation":N,"guests":[{"vmid":101,"state":"running"|"stopped","config":{…}}]}`.
//! Unknown fields inside a guest, a config key outside the allowlist, a `netN` with `hwaddr`,
//! a duplicate vmid: the whole document is rejected (the last accepted one stays in force).
//! Unknown *top-level* sections are ignored with a warning, because later capabilities add
//! sections such as `controller`. Each section the agent knows is a typed part of
//! [`DesiredState`], parsed and validated here with the rest ([`backup`], [`storage`] and the
//! guests' `volumes`, which are checked against the storage targets).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::normalize;

pub mod backup;
pub mod storage;

use backup::BackupSection;
use storage::{StorageSection, Volume};

/// The largest generation accepted: 2^53−1, the largest integer every JSON reader holds exactly.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// The largest desired-state document accepted.
pub const MAX_DESIRED_BYTES: usize = 4 << 20;

/// The top-level keys v1 knows.
const KNOWN_TOP: &[&str] = &["v", "generation", "guests", "backup", "storage"];
/// The keys of a guest entry.
const GUEST_KEYS: &[&str] = &["vmid", "state", "config", "volumes"];

/// `running` or `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Should run.
    Running,
    /// Should be stopped.
    Stopped,
}

impl PowerState {
    /// The JSON word.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Stopped => "stopped",
        }
    }
}

/// One guest of the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGuest {
    /// Guest id.
    pub vmid: u32,
    /// Power state.
    pub state: PowerState,
    /// Allowlisted options, canonical (see [`normalize`]).
    pub config: BTreeMap<String, String>,
    /// Hot and bulk volumes (DESIGN.md §4.7), sorted by name; checked against the targets.
    pub volumes: Vec<Volume>,
}

impl DesiredGuest {
    /// A digest of `config`, to know when a cached actual config must be re-read.
    pub fn config_hash(&self) -> u64 {
        let mut h = Sha256::new();
        for (k, v) in &self.config {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// A parsed, validated desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    /// Generation; only grows.
    pub generation: u64,
    /// Guests by vmid.
    pub guests: BTreeMap<u32, DesiredGuest>,
    /// The `backup` section; `None` when the document has none.
    pub backup: Option<BackupSection>,
    /// The `storage` section (the storage manifest); `None` when the document has none.
    pub storage: Option<StorageSection>,
    /// Top-level sections this version ignores.
    pub ignored_sections: Vec<String>,
    /// The canonical JSON text.
    pub canonical: String,
    /// SHA-256 (hex) of `canonical`.
    pub sha256: String,
}

/// Whether an offered desired state replaces the one in force (DESIGN.md §4.2a): the one rule,
/// used by the engine's intake ([`crate::Engine::ingest`]) and by `felhom-agent plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// A newer generation (or the first): it replaces the one in force.
    Newer,
    /// The same generation with the same content: nothing to do.
    Same,
    /// An older generation: ignored, the one in force stays.
    Older {
        /// The generation in force.
        current: u64,
    },
    /// The same generation with other content: rejected, the one in force stays.
    Conflicting {
        /// SHA-256 of the content in force.
        current_sha256: String,
    },
}

/// Decides whether `offered` replaces `current` (see [`Acceptance`]).
pub fn accept(current: Option<&DesiredState>, offered: &DesiredState) -> Acceptance {
    match current {
        None => Acceptance::Newer,
        Some(cur) if offered.generation > cur.generation => Acceptance::Newer,
        Some(cur) if offered.generation < cur.generation => Acceptance::Older {
            current: cur.generation,
        },
        Some(cur) if offered.sha256 == cur.sha256 => Acceptance::Same,
        Some(cur) => Acceptance::Conflicting {
            current_sha256: cur.sha256.clone(),
        },
    }
}

/// Why a document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// Not a JSON object, or too large.
    #[error("desired state is not a JSON document: {problem}")]
    NotJson {
        /// What is wrong.
        problem: String,
    },
    /// A field is missing, unknown or invalid.
    #[error("desired state {path}: {problem}")]
    Field {
        /// Where, e.g. `guests[2].config.rootfs`.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

fn field(path: impl Into<String>, problem: impl Into<String>) -> DesiredError {
    DesiredError::Field {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Parses and validates a desired-state document.
pub fn parse(bytes: &[u8]) -> Result<DesiredState, DesiredError> {
    if bytes.len() > MAX_DESIRED_BYTES {
        return Err(DesiredError::NotJson {
            problem: format!("larger than {MAX_DESIRED_BYTES} bytes"),
        });
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| DesiredError::NotJson {
        problem: e.to_string(),
    })?;
    let Value::Object(top) = doc else {
        return Err(DesiredError::NotJson {
            problem: "not an object".into(),
        });
    };
    match top.get("v") {
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => return Err(field("v", format!("version {v} is not supported (only 1)"))),
        None => return Err(field("v", "missing")),
    }
    let generation = top
        .get("generation")
        .ok_or_else(|| field("generation", "missing"))?
        .as_u64()
        .ok_or_else(|| field("generation", "must be a non-negative integer"))?;
    // A generation no JSON reader can hold exactly would let one document freeze every later
    // one as "older" (DESIGN.md §4.6); recovery from such a hub is the signed `desired.reset`.
    if generation > MAX_GENERATION {
        return Err(field(
            "generation",
            format!("{generation} is larger than 2^53-1 ({MAX_GENERATION})"),
        ));
    }
    let list = match top.get("guests") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(field("guests", "must be a list")),
        None => return Err(field("guests", "missing")),
    };
    let mut guests = BTreeMap::new();
    // A static address belongs to one guest: a hub must not hand one guest another's.
    let mut addresses: BTreeMap<String, u32> = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let guest = parse_guest(&format!("guests[{i}]"), entry)?;
        for (key, value) in &guest.config {
            if crate::normalize::net_index(key).is_none() {
                continue;
            }
            if let Some(addr) = crate::normalize::static_address(value) {
                if let Some(other) = addresses.insert(addr.clone(), guest.vmid) {
                    return Err(field(
                        format!("guests[{i}].config.{key}"),
                        format!("ip {addr} is already guest {other}'s"),
                    ));
                }
            }
        }
        if guests.insert(guest.vmid, guest).is_some() {
            return Err(field(format!("guests[{i}].vmid"), "duplicate vmid"));
        }
    }
    let backup = match top.get("backup") {
        None | Some(Value::Null) => None,
        Some(section) => Some(
            serde_json::from_value::<BackupSection>(section.clone())
                .map_err(|e| field("backup", e.to_string()))?,
        ),
    };
    let storage = match top.get("storage") {
        None | Some(Value::Null) => None,
        Some(section) => Some(storage::parse_section(section)?),
    };
    // Volumes name targets, so they are checked once both are read (a volume without a
    // storage section names a target that does not exist).
    for (i, entry) in list.iter().enumerate() {
        if let Some(raw) = entry.get("volumes") {
            let vmid = entry.get("vmid").and_then(Value::as_u64);
            let guest = vmid
                .and_then(|v| u32::try_from(v).ok())
                .and_then(|v| guests.get(&v));
            if let Some(guest) = guest {
                storage::check_volumes(
                    &format!("guests[{i}].volumes"),
                    raw,
                    &guest.volumes,
                    storage.as_ref(),
                )?;
            }
        }
    }
    let mut ignored_sections: Vec<String> = top
        .keys()
        .filter(|k| !KNOWN_TOP.contains(&k.as_str()))
        .cloned()
        .collect();
    ignored_sections.sort();
    let canonical = canonical_json(generation, &guests, backup.as_ref(), storage.as_ref(), &top);
    let sha256 = hex::encode(Sha256::digest(canonical.as_bytes()));
    Ok(DesiredState {
        generation,
        guests,
        backup,
        storage,
        ignored_sections,
        canonical,
        sha256,
    })
}

fn parse_guest(path: &str, entry: &Value) -> Result<DesiredGuest, DesiredError> {
    let Value::Object(obj) = entry else {
        return Err(field(path, "must be an object"));
    };
    if let Some(unknown) = obj.keys().find(|k| !GUEST_KEYS.contains(&k.as_str())) {
        return Err(field(
            format!("{path}.{unknown}"),
            "unknown field (a guest has only vmid, state, config, volumes)",
        ));
    }
    let vmid = obj
        .get("vmid")
        .and_then(Value::as_u64)
        .filter(|v| (100..=999_999_999).contains(v))
        .ok_or_else(|| field(format!("{path}.vmid"), "must be an integer 100..999999999"))?;
    let vmid = u32::try_from(vmid).map_err(|_| field(format!("{path}.vmid"), "out of range"))?;
    let state = match obj.get("state").and_then(Value::as_str) {
        Some("running") => PowerState::Running,
        Some("stopped") => PowerState::Stopped,
        _ => {
            return Err(field(
                format!("{path}.state"),
                "must be \"running\" or \"stopped\"",
            ))
        }
    };
    let mut config = BTreeMap::new();
    match obj.get("config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let canonical = normalize::canonical_desired(key, value)
                    .map_err(|problem| field(format!("{path}.config.{key}"), problem))?;
                config.insert(key.clone(), canonical);
            }
        }
        Some(_) => return Err(field(format!("{path}.config"), "must be an object")),
    }
    let volumes = match obj.get("volumes") {
        None => Vec::new(),
        Some(v) => storage::parse_volumes(&format!("{path}.volumes"), v)?,
    };
    Ok(DesiredGuest {
        vmid,
        state,
        config,
        volumes,
    })
}

/// `{"generation":N,"guests":[…by vmid, keys sorted…],"v":1,…ignored sections, keys sorted}`.
fn canonical_json(
    generation: u64,
    guests: &BTreeMap<u32, DesiredGuest>,
    backup: Option<&BackupSection>,
    storage: Option<&StorageSection>,
    top: &Map<String, Value>,
) -> String {
    let mut doc = BTreeMap::new();
    doc.insert("v".to_owned(), Value::from(1));
    doc.insert("generation".to_owned(), Value::from(generation));
    let list: Vec<Value> = guests
        .values()
        .map(|g| {
            let config: Map<String, Value> = g
                .config
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut m = Map::new();
            m.insert("config".into(), Value::Object(config));
            m.insert("state".into(), Value::from(g.state.as_str()));
            m.insert("vmid".into(), Value::from(g.vmid));
            // Only when there are any, so a document without volumes hashes as it did before
            // volumes existed (a re-sent generation must not turn into a conflict).
            if !g.volumes.is_empty() {
                if let Ok(v) = serde_json::to_value(&g.volumes) {
                    m.insert("volumes".into(), v);
                }
            }
            Value::Object(m)
        })
        .collect();
    doc.insert("guests".to_owned(), Value::Array(list));
    // The typed section, rendered back (keys sorted like every other part), so two spellings
    // of the same policy are the same document.
    if let Some(section) = backup.and_then(|b| serde_json::to_value(b).ok()) {
        doc.insert("backup".to_owned(), sorted(&section));
    }
    if let Some(section) = storage.and_then(|s| serde_json::to_value(s).ok()) {
        doc.insert("storage".to_owned(), sorted(&section));
    }
    for (k, v) in top {
        if !KNOWN_TOP.contains(&k.as_str()) {
            doc.insert(k.clone(), sorted(v));
        }
    }
    let mut out = String::from("{");
    for (i, (k, v)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        out.push_str(&sorted(v).to_string());
    }
    out.push('}');
    out
}

/// A copy with every object's keys in sorted order (serde_json here preserves insertion order).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Result<DesiredState, DesiredError> {
        parse(v.to_string().as_bytes())
    }

    /// Issue 11 item 3: `u64::MAX` was accepted and froze the agent (every later generation
    /// "older"). Only JSON-safe generations are taken.
    #[test]
    fn a_generation_above_2_pow_53_minus_1_is_rejected() {
        let g = |generation: u64| doc(json!({"v":1,"generation":generation,"guests":[]}));
        assert_eq!(g(MAX_GENERATION).unwrap().generation, 9_007_199_254_740_991);
        for poisoned in [MAX_GENERATION + 1, u64::MAX] {
            let err = g(poisoned).unwrap_err();
            assert!(
                matches!(&err, DesiredError::Field { path, problem }
                    if path == "generation" && problem.contains("2^53-1")),
                "{err}"
            );
        }
    }

    #[test]
    fn parses_a_full_document() {
        let d = doc(json!({"v":1,"generation":7,"guests":[
            {"vmid":101,"state":"running","config":{"hostname":"web","memory":1024,"onboot":true,
             "net0":"name=eth0,bridge=vmbr0,ip=dhcp,firewall=1"}},
            {"vmid":102,"state":"stopped"}
        ]}))
        .unwrap();
        assert_eq!(d.generation, 7);
        assert_eq!(d.guests[&101].config["onboot"], "1");
        assert_eq!(d.guests[&102].state, PowerState::Stopped);
        assert!(d.guests[&102].config.is_empty());
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn equivalent_documents_hash_alike_and_different_ones_do_not() {
        let a = doc(json!({"v":1,"generation":3,"guests":[
            {"vmid":102,"state":"stopped"},
            {"vmid":101,"state":"running","config":{"onboot":1,"memory":"512","description":"x\n"}}]}))
        .unwrap();
        let b = doc(json!({"generation":3,"v":1,"guests":[
            {"config":{"description":"x","memory":512,"onboot":true},"state":"running","vmid":101},
            {"vmid":102,"state":"stopped","config":{}}]}))
        .unwrap();
        assert_eq!(a.sha256, b.sha256);
        let c = doc(json!({"v":1,"generation":3,"guests":[
            {"vmid":101,"state":"running","config":{"onboot":1,"memory":"512","description":"x"}}]}))
        .unwrap();
        assert_ne!(a.sha256, c.sha256);
    }

    #[test]
    fn strictness() {
        let bad = [
            (json!({"v":2,"generation":1,"guests":[]}), "v"),
            (json!({"v":1,"guests":[]}), "generation"),
            (json!({"v":1,"generation":-1,"guests":[]}), "generation"),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running","scratch":true}]}),
                "guests[0].scratch",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"paused"}]}),
                "guests[0].state",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running","config":{"rootfs":"x"}}]}),
                "guests[0].config.rootfs",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running","config":{"mp0":"x"}}]}),
                "guests[0].config.mp0",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running","config":{"protection":0}}]}),
                "guests[0].config.protection",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running","config":{"net0":"name=eth0,hwaddr=BC:24:11:00:00:01"}}]}),
                "guests[0].config.net0",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":101,"state":"running"},{"vmid":101,"state":"stopped"}]}),
                "guests[1].vmid",
            ),
            (
                json!({"v":1,"generation":1,"guests":[
                    {"vmid":101,"state":"running","config":{"net0":"name=eth0,bridge=vmbr0,firewall=1,ip=10.0.0.5/24"}},
                    {"vmid":102,"state":"running","config":{"net1":"name=eth1,bridge=vmbr0,firewall=1,ip=10.0.0.5/16"}}]}),
                "guests[1].config.net1",
            ),
            (
                json!({"v":1,"generation":1,"guests":[{"vmid":99,"state":"running"}]}),
                "guests[0].vmid",
            ),
        ];
        for (d, path) in bad {
            match doc(d.clone()) {
                Err(DesiredError::Field { path: p, .. }) => assert_eq!(p, path, "{d}"),
                other => panic!("{d}: {other:?}"),
            }
        }
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{").is_err());
    }

    #[test]
    fn unknown_top_level_sections_are_ignored_but_hashed() {
        let d = doc(json!({"v":1,"generation":1,"guests":[],"controller":{"b":1,"a":2}})).unwrap();
        assert_eq!(d.ignored_sections, vec!["controller".to_owned()]);
        let e = doc(json!({"v":1,"generation":1,"guests":[],"controller":{"a":2,"b":1}})).unwrap();
        assert_eq!(d.sha256, e.sha256);
        let f = doc(json!({"v":1,"generation":1,"guests":[]})).unwrap();
        assert_ne!(d.sha256, f.sha256);
    }

    #[test]
    fn the_backup_section_is_typed_and_a_bad_one_rejects_the_document() {
        use pve::Vmid;
        let d = doc(json!({"v":1,"generation":1,"guests":[],
            "backup":{"guests":{"101":{"schedule":"02:30","target":"t1","keep_last":3}}}}))
        .unwrap();
        assert!(d.ignored_sections.is_empty());
        let section = d.backup.as_ref().expect("typed section");
        let p = section.policy_for(Vmid::new(101).unwrap()).unwrap();
        assert_eq!((p.target.as_str(), p.keep_last), ("t1", 3));
        assert!(section.policy_for(Vmid::new(102).unwrap()).is_none());
        assert!(d.canonical.contains(
            r#""backup":{"guests":{"101":{"keep_last":3,"schedule":"02:30","target":"t1"}}}"#
        ));
        // Its canonical form parses to the same document.
        let again = parse(d.canonical.as_bytes()).unwrap();
        assert_eq!(
            (again.sha256, again.backup),
            (d.sha256.clone(), d.backup.clone())
        );
        // No section, or null: none.
        let none = doc(json!({"v":1,"generation":1,"guests":[],"backup":null})).unwrap();
        assert_eq!(none.backup, None);
        // A bad section rejects the whole document, naming the section.
        for bad in [
            json!({"guests":{"x":{}}}),
            json!({"other":1}),
            json!({"guests":{"101":{"schedule":"often","target":"t1","keep_last":3}}}),
            json!({"guests":{"101":{"schedule":"daily","target":"../etc","keep_last":3}}}),
        ] {
            let err = doc(json!({"v":1,"generation":1,"guests":[],"backup":bad})).unwrap_err();
            assert!(
                matches!(&err, DesiredError::Field { path, .. } if path == "backup"),
                "{err}"
            );
        }
    }
}
