//! Steady-state reconcile cycle benchmark (DESIGN.md §6): the simulator with 10, 100 and 1,000
//! guests, the engine converged first, then K steady-state cycles each. Reports API requests
//! per cycle (from the simulator's request log) and agent CPU per cycle (this thread's CPU time
//! via `getrusage(RUSAGE_THREAD)`; the engine runs on a current-thread runtime, so all of its
//! work is on this thread).
//!
//! `cargo run --release -p felhom-agent --example cycle_bench [-- K]` (the engine on the agent's
//! real ports: the Proxmox client and the journal).

use std::sync::Arc;

use felhom_agent::journal_handle::JournalHandle;
use felhom_agent::journal_port::JournalStore;
use felhom_agent::pve_port::PveProxmox;
use std::time::{Duration, Instant};

use reconcile::{DesiredInput, Engine, EngineConfig};
use serde_json::json;
use testkit::{Sim, SimOptions};

fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let cycles: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let _ = rustls_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for n in [10u32, 100, 1000] {
        let sim = Sim::start(SimOptions::default().guests(n).task_ms(50))?;
        let state = tempfile::tempdir()?;
        let journal = journal::Journal::open(state.path())?;
        let token_user = sim
            .info
            .token
            .split_once('=')
            .map(|(u, _)| u.to_owned())
            .unwrap_or_default();
        let px = Arc::new(PveProxmox::new(sim.client(false)?, token_user));
        let (mut engine, _status) = Engine::new(
            px,
            Arc::new(JournalStore::new(JournalHandle::new(journal))),
            EngineConfig::default(),
        )?;
        // The seeded guests: even index running, hostname ct<vmid>; desire exactly that.
        let guests: Vec<_> = (0..n)
            .map(|i| {
                json!({"vmid": 100 + i, "state": if i % 2 == 0 { "running" } else { "stopped" },
                            "config": {"hostname": format!("ct{}", 100 + i), "onboot": false}})
            })
            .collect();
        let doc = json!({"v": 1, "generation": 1, "guests": guests}).to_string();
        engine.ingest(&DesiredInput {
            bytes: doc.into_bytes().into(),
            source: "bench".into(),
        })?;
        let t = Instant::now();
        rt.block_on(async {
            // Converge: the first cycle reads every config, later ones apply what differs.
            for _ in 0..5 {
                engine.reconcile().await?;
            }
            anyhow::Ok(())
        })?;
        let converge = t.elapsed();
        let mut requests = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..cycles {
            rt.block_on(sim.control("DELETE", "/_sim/requests", None))?;
            let before = thread_cpu();
            rt.block_on(engine.reconcile())?;
            cpu.push(thread_cpu() - before);
            let log = rt.block_on(sim.control("GET", "/_sim/requests", None))?;
            requests.push(log.as_array().map_or(0, Vec::len));
        }
        let max_req = requests.iter().copied().max().unwrap_or(0);
        let mean_req = requests.iter().sum::<usize>() as f64 / cycles as f64;
        let mean_cpu = cpu.iter().sum::<Duration>().as_secs_f64() * 1000.0 / cycles as f64;
        let max_cpu = cpu.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
        rows.push(
            json!({"guests": n, "cycles": cycles, "requests_per_cycle_mean": mean_req,
            "requests_per_cycle_max": max_req, "cpu_ms_per_cycle_mean": mean_cpu,
            "cpu_ms_per_cycle_max": max_cpu, "converge_s": converge.as_secs_f64()}),
        );
    }
    println!("| guests | requests/cycle (mean, max) | agent CPU ms/cycle (mean, max) |");
    println!("|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2}, {} | {:.2}, {:.2} |",
            r["guests"],
            r["requests_per_cycle_mean"].as_f64().unwrap_or(0.0),
            r["requests_per_cycle_max"],
            r["cpu_ms_per_cycle_mean"].as_f64().unwrap_or(0.0),
            r["cpu_ms_per_cycle_max"].as_f64().unwrap_or(0.0)
        );
    }
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}

/// The pve client names ring explicitly; install it as the process default too.
fn rustls_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}
