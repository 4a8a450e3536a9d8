//! The agent's configuration (DESIGN.md §4.2): a JSON file plus an environment overlay, in two
//! layers. [`raw`] is the text as serde types (`deny_unknown_fields`, no I/O); [`load`] checks
//! it and produces a [`Config`] with secrets read, file modes checked, required keys present and
//! URLs parsed. Every error names the file, the key or the variable. `CONFIG.md` in this crate
//! documents every key for operators.
//!
//! # Environment overlay
//!
//! `FELHOM_AGENT_<SECTION>_<KEY>` overrides `section.key` (`FELHOM_AGENT_PROXMOX_URL` →
//! `proxmox.url`); a top-level key `k` is `FELHOM_AGENT_K`. Numbers are parsed; lists
//! (`local_api.listen`) are comma-separated. A secret key takes three variables, at most one of
//! which may be set: `FELHOM_AGENT_PROXMOX_TOKEN` (inline value),
//! `FELHOM_AGENT_PROXMOX_TOKEN_FILE` (a path, like `{"file": …}`) and
//! `FELHOM_AGENT_PROXMOX_TOKEN_CREDENTIAL` (a systemd credential name, like
//! `{"credential": …}`); likewise `FELHOM_AGENT_HUB_API_KEY[_FILE|_CREDENTIAL]`. Any other
//! `FELHOM_AGENT_*` variable is an error, except `FELHOM_AGENT_CONFIG`, the config file path.
//!
//! # Secrets
//!
//! Inline (`"token": "…"`), from a file (`{"file": "/etc/felhom/token"}`: a regular file with
//! no group or other permission bits, one trailing newline stripped) or from a systemd credential
//! (`{"credential": "proxmox-token"}`: `$CREDENTIALS_DIRECTORY/proxmox-token`, same checks).
//! Values are [`pve::Secret`]s: printed and serialized as `<redacted>`.

mod error;
mod keys;
mod layer;
mod raw;
mod resolve;
mod secret_source;

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use error::ConfigError;
pub use secret_source::{ResolvedSecret, SecretSource};

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// Not set anywhere: the built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(var) => write!(f, "from {var}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The SHA-256 of the Proxmox API's leaf certificate (`AA:BB:…`); the client's own type, so
/// the pin is parsed by exactly one piece of code.
pub use pve::Fingerprint;

fn serialize_url<S: Serializer>(url: &url::Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

/// The resolved configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it was loaded from.
    pub source: PathBuf,
    /// This host's identity at the hub.
    pub host_id: String,
    /// Journal database, TLS keys, tokens.
    pub state_dir: PathBuf,
    /// Operators and roles; absent means no operator can sign, so every signature-gated change
    /// stays pending.
    pub operators_file: Option<PathBuf>,
    /// The Proxmox API.
    pub proxmox: ProxmoxConfig,
    /// The hub; absent in local (offline) mode.
    pub hub: Option<HubConfig>,
    /// Local desired state; used when no hub is configured.
    pub desired: Option<DesiredConfig>,
    /// The per-guest local API.
    pub local_api: LocalApiConfig,
    /// Signed-op verification bounds.
    pub authz: AuthzConfig,
    /// Guest mutation limits.
    pub reconcile: ReconcileConfig,
    /// cloudflared's metrics server; absent means the report carries `cloudflared: null`.
    pub cloudflared: Option<CloudflaredConfig>,
    /// SMART reads through the privileged fence.
    pub smart: SmartConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `proxmox.*`.
#[derive(Debug, Clone, Serialize)]
pub struct ProxmoxConfig {
    /// API base, `https://host:8006`.
    #[serde(serialize_with = "serialize_url")]
    pub url: url::Url,
    /// This host's node name.
    pub node: String,
    /// `user@realm!tokenid=secret`.
    pub token: ResolvedSecret,
    /// The pinned leaf certificate.
    pub fingerprint: Fingerprint,
    /// TCP+TLS connect limit, seconds.
    pub connect_timeout_s: u64,
    /// Whole-request limit, seconds.
    pub request_timeout_s: u64,
}

impl ProxmoxConfig {
    /// `connect_timeout_s` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
    }

    /// `request_timeout_s` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }
}

