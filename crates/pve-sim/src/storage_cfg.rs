//! The cluster storage config (`/etc/pve/storage.cfg`): `GET|POST /storage`,
//! `GET|PUT|DELETE /storage/{storage}` (pve-storage `API2/Storage/Config.pm:120-460`).
//!
//! Validation follows PVE's order: the flat schema (every plugin option optional), then the
//! plugin's `check_config` outside the lock (unexpected option, fixed option on update, missing
//! required option: pve-common `SectionConfig.pm:1168-1208,1608-1641`), then inside the lock
//! the duplicate check and the activation of the new storage on this node. Errors inside the
//! lock carry `create storage failed: ` / `update storage failed: ` / `delete storage
//! failed: ` (`Storage.pm:242-250`).
//!
//! Simplification: activation uses the simulator's model ([`crate::activation`]); PBS
//! datastores, fingerprints and credentials are not checked against a real server.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::activation;
use crate::envelope::{ApiError, Reply};
use crate::request::value_text;
use crate::server::Call;
use crate::state::{State, Storage};
use crate::tasks;

/// Options kept outside storage.cfg and never returned.
const SECRETS: &[&str] = &["password", "encryption-key", "master-pubkey", "keyring"];

/// Options every plugin accepts.
const COMMON: &[&str] = &["nodes", "disable", "content"];

/// The file-based plugins' shared options.
const FILE_BASED: &[&str] = &[
    "path",
    "content-dirs",
    "prune-backups",
    "max-protected-backups",
    "format",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "bwlimit",
    "preallocation",
    "snapshot-as-volume-chain",
];

/// One plugin's `options()`: which keys it accepts, which are required (not `optional`),
/// which are `fixed` (cannot change after create).
struct Plugin {
    extra: &'static [&'static str],
    file_based: bool,
    required: &'static [&'static str],
    fixed: &'static [&'static str],
}

/// The modelled plugins (pve-storage `DirPlugin.pm:80-98`, `NFSPlugin.pm:88-107`,
/// `CIFSPlugin.pm:161-185`, `PBSPlugin.pm:63-80`). `path` is required for NFS/CIFS too but
/// defaults to `/mnt/pve/<id>` before the check (`NFSPlugin.pm:110-116`). Other types only
/// get their required options checked.
fn plugin(kind: &str) -> Option<Plugin> {
    Some(match kind {
        "dir" => Plugin {
            extra: &["shared", "is_mountpoint"],
            file_based: true,
            required: &["path"],
            fixed: &["path", "snapshot-as-volume-chain"],
        },
        "nfs" => Plugin {
            extra: &["server", "export", "options"],
            file_based: true,
            required: &["path", "server", "export"],
            fixed: &["path", "server", "export", "snapshot-as-volume-chain"],
        },
        "cifs" => Plugin {
            extra: &[
                "server",
                "share",
                "subdir",
                "username",
                "password",
                "domain",
                "smbversion",
                "options",
            ],
            file_based: true,
            required: &["path", "server", "share"],
            fixed: &["path", "server", "share", "snapshot-as-volume-chain"],
        },
        "pbs" => Plugin {
            extra: &[
                "server",
                "datastore",
                "namespace",
                "port",
                "username",
                "password",
                "encryption-key",
                "master-pubkey",
                "prune-backups",
                "max-protected-backups",
                "fingerprint",
            ],
            file_based: false,
            required: &["server", "datastore"],
            fixed: &["server", "datastore"],
        },
        _ => return None,
    })
}

impl Plugin {
    fn accepts(&self, key: &str) -> bool {
        COMMON.contains(&key)
            || self.extra.contains(&key)
            || (self.file_based && FILE_BASED.contains(&key))
    }
}

/// Required options of types that are not modelled in full.
fn required_other(kind: &str) -> &'static [&'static str] {
    match kind {
        "lvmthin" => &["vgname", "thinpool"],
        "lvm" => &["vgname"],
        "zfspool" => &["pool"],
        _ => &[],
    }
}

