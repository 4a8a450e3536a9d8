//! The `storage` section of desired state v1 (DESIGN.md §4.7, docs/storage-manifest.md) and
//! the per-guest `volumes` list: which storage targets the host has, what class each is, and
//! where hot and bulk volumes go. Parsed and validated with the rest of the document, so a bad
//! manifest rejects the whole document at intake and the last accepted one stays in force.
//!
//! Parsing only: nothing here talks to Proxmox, mounts anything or decrypts `creds` (the
//! ciphertext is checked for its age shape, so a hub that sends plain text is refused before
//! anything could log it). Objects are read key by key, like the guest entry, so every error
//! names the field (`storage.targets[1].iops`) and an unknown key is an error.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::backup::{is_storage_id, Schedule};
use super::{field, DesiredError};

mod shape;
mod volumes;

pub use shape::MAX_CREDS_BYTES;
pub(crate) use volumes::{check_volumes, parse_volumes};
pub use volumes::{Volume, MAX_VOLUME_GB};

use shape::{parse_creds, parse_durable_id};

/// The longest `label` (characters).
pub const MAX_LABEL_CHARS: usize = 64;

const TARGET_KEYS: &[&str] = &[
    "id",
    "label",
    "type",
    "durable_id",
    "class",
    "iops",
    "role",
    "creds",
    "policy",
    "state",
];
const POLICY_KEYS: &[&str] = &["default", "schedulable", "schedule", "keep", "backup_to"];
const KEEP_KEYS: &[&str] = &["last", "hourly", "daily", "weekly", "monthly", "yearly"];

/// Declares a closed word list: the enum, its JSON words, and the parser naming the field.
macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $word)),+];

            /// The JSON word.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            fn parse(path: &str, obj: &Map<String, Value>, key: &str) -> Result<Self, DesiredError> {
                let given = req_str(path, obj, key)?;
                Self::ALL
                    .iter()
                    .find(|(_, w)| *w == given)
                    .map(|(v, _)| *v)
                    .ok_or_else(|| {
                        let all: Vec<&str> = Self::ALL.iter().map(|(_, w)| *w).collect();
                        field(
                            format!("{path}.{key}"),
                            format!("{given:?} is not one of {}", all.join(", ")),
                        )
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

words!(
    /// What kind of storage a target is (seed §7 `type`).
    TargetType {
        /// A directory on a local disk (PVE `dir`).
        LocalDir = "local-dir",
        /// A removable disk, mounted by filesystem UUID (PVE `dir` with `is_mountpoint`).
        Usb = "usb",
        /// An NFS export (PVE `nfs`).
        Nfs = "nfs",
        /// An SMB/CIFS share (PVE `cifs`).
        Cifs = "cifs",
        /// A Proxmox Backup Server datastore (PVE `pbs`).
        Pbs = "pbs",
    }
);

words!(
    /// Speed class, set once at attach with an IOPS marker; no runtime speed test (seed §7).
    StorageClass {
        /// May hold hot volumes (databases, config).
        Fast = "fast",
        /// Bulk data and backups only.
        Slow = "slow",
    }
);

words!(
    /// What a target is for (seed §7 `role`).
    TargetRole {
        /// Guest root disks and hot volumes.
        Primary = "primary",
        /// Where vzdump archives go.
        VzdumpTarget = "vzdump-target",
        /// The offsite PBS tier (the DR substrate).
        PbsOffsite = "pbs-offsite",
        /// Bulk volumes (media and the like).
        BulkData = "bulk-data",
    }
);

words!(
    /// Lifecycle of a target (seed §7 `state`; also where the seed's `MigratedTo` went).
    TargetState {
        /// Should be mounted and configured.
        Attached = "attached",
        /// Known but not expected to be reachable (unplugged); kept configured, not written.
        Disconnected = "disconnected",
        /// Retired for good.
        Decommissioned = "decommissioned",
    }
);

words!(
    /// Where a guest volume belongs.
    VolumeKind {
        /// Data that must be in the guest's backup and on fast storage.
        Hot = "hot",
        /// Large data outside the guest's backup (`backup=0`), on the target it names.
        Bulk = "bulk",
    }
);

words!(
    /// The explicit backup decision of a bulk volume (seed §8: never a silent loss).
    BulkBackup {
        /// Backed up on its own, by the policy of the target it lives on.
        Own = "own",
        /// Deliberately not backed up (re-downloadable data; the customer is told).
        None = "none",
    }
);

/// What survives box loss and identifies a target (seed §7 `durable_id`), by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableId {
    /// `local-dir`: the absolute directory path (PVE's dir `path` rule).
    Dir(String),
    /// `usb`: the filesystem UUID, exactly as `/dev/disk/by-uuid` names it.
    FsUuid(String),
    /// `nfs`: `server:/export`; `cifs`: `server:share`.
    Share {
        /// Host name, IPv4 address or `[IPv6]`.
        server: String,
        /// NFS export path or CIFS share name.
        export: String,
    },
    /// `pbs`: `server:datastore@FINGERPRINT`.
    Pbs {
        /// Host name, IPv4 address or `[IPv6]`.
        server: String,
        /// PBS datastore name.
        datastore: String,
        /// The server certificate's SHA-256 fingerprint, `AA:BB:…` (32 pairs).
        fingerprint: String,
    },
}

impl fmt::Display for DurableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableId::Dir(s) | DurableId::FsUuid(s) => f.write_str(s),
            DurableId::Share { server, export } => write!(f, "{server}:{export}"),
            DurableId::Pbs {
                server,
                datastore,
                fingerprint,
            } => write!(f, "{server}:{datastore}@{fingerprint}"),
        }
    }
}

