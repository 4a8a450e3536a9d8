//! The poll loop's own health (balena's rule, peer-systems-notes §1): healthy means "fetched
//! the directive within 2× the poll interval". Also what a systemd watchdog needs to tell a
//! wedged loop from a sleeping one: [`HealthSnapshot::busy_for`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Shared, cheap to clone; written by the loop, read by anyone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    poll_interval: Duration,
    last_fetch: Option<Instant>,
    last_report: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    cycles: u64,
    busy_since: Option<Instant>,
}

/// A point-in-time view of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    /// Fetched the directive (200 or 304) within 2× the poll interval; at startup, the
    /// window counts from the loop's start.
    pub healthy: bool,
    /// Time since the last successful fetch.
    pub last_fetch_age: Option<Duration>,
    /// Time since the last acknowledged report.
    pub last_report_age: Option<Duration>,
    /// Failed cycles in a row.
    pub consecutive_failures: u32,
    /// The last cycle's error, if it failed.
    pub last_error: Option<String>,
    /// The poll interval in force.
    pub poll_interval: Duration,
    /// Cycles completed.
    pub cycles: u64,
    /// How long the current cycle has been running (`None` while the loop sleeps). A cycle is
    /// bounded by the request timeouts, so a large value means the loop is wedged.
    pub busy_for: Option<Duration>,
}

impl Health {
    pub(crate) fn new(poll_interval: Duration) -> Self {
        Health {
            inner: Arc::new(Mutex::new(State {
                started: Instant::now(),
                poll_interval,
                last_fetch: None,
                last_report: None,
                consecutive_failures: 0,
                last_error: None,
                cycles: 0,
                busy_since: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind: keep using them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current view.
    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        let now = Instant::now();
        let reference = s.last_fetch.unwrap_or(s.started);
        HealthSnapshot {
            healthy: now.saturating_duration_since(reference) <= s.poll_interval * 2,
            last_fetch_age: s.last_fetch.map(|t| now.saturating_duration_since(t)),
            last_report_age: s.last_report.map(|t| now.saturating_duration_since(t)),
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
            poll_interval: s.poll_interval,
            cycles: s.cycles,
            busy_for: s.busy_since.map(|t| now.saturating_duration_since(t)),
        }
    }

    /// Shorthand for `snapshot().healthy`.
    pub fn is_healthy(&self) -> bool {
        self.snapshot().healthy
    }

    pub(crate) fn begin_cycle(&self) {
        self.lock().busy_since = Some(Instant::now());
    }

    pub(crate) fn fetched(&self) {
        self.lock().last_fetch = Some(Instant::now());
    }

    pub(crate) fn reported(&self) {
        self.lock().last_report = Some(Instant::now());
    }

    pub(crate) fn set_poll_interval(&self, interval: Duration) {
        self.lock().poll_interval = interval;
    }

    pub(crate) fn end_cycle(&self, error: Option<String>) {
        let mut s = self.lock();
        s.busy_since = None;
        s.cycles += 1;
        match error {
            None => {
                s.consecutive_failures = 0;
                s.last_error = None;
            }
            Some(e) => {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                s.last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn healthy_iff_fetched_within_twice_the_interval() {
        let h = Health::new(Duration::from_secs(10));
        assert!(h.is_healthy(), "startup grace");
        tokio::time::advance(Duration::from_secs(21)).await;
        assert!(!h.is_healthy(), "never fetched in 2x interval");
        h.fetched();
        assert!(h.is_healthy());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(h.is_healthy());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!h.is_healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn busy_for_tracks_the_running_cycle() {
        let h = Health::new(Duration::from_secs(10));
        assert_eq!(h.snapshot().busy_for, None);
        h.begin_cycle();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(h.snapshot().busy_for, Some(Duration::from_secs(3)));
        h.end_cycle(Some("unreachable".into()));
        let s = h.snapshot();
        assert_eq!((s.busy_for, s.cycles, s.consecutive_failures), (None, 1, 1));
        h.begin_cycle();
        h.end_cycle(None);
        let s = h.snapshot();
        assert_eq!((s.consecutive_failures, s.last_error), (0, None));
    }
}
