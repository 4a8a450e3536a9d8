//! `GET /access/permissions`: the token's effective privileges, as a [`PermissionMap`].

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::client::{Client, Params};
use crate::error::Result;
use crate::lenient::value_to_bool;

/// `{"<acl path>": {"<privilege>": propagate}}`. For privilege-separated tokens these are the
/// effective (user ∩ token) privileges (pve-access-control `RPCEnvironment.pm:241-289`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionMap(BTreeMap<String, BTreeMap<String, bool>>);

impl PermissionMap {
    /// Builds a map (for tests and fakes).
    pub fn new(paths: BTreeMap<String, BTreeMap<String, bool>>) -> Self {
        PermissionMap(paths)
    }

    /// The privileges held on exactly this ACL path (empty if the path is not listed).
    pub fn privileges(&self, path: &str) -> impl Iterator<Item = &str> {
        self.0
            .get(path)
            .into_iter()
            .flat_map(|privs| privs.keys().map(String::as_str))
    }

    /// True if `privilege` is held on `path`.
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        self.0.get(path).is_some_and(|p| p.contains_key(privilege))
    }

    /// All listed paths.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for PermissionMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (path, privs) in raw {
            let mut m = BTreeMap::new();
            for (name, v) in privs {
                let propagate = value_to_bool(&v).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "privilege {name} on {path} is {v}, expected 0/1"
                    ))
                })?;
                m.insert(name, propagate);
            }
            out.insert(path, m);
        }
        Ok(PermissionMap(out))
    }
}

impl Client {
    /// `GET /access/permissions` for the calling token, optionally for one path only.
    pub async fn permissions(&self, path: Option<&str>) -> Result<PermissionMap> {
        self.call(
            Method::GET,
            "/access/permissions",
            Params::new().opt_str("path", path),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pve_shape() {
        let m: PermissionMap = serde_json::from_value(serde_json::json!({
            "/": {"Sys.Audit": 1, "VM.Audit": 0},
            "/vms/101": {"VM.PowerMgmt": "1"},
            "/access": {}
        }))
        .unwrap();
        assert!(m.has("/", "Sys.Audit"));
        assert!(m.has("/", "VM.Audit"));
        assert!(!m.has("/vms/101", "VM.Audit"));
        assert_eq!(m.privileges("/access").count(), 0);
        assert_eq!(m.privileges("/nope").count(), 0);
        assert!(serde_json::from_value::<PermissionMap>(
            serde_json::json!({"/": {"X": "yes please"}})
        )
        .is_err());
    }
}
