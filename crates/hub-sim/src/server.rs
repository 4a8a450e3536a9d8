//! Running the reference hub: two loopback listeners (agent API and admin API), the ready
//! line, `POST /admin/down` (close the agent listener, reopen it on the same port) and a
//! graceful stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl Options {
    /// Loopback, ephemeral ports, a 90 s deadline.
    pub fn loopback(state_dir: impl Into<PathBuf>) -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            deadline: Duration::from_secs(90),
        }
    }
}

/// The ready line `felhom-hub-sim` prints (DESIGN §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Agent API base, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The agents' Bearer key (stable across restarts on the same state).
    pub api_key: String,
    /// Admin API base, `http://127.0.0.1:PORT2` (routes under `/admin/`).
    pub admin_url: String,
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

fn base_url(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("http://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
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
    info!(%agent_addr, %admin_addr, "reference hub ready");
    Ok(RunningHub {
        info: ReadyInfo {
            url: base_url(agent_addr),
            api_key: state.api_key().to_owned(),
            admin_url: base_url(admin_addr),
        },
        agent_addr,
        admin_addr,
        state,
        stop,
        tasks: vec![agent_task, admin_task],
    })
}

/// Serves the agent API; on a down request, stops (connections are then refused), waits, and
/// binds the same address again.
async fn serve_agent(
    mut listener: TcpListener,
    addr: SocketAddr,
    app: axum::Router,
    mut down_rx: mpsc::UnboundedReceiver<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (end_tx, end_rx) = oneshot::channel::<()>();
        let app = app.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = end_rx.await;
                })
                .await
        });
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
