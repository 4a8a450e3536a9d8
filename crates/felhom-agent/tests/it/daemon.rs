//! The daemon end to end: the real `felhom-agent run` process against the real simulator and
//! the real reference hub, with a real `NOTIFY_SOCKET` to observe what systemd would see.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{Hub, HubOptions, Sim, SimOptions};

use crate::Fixture;

pub(crate) const HOST: &str = "host-e2e";

/// Datagrams received on a notify socket, collected by a background thread.
pub(crate) struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub(crate) fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => sink.lock().expect("lock").push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        NotifySocket { path, messages }
    }

    pub(crate) fn count(&self, prefix: &str, since: Instant) -> usize {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, m)| *t >= since && m.lines().any(|l| l.starts_with(prefix)))
            .count()
    }
}

pub(crate) fn config(
    fx: &Fixture,
    sim: &Sim,
    hub: &Hub,
    poll_s: u64,
    request_timeout_s: u64,
) -> PathBuf {
    let token = fx.write("proxmox-token", &sim.info.token, 0o600);
    let api_key = fx.write("hub-key", &hub.info.api_key, 0o600);
    fx.config(&json!({
        "host_id": HOST,
        "state_dir": fx.path("state").display().to_string(),
        "proxmox": {
            "url": sim.info.url,
            "node": sim.info.node,
            "token": {"file": token.display().to_string()},
            "fingerprint": sim.info.fingerprint,
        },
        "hub": {
            "url": hub.info.url,
            "api_key": {"file": api_key.display().to_string()},
            "poll_interval_s": poll_s,
            "request_timeout_s": request_timeout_s,
        },
        "log": {"level": "info"}
    }))
}

/// The agent process, killed if a test fails before it stops it (so a failed test never
/// leaves a daemon running).
pub(crate) struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Agent {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts `felhom-agent run` with a clean environment plus `env` (which may replace `PATH`).
pub(crate) fn spawn_agent(
    config: &Path,
    notify: &NotifySocket,
    watchdog_usec: u64,
    env: &[(&str, &std::ffi::OsStr)],
) -> Agent {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_felhom-agent"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(config.with_file_name("agent.log")).expect("log file"),
        ));
    cmd.envs(env.iter().copied());
    Agent(cmd.spawn().expect("spawn agent"))
}

pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Polls the hub's latest report until `pred` holds.
pub(crate) async fn wait_report(
    hub: &Hub,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < limit {
        if let Ok(Some(report)) = hub.report(HOST).await {
            if pred(&report) {
                return report;
            }
            last = report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no matching report within {limit:?}; last: {last:#}");
}

pub(crate) fn agent_log(config: &Path) -> String {
    std::fs::read_to_string(config.with_file_name("agent.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_converges_reports_survives_hub_faults_and_stops_cleanly() {
    let sim = Sim::start(SimOptions::default().guests(3).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default().deadline_s(30)).expect("hub");
    let fx = Fixture::new();
    let cfg = config(&fx, &sim, &hub, 1, 3);
    crate::adopt_async(&sim, &fx.path("state"), &[100]).await;
    // The hub directs the poll interval (its default is 30 s): ask for 1 s.
    hub.put_config(HOST, &json!({"poll_interval_s": 1, "jitter_s": 0}))
        .await
        .expect("hub config");
    let notify = NotifySocket::bind(fx.dir.path());
    let started = Instant::now();
    let mut agent = spawn_agent(&cfg, &notify, 2_000_000, &[]);

    hub.put_desired(
        HOST,
        &json!({"v": 1, "generation": 1, "guests": [
            {"vmid": 100, "state": "running", "config": {"memory": 1024, "description": "managed by felhom"}}
        ]}),
    )
    .await
    .expect("desired");

    // A report within one poll of the agent's start, then convergence of generation 1.
    let report = wait_report(&hub, Duration::from_secs(30), |r| {
        r["desired"]["applied_generation"] == json!(1)
    })
    .await;
    let guest = report["guests"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["vmid"] == json!(100)))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(guest["managed"], json!(true), "{report:#}");
    let client = sim.client(false).expect("client");
    let vmid = pve::Vmid::new(100).expect("vmid");
    let cfg100 = client.lxc_config(vmid).await.expect("config");
    assert_eq!(cfg100.memory, Some(1024), "{cfg100:?}");
    // The hub's text, with the agent's identity line kept below it.
    let text = cfg100
        .description
        .as_deref()
        .map(|d| reconcile::normalize::split_identity(d).0);
    assert_eq!(text.as_deref(), Some("managed by felhom"));
    assert_eq!(report["versions"]["agent"], env!("CARGO_PKG_VERSION"));
    let reports_before = report["sent_at"].clone();

    // The hub answers garbage: the agent stays up, keeps the last good state, catches up.
    hub.admin("POST", "/admin/faults", Some(&json!({"garbage": 2})))
        .await
        .expect("fault");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent.try_wait().expect("try_wait").is_none(),
        "agent died on garbage:\n{}",
        agent_log(&cfg)
    );
    // The hub goes down for 3 s: same.
    hub.admin("POST", "/admin/down", Some(&json!({"ms": 3000})))
        .await
        .expect("down");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        agent.try_wait().expect("try_wait").is_none(),
        "agent died with the hub down:\n{}",
        agent_log(&cfg)
    );
    let after = wait_report(&hub, Duration::from_secs(20), |r| {
        r["sent_at"] != reports_before && r["desired"]["applied_generation"] == json!(1)
    })
    .await;
    assert_eq!(after["desired"]["applied_generation"], json!(1));

    // The engine judges what the hub sends (one rule, `reconcile::accept`) and the report says
    // so: an older generation and a rewritten one are refused and change nothing.
    let desired = |generation: u64, memory: u64| {
        json!({"v": 1, "generation": generation, "guests": [
            {"vmid": 100, "state": "running", "config": {"memory": memory, "description": "managed by felhom"}}
        ]})
    };
    hub.put_desired(HOST, &desired(2, 1024))
        .await
        .expect("desired");
    wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["applied_generation"] == json!(2)
    })
    .await;
    hub.put_desired(HOST, &desired(1, 512))
        .await
        .expect("desired");
    let r = wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["rejected"]["generation"] == json!(1)
    })
    .await;
    assert_eq!(r["desired"]["applied_generation"], json!(2), "{r:#}");
    assert!(
        r["desired"]["rejected"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("older")),
        "{r:#}"
    );
    hub.put_desired(HOST, &desired(2, 2048))
        .await
        .expect("desired");
    let r = wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["rejected"]["generation"] == json!(2)
    })
    .await;
    assert!(
        r["desired"]["rejected"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("different content")),
        "{r:#}"
    );
    let cfg100 = client.lxc_config(vmid).await.expect("config");
    assert_eq!(
        cfg100.memory,
        Some(1024),
        "neither refused document was applied"
    );
    hub.put_desired(HOST, &desired(3, 1024))
        .await
        .expect("desired");
    let r = wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["applied_generation"] == json!(3)
    })
    .await;
    assert_eq!(r["desired"]["rejected"], Value::Null, "{r:#}");
    // A poisoned generation (issue 11 item 3: u64::MAX froze the agent, every later one
    // "older") is refused and reported, and the next honest generation still applies.
    hub.put_desired(HOST, &desired(u64::MAX, 512))
        .await
        .expect("desired");
    let r = wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["rejected"]["generation"] == json!(u64::MAX)
    })
    .await;
    assert!(
        r["desired"]["rejected"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("2^53-1")),
        "{r:#}"
    );
    hub.put_desired(HOST, &desired(4, 1024))
        .await
        .expect("desired");
    let r = wait_report(&hub, Duration::from_secs(20), |r| {
        r["desired"]["applied_generation"] == json!(4)
    })
    .await;
    assert_eq!(r["desired"]["rejected"], Value::Null, "{r:#}");

    // What systemd saw: ready, a status line, watchdog pings while healthy.
    assert_eq!(
        notify.count("READY=1", started),
        1,
        "{:?}",
        notify.messages.lock().expect("lock")
    );
    assert!(notify.count("STATUS=", started) >= 1);
    assert!(notify.count("WATCHDOG=1", started) >= 3);

    // Clean SIGTERM: exit 0 within the bound, STOPPING=1 sent.
    sigterm(&agent);
    let status =
        wait_exit(&mut agent, Duration::from_secs(25)).expect("agent did not stop within 25 s");
    assert!(status.success(), "exit {status:?}:\n{}", agent_log(&cfg));
    assert_eq!(notify.count("STOPPING=1", started), 1);
    let log = agent_log(&cfg);
    assert!(
        !log.contains(&hub.info.api_key) && !log.contains(&sim.info.token),
        "secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watchdog_stops_feeding_when_the_hub_loop_is_wedged() {
    let sim = Sim::start(SimOptions::default().guests(1).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default()).expect("hub");
    hub.put_desired(HOST, &json!({"v": 1, "generation": 1, "guests": []}))
        .await
        .expect("desired");
    let fx = Fixture::new();
    // poll 1 s, request timeout 1 s: the hub loop counts as wedged after 5 s + 3 s busy.
    let cfg = config(&fx, &sim, &hub, 1, 1);
    let notify = NotifySocket::bind(fx.dir.path());
    let started = Instant::now();
    let mut agent = spawn_agent(
        &cfg,
        &notify,
        1_000_000,
        &[("FELHOM_FAULT", "wedge-hub-collect".as_ref())],
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let early = notify.count("WATCHDOG=1", started);
    assert!(
        early >= 3,
        "no pings while the loop was still within its allowance ({early})"
    );
    // Past the allowance (5 s + 3 × 1 s busy, then the heartbeat's 3 s) the pings stop,
    // although the process is alive.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        notify.count("WATCHDOG=1", quiet_from),
        0,
        "watchdog still fed while the hub loop is wedged:\n{}",
        agent_log(&cfg)
    );
    assert!(agent.try_wait().expect("try_wait").is_none());
    assert!(agent_log(&cfg).contains("not feeding the watchdog"));
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(25)).expect("agent did not stop");
    assert!(status.success(), "exit {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_valid_configuration_and_keeps_a_bad_one_out() {
    let sim = Sim::start(SimOptions::default().guests(1).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default()).expect("hub");
    let fx = Fixture::new();
    let cfg = config(&fx, &sim, &hub, 1, 3);
    // The hub directs the poll interval (default 30 s); 5 s is the agent's floor.
    hub.put_config(HOST, &json!({"poll_interval_s": 5, "jitter_s": 0}))
        .await
        .expect("hub config");
    let good = std::fs::read_to_string(&cfg).expect("config");
    let notify = NotifySocket::bind(fx.dir.path());
    let started = Instant::now();
    let mut agent = spawn_agent(&cfg, &notify, 0, &[]);
    let hup = |child: &Child| {
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill -HUP")
    };
    let wait_ready = |n: usize| {
        let t = Instant::now();
        while notify.count("READY=1", started) < n && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        notify.count("READY=1", started)
    };
    assert_eq!(wait_ready(1), 1);

    // A broken file: refused, logged, the running configuration kept (no restart).
    std::fs::write(&cfg, "{\"host_id\": \"x\", \"bogus\": 1}").expect("write");
    assert!(hup(&agent).success());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.try_wait().expect("try_wait").is_none(),
        "agent died on a bad reload"
    );
    assert!(
        agent_log(&cfg).contains("configuration not reloaded"),
        "{}",
        agent_log(&cfg)
    );
    assert_eq!(notify.count("READY=1", started), 1);

    // A valid file again: the loops restart with it (a second READY=1) and reports go on.
    std::fs::write(&cfg, &good).expect("write");
    assert!(hup(&agent).success());
    assert_eq!(wait_ready(2), 2, "{}", agent_log(&cfg));
    assert!(agent_log(&cfg).contains("configuration reloaded"));
    let before = hub
        .report(HOST)
        .await
        .ok()
        .flatten()
        .map(|r| r["sent_at"].clone());
    wait_report(&hub, Duration::from_secs(20), |r| {
        Some(r["sent_at"].clone()) != before
    })
    .await;
    sigterm(&agent);
    assert!(wait_exit(&mut agent, Duration::from_secs(25)).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn selftest_hub_does_one_round_trip() {
    let sim = Sim::start(SimOptions::default().guests(2).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default()).expect("hub");
    hub.put_desired(HOST, &json!({"v": 1, "generation": 7, "guests": []}))
        .await
        .expect("desired");
    let fx = Fixture::new();
    let cfg = config(&fx, &sim, &hub, 5, 3);
    let run = |cfg: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The plain-http hub is reached directly, never through an inherited proxy.
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .args(["selftest", "hub", "--config"])
            .arg(cfg)
            .output()
            .expect("selftest");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (cfg_clone, status_out) = (cfg.clone(), tokio::task::spawn_blocking(move || run(&cfg)));
    let (status, out, err) = status_out.await.expect("join");
    assert!(status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("ok    fetch        directive fetched: desired generation 7"),
        "{out}"
    );
    assert!(out.contains("ok    report       report accepted"), "{out}");
    let report = hub
        .report(HOST)
        .await
        .expect("report")
        .expect("a report was stored");
    assert_eq!(
        report["guests"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );

    // A wrong key: a clear failure naming the refusal, the key never printed.
    std::fs::write(cfg_clone.with_file_name("hub-key"), "wrong-key-123").expect("write");
    let (status, out, err) = tokio::task::spawn_blocking(move || run(&cfg_clone))
        .await
        .expect("join");
    assert!(!status.success(), "{out}");
    assert!(out.contains("FAIL  fetch"), "{out}");
    assert!(
        err.lines().count() == 1 && err.contains("selftest hub failed: fetch"),
        "{err}"
    );
    assert!(!out.contains("wrong-key-123") && !err.contains("wrong-key-123"));
}

/// Issue 11 item 4: a hub that floods its directive with junk ops gets a bounded
/// verify-and-audit budget per directive; the rest are refused unverified, with a reason the
/// hub sees in the report.
#[tokio::test(flavor = "multi_thread")]
async fn a_directive_flooded_with_ops_is_verified_only_up_to_the_cap() {
    use base64::Engine as _;
    let cap = felhom_agent::daemon::hub_link::MAX_OPS_PER_DIRECTIVE;
    let flood = 40;
    let sim = Sim::start(SimOptions::default().guests(1).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default()).expect("hub");
    let fx = Fixture::new();
    let cfg = config(&fx, &sim, &hub, 1, 3);
    hub.put_config(HOST, &json!({"poll_interval_s": 1, "jitter_s": 0}))
        .await
        .expect("hub config");
    let notify = NotifySocket::bind(fx.dir.path());
    let mut agent = spawn_agent(&cfg, &notify, 0, &[]);
    wait_report(&hub, Duration::from_secs(30), |_| true).await;
    // All of them in one directive: the agent's side of the hub is down while they queue.
    hub.admin("POST", "/admin/down", Some(&json!({"ms": 2500})))
        .await
        .expect("down");
    for i in 0..flood {
        let payload = base64::engine::general_purpose::STANDARD
            .encode(json!({"op_id": format!("junk-op-{i:04}")}).to_string());
        let wire = json!({"payload": payload, "signature": "not a signature"}).to_string();
        hub.post_op(HOST, &wire).await.expect("queue a junk op");
    }
    let report = wait_report(&hub, Duration::from_secs(30), |r| {
        r["op_outcomes"]
            .as_array()
            .is_some_and(|o| o.len() >= flood)
    })
    .await;
    let outcomes = report["op_outcomes"].as_array().expect("outcomes");
    let capped = outcomes
        .iter()
        .filter(|o| {
            o["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("too-many-ops"))
        })
        .count();
    assert_eq!(capped, flood - cap, "{report:#}");
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "rejected"),
        "{report:#}"
    );
    sigterm(&agent);
    wait_exit(&mut agent, Duration::from_secs(25)).expect("agent did not stop");
}
