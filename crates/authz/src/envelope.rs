//! The signed-op envelope (DESIGN.md §4.4): the JSON object inside the signed payload.
//!
//! ```json
//! {"v":1,"op_id":"…","nonce":"…","issued_at":"RFC3339","expires_at":"RFC3339","host_id":"…",
//!  "action":"…","target":{"vmid":101}|{"storage":"id"}|{"host":true},"params":{…}}
//! ```
//!
//! Parsing is strict: at most [`MAX_PAYLOAD`] bytes of UTF-8 JSON, one object, every field
//! present, unknown fields refused, duplicate keys refused at any depth (`serde_json` would
//! silently keep the last one, and a verifier and an executor must never read different
//! values out of the same bytes), `v` equal to 1. Field rules:
//!
//! - `op_id`: `^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$` — 8 to 64 characters, safe in file names,
//!   logs and URLs, starts with an alphanumeric so it never looks like an option.
//! - `nonce`: 16 to 128 characters of `[A-Za-z0-9_-]` (base64url); `op new` makes 43 from 32
//!   random bytes.
//! - `issued_at`, `expires_at`: RFC 3339 with an explicit offset, `expires_at > issued_at`.
//! - `host_id`: 1 to 253 printable ASCII characters.
//! - `target`: exactly one of `vmid` (100..=999999999, PVE's range), `storage` (a PVE storage
//!   id: `[A-Za-z][A-Za-z0-9_.-]*`, at most 64) or `host` (must be `true`).
//! - `action`: one of [`Action`]; each action takes the target kinds [`Action::target_kinds`]
//!   lists (a `guest.destroy` of a storage is malformed, not merely unauthorised).
//! - `params`: an object (may be empty); its meaning belongs to the executor of the action.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ParseError;

/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The only envelope version.
pub const VERSION: u64 = 1;

/// The actions an operator can sign (DESIGN.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Destroy a guest.
    GuestDestroy,
    /// Restore a guest over its existing disks.
    GuestRestoreOverwrite,
    /// Restore a guest that no longer exists.
    GuestRestore,
    /// Make an existing guest managed by this agent (DESIGN.md §4.6).
    GuestAdopt,
    /// Destroy one volume of a guest.
    VolumeDestroy,
    /// Detach a storage.
    StorageDetach,
    /// Wipe a storage.
    StorageWipe,
    /// Take the whole host out of service.
    HostDecommission,
    /// Let the agent accept a lower desired-state generation once (recovery from a poisoned
    /// hub).
    DesiredReset,
    /// Run a backup now.
    BackupForce,
    /// Run a restore test now.
    RestoreTestRun,
    /// Enable break-glass access.
    BreakGlassEnable,
    /// End break-glass access.
    BreakGlassDisable,
    /// Update the agent.
    AgentUpdate,
}

/// The kind of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A guest.
    Vmid,
    /// A storage.
    Storage,
    /// The host.
    Host,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 14] = [
        Action::GuestDestroy,
        Action::GuestRestoreOverwrite,
        Action::GuestRestore,
        Action::GuestAdopt,
        Action::VolumeDestroy,
        Action::StorageDetach,
        Action::StorageWipe,
        Action::HostDecommission,
        Action::DesiredReset,
        Action::BackupForce,
        Action::RestoreTestRun,
        Action::BreakGlassEnable,
        Action::BreakGlassDisable,
        Action::AgentUpdate,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GuestDestroy => "guest.destroy",
            Action::GuestRestoreOverwrite => "guest.restore_overwrite",
            Action::GuestRestore => "guest.restore",
            Action::GuestAdopt => "guest.adopt",
            Action::VolumeDestroy => "volume.destroy",
            Action::DesiredReset => "desired.reset",
            Action::BreakGlassDisable => "break_glass.disable",
            Action::StorageDetach => "storage.detach",
            Action::StorageWipe => "storage.wipe",
            Action::HostDecommission => "host.decommission",
            Action::BackupForce => "backup.force",
            Action::RestoreTestRun => "restore_test.run",
            Action::BreakGlassEnable => "break_glass.enable",
            Action::AgentUpdate => "agent.update",
        }
    }

    /// The action with this wire name.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Which target kinds the action takes.
    pub fn target_kinds(self) -> &'static [TargetKind] {
        use TargetKind::{Host, Storage, Vmid};
        match self {
            Action::GuestDestroy
            | Action::GuestRestoreOverwrite
            | Action::GuestRestore
            | Action::GuestAdopt
            | Action::VolumeDestroy
            | Action::RestoreTestRun => &[Vmid],
            Action::StorageDetach | Action::StorageWipe => &[Storage],
            Action::HostDecommission | Action::DesiredReset | Action::AgentUpdate => &[Host],
            Action::BackupForce | Action::BreakGlassEnable | Action::BreakGlassDisable => {
                &[Vmid, Host]
            }
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an op acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One guest.
    Vmid(u32),
    /// One storage, by PVE storage id.
    Storage(String),
    /// The host itself.
    Host,
}

