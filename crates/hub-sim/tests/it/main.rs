//! Integration tests of the reference hub over real HTTP on loopback.
//!
//! - `agent`: the agent-facing protocol (auth, conditional GET, ops queue, reports, gzip, bounds).
//! - `admin`: dead-man's switch, faults, listener outage, restart with the same state.
//! - `binary`: the `felhom-hub-sim` process and its ready line.
//! - `tls`: the agent API over HTTPS (`--tls`) with a pinned, restart-stable certificate.

mod admin;
mod agent;
mod binary;
mod tls;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

/// A running in-process hub with its state directory.
pub struct TestHub {
    /// The hub, serving until dropped.
    pub hub: hub_sim::RunningHub,
    /// Its state directory, removed when the test ends.
    pub dir: tempfile::TempDir,
    /// A plain-HTTP client with a pooled connection.
    pub http: reqwest::Client,
}

/// A plain-HTTP client (also installs ring as the process's rustls provider).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client that trusts exactly the leaf with fingerprint `pin` (any host name), like the
/// agent's hub client; plain `http://` URLs (the admin API) still work through it.
pub fn pinned(pin: &str) -> reqwest::Client {
    let pin = pve::Fingerprint::from_str(pin).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(pin).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Runs `felhom-hub-sim --state STATE ARGS…` and reads its ready line.
pub fn spawn_binary(state: &Path, args: &[&str]) -> (Child, hub_sim::ReadyInfo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_felhom-hub-sim"))
        .args(["--state", state.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info = serde_json::from_str(line.trim()).unwrap();
    (child, info, line)
}

impl TestHub {
    /// A new client (no pooled connection) for the agent API: pinned when the hub speaks TLS.
    pub fn fresh(&self) -> reqwest::Client {
        match &self.hub.info.fingerprint {
            Some(pin) => pinned(pin),
            None => http(),
        }
    }

    /// `GET desired` on a fresh connection.
    pub async fn fresh_get_desired(&self, host: &str) -> reqwest::Result<reqwest::Response> {
        self.fresh()
            .get(self.agent(host, "desired"))
            .header("authorization", self.key())
            .send()
            .await
    }

    /// Starts an in-process hub on loopback with this dead-man's-switch deadline.
    pub async fn start(deadline: Duration) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = hub_sim::Options::loopback(dir.path());
        opts.deadline = deadline;
        let hub = hub_sim::start(opts).await.unwrap();
        TestHub {
            hub,
            dir,
            http: http(),
        }
    }

    /// The URL of the agent API's `tail` for `host`.
    pub fn agent(&self, host: &str, tail: &str) -> String {
        format!("{}/api/v1/hosts/{host}/{tail}", self.hub.info.url)
    }

    /// The URL of an admin API path.
    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.hub.info.admin_url)
    }

    /// The agent API's `authorization` header value.
    pub fn key(&self) -> String {
        format!("Bearer {}", self.hub.info.api_key)
    }

    /// Calls the admin API with an optional JSON body: the status and the JSON answer
    /// (`null` when the body is not JSON).
    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.admin(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Publishes a one-guest desired state of `generation` for `host`; asserts 200.
    pub async fn put_desired(&self, host: &str, generation: u64) {
        let (s, _) = self
            .admin_json(
                reqwest::Method::PUT,
                &format!("/admin/hosts/{host}/desired"),
                Some(json!({"v": 1, "generation": generation, "guests": [{"vmid": 101, "state": "running", "config": {"hostname": "a"}}]})),
            )
            .await;
        assert_eq!(s, 200);
    }

    /// `GET desired` as the agent, conditional on `etag` when given.
    pub async fn get_desired(&self, host: &str, etag: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .get(self.agent(host, "desired"))
            .header("authorization", self.key());
        if let Some(t) = etag {
            req = req.header("if-none-match", t);
        }
        req.send().await.unwrap()
    }

    /// `POST report` as the agent.
    pub async fn post_report(&self, host: &str, report: &hub::HostReport) -> reqwest::Response {
        self.http
            .post(self.agent(host, "report"))
            .header("authorization", self.key())
            .json(report)
            .send()
            .await
            .unwrap()
    }
}

/// An empty report from `host`, sent now.
pub fn report(host: &str) -> hub::HostReport {
    let mut r = hub::HostReport::empty(host, "0.0.0-test");
    r.sent_at = hub::now_rfc3339();
    r
}
