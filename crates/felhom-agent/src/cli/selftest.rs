//! `felhom-agent selftest read|task|hub --config FILE [--vmid N]`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};

use crate::selftest::{self, Report, TaskOptions};

/// Which selftest to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Read-only health checks: API, token permissions, node, storage, guests.
    Read,
    /// Reversible snapshot -> rollback -> delete on `--vmid` (never implied by `read`).
    Task,
    /// One collect + report round trip to the hub (`hub` must be configured).
    Hub,
}

/// Arguments of `selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// The selftest to run.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Guest for `task`.
    #[arg(long)]
    pub vmid: Option<u32>,
    /// Limit for each task of `task`, seconds.
    #[arg(long, default_value_t = 300)]
    pub task_timeout_s: u64,
}

/// Runs the selftest; prints each check and fails with a one-line reason.
pub fn execute(config_path: Option<&Path>, args: SelftestArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    crate::proxmox::install_crypto_provider();
    let client = crate::proxmox::client(&config.proxmox)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report: Report = match args.mode {
        Mode::Read => runtime.block_on(selftest::read(&client)),
        Mode::Task => {
            let vmid = args
                .vmid
                .ok_or_else(|| anyhow!("selftest task needs --vmid N"))?;
            let vmid = pve::Vmid::new(vmid).map_err(|e| anyhow!("--vmid: {e}"))?;
            // The three ops are journaled like every other guest mutation.
            let journal =
                journal::Journal::open(&config.state_dir).context("cannot open the journal")?;
            let journal = crate::journal_handle::JournalHandle::new(journal);
            let px = Arc::new(crate::pve_port::PveProxmox::new(
                client.clone(),
                crate::proxmox::token_user(&config.proxmox),
            ));
            let store = Arc::new(crate::journal_port::JournalStore::new(journal.clone()));
            let handle = selftest::SelftestHandle::standalone(px, store)
                .with_wait_limit(Duration::from_secs(args.task_timeout_s));
            let options = TaskOptions {
                vmid,
                handle,
                journal,
            };
            runtime.block_on(selftest::task(&client, &options))
        }
        Mode::Hub => runtime.block_on(selftest::hub(&config, client))?,
    };
    print!("{report}");
    match report.first_failure() {
        None => Ok(()),
        Some(reason) => {
            let mode = match args.mode {
                Mode::Read => "read",
                Mode::Task => "task",
                Mode::Hub => "hub",
            };
            bail!("selftest {mode} failed: {reason}")
        }
    }
}
