//! A running `felhom-pve-sim` process with `pve` clients pinned to it, its `/_sim/` controls,
//! and the schema audit of its request log.

use std::io::Write;
use std::time::Duration;

use pve::{ApiToken, Client, ClientConfig, Fingerprint, TaskOutcome, TaskRef, WaitOptions};
use serde_json::Value;

/// The simulator plus an agent-token client, a root-token client and a raw HTTP client.
pub struct Env {
    /// The simulator process.
    pub sim: testkit::Sim,
    /// `felhom-agent@pve!agent` (privilege-separated, role FelhomAgent).
    pub agent: Client,
    /// `root@pam!sim`.
    pub root: Client,
    http: reqwest::Client,
}

impl Env {
    /// Starts a simulator with `guests` seeded containers and `task_ms` task duration. 401s
    /// are answered at once (`--auth-fail-delay-ms 0`).
    pub fn start(guests: u32, task_ms: u64) -> Env {
        Env::start_with(
            testkit::SimOptions::default()
                .guests(guests)
                .task_ms(task_ms)
                .arg("--auth-fail-delay-ms")
                .arg("0"),
        )
    }

    /// Starts a simulator with these options.
    pub fn start_with(opts: testkit::SimOptions) -> Env {
        let sim = testkit::Sim::start(opts).expect("start felhom-pve-sim");
        let fp = sim.info.fingerprint.parse().expect("sim fingerprint");
        let agent = client(&sim, &sim.info.token, fp);
        let root = client(&sim, &sim.info.root_token, fp);
        let http = pinned_http(fp);
        Env {
            sim,
            agent,
            root,
            http,
        }
    }

    /// The simulator's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.sim.info.fingerprint.parse().expect("sim fingerprint")
    }

    /// A client for this simulator with another token or pin.
    pub fn client(&self, token: &str, fingerprint: Fingerprint) -> Client {
        client(&self.sim, token, fingerprint)
    }

    /// `POST /_sim/{path}` with a JSON body; panics unless the control answered 200.
    pub async fn control(&self, path: &str, body: Value) {
        let resp = self
            .http
            .post(format!("{}/_sim/{path}", self.sim.info.url))
            .json(&body)
            .send()
            .await
            .expect("sim control request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "/_sim/{path} {body}: {text}");
    }

    /// The request log (`GET /_sim/requests`).
    pub async fn requests(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/requests", self.sim.info.url))
            .send()
            .await
            .expect("request log")
            .json()
            .await
            .expect("request log is JSON")
    }

    /// Clears the request log.
    pub async fn clear_requests(&self) {
        self.http
            .delete(format!("{}/_sim/requests", self.sim.info.url))
            .send()
            .await
            .expect("clear request log");
    }

    /// A raw API request with the given token (form-encoded body for POST/PUT, query for
    /// GET/DELETE), bypassing the client's own checks: (status, body JSON or null).
    pub async fn raw(
        &self,
        token: &str,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}/api2/json{path}", self.sim.info.url);
        let mut rb = self
            .http
            .request(method.clone(), url)
            .header("Authorization", format!("PVEAPIToken={token}"));
        rb = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb.query(form)
        } else {
            rb.form(form)
        };
        let resp = rb.send().await.expect("raw request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits for a task the agent started (30 s limit).
    pub async fn wait(&self, task: TaskRef) -> pve::Result<TaskOutcome> {
        match task {
            TaskRef::Sync => panic!("expected a task, got a synchronous answer"),
            TaskRef::Task(upid) => {
                self.agent
                    .wait_task(&upid, WaitOptions::new(Duration::from_secs(30)))
                    .await
            }
        }
    }

    /// Waits and asserts `TASK OK`.
    pub async fn wait_ok(&self, task: pve::Result<TaskRef>) {
        let task = task.expect("task start");
        assert_eq!(self.wait(task).await.expect("task result"), TaskOutcome::Ok);
    }

    /// The schema audit: every logged 200 answer passed the simulator's own `returns`
    /// validation, and the independent Python validator (`tools/schema_audit.py`) accepts every
    /// non-400 request and every 200 answer. Returns the log it audited.
    ///
    /// The fence (clippy.toml) forbids spawning processes in this crate; the exemption is for
    /// this test helper only, which runs the independent Python validator on the log.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    pub async fn audit(&self) -> Vec<Value> {
        let log = self.requests().await;
        assert!(!log.is_empty(), "nothing was logged");
        let bad: Vec<&Value> = log
            .iter()
            .filter(|e| !e["schema_errors"].is_null())
            .collect();
        assert!(bad.is_empty(), "answers violating the schema: {bad:#?}");
        // The audit needs only the standard library; `json` is named because
        // `python_with(&[])` probes `import ` (a syntax error) and would always skip.
        let Some(python) = testkit::python_with(&["json"]).expect("python for the schema audit")
        else {
            eprintln!("note: schema audit by tools/schema_audit.py skipped (no python3)");
            return log;
        };
        let script = testkit::workspace_root().join("tools/schema_audit.py");
        let mut child = std::process::Command::new(python)
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run schema_audit.py");
        let input = serde_json::to_vec(&log).expect("log as JSON");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("schema_audit.py output");
        writer
            .join()
            .expect("writer thread")
            .expect("write the log");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schema audit failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" 0 failed"), "{stdout}");
        log
    }
}

/// A `pve` client for the simulator with this token and pin.
fn client(sim: &testkit::Sim, token: &str, fingerprint: Fingerprint) -> Client {
    let token: ApiToken = token.parse().expect("token");
    let mut config = ClientConfig::new(&sim.info.url, &sim.info.node, token, fingerprint);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(20);
    Client::new(config).expect("client")
}

/// Entries of the log for this method and path.
pub fn logged<'a>(log: &'a [Value], method: &str, path: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["method"] == method && e["path"] == path)
        .collect()
}

/// A raw HTTP client (for the `/_sim/` controls and raw requests) trusting exactly the pinned
/// leaf, through the client's own verifier.
fn pinned_http(fingerprint: Fingerprint) -> reqwest::Client {
    let config = pve::pinned_client_config(fingerprint).expect("tls config");
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}
