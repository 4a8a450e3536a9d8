use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub::{
    Ack, CollectContext, Directive, EncodedReport, Error, Fetched, HostReport, HubApi,
    HubDirectedConfig, PollLoop, PollOptions, ReportAck, ReportSource,
};
use serde_json::json;
use tokio::time::Instant;

/// A scripted hub: up or down, a directive to serve, a log of what the loop did.
#[derive(Clone, Default)]
struct FakeHub(Arc<Mutex<Fake>>);

#[derive(Default)]
struct Fake {
    down: bool,
    garbage: bool,
    directive: Option<(Directive, String)>,
    fetches: Vec<Instant>,
    reports: Vec<HostReport>,
}

impl FakeHub {
    fn set(&self, f: impl FnOnce(&mut Fake)) {
        f(&mut self.0.lock().unwrap());
    }
    fn fetches(&self) -> Vec<Instant> {
        self.0.lock().unwrap().fetches.clone()
    }
}

fn directive(generation: u64, hostname: &str, poll_s: u64, jitter_s: u64) -> Directive {
    Directive {
        v: 1,
        generation,
        desired: Some(
            json!({"v": 1, "generation": generation, "guests": [{"vmid": 101, "config": {"hostname": hostname}}]}),
        ),
        ops: vec![],
        config: HubDirectedConfig {
            poll_interval_s: poll_s,
            jitter_s,
            update_window: None,
        },
        ack: Ack { audit_seq: 0 },
    }
}

impl HubApi for FakeHub {
    async fn fetch_directive(&self, etag: Option<&str>) -> Result<Fetched, Error> {
        let mut f = self.0.lock().unwrap();
        f.fetches.push(Instant::now());
        if f.down {
            return Err(Error::Status {
                url: "fake".into(),
                status: 503,
                message: String::new(),
            });
        }
        if f.garbage {
            return Err(Error::Garbage {
                what: "directive",
                url: "fake".into(),
                reason: "eof".into(),
            });
        }
        match &f.directive {
            Some((_, tag)) if Some(tag.as_str()) == etag => Ok(Fetched::NotModified),
            Some((d, tag)) => Ok(Fetched::Changed {
                directive: d.clone(),
                etag: Some(tag.clone()),
            }),
            None => Ok(Fetched::Changed {
                directive: Directive {
                    v: 1,
                    generation: 0,
                    desired: None,
                    ops: vec![],
                    config: HubDirectedConfig {
                        poll_interval_s: 10,
                        jitter_s: 2,
                        update_window: None,
                    },
                    ack: Ack::default(),
                },
                etag: None,
            }),
        }
    }

    async fn post_report(&self, report: &EncodedReport) -> Result<ReportAck, Error> {
        let mut f = self.0.lock().unwrap();
        if f.down {
            return Err(Error::Status {
                url: "fake".into(),
                status: 503,
                message: String::new(),
            });
        }
        let r: HostReport = serde_json::from_slice(&report.body).unwrap();
        f.reports.push(r);
        Ok(ReportAck {
            v: 1,
            ack: Ack { audit_seq: 0 },
        })
    }

    fn gzip_reports(&self) -> bool {
        false
    }
}

struct Source;

impl ReportSource for Source {
    async fn collect(&self, _ctx: &CollectContext) -> HostReport {
        HostReport::empty("ignored", "9.9.9")
    }
}

