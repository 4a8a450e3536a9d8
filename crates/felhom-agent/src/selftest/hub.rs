//! `selftest hub`: one collect + report round trip with the hub, through the daemon's own poll
//! loop and report source. It changes nothing: the desired state fetched is not applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::Report;
use crate::config::Config;
use crate::daemon::hub_link::AgentReport;

/// Fetches the directive and posts one report.
pub async fn hub(config: &Config, client: pve::Client) -> anyhow::Result<Report> {
    let hub_cfg = config
        .hub
        .as_ref()
        .context("selftest hub needs a `hub` section in the configuration")?;
    let mut options = hub::ClientOptions::new(
        hub_cfg.url.clone(),
        config.host_id.clone(),
        pve::Secret::new(hub_cfg.api_key.value.expose().clone()),
    );
    options.request_timeout = Duration::from_secs(hub_cfg.request_timeout_s);
    let hub_client = hub::HubClient::new(options).context("cannot set up the hub client")?;
    // No engine runs here: the report carries an empty engine status.
    let (_status_tx, status) = watch::channel(reconcile::EngineStatus::default());
    let source = AgentReport::new(
        config.host_id.clone(),
        client,
        config.state_dir.clone(),
        status,
        Arc::new(Mutex::new(Vec::new())),
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
    Ok(report)
}
