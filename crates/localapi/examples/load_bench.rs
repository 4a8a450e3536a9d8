//! Latency of `GET /backup/status` at a fixed request rate over TLS on loopback
//! (DESIGN.md §6: p99 under 10 ms at 500 requests/s). See bench/README.md.
//!
//! ```text
//! cargo run --release -p localapi --example load_bench               # 500/s for 20 s
//! cargo run --release -p localapi --example load_bench -- --json     # + one JSON line
//! cargo run -p localapi --example load_bench -- --quick              # smoke, ~4 s
//! ```
//!
//! The real server (`localapi::start`, default [`Limits`]) runs on its own 2-thread runtime
//! with the in-memory fakes behind it; the client runs on another. The client is open-loop:
//! sends are scheduled on a fixed grid (every 1/rate s) and each is spawned at its slot, so a
//! slow answer never delays the next send, and latency is measured from the *scheduled* send
//! time, not from when the send actually happened (no coordinated omission). Requests rotate
//! over `--guests` tokens (one per guest), each far below the per-token rate limit, as many
//! controllers would call; reqwest keeps a pool of keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use localapi::fakes::{FakeGuest, FakeGuests, MemoryTokenStore};
use localapi::{Identity, Limits, Ports, SystemClock};
use pve::Vmid;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    rate: u32,
    duration: Duration,
    warmup: Duration,
    guests: u32,
    json: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            rate: 500,
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(2),
            guests: 50,
            json: false,
        }
    }
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--rate" => a.rate = value("--rate")? as u32,
            "--seconds" => a.duration = Duration::from_secs(value("--seconds")?),
            "--warmup" => a.warmup = Duration::from_secs(value("--warmup")?),
            "--guests" => a.guests = value("--guests")? as u32,
            "--json" => a.json = true,
            "--quick" => {
                a.rate = 200;
                a.duration = Duration::from_secs(3);
                a.warmup = Duration::from_secs(1);
                a.guests = 20;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.rate == 0 || a.guests == 0 || a.duration.is_zero() {
        return Err("--rate, --guests and --seconds must be positive".into());
    }
    Ok(a)
}

/// The value at quantile `q` (0..=1) of sorted samples, nearest-rank.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Sample {
    scheduled: Instant,
    /// From the scheduled send time (what a caller on the grid experiences).
    latency: Duration,
    /// From the actual send (without the client's own timer and scheduling lag).
    service: Duration,
    ok: bool,
}

