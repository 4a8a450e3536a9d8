//! Storages: node storage status and content, volume deletion, and the cluster storage config
//! (pve-storage `API2/Storage/Status.pm`, `Content.pm`, `Config.pm`).
//!
//! Simplification: creating a storage never contacts the backend (PVE activates it during
//! create and, for PBS, lists the datastores); every new storage is reachable until
//! `/_sim/storage/{id}` says otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::envelope::{ApiError, Reply};
use crate::request::value_text;
use crate::server::{check_node, Call};
use crate::state::{State, Storage};
use crate::tasks::{self, Work};

/// Options stored outside storage.cfg and never returned.
const SECRETS: &[&str] = &["password", "encryption-key", "master-pubkey", "keyring"];

fn missing(id: &str) -> ApiError {
    ApiError::Fail(format!("storage '{id}' does not exist\n"))
}

fn offline(id: &str) -> ApiError {
    ApiError::Fail(format!("storage '{id}' is not online\n"))
}

fn sto<'a>(st: &'a State, id: &str) -> Result<&'a Storage, ApiError> {
    st.storages.get(id).ok_or_else(|| missing(id))
}

fn shared(s: &Storage) -> bool {
    matches!(
        s.kind.as_str(),
        "nfs" | "cifs" | "pbs" | "cephfs" | "rbd" | "iscsi"
    ) || s.props.get("shared").map(String::as_str) == Some("1")
}

fn status_object(st: &State, id: &str, s: &Storage) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("storage".into(), json!(id));
    out.insert("type".into(), json!(s.kind));
    out.insert("content".into(), json!(s.content().join(",")));
    out.insert("shared".into(), json!(i32::from(shared(s))));
    out.insert("enabled".into(), json!(i32::from(s.enabled())));
    out.insert(
        "active".into(),
        json!(i32::from(s.reachable && s.enabled())),
    );
    if s.reachable {
        let used = st.storage_used(id).min(s.total);
        out.insert("total".into(), json!(s.total));
        out.insert("used".into(), json!(used));
        out.insert("avail".into(), json!(s.total - used));
        out.insert(
            "used_fraction".into(),
            json!(used as f64 / s.total.max(1) as f64),
        );
    }
    out
}

