//! `selftest hub`: one collect + report round trip with the hub, through the daemon's own poll
//! loop and report source. It changes nothing: the desired state fetched is not applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::Report;
use crate::config::Config;
use crate::daemon::hub_link::{self, AgentReport};
use crate::daemon::smart::PrivilegedSmart;
use collect::SmartSnapshot;

/// Fetches the directive and posts one report.
pub async fn hub(config: &Config, client: pve::Client) -> anyhow::Result<Report> {
    let hub_cfg = config
        .hub
        .as_ref()
        .context("selftest hub needs a `hub` section in the configuration")?;
    let hub_client = hub_link::hub_client(config, hub_cfg)?;
    // No engine runs here: the report carries an empty engine status.
    let (_status_tx, status) = watch::channel(reconcile::EngineStatus::default());
    // SMART is read once, through the privileged fence, so the round trip shows what the
    // daemon would report.
    let mut smart_cache = collect::SmartCache::new(
        PrivilegedSmart::new(privileged::Privileged::system()),
        config.smart.devices.clone(),
        config.smart.interval(),
    );
    smart_cache.refresh_due().await;
    let smart_snapshot = smart_cache.snapshot();
    let (_smart_tx, smart) = watch::channel(smart_snapshot.clone());
    let probe = hub_link::cloudflared_probe(config)?;
    let source = AgentReport::new(
        config.host_id.clone(),
        client,
        config.state_dir.clone(),
        status,
        Arc::new(Mutex::new(Vec::new())),
        probe.clone(),
        smart,
    );
    let mut opts = hub::PollOptions::new(
        config.host_id.clone(),
        Duration::from_secs(hub_cfg.poll_interval_s),
    );
    opts.agent_version = env!("CARGO_PKG_VERSION").to_owned();
    let (mut poll, handle) = hub::PollLoop::new(hub_client, source, opts);
    let outcome = poll.run_once().await;
    let mut report = Report::default();
    match &outcome.fetch_error {
        None => {
            let received = handle.subscribe().borrow().clone();
            let detail = match received {
                Some(r) => format!(
                    "directive fetched: desired generation {}, {} signed op(s) queued",
                    r.generation,
                    r.ops.len()
                ),
                None => "directive fetched: no desired state yet".to_owned(),
            };
            report.ok("fetch", detail);
        }
        Some(e) => report.fail("fetch", hub::ErrorChain(e).to_string()),
    }
    match (&outcome.report_error, outcome.ack) {
        (None, Some(ack)) => report.ok(
            "report",
            format!(
                "report accepted; hub holds audit up to entry {}",
                ack.audit_seq
            ),
        ),
        (None, None) => report.ok("report", "report accepted"),
        (Some(e), _) => report.fail("report", hub::ErrorChain(e).to_string()),
    }
    smart_lines(&mut report, &smart_snapshot);
    match probe {
        None => report.skip("cloudflared", "no cloudflared.metrics_addr configured"),
        Some(probe) => {
            let health = probe.probe().await;
            let connections = health
                .ready_connections
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            if health.ready {
                report.ok(
                    "cloudflared",
                    format!("{} ready, {connections} connection(s)", health.address),
                );
            } else {
                report.fail(
                    "cloudflared",
                    format!(
                        "{} not ready: {}",
                        health.address,
                        health.error.unwrap_or_default()
                    ),
                );
            }
        }
    }
    Ok(report)
}

/// One line per configured disk: its values, or why it could not be read.
fn smart_lines(report: &mut Report, snapshot: &SmartSnapshot) {
    let disks = snapshot.reports();
    if disks.is_empty() {
        report.skip("smart", "no smart.devices configured");
        return;
    }
    for disk in disks {
        match &disk.error {
            Some(e) => report.fail("smart", format!("{}: {e}", disk.device)),
            None => report.ok(
                "smart",
                format!(
                    "{}: health {}, {} °C, {} power-on hours",
                    disk.device,
                    disk.passed
                        .map_or("unknown", |p| if p { "passed" } else { "FAILING" }),
                    disk.temperature_c
                        .map_or_else(|| "?".to_owned(), |t| t.to_string()),
                    disk.power_on_hours
                        .map_or_else(|| "?".to_owned(), |h| h.to_string()),
                ),
            ),
        }
    }
}
