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

impl TestHub {
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
