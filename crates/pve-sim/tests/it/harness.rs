//! Spawn the simulator binary and talk to it over HTTPS pinned to its fingerprint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A reqwest client that trusts exactly the leaf with this SHA-256 fingerprint: the agent's own
/// pinned verifier (`pve::pinned_client_config`), so the simulator is tested with the pin the
/// agent uses.
pub fn pinned_client(fingerprint: &str) -> reqwest::Client {
    let fingerprint: pve::Fingerprint = fingerprint.parse().expect("fingerprint");
    let config = pve::pinned_client_config(fingerprint).expect("tls config");
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A response: status, reason phrase (when hyper kept it), raw body, JSON body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: Option<String>,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// The `data` member.
    pub fn data(&self) -> &Value {
        &self.json["data"]
    }
}

/// A running simulator.
pub struct Sim {
    child: Child,
    pub ready: Value,
    pub url: String,
    pub client: reqwest::Client,
    pub token: String,
    pub root_token: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the binary with `--state dir` and extra args.
pub fn start(state: &Path, args: &[&str]) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_felhom-pve-sim"))
        .arg("--state")
        .arg(state)
        .args(["--auth-fail-delay-ms", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn simulator");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
    let url = ready["url"].as_str().expect("url").to_string();
    let client = pinned_client(ready["fingerprint"].as_str().expect("fingerprint"));
    Sim {
        child,
        url,
        client,
        token: ready["token"].as_str().expect("token").to_string(),
        root_token: ready["root_token"]
            .as_str()
            .expect("root_token")
            .to_string(),
        ready,
    }
}

impl Sim {
    /// Stop the process (SIGKILL: tasks in flight must survive via the state file).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            reason,
            text,
            json,
        }
    }

    /// A request to `/api2/json{path}` with `token` (None: no Authorization header).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}/api2/json{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(method.clone(), url);
        if let Some(t) = token {
            rb = rb.header("Authorization", format!("PVEAPIToken={t}"));
        }
        rb = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb.query(form)
        } else {
            rb.form(form)
        };
        self.send(rb).await
    }

    /// As the agent token.
    pub async fn agent(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Resp {
        self.call(method, path, Some(&self.token.clone()), form)
            .await
    }

    /// As the agent token, without expecting an answer: the raw result, so a test can see
    /// a connection closed by `/_sim/drop`.
    pub async fn agent_raw(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, reqwest::Error> {
        let url = format!("{}/api2/json{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let rb = self
            .client
            .request(method.clone(), url)
            .header("Authorization", format!("PVEAPIToken={}", self.token));
        let rb = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb.query(form)
        } else {
            rb.form(form)
        };
        rb.send().await
    }

    /// As root's token.
    pub async fn root(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Resp {
        self.call(method, path, Some(&self.root_token.clone()), form)
            .await
    }

    /// POST JSON to a `/_sim/` control.
    pub async fn control(&self, path: &str, body: Value) -> Resp {
        self.send(
            self.client
                .post(format!("{}/_sim/{path}", self.url))
                .json(&body),
        )
        .await
    }

    /// GET a `/_sim/` control (`path` may carry a query string).
    pub async fn control_get(&self, path: &str) -> Resp {
        self.send(self.client.get(format!("{}/_sim/{path}", self.url)))
            .await
    }

    /// The text lines of a task's log.
    pub async fn task_log(&self, upid: &str) -> Vec<String> {
        let log = self
            .agent(
                "GET",
                &format!("/nodes/pve/tasks/{upid}/log"),
                &[("limit", "0")],
            )
            .await;
        log.data()
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| l["t"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The request log.
    pub async fn request_log(&self) -> Vec<Value> {
        let r = self
            .send(self.client.get(format!("{}/_sim/requests", self.url)))
            .await;
        r.json.as_array().cloned().unwrap_or_default()
    }

    /// Poll a task until it stops; returns the status object.
    pub async fn wait_task(&self, upid: &str) -> Value {
        for _ in 0..400 {
            let r = self
                .agent("GET", &format!("/nodes/pve/tasks/{upid}/status"), &[])
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            if r.data()["status"] == json!("stopped") {
                return r.data().clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {upid} did not stop");
    }

    /// Assert that no 200 answer in the request log violated the return schema.
    pub async fn assert_no_schema_errors(&self) {
        let bad: Vec<Value> = self
            .request_log()
            .await
            .into_iter()
            .filter(|e| !e["schema_errors"].is_null())
            .collect();
        assert!(bad.is_empty(), "schema errors: {bad:#?}");
    }
}

/// A fresh state directory.
pub fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The UPID string of a response.
pub fn upid(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
        .as_str()
        .unwrap_or_else(|| panic!("not a UPID: {}", r.text))
        .to_string()
}
