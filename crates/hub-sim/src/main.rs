//! `felhom-hub-sim`: runs the reference hub and prints its ready line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The felhom reference hub (hub protocol v1 on loopback, plain HTTP or `--tls`; tests and demo).
#[derive(Parser, Debug)]
#[command(name = "felhom-hub-sim", version)]
struct Cli {
    /// Agent API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Admin API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_listen: SocketAddr,
    /// State directory; without it a temporary directory is used and removed on exit.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Dead-man's switch: a host silent for longer than this many seconds is alerted.
    #[arg(long, default_value_t = 90)]
    deadline_s: u64,
    /// Serve the agent API over HTTPS with a self-signed certificate kept in STATE/tls/ (same
    /// fingerprint after a restart); the ready line then carries its `fingerprint`. The admin
    /// API stays plain HTTP.
    #[arg(long)]
    tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let tmp;
    let state_dir = match cli.state {
        Some(dir) => dir,
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary state directory")?;
            tmp.path().to_path_buf()
        }
    };
    let hub = hub_sim::start(hub_sim::Options {
        listen: cli.listen,
        admin_listen: cli.admin_listen,
        state_dir,
        deadline: Duration::from_secs(cli.deadline_s),
        tls: cli.tls,
    })
    .await
    .context("cannot start the reference hub")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&hub.info)?)
            .context("cannot write the ready line")?;
        out.flush().context("cannot flush stdout")?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    hub.shutdown().await;
    Ok(())
}