fn opts() -> PollOptions {
    let mut o = PollOptions::new("h1", Duration::from_secs(10));
    o.jitter = Duration::from_secs(2);
    o.backoff_base = Duration::from_secs(1);
    o.seed = Some(42);
    o
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_is_capped_at_the_interval_and_resets_after_recovery() {
    let fake = FakeHub::default();
    fake.set(|f| {
        f.down = true;
        f.directive = Some((directive(1, "a", 10, 2), "\"e1\"".into()));
    });
    let (lp, handle) = PollLoop::new(fake.clone(), Source, opts());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(lp.run(async {
        let _ = stop_rx.await;
    }));

    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(300)).await;
    let down = fake.fetches();
    assert!(
        down[0] - start <= Duration::from_secs(2),
        "first poll within the jitter"
    );
    let g = gaps(&down);
    // Exponential from 1 s (equal jitter: [d/2, d]), then capped at the 10 s interval.
    for (i, gap) in g.iter().enumerate() {
        let full = Duration::from_secs(1u64 << i.min(10)).min(Duration::from_secs(10));
        assert!(
            *gap >= full / 2 && *gap <= full,
            "gap {i} = {gap:?}, full {full:?}"
        );
    }
    assert!(g.len() > 25, "keeps trying: {} attempts", g.len());
    assert!(
        !handle.health().is_healthy(),
        "no fetch for 300 s with a 10 s interval"
    );
    assert!(handle.subscribe().borrow().is_none());

    fake.set(|f| f.down = false);
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(handle.health().is_healthy());
    let all = fake.fetches();
    let after: Vec<_> = all
        .iter()
        .copied()
        .filter(|t| *t > start + Duration::from_secs(300))
        .collect();
    for gap in gaps(&after) {
        assert!(
            gap >= Duration::from_secs(10) && gap <= Duration::from_secs(12),
            "steady gap {gap:?}"
        );
    }
    assert_eq!(handle.subscribe().borrow().as_ref().unwrap().generation, 1);
    let reports = fake.0.lock().unwrap().reports.clone();
    let last = reports.last().unwrap();
    assert_eq!(last.host_id, "h1");
    assert_eq!(last.desired.received_generation, Some(1));
    assert!(last.agent.healthy);
    assert_eq!(last.versions.agent, "9.9.9");
    let _ = stop_tx.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn health_flips_after_twice_the_interval_without_a_fetch() {
    let fake = FakeHub::default();
    fake.set(|f| f.directive = Some((directive(1, "a", 10, 0), "\"e\"".into())));
    let mut o = opts();
    o.jitter = Duration::ZERO;
    let (lp, handle) = PollLoop::new(fake.clone(), Source, o);
    let task = tokio::spawn(lp.run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(handle.health().is_healthy());
    fake.set(|f| f.down = true);
    let down_at = Instant::now();
    while handle.health().is_healthy() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unhealthy_after = Instant::now() - down_at;
    // Last fetch was at ~0 s; unhealthy once 20 s have passed since it.
    assert!(
        unhealthy_after >= Duration::from_secs(18) && unhealthy_after <= Duration::from_secs(21),
        "{unhealthy_after:?}"
    );
    assert!(
        handle.subscribe().borrow().is_some(),
        "last accepted state kept"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn garbage_keeps_the_last_good_state_and_is_reported() {
    let fake = FakeHub::default();
    fake.set(|f| f.directive = Some((directive(2, "a", 10, 0), "\"e\"".into())));
    let (mut lp, handle) = PollLoop::new(fake.clone(), Source, opts());
    assert!(lp.run_once().await.published);
    fake.set(|f| f.garbage = true);
    let out = lp.run_once().await;
    assert!(matches!(out.fetch_error, Some(Error::Garbage { .. })));
    assert!(
        out.report_error.is_none(),
        "report still sent when the hub answers garbage"
    );
    let held = handle.subscribe().borrow().clone().unwrap();
    assert_eq!(held.generation, 2);
    assert_eq!(
        held.desired.as_ref().unwrap()["guests"][0]["config"]["hostname"],
        "a"
    );
    let last = fake.0.lock().unwrap().reports.last().cloned().unwrap();
    assert!(last.agent.last_error.unwrap().starts_with("garbage"));
}

/// The loop does not judge generations: it publishes what the hub sent, and the engine applies
/// the one acceptance rule (`reconcile::accept`). A refusal reaches the report through the
/// source (the daemon's end-to-end test covers it); the loop adds none of its own.
#[tokio::test(start_paused = true)]
async fn every_valid_directive_is_published_as_sent_and_generations_are_not_judged_here() {
    let fake = FakeHub::default();
    fake.set(|f| f.directive = Some((directive(5, "a", 10, 0), "\"5\"".into())));
    let (mut lp, handle) = PollLoop::new(fake.clone(), Source, opts());
    lp.run_once().await;
    let mut older = directive(4, "b", 60, 0);
    older.ops.push(json!({"payload": "x", "signature": "y"}));
    fake.set(|f| f.directive = Some((older, "\"4\"".into())));
    assert!(lp.run_once().await.published);
    let held = handle.subscribe().borrow().clone().unwrap();
    assert_eq!(held.generation, 4);
    assert_eq!(
        held.desired.as_ref().unwrap()["guests"][0]["config"]["hostname"],
        "b"
    );
    assert_eq!(held.ops.len(), 1);
    assert_eq!(held.config.poll_interval_s, 60);
    assert_eq!(
        handle.health().snapshot().poll_interval,
        Duration::from_secs(60)
    );
    let r = fake.0.lock().unwrap().reports.last().cloned().unwrap();
    assert_eq!(r.desired.received_generation, Some(4));
    assert_eq!(r.desired.rejected, None, "the source set none");

    // A rewritten generation is published too: the engine must see it to refuse it.
    fake.set(|f| f.directive = Some((directive(4, "evil", 60, 0), "\"4b\"".into())));
    assert!(lp.run_once().await.published);
    let held = handle.subscribe().borrow().clone().unwrap();
    assert_eq!(
        held.desired.as_ref().unwrap()["guests"][0]["config"]["hostname"],
        "evil"
    );
    // The same directive again publishes nothing new.
    fake.set(|f| f.directive = Some((directive(4, "evil", 60, 0), "\"4c\"".into())));
    assert!(!lp.run_once().await.published);
}

#[tokio::test(start_paused = true)]
async fn pokes_are_rate_limited() {
    let fake = FakeHub::default();
    fake.set(|f| f.directive = Some((directive(1, "a", 10, 0), "\"e\"".into())));
    let mut o = opts();
    o.jitter = Duration::ZERO;
    let (lp, handle) = PollLoop::new(fake.clone(), Source, o);
    let task = tokio::spawn(lp.run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    for _ in 0..50 {
        handle.poke();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = fake.fetches().len();
    // 1 s of pokes with a 1 s minimum gap: exactly two cycles (one without the pokes, as
    // the 10 s interval would have it; no more than two, as the gap allows).
    assert_eq!(n, 2, "{n} cycles");
    for g in gaps(&fake.fetches()) {
        assert!(g >= Duration::from_secs(1));
    }
    task.abort();
}