/// `hub.*`.
#[derive(Debug, Clone, Serialize)]
pub struct HubConfig {
    /// Hub base URL (http or https).
    #[serde(serialize_with = "serialize_url")]
    pub url: url::Url,
    /// Bearer key.
    pub api_key: ResolvedSecret,
    /// Seconds between polls.
    pub poll_interval_s: u64,
    /// Limit for one hub request, seconds.
    pub request_timeout_s: u64,
    /// Optional SHA-256 pin of the hub's leaf certificate (https only); replaces the CA check.
    pub fingerprint: Option<Fingerprint>,
}

/// `desired.*`.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredConfig {
    /// Desired-state JSON file.
    pub file: PathBuf,
    /// Directory of signed ops.
    pub ops_dir: Option<PathBuf>,
}

/// `authz.*`: how much clock skew and how long a lifetime a signed op may have.
#[derive(Debug, Clone, Serialize)]
pub struct AuthzConfig {
    /// Allowed clock difference to the operator's machine, seconds (at most one hour).
    pub clock_skew_s: u64,
    /// Longest accepted `expires_at - issued_at`, seconds (at most seven days).
    pub max_lifetime_s: u64,
}

/// `reconcile.*`: how many guests are changed at once and how much may queue per guest.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileConfig {
    /// Guests mutated in parallel (at most pvedaemon's 3 workers).
    pub parallel: usize,
    /// Ops that may wait for one guest before it answers "busy".
    pub queue_depth: usize,
}

/// `cloudflared.*`.
#[derive(Debug, Clone, Serialize)]
pub struct CloudflaredConfig {
    /// Its `--metrics` address, probed at `/ready` once per report.
    pub metrics_addr: SocketAddr,
}

/// `smart.*`.
#[derive(Debug, Clone, Serialize)]
pub struct SmartConfig {
    /// Whole disks to read (`/dev/sda`, `/dev/nvme0n1`); empty disables SMART.
    pub devices: Vec<String>,
    /// Seconds between reads of one disk.
    pub interval_s: u64,
}

impl SmartConfig {
    /// `interval_s` as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_s)
    }
}

/// `local_api.*`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalApiConfig {
    /// Listen addresses; empty disables the local API.
    pub listen: Vec<SocketAddr>,
}

/// `log.*`.
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    /// An `EnvFilter` directive (`info`, `felhom_agent=debug,warn`); `RUST_LOG` wins if set.
    pub level: String,
    /// Output format on stderr (journald gets structured fields either way).
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines with fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// Loads `path`, overlaid with the `FELHOM_AGENT_*` variables of `env`. `CREDENTIALS_DIRECTORY`
/// is also taken from `env` (pass `std::env::vars_os()` in production).
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, ConfigError> {
    let env: Vec<(OsString, OsString)> = env.into_iter().collect();
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    // The opened file is the one whose mode is checked (for inline secrets) and the one read.
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        file.metadata().map_err(read_err)?.permissions().mode() & 0o7777
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
    let parsed = parse(path, &text, &env)?;
    let credentials_dir = env
        .iter()
        .find(|(k, _)| k == "CREDENTIALS_DIRECTORY")
        .map(|(_, v)| PathBuf::from(v));
    resolve::Resolver {
        path,
        file_mode: Some(mode),
        origins: &parsed.origins,
        credentials_dir: credentials_dir.as_deref(),
    }
    .resolve(parsed.raw)
}

/// The raw layer of a configuration: the file and the overlay as typed values, nothing
/// resolved yet (no secret read, no path or URL checked).
pub struct Parsed {
    raw: raw::RawConfig,
    origins: std::collections::BTreeMap<&'static str, Origin>,
}

// By hand: the keys and where they came from, never a value (an inline secret may be one).
impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.origins.iter()).finish()
    }
}

impl Parsed {
    /// Every key that has a value, with where it came from.
    pub fn origins(&self) -> impl Iterator<Item = (&'static str, &Origin)> {
        self.origins.iter().map(|(k, o)| (*k, o))
    }
}

