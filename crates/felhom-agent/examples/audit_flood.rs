//! The audit cost of a flood (issue 11 item 6): clients with no token hammer the local API for
//! a while, and this counts what reached the journal's audit log.
//!
//! ```text
//! cargo run --release -p felhom-agent --example audit_flood              # 16 clients, 15 s
//! cargo run --release -p felhom-agent --example audit_flood -- 4 3       # 4 clients, 3 s
//! ```
//!
//! The real server (`localapi::start`, default `Limits`) on its own 2-thread runtime, with the
//! agent's real audit sink (`JournalAudit`: its writer thread, a SQLite journal file on disk,
//! `synchronous=FULL`) and the in-memory fakes for tokens and guests (an unauthenticated call
//! never reaches them). Each client is a keep-alive connection sending `GET /backup/status`
//! without a token, one request after the other, as fast as answers come. At the end the
//! server is shut down (the last summaries are flushed), the sink dropped (its writer drains),
//! and the journal read: rows written, summaries, reads shed, bytes.
//!
//! The anchor is 0.5's figure for 16 clients and 15 s: 77,479 requests, 10,161 audit rows
//! (~6.8 MB) and 64,953 records dropped ("audit queue full; entry lost").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use felhom_agent::localapi_audit::JournalAudit;
use localapi::fakes::{FakeGuests, MemoryTokenStore};
use localapi::{Identity, Limits, Ports, SystemClock};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let state = tempfile::tempdir()?;
    let journal_dir = state.path().join("journal");
    std::fs::create_dir(&journal_dir)?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse()?];
    let identity = Identity::load_or_create(state.path(), &listen)?;
    let fingerprint = identity.fingerprint();
    let clock = Arc::new(SystemClock);
    let guests = FakeGuests::new(clock.clone());
    let audit = Arc::new(JournalAudit::start(journal::Journal::open(&journal_dir)?)?);
    let ports = Ports {
        tokens: Arc::new(MemoryTokenStore::default()),
        ops: Arc::new(guests.clone()),
        view: Arc::new(guests),
        audit: audit.clone(),
        clock,
    };
    let tls = identity.server_config()?;
    let running = server_rt
        .block_on(async { localapi::start(&listen, tls, ports, Limits::default()).await })?;
    let addr = running.local_addrs()[0];

    let sent = Arc::new(AtomicU64::new(0));
    let by_status = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let until = Instant::now() + Duration::from_secs(seconds);
    client_rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(pve::pinned_client_config(fingerprint)?)
                .https_only(true)
                .no_proxy()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()?;
            let (sent, by_status) = (sent.clone(), by_status.clone());
            let url = format!("https://127.0.0.1:{}/backup/status", addr.port());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let status = match client.get(&url).send().await {
                        Ok(resp) => resp.status().as_u16(),
                        Err(_) => 0,
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    *by_status
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(status)
                        .or_insert(0u64) += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(())
    })?;
    server_rt.block_on(running.shutdown(Duration::from_secs(2)))?;
    drop(audit);
    server_rt.shutdown_timeout(Duration::from_secs(2));

    // The writer drains after the last sender is gone; wait for the row count to settle.
    let mut rows = 0;
    let mut settled = 0;
    while settled < 5 {
        std::thread::sleep(Duration::from_millis(200));
        let now = journal::Journal::open_read_only(&journal_dir)?
            .audit_tail(u32::MAX)?
            .len();
        settled = if now == rows { settled + 1 } else { 0 };
        rows = now;
    }
    let j = journal::Journal::open_read_only(&journal_dir)?;
    let entries = j.audit_tail(u32::MAX)?;
    let count = |outcome: &str| {
        entries
            .iter()
            .filter(|e| e.entry.outcome == outcome)
            .count()
    };
    let shed: u64 = entries
        .iter()
        .filter(|e| e.entry.outcome == "audit_shed")
        .filter_map(|e| {
            let d: serde_json::Value = serde_json::from_str(e.entry.detail.as_deref()?).ok()?;
            d["shed"].as_u64()
        })
        .sum();
    let bytes: u64 = std::fs::read_dir(&journal_dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let requests = sent.load(Ordering::Relaxed);
    println!("clients {clients}, {seconds} s, no token");
    println!(
        "requests {requests} ({:.0}/s), by status {:?}",
        requests as f64 / seconds as f64,
        by_status.lock().unwrap_or_else(|e| e.into_inner())
    );
    println!(
        "audit rows {rows} (unauthorized {}, rate_limited {}, summarised {}), shed {shed}, journal {:.1} KiB",
        count("unauthorized"),
        count("rate_limited"),
        count("summarised"),
        bytes as f64 / 1024.0
    );
    println!(
        "chain verifies: {}",
        j.audit_verify()?.first_broken.is_none()
    );
    Ok(())
}
