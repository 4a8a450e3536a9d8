//! Raw → resolved: required keys present, values parsed, secrets read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::keys;
use super::raw::{RawConfig, RawSecret};
use super::secret_source;
use super::{
    AuthzConfig, CloudflaredConfig, Config, ConfigError, DesiredConfig, Fingerprint, HubConfig,
    LocalApiConfig, LogConfig, LogFormat, Origin, ProxmoxConfig, ReconcileConfig, SmartConfig,
};

/// Default `proxmox.connect_timeout_s`.
pub const DEFAULT_CONNECT_TIMEOUT_S: u64 = 5;
/// Default `proxmox.request_timeout_s`.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
/// Default `hub.poll_interval_s`.
pub const DEFAULT_POLL_INTERVAL_S: u64 = 30;
/// Upper bound of `authz.clock_skew_s`: one hour.
const MAX_CLOCK_SKEW_S: u64 = 3600;
/// Upper bound of `authz.max_lifetime_s`: seven days.
const MAX_LIFETIME_S: u64 = 7 * 24 * 3600;
/// Default `hub.request_timeout_s`.
pub const DEFAULT_HUB_REQUEST_TIMEOUT_S: u64 = 30;
/// Default `smart.interval_s`: six hours (SMART values move slowly, and a read can wake a
/// sleeping disk).
pub const DEFAULT_SMART_INTERVAL_S: u64 = 6 * 3600;
/// Lower bound of `smart.interval_s`.
const MIN_SMART_INTERVAL_S: u64 = 60;
/// Upper bound of `reconcile.parallel`: pvedaemon's worker count (reconcile's queue docs).
const MAX_PARALLEL: u64 = 3;
/// Upper bound of `reconcile.queue_depth`.
const MAX_QUEUE_DEPTH: u64 = 256;
/// Default `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

pub(crate) struct Resolver<'a> {
    pub path: &'a Path,
    /// The config file's permission bits, when it was read from disk.
    pub file_mode: Option<u32>,
    pub origins: &'a BTreeMap<&'static str, Origin>,
    pub credentials_dir: Option<&'a Path>,
}

