//! `--version`, `--help` and `run`.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::{agent, run, valid_config, Fixture};

#[test]
fn version_prints_name_and_version() {
    let (code, stdout, _) = run(agent().arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("felhom-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_subcommands_and_says_what_run_does() {
    let (code, stdout, _) = run(agent().arg("--help"));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("check-config") && stdout.contains("run"),
        "{stdout}"
    );
    // The test binary is built with the default features, so `demo` is there (the Debian
    // package, built without them, is checked by .ci/run).
    #[cfg(feature = "demo")]
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("demo ")),
        "{stdout}"
    );
    let (code, run_help, _) = run(agent().args(["run", "--help"]));
    assert_eq!(code, 0);
    for part in [
        "reconcile engine",
        "hub",
        "local API",
        "watchdog",
        "SIGHUP",
        "SIGTERM",
    ] {
        assert!(run_help.contains(part), "{part} missing: {run_help}");
    }
    assert!(!run_help.contains("later issue"), "{run_help}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, _, stderr) = run(agent().arg("frobnicate"));
    assert_eq!(code, 2, "{stderr}");
}

fn start_and_stop(args: &[&str], extra_env: &[(&str, &str)], signal: i32) -> (i32, String) {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["log"]["format"] = serde_json::json!("json");
    config["log"]["level"] = serde_json::json!("info");
    // `run` opens the journal in state_dir (issue 4).
    config["state_dir"] = serde_json::json!(fx.path("state"));
    let path = fx.config(&config);
    let mut cmd = agent();
    cmd.args(args)
        .env("FELHOM_AGENT_CONFIG", &path)
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Wait for the "agent starting" line before signalling, so the handler is installed.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains("agent starting") {
        assert!(Instant::now() < deadline, "no start line: {seen}");
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "agent exited early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pid = child.id().to_string();
    let sig = format!("-{signal}");
    assert!(std::process::Command::new("kill")
        .args([sig.as_str(), pid.as_str()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    seen.push_str(&rest);
    (status.code().unwrap_or(-1), seen)
}

#[test]
fn run_logs_start_as_json_and_exits_zero_on_sigterm() {
    let (code, log) = start_and_stop(&["run"], &[], 15);
    assert_eq!(code, 0, "{log}");
    let start: serde_json::Value =
        serde_json::from_str(log.lines().find(|l| l.contains("agent starting")).unwrap()).unwrap();
    assert_eq!(start["fields"]["host_id"], "host-1");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!log.contains("5ecret"), "{log}");
}

#[test]
fn run_is_the_default_and_stops_on_sigint() {
    let (code, log) = start_and_stop(&[], &[], 2);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("SIGINT"), "{log}");
}

#[test]
fn journal_stream_that_is_not_stderr_falls_back_to_stderr() {
    let (code, log) = start_and_stop(&["run"], &[("JOURNAL_STREAM", "1:1")], 15);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("StderrJson"), "{log}");
}

#[test]
fn run_with_bad_config_exits_2() {
    let fx = Fixture::new();
    let path = fx.write("config.json", "{", 0o600);
    let (code, _, stderr) = run(agent().arg("run").arg("--config").arg(&path));
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid JSON"), "{stderr}");
}
