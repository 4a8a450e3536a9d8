//! The poll loop: fetch the directive → publish it on a `watch` channel → collect a report →
//! post it → sleep; on failure, back off (jittered, exponential, capped at the poll interval).
//!
//! Rules it keeps (seed §5, DESIGN §4.2a, peer-systems-notes §1 and §5):
//! - Box-initiated only; the first poll waits a random 0–jitter delay, then every poll
//!   interval plus up to `jitter`; never a busy loop ([`crate::backoff::MIN_DELAY`]).
//! - A garbled or failed fetch publishes nothing, so the engine keeps reconciling the last
//!   accepted desired state through any hub outage. Whether a valid directive's desired state
//!   is taken (its generation against the one in force) is not decided here: the loop
//!   publishes what the hub sent and the engine applies the one rule
//!   (`reconcile::accept`), whose refusal the report source puts in `desired.rejected`. Ops
//!   and config of a directive apply whatever its desired state.
//! - Reporting is decoupled from deciding (Mender's lesson): a failed report changes nothing
//!   that was accepted; it only counts as a failure for the backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, Rng};
use crate::directive::{Directive, HubDirectedConfig};
use crate::encode::{encode_report, EncodedReport, MAX_REPORT_BYTES};
use crate::health::Health;
use crate::report::{Ack, HostReport, ReportAck};
use crate::{Error, PROTOCOL_VERSION};

/// The transport the loop needs; [`crate::HubClient`] is the real one.
pub trait HubApi: Send + Sync {
    /// Conditional fetch of the directive.
    fn fetch_directive(
        &self,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<Fetched, Error>> + Send;
    /// Posts one encoded report.
    fn post_report(
        &self,
        report: &EncodedReport,
    ) -> impl Future<Output = Result<ReportAck, Error>> + Send;
    /// Whether reports should be gzipped.
    fn gzip_reports(&self) -> bool;
}

/// What a fetch returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// 304: nothing changed since the ETag.
    NotModified,
    /// 200: a valid directive, and its ETag for the next conditional fetch.
    Changed {
        /// The directive.
        directive: Directive,
        /// The `ETag` header, if any.
        etag: Option<String>,
    },
}

/// What the binary provides: the report body.
pub trait ReportSource: Send + Sync {
    /// Assembles a report. The loop then sets `v`, `host_id`, `sent_at`, `agent` and
    /// `desired.received_generation` itself. Audit entries should start after
    /// `ctx.audit_acked`.
    fn collect(&self, ctx: &CollectContext) -> impl Future<Output = HostReport> + Send;
    /// The hub stored audit entries up to `ack.audit_seq` (e.g. to persist it).
    fn acknowledged(&self, ack: Ack) {
        let _ = ack;
    }
}

/// What the loop tells the report source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectContext {
    /// Highest audit sequence the hub has acknowledged (0 = none).
    pub audit_acked: u64,
    /// Generation of the last desired state the hub sent (taken or not).
    pub received_generation: Option<u64>,
}

/// The hub's last valid directive, as published on the watch channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Generation of `desired` (0 with none).
    pub generation: u64,
    /// The desired state the hub sent (opaque; the reconcile crate parses and judges it).
    pub desired: Option<Arc<serde_json::Value>>,
    /// Signed ops currently queued at the hub (wire form). Dedupe by op id.
    pub ops: Arc<Vec<serde_json::Value>>,
    /// The hub's polling configuration.
    pub config: HubDirectedConfig,
}