/// `GET /nodes/{node}/storage`: storages with `Datastore.Audit` or `Datastore.AllocateSpace`.
pub fn node_list(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let content = call.str("content");
    let only = call.str("storage");
    let enabled = call.flag("enabled");
    call.sim.with_state(|st| {
        let items: Vec<Value> = st
            .storages
            .iter()
            .filter(|(id, _)| {
                st.access.has_any(
                    &call.user,
                    &format!("/storage/{id}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )
            })
            .filter(|(id, _)| only.as_ref().is_none_or(|o| o == *id))
            .filter(|(_, s)| !enabled || s.enabled())
            .filter(|(_, s)| {
                content
                    .as_ref()
                    .is_none_or(|c| c.split(',').any(|c| s.content().iter().any(|x| x == c)))
            })
            .map(|(id, s)| Value::Object(status_object(st, id, s)))
            .collect();
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `GET /nodes/{node}/storage/{storage}/status`.
pub fn status(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    call.sim.with_state(|st| {
        let s = sto(st, &id)?;
        if !s.reachable {
            return Err(offline(&id));
        }
        let mut out = status_object(st, &id, s);
        out.remove("storage");
        out.remove("used_fraction");
        Ok(Reply::data(Value::Object(out)))
    })
}

/// The file path of a volume on a directory-like storage.
fn volume_path(st: &State, volid: &str) -> String {
    let (sid, name) = volid.split_once(':').unwrap_or(("", volid));
    let base = st
        .storages
        .get(sid)
        .and_then(|s| s.props.get("path").cloned())
        .unwrap_or_else(|| format!("/mnt/pve/{sid}"));
    match name.strip_prefix("backup/") {
        Some(file) => format!("{base}/dump/{file}"),
        None => format!("{base}/{name}"),
    }
}

/// `GET .../content` (`content`, `vmid`), sorted by volid case-insensitively.
pub fn content(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    let content = call.str("content");
    let vmid = call.int("vmid");
    call.sim.with_state(|st| {
        let s = sto(st, &id)?;
        if !s.reachable {
            return Err(offline(&id));
        }
        let prefix = format!("{id}:");
        let allocate = st.access.has_all(
            &call.user,
            &format!("/storage/{id}"),
            &["Datastore.Allocate"],
        );
        let mut items: Vec<(String, Value)> = st
            .volumes
            .iter()
            .filter(|(volid, _)| volid.starts_with(&prefix))
            .filter(|(_, v)| content.as_ref().is_none_or(|c| c == &v.content))
            .filter(|(_, v)| vmid.is_none_or(|want| v.vmid.map(i64::from) == Some(want)))
            .filter(|(_, v)| {
                allocate
                    || v.vmid.is_none_or(|o| {
                        st.access.has_any(
                            &call.user,
                            &format!("/vms/{o}"),
                            &["VM.Audit", "VM.Backup"],
                        )
                    })
            })
            .map(|(volid, v)| {
                let mut item = json!({
                    "volid": volid,
                    "content": v.content,
                    "format": v.format,
                    "size": v.size,
                    "ctime": v.ctime,
                });
                if let Some(o) = v.vmid {
                    item["vmid"] = json!(o);
                }
                if let Some(sub) = &v.subtype {
                    item["subtype"] = json!(sub);
                }
                if let Some(notes) = &v.notes {
                    item["notes"] = crate::vzdump::notes_first_line(notes);
                }
                if v.protected {
                    item["protected"] = json!(1);
                }
                if v.content == "rootdir" || v.content == "images" {
                    item["used"] = json!(v.size / 8);
                }
                (volid.to_lowercase(), item)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Reply::data(Value::Array(
            items.into_iter().map(|(_, v)| v).collect(),
        )))
    })
}

/// `DELETE .../content/{volume}`: a UPID, or with `delay` the task's outcome.
pub async fn delete_volume(call: &Call<'_>) -> Result<Reply, ApiError> {
    check_node(call)?;
    let id = call.str("storage").unwrap_or_default();
    let volume = call.str("volume").unwrap_or_default();
    let volid = if volume.contains(':') {
        volume
    } else {
        format!("{id}:{volume}")
    };
    let user = call.user.clone();
    let upid = call.sim.mutate(|st| {
        let s = sto(st, &id)?;
        if !s.reachable {
            return Err(offline(&id));
        }
        if user != "root@pam" {
            let spath = format!("/storage/{id}");
            match st.volumes.get(&volid) {
                Some(v) if v.content == "backup" && v.vmid.is_some() => {
                    let owner = v.vmid.unwrap_or_default();
                    st.access
                        .check(&user, &spath, &["Datastore.AllocateSpace"])
                        .map_err(ApiError::Forbidden)?;
                    st.access
                        .check(&user, &format!("/vms/{owner}"), &["VM.Backup"])
                        .map_err(ApiError::Forbidden)?;
                }
                _ => st
                    .access
                    .check(&user, &spath, &["Datastore.Allocate"])
                    .map_err(ApiError::Forbidden)?,
            }
        }
        // The worker has no id (`fork_worker('imgdel', undef, ...)` in Content.pm); a volid
        // could not be one anyway: UPID ids exclude '/'.
        Ok(call.sim.start_task(
            st,
            "imgdel",
            "",
            &user,
            Work::ImgDel {
                volid: volid.clone(),
            },
        ))
    })?;
    let Some(delay) = call.int("delay") else {
        return Ok(Reply::data(json!(upid)));
    };
    let deadline = tasks::now_ms() + delay * 1000;
    loop {
        let status = call.sim.with_state(|st| {
            st.tasks
                .iter()
                .find(|t| t.upid == upid)
                .and_then(|t| t.exitstatus.clone())
        });
        match status {
            Some(s) if !tasks::is_error(&s) => return Ok(Reply::null()),
            Some(s) => return Err(ApiError::Fail(format!("{s}\n"))),
            None if tasks::now_ms() >= deadline => return Ok(Reply::data(json!(upid))),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Worker of `imgdel`: protected backups refuse (pve-storage `Storage.pm:1831-1839`).
pub fn finish_imgdel(st: &mut State, volid: &str, log: &mut Vec<String>) -> Result<(), String> {
    let path = volume_path(st, volid);
    let v = st
        .volumes
        .get(volid)
        .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
    if v.protected {
        return Err(format!("cannot remove protected archive '{path}'"));
    }
    if v.content == "backup" {
        log.push(format!("Removed volume '{volid}' ({path})"));
    }
    st.volumes.remove(volid);
    Ok(())
}

// ---- cluster storage config ----

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
];

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
        let s = sto(st, &id)?;
        let mut entry = cfg_entry(&id, s);
        entry["digest"] = json!(hex::encode(Sha256::digest(entry.to_string().as_bytes()))[..40]);
        Ok(Reply::data(entry))
    })
}

/// Required options per type (pve-storage `DirPlugin.pm:80-98`, `NFSPlugin.pm:88-107`,
/// `CIFSPlugin.pm:161-185`, `PBSPlugin.pm:63-80`).
fn required(kind: &str) -> &'static [&'static str] {
    match kind {
        "dir" => &["path"],
        "nfs" => &["server", "export"],
        "cifs" => &["server", "share"],
        "pbs" => &["server", "datastore"],
        "lvmthin" => &["vgname", "thinpool"],
        "lvm" => &["vgname"],
        "zfspool" => &["pool"],
        _ => &[],
    }
}

fn default_content(kind: &str) -> &'static str {
    match kind {
        "pbs" => "backup",
        "lvmthin" | "lvm" | "zfspool" | "rbd" => "images",
        _ => "images",
    }
}

/// Handle `encryption-key` (`PBSPlugin.pm:506-547`): `autogen` makes a key that is returned
/// once; a JSON key is accepted; the config keeps the fingerprint.
fn encryption_key(value: &str) -> Result<(String, Option<String>), ApiError> {
    let (key, returned) = if value == "autogen" {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|_| ApiError::Fail("unable to generate key\n".into()))?;
        let now = tasks::now();
        let key = json!({"kdf": null, "created": now, "modified": now, "data": hex::encode(raw)})
            .to_string();
        (key.clone(), Some(key))
    } else if serde_json::from_str::<Value>(value).is_ok_and(|v| v.is_object()) {
        (value.to_string(), None)
    } else {
        return Err(ApiError::Fail(
            "Value does not seems like a valid, JSON formatted encryption key!\n".into(),
        ));
    };
    let fp = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok((fp, returned))
}

fn split_options(call: &Call, skip: &[&str]) -> BTreeMap<String, String> {
    call.params
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let text = match v {
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

/// `POST /storage`.
pub fn cfg_create(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    let kind = call.str("type").unwrap_or_default();
    let mut props = split_options(call, &["storage", "type"]);
    let missing: BTreeMap<String, String> = required(&kind)
        .iter()
        .filter(|k| !props.contains_key(**k))
        .map(|k| {
            (
                k.to_string(),
                "property is missing and it is not optional".to_string(),
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Param(missing));
    }
    call.sim.mutate(|st| {
        if st.storages.contains_key(&id) {
            return Err(ApiError::Fail(format!(
                "storage ID '{id}' already defined\n"
            )));
        }
        let mut secrets = BTreeMap::new();
        let mut config = Map::new();
        for k in SECRETS {
            if let Some(v) = props.remove(*k) {
                if *k == "encryption-key" {
                    let (fp, returned) = encryption_key(&v)?;
                    props.insert("encryption-key".into(), fp);
                    if let Some(key) = returned {
                        config.insert("encryption-key".into(), json!(key));
                    }
                }
                secrets.insert(k.to_string(), v);
            }
        }
        if matches!(kind.as_str(), "nfs" | "cifs") && !props.contains_key("path") {
            props.insert("path".into(), format!("/mnt/pve/{id}"));
        }
        props
            .entry("content".into())
            .or_insert_with(|| default_content(&kind).into());
        st.storages.insert(
            id.clone(),
            Storage {
                kind: kind.clone(),
                props,
                secrets,
                reachable: true,
                total: 500 << 30,
            },
        );
        let mut out = json!({"storage": id, "type": kind});
        if !config.is_empty() {
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
    call.sim.mutate(|st| {
        let s = st.storages.get_mut(&id).ok_or_else(|| missing(&id))?;
        let mut config = Map::new();
        for k in SECRETS {
            if let Some(v) = props.remove(*k) {
                if *k == "encryption-key" {
                    let (fp, returned) = encryption_key(&v)?;
                    s.props.insert("encryption-key".into(), fp);
                    if let Some(key) = returned {
                        config.insert("encryption-key".into(), json!(key));
                    }
                }
                s.secrets.insert(k.to_string(), v);
            }
        }
        for k in &delete {
            s.props.remove(k);
            s.secrets.remove(k);
        }
        s.props.extend(props);
        let mut out = json!({"storage": id, "type": s.kind});
        if !config.is_empty() {
            out["config"] = Value::Object(config);
        }
        Ok(Reply::data(out))
    })
}

/// `DELETE /storage/{storage}`: removes the definition, not the data.
pub fn cfg_delete(call: &Call) -> Result<Reply, ApiError> {
    let id = call.str("storage").unwrap_or_default();
    call.sim.mutate(|st| {
        st.storages.remove(&id).ok_or_else(|| missing(&id))?;
        Ok(Reply::null())
    })
}