impl Target {
    /// Its kind.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Vmid(_) => TargetKind::Vmid,
            Target::Storage(_) => TargetKind::Storage,
            Target::Host => TargetKind::Host,
        }
    }

    /// The wire JSON (`{"vmid":101}`, `{"storage":"id"}`, `{"host":true}`).
    pub fn to_json(&self) -> Value {
        match self {
            Target::Vmid(id) => serde_json::json!({ "vmid": id }),
            Target::Storage(id) => serde_json::json!({ "storage": id }),
            Target::Host => serde_json::json!({ "host": true }),
        }
    }

    /// Parses the CLI form `vmid:101`, `storage:ID` or `host` (the form [`Display`] prints).
    ///
    /// [`Display`]: std::fmt::Display
    pub fn parse_cli(text: &str) -> Result<Target, ParseError> {
        let target = match text.split_once(':') {
            None if text == "host" => Target::Host,
            Some(("vmid", id)) => Target::Vmid(id.parse().map_err(|_| ParseError::Field {
                field: "target",
                problem: "vmid is not a number".into(),
            })?),
            Some(("storage", id)) => Target::Storage(id.to_owned()),
            _ => {
                return Err(ParseError::Field {
                    field: "target",
                    problem: "expected vmid:N, storage:ID or host".into(),
                })
            }
        };
        target.validate()?;
        Ok(target)
    }

    fn validate(&self) -> Result<(), ParseError> {
        let field = |problem: &str| ParseError::Field {
            field: "target",
            problem: problem.to_owned(),
        };
        match self {
            Target::Vmid(id) if !(100..=999_999_999).contains(id) => {
                Err(field("vmid outside 100..=999999999"))
            }
            Target::Storage(id) if !valid_storage_id(id) => Err(field("invalid storage id")),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Vmid(id) => write!(f, "vmid:{id}"),
            Target::Storage(id) => write!(f, "storage:{id}"),
            Target::Host => f.write_str("host"),
        }
    }
}

/// A parsed, field-checked envelope. Not yet authorised: it becomes part of a
/// [`crate::VerifiedOp`] only through [`crate::verify()`].
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The op's id.
    pub op_id: String,
    /// The nonce.
    pub nonce: String,
    /// When the operator signed it.
    pub issued_at: OffsetDateTime,
    /// When it stops being valid.
    pub expires_at: OffsetDateTime,
    /// The host it is for.
    pub host_id: String,
    /// What to do.
    pub action: Action,
    /// On what.
    pub target: Target,
    /// Action parameters.
    pub params: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    v: u64,
    op_id: String,
    nonce: String,
    issued_at: String,
    expires_at: String,
    host_id: String,
    action: String,
    target: RawTarget,
    params: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    vmid: Option<u32>,
    storage: Option<String>,
    host: Option<bool>,
}