impl Serialize for DurableId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Storage credentials, age-encrypted (X25519) to the host's recipient: opaque ciphertext here.
/// Only its shape was checked; it is decrypted in memory by the storage reconciler, later.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SealedCreds(String);

impl SealedCreds {
    /// The ciphertext as sent (armored or base64).
    pub fn ciphertext(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedCreds {
    // Ciphertext is not secret, but it is long and says nothing to a reader of a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedCreds(<age, {} bytes>)", self.0.len())
    }
}

/// A target's policy: placement flags (the seed's `IsDefault`/`Schedulable`) and the own
/// backup of the bulk data on it (where, when, how many kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetPolicy {
    /// The target new bulk volumes go to when the hub has no other choice (at most one).
    pub default: bool,
    /// Whether new volumes may be placed here (false while draining; existing ones stay).
    pub schedulable: bool,
    /// When the bulk data on this target is backed up on its own.
    pub schedule: Option<Schedule>,
    /// How many of those backups to keep, per period (PVE's prune-backups vocabulary).
    pub keep: Option<pve::Retention>,
    /// The target (`vzdump-target` or `pbs-offsite`) those backups go to.
    pub backup_to: Option<String>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        TargetPolicy {
            default: false,
            schedulable: true,
            schedule: None,
            keep: None,
            backup_to: None,
        }
    }
}

/// One storage target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageTarget {
    /// The PVE storage id.
    pub id: String,
    /// The human name (the seed's `Label`, canonical here); display only, never an identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The kind of storage.
    #[serde(rename = "type")]
    pub kind: TargetType,
    /// What identifies it across box loss.
    pub durable_id: DurableId,
    /// Speed class.
    pub class: StorageClass,
    /// IOPS marker, set at attach (required for `fast`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    /// What it is for.
    pub role: TargetRole,
    /// Encrypted credentials (cifs, pbs; optional for nfs; none for usb and local-dir).
    pub creds: Option<SealedCreds>,
    /// Placement flags and own-backup policy.
    pub policy: TargetPolicy,
    /// Lifecycle state.
    pub state: TargetState,
}

/// The `storage` section: targets by PVE storage id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageSection {
    /// Targets by id.
    pub targets: BTreeMap<String, StorageTarget>,
}

impl StorageSection {
    /// The target with this PVE storage id.
    pub fn target(&self, id: &str) -> Option<&StorageTarget> {
        self.targets.get(id)
    }
}

impl Serialize for StorageSection {
    // The wire form: a list, in id order (so two orders of one manifest hash alike).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            targets: Vec<&'a StorageTarget>,
        }
        Wire {
            targets: self.targets.values().collect(),
        }
        .serialize(s)
    }
}

// ---- parsing -------------------------------------------------------------------------------

fn object<'a>(path: &str, v: &'a Value) -> Result<&'a Map<String, Value>, DesiredError> {
    v.as_object()
        .ok_or_else(|| field(path, "must be an object"))
}

fn only_keys(path: &str, obj: &Map<String, Value>, keys: &[&str]) -> Result<(), DesiredError> {
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(unknown) => Err(field(
            format!("{path}.{unknown}"),
            format!("unknown field (known: {})", keys.join(", ")),
        )),
        None => Ok(()),
    }
}

fn req_str<'a>(
    path: &str,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, DesiredError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(field(format!("{path}.{key}"), "missing")),
        Some(_) => Err(field(format!("{path}.{key}"), "must be a string")),
    }
}

fn opt_str<'a>(
    path: &str,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, DesiredError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field(format!("{path}.{key}"), "must be a string")),
    }
}