/// The pure first half of [`load`]: `text` (the file at `path`, named in errors) parsed and
/// checked against the key table, the `FELHOM_AGENT_*` variables of `env` applied on top, and
/// the merged tree typed. No I/O, so the fuzz target `config` and the property tests feed
/// exactly what the daemon runs on its configuration.
pub fn parse(path: &Path, text: &str, env: &[(OsString, OsString)]) -> Result<Parsed, ConfigError> {
    let mut layered = layer::from_file(path, text)?;
    layer::overlay_env(&mut layered, env)?;
    // The table check above covers every key and shape, so this only fails if the table and
    // the raw types disagree; still an error, never a panic.
    let raw: raw::RawConfig =
        serde_json::from_value(layered.tree).map_err(|err| ConfigError::Invalid {
            key: "(file)".to_owned(),
            origin: Origin::File(path.to_owned()),
            reason: err.to_string(),
        })?;
    Ok(Parsed {
        raw,
        origins: layered.origins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_key_is_accepted_by_the_raw_types() {
        // Builds a tree with every key of the table and checks serde takes it: the table and
        // the raw structs must name the same keys.
        let mut tree = serde_json::Map::new();
        for key in keys::KEYS {
            let value = match key.kind {
                keys::Kind::Text | keys::Kind::Secret => serde_json::json!("x"),
                keys::Kind::Number => serde_json::json!(1),
                keys::Kind::List => serde_json::json!(["x"]),
            };
            match key.split() {
                (None, name) => {
                    tree.insert(name.to_owned(), value);
                }
                (Some(section), name) => {
                    tree.entry(section)
                        .or_insert_with(|| serde_json::json!({}))
                        .as_object_mut()
                        .unwrap()
                        .insert(name.to_owned(), value);
                }
            }
        }
        let raw: Result<raw::RawConfig, _> =
            serde_json::from_value(serde_json::Value::Object(tree));
        assert!(raw.is_ok(), "{:?}", raw.err());
    }

    mod never_panics {
        use std::os::unix::ffi::OsStringExt;

        use proptest::prelude::*;

        use super::*;

        const EXAMPLE: &str = include_str!("../../../../packaging/config.example.json");

        /// Variable names: ours (every key, each secret form), near misses, and anything.
        fn env_name() -> impl Strategy<Value = OsString> {
            let key = (0..keys::KEYS.len()).prop_map(|i| keys::KEYS[i].env_name());
            prop_oneof![
                key.clone().prop_map(OsString::from),
                (
                    key.clone(),
                    prop_oneof![Just("_FILE"), Just("_CREDENTIAL"), Just("_X")]
                )
                    .prop_map(|(k, s)| OsString::from(format!("{k}{s}"))),
                "FELHOM_AGENT_[A-Z_]{0,20}".prop_map(OsString::from),
                Just(OsString::from("CREDENTIALS_DIRECTORY")),
                prop::collection::vec(any::<u8>(), 0..20).prop_map(OsString::from_vec),
            ]
        }

        fn env_value() -> impl Strategy<Value = OsString> {
            prop_oneof![
                "\\PC{0,30}".prop_map(OsString::from),
                "[0-9 ]{0,22}".prop_map(OsString::from),
                "([0-9.:\\[\\]]{0,16},?){0,3}".prop_map(OsString::from),
                prop::collection::vec(any::<u8>(), 0..20).prop_map(OsString::from_vec),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            // The fuzz target `config` feeds the same function (issue 19).
            #[test]
            fn on_arbitrary_text(text in "\\PC{0,300}") {
                let _ = parse(Path::new("/etc/felhom-agent/config.json"), &text, &[]);
            }

            #[test]
            fn on_mutated_example_and_any_overlay(
                index in 0usize..2000,
                byte in 0x20u8..0x7f,
                env in prop::collection::vec((env_name(), env_value()), 0..5),
            ) {
                let mut text = EXAMPLE.as_bytes().to_vec();
                let i = index % text.len();
                text[i] = byte;
                let text = String::from_utf8(text).unwrap();
                let path = Path::new("/etc/felhom-agent/config.json");
                let _ = parse(path, &text, &env);
                if let Ok(parsed) = parse(path, EXAMPLE, &env) {
                    // Every variable that applied is recorded as the origin of its key.
                    for (name, _) in &env {
                        let Some(name) = name.to_str() else { continue };
                        if name.starts_with(keys::ENV_PREFIX) && name != keys::ENV_CONFIG {
                            prop_assert!(parsed.origins().any(|(_, o)| *o == Origin::Env(name.to_owned())));
                        }
                    }
                }
            }
        }
    }
}
