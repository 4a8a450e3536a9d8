//! The table of every configuration key: its path, its JSON shape and its environment name.
//!
//! The file check, the environment overlay and the unknown-key errors all read this one table,
//! so a key added to [`super::raw`] must be added here too (a unit test checks they agree).

/// The JSON shape a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string.
    Text,
    /// A non-negative integer.
    Number,
    /// A list of strings (comma-separated in the environment).
    List,
    /// A secret: a string, `{"file": PATH}` or `{"credential": NAME}`.
    Secret,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// Dotted path, `section.key` or a top-level `key`.
    pub path: &'static str,
    /// Its shape.
    pub kind: Kind,
}

impl Key {
    /// `FELHOM_AGENT_` + the path upper-cased with `.` → `_`.
    pub fn env_name(&self) -> String {
        format!(
            "{ENV_PREFIX}{}",
            self.path.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The section and the key inside it; `None` for a top-level key.
    pub fn split(&self) -> (Option<&'static str>, &'static str) {
        match self.path.split_once('.') {
            Some((section, key)) => (Some(section), key),
            None => (None, self.path),
        }
    }
}

/// Prefix of every overlay variable.
pub(crate) const ENV_PREFIX: &str = "FELHOM_AGENT_";

/// The variable that names the config file; reserved, never an overlay.
pub(crate) const ENV_CONFIG: &str = "FELHOM_AGENT_CONFIG";

/// Suffix of the variable that gives a secret as a file path.
pub(crate) const ENV_FILE_SUFFIX: &str = "_FILE";

/// Suffix of the variable that gives a secret as a systemd credential name.
pub(crate) const ENV_CREDENTIAL_SUFFIX: &str = "_CREDENTIAL";

/// The sections (objects) of the file.
pub(crate) const SECTIONS: &[&str] = &[
    "proxmox",
    "hub",
    "desired",
    "local_api",
    "authz",
    "reconcile",
    "cloudflared",
    "smart",
    "log",
];

/// Every key.
pub(crate) const KEYS: &[Key] = &[
    Key {
        path: "host_id",
        kind: Kind::Text,
    },
    Key {
        path: "state_dir",
        kind: Kind::Text,
    },
    Key {
        path: "operators_file",
        kind: Kind::Text,
    },
    Key {
        path: "proxmox.url",
        kind: Kind::Text,
    },
    Key {
        path: "proxmox.node",
        kind: Kind::Text,
    },
    Key {
        path: "proxmox.token",
        kind: Kind::Secret,
    },
    Key {
        path: "proxmox.fingerprint",
        kind: Kind::Text,
    },
    Key {
        path: "proxmox.connect_timeout_s",
        kind: Kind::Number,
    },
    Key {
        path: "proxmox.request_timeout_s",
        kind: Kind::Number,
    },
    Key {
        path: "hub.url",
        kind: Kind::Text,
    },
    Key {
        path: "hub.api_key",
        kind: Kind::Secret,
    },
    Key {
        path: "hub.poll_interval_s",
        kind: Kind::Number,
    },
    Key {
        path: "hub.request_timeout_s",
        kind: Kind::Number,
    },
    Key {
        path: "hub.fingerprint",
        kind: Kind::Text,
    },
    Key {
        path: "desired.file",
        kind: Kind::Text,
    },
    Key {
        path: "desired.ops_dir",
        kind: Kind::Text,
    },
    Key {
        path: "local_api.listen",
        kind: Kind::List,
    },
    Key {
        path: "authz.clock_skew_s",
        kind: Kind::Number,
    },
    Key {
        path: "authz.max_lifetime_s",
        kind: Kind::Number,
    },
    Key {
        path: "reconcile.parallel",
        kind: Kind::Number,
    },
    Key {
        path: "reconcile.queue_depth",
        kind: Kind::Number,
    },
    Key {
        path: "cloudflared.metrics_addr",
        kind: Kind::Text,
    },
    Key {
        path: "smart.devices",
        kind: Kind::List,
    },
    Key {
        path: "smart.interval_s",
        kind: Kind::Number,
    },
    Key {
        path: "log.level",
        kind: Kind::Text,
    },
    Key {
        path: "log.format",
        kind: Kind::Text,
    },
];

/// The key at `path`.
pub(crate) fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn environment_names_never_collide() {
        let mut names = BTreeSet::new();
        names.insert(ENV_CONFIG.to_owned());
        for key in KEYS {
            assert!(names.insert(key.env_name()), "{} collides", key.env_name());
            if key.kind == Kind::Secret {
                for suffix in [ENV_FILE_SUFFIX, ENV_CREDENTIAL_SUFFIX] {
                    let name = format!("{}{suffix}", key.env_name());
                    assert!(names.insert(name.clone()), "{name} collides");
                }
            }
        }
    }

    #[test]
    fn every_section_key_belongs_to_a_section() {
        for key in KEYS {
            if let (Some(section), _) = key.split() {
                assert!(SECTIONS.contains(&section), "{}", key.path);
            }
        }
        assert_eq!(
            find("proxmox.url").unwrap().env_name(),
            "FELHOM_AGENT_PROXMOX_URL"
        );
        assert_eq!(find("host_id").unwrap().env_name(), "FELHOM_AGENT_HOST_ID");
        assert_eq!(
            find("local_api.listen").unwrap().env_name(),
            "FELHOM_AGENT_LOCAL_API_LISTEN"
        );
    }
}
