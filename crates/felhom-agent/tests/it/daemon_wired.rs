//! The daemon with everything an installed host has wired at once: the hub over HTTPS with a
//! pinned self-signed certificate, a cloudflared metrics server, SMART through the privileged
//! fence (fake `sudo` and `smartctl` on PATH, recording their argv), and the per-guest local
//! API served by the running `felhom-agent run` to a token minted by the CLI.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{Hub, HubOptions, Sim, SimOptions};

use crate::daemon::{
    agent_log, config, sigterm, spawn_agent, wait_exit, wait_report, NotifySocket, HOST,
};
use crate::{agent, run, Fixture};

/// What the fake smartctl prints for /dev/sda (the shape of `smartctl --json=c -a`).
const SDA_JSON: &str = r#"{"device":{"name":"/dev/sda","type":"sat","protocol":"ATA"},"model_name":"Test SSD","serial_number":"T1","smart_status":{"passed":true},"temperature":{"current":31},"power_on_time":{"hours":12345}}"#;

/// A loopback cloudflared metrics server: `/ready` answers 200 with four connections while
/// `ready` is set, else 503 with none (cloudflared's own answers).
struct FakeCloudflared {
    addr: String,
    ready: Arc<AtomicBool>,
}

impl FakeCloudflared {
    fn start() -> FakeCloudflared {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let ready = Arc::new(AtomicBool::new(true));
        let flag = ready.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if !request.starts_with("GET /ready ") {
                    ("404 Not Found", "404 page not found".to_owned())
                } else if flag.load(Ordering::SeqCst) {
                    (
                        "200 OK",
                        r#"{"status":200,"readyConnections":4}"#.to_owned(),
                    )
                } else {
                    (
                        "503 Service Unavailable",
                        r#"{"status":503,"readyConnections":0}"#.to_owned(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeCloudflared { addr, ready }
    }
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write fake");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `sudo` that insists on `-n --` and an absolute program path (what the sudoers rule pins),
/// then runs the same-named fake from this directory; `smartctl` that records its argv and
/// answers for /dev/sda, failing to open anything else (exit bit 1, like a missing disk).
fn fake_root_tools(dir: &Path) {
    write_exe(
        &dir.join("sudo"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = -n ] || {{ echo 'sudo: -n missing' >&2; exit 1; }}\nshift\n\
             [ \"$1\" = -- ] || {{ echo 'sudo: -- missing' >&2; exit 1; }}\nshift\n\
             case \"$1\" in /*) ;; *) echo 'sudo: relative program' >&2; exit 1;; esac\n\
             tool=\"${{1##*/}}\"; shift\nexec \"{}/$tool\" \"$@\"\n",
            dir.display()
        ),
    );
    write_exe(
        &dir.join("smartctl"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> \"{}/smartctl.argv\"\n\
             if [ \"$3\" = /dev/sda ]; then printf '%s\\n' '{SDA_JSON}'; exit 0; fi\n\
             echo \"Smartctl open device: $3 failed: No such device\" >&2\nexit 2\n",
            dir.display()
        ),
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn pinned_client(fingerprint: &str) -> reqwest::Client {
    let pin: pve::Fingerprint = fingerprint.parse().expect("fingerprint");
    reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(pin).expect("tls"))
        .https_only(true)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn report_smart(report: &Value, device: &str) -> Value {
    report["host"]["smart"]
        .as_array()
        .and_then(|s| s.iter().find(|d| d["device"] == json!(device)))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_with_pinned_https_hub_cloudflared_smart_and_local_api() {
    let sim = Sim::start(SimOptions::default().guests(2).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default().tls()).expect("hub");
    let hub_pin = hub
        .info
        .fingerprint
        .clone()
        .expect("a TLS hub prints its fingerprint");
    assert!(hub.info.url.starts_with("https://"), "{}", hub.info.url);
    hub.put_config(HOST, &json!({"poll_interval_s": 1, "jitter_s": 0}))
        .await
        .expect("hub config");
    hub.put_desired(
        HOST,
        &json!({"v": 1, "generation": 1, "guests": [{"vmid": 100, "state": "running"}]}),
    )
    .await
    .expect("desired");

    let fx = Fixture::new();
    let tools = fx.path("bin");
    std::fs::create_dir(&tools).expect("bin dir");
    fake_root_tools(&tools);
    let cloudflared = FakeCloudflared::start();
    let local_port = free_port();
    let cfg = config(&fx, &sim, &hub, 1, 3);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).expect("read")).expect("json");
    doc["hub"]["fingerprint"] = json!(hub_pin);
    doc["cloudflared"] = json!({"metrics_addr": cloudflared.addr});
    doc["smart"] = json!({"devices": ["/dev/sda", "/dev/sdb"], "interval_s": 3600});
    doc["local_api"] = json!({"listen": [format!("127.0.0.1:{local_port}")]});
    let cfg = fx.config(&doc);
    crate::adopt_async(&sim, &fx.path("state"), &[100]).await;

    let notify = NotifySocket::bind(fx.dir.path());
    let started = Instant::now();
    let path = format!("{}:/usr/bin:/bin", tools.display());
    // A proxy in the environment (nothing listens on port 9) must not be used: not for the
    // hub (it would see the key), not for the loopback cloudflared probe.
    let mut daemon = spawn_agent(
        &cfg,
        &notify,
        0,
        &[
            ("PATH", path.as_ref()),
            ("HTTP_PROXY", "http://127.0.0.1:9".as_ref()),
            ("HTTPS_PROXY", "http://127.0.0.1:9".as_ref()),
            ("ALL_PROXY", "http://127.0.0.1:9".as_ref()),
        ],
    );

    // One report carries it all: the converged guest, cloudflared's readiness and both disks.
    let report = wait_report(&hub, Duration::from_secs(30), |r| {
        r["desired"]["applied_generation"] == json!(1)
            && r["cloudflared"]["ready"] == json!(true)
            && r["host"]["smart"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;
    assert_eq!(
        report["cloudflared"],
        json!({"address": cloudflared.addr, "ready": true, "ready_connections": 4, "error": null}),
        "{report:#}"
    );
    let sda = report_smart(&report, "/dev/sda");
    assert_eq!(
        (
            &sda["passed"],
            &sda["temperature_c"],
            &sda["power_on_hours"],
            &sda["error"]
        ),
        (&json!(true), &json!(31), &json!(12345), &Value::Null),
        "{sda:#}"
    );
    let sdb = report_smart(&report, "/dev/sdb");
    assert_eq!(sdb["passed"], Value::Null, "{sdb:#}");
    assert!(
        sdb["error"]
            .as_str()
            .is_some_and(|e| e.contains("smartctl") && e.contains("No such device")),
        "{sdb:#}"
    );

    // cloudflared losing its edge connections shows in the next report, with the reason.
    cloudflared.ready.store(false, Ordering::SeqCst);
    let report = wait_report(&hub, Duration::from_secs(15), |r| {
        r["cloudflared"]["ready"] == json!(false)
    })
    .await;
    assert_eq!(report["cloudflared"]["ready_connections"], json!(0));
    assert_eq!(report["cloudflared"]["error"], json!("/ready answered 503"));

    // The local API answers while the daemon runs, to a token minted by the CLI for guest 100
    // (managed since generation 1), pinned to the fingerprint the CLI prints.
    let (code, out, err) = run(agent()
        .args(["localapi", "fingerprint", "--config"])
        .arg(&cfg));
    assert_eq!(code, 0, "{err}");
    let api = pinned_client(out.trim());
    let (code, out, err) = run(agent()
        .args(["localapi", "token", "--vmid", "100", "--config"])
        .arg(&cfg));
    assert_eq!(code, 0, "{err}");
    let token = out.lines().last().unwrap_or_default().trim().to_owned();
    let base = format!("https://127.0.0.1:{local_port}");
    let resp = api
        .get(format!("{base}/backup/status"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("local API answers while the daemon runs");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["state"], json!("none"), "{body}");
    let resp = api
        .get(format!("{base}/backup/status"))
        .bearer_auth("fla_not-a-token")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);

    // SMART went through the fence with exactly the pinned argv, once per disk (the cache
    // holds the values for an hour, however many reports went out).
    let argv = std::fs::read_to_string(tools.join("smartctl.argv")).expect("smartctl ran");
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        ["--json=c -a /dev/sda", "--json=c -a /dev/sdb"],
        "{argv}"
    );

    // Invariant 8: no secret in what the hub stored (key, Proxmox token, local API token).
    let stored = hub
        .report(HOST)
        .await
        .expect("report")
        .expect("stored")
        .to_string();
    let token_secret = sim.info.token.split_once('=').map_or("", |(_, s)| s);
    for secret in [hub.info.api_key.as_str(), token_secret, token.as_str()] {
        assert!(
            !secret.is_empty() && !stored.contains(secret),
            "secret in the report"
        );
    }

    sigterm(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(25)).expect("agent did not stop");
    assert!(status.success(), "exit {status:?}:\n{}", agent_log(&cfg));
    assert_eq!(notify.count("READY=1", started), 1);
    let log = agent_log(&cfg);
    assert!(
        !log.contains(&hub.info.api_key) && !log.contains(&sim.info.token) && !log.contains(&token),
        "secret in the log"
    );
}

/// `selftest hub` against an HTTPS hub: the right pin passes; a wrong pin and no pin at all
/// (a self-signed certificate no system root vouches for) fail with the reason, before any
/// key is sent.
#[tokio::test(flavor = "multi_thread")]
async fn selftest_hub_over_https_checks_the_pin() {
    let sim = Sim::start(SimOptions::default().guests(1).task_ms(100)).expect("simulator");
    let hub = Hub::start(HubOptions::default().tls()).expect("hub");
    let hub_pin = hub.info.fingerprint.clone().expect("fingerprint");
    let fx = Fixture::new();
    let cfg = config(&fx, &sim, &hub, 5, 3);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).expect("read")).expect("json");
    let selftest = |doc: &Value| {
        let cfg = fx.config(doc);
        let out = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(["selftest", "hub", "--config"])
            .arg(&cfg)
            .output()
            .expect("selftest");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    doc["hub"]["fingerprint"] = json!(hub_pin);
    let (ok, out, err) = selftest(&doc);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("ok    report       report accepted"), "{out}");
    assert!(out.contains("skip  smart"), "{out}");
    assert!(out.contains("skip  cloudflared"), "{out}");
    assert!(hub.report(HOST).await.expect("report").is_some());

    let wrong = crate::FINGERPRINT;
    doc["hub"]["fingerprint"] = json!(wrong);
    let (ok, out, err) = selftest(&doc);
    assert!(!ok, "a wrong pin passed:\n{out}");
    assert!(out.contains("FAIL  fetch"), "{out}");
    assert!(
        out.contains(wrong) && out.contains(&hub_pin),
        "the mismatch names both fingerprints:\n{out}\n{err}"
    );

    doc["hub"]
        .as_object_mut()
        .expect("hub")
        .remove("fingerprint");
    let (ok, out, err) = selftest(&doc);
    assert!(!ok, "an unpinned self-signed hub passed:\n{out}");
    // With system roots the handshake fails (unknown issuer); on a machine without any, the
    // client refuses to start. Either way nothing was sent.
    assert!(
        (out.contains("FAIL  fetch") && out.to_lowercase().contains("certificate"))
            || err.contains("hub client"),
        "{out}\n{err}"
    );
    assert!(!out.contains(&hub.info.api_key) && !err.contains(&hub.info.api_key));
}
