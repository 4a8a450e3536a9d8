//! `felhom-agent run --config FILE`: the daemon.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

/// How long in-flight work gets after SIGTERM before the daemon exits anyway (below the
/// unit's `TimeoutStopSec=30`). Anything still running is in the journal with its UPID and is
/// settled by recovery on the next start.
const STOP_BOUND: Duration = Duration::from_secs(20);

/// Arguments of `run` (the file comes from the global `--config`).
#[derive(Debug, Args, Default)]
pub struct RunArgs {}

/// Loads the configuration, sets up logging and the TLS provider, opens the journal and runs
/// the daemon (reconcile engine, hub loop, local sources, local API, systemd notify and
/// watchdog) until SIGTERM/SIGINT. SIGHUP reloads the configuration: a valid new file
/// restarts the loops with it; an invalid one is logged and the running configuration kept.
pub fn execute(config_path: Option<&Path>, _args: RunArgs) -> anyhow::Result<()> {
    let mut config = super::load_config(config_path)?;
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
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        tracing::info!(
            host_id = %config.host_id,
            node = %config.proxmox.node,
            version = env!("CARGO_PKG_VERSION"),
            sink = ?sink,
            "agent starting"
        );
        loop {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let current = config.clone();
            let daemon = crate::daemon::run(&current, stop_rx);
            tokio::pin!(daemon);
            // Signals for this daemon instance; a refused reload keeps it running.
            let reload = loop {
                let event = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hup.recv() => "SIGHUP",
                    result = &mut daemon => {
                        // The daemon only returns early on a fatal error (journal, client).
                        result?;
                        return anyhow::Ok(());
                    }
                };
                if event != "SIGHUP" {
                    tracing::info!(signal = event, "agent stopping");
                    break None;
                }
                match super::load_config(config_path) {
                    Ok(new) => break Some(new),
                    // Keep running on the configuration that works; say what is wrong.
                    Err(e) => tracing::error!(error = %e, "configuration not reloaded"),
                }
            };
            stop_tx.send_replace(true);
            stop_bounded(daemon).await?;
            match reload {
                Some(new) => {
                    tracing::info!("configuration reloaded; restarting the loops");
                    config = new;
                }
                None => return anyhow::Ok(()),
            }
        }
    })
}

/// Waits for the daemon to wind down, at most [`STOP_BOUND`].
async fn stop_bounded(
    daemon: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(STOP_BOUND, daemon).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                bound_s = STOP_BOUND.as_secs(),
                "in-flight work did not finish in time; it is journaled and resumes on the next start"
            );
            Ok(())
        }
    }
}