/// Options that hold secrets per type (`sensitive-properties` of each plugin): taken out of
/// the parameters before `check_config`, so on other types they are unexpected.
fn sensitive(kind: &str) -> &'static [&'static str] {
    match kind {
        "pbs" => &["password", "encryption-key", "master-pubkey"],
        "cifs" => &["password"],
        "rbd" | "cephfs" => &["keyring"],
        _ => &[],
    }
}

/// Default `content` per type (the second element of each plugin's `plugindata` content).
fn default_content(kind: &str) -> &'static str {
    match kind {
        "pbs" => "backup",
        "dir" => "images,rootdir",
        _ => "images",
    }
}

/// Storage options typed boolean or integer in the schema (`GET /storage/{storage}`).
const NUMERIC_OPTIONS: &[&str] = &[
    "disable",
    "shared",
    "port",
    "max-protected-backups",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "nocow",
    "saferemove",
    "krbd",
    "tagged_only",
    "sparse",
    "snapshot-as-volume-chain",
];

/// Whether the storage is shared between nodes: the types PVE marks shared on parse
/// (`@SHARED_STORAGE`, pve-storage `Plugin.pm`), or `shared 1`.
pub fn shared(s: &Storage) -> bool {
    matches!(
        s.kind.as_str(),
        "nfs" | "cifs" | "pbs" | "cephfs" | "rbd" | "iscsi"
    ) || s.props.get("shared").map(String::as_str) == Some("1")
}

fn missing(id: &str) -> String {
    format!("storage '{id}' does not exist")
}

fn cfg_entry(id: &str, s: &Storage) -> Value {
    let mut out = Map::new();
    out.insert("storage".into(), json!(id));
    out.insert("type".into(), json!(s.kind));
    for (k, v) in &s.props {
        // The parsed storage.cfg answers booleans and integers as JSON numbers
        // (pve-storage API2/Storage/Config.pm returns the parsed section config).
        let numeric = NUMERIC_OPTIONS.contains(&k.as_str());
        match v.parse::<i64>() {
            Ok(n) if numeric => out.insert(k.clone(), json!(n)),
            _ => out.insert(k.clone(), json!(v)),
        };
    }
    if shared(s) && !s.props.contains_key("shared") && s.kind != "pbs" {
        out.insert("shared".into(), json!(1));
    }
    Value::Object(out)
}

