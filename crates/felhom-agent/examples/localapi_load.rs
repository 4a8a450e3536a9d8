//! Local API latency in real mode (issue 10): the real daemon (`felhom-agent run`: the server,
//! the journal on disk with `synchronous=FULL`, the audit writer, the engine handle and its
//! executor) against the simulator, at a fixed rate over TLS with about 10 % mutations.
//!
//! ```text
//! cargo run --release -p felhom-agent --example localapi_load            # 500/s for 20 s
//! cargo run --release -p felhom-agent --example localapi_load -- 200 5   # 200/s for 5 s
//! ```
//!
//! Every 10th request is a `POST /snapshot` (a real executor op: journal intent, the
//! simulator's snapshot task, the outcome), the rest `GET /backup/status` (which reads the
//! journal). The client is open-loop like `localapi/examples/load_bench.rs`: sends are on a
//! fixed grid and latency is measured from the scheduled send. Requests rotate over one token
//! per guest so each stays under the per-token limit (20/s). Mutations are spread so no guest
//! passes the 10-snapshot cap within the run (the local API has no delete route, and deleting
//! behind its back would lock the guest mid-run): the guest count is chosen for that.
//!
//! At the end the agent is stopped with SIGTERM and the journal read: every call must have its
//! own audit entry (none shed, none lost), and the chain must verify.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use testkit::{Sim, SimOptions};

/// Snapshots one guest may hold through the local API (`localapi` `snapshot_limit`).
const SNAPSHOT_CAP: u64 = 10;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let total = rate * seconds;
    let mutations = total / 10;
    // Enough guests that reads stay far below 20/s per token and snapshots under the cap.
    let guests = (mutations.div_ceil(SNAPSHOT_CAP)).max(rate / 5).max(10) as u32;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let sim = Sim::start(SimOptions::default().guests(guests).task_ms(20))?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = write_config(dir.path(), &state, &sim, port)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let vmids: Vec<u32> = (0..guests).map(|i| 100 + i).collect();
    rt.block_on(adopt(&sim, &state, &vmids))?;
    let agent = testkit::workspace_binary("felhom-agent", "felhom-agent", "FELHOM_AGENT_BIN")?;
    let tokens: Vec<String> = vmids
        .iter()
        .map(|v| mint(&agent, &config, *v))
        .collect::<anyhow::Result<_>>()?;
    let fingerprint: pve::Fingerprint = cli(&agent, &config, &["localapi", "fingerprint"])?
        .trim()
        .parse()?;

    let mut child = Command::new(&agent)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let listening = Instant::now() + Duration::from_secs(30);
    while !log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains("local api listening")
    {
        if Instant::now() > listening {
            let _ = child.kill();
            bail!(
                "agent never listened:\n{}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(fingerprint)?)
        .https_only(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("https://127.0.0.1:{port}");
    // Warm-up: connections and the agent's caches.
    rt.block_on(async {
        for t in tokens.iter().take(20) {
            let _ = client
                .get(format!("{base}/backup/status"))
                .bearer_auth(t)
                .send()
                .await;
        }
    });
    let samples = rt.block_on(run(client, base, tokens, rate, total))?;

    let _ = testkit::signal(child.id(), testkit::Signal::Term);
    let _ = child.wait();
    report(&samples, rate, seconds, guests, &state)
}

struct Sample {
    mutation: bool,
    latency: Duration,
    status: u16,
}

async fn run(
    client: reqwest::Client,
    base: String,
    tokens: Vec<String>,
    rate: u64,
    total: u64,
) -> anyhow::Result<Vec<Sample>> {
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let guests = tokens.len() as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let slot = start + every * i as u32;
        tokio::time::sleep_until(slot).await;
        let mutation = i % 10 == 0;
        // Mutations walk the guests in order, so each gets at most its share of snapshots.
        let guest = if mutation {
            (i / 10) % guests
        } else {
            i % guests
        } as usize;
        let token = tokens[guest].clone();
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let req = if mutation {
                client
                    .post(format!("{base}/snapshot"))
                    .json(&json!({ "name": format!("load{i}") }))
            } else {
                client.get(format!("{base}/backup/status"))
            };
            let status = match req.bearer_auth(token).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            Sample {
                mutation,
                latency: slot.elapsed(),
                status,
            }
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await?);
    }
    Ok(samples)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(
    samples: &[Sample],
    rate: u64,
    seconds: u64,
    guests: u32,
    state: &Path,
) -> anyhow::Result<()> {
    println!(
        "real mode: {rate}/s for {seconds} s over {guests} guests, every 10th a POST /snapshot"
    );
    println!("| requests | n | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, mutation) in [("GET /backup/status", false), ("POST /snapshot", true)] {
        let mut lat: Vec<Duration> = samples
            .iter()
            .filter(|s| s.mutation == mutation)
            .map(|s| s.latency)
            .collect();
        lat.sort();
        let errors = samples
            .iter()
            .filter(|s| s.mutation == mutation && !(200..300).contains(&s.status))
            .count();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {} | {errors} | {:.2} | {:.2} | {:.2} |",
            lat.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default())
        );
    }
    let mut statuses = std::collections::BTreeMap::new();
    for s in samples {
        *statuses.entry(s.status).or_insert(0u64) += 1;
    }
    println!("statuses {statuses:?}");
    let j = journal::Journal::open_read_only(state)?;
    let entries = j.audit_tail(u32::MAX)?;
    let calls = entries
        .iter()
        .filter(|e| {
            e.entry.kind == "local_api"
                && e.entry
                    .action
                    .as_deref()
                    .is_some_and(|a| a == "GET /backup/status" || a == "POST /snapshot")
        })
        .count();
    let shed = entries
        .iter()
        .filter(|e| e.entry.outcome == "audit_shed")
        .count();
    // The warm-up calls are audited too.
    println!(
        "audit: {calls} call entries for {} calls (+ warm-up), {shed} shed entries, chain verifies: {}",
        samples.len(),
        j.audit_verify()?.first_broken.is_none()
    );
    Ok(())
}