impl Resolver<'_> {
    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: self.origin(key),
            reason: reason.into(),
        }
    }

    fn required<T>(&self, key: &'static str, value: Option<T>) -> Result<T, ConfigError> {
        value.ok_or_else(|| ConfigError::Missing {
            key,
            path: self.path.to_owned(),
            var: keys::find(key).map(|k| k.env_name()).unwrap_or_default(),
        })
    }

    fn non_empty(&self, key: &'static str, value: Option<String>) -> Result<String, ConfigError> {
        let value = self.required(key, value)?;
        if value.trim().is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        Ok(value)
    }

    fn absolute(&self, key: &'static str, value: String) -> Result<PathBuf, ConfigError> {
        let path = PathBuf::from(value);
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(self.invalid(key, "must be an absolute path"))
        }
    }

    fn positive(
        &self,
        key: &'static str,
        value: Option<u64>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match value.unwrap_or(default) {
            0 => Err(self.invalid(key, "must be at least 1")),
            n => Ok(n),
        }
    }

    /// A positive number no larger than `max` (a bound an operator cannot loosen by mistake).
    fn bounded(
        &self,
        key: &'static str,
        value: Option<u64>,
        default: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let n = self.positive(key, value, default)?;
        if n > max {
            return Err(self.invalid(key, format!("must be at most {max}")));
        }
        Ok(n)
    }

    fn url(
        &self,
        key: &'static str,
        value: String,
        schemes: &[&str],
    ) -> Result<url::Url, ConfigError> {
        let url = url::Url::parse(&value)
            .map_err(|err| self.invalid(key, format!("not a URL: {err}")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(self.invalid(key, format!("scheme must be {}", schemes.join(" or "))));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.invalid(key, "has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.invalid(key, "must not carry credentials; use the secret keys"));
        }
        Ok(url)
    }

    fn secret(
        &self,
        key: &'static str,
        raw: RawSecret,
    ) -> Result<secret_source::ResolvedSecret, ConfigError> {
        let origin = self.origin(key);
        // A secret is only as private as the file it is written in.
        if let (RawSecret::Inline(_), Origin::File(path), Some(mode)) =
            (&raw, &origin, self.file_mode)
        {
            if mode & 0o004 != 0 {
                return Err(ConfigError::InlineSecretInReadableFile {
                    key,
                    path: path.clone(),
                    mode,
                });
            }
        }
        secret_source::read(key, raw, &origin, self.credentials_dir)
    }

    pub fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let host_id = self.non_empty("host_id", raw.host_id)?;
        let state_dir = self.absolute("state_dir", self.non_empty("state_dir", raw.state_dir)?)?;
        let operators_file = raw
            .operators_file
            .map(|v| self.absolute("operators_file", v))
            .transpose()?;

        let px = raw.proxmox.unwrap_or_default();
        let url = self.url(
            "proxmox.url",
            self.non_empty("proxmox.url", px.url)?,
            &["https"],
        )?;
        let node = self.non_empty("proxmox.node", px.node)?;
        let fingerprint_text = self.non_empty("proxmox.fingerprint", px.fingerprint)?;
        let fingerprint = fingerprint_text
            .parse::<Fingerprint>()
            .map_err(|e| self.invalid("proxmox.fingerprint", e.to_string()))?;
        let token = self.secret("proxmox.token", self.required("proxmox.token", px.token)?)?;
        check_token_shape(token.value.expose())
            .map_err(|reason| self.invalid("proxmox.token", reason))?;
        let proxmox = ProxmoxConfig {
            url,
            node,
            token,
            fingerprint,
            connect_timeout_s: self.positive(
                "proxmox.connect_timeout_s",
                px.connect_timeout_s,
                DEFAULT_CONNECT_TIMEOUT_S,
            )?,
            request_timeout_s: self.positive(
                "proxmox.request_timeout_s",
                px.request_timeout_s,
                DEFAULT_REQUEST_TIMEOUT_S,
            )?,
        };

        let hub = match raw.hub {
            None => None,
            Some(hub) => Some(HubConfig {
                url: self.url(
                    "hub.url",
                    self.non_empty("hub.url", hub.url)?,
                    &["https", "http"],
                )?,
                fingerprint: hub
                    .fingerprint
                    .map(|text| {
                        text.parse::<Fingerprint>()
                            .map_err(|e| self.invalid("hub.fingerprint", e.to_string()))
                    })
                    .transpose()?,
                api_key: self.secret("hub.api_key", self.required("hub.api_key", hub.api_key)?)?,
                poll_interval_s: self.positive(
                    "hub.poll_interval_s",
                    hub.poll_interval_s,
                    DEFAULT_POLL_INTERVAL_S,
                )?,
                request_timeout_s: self.positive(
                    "hub.request_timeout_s",
                    hub.request_timeout_s,
                    DEFAULT_HUB_REQUEST_TIMEOUT_S,
                )?,
            }),
        };

        let desired = match raw.desired {
            None => None,
            Some(d) => Some(DesiredConfig {
                file: self.absolute("desired.file", self.non_empty("desired.file", d.file)?)?,
                ops_dir: d
                    .ops_dir
                    .map(|v| self.absolute("desired.ops_dir", v))
                    .transpose()?,
            }),
        };

        let listen = raw
            .local_api
            .and_then(|l| l.listen)
            .unwrap_or_default()
            .iter()
            .map(|addr| {
                addr.parse::<SocketAddr>().map_err(|_| {
                    self.invalid(
                        "local_api.listen",
                        format!("{addr:?} is not addr:port (IPv6 as [::1]:port)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let log = raw.log.unwrap_or_default();
        let level = log.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
        tracing_subscriber::EnvFilter::try_new(&level)
            .map_err(|err| self.invalid("log.level", format!("not a level or filter: {err}")))?;
        let format = match log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(self.invalid("log.format", "must be \"text\" or \"json\"")),
        };

        if let Some(hub) = &hub {
            if hub.fingerprint.is_some() && hub.url.scheme() != "https" {
                return Err(self.invalid("hub.fingerprint", "a pin needs an https hub.url"));
            }
        }

        let raw_reconcile = raw.reconcile.unwrap_or_default();
        let reconcile = ReconcileConfig {
            parallel: as_count(self.bounded(
                "reconcile.parallel",
                raw_reconcile.parallel,
                reconcile::DEFAULT_PARALLEL as u64,
                MAX_PARALLEL,
            )?),
            queue_depth: as_count(self.bounded(
                "reconcile.queue_depth",
                raw_reconcile.queue_depth,
                reconcile::DEFAULT_QUEUE_DEPTH as u64,
                MAX_QUEUE_DEPTH,
            )?),
        };

        let cloudflared = raw
            .cloudflared
            .and_then(|c| c.metrics_addr)
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map(|metrics_addr| CloudflaredConfig { metrics_addr })
                    .map_err(|_| {
                        self.invalid(
                            "cloudflared.metrics_addr",
                            format!("{addr:?} is not ip:port (cloudflared's --metrics address)"),
                        )
                    })
            })
            .transpose()?;

        let raw_smart = raw.smart.unwrap_or_default();
        let devices = raw_smart.devices.unwrap_or_default();
        for device in &devices {
            privileged::BlockDevice::parse(device)
                .map_err(|e| self.invalid("smart.devices", e.to_string()))?;
        }
        let interval_s = self.positive(
            "smart.interval_s",
            raw_smart.interval_s,
            DEFAULT_SMART_INTERVAL_S,
        )?;
        if interval_s < MIN_SMART_INTERVAL_S {
            return Err(self.invalid(
                "smart.interval_s",
                format!("must be at least {MIN_SMART_INTERVAL_S}"),
            ));
        }
        let smart = SmartConfig {
            devices,
            interval_s,
        };

        let raw_authz = raw.authz.unwrap_or_default();
        let authz = AuthzConfig {
            clock_skew_s: self.bounded(
                "authz.clock_skew_s",
                raw_authz.clock_skew_s,
                authz::DEFAULT_CLOCK_SKEW.as_secs(),
                MAX_CLOCK_SKEW_S,
            )?,
            max_lifetime_s: self.bounded(
                "authz.max_lifetime_s",
                raw_authz.max_lifetime_s,
                authz::DEFAULT_MAX_LIFETIME.as_secs(),
                MAX_LIFETIME_S,
            )?,
        };

        Ok(Config {
            source: self.path.to_owned(),
            host_id,
            state_dir,
            operators_file,
            proxmox,
            hub,
            desired,
            local_api: LocalApiConfig { listen },
            authz,
            reconcile,
            cloudflared,
            smart,
            log: LogConfig { level, format },
        })
    }
}

/// A bounded count as `usize` (the bounds above are far below `usize::MAX`).
fn as_count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `user@realm!tokenid=secret`, checked without ever echoing the value.
fn check_token_shape(token: &str) -> Result<(), String> {
    const SHAPE: &str = "must look like user@realm!tokenid=secret";
    let (id, secret) = token.split_once('=').ok_or(SHAPE)?;
    let (user_realm, token_id) = id.split_once('!').ok_or(SHAPE)?;
    let (user, realm) = user_realm.split_once('@').ok_or(SHAPE)?;
    if [user, realm, token_id, secret].iter().any(|p| p.is_empty()) {
        return Err(SHAPE.to_owned());
    }
    if token.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_token_shape;

    #[test]
    fn token_shape() {
        assert!(check_token_shape("felhom-agent@pve!agent=0f1e2d3c").is_ok());
        for bad in [
            "",
            "felhom-agent@pve!agent",
            "felhom-agent@pve=x",
            "agent!x=y",
            "@pve!a=b",
            "a@pve!a=b c",
        ] {
            assert!(check_token_shape(bad).is_err(), "{bad:?} accepted");
        }
    }
}
