//! Integration tests: the real `felhom-agent` binary, run as a process.
//!
//! - `ambiguous`: the ambiguous POST (Proxmox acted, the answer was lost: `/_sim/drop` with
//!   `after`) for reconcile ops, local-API ops and a signed destroy: found in the task list,
//!   never sent again.
//! - `check_config`: validation, redaction, env overlay, secret forms and every error path.
//! - `daemon`: `run` with the simulator, the reference hub and a real NOTIFY_SOCKET.
//! - `cli`: `--version`, `--help`, and `run` until SIGTERM.
//! - `demo`: `felhom-agent demo` end to end (only with the default `demo` feature).
//! - `engine_adversarial`: the adversarial-hub suite (dropped, relabelled, reordered, replayed,
//!   retargeted) through the local desired file and ops dir; `plan`, `audit`, corrupt journal.
//! - `engine_crash`: `kill -9` at every step boundary of a multi-step op, then recovery.
//! - `engine_support`: the shared simulator + agent harness of the two above.
//! - `golden`: the golden image through the privileged fence, then provisioning by token restore.
//! - `localapi`: the local API on the real journal, engine queues and simulator; tokens from
//!   the real `localapi` CLI, a client pinning its printed fingerprint.
//! - `localapi_crash`: `kill -9` at every step boundary of local-API ops (snapshot, backup,
//!   rollback) through the running daemon, then the one recovery path.
//! - `op`: `op new|sign|wrap|verify` with real ssh-keygen keys, ssh-agent and the journal.
//! - `selftest`: `selftest read|task` against a real simulator process.

mod ambiguous;
mod check_config;
mod cli;
mod daemon;
mod daemon_wired;
#[cfg(feature = "demo")]
mod demo;
mod engine_adversarial;
mod engine_crash;
mod engine_support;
mod golden;
mod localapi;
mod localapi_crash;
mod op;
mod selftest;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The secret values used in tests; none may ever appear in output.
pub(crate) const TOKEN: &str = "felhom-agent@pve!agent=5ecret-t0ken-value";
pub(crate) const HUB_KEY: &str = "hub-key-very-secret-123";
pub(crate) const FINGERPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

/// A temp dir holding a config file.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    #[allow(clippy::new_without_default)]
    pub(crate) fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `config.json` and returns its path.
    pub(crate) fn config(&self, json: &serde_json::Value) -> PathBuf {
        self.write(
            "config.json",
            &serde_json::to_string_pretty(json).unwrap(),
            0o600,
        )
    }

    pub(crate) fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// A complete valid configuration with inline secrets.
pub(crate) fn valid_config() -> serde_json::Value {
    serde_json::json!({
        "host_id": "host-1",
        "state_dir": "/var/lib/felhom-agent",
        "operators_file": "/etc/felhom-agent/operators.json",
        "proxmox": {
            "url": "https://127.0.0.1:8006",
            "node": "pve1",
            "token": TOKEN,
            "fingerprint": FINGERPRINT
        },
        "hub": {"url": "https://hub.example.net", "api_key": HUB_KEY, "poll_interval_s": 15},
        "desired": {"file": "/etc/felhom-agent/desired.json", "ops_dir": "/etc/felhom-agent/ops"},
        // Loopback with an ephemeral port: tests that run the daemon really bind it.
        "local_api": {"listen": ["127.0.0.1:0"]},
        "log": {"level": "debug", "format": "json"}
    })
}

/// The binary with a clean environment (no inherited FELHOM_AGENT_* or CREDENTIALS_DIRECTORY).
pub(crate) fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_felhom-agent"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

pub(crate) fn check_config(config: &Path) -> Command {
    let mut cmd = agent();
    cmd.arg("check-config").arg("--config").arg(config);
    cmd
}

/// Runs and returns (exit code, stdout, stderr).
pub(crate) fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// Seeds guests as an operator's signed `guest.adopt` leaves them, before the agent starts:
/// the identity line in each guest's description (written as root on the simulator) and the
/// adoption in the journal under `state`. The signed adoption itself runs end to end in
/// `engine_adversarial` and the demo; the other suites start from adopted guests.
pub(crate) async fn adopt_async(sim: &testkit::Sim, state: &Path, vmids: &[u32]) {
    let pve = sim.client(true).unwrap();
    std::fs::create_dir_all(state).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for &v in vmids {
        let vmid = pve::Vmid::new(v).unwrap();
        let identity = reconcile::normalize::new_identity().unwrap();
        let cfg = pve.lxc_config(vmid).await.unwrap();
        let text = cfg
            .description
            .map(|d| reconcile::normalize::split_identity(&d).0)
            .unwrap_or_default();
        pve.update_lxc_config(
            vmid,
            pve::ConfigUpdate::new().set(
                "description",
                reconcile::normalize::with_identity(&text, &identity),
            ),
        )
        .await
        .unwrap();
        let mut j = journal::Journal::open(state).unwrap();
        let entry = journal::NewAuditEntry::new(now, "guest", "adopted").actor("test-seed");
        assert!(j
            .adopt_guest(v, &format!("seed-adopt-{v}"), &identity, now, &entry)
            .unwrap());
    }
}
