//! Connection exhaustion (issue 11 item 7): one guest opens idle TCP connections that never
//! start a TLS handshake; another guest's controller then calls the API. Prints how many idle
//! connections the server kept, and how the second guest fared.
//!
//! ```text
//! cargo run --release -p localapi --example conn_flood            # 300 idle, 20 calls
//! cargo run --release -p localapi --example conn_flood -- 1000 50
//! ```
//!
//! The real server (`localapi::start`, default `Limits`) with the in-memory fakes. The flood
//! comes from 127.0.0.1, the second guest from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to
//! loopback), so the server sees two addresses, as it would see two guests on a bridge.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use localapi::fakes::{FakeGuest, FakeGuests, MemoryAudit, MemoryTokenStore};
use localapi::{Identity, Limits, Ports, SystemClock};
use tokio::io::AsyncReadExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let idle: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(idle, calls))
}

async fn run(idle: usize, calls: usize) -> Result<(), Box<dyn std::error::Error>> {
    let state = tempfile::tempdir()?;
    let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse()?];
    let identity = Identity::load_or_create(state.path(), &listen)?;
    let clock = Arc::new(SystemClock);
    let guests = FakeGuests::new(clock.clone());
    let vmid = pve::Vmid::new(102)?;
    guests.add(vmid, FakeGuest::default());
    let tokens = Arc::new(MemoryTokenStore::default());
    let token = localapi::mint(tokens.as_ref(), clock.as_ref(), vmid)?;
    let ports = Ports {
        tokens,
        ops: Arc::new(guests.clone()),
        view: Arc::new(guests),
        audit: Arc::new(MemoryAudit::default()),
        clock,
    };
    let limits = Limits::default();
    let running = localapi::start(&listen, identity.server_config()?, ports, limits).await?;
    let addr = running.local_addrs()[0];

    let mut flood = Vec::new();
    for _ in 0..idle {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        flood.push(socket.connect(addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kept = 0;
    for s in &mut flood {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(2), s.read(&mut byte))
            .await
            .is_err()
        {
            kept += 1;
        }
    }

    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(identity.fingerprint())?)
        .https_only(true)
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("https://127.0.0.1:{}/backup/status", addr.port());
    let mut ok = 0;
    let mut latencies = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        let answer = client
            .get(&url)
            .header("authorization", format!("Bearer {}", token.expose()))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            ok += 1;
            latencies.push(t.elapsed());
        }
    }
    latencies.sort();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "{idle} idle connections from one address: {kept} kept open, {} closed",
        idle - kept
    );
    println!(
        "second guest: {ok}/{calls} calls answered 200 (p50 {:.2} ms, max {:.2} ms)",
        ms(latencies.get(latencies.len() / 2)),
        ms(latencies.last())
    );
    drop(flood);
    running.shutdown(Duration::from_secs(1)).await?;
    Ok(())
}
