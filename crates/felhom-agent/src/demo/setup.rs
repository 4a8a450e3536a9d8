//! The files an operator would write by hand: the agent's configuration (secrets in 0600
//! files, the simulator's pinned fingerprint, the hub), an operator key made with
//! `ssh-keygen`, and the operators file naming it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use testkit::{Hub, Sim};

/// The demo host's identity at the hub.
pub const HOST_ID: &str = "demo-host";
/// The operator's principal in the operators file.
pub const OPERATOR: &str = "demo-operator";
/// Seconds between the agent's polls until the hub sets its own interval.
pub const POLL_INTERVAL_S: u64 = 2;

/// An operator's signing key, made by `ssh-keygen -t ed25519`.
pub struct OperatorKey {
    /// The private key file (unencrypted, 0600, in the demo's temp dir).
    pub private: PathBuf,
    /// The public key line, `ssh-ed25519 AAAA… comment`.
    pub public: String,
    /// Its SHA-256 fingerprint as the agent shows it.
    pub fingerprint: String,
}

/// Creates the operator key in `dir` with the system's `ssh-keygen`.
pub fn operator_key(dir: &Path) -> anyhow::Result<OperatorKey> {
    let private = dir.join("operator_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", OPERATOR, "-f"])
        .arg(&private)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keygen (the demo signs with a real OpenSSH key; install openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let public_path = dir.join("operator_ed25519.pub");
    let public = std::fs::read_to_string(&public_path)
        .with_context(|| format!("cannot read {}", public_path.display()))?
        .trim()
        .to_owned();
    Ok(OperatorKey {
        private,
        public,
        fingerprint: String::new(),
    })
}

/// Writes the operators file (`{"operators":[…]}`, role `operator`) and fills in the key's
/// fingerprint as the agent's own parser computes it.
pub fn operators_file(dir: &Path, key: &mut OperatorKey) -> anyhow::Result<PathBuf> {
    let doc = serde_json::json!({
        "operators": [{"principal": OPERATOR, "public_key": key.public, "roles": ["operator"]}]
    });
    let path = dir.join("operators.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let operators = authz::Operators::load(&path)?;
    key.fingerprint = operators
        .iter()
        .next()
        .map(|o| o.fingerprint().to_owned())
        .context("the operators file lists no operator")?;
    Ok(path)
}

/// Writes `config.json` for `felhom-agent run`: the token and the hub key in 0600 files, the
/// simulator's fingerprint pinned, the hub polled every [`POLL_INTERVAL_S`] seconds.
pub fn config(
    dir: &Path,
    sim: &Sim,
    hub: &Hub,
    operators: &Path,
    local_api: std::net::SocketAddr,
) -> anyhow::Result<PathBuf> {
    let token = secret_file(dir, "proxmox-token", &sim.info.token)?;
    let api_key = secret_file(dir, "hub-api-key", &hub.info.api_key)?;
    let config = serde_json::json!({
        "host_id": HOST_ID,
        "state_dir": dir.join("state").display().to_string(),
        "operators_file": operators.display().to_string(),
        "proxmox": {
            "url": sim.info.url,
            "node": sim.info.node,
            "token": {"file": token.display().to_string()},
            "fingerprint": sim.info.fingerprint,
        },
        "hub": {
            "url": hub.info.url,
            "api_key": {"file": api_key.display().to_string()},
            "poll_interval_s": POLL_INTERVAL_S,
        },
        "local_api": {"listen": [local_api.to_string()]},
        "log": {"level": "info", "format": "text"},
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A secret in a file created 0600 (never readable by others, not even for a moment).
fn secret_file(dir: &Path, name: &str, value: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(value.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
