//! The raw layer: the file plus overlay exactly as written, typed by serde, no I/O, nothing
//! checked beyond shape. [`super::resolve`] turns it into a [`super::Config`].

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub host_id: Option<String>,
    pub state_dir: Option<String>,
    pub operators_file: Option<String>,
    pub proxmox: Option<RawProxmox>,
    pub hub: Option<RawHub>,
    pub desired: Option<RawDesired>,
    pub local_api: Option<RawLocalApi>,
    pub authz: Option<RawAuthz>,
    pub reconcile: Option<RawReconcile>,
    pub cloudflared: Option<RawCloudflared>,
    pub smart: Option<RawSmart>,
    pub log: Option<RawLog>,
}

/// `proxmox.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxmox {
    pub url: Option<String>,
    pub node: Option<String>,
    pub token: Option<RawSecret>,
    pub fingerprint: Option<String>,
    pub connect_timeout_s: Option<u64>,
    pub request_timeout_s: Option<u64>,
}

/// `hub.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHub {
    pub url: Option<String>,
    pub api_key: Option<RawSecret>,
    pub poll_interval_s: Option<u64>,
    pub request_timeout_s: Option<u64>,
    pub fingerprint: Option<String>,
}

/// `desired.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDesired {
    pub file: Option<String>,
    pub ops_dir: Option<String>,
}

/// `local_api.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalApi {
    pub listen: Option<Vec<String>>,
}

/// `authz.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthz {
    pub clock_skew_s: Option<u64>,
    pub max_lifetime_s: Option<u64>,
}

/// `reconcile.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReconcile {
    pub parallel: Option<u64>,
    pub queue_depth: Option<u64>,
}

/// `cloudflared.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCloudflared {
    pub metrics_addr: Option<String>,
}

/// `smart.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSmart {
    pub devices: Option<Vec<String>>,
    pub interval_s: Option<u64>,
}

/// `log.*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// A secret as written: inline, `{"file": PATH}` or `{"credential": NAME}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSecret {
    Inline(String),
    File(RawSecretFile),
    Credential(RawSecretCredential),
}

// Hand-written so an inline secret never reaches a Debug print of the raw layer.
impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawSecret::Inline(_) => f.write_str("Inline(<redacted>)"),
            RawSecret::File(file) => write!(f, "File({:?})", file.file),
            RawSecret::Credential(c) => write!(f, "Credential({:?})", c.credential),
        }
    }
}

/// `{"file": PATH}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecretFile {
    pub file: String,
}

/// `{"credential": NAME}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecretCredential {
    pub credential: String,
}