/// Loop settings.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// This host's id (goes into the report).
    pub host_id: String,
    /// Agent version (goes into `versions.agent` when the source leaves it empty).
    pub agent_version: String,
    /// Poll interval until the hub sets one (`hub.poll_interval_s`).
    pub poll_interval: Duration,
    /// Random extra delay per poll until the hub sets one.
    pub jitter: Duration,
    /// First backoff step.
    pub backoff_base: Duration,
    /// Report size bound, bytes of JSON.
    pub max_report_bytes: usize,
    /// Shortest gap between two cycles, even when poked.
    pub min_cycle_gap: Duration,
    /// Fixed random seed (tests); `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl PollOptions {
    /// Defaults: 5 s jitter, 2 s backoff base, 256 KiB reports, 1 s minimum gap.
    pub fn new(host_id: impl Into<String>, poll_interval: Duration) -> Self {
        PollOptions {
            host_id: host_id.into(),
            agent_version: String::new(),
            poll_interval,
            jitter: Duration::from_secs(5).min(poll_interval),
            backoff_base: Duration::from_secs(2),
            max_report_bytes: MAX_REPORT_BYTES,
            min_cycle_gap: Duration::from_secs(1),
            seed: None,
        }
    }
}

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleOutcome {
    /// The fetch failed with this.
    pub fetch_error: Option<Error>,
    /// The report failed with this (or was skipped because the hub was unreachable).
    pub report_error: Option<Error>,
    /// A new state was published on the watch channel.
    pub published: bool,
    /// The report was acknowledged with this.
    pub ack: Option<Ack>,
}

impl CycleOutcome {
    /// Both halves succeeded.
    pub fn is_ok(&self) -> bool {
        self.fetch_error.is_none() && self.report_error.is_none()
    }

    /// The first error, if any.
    pub fn first_error(&self) -> Option<&Error> {
        self.fetch_error.as_ref().or(self.report_error.as_ref())
    }
}

/// Handle to a running loop: subscribe to accepted states, read health, ask for an early poll.
#[derive(Debug, Clone)]
pub struct PollHandle {
    rx: watch::Receiver<Option<Arc<Received>>>,
    health: Health,
    poke: Arc<Notify>,
}

impl PollHandle {
    /// A receiver of accepted states (`None` until the first one).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Received>>> {
        self.rx.clone()
    }

    /// The loop's health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Poll (and report) soon, e.g. after a signed op finished: within `min_cycle_gap` of the
    /// last cycle's start, never sooner.
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

/// The loop. Build with [`PollLoop::new`], then `run` (or `run_once` for a selftest).
pub struct PollLoop<H, S> {
    hub: H,
    source: S,
    opts: PollOptions,
    tx: watch::Sender<Option<Arc<Received>>>,
    health: Health,
    poke: Arc<Notify>,
    rng: Rng,
    backoff: Backoff,
    etag: Option<String>,
    ack: Ack,
    interval: Duration,
    jitter: Duration,
}

impl<H: HubApi, S: ReportSource> PollLoop<H, S> {
    /// A loop over `hub` with reports from `source`.
    pub fn new(hub: H, source: S, opts: PollOptions) -> (Self, PollHandle) {
        let (tx, rx) = watch::channel(None);
        let health = Health::new(opts.poll_interval);
        let poke = Arc::new(Notify::new());
        let rng = opts.seed.map_or_else(Rng::from_entropy, Rng::seeded);
        let handle = PollHandle {
            rx,
            health: health.clone(),
            poke: poke.clone(),
        };
        let lp = PollLoop {
            hub,
            source,
            tx,
            health,
            poke,
            rng,
            backoff: Backoff::new(opts.backoff_base),
            etag: None,
            ack: Ack::default(),
            interval: opts.poll_interval,
            jitter: opts.jitter.min(opts.poll_interval),
            opts,
        };
        (lp, handle)
    }

