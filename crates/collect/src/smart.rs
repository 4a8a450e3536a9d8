//! SMART at a slow cadence, cached. Reading SMART needs root (raw device access), so the
//! binary implements [`SmartReader`] with the `privileged` crate (`smartctl --json=c -a`
//! through the sudoers allowlist); this module only decides *when* to read and what to
//! report between reads: the last good values, their age, and the last error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hub::SmartReport;
use tokio::time::Instant;

/// Values of one SMART read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartValues {
    /// Overall health self-assessment.
    pub passed: Option<bool>,
    /// Temperature, °C.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
}

/// Reads SMART of one device (`/dev/sda`); the error is one line for the report.
pub trait SmartReader: Send + Sync {
    /// One read.
    fn read(&self, device: &str) -> impl Future<Output = Result<SmartValues, String>> + Send;
}

#[derive(Debug, Clone)]
struct Entry {
    last_ok: Option<(Instant, SmartValues)>,
    last_error: Option<String>,
    last_attempt: Instant,
}

/// The cache. Call [`SmartCache::refresh_due`] every cycle; it reads only devices whose last
/// attempt is older than the interval (hours, typically), one at a time.
#[derive(Debug)]
pub struct SmartCache<R> {
    reader: R,
    devices: Vec<String>,
    interval: Duration,
    entries: BTreeMap<String, Entry>,
}

impl<R: SmartReader> SmartCache<R> {
    /// A cache reading `devices` every `interval`.
    pub fn new(reader: R, devices: Vec<String>, interval: Duration) -> Self {
        SmartCache {
            reader,
            devices,
            interval,
            entries: BTreeMap::new(),
        }
    }

    /// Reads the devices that are due; returns how many were read.
    pub async fn refresh_due(&mut self) -> usize {
        let mut read = 0;
        for dev in &self.devices {
            let due = self
                .entries
                .get(dev)
                .is_none_or(|e| e.last_attempt.elapsed() >= self.interval);
            if !due {
                continue;
            }
            read += 1;
            let result = self.reader.read(dev).await;
            let now = Instant::now();
            let entry = self.entries.entry(dev.clone()).or_insert(Entry {
                last_ok: None,
                last_error: None,
                last_attempt: now,
            });
            entry.last_attempt = now;
            match result {
                Ok(v) => {
                    entry.last_ok = Some((now, v));
                    entry.last_error = None;
                }
                Err(e) => entry.last_error = Some(e),
            }
        }
        read
    }

    /// The cache's state now. It keeps the instants, so a snapshot taken after a refresh and
    /// read much later still reports true ages.
    pub fn snapshot(&self) -> SmartSnapshot {
        SmartSnapshot {
            entries: Arc::new(
                self.entries
                    .iter()
                    .map(|(dev, e)| (dev.clone(), e.clone()))
                    .collect(),
            ),
        }
    }
}

/// A copy of the cache's entries (cheap to clone and to hand to another task).
#[derive(Debug, Clone, Default)]
pub struct SmartSnapshot {
    entries: Arc<Vec<(String, Entry)>>,
}

impl SmartSnapshot {
    /// What to report now: the last good values with their age, and the last error if the
    /// last attempt failed. Devices never read yet are absent.
    pub fn reports(&self) -> Vec<SmartReport> {
        self.entries
            .iter()
            .map(|(dev, e)| {
                let (age_from, values) = match &e.last_ok {
                    Some((at, v)) => (*at, Some(v)),
                    None => (e.last_attempt, None),
                };
                SmartReport {
                    device: dev.clone(),
                    passed: values.and_then(|v| v.passed),
                    temperature_c: values.and_then(|v| v.temperature_c),
                    power_on_hours: values.and_then(|v| v.power_on_hours),
                    age_s: age_from.elapsed().as_secs(),
                    error: e.last_error.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fake reader: counts reads, fails while `fail` is set.
    #[derive(Clone, Default)]
    struct Fake {
        reads: Arc<AtomicU32>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl SmartReader for Fake {
        async fn read(&self, _device: &str) -> Result<SmartValues, String> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err("smartctl exited 2".into());
            }
            Ok(SmartValues {
                passed: Some(true),
                temperature_c: Some(30 + i64::from(n)),
                power_on_hours: Some(1000),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_at_the_slow_cadence_and_keeps_last_good_values() {
        let fake = Fake::default();
        let mut cache = SmartCache::new(
            fake.clone(),
            vec!["/dev/sda".into(), "/dev/nvme0n1".into()],
            Duration::from_secs(3600),
        );
        assert!(cache.snapshot().reports().is_empty());
        assert_eq!(cache.refresh_due().await, 2);
        assert_eq!(cache.refresh_due().await, 0, "cached within the interval");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(cache.refresh_due().await, 0);
        let snap = cache.snapshot().reports();
        assert_eq!(snap.len(), 2);
        assert!(snap
            .iter()
            .all(|s| s.age_s == 600 && s.passed == Some(true)));

        fake.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(cache.refresh_due().await, 2);
        let snap = cache.snapshot().reports();
        let sda = snap.iter().find(|s| s.device == "/dev/sda").unwrap();
        assert_eq!(sda.error.as_deref(), Some("smartctl exited 2"));
        assert_eq!(sda.passed, Some(true), "last good values kept");
        assert_eq!(sda.age_s, 3600, "age of the good values");
        assert_eq!(fake.reads.load(Ordering::SeqCst), 4);
    }
}
