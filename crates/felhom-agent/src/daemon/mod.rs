//! The daemon's wiring: the journal, the Proxmox client and the reconcile engine, fed by the
//! hub (when `hub` is configured) and by the local source (`desired.file` and the signed ops in
//! `desired.ops_dir`), the per-guest local API (when `local_api.listen` is set), and systemd
//! readiness, status and a progress-gated watchdog.
//!
//! The engine takes desired-state documents on a `watch::Sender<Option<DesiredInput>>` and
//! verified ops on an `mpsc::Sender<SignedJob>`, and publishes [`reconcile::EngineStatus`]
//! (pending signatures, per-guest errors, unmanaged guests, signed-job outcomes) on a
//! `watch::Receiver` — see [`Wiring`]. A hub outage never stops reconciliation: the engine
//! keeps the last accepted desired state (it is in the journal) and reconciles on its timer.

pub mod hub_link;
pub mod ops_dir;
pub mod signed;
pub mod smart;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reconcile::{DesiredInput, Engine, EngineConfig, EngineStatus, SignedJob};

use crate::journal_port::JournalStore;
use crate::pve_port::PveProxmox;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::config::Config;
use crate::systemd::{Liveness, Notifier, Watchdog};

/// How often the local desired file and the ops directory are looked at.
const LOCAL_POLL: Duration = Duration::from_secs(1);
/// How long the engine may go without finishing a cycle before the watchdog treats it as
/// wedged. A cycle waits for the Proxmox tasks it started (a backup can take hours), so this is
/// generous; the hub loop, which never waits on Proxmox tasks, is watched much more tightly.
const RECONCILE_STALL: Duration = Duration::from_secs(6 * 3600);
/// How long in-flight local API requests get to finish at shutdown.
const LOCAL_API_GRACE: Duration = Duration::from_secs(5);
/// How often the liveness monitor samples the loops.
const MONITOR_EVERY: Duration = Duration::from_secs(1);

/// The channels around a running engine: what a source (local files, the hub) feeds in and
/// what a reporter reads out.
pub struct Wiring {
    /// Send desired-state documents here.
    pub desired: watch::Sender<Option<DesiredInput>>,
    /// Send verified signed ops here.
    pub jobs: mpsc::Sender<SignedJob>,
    /// The engine's status for reports.
    pub status: watch::Receiver<EngineStatus>,
}

