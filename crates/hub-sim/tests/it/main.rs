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
    pub hub: hub_sim::RunningHub,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

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

    pub fn agent(&self, host: &str, tail: &str) -> String {
        format!("{}/api/v1/hosts/{host}/{tail}", self.hub.info.url)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.hub.info.admin_url)
    }

    pub fn key(&self) -> String {
        format!("Bearer {}", self.hub.info.api_key)
    }

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

pub fn report(host: &str) -> hub::HostReport {
    let mut r = hub::HostReport::empty(host, "0.0.0-test");
    r.sent_at = hub::now_rfc3339();
    r
}
