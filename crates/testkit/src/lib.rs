//! Test kit: runs `felhom-pve-sim` and `felhom-hub-sim` as real processes for integration
//! tests, benchmarks and `felhom-agent demo` (the one non-test user: the demo starts the same
//! simulator and reference hub the tests do).
//!
//! It owns process handling: spawning a simulator on loopback, reading its one-line ready
//! announcement, `kill -9` and restart on the same state directory and port, plus
//! [`Sim::control`] for the simulator's `/_sim/` test controls over HTTPS pinned to the printed
//! fingerprint, [`Hub`] with typed calls to the reference hub's admin API, and [`signal`] to
//! pause, resume or stop a process. It never talks to a real Proxmox host or a production hub.
//! Start reading at [`Sim::start`] and [`Hub::start`].

mod hub;
mod process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub use hub::{hub_binary, Hub, HubInfo, HubOptions};
pub use process::{process_exists, signal, workspace_binary, workspace_root, Signal};

/// The ready line `felhom-pve-sim` prints on stdout (DESIGN.md §4.3).
#[derive(Clone, Deserialize)]
pub struct SimInfo {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// SHA-256 of the leaf certificate, `AA:BB:…`.
    pub fingerprint: String,
    /// The node name.
    pub node: String,
    /// The agent's privilege-separated token, `felhom-agent@pve!agent=SECRET`.
    pub token: String,
    /// A root-owned token, `root@pam!sim=SECRET` (still not `root@pam` for root-only checks).
    pub root_token: String,
}

impl std::fmt::Debug for SimInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimInfo")
            .field("url", &self.url)
            .field("fingerprint", &self.fingerprint)
            .field("node", &self.node)
            .field("token", &"<redacted>")
            .field("root_token", &"<redacted>")
            .finish()
    }
}

/// Options for starting a simulator.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Containers to seed on first start (`--guests`).
    pub guests: u32,
    /// Task duration in milliseconds (`--task-ms`).
    pub task_ms: Option<u64>,
    /// Further command-line arguments.
    pub extra_args: Vec<String>,
    /// Append the simulator's log (stderr) to this file instead of inheriting stderr.
    pub log_file: Option<PathBuf>,
}

impl SimOptions {
    /// Seed `n` guests.
    pub fn guests(mut self, n: u32) -> Self {
        self.guests = n;
        self
    }

    /// Every task takes `ms` milliseconds.
    pub fn task_ms(mut self, ms: u64) -> Self {
        self.task_ms = Some(ms);
        self
    }

    /// Send the simulator's log to `path`.
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Append a raw argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }
}

/// A running simulator process with its own state directory. Killed on drop.
pub struct Sim {
    child: Option<Child>,
    /// What the simulator announced.
    pub info: SimInfo,
    state: tempfile::TempDir,
    opts: SimOptions,
}

impl Sim {
    /// Start a simulator on an ephemeral loopback port with a fresh state directory.
    pub fn start(opts: SimOptions) -> Result<Sim> {
        let state = tempfile::Builder::new()
            .prefix("felhom-pve-sim-")
            .tempdir()
            .context("creating simulator state dir")?;
        let (child, info) = spawn(&opts, state.path(), "127.0.0.1:0")?;
        Ok(Sim {
            child: Some(child),
            info,
            state,
            opts,
        })
    }

    /// The simulator's state directory (`--state`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// PEM of the simulator's certificate, for clients that verify with a CA file (Python
    /// `requests`).
    pub fn ca_path(&self) -> PathBuf {
        self.state.path().join("pve-ssl.pem")
    }

    /// `host:port` the simulator listens on.
    pub fn listen_addr(&self) -> String {
        self.info
            .url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    }

    /// OS process id of the simulator.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `pve::Client` for the agent's token (`root = false`) or the root-owned token.
    pub fn client(&self, root: bool) -> Result<pve::Client> {
        let token = if root {
            &self.info.root_token
        } else {
            &self.info.token
        };
        let config = pve::ClientConfig::new(
            self.info.url.clone(),
            self.info.node.clone(),
            token.parse().context("simulator token")?,
            self.info
                .fingerprint
                .parse()
                .context("simulator fingerprint")?,
        );
        Ok(pve::Client::new(config)?)
    }