/// A positive integer up to `max`, or `None` when absent/null.
fn opt_count(
    path: &str,
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, DesiredError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(field(
                format!("{path}.{key}"),
                format!("must be an integer {min}..{max}"),
            )),
        },
    }
}

fn opt_bool(path: &str, obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, DesiredError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field(format!("{path}.{key}"), "must be true or false")),
    }
}

fn storage_id(path: &str, s: &str) -> Result<String, DesiredError> {
    if is_storage_id(s) {
        Ok(s.to_owned())
    } else {
        Err(field(path, format!("{s:?} is not a proxmox storage id")))
    }
}

/// Parses the `storage` section (the value of the top-level key).
pub(crate) fn parse_section(v: &Value) -> Result<StorageSection, DesiredError> {
    let obj = object("storage", v)?;
    only_keys("storage", obj, &["targets"])?;
    let list = match obj.get("targets") {
        None | Some(Value::Null) => return Ok(StorageSection::default()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(field("storage.targets", "must be a list")),
    };
    let mut targets = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("storage.targets[{i}]");
        let target = parse_target(&path, entry)?;
        if targets.contains_key(&target.id) {
            return Err(field(
                format!("{path}.id"),
                format!("duplicate target id {:?}", target.id),
            ));
        }
        targets.insert(target.id.clone(), target);
    }
    let section = StorageSection { targets };
    check_policies(list, &section)?;
    Ok(section)
}

fn parse_target(path: &str, v: &Value) -> Result<StorageTarget, DesiredError> {
    let obj = object(path, v)?;
    only_keys(path, obj, TARGET_KEYS)?;
    let id = storage_id(&format!("{path}.id"), req_str(path, obj, "id")?)?;
    let label = match opt_str(path, obj, "label")? {
        // Shown to customers and written to logs: one line of printable text.
        Some(l) => {
            let n = l.chars().count();
            if n == 0 || n > MAX_LABEL_CHARS || l.chars().any(char::is_control) {
                return Err(field(
                    format!("{path}.label"),
                    format!("must be 1..{MAX_LABEL_CHARS} characters without control characters"),
                ));
            }
            Some(l.to_owned())
        }
        None => None,
    };
    let kind = TargetType::parse(path, obj, "type")?;
    let durable_id = parse_durable_id(
        &format!("{path}.durable_id"),
        kind,
        req_str(path, obj, "durable_id")?,
    )?;
    let class = StorageClass::parse(path, obj, "class")?;
    let iops = opt_count(path, obj, "iops", 1, u64::from(u32::MAX))?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    // Seed §7: the class is set once at attach *with* an IOPS marker; a `fast` claim without a
    // number is a guess that hot volumes would then rely on.
    if class == StorageClass::Fast && iops.is_none() {
        return Err(field(
            format!("{path}.iops"),
            "missing: a fast target needs its IOPS marker",
        ));
    }
    let role = TargetRole::parse(path, obj, "role")?;
    // PBS holds only backups, and the offsite tier is by definition a PBS datastore.
    if (kind == TargetType::Pbs) != (role == TargetRole::PbsOffsite) {
        return Err(field(
            format!("{path}.role"),
            "a pbs target has role pbs-offsite, and only a pbs target has it",
        ));
    }
    let creds = match opt_str(path, obj, "creds")? {
        Some(text) => Some(parse_creds(&format!("{path}.creds"), text)?),
        None => None,
    };
    match (kind, &creds) {
        (TargetType::Cifs | TargetType::Pbs, None) => {
            return Err(field(
                format!("{path}.creds"),
                format!("missing: a {} target needs credentials", kind.as_str()),
            ))
        }
        (TargetType::Usb | TargetType::LocalDir, Some(_)) => {
            return Err(field(
                format!("{path}.creds"),
                format!("a {} target has no credentials", kind.as_str()),
            ))
        }
        _ => {}
    }
    let policy = match obj.get("policy") {
        None | Some(Value::Null) => TargetPolicy::default(),
        Some(p) => parse_policy(&format!("{path}.policy"), p)?,
    };
    let state = TargetState::parse(path, obj, "state")?;
    Ok(StorageTarget {
        id,
        label,
        kind,
        durable_id,
        class,
        iops,
        role,
        creds,
        policy,
        state,
    })
}

