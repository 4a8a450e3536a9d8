//! [`Hub`]: the reference hub `felhom-hub-sim` as a real process, with typed calls to its
//! admin API (docs/hub-protocol.md, "Reference hub").

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::process;

/// The ready line `felhom-hub-sim` prints on stdout (DESIGN.md §4.5).
#[derive(Clone, Deserialize)]
pub struct HubInfo {
    /// Agent API, `http://127.0.0.1:PORT` (`https://` with [`HubOptions::tls`]).
    pub url: String,
    /// The bearer key agents use (a secret: never in `Debug`).
    pub api_key: String,
    /// Admin API, `http://127.0.0.1:PORT` (a separate listener, no authentication).
    pub admin_url: String,
    /// With [`HubOptions::tls`]: SHA-256 of the agent listener's leaf, `AA:BB:…`, the pin to
    /// configure the agent with. Stable across restarts on the same state directory.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for HubInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubInfo")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("admin_url", &self.admin_url)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Options for starting a hub.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Dead-man's switch deadline in seconds (`--deadline-s`); the hub's default when `None`.
    pub deadline_s: Option<u64>,
    /// Further command-line arguments.
    pub extra_args: Vec<String>,
    /// Append the hub's log (stderr) to this file instead of inheriting stderr.
    pub log_file: Option<PathBuf>,
}

impl HubOptions {
    /// Alert on hosts silent for more than `s` seconds.
    pub fn deadline_s(mut self, s: u64) -> Self {
        self.deadline_s = Some(s);
        self
    }

    /// Send the hub's log to `path`.
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Serve the agent API over HTTPS (`--tls`) so the agent's hub client runs with a pinned
    /// certificate as in production; [`HubInfo::fingerprint`] is then the pin. The admin API
    /// stays plain HTTP, so [`Hub::admin`] is unaffected.
    pub fn tls(self) -> Self {
        self.arg("--tls")
    }

    /// Append a raw argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }
}

/// A running reference hub with its own state directory. Killed on drop.
pub struct Hub {
    child: Option<Child>,
    /// What the hub announced.
    pub info: HubInfo,
    state: tempfile::TempDir,
    http: reqwest::Client,
}

impl Hub {
    /// Start a hub on ephemeral loopback ports with a fresh state directory.
    pub fn start(opts: HubOptions) -> Result<Hub> {
        let state = tempfile::Builder::new()
            .prefix("felhom-hub-sim-")
            .tempdir()
            .context("creating hub state dir")?;
        let bin = hub_binary()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--state").arg(state.path());
        if let Some(s) = opts.deadline_s {
            cmd.arg("--deadline-s").arg(s.to_string());
        }
        cmd.args(&opts.extra_args)
            .stderr(process::stderr_to(opts.log_file.as_deref())?);
        let (mut child, info) = process::spawn_ready::<HubInfo>(cmd, "reference hub")?;
        let http = match admin_client() {
            Ok(http) => http,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Hub {
            child: Some(child),
            info,
            state,
            http,
        })
    }

    /// The hub's state directory (`--state`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// OS process id of the hub.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Calls an admin route (`path` like `/admin/alerts`) with an optional JSON body. Answers
    /// `Ok(None)` on 404 (no report yet, unknown host), the JSON answer on 2xx, and an error
    /// carrying the body otherwise.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.info.admin_url));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("{path} answered {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{path} answered non-JSON: {text}"))
    }

    /// Like [`Hub::admin`], but a 404 is an error too.
    async fn admin_found(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.admin(method, path, body)
            .await?
            .with_context(|| format!("{path} answered 404"))
    }

    /// `PUT /admin/hosts/{host}/desired`: publish a desired state (any JSON object with a
    /// `generation`).
    pub async fn put_desired(&self, host: &str, desired: &Value) -> Result<Value> {
        self.admin_found(
            "PUT",
            &format!("/admin/hosts/{host}/desired"),
            Some(desired),
        )
        .await
    }

    /// `PUT /admin/hosts/{host}/config`: the polling configuration the hub hands the agent
    /// (`{"poll_interval_s", "jitter_s", "update_window"}`).
    pub async fn put_config(&self, host: &str, config: &Value) -> Result<Value> {
        self.admin_found("PUT", &format!("/admin/hosts/{host}/config"), Some(config))
            .await
    }

    /// `POST /admin/hosts/{host}/ops`: queue a signed op given in wire form (JSON text, as
    /// `felhom-agent op wrap` prints it). Answers `{"op_id", "queued"}`.
    pub async fn post_op(&self, host: &str, wire: &str) -> Result<Value> {
        let wire: Value = serde_json::from_str(wire).context("the wire op is not JSON")?;
        self.admin_found("POST", &format!("/admin/hosts/{host}/ops"), Some(&wire))
            .await
    }

    /// `GET /admin/hosts/{host}/report`: the latest report as received, `None` before the first.
    pub async fn report(&self, host: &str) -> Result<Option<Value>> {
        self.admin("GET", &format!("/admin/hosts/{host}/report"), None)
            .await
    }

    /// `GET /admin/alerts`: the dead-man's switch (`{"deadline_s", "alerts": [...]}`).
    pub async fn alerts(&self) -> Result<Value> {
        self.admin_found("GET", "/admin/alerts", None).await
    }

    /// `kill -9` the hub.
    pub fn kill9(&mut self) {
        process::kill9(&mut self.child);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain-HTTP client for the loopback admin API. reqwest is built without a default TLS
/// provider (ring only, deps-notes gotcha 1): install ring as the process default first, as the
/// agent's `main` does; `Err` means one is installed already.
fn admin_client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the admin client")
}

/// Path of the `felhom-hub-sim` binary: `$FELHOM_HUB_SIM`, else found and built like
/// [`crate::sim_binary`].
pub fn hub_binary() -> Result<PathBuf> {
    process::workspace_binary("felhom-hub-sim", "hub-sim", "FELHOM_HUB_SIM")
}
