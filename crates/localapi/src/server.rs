//! Listening: one HTTPS listener per `local_api.listen` address, HTTP/1.1 only, with a TLS
//! handshake timeout, hyper's header read timeout, a header size cap and a cap on open
//! connections per listener. Started and stopped with the daemon ([`start`] + [`Running::shutdown`],
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::routes::{app, Limits, Ports};

/// Request line plus headers larger than this are refused by hyper (431). hyper's minimum.
const MAX_HEADER_BUF: usize = 8192;

/// The running listeners.
#[derive(Debug)]
pub struct Running {
    addrs: Vec<SocketAddr>,
    handles: Vec<Handle<SocketAddr>>,
    tasks: Vec<(SocketAddr, JoinHandle<io::Result<()>>)>,
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
    let router = app(ports, limits.clone());
    let tls = RustlsConfig::from_config(tls);
    let mut running = Running {
        addrs: Vec::new(),
        handles: Vec::new(),
        tasks: Vec::new(),
    };
    for &addr in listen {
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Listen { addr, source })?;
        let local = std_listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let acceptor = RustlsAcceptor::new(tls.clone())
            .handshake_timeout(limits.handshake_timeout)
            .acceptor(LimitAcceptor {
                slots: Arc::new(Semaphore::new(limits.max_connections)),
            });
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

/// Caps open connections: a connection over the cap is closed before the TLS handshake
/// (axum-server drops a connection whose acceptor fails). Also sets `TCP_NODELAY`: answers are
/// small and latency matters more than packet count.
#[derive(Clone)]
struct LimitAcceptor {
    slots: Arc<Semaphore>,
}

impl<S: Send + 'static> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Slotted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Slotted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let result = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                // Best effort; a failure only costs latency.
                let _ = stream.set_nodelay(true);
                Ok((
                    Slotted {
                        stream,
                        _permit: permit,
                    },
                    service,
                ))
            }
            Err(_) => {
                tracing::warn!("local api connection limit reached; connection closed");
                Err(io::Error::other("connection limit reached"))
            }
        };
        std::future::ready(result)
    }
}

/// A connection holding one of the listener's slots until it is dropped.
struct Slotted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
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