fn main() -> Result<(), String> {
    let args = parse_args(&std::env::args().skip(1).collect::<Vec<_>>())?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;

    // Server on its own runtime, as in the daemon (which has 2 worker threads on a 2-core host).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().map_err(|e| format!("{e}"))?];
    let identity = Identity::load_or_create(state.path(), &listen).map_err(|e| e.to_string())?;
    let clock = Arc::new(SystemClock);
    let guests = FakeGuests::new(clock.clone());
    let tokens = Arc::new(MemoryTokenStore::default());
    let mut bearer = Vec::new();
    for i in 0..args.guests {
        let vmid = Vmid::new(100 + i).map_err(|e| e.to_string())?;
        guests.add(vmid, FakeGuest::default());
        let t = localapi::mint(tokens.as_ref(), clock.as_ref(), vmid).map_err(|e| e.to_string())?;
        bearer.push(format!("Bearer {}", t.expose()));
    }
    let ports = Ports {
        tokens,
        ops: Arc::new(guests.clone()),
        view: Arc::new(guests),
        audit: Arc::new(NullAudit),
        clock,
    };
    let tls = identity.server_config().map_err(|e| e.to_string())?;
    let running = server_rt
        .block_on(localapi::start(&listen, tls, ports, Limits::default()))
        .map_err(|e| e.to_string())?;
    let url = format!(
        "https://127.0.0.1:{}/backup/status",
        running.local_addrs()[0].port()
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let fingerprint = identity.fingerprint();
    let run_args = args.clone();
    let samples = client_rt.block_on(async move {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(
                pve::pinned_client_config(fingerprint).map_err(|e| e.to_string())?,
            )
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        run(&client, &url, &bearer, &run_args).await
    })?;
    server_rt
        .block_on(running.shutdown(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;

    report(&args, samples);
    Ok(())
}

async fn run(
    client: &reqwest::Client,
    url: &str,
    bearer: &[String],
    args: &Args,
) -> Result<Vec<Sample>, String> {
    let total = args.warmup + args.duration;
    let n = (total.as_secs_f64() * f64::from(args.rate)).round() as u64;
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let start = Instant::now() + Duration::from_millis(50);
    for i in 0..n {
        let scheduled = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let client = client.clone();
        let url = url.to_owned();
        let auth = bearer[(i as usize) % bearer.len()].clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match client.get(url).header("authorization", auth).send().await {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = tx.send(Sample {
                scheduled,
                latency: scheduled.elapsed(),
                service: sent.elapsed(),
                ok,
            });
        });
    }
    drop(tx);
    let mut samples = Vec::with_capacity(n as usize);
    while let Some(s) = rx.recv().await {
        samples.push(s);
    }
    // Drop the warm-up (connection setup, first TLS handshakes).
    let cutoff = start + args.warmup;
    samples.retain(|s| s.scheduled >= cutoff);
    Ok(samples)
}

fn report(args: &Args, samples: Vec<Sample>) {
    let errors = samples.iter().filter(|s| !s.ok).count();
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort();
    let first = samples.iter().map(|s| s.scheduled).min();
    let last_done = samples.iter().map(|s| s.scheduled + s.latency).max();
    let achieved = match (first, last_done) {
        (Some(a), Some(b)) if b > a => samples.len() as f64 / (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let (p50, p90, p99, p999, max) = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or_default(),
    );
    eprintln!(
        "GET /backup/status over TLS on loopback: target {} req/s for {:?} (+{:?} warm-up), {} tokens",
        args.rate, args.duration, args.warmup, args.guests
    );
    eprintln!("requests   {}", samples.len());
    eprintln!("errors     {errors}");
    eprintln!("achieved   {achieved:.1} req/s");
    eprintln!("p50        {:.3} ms", ms(p50));
    eprintln!("p90        {:.3} ms", ms(p90));
    eprintln!("p99        {:.3} ms   (target < 10 ms)", ms(p99));
    eprintln!("p99.9      {:.3} ms", ms(p999));
    eprintln!("max        {:.3} ms", ms(max));
    let mut service: Vec<Duration> = samples.iter().map(|s| s.service).collect();
    service.sort();
    let (s50, s99) = (percentile(&service, 0.50), percentile(&service, 0.99));
    eprintln!(
        "from actual send (no client timer lag): p50 {:.3} ms, p99 {:.3} ms",
        ms(s50),
        ms(s99)
    );
    if args.json {
        println!(
            "{{\"rate\":{},\"seconds\":{},\"requests\":{},\"errors\":{errors},\"achieved_rps\":{achieved:.1},\
             \"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\
             \"service_p50_ms\":{:.3},\"service_p99_ms\":{:.3}}}",
            args.rate,
            args.duration.as_secs(),
            samples.len(),
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999),
            ms(max),
            ms(s50),
            ms(s99)
        );
    }
}

/// Audit writes would be the journal's cost, not the server's; the benchmark drops them.
struct NullAudit;

impl localapi::Audit for NullAudit {
    fn record(&self, _event: localapi::AuditEvent) {}

    fn summary(&self, _summary: localapi::CallSummary) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&v, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn flags() {
        let a = parse_args(&["--rate".into(), "300".into(), "--json".into()]).unwrap();
        assert_eq!(
            (a.rate, a.json, a.duration),
            (300, true, Duration::from_secs(20))
        );
        let q = parse_args(&["--quick".into()]).unwrap();
        assert_eq!(q.rate, 200);
        assert!(parse_args(&["--rate".into()]).is_err());
        assert!(parse_args(&["--rate".into(), "0".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
