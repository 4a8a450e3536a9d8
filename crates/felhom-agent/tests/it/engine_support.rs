//! Shared harness for the engine suites: a simulator, a state directory, operator keys, a
//! desired file and an ops directory, and the real `felhom-agent run` process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{Sim, SimOptions};

use crate::{agent, run, valid_config, Fixture};

pub const HOST: &str = "host-1";

pub struct Harness {
    pub sim: Sim,
    pub fx: Fixture,
    pub config: PathBuf,
    pub rt: tokio::runtime::Runtime,
}

pub struct Running {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Harness {
    pub fn new(guests: u32, task_ms: u64) -> Harness {
        let fx = Fixture::new();
        let sim = Sim::start(
            SimOptions::default()
                .guests(guests)
                .task_ms(task_ms)
                .log_to(fx.path("sim.log")),
        )
        .unwrap();
        let mut config = valid_config();
        config.as_object_mut().unwrap().remove("hub");
        config["state_dir"] = json!(fx.path("state"));
        config["operators_file"] = json!(fx.path("operators.json"));
        config["proxmox"] = json!({
            "url": sim.info.url, "node": sim.info.node, "token": sim.info.token,
            "fingerprint": sim.info.fingerprint,
        });
        config["desired"] = json!({"file": fx.path("desired.json"), "ops_dir": fx.path("ops")});
        config["log"] = json!({"level": "info", "format": "json"});
        std::fs::create_dir_all(fx.path("ops")).unwrap();
        let path = fx.config(&config);
        for name in ["alice", "mallory"] {
            assert!(Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", name, "-t", "ed25519", "-f"])
                .arg(fx.path(name))
                .stdin(Stdio::null())
                .status()
                .unwrap()
                .success());
        }
        let public = std::fs::read_to_string(fx.path("alice.pub")).unwrap();
        fx.write(
            "operators.json",
            &json!({"operators": [{"principal": "alice", "public_key": public.trim(), "roles": ["operator"]}]})
                .to_string(),
            0o644,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Harness {
            sim,
            fx,
            config: path,
            rt,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.fx.path("state")
    }

    /// Seeds `vmids` as adopted by a signed `guest.adopt` (before the agent starts). The
    /// seeding's own requests are cleared from the simulator's log: counts are the agent's.
    pub fn adopt(&self, vmids: &[u32]) {
        self.rt
            .block_on(crate::adopt_async(&self.sim, &self.state(), vmids));
        self.control("DELETE", "/_sim/requests");
    }

    /// Writes the desired file atomically.
    pub fn desired(&self, doc: &Value) {
        let tmp = self.fx.path(".desired.tmp");
        std::fs::write(&tmp, doc.to_string()).unwrap();
        std::fs::rename(tmp, self.fx.path("desired.json")).unwrap();
    }

    /// Starts `felhom-agent run`, optionally with a crash point.
    pub fn start(&self, crashpoint: Option<&str>) -> Running {
        let mut cmd = agent();
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cp) = crashpoint {
            cmd.env("FELHOM_CRASHPOINT", cp);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, log }
    }

    /// Makes a signed op in wire form: `op new` + `op sign` + `op wrap` (the real tools).
    pub fn signed_op(&self, key: &str, action: &str, target: &str, host: &str) -> String {
        self.signed_op_with(key, action, target, host, &[])
    }

    /// [`Harness::signed_op`] with more `op new` arguments (`--ttl 2s`).
    pub fn signed_op_with(
        &self,
        key: &str,
        action: &str,
        target: &str,
        host: &str,
        extra: &[&str],
    ) -> String {
        let (code, payload, err) = run(agent()
            .args([
                "op",
                "new",
                "--action",
                action,
                "--target",
                target,
                "--host-id",
                host,
            ])
            .args(extra));
        assert_eq!(code, 0, "{err}");
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = self.fx.path(&format!("payload-{n}"));
        std::fs::write(&p, payload).unwrap();
        let sig = self.fx.path(&format!("sig-{n}"));
        let (code, _, err) = run(agent()
            .args(["op", "sign", "--key"])
            .arg(self.fx.path(key))
            .arg("--payload")
            .arg(&p)
            .arg("--out")
            .arg(&sig));
        assert_eq!(code, 0, "{err}");
        let (code, wire, err) = run(agent()
            .args(["op", "wrap", "--payload"])
            .arg(&p)
            .arg("--signature")
            .arg(&sig));
        assert_eq!(code, 0, "{err}");
        wire
    }

    /// Drops a wire file into the ops directory (renamed into place).
    pub fn drop_op(&self, name: &str, wire: &str) {
        let tmp = self.fx.path("ops").join(format!(".{name}"));
        std::fs::write(&tmp, wire).unwrap();
        std::fs::rename(tmp, self.fx.path("ops").join(name)).unwrap();
    }

    /// Waits for the op file's result.
    pub fn op_result(&self, name: &str) -> (String, Value) {
        let found = wait_for(Duration::from_secs(60), || {
            for dir in ["done", "rejected"] {
                let path = self
                    .fx
                    .path("ops")
                    .join(dir)
                    .join(format!("{name}.result.json"));
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        return Some((dir.to_owned(), v));
                    }
                }
            }
            None
        });
        found.unwrap_or_else(|| panic!("no result for {name}"))
    }

    pub fn control(&self, method: &str, path: &str) -> Value {
        self.rt
            .block_on(self.sim.control(method, path, None))
            .unwrap()
    }

    /// (status, hostname, tags) of a guest, or None if it does not exist.
    pub fn guest(&self, vmid: u32) -> Option<(String, Option<String>, Option<String>)> {
        let client = self.sim.client(true).unwrap();
        let v = pve::Vmid::new(vmid).unwrap();
        self.rt.block_on(async {
            let status = client.lxc_status(v).await.ok()?;
            let cfg = client.lxc_config(v).await.ok()?;
            Some((status.status, cfg.hostname, cfg.tags))
        })
    }

    pub fn tasks_of(&self, task_type: &str, vmid: u32) -> usize {
        let id = format!(":{task_type}:{vmid}:");
        self.control("GET", "/_sim/tasks")
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["upid"].as_str().unwrap_or_default().contains(&id))
            .count()
    }

    pub fn requests(&self, method: &str, path_suffix: &str) -> usize {
        self.control("GET", "/_sim/requests")
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["path"]
                        .as_str()
                        .unwrap_or_default()
                        .ends_with(path_suffix)
            })
            .count()
    }

    pub fn journal(&self) -> journal::Journal {
        journal::Journal::open_read_only(&self.state()).unwrap()
    }

    pub fn audit_verify(&self) -> (i32, String) {
        let (code, out, err) = run(agent()
            .args(["audit", "verify", "--config"])
            .arg(&self.config));
        (code, format!("{out}{err}"))
    }
}

impl Running {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let ok = wait_for(timeout, || self.log().contains(needle).then_some(()));
        assert!(ok.is_some(), "no {needle:?} in log:\n{}", self.log());
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-15", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

/// Polls `f` every 100 ms until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn has_pending(state: &Path, vmid: u32) -> bool {
    journal::Journal::open_read_only(state)
        .and_then(|j| j.pending_ops())
        .map(|ops| ops.iter().any(|o| o.vmid == vmid))
        .unwrap_or(false)
}
