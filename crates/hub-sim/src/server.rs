//! Running the reference hub: two loopback listeners (agent API and admin API), the ready
//! line, `POST /admin/down` (close the agent listener, reopen it on the same port) and a
//! graceful stop.
//!
//! The agent listener can speak HTTPS ([`Options::tls`]) because the real agent reaches its hub
//! over TLS with a pinned certificate: without it, tests could only exercise the agent's hub
//! client on a plain-HTTP path no deployment uses. The certificate is the one `felhom-pve-sim`
//! makes (`pve_sim::tls`), kept in `STATE/tls/` so that one piece of code owns "self-signed,
//! created once, same fingerprint after a restart" for both simulators; a pin written into an
//! agent's configuration must survive a hub restart on the same state, as it would with a real
//! hub. The admin listener stays plain HTTP: it is the tests' control channel, not something
//! the agent ever talks to, and keeping it plain keeps every test client trivial.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::state::HubState;
use crate::{admin_app, agent_app, HubSimError};

/// How to run a hub.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agent API address (port 0 picks one).
    pub listen: SocketAddr,
    /// Admin API address (port 0 picks one).
    pub admin_listen: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// Dead-man's-switch window.
    pub deadline: Duration,
    /// Serve the agent API over HTTPS with the certificate in `state_dir/tls/` (created on first
    /// use). The admin API stays plain HTTP.
    pub tls: bool,
}

impl Options {
    /// Loopback, ephemeral ports, a 90 s deadline.
    pub fn loopback(state_dir: impl Into<PathBuf>) -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            deadline: Duration::from_secs(90),
            tls: false,
        }
    }
}

/// The ready line `felhom-hub-sim` prints (DESIGN §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Agent API base, `http://127.0.0.1:PORT` (`https://` with [`Options::tls`]).
    pub url: String,
    /// The agents' Bearer key (stable across restarts on the same state).
    pub api_key: String,
    /// Admin API base, `http://127.0.0.1:PORT2` (routes under `/admin/`).
    pub admin_url: String,
    /// With [`Options::tls`]: SHA-256 of the agent listener's leaf certificate (DER), `AA:BB:…`
    /// upper-case hex, the pin an agent is configured with. Absent without TLS, so the plain
    /// ready line is byte-for-byte what it always was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fingerprint: Option<String>,
}

/// A hub serving in this process.
pub struct RunningHub {
    /// What the ready line says.
    pub info: ReadyInfo,
    /// Agent API address.
    pub agent_addr: SocketAddr,
    /// Admin API address.
    pub admin_addr: SocketAddr,
    state: HubState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningHub {
    /// The shared state (tests may inspect it).
    pub fn state(&self) -> &HubState {
        &self.state
    }

    /// Stops both listeners and waits for open requests to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn base_url(scheme: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
    }
}

/// How long a TLS agent listener waits for open connections when it stops. Plain HTTP waits
/// for open requests without a limit, but over TLS a client that connected and never finished
/// its handshake is invisible to the graceful stop and would hold it until the acceptor's own
/// handshake timeout; a bound keeps `/admin/down` and shutdown prompt. The hub's handlers
/// answer in milliseconds, so nothing legitimate is cut off.
const TLS_STOP_GRACE: Duration = Duration::from_secs(1);

/// Loads or creates the agent listener's certificate in `state_dir/tls/`. A subdirectory
/// because `pve_sim::tls` names its files after PVE's (`pve-ssl.pem`), which would read as
/// a misplaced PVE file next to `hub-state.json`.
fn tls_identity(state_dir: &std::path::Path) -> Result<(RustlsConfig, String), HubSimError> {
    let dir = state_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| HubSimError::Io {
        path: dir.clone(),
        source,
    })?;
    let tls_err = |source| HubSimError::Tls {
        dir: dir.clone(),
        source,
    };
    let identity = pve_sim::tls::Identity::load_or_create(&dir).map_err(tls_err)?;
    let config = identity.server_config().map_err(tls_err)?;
    Ok((RustlsConfig::from_config(config), identity.fingerprint()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, HubSimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HubSimError::Bind { addr, source })
}

/// Opens the state and starts serving.
pub async fn start(opts: Options) -> Result<RunningHub, HubSimError> {
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let state = HubState::open(&opts.state_dir, opts.deadline, Some(down_tx))?;
    let (tls, fingerprint) = if opts.tls {
        let (config, fingerprint) = tls_identity(&opts.state_dir)?;
        (Some(config), Some(fingerprint))
    } else {
        (None, None)
    };
    let agent = bind(opts.listen).await?;
    let admin = bind(opts.admin_listen).await?;
    let agent_addr = agent.local_addr().map_err(|source| HubSimError::Bind {
        addr: opts.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| HubSimError::Bind {
        addr: opts.admin_listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let agent_task = tokio::spawn(serve_agent(
        agent,
        agent_addr,
        agent_app(state.clone()),
        tls.clone(),
        down_rx,
        stop_rx.clone(),
    ));
    let admin_router = admin_app(state.clone());
    let mut admin_stop = stop_rx;
    let admin_task = tokio::spawn(async move {
        let res = axum::serve(admin, admin_router)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = res {
            warn!(error = %e, "admin listener failed");
        }
    });
    info!(%agent_addr, %admin_addr, tls = tls.is_some(), "reference hub ready");
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(RunningHub {
        info: ReadyInfo {
            url: base_url(scheme, agent_addr),
            api_key: state.api_key().to_owned(),
            admin_url: base_url("http", admin_addr),
            fingerprint,
        },
        agent_addr,
        admin_addr,
        state,
        stop,
        tasks: vec![agent_task, admin_task],
    })
}

/// Serves the agent API until `end` fires (or its sender is dropped): plain HTTP through
/// `axum::serve`, HTTPS through `axum_server` (which brings the rustls acceptor). Both close
/// `listener` when they return, which is what makes `/admin/down` refuse connections.
fn spawn_agent_server(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<RustlsConfig>,
    end: oneshot::Receiver<()>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    let Some(config) = tls else {
        return Ok(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = end.await;
                })
                .await
        }));
    };
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener.into_std()?, config)?.handle(handle.clone());
    tokio::spawn(async move {
        let _ = end.await;
        handle.graceful_shutdown(Some(TLS_STOP_GRACE));
    });
    Ok(tokio::spawn(server.serve(app.into_make_service())))
}

/// Serves the agent API; on a down request, stops (connections are then refused), waits, and
/// binds the same address again.
async fn serve_agent(
    mut listener: TcpListener,
    addr: SocketAddr,
    app: axum::Router,
    tls: Option<RustlsConfig>,
    mut down_rx: mpsc::UnboundedReceiver<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (end_tx, end_rx) = oneshot::channel::<()>();
        let server = match spawn_agent_server(listener, app.clone(), tls.clone(), end_rx) {
            Ok(server) => server,
            Err(e) => {
                warn!(error = %e, %addr, "cannot serve the agent listener; agent API stays down");
                return;
            }
        };
        let down = tokio::select! {
            Some(d) = down_rx.recv() => Some(d),
            _ = stop.wait_for(|s| *s) => None,
        };
        let _ = end_tx.send(());
        let _ = server.await;
        let Some(d) = down else { return };
        info!(down_ms = d.as_millis() as u64, "agent listener down");
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // The port was ours a moment ago; retry briefly if the kernel is slow to release it.
        let mut tries = 0;
        listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    if tries == 1 {
                        warn!(error = %e, "rebinding the agent listener");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    warn!(error = %e, %addr, "cannot rebind the agent listener; agent API stays down");
                    return;
                }
            }
        };
        info!("agent listener up again");
    }
}