fn write_config(dir: &Path, state: &Path, sim: &Sim, port: u16) -> anyhow::Result<PathBuf> {
    let key = dir.join("operator");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "bench", "-t", "ed25519", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let operators = dir.join("operators.json");
    std::fs::write(
        &operators,
        json!({"operators": [{"principal": "bench", "public_key": public.trim(), "roles": ["operator"]}]})
            .to_string(),
    )?;
    let config = json!({
        "host_id": "bench",
        "state_dir": state,
        "operators_file": operators,
        "proxmox": {"url": sim.info.url, "node": sim.info.node, "token": sim.info.token,
                    "fingerprint": sim.info.fingerprint},
        "local_api": {"listen": [format!("127.0.0.1:{port}")]},
        "log": {"level": "info", "format": "json"},
    });
    let path = dir.join("config.json");
    // 0600: the config holds the Proxmox token inline.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?
        .write_all(config.to_string().as_bytes())?;
    Ok(path)
}

/// Leaves each guest as an operator's signed `guest.adopt` would (identity line in the
/// description, adoption in the journal), as the integration tests seed them.
async fn adopt(sim: &Sim, state: &Path, vmids: &[u32]) -> anyhow::Result<()> {
    let pve = sim.client(true)?;
    std::fs::create_dir_all(state)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut j = journal::Journal::open(state)?;
    for &v in vmids {
        let vmid = pve::Vmid::new(v).context("vmid")?;
        let identity = reconcile::normalize::new_identity()?;
        let cfg = pve.lxc_config(vmid).await?;
        let text = cfg
            .description
            .map(|d| reconcile::normalize::split_identity(&d).0)
            .unwrap_or_default();
        pve.update_lxc_config(
            vmid,
            pve::ConfigUpdate::new().set(
                "description",
                reconcile::normalize::with_identity(&text, &identity),
            ),
        )
        .await?;
        let entry = journal::NewAuditEntry::new(now, "guest", "adopted").actor("bench-seed");
        j.adopt_guest(v, &format!("seed-adopt-{v}"), &identity, now, &entry)?;
    }
    Ok(())
}

fn cli(agent: &Path, config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(agent)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn mint(agent: &Path, config: &Path, vmid: u32) -> anyhow::Result<String> {
    let out = cli(
        agent,
        config,
        &["localapi", "token", "--vmid", &vmid.to_string()],
    )?;
    out.lines()
        .last()
        .map(|l| l.trim().to_owned())
        .filter(|t| t.starts_with("fla_"))
        .context("no token printed")
}
