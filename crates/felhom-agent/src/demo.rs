//! The narrated demo behind `felhom-agent demo`: a real `felhom-pve-sim` process on loopback, a
//! configuration written the way an operator would (token in a 0600 file, pinned fingerprint),
//! then the agent's foundation at work: the read-only selftest, the reversible task selftest,
//! and the safety rails (pin refusal, guest locks, PVE's own name rules checked before sending).
//!
//! The reconcile engine, signed operations, the hub loop and the local API arrive with later
//! issues; the demo grows with them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use pve::{Client, ClientConfig, SnapshotName, Vmid, VzdumpOutcome, VzdumpRequest, WaitOptions};
use testkit::{Sim, SimOptions};

use crate::selftest::{self, TaskOptions};

struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        for (i, line) in text.as_ref().lines().enumerate() {
            if i == 0 {
                println!("[{t:6.1}s] {line}");
            } else {
                println!("          {line}");
            }
        }
    }

    fn heading(&self, text: &str) {
        println!();
        self.say(format!("== {text}"));
    }
}

/// Runs the whole demo once.
pub async fn run(guests: u32, task_ms: u64) -> anyhow::Result<()> {
    let n = Narrator {
        start: Instant::now(),
    };
    let work = tempfile::Builder::new()
        .prefix("felhom-demo-")
        .tempdir()
        .context("creating the demo directory")?;

    n.heading("1. a Proxmox VE node (felhom-pve-sim, a faithful PVE 9.1 API simulator)");
    let sim = tokio::task::spawn_blocking({
        let log = work.path().join("pve-sim.log");
        move || {
            Sim::start(
                SimOptions::default()
                    .guests(guests)
                    .task_ms(task_ms)
                    .log_to(log),
            )
        }
    })
    .await??;
    n.say(format!(
        "API at {}/api2/json, node {:?}, {guests} containers\n\
         leaf certificate SHA-256 {}",
        sim.info.url, sim.info.node, sim.info.fingerprint
    ));

    n.heading("2. the agent's configuration, as an operator writes it");
    let config_path = write_config(work.path(), &sim)?;
    let config = crate::config::load(&config_path, std::iter::empty())?;
    n.say(format!(
        "{}\ntoken from a 0600 file, shown redacted: {}",
        config_path.display(),
        serde_json::to_string(&config.proxmox.token)?
    ));
    let client = crate::proxmox::client(&config.proxmox)?;

    n.heading("3. selftest read: API, token rights (FelhomAgent role), node, storage, guests");
    let report = selftest::read(&client).await;
    n.say(report.to_string().trim_end());

    n.heading("4. selftest task --vmid 100: snapshot -> rollback -> delete, each task waited");
    let report = selftest::task(
        &client,
        &TaskOptions {
            vmid: Vmid::new(100)?,
            task_timeout: Duration::from_secs(60),
        },
    )
    .await;
    n.say(report.to_string().trim_end());

    n.heading("5. safety rails");
    pin_refusal(&n, &sim).await?;
    lock_respected(&n, &client).await?;
    name_rule(&n);

    n.heading("done");
    n.say(
        "next to land: signed operator operations, the reconcile engine with its\n\
         reversibility gate, the hub loop and the per-guest local API (issues 3-6).",
    );
    Ok(())
}

fn write_config(dir: &Path, sim: &Sim) -> anyhow::Result<std::path::PathBuf> {
    let token_path = dir.join("proxmox-token");
    std::fs::write(&token_path, &sim.info.token)?;
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600))?;
    let config = serde_json::json!({
        "host_id": "demo-host",
        "state_dir": dir.join("state").display().to_string(),
        "proxmox": {
            "url": sim.info.url,
            "node": sim.info.node,
            "token": {"file": token_path.display().to_string()},
            "fingerprint": sim.info.fingerprint,
        },
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

async fn pin_refusal(n: &Narrator, sim: &Sim) -> anyhow::Result<()> {
    // Any other certificate, e.g. after a MITM or a silently re-issued PVE certificate.
    let wrong: pve::Fingerprint = [0xAB_u8; 32]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
        .parse()?;
    let client = Client::new(ClientConfig::new(
        sim.info.url.clone(),
        sim.info.node.clone(),
        sim.info.token.parse()?,
        wrong,
    ))?;
    match client.version().await {
        Err(e @ pve::Error::PinMismatch { .. }) => n.say(format!(
            "a client pinned to another certificate is refused:\n  {e}"
        )),
        other => anyhow::bail!("expected a pin mismatch, got {other:?}"),
    }
    Ok(())
}

async fn lock_respected(n: &Narrator, client: &Client) -> anyhow::Result<()> {
    let vmid = Vmid::new(101)?;
    let upid = match client.vzdump(&VzdumpRequest::new(vmid, "local")).await? {
        VzdumpOutcome::Task(upid) => upid,
        VzdumpOutcome::NotOnThisNode => anyhow::bail!("guest 101 is not on this node"),
    };
    n.say(format!("backup of guest 101 started: {upid}"));
    let update = pve::ConfigUpdate::new().description("changed during the backup");
    match client.update_lxc_config(vmid, update).await {
        Err(e) if e.lock().is_some() => n.say(format!(
            "a config change during the backup is refused by Proxmox, not retried blindly:\n  {e}"
        )),
        other => anyhow::bail!("expected a lock error, got {other:?}"),
    }
    let outcome = client
        .wait_task(&upid, WaitOptions::new(Duration::from_secs(60)))
        .await?;
    let backups = client
        .storage_content("local", Some("backup"), Some(vmid))
        .await?;
    let newest = backups
        .iter()
        .map(|b| b.volid.as_str())
        .max()
        .unwrap_or("?");
    n.say(format!(
        "backup finished ({outcome:?}); archive on storage local: {newest}"
    ));
    Ok(())
}

fn name_rule(n: &Narrator) {
    match "Nightly Backup!".parse::<SnapshotName>() {
        Err(e) => n.say(format!(
            "a snapshot name Proxmox would reject never leaves the agent:\n  {e}"
        )),
        Ok(_) => n.say("unexpected: an invalid snapshot name was accepted"),
    }
}
