//! Listening: one HTTPS listener per `local_api.listen` address, HTTP/1.1 only, with a TLS
//! handshake timeout, hyper's header read timeout, a header size cap, and connection slots per
//! listener and per client address (`conns.rs`). Also the timer that ends each audit summary
//! interval. Started and stopped with the daemon ([`start`] + [`Running::shutdown`],
//! or [`serve`] until a shutdown future resolves).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::conns::{Slot, Slots};
use crate::error::Error;
use crate::routes::{router, AppState, Limits, Ports};

/// Request line plus headers larger than this are refused by hyper (431). hyper's minimum.
const MAX_HEADER_BUF: usize = 8192;

/// The running listeners.
pub struct Running {
    addrs: Vec<SocketAddr>,
    handles: Vec<Handle<SocketAddr>>,
    tasks: Vec<(SocketAddr, JoinHandle<io::Result<()>>)>,
    state: Arc<AppState>,
    flusher: JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Ends a summary interval every `every` (see `summary.rs`).
async fn flush_summaries(state: Arc<AppState>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.flush_summaries();
    }
}

/// Binds every address in `listen` and starts serving. Binding happens before this returns,
/// so an address in use is reported here, and port 0 resolves to the real port
/// ([`Running::local_addrs`]).
pub async fn start(
    listen: &[SocketAddr],
    tls: Arc<rustls::ServerConfig>,
    ports: Ports,
    limits: Limits,
) -> Result<Running, Error> {
    let state = AppState::new(ports, limits.clone());
    let router = router(state.clone());
    let tls = RustlsConfig::from_config(tls);
    let mut running = Running {
        addrs: Vec::new(),
        handles: Vec::new(),
        tasks: Vec::new(),
        flusher: tokio::spawn(flush_summaries(
            state.clone(),
            limits.audit_summary_interval,
        )),
        state,
    };
    for &addr in listen {
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Listen { addr, source })?;
        let local = std_listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let acceptor = Guarded {
            inner: RustlsAcceptor::new(tls.clone()).handshake_timeout(limits.handshake_timeout),
            slots: Slots::new(limits.max_connections, limits.max_connections_per_peer),
        };
        let handle = Handle::new();
        let mut server = axum_server::from_tcp(std_listener)
            .map_err(|source| Error::Listen { addr, source })?
            .acceptor(acceptor)
            .handle(handle.clone())
            .http1_only();
        server
            .http_builder()
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEADER_BUF);
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move { server.serve(service).await });
        tracing::info!(addr = %local, "local api listening");
        running.addrs.push(local);
        running.handles.push(handle);
        running.tasks.push((local, task));
    }
    Ok(running)
}

impl Running {
    /// The bound addresses, in the order of `listen`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting, lets open requests finish for up to `grace`, then closes everything.
    pub async fn shutdown(self, grace: Duration) -> Result<(), Error> {
        for handle in &self.handles {
            handle.graceful_shutdown(Some(grace));
        }
        let mut first_err = None;
        for (addr, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    first_err.get_or_insert(Error::Serve { addr, source });
                }
                Err(join) => {
                    first_err.get_or_insert(Error::Serve {
                        addr,
                        source: io::Error::other(join.to_string()),
                    });
                }
            }
        }
        self.flusher.abort();
        // What was counted since the last tick is not lost with the listener.
        self.state.flush_summaries();
        tracing::info!("local api stopped");
        first_err.map_or(Ok(()), Err)
    }
}

/// [`start`], then serve until `shutdown` resolves, then [`Running::shutdown`] with `grace`.
pub async fn serve(
    listen: &[SocketAddr],
    tls: Arc<rustls::ServerConfig>,
    ports: Ports,
    limits: Limits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let running = start(listen, tls, ports, limits).await?;
    shutdown.await;
    running.shutdown(grace).await
}

/// Admits each TCP connection to a slot ([`Slots`]) before its TLS handshake, runs the
/// handshake (`inner`, the rustls acceptor with its timeout) unless the slot is evicted first,
/// and marks the slot established once it is done. A refused or evicted connection is closed
/// (axum-server drops a connection whose acceptor fails). Also sets `TCP_NODELAY`: answers are
/// small and latency matters more than packet count.
#[derive(Clone)]
struct Guarded<A> {
    inner: A,
    slots: Arc<Slots>,
}

impl<A, S> Accept<TcpStream, S> for Guarded<A>
where
    A: Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = Slotted<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(addr) => addr.ip(),
            Err(err) => return Box::pin(std::future::ready(Err(err))),
        };
        let (slot, evicted) = match self.slots.admit(peer) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                return Box::pin(std::future::ready(Err(io::Error::other(format!(
                    "connection refused: {refusal:?}"
                )))))
            }
        };
        // Best effort; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            tokio::select! {
                done = handshake => {
                    let (stream, service) = done?;
                    slot.established();
                    Ok((Slotted { stream, _slot: slot }, service))
                }
                () = evicted.wait() => Err(io::Error::other("evicted during the TLS handshake")),
            }
        })
    }
}

/// A connection holding one of the listener's slots until it is dropped.
struct Slotted<S> {
    stream: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Slotted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Slotted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