    /// Runs until `shutdown` completes. Cancel-safe at every await: a cycle cut short by
    /// shutdown at most leaves a report the hub may or may not have stored (reports are
    /// idempotent snapshots; audit entries are deduplicated by sequence number at the hub).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let first = self.rng.below(self.jitter);
        info!(delay_ms = first.as_millis() as u64, "hub loop starting");
        tokio::select! {
            () = sleep(first) => {}
            () = &mut shutdown => return,
        }
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                o = self.run_once() => o,
                () = &mut shutdown => return,
            };
            let delay = if outcome.is_ok() {
                self.backoff.reset();
                self.interval + self.rng.below(self.jitter)
            } else {
                self.backoff.next_delay(self.interval, &mut self.rng)
            };
            debug!(
                delay_ms = delay.as_millis() as u64,
                ok = outcome.is_ok(),
                "hub loop sleeping"
            );
            tokio::select! {
                () = sleep(delay) => {}
                () = self.poke.notified() => {
                    // Rate-limit pokes: never two cycles closer than min_cycle_gap.
                    tokio::select! {
                        () = sleep_until(started + self.opts.min_cycle_gap) => {}
                        () = &mut shutdown => return,
                    }
                }
                () = &mut shutdown => return,
            }
        }
    }

    /// One cycle: fetch, publish, collect, report. Never panics; errors are in the outcome.
    pub async fn run_once(&mut self) -> CycleOutcome {
        self.health.begin_cycle();
        let mut outcome = CycleOutcome::default();
        match self.hub.fetch_directive(self.etag.as_deref()).await {
            Ok(Fetched::NotModified) => self.health.fetched(),
            Ok(Fetched::Changed { directive, etag }) => {
                self.health.fetched();
                outcome.published = self.accept(directive);
                self.etag = etag;
            }
            Err(err) => {
                warn!(error = %ErrorChain(&err), code = err.code(), "hub fetch failed; keeping the last accepted desired state");
                outcome.fetch_error = Some(err);
            }
        }
        // With the hub unreachable a report would only wait for the same timeout again.
        if !matches!(outcome.fetch_error, Some(Error::Transport { .. })) {
            let fetch_error = outcome
                .fetch_error
                .as_ref()
                .map(|e| format!("{}: {e}", e.code()));
            match self.report(fetch_error).await {
                Ok(ack) => outcome.ack = Some(ack),
                Err(err) => {
                    warn!(error = %ErrorChain(&err), code = err.code(), "hub report failed");
                    outcome.report_error = Some(err);
                }
            }
        }
        self.health
            .end_cycle(outcome.first_error().map(|e| format!("{}: {e}", e.code())));
        outcome
    }

    /// Takes a valid directive in; returns whether something was published.
    fn accept(&mut self, d: Directive) -> bool {
        self.ack = d.ack;
        let interval = d.config.poll_interval();
        if interval != self.interval {
            info!(
                poll_interval_s = interval.as_secs(),
                "hub set the poll interval"
            );
        }
        self.interval = interval;
        self.jitter = d.config.jitter();
        self.health.set_poll_interval(interval);

        let held = self.tx.borrow().clone();
        let generation = d.generation;
        let next = Received {
            generation,
            desired: d.desired.map(Arc::new),
            ops: Arc::new(d.ops),
            config: d.config,
        };
        if held.as_deref() == Some(&next) {
            return false;
        }
        info!(generation, ops = next.ops.len(), "accepted hub directive");
        self.tx.send_replace(Some(Arc::new(next)));
        true
    }

    async fn report(&mut self, fetch_error: Option<String>) -> Result<Ack, Error> {
        let received_generation = self.tx.borrow().as_ref().map(|r| r.generation);
        let ctx = CollectContext {
            audit_acked: self.ack.audit_seq,
            received_generation,
        };
        let mut report = self.source.collect(&ctx).await;
        report.v = PROTOCOL_VERSION;
        report.host_id.clone_from(&self.opts.host_id);
        report.sent_at = now_rfc3339();
        if report.versions.agent.is_empty() {
            report.versions.agent.clone_from(&self.opts.agent_version);
        }
        report.desired.received_generation = received_generation;
        let h = self.health.snapshot();
        report.agent.healthy = h.healthy;
        report.agent.last_fetch_age_s = h.last_fetch_age.map(|d| d.as_secs());
        report.agent.consecutive_failures = h.consecutive_failures;
        report.agent.last_error = fetch_error.or(h.last_error);
        report.agent.poll_interval_s = self.interval.as_secs();

        let encoded = encode_report(
            &mut report,
            self.opts.max_report_bytes,
            self.hub.gzip_reports(),
        )?;
        if encoded.omitted_audit > 0 {
            warn!(
                omitted = encoded.omitted_audit,
                "report over its size bound; oldest audit entries left out"
            );
        }
        let ReportAck { ack, .. } = self.hub.post_report(&encoded).await?;
        self.ack = ack;
        self.health.reported();
        self.source.acknowledged(ack);
        Ok(ack)
    }
}

/// Formats an error with its source chain (the workspace's one implementation, in `pve`).
pub use pve::ErrorChain;

/// Now as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
