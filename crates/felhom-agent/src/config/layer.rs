//! Building the raw JSON tree: the file, checked against the key table, then the environment
//! overlay on top. Records where every value came from so later errors can say so.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use serde_json::{Map, Value};

use super::keys::{self, Kind, ENV_CONFIG, ENV_CREDENTIAL_SUFFIX, ENV_FILE_SUFFIX, ENV_PREFIX};
use super::{ConfigError, Origin};

/// The merged tree and the origin of each key that has a value.
pub(crate) struct Layered {
    pub tree: Value,
    pub origins: BTreeMap<&'static str, Origin>,
}

/// Parses the file text and checks every key and its shape against the table.
pub(crate) fn from_file(path: &Path, text: &str) -> Result<Layered, ConfigError> {
    let tree: Value = serde_json::from_str(text).map_err(|err| ConfigError::Json {
        path: path.to_owned(),
        line: err.line(),
        column: err.column(),
        message: strip_position(&err.to_string()),
    })?;
    let origin = Origin::File(path.to_owned());
    let top = tree.as_object().ok_or_else(|| ConfigError::Invalid {
        key: "(top level)".to_owned(),
        origin: origin.clone(),
        reason: "must be a JSON object".to_owned(),
    })?;
    let unknown = |key: String| ConfigError::UnknownKey {
        path: path.to_owned(),
        key,
    };
    let mut origins = BTreeMap::new();
    for (name, value) in top {
        if keys::SECTIONS.contains(&name.as_str()) {
            let section = value.as_object().ok_or_else(|| ConfigError::Invalid {
                key: name.clone(),
                origin: origin.clone(),
                reason: "must be a JSON object".to_owned(),
            })?;
            for (sub, value) in section {
                let dotted = format!("{name}.{sub}");
                let key = keys::find(&dotted).ok_or_else(|| unknown(dotted.clone()))?;
                check_shape(key, value, &origin)?;
                origins.insert(key.path, origin.clone());
            }
        } else {
            let key = keys::find(name)
                .filter(|k| k.split().0.is_none())
                .ok_or_else(|| unknown(name.clone()))?;
            check_shape(key, value, &origin)?;
            origins.insert(key.path, origin.clone());
        }
    }
    Ok(Layered { tree, origins })
}

/// serde_json appends " at line L column C"; the error prints the position itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn check_shape(key: &keys::Key, value: &Value, origin: &Origin) -> Result<(), ConfigError> {
    let ok = match key.kind {
        Kind::Text => value.is_string(),
        Kind::Number => value.is_u64(),
        Kind::List => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        Kind::Secret => match value {
            Value::String(_) => true,
            Value::Object(map) => {
                map.len() == 1
                    && (map.get("file").is_some_and(Value::is_string)
                        || map.get("credential").is_some_and(Value::is_string))
            }
            _ => false,
        },
    };
    if ok {
        return Ok(());
    }
    let expected = match key.kind {
        Kind::Text => "a string",
        Kind::Number => "a non-negative integer",
        Kind::List => "a list of strings",
        Kind::Secret => "a string, {\"file\": \"/path\"} or {\"credential\": \"name\"}",
    };
    Err(ConfigError::Invalid {
        key: key.path.to_owned(),
        origin: origin.clone(),
        reason: format!("must be {expected}"),
    })
}

/// Applies every `FELHOM_AGENT_*` variable in `env` (except `FELHOM_AGENT_CONFIG`) to the tree.
///
/// `<KEY>` sets the value; for secrets `<KEY>_FILE` and `<KEY>_CREDENTIAL` set the file and
/// credential forms. Numbers are parsed, lists split on commas. Any other variable with the
/// prefix is an error.
pub(crate) fn overlay_env(
    layered: &mut Layered,
    env: &[(OsString, OsString)],
) -> Result<(), ConfigError> {
    let mut set_by: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else {
            // A non-UTF-8 name cannot be one of ours, whatever its prefix.
            continue;
        };
        if !name.starts_with(ENV_PREFIX) || name == ENV_CONFIG {
            continue;
        }
        let (key, form) = match_env(name).ok_or_else(|| ConfigError::UnknownEnv {
            var: name.to_owned(),
        })?;
        let origin = Origin::Env(name.to_owned());
        let value = value.to_str().ok_or_else(|| ConfigError::Invalid {
            key: key.path.to_owned(),
            origin: origin.clone(),
            reason: "is not valid UTF-8".to_owned(),
        })?;
        if let Some(first) = set_by.insert(key.path, name.to_owned()) {
            return Err(ConfigError::EnvConflict {
                key: key.path,
                first,
                second: name.to_owned(),
            });
        }
        let json = match (key.kind, form) {
            (Kind::Text, _) => Value::String(value.to_owned()),
            (Kind::Number, _) => {
                let n: u64 = value.trim().parse().map_err(|_| ConfigError::Invalid {
                    key: key.path.to_owned(),
                    origin: origin.clone(),
                    reason: "must be a non-negative integer".to_owned(),
                })?;
                Value::from(n)
            }
            (Kind::List, _) => Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            (Kind::Secret, SecretForm::Inline) => Value::String(value.to_owned()),
            (Kind::Secret, SecretForm::File) => single("file", value),
            (Kind::Secret, SecretForm::Credential) => single("credential", value),
        };
        set(&mut layered.tree, key, json);
        layered.origins.insert(key.path, origin);
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum SecretForm {
    Inline,
    File,
    Credential,
}

fn match_env(name: &str) -> Option<(&'static keys::Key, SecretForm)> {
    keys::KEYS.iter().find_map(|key| {
        let base = key.env_name();
        if name == base {
            return Some((key, SecretForm::Inline));
        }
        if key.kind != Kind::Secret {
            return None;
        }
        let rest = name.strip_prefix(&base)?;
        match rest {
            ENV_FILE_SUFFIX => Some((key, SecretForm::File)),
            ENV_CREDENTIAL_SUFFIX => Some((key, SecretForm::Credential)),
            _ => None,
        }
    })
}

fn single(field: &str, value: &str) -> Value {
    let mut map = Map::new();
    map.insert(field.to_owned(), Value::String(value.to_owned()));
    Value::Object(map)
}

fn set(tree: &mut Value, key: &keys::Key, value: Value) {
    let Value::Object(top) = tree else {
        // from_file only returns object trees.
        return;
    };
    match key.split() {
        (None, name) => {
            top.insert(name.to_owned(), value);
        }
        (Some(section), name) => {
            let entry = top
                .entry(section.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(name.to_owned(), value);
            }
        }
    }
}