    /// A backup of `vmid` to `storage` made the way root would by hand (vzdump with
    /// `remove=0`, the root token), waited for: the world outside the agent, for the demo and
    /// tests. Not the agent's path, which runs every backup through its executor.
    pub async fn backup_by_hand(&self, vmid: u32, storage: &str) -> Result<()> {
        let root = self.client(true)?;
        let mut req = pve::VzdumpRequest::new(pve::Vmid::new(vmid)?, storage);
        req.remove = Some(false);
        if let pve::VzdumpOutcome::Task(upid) = root.vzdump(&req).await? {
            root.wait_task(
                &upid,
                pve::WaitOptions::new(std::time::Duration::from_secs(60)),
            )
            .await?;
        }
        Ok(())
    }

    /// Calls a `/_sim/` test control (`path` like `/_sim/acl`) with an optional JSON body and
    /// returns the JSON answer; a non-2xx answer is an error carrying the body.
    pub async fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let fingerprint: pve::Fingerprint = self.info.fingerprint.parse()?;
        let tls = pve::pinned_client_config(fingerprint)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .context("building the control client")?;
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = http.request(method, format!("{}{path}", self.info.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{path} answered non-JSON: {text}"))
    }

    /// How many requests with `method` whose path ends in `path_suffix` the simulator has
    /// served (its `/_sim/requests` log).
    pub async fn requests(&self, method: &str, path_suffix: &str) -> Result<usize> {
        let log = self.control("GET", "/_sim/requests", None).await?;
        let entries = log.as_array().context("/_sim/requests is not a list")?;
        Ok(entries
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["path"].as_str().is_some_and(|p| p.ends_with(path_suffix))
            })
            .count())
    }

    /// `kill -9` the simulator (SIGKILL; no chance to flush anything).
    pub fn kill9(&mut self) {
        process::kill9(&mut self.child);
    }

    /// Start the simulator again on the same state directory and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let addr = self.listen_addr();
        let (child, info) = spawn(&self.opts, self.state.path(), &addr)?;
        self.child = Some(child);
        self.info = info;
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(opts: &SimOptions, state: &Path, listen: &str) -> Result<(Child, SimInfo)> {
    let bin = sim_binary()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--listen")
        .arg(listen)
        .arg("--state")
        .arg(state)
        .arg("--guests")
        .arg(opts.guests.to_string());
    if let Some(ms) = opts.task_ms {
        cmd.arg("--task-ms").arg(ms.to_string());
    }
    cmd.args(&opts.extra_args);
    cmd.stderr(process::stderr_to(opts.log_file.as_deref())?);
    process::spawn_ready(cmd, "simulator")
}

/// Path of the `felhom-pve-sim` binary: `$FELHOM_PVE_SIM`, else beside the running executable
/// (`felhom-agent demo` in `target/<profile>/`) or one level up (a test in
/// `target/<profile>/deps/`); built with cargo when missing and cargo is at hand (`cargo run`
/// and `cargo test` set `$CARGO`).
pub fn sim_binary() -> Result<PathBuf> {
    workspace_binary("felhom-pve-sim", "pve-sim", "FELHOM_PVE_SIM")
}

/// The Python interpreter for interop tests: `$FELHOM_PYTHON` (set by `.ci/run` to a venv with
/// proxmoxer) or `python3`, if it can import every module in `modules`.
///
/// Returns `Ok(None)` when unavailable outside CI (the test then says it skipped); under CI
/// (`CI` set) a missing interpreter or module is an error, so CI never passes by skipping.
pub fn python_with(modules: &[&str]) -> Result<Option<PathBuf>> {
    // The interpreter's own absolute path: callers put it in a `#!` line, where a bare
    // `python3` is not searched and a shim (pyenv's is a bash script) fails under sudo's
    // cleared environment.
    let py = std::env::var_os("FELHOM_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            let path = path.trim();
            (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    // `python -c "import "` is a syntax error: with no modules, probe the interpreter only.
    let probe = if modules.is_empty() {
        "pass".to_string()
    } else {
        format!("import {}", modules.join(", "))
    };
    let ok = Command::new(&py)
        .args(["-c", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(Some(py));
    }
    if std::env::var_os("CI").is_some() {
        bail!(
            "{} cannot `{probe}` (CI must install it; see .ci/run)",
            py.display()
        );
    }
    eprintln!(
        "note: skipping: {} cannot `{probe}`; run `bash .ci/run` or set FELHOM_PYTHON",
        py.display()
    );
    Ok(None)
}