/// Parses the payload bytes strictly (see the module docs). Never panics.
pub fn parse_payload(bytes: &[u8]) -> Result<Envelope, ParseError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(ParseError::TooLarge {
            what: "payload",
            len: bytes.len(),
            limit: MAX_PAYLOAD,
        });
    }
    let json = |problem: String| ParseError::Json {
        what: "payload",
        problem,
    };
    let value = strict_json(bytes).map_err(json)?;
    if !value.is_object() {
        return Err(json("not a JSON object".into()));
    }
    let raw: RawEnvelope = serde_json::from_value(value).map_err(|e| json(e.to_string()))?;
    if raw.v != VERSION {
        return Err(field("v", format!("version {} is not supported", raw.v)));
    }
    check_op_id(&raw.op_id)?;
    check_nonce(&raw.nonce)?;
    let issued_at = parse_time("issued_at", &raw.issued_at)?;
    let expires_at = parse_time("expires_at", &raw.expires_at)?;
    if expires_at <= issued_at {
        return Err(field("expires_at", "not after issued_at".into()));
    }
    if raw.host_id.is_empty()
        || raw.host_id.len() > 253
        || !raw.host_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(field("host_id", "must be 1-253 printable ASCII".into()));
    }
    let action =
        Action::parse(&raw.action).ok_or_else(|| field("action", "not a known action".into()))?;
    let target = match (raw.target.vmid, raw.target.storage, raw.target.host) {
        (Some(id), None, None) => Target::Vmid(id),
        (None, Some(id), None) => Target::Storage(id),
        (None, None, Some(true)) => Target::Host,
        (None, None, Some(false)) => return Err(field("target", "host must be true".into())),
        _ => {
            return Err(field(
                "target",
                "exactly one of vmid, storage or host".into(),
            ))
        }
    };
    target.validate()?;
    if !action.target_kinds().contains(&target.kind()) {
        return Err(field(
            "target",
            format!("{action} does not take a {:?} target", target.kind()),
        ));
    }
    Ok(Envelope {
        op_id: raw.op_id,
        nonce: raw.nonce,
        issued_at,
        expires_at,
        host_id: raw.host_id,
        action,
        target,
        params: raw.params,
    })
}