/// Opens the journal (a corrupt or foreign database stops the agent here with the journal's
/// message), builds the engine and runs it with its sources until `shutdown` is true.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let journal = journal::Journal::open(&config.state_dir).context("cannot open the journal")?;
    // The one owner of the connection: the engine's store and the local API get handles.
    let journal = crate::journal_handle::JournalHandle::new(journal);
    let client = crate::proxmox::client(&config.proxmox)?;
    let px = Arc::new(PveProxmox::new(
        client.clone(),
        crate::proxmox::token_user(&config.proxmox),
    ));
    let engine_config = EngineConfig {
        parallel: config.reconcile.parallel,
        queue_depth: config.reconcile.queue_depth,
        ..EngineConfig::default()
    };
    let store = Arc::new(JournalStore::new(journal.clone()));
    let (engine, status) =
        Engine::new(px, store, engine_config).context("cannot start the reconcile engine")?;
    // The per-guest local API: its mutations are ops the engine's executor runs, through the
    // same guest queues as reconcile ops and signed jobs.
    let local_api = crate::localapi_wiring::start(config, journal, engine.handle(), client.clone())
        .await
        .context("cannot start the local API")?;
    let (desired_tx, desired_rx) = watch::channel(None);
    let (jobs_tx, jobs_rx) = mpsc::channel(16);
    let wiring = Wiring {
        desired: desired_tx,
        jobs: jobs_tx,
        status,
    };
    let liveness = Liveness::default();
    let mut tasks = tokio::task::JoinSet::new();
    let verifier = signed::Verifier::for_config(config);

    if let Some(desired) = &config.desired {
        tasks.spawn(reconcile::source::watch_file(
            desired.file.clone(),
            LOCAL_POLL,
            wiring.desired.clone(),
            shutdown.clone(),
        ));
        if let Some(dir) = &desired.ops_dir {
            let intake = ops_dir::OpsDir {
                dir: dir.clone(),
                verifier: verifier.clone(),
            };
            tasks.spawn(intake.run(LOCAL_POLL, wiring.jobs.clone(), shutdown.clone()));
        }
    }

    let mut hub_health = None;
    if let Some(hub_cfg) = &config.hub {
        let poll_interval = Duration::from_secs(hub_cfg.poll_interval_s);
        let request_timeout = Duration::from_secs(hub_cfg.request_timeout_s);
        let hub_client = hub_link::hub_client(config, hub_cfg)?;
        let (smart_tx, smart_rx) = watch::channel(collect::SmartSnapshot::default());
        if !config.smart.devices.is_empty() {
            let cache = collect::SmartCache::new(
                smart::PrivilegedSmart::new(privileged::Privileged::system()),
                config.smart.devices.clone(),
                config.smart.interval(),
            );
            let mut stop = shutdown.clone();
            tasks.spawn(smart::run(cache, smart_tx, async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let source = hub_link::AgentReport::new(
            config.host_id.clone(),
            client.clone(),
            config.state_dir.clone(),
            wiring.status.clone(),
            outcomes.clone(),
            hub_link::cloudflared_probe(config)?,
            smart_rx,
        );
        let mut poll_opts = hub::PollOptions::new(config.host_id.clone(), poll_interval);
        poll_opts.agent_version = env!("CARGO_PKG_VERSION").to_owned();
        let (poll_loop, handle) = hub::PollLoop::new(hub_client, source, poll_opts);
        tasks.spawn(hub_link::consume(
            handle.subscribe(),
            wiring.desired.clone(),
            wiring.jobs.clone(),
            verifier.clone(),
            outcomes,
        ));
        let mut stop = shutdown.clone();
        tasks.spawn(poll_loop.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        // A poll cycle is one fetch plus one collect-and-report; it never waits on Proxmox
        // tasks, so it is wedged once busy for longer than both requests and the collection.
        let stall = poll_interval.max(Duration::from_secs(5)) + request_timeout * 3;
        hub_health = Some((handle, stall));
    }

    // Liveness: the monitor beats a loop's heartbeat only while that loop makes progress; the
    // watchdog (systemd's WatchdogSec) is fed only while every heartbeat moves.
    let now = Instant::now();
    let reconcile_beat = liveness.register("reconcile", RECONCILE_STALL, now);
    // The monitor below already applies the hub loop's allowance (`stall`) before it stops
    // beating, so the heartbeat itself only needs to cover a few monitor periods.
    let hub_beat = hub_health
        .as_ref()
        .map(|_| liveness.register("hub", MONITOR_EVERY * 3, now));
    {
        let mut status = wiring.status.clone();
        let notifier = notifier.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let mut last_cycle = None;
            loop {
                let snapshot = status.borrow_and_update().clone();
                if last_cycle != Some(snapshot.cycle) {
                    last_cycle = Some(snapshot.cycle);
                    reconcile_beat.beat();
                    let line = status_line(&snapshot);
                    if let Err(e) = notifier.status(&line) {
                        warn!(error = %e, "cannot send the status to systemd");
                    }
                }
                if let (Some((handle, stall)), Some(beat)) = (&hub_health, &hub_beat) {
                    let busy = handle.health().snapshot().busy_for;
                    if busy.is_none_or(|b| b < *stall) {
                        beat.beat();
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(MONITOR_EVERY) => {}
                    _ = status.changed() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
    if let Some(interval) = crate::systemd::watchdog_interval() {
        let dog = Watchdog::new(notifier.clone(), liveness.clone(), interval);
        let mut stop = shutdown.clone();
        tasks.spawn(dog.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    if let Err(e) = notifier.ready("engine started") {
        warn!(error = %e, "cannot notify systemd of readiness");
    }

    let mut stop = shutdown.clone();
    tokio::select! {
        () = engine.run(desired_rx, jobs_rx, shutdown) => {}
        // Dropping the engine mid-op is safe: the journal holds the intent and UPID, and
        // recovery settles it on the next start, exactly as after a crash.
        _ = stop.wait_for(|s| *s) => {}
    }
    let _ = notifier.stopping();
    if let Some(running) = local_api {
        if let Err(e) = running.shutdown(LOCAL_API_GRACE).await {
            warn!(error = %e, "local API did not stop cleanly");
        }
    }
    drop(wiring);
    tasks.shutdown().await;
    Ok(())
}

/// The one-line status `systemctl status` shows.
fn status_line(s: &EngineStatus) -> String {
    let generation = s
        .generation
        .map_or_else(|| "none".to_owned(), |g| g.to_string());
    format!(
        "cycle {}, desired generation {generation}, {} pending signature, {} guest error(s)",
        s.cycle,
        s.pending_signature.len(),
        s.errors.len()
    )
}