fn parse_policy(path: &str, v: &Value) -> Result<TargetPolicy, DesiredError> {
    let obj = object(path, v)?;
    only_keys(path, obj, POLICY_KEYS)?;
    let defaults = TargetPolicy::default();
    let schedule = match opt_str(path, obj, "schedule")? {
        Some(s) => Some(
            s.parse::<Schedule>()
                .map_err(|e| field(format!("{path}.schedule"), e.to_string()))?,
        ),
        None => None,
    };
    let keep = match obj.get("keep") {
        None | Some(Value::Null) => None,
        Some(k) => {
            let kpath = format!("{path}.keep");
            let kobj = object(&kpath, k)?;
            only_keys(&kpath, kobj, KEEP_KEYS)?;
            let n = |key| -> Result<u32, DesiredError> {
                Ok(opt_count(&kpath, kobj, key, 0, u64::from(u32::MAX))?
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
            };
            Some(pve::Retention {
                last: n("last")?,
                hourly: n("hourly")?,
                daily: n("daily")?,
                weekly: n("weekly")?,
                monthly: n("monthly")?,
                yearly: n("yearly")?,
            })
        }
    };
    let backup_to = match opt_str(path, obj, "backup_to")? {
        Some(s) => Some(storage_id(&format!("{path}.backup_to"), s)?),
        None => None,
    };
    // An own backup needs all three: where, when, and how many are kept.
    if backup_to.is_some() != schedule.is_some() || backup_to.is_some() != keep.is_some() {
        let missing = [
            ("backup_to", backup_to.is_none()),
            ("schedule", schedule.is_none()),
            ("keep", keep.is_none()),
        ]
        .into_iter()
        .find(|(_, m)| *m)
        .map_or("backup_to", |(k, _)| k);
        return Err(field(
            format!("{path}.{missing}"),
            "missing: backup_to, schedule and keep go together",
        ));
    }
    Ok(TargetPolicy {
        default: opt_bool(path, obj, "default")?.unwrap_or(defaults.default),
        schedulable: opt_bool(path, obj, "schedulable")?.unwrap_or(defaults.schedulable),
        schedule,
        keep,
        backup_to,
    })
}

/// Cross-target rules of the policies: one default, a schedulable one, and `backup_to` naming
/// a backup target. `list` is the raw list, for the index in the error path.
fn check_policies(list: &[Value], section: &StorageSection) -> Result<(), DesiredError> {
    let mut default: Option<&str> = None;
    // In the order sent, so "already the default" blames the second one.
    let in_order = list.iter().enumerate().filter_map(|(i, raw)| {
        let id = raw.get("id").and_then(Value::as_str)?;
        section.target(id).map(|t| (i, t))
    });
    for (i, t) in in_order {
        let path = format!("storage.targets[{i}].policy");
        if t.policy.default {
            if let Some(other) = default {
                return Err(field(
                    format!("{path}.default"),
                    format!("target {other:?} is already the default"),
                ));
            }
            if !t.policy.schedulable {
                return Err(field(
                    format!("{path}.default"),
                    "the default target must be schedulable",
                ));
            }
            default = Some(&t.id);
        }
        if let Some(to) = &t.policy.backup_to {
            let ok = section.target(to).is_some_and(|b| {
                b.id != t.id && matches!(b.role, TargetRole::VzdumpTarget | TargetRole::PbsOffsite)
            });
            if !ok {
                return Err(field(
                    format!("{path}.backup_to"),
                    format!("{to:?} is not another target with role vzdump-target or pbs-offsite"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::shape::{parse_creds, parse_durable_id, AGE_ARMOR_BEGIN, AGE_ARMOR_END};
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::json;

    const FP: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    /// An age file's shape (header, an X25519 stanza, the MAC line, a payload), not a real
    /// encryption: the parser does not decrypt.
    fn age_binary(stanza: &str) -> Vec<u8> {
        let mut b = format!(
            "age-encryption.org/v1\n-> {stanza} 5wT8dUp3Qyq6yHcm1ZzGXyq0QbCC0kz9Pq4DdFv3Nn8\nq3OUsbl6ZbI0zwYz0gQaHK2mTc2v4A3l9Vm0RRb2WqI\n--- uW5X8cQbkpq0UQ6fd3ouZKkcL0e8NBnL/wN4cT8M6nI\n"
        )
        .into_bytes();
        b.extend_from_slice(&[0x8d, 0x01, 0xfe, 0x00, 0x42, 0x17]);
        b
    }

    fn armored(bytes: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        format!("{AGE_ARMOR_BEGIN}\n{}\n{AGE_ARMOR_END}\n", lines.join("\n"))
    }

    fn creds() -> String {
        armored(&age_binary("X25519"))
    }

    fn manifest() -> Value {
        json!({"v":1,"generation":4,
            "guests":[{"vmid":101,"state":"running","volumes":[
                {"name":"db","mp":"/srv/db","kind":"hot","size_gb":8},
                {"name":"media","mp":"/mnt/media","kind":"bulk","size_gb":500,"target":"usb-a","backup":"own"},
                {"name":"cache","mp":"/mnt/cache","kind":"bulk","size_gb":50,"target":"nas","backup":"none"},
                {"name":"logs","mp":"/var/log/app","kind":"hot","size_gb":2,"target":"ssd2"}]}],
            "storage":{"targets":[
                {"id":"usb-a","label":"Média (USB)","type":"usb","durable_id":"3f1c2b7e-9d4a-4c21-8e5f-0a1b2c3d4e5f","class":"slow","iops":150,
                 "role":"bulk-data","creds":null,
                 "policy":{"default":true,"schedulable":true,"schedule":"02:30","keep":{"last":7,"weekly":4},"backup_to":"pbs-off"},
                 "state":"attached"},
                {"id":"ssd2","type":"local-dir","durable_id":"/srv/ssd2","class":"fast","iops":50000,"role":"primary","state":"attached"},
                {"id":"nas","type":"nfs","durable_id":"nas.lan:/export/felhom","class":"slow","role":"vzdump-target","state":"attached"},
                {"id":"smb","type":"cifs","durable_id":"10.0.0.9:backups","class":"slow","role":"vzdump-target","creds":creds(),"state":"disconnected"},
                {"id":"pbs-off","type":"pbs","durable_id":format!("pbs.example.eu:store1@{FP}"),"class":"slow","role":"pbs-offsite",
                 "creds":base64::engine::general_purpose::STANDARD.encode(age_binary("X25519")),"state":"attached"}]}})
    }

    fn rejected(doc: &Value) -> (String, String) {
        match parse(doc.to_string().as_bytes()) {
            Err(DesiredError::Field { path, problem }) => (path, problem),
            other => panic!("{doc}: {other:?}"),
        }
    }

    #[test]
    fn a_valid_manifest_parses_and_round_trips() {
        let d = parse(manifest().to_string().as_bytes()).unwrap();
        assert!(d.ignored_sections.is_empty());
        let s = d.storage.as_ref().expect("typed section");
        assert_eq!(s.targets.len(), 5);
        let usb = s.target("usb-a").unwrap();
        assert_eq!(
            (usb.kind, usb.class, usb.iops, usb.role, usb.state),
            (
                TargetType::Usb,
                StorageClass::Slow,
                Some(150),
                TargetRole::BulkData,
                TargetState::Attached
            )
        );
        assert!(usb.policy.default && usb.policy.schedulable);
        assert_eq!(usb.label.as_deref(), Some("Média (USB)"));
        assert_eq!(usb.policy.keep.map(|k| (k.last, k.weekly)), Some((7, 4)));
        let pbs = s.target("pbs-off").unwrap();
        assert_eq!(
            pbs.durable_id,
            DurableId::Pbs {
                server: "pbs.example.eu".into(),
                datastore: "store1".into(),
                fingerprint: FP.into()
            }
        );
        assert!(format!("{:?}", pbs.creds).contains("<age,"));
        let vols = &d.guests[&101].volumes;
        let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["cache", "db", "logs", "media"]);
        // The canonical form parses to the same document, and another order of targets and
        // volumes is the same document.
        let again = parse(d.canonical.as_bytes()).unwrap();
        assert_eq!(
            (&again.sha256, &again.storage, &again.guests),
            (&d.sha256, &d.storage, &d.guests)
        );
        let mut shuffled = manifest();
        shuffled["storage"]["targets"]
            .as_array_mut()
            .unwrap()
            .reverse();
        shuffled["guests"][0]["volumes"]
            .as_array_mut()
            .unwrap()
            .reverse();
        assert_eq!(
            parse(shuffled.to_string().as_bytes()).unwrap().sha256,
            d.sha256
        );
    }

    /// The fuzz target's seed reaches the accepted path (a seed that is rejected would leave
    /// the fuzzer to find the valid shape by itself).
    #[test]
    fn the_fuzz_corpus_seed_parses() {
        let seed = include_str!("../../../../../fuzz/corpus/desired/with-storage.json");
        let d = parse(seed.as_bytes()).unwrap();
        assert_eq!(d.storage.map(|s| s.targets.len()), Some(4));
        assert_eq!(d.guests[&101].volumes.len(), 3);
    }

    #[test]
    fn documents_without_storage_hash_as_before() {
        // The canonical text of a document without volumes or storage is what it was before
        // the section existed (a stored state re-sent must not turn into a conflict).
        let d =
            parse(br#"{"v":1,"generation":2,"guests":[{"vmid":101,"state":"running"}]}"#).unwrap();
        assert_eq!(
            d.canonical,
            r#"{"generation":2,"guests":[{"config":{},"state":"running","vmid":101}],"v":1}"#
        );
        assert_eq!(d.storage, None);
        let empty =
            parse(br#"{"v":1,"generation":2,"guests":[],"storage":{"targets":[]}}"#).unwrap();
        assert_eq!(empty.storage, Some(StorageSection::default()));
    }

    /// Each rejection of the issue (and the shape rules around them), with the field it names.
    #[test]
    fn each_bad_manifest_is_rejected_naming_the_field() {
        type Edit = fn(&mut Value);
        let cases: &[(&str, Edit, &str, &str)] = &[
            ("unknown type", |d| d["storage"]["targets"][1]["type"] = "ssd".into(),
             "storage.targets[1].type", "\"ssd\" is not one of local-dir, usb, nfs, cifs, pbs"),
            ("duplicate target id", |d| d["storage"]["targets"][1]["id"] = "usb-a".into(),
             "storage.targets[1].id", "duplicate target id \"usb-a\""),
            ("fast without iops", |d| { d["storage"]["targets"][1].as_object_mut().unwrap().remove("iops"); },
             "storage.targets[1].iops", "missing: a fast target needs its IOPS marker"),
            ("iops 0", |d| d["storage"]["targets"][1]["iops"] = 0.into(),
             "storage.targets[1].iops", "must be an integer 1..4294967295"),
            ("usb with a path", |d| d["storage"]["targets"][0]["durable_id"] = "/dev/sdb1".into(),
             "storage.targets[0].durable_id", "\"/dev/sdb1\" is not a filesystem UUID (type usb)"),
            ("nfs without export", |d| d["storage"]["targets"][2]["durable_id"] = "nas.lan".into(),
             "storage.targets[2].durable_id", "\"nas.lan\" is not server:export (type nfs)"),
            ("nfs export not absolute", |d| d["storage"]["targets"][2]["durable_id"] = "nas.lan:export".into(),
             "storage.targets[2].durable_id", "\"nas.lan:export\" is not server:/export (type nfs)"),
            ("cifs share with a slash", |d| d["storage"]["targets"][3]["durable_id"] = "10.0.0.9:/a/b".into(),
             "storage.targets[3].durable_id", "\"10.0.0.9:/a/b\" is not server:share (type cifs)"),
            ("pbs short fingerprint", |d| d["storage"]["targets"][4]["durable_id"] = "pbs.example.eu:store1@AA:BB".into(),
             "storage.targets[4].durable_id", "\"pbs.example.eu:store1@AA:BB\" is not server:datastore@FINGERPRINT (SHA-256, 32 pairs AA:BB:…) (type pbs)"),
            ("pbs without fingerprint", |d| d["storage"]["targets"][4]["durable_id"] = "pbs.example.eu:store1".into(),
             "storage.targets[4].durable_id", "is not server:datastore@FINGERPRINT"),
            ("cifs without creds", |d| d["storage"]["targets"][3]["creds"] = Value::Null,
             "storage.targets[3].creds", "missing: a cifs target needs credentials"),
            ("pbs without creds", |d| { d["storage"]["targets"][4].as_object_mut().unwrap().remove("creds"); },
             "storage.targets[4].creds", "missing: a pbs target needs credentials"),
            ("plain-text creds", |d| d["storage"]["targets"][3]["creds"] = r#"{"username":"u","password":"p"}"#.into(),
             "storage.targets[3].creds", "not an age-encrypted file: neither age armor nor base64"),
            ("usb with creds", |d| d["storage"]["targets"][0]["creds"] = creds().into(),
             "storage.targets[0].creds", "a usb target has no credentials"),
            ("bad storage id", |d| d["storage"]["targets"][0]["id"] = "../etc".into(),
             "storage.targets[0].id", "\"../etc\" is not a proxmox storage id"),
            ("unknown target field", |d| d["storage"]["targets"][0]["name"] = "Media".into(),
             "storage.targets[0].name", "unknown field"),
            ("label with a newline", |d| d["storage"]["targets"][0]["label"] = "a\nb".into(),
             "storage.targets[0].label", "without control characters"),
            ("empty label", |d| d["storage"]["targets"][0]["label"] = "".into(),
             "storage.targets[0].label", "must be 1..64 characters"),
            ("unknown section field", |d| d["storage"]["default"] = "usb-a".into(),
             "storage.default", "unknown field"),
            ("unknown policy field", |d| d["storage"]["targets"][0]["policy"]["migrated_to"] = "x".into(),
             "storage.targets[0].policy.migrated_to", "unknown field"),
            ("bad class", |d| d["storage"]["targets"][0]["class"] = "medium".into(),
             "storage.targets[0].class", "\"medium\" is not one of fast, slow"),
            ("bad role", |d| d["storage"]["targets"][0]["role"] = "archive".into(),
             "storage.targets[0].role", "is not one of primary"),
            ("bad state", |d| d["storage"]["targets"][0]["state"] = "gone".into(),
             "storage.targets[0].state", "is not one of attached, disconnected, decommissioned"),
            ("pbs not offsite", |d| d["storage"]["targets"][4]["role"] = "vzdump-target".into(),
             "storage.targets[4].role", "a pbs target has role pbs-offsite"),
            ("two defaults", |d| d["storage"]["targets"][1]["policy"] = json!({"default":true}),
             "storage.targets[1].policy.default", "is already the default"),
            ("backup_to a bulk target", |d| d["storage"]["targets"][0]["policy"]["backup_to"] = "nas2".into(),
             "storage.targets[0].policy.backup_to", "is not another target with role vzdump-target or pbs-offsite"),
            ("backup_to without keep", |d| { d["storage"]["targets"][0]["policy"].as_object_mut().unwrap().remove("keep"); },
             "storage.targets[0].policy.keep", "go together"),
            ("volume on a missing target", |d| d["guests"][0]["volumes"][1]["target"] = "usb-b".into(),
             "guests[0].volumes[1].target", "no storage target \"usb-b\""),
            ("hot volume on a slow target", |d| d["guests"][0]["volumes"][0]["target"] = "usb-a".into(),
             "guests[0].volumes[0].target", "a hot volume needs a fast target; \"usb-a\" is slow"),
            ("volume on pbs", |d| d["guests"][0]["volumes"][1]["target"] = "pbs-off".into(),
             "guests[0].volumes[1].target", "cannot hold volumes"),
            ("bulk without target", |d| { d["guests"][0]["volumes"][1].as_object_mut().unwrap().remove("target"); },
             "guests[0].volumes[1].target", "missing: a bulk volume names its target"),
            ("bulk without backup decision", |d| { d["guests"][0]["volumes"][1].as_object_mut().unwrap().remove("backup"); },
             "guests[0].volumes[1].backup", "missing: a bulk volume says"),
            ("own backup without policy", |d| d["guests"][0]["volumes"][2]["backup"] = "own".into(),
             "guests[0].volumes[2].backup", "needs a backup policy"),
            ("hot with backup", |d| d["guests"][0]["volumes"][0]["backup"] = "none".into(),
             "guests[0].volumes[0].backup", "always in the guest's backup"),
            ("duplicate volume name", |d| d["guests"][0]["volumes"][2]["name"] = "db".into(),
             "guests[0].volumes[2].name", "duplicate volume name \"db\""),
            ("duplicate mount path", |d| d["guests"][0]["volumes"][2]["mp"] = "/srv/db".into(),
             "guests[0].volumes[2].mp", "duplicate mount path \"/srv/db\""),
            ("size 0", |d| d["guests"][0]["volumes"][0]["size_gb"] = 0.into(),
             "guests[0].volumes[0].size_gb", "must be an integer 1..1048576"),
            ("size missing", |d| { d["guests"][0]["volumes"][0].as_object_mut().unwrap().remove("size_gb"); },
             "guests[0].volumes[0].size_gb", "missing"),
            ("fractional size", |d| d["guests"][0]["volumes"][0]["size_gb"] = 1.5.into(),
             "guests[0].volumes[0].size_gb", "must be an integer"),
            ("mount path with ..", |d| d["guests"][0]["volumes"][0]["mp"] = "/srv/../etc".into(),
             "guests[0].volumes[0].mp", "is not an absolute mount path"),
            ("mount at root", |d| d["guests"][0]["volumes"][0]["mp"] = "/".into(),
             "guests[0].volumes[0].mp", "is not an absolute mount path"),
            ("unknown kind", |d| d["guests"][0]["volumes"][0]["kind"] = "warm".into(),
             "guests[0].volumes[0].kind", "\"warm\" is not one of hot, bulk"),
            ("unknown volume field", |d| d["guests"][0]["volumes"][0]["bind"] = "/host".into(),
             "guests[0].volumes[0].bind", "unknown field"),
            ("volumes without storage", |d| { d.as_object_mut().unwrap().remove("storage"); },
             "guests[0].volumes[1].target", "no storage target \"usb-a\""),
        ];
        for (what, edit, path, problem) in cases {
            let mut d = manifest();
            edit(&mut d);
            let (p, msg) = rejected(&d);
            assert_eq!(&p, path, "{what}: {msg}");
            assert!(msg.contains(problem), "{what}: {msg:?} lacks {problem:?}");
        }
    }

    #[test]
    fn creds_must_be_age_to_an_x25519_recipient() {
        let path = "c";
        assert!(parse_creds(path, &creds()).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(age_binary("X25519"));
        assert!(parse_creds(path, &b64).is_ok());
        let cases = [
            (armored(&age_binary("scrypt")), "no X25519 recipient"),
            (armored(b"hello world"), "no age-encryption.org/v1 header"),
            (
                armored(b"age-encryption.org/v1\n-> X25519 abc\n"),
                "header without its MAC line",
            ),
            (
                creds().replace(AGE_ARMOR_END, ""),
                "armor without its end line",
            ),
            (
                "password=hunter2".to_owned(),
                "neither age armor nor base64",
            ),
            ("A".repeat(MAX_CREDS_BYTES + 1), "longer than"),
        ];
        for (text, why) in cases {
            let err = parse_creds(path, &text).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            // The error never echoes what was sent: it could be a plain credential.
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn durable_id_shapes() {
        let ok = [
            (TargetType::Usb, "3f1c2b7e-9d4a-4c21-8e5f-0a1b2c3d4e5f"),
            (TargetType::Usb, "ABCD-1234"),
            (TargetType::Usb, "0123456789ABCDEF"),
            (TargetType::LocalDir, "/mnt/second"),
            (TargetType::Nfs, "10.0.0.2:/srv/nfs"),
            (TargetType::Nfs, "[fd00::2]:/srv/nfs"),
            (TargetType::Cifs, "nas:backup$"),
            (
                TargetType::Pbs,
                &format!("[fd00::3]:store_1@{}", FP.to_lowercase()),
            ),
        ];
        for (kind, s) in ok {
            let id = parse_durable_id("d", kind, s).unwrap();
            assert_eq!(id.to_string(), s);
        }
        let bad = [
            (TargetType::Usb, "3f1c2b7e-9d4a-4c21-8e5f"),
            (TargetType::Usb, "../../sda"),
            (TargetType::Usb, "ABCD-12345"),
            (TargetType::LocalDir, "relative/dir"),
            (TargetType::LocalDir, "/srv/../etc"),
            (TargetType::Nfs, ":/srv"),
            (TargetType::Nfs, "host name:/srv"),
            (TargetType::Nfs, "[fd00::2:/srv"),
            (TargetType::Cifs, "nas:"),
            (TargetType::Pbs, "pbs:store1@ZZ"),
            (TargetType::Pbs, &format!("pbs:-store@{FP}")),
            (TargetType::Pbs, &format!("pbs@{FP}")),
        ];
        for (kind, s) in bad {
            assert!(parse_durable_id("d", kind, s).is_err(), "{s}");
        }
    }

    proptest! {
        // The storage section and volume parsers never panic on any shape the fuzz target
        // `desired` could also reach, and what parses round-trips through the canonical form.
        #[test]
        fn storage_never_panics_and_round_trips(
            id in "[a-z][a-z0-9._-]{0,8}|\\PC{0,8}",
            kind in "usb|nfs|cifs|pbs|local-dir|\\PC{0,6}",
            durable_id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z.]{1,6}:/?[a-z$]{0,6}(@[0-9A-F:]{0,96})?|/[a-z/.]{0,8}|\\PC{0,12}",
            class in "fast|slow|\\PC{0,4}",
            iops in prop::option::of(any::<i64>()),
            role in "primary|vzdump-target|pbs-offsite|bulk-data|\\PC{0,4}",
            creds in prop::option::of("\\PC{0,40}|-----BEGIN AGE ENCRYPTED FILE-----[A-Za-z0-9+/=\n]{0,40}"),
            default in any::<bool>(),
            vol_kind in "hot|bulk|\\PC{0,3}",
            size in any::<i64>(),
            mp in "/[a-z./]{0,10}|\\PC{0,6}",
            backup in prop::option::of("own|none|\\PC{0,3}"),
        ) {
            let doc = json!({"v":1,"generation":1,
                "guests":[{"vmid":101,"state":"running","volumes":[
                    {"name":"v","mp":mp,"kind":vol_kind,"size_gb":size,"target":id.clone(),"backup":backup}]}],
                "storage":{"targets":[{"id":id,"type":kind,"durable_id":durable_id,"class":class,
                    "iops":iops,"role":role,"creds":creds,"policy":{"default":default},"state":"attached"}]}});
            if let Ok(d) = parse(doc.to_string().as_bytes()) {
                let again = parse(d.canonical.as_bytes()).unwrap();
                prop_assert_eq!(again.sha256, d.sha256);
                prop_assert_eq!(again.storage, d.storage);
                prop_assert_eq!(again.guests, d.guests);
            }
        }
    }
}