fn field(field: &'static str, problem: String) -> ParseError {
    ParseError::Field { field, problem }
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$`
pub fn check_op_id(op_id: &str) -> Result<(), ParseError> {
    let b = op_id.as_bytes();
    let ok = (8..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(field(
            "op_id",
            "must match ^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$".into(),
        ))
    }
}

/// 16 to 128 characters of `[A-Za-z0-9_-]`.
pub fn check_nonce(nonce: &str) -> Result<(), ParseError> {
    let ok = (16..=128).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(field(
            "nonce",
            "must be 16-128 characters of [A-Za-z0-9_-]".into(),
        ))
    }
}

fn parse_time(name: &'static str, text: &str) -> Result<OffsetDateTime, ParseError> {
    // RFC 3339 lets applications use a space for `T` and lower case `t`/`z`; `time` accepts
    // them. We take one spelling only: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    if text.len() > 40 || text.as_bytes().get(10) != Some(&b'T') || text.ends_with('z') {
        return Err(field(name, "not an RFC 3339 time".into()));
    }
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| field(name, "not an RFC 3339 time".into()))
}

fn valid_storage_id(id: &str) -> bool {
    // PVE's pve-storage-id format: /^[a-z][a-z0-9\-\_\.]*[a-z0-9]$/i (PVE/JSONSchema.pm).
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses JSON into a [`Value`], refusing duplicate object keys at any depth.
fn strict_json(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = NoDuplicates::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

struct NoDuplicates(Value);

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor).map(NoDuplicates)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(NoDuplicates(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let NoDuplicates(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn sample() -> Value {
        serde_json::json!({
            "v": 1, "op_id": "op-20261121-abcd", "nonce": "n0nce-n0nce-n0nce-01",
            "issued_at": "2026-11-21T10:00:00Z", "expires_at": "2026-11-21T10:15:00+00:00",
            "host_id": "host-1", "action": "guest.destroy", "target": {"vmid": 101},
            "params": {}
        })
    }

    fn parse_value(v: &Value) -> Result<Envelope, ParseError> {
        parse_payload(serde_json::to_string(v).unwrap().as_bytes())
    }

    #[test]
    fn parses_the_design_shape() {
        let env = parse_value(&sample()).unwrap();
        assert_eq!(env.action, Action::GuestDestroy);
        assert_eq!(env.target, Target::Vmid(101));
        assert_eq!((env.expires_at - env.issued_at).whole_minutes(), 15);
    }

    #[test]
    fn refuses_unknown_missing_and_wrong_version() {
        let mut extra = sample();
        extra["role"] = "operator".into();
        assert!(parse_value(&extra)
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let mut missing = sample();
        missing.as_object_mut().unwrap().remove("params");
        assert!(parse_value(&missing).is_err());
        for v in [
            serde_json::json!(2),
            serde_json::json!(0),
            serde_json::json!("1"),
            serde_json::json!(1.0),
        ] {
            let mut wrong = sample();
            wrong["v"] = v;
            assert!(parse_value(&wrong).is_err());
        }
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let text = serde_json::to_string(&sample()).unwrap();
        let top = text.replacen(
            "\"host_id\":\"host-1\"",
            "\"host_id\":\"host-1\",\"host_id\":\"host-2\"",
            1,
        );
        assert!(parse_payload(top.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let nested = text.replacen("\"params\":{}", "\"params\":{\"a\":{\"b\":1,\"b\":2}}", 1);
        assert!(parse_payload(nested.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }

    #[test]
    fn refuses_bad_times() {
        for (k, bad) in [
            ("issued_at", "2026-11-21 10:00:00Z"),
            ("issued_at", "2026-11-21T10:00:00"),
            ("issued_at", "2026-11-21t10:00:00Z"),
            ("issued_at", "2026-11-21T10:00:00z"),
            ("issued_at", "2026-11-21T25:00:00Z"),
            ("expires_at", "1763719200"),
            ("expires_at", "2026-11-21T09:00:00Z"),
            ("expires_at", "2026-11-21T10:00:00Z"),
        ] {
            let mut v = sample();
            v[k] = bad.into();
            assert!(parse_value(&v).is_err(), "{k}={bad}");
        }
    }

    #[test]
    fn refuses_bad_ids_targets_and_action_target_mismatch() {
        let cases: Vec<(&str, Value)> = vec![
            ("op_id", "short".into()),
            ("op_id", "-leading-dash".into()),
            ("op_id", "has space in it".into()),
            ("nonce", "tooshort".into()),
            ("nonce", "not/base64url/nonce+".into()),
            ("target", serde_json::json!({"vmid": 101, "host": true})),
            ("target", serde_json::json!({"vmid": 99})),
            ("target", serde_json::json!({"host": false})),
            ("target", serde_json::json!({})),
            ("target", serde_json::json!({"storage": "../etc"})),
            ("target", serde_json::json!({"storage": "local"})),
            ("action", "guest.nuke".into()),
            ("host_id", "".into()),
            ("params", serde_json::json!([])),
        ];
        for (k, bad) in cases {
            let mut v = sample();
            v[k] = bad.clone();
            assert!(parse_value(&v).is_err(), "{k}={bad}");
        }
    }

    #[test]
    fn op_id_bounds() {
        assert!(check_op_id("abcdefgh").is_ok());
        assert!(check_op_id("abcdefg").is_err());
        assert!(check_op_id(&"a".repeat(64)).is_ok());
        assert!(check_op_id(&"a".repeat(65)).is_err());
        assert!(check_nonce(&"a".repeat(16)).is_ok());
        assert!(check_nonce(&"a".repeat(129)).is_err());
    }

    #[test]
    fn every_action_round_trips_and_takes_a_target() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert!(!a.target_kinds().is_empty());
        }
        for t in [
            Target::Vmid(101),
            Target::Storage("usb-1".into()),
            Target::Host,
        ] {
            assert_eq!(Target::parse_cli(&t.to_string()).unwrap(), t);
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_payload(&bytes);
        }

        #[test]
        fn never_panics_on_json_like_text(text in r#"[{}\[\]":,0-9a-z_.\- ]{0,300}"#) {
            let _ = parse_payload(text.as_bytes());
        }

        #[test]
        fn never_panics_when_a_field_is_replaced(key in "(v|op_id|nonce|issued_at|expires_at|host_id|action|target|params|extra)",
                                                 value in any::<String>(), n in any::<i64>()) {
            let mut v = sample();
            v[&key] = if n % 2 == 0 { Value::String(value) } else { Value::from(n) };
            let _ = parse_value(&v);
        }
    }
}
