//! `felhom-pve-sim`: CLI wrapper that opens the simulator state, serves HTTPS and prints the
//! ready line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pve_sim::state::{AGENT_TOKEN, AGENT_USER, ROOT_TOKEN};
use pve_sim::{app, Options, Sim};

/// A faithful Proxmox VE 9.1 API simulator (HTTPS, `/api2/json`).
#[derive(Parser, Debug)]
#[command(name = "felhom-pve-sim", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// State directory; without it a temporary directory is used and removed on exit.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Containers to seed on first start (vmid 100, 101, ...).
    #[arg(long, default_value_t = 0)]
    guests: u32,
    /// Base task duration in milliseconds (create, restore and vzdump take twice as long).
    #[arg(long, default_value_t = 300)]
    task_ms: u64,
    /// Delay before answering 401, like pveproxy's 3 s.
    #[arg(long, default_value_t = 3000)]
    auth_fail_delay_ms: u64,
    /// Node name.
    #[arg(long, default_value = "pve")]
    node: String,
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
    // Only ring is compiled in; install it so any default-provider path works.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();

    let tmp;
    let state_dir = match &cli.state {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary state directory")?;
            tmp.path().to_path_buf()
        }
    };
    let sim = Sim::open(&Options {
        state_dir: state_dir.clone(),
        node: cli.node.clone(),
        guests: cli.guests,
        task_ms: cli.task_ms,
        auth_fail_delay_ms: cli.auth_fail_delay_ms,
    })
    .context("cannot open simulator state")?;
    let identity = pve_sim::tls::Identity::load_or_create(&state_dir)
        .context("cannot prepare the certificate")?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(identity.server_config()?);

    let listener = std::net::TcpListener::bind(cli.listen)
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    let addr = listener.local_addr().context("no local address")?;
    let server =
        axum_server::from_tcp_rustls(listener, tls).context("cannot start the HTTPS server")?;

    sim.resume_tasks();
    let (node, token, root_token) = sim.with_state(|st| {
        let secret = |user: &str, name: &str| {
            st.access
                .users
                .get(user)
                .and_then(|u| u.tokens.get(name))
                .map(|t| t.secret.clone())
                .unwrap_or_default()
        };
        (
            st.node.clone(),
            format!(
                "{AGENT_USER}!{AGENT_TOKEN}={}",
                secret(AGENT_USER, AGENT_TOKEN)
            ),
            format!("root@pam!{ROOT_TOKEN}={}", secret("root@pam", ROOT_TOKEN)),
        )
    });
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let ready = serde_json::json!({
        "url": format!("https://{host}:{}", addr.port()),
        "fingerprint": identity.fingerprint(),
        "node": node,
        "token": token,
        "root_token": root_token,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("cannot write the ready line")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    tracing::info!(%addr, state = %state_dir.display(), "simulator ready");

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
    });
    server
        .handle(handle)
        .serve(app(sim).into_make_service())
        .await
        .context("server failed")?;
    Ok(())
}