/// `GET /storage` (`type` filter), without secrets.
pub fn cfg_list(call: &Call) -> Result<Reply, ApiError> {
    let kind = call.str("type");
    call.sim.with_state(|st| {
        let items: Vec<Value> = st
            .storages
            .iter()
            .filter(|(_, s)| kind.as_ref().is_none_or(|k| k == &s.kind))
            .filter(|(id, _)| {
                st.access.has_any(
                    &call.user,
                    &format!("/storage/{id}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )
            })
            .map(|(id, s)| cfg_entry(id, s))
            .collect();
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `GET /storage/{storage}`.
pub fn cfg_get(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    call.sim.with_state(|st| {
        let s = st
            .storages
            .get(&id)
            .ok_or_else(|| ApiError::Fail(format!("{}\n", missing(&id))))?;
        let mut entry = cfg_entry(&id, s);
        entry["digest"] = json!(hex::encode(Sha256::digest(entry.to_string().as_bytes()))[..40]);
        Ok(Reply::data(entry))
    })
}

/// Handle `encryption-key` (`PBSPlugin.pm:506-547`): `autogen` makes a key that is returned
/// once; a JSON key is accepted; the config keeps the fingerprint.
fn encryption_key(value: &str) -> Result<(String, Option<String>), String> {
    let (key, returned) = if value == "autogen" {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|_| "unable to generate key".to_string())?;
        let now = tasks::now();
        let key = json!({"kdf": null, "created": now, "modified": now, "data": hex::encode(raw)})
            .to_string();
        (key.clone(), Some(key))
    } else if serde_json::from_str::<Value>(value).is_ok_and(|v| v.is_object()) {
        (value.to_string(), None)
    } else {
        return Err("Value does not seems like a valid, JSON formatted encryption key!".into());
    };
    let fp = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok((fp, returned))
}

/// The request's storage options as storage.cfg text, booleans as `1`/`0` (`check_value`
/// converts them to numbers, `SectionConfig.pm:1209-1211`).
fn split_options(call: &Call, skip: &[&str]) -> BTreeMap<String, String> {
    let props = crate::schema::info("POST", "/storage")
        .get("parameters")
        .and_then(|p| p.get("properties"));
    call.params
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let is_bool = props
                .and_then(|p| p.get(k))
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                == Some("boolean");
            let text = match v {
                _ if is_bool => match pve_schema::parse_boolean(v) {
                    Some(b) => if b { "1" } else { "0" }.to_string(),
                    None => value_text(v)?,
                },
                Value::Array(a) => a
                    .iter()
                    .filter_map(value_text)
                    .collect::<Vec<_>>()
                    .join(","),
                other => value_text(other)?,
            };
            Some((k.clone(), text))
        })
        .collect()
}

/// `check_config`: unexpected options, then (create) missing required ones, then the dir
/// plugin's path check (`DirPlugin.pm:255-266`). Keys are checked in sorted order where
/// PVE's order is Perl hash order.
fn check_config(kind: &str, opts: &BTreeMap<String, String>, create: bool) -> Result<(), String> {
    let plugin = plugin(kind);
    for k in opts.keys() {
        if let Some(p) = &plugin {
            if !create && p.fixed.contains(&k.as_str()) {
                return Err(format!("can't change value of fixed parameter '{k}'"));
            }
            if !p.accepts(k) {
                return Err(format!("unexpected property '{k}'"));
            }
        }
    }
    if create {
        let required = plugin.as_ref().map_or(required_other(kind), |p| p.required);
        if let Some(k) = required.iter().find(|k| !opts.contains_key(**k)) {
            return Err(format!("missing value for required option '{k}'"));
        }
        if kind == "dir" {
            let path = opts.get("path").map(String::as_str).unwrap_or("");
            let legal = path.starts_with('/')
                && path.len() > 1
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-/_.@".contains(c));
            if !legal {
                return Err(format!("illegal path for directory storage: {path}"));
            }
        }
    }
    Ok(())
}

fn fail(msg: String) -> ApiError {
    ApiError::Fail(format!("{msg}\n"))
}

/// Take the secrets out of the options (`extract_sensitive_params`); `encryption-key`
/// leaves its fingerprint in the config and may return a generated key.
fn take_secrets(
    kind: &str,
    props: &mut BTreeMap<String, String>,
    secrets: &mut BTreeMap<String, String>,
    config: &mut Map<String, Value>,
) -> Result<(), String> {
    for k in sensitive(kind) {
        let Some(v) = props.remove(*k) else { continue };
        if *k == "encryption-key" {
            let (fp, returned) = encryption_key(&v)?;
            props.insert("encryption-key".into(), fp);
            if let Some(key) = returned {
                config.insert("encryption-key".into(), json!(key));
            }
        }
        secrets.insert(k.to_string(), v);
    }
    Ok(())
}

/// `POST /storage`.
pub fn cfg_create(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    let kind = call.str("type").unwrap_or_default();
    let mut props = split_options(call, &["storage", "type"]);
    if props.get("nodes").is_some_and(|n| n.is_empty()) {
        props.remove("nodes");
    }
    let mut secrets = BTreeMap::new();
    let mut config = Map::new();
    take_secrets(&kind, &mut props, &mut secrets, &mut config).map_err(fail)?;
    if matches!(kind.as_str(), "nfs" | "cifs") && !props.contains_key("path") {
        props.insert("path".into(), format!("/mnt/pve/{id}"));
    }
    if kind == "dir" {
        if let Some(p) = props.get_mut("path") {
            // `File::Spec->canonpath`: trailing slashes go.
            let trimmed = p.trim_end_matches('/');
            if !trimmed.is_empty() {
                *p = trimmed.to_string();
            }
        }
    }
    check_config(&kind, &props, true).map_err(fail)?;
    let locked = |msg: String| fail(format!("create storage failed: {msg}"));
    call.sim.mutate(|st| {
        if st.storages.contains_key(&id) {
            return Err(locked(format!("storage ID '{id}' already defined")));
        }
        props
            .entry("content".into())
            .or_insert_with(|| default_content(&kind).into());
        let storage = Storage {
            kind: kind.clone(),
            props,
            secrets,
            total: 500 << 30,
        };
        // PVE activates the new storage on this node if it is enabled here, only to find
        // problems early; a failure aborts the create (Config.pm:257-272).
        if activation::enabled_here(st, &id, &storage) {
            if let Some(err) = activation::error(st, &id, &storage) {
                return Err(locked(err));
            }
        }
        st.storages.insert(id.clone(), storage);
        let mut out = json!({"storage": id, "type": kind});
        // PBS's on_add_hook returns a hash even without a key (PBSPlugin.pm:506-547).
        if !config.is_empty() || kind == "pbs" {
            out["config"] = Value::Object(config);
        }
        Ok(Reply::data(out))
    })
}

/// `PUT /storage/{storage}` (`delete`, `digest` accepted).
pub fn cfg_update(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    let mut props = split_options(call, &["storage", "delete", "digest"]);
    let delete: Vec<String> = call
        .str("delete")
        .map(|d| {
            d.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let locked = |msg: String| fail(format!("update storage failed: {msg}"));
    call.sim.mutate(|st| {
        let s = st
            .storages
            .get_mut(&id)
            .ok_or_else(|| locked(missing(&id)))?;
        let kind = s.kind.clone();
        let mut secrets = BTreeMap::new();
        let mut config = Map::new();
        take_secrets(&kind, &mut props, &mut secrets, &mut config).map_err(locked)?;
        check_config(&kind, &props, false).map_err(locked)?;
        if let Some(p) = plugin(&kind) {
            for k in &delete {
                let known = p.accepts(k) || SECRETS.contains(&k.as_str());
                if !known {
                    return Err(locked(format!("no such option '{k}'")));
                }
                if p.required.contains(&k.as_str()) {
                    return Err(locked(format!("unable to delete required option '{k}'")));
                }
                if p.fixed.contains(&k.as_str()) {
                    return Err(locked(format!("unable to delete fixed option '{k}'")));
                }
                if props.contains_key(k) || secrets.contains_key(k) {
                    return Err(locked(format!(
                        "cannot set and delete property '{k}' at the same time!"
                    )));
                }
            }
        }
        for k in &delete {
            s.props.remove(k);
            s.secrets.remove(k);
        }
        s.props.extend(props);
        s.secrets.extend(secrets);
        let mut out = json!({"storage": id, "type": kind});
        if !config.is_empty() {
            out["config"] = Value::Object(config);
        }
        Ok(Reply::data(out))
    })
}

/// `DELETE /storage/{storage}`: removes the definition and its secrets, not the data, and
/// the ACLs on `/storage/<id>` (`Config.pm:416-458`).
pub fn cfg_delete(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    call.sim.mutate(|st: &mut State| {
        st.storages
            .remove(&id)
            .ok_or_else(|| fail(format!("delete storage failed: {}", missing(&id))))?;
        let path = format!("/storage/{id}");
        st.access.acls.retain(|e| e.path != path);
        Ok(Reply::null())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn check_config_texts() {
        assert_eq!(
            check_config(
                "nfs",
                &opts(&[("server", "nas"), ("path", "/mnt/pve/n")]),
                true
            ),
            Err("missing value for required option 'export'".into())
        );
        assert_eq!(
            check_config("dir", &opts(&[("path", "/x"), ("share", "s")]), true),
            Err("unexpected property 'share'".into())
        );
        assert_eq!(
            check_config("pbs", &opts(&[("server", "pbs")]), false),
            Err("can't change value of fixed parameter 'server'".into())
        );
        assert_eq!(
            check_config("dir", &opts(&[("path", "/mnt/a b")]), true),
            Err("illegal path for directory storage: /mnt/a b".into())
        );
        assert_eq!(
            check_config(
                "pbs",
                &opts(&[
                    ("server", "10.0.0.2"),
                    ("datastore", "s1"),
                    ("username", "a@pbs")
                ]),
                true
            ),
            Ok(())
        );
    }
}
