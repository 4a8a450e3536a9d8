//! `felhom-agent run --config FILE`: the daemon.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

/// Arguments of `run` (the file comes from the global `--config`).
#[derive(Debug, Args, Default)]
pub struct RunArgs {}

/// Loads the configuration, sets up logging and the TLS provider, then waits for a stop signal.
///
/// The reconcile, hub and local-API loops are not here yet (a later issue); this is the frame
/// they plug into.
pub fn execute(config_path: Option<&Path>, _args: RunArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    let sink = crate::logging::init(&config.log).context("cannot set up logging")?;
    // Every rustls config the agent builds names ring explicitly; the process default is
    // installed too so a library that asks for the default gets ring, never a panic
    // (deps-notes.md, gotcha 1). Err means one is already installed: fine.
    crate::proxmox::install_crypto_provider();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        tracing::info!(
            host_id = %config.host_id,
            node = %config.proxmox.node,
            version = env!("CARGO_PKG_VERSION"),
            sink = ?sink,
            "agent starting"
        );
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal, "agent stopping");
        anyhow::Ok(())
    })
}
