//! Token-bucket rate limits, one bucket per key.
//!
//! Authenticated calls are charged to their token id, so one flooding controller exhausts only
//! its own bucket and other guests are unaffected. Calls that fail authentication are charged
//! to the client's address instead: charging the token id they *claim* would let a controller
//! that learned another guest's (public) token id drain that guest's bucket.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once from a full bucket.
    pub burst: u32,
}

impl RateLimit {
    /// The default per-token limit: 20 requests/s, bursts of 40.
    pub const PER_TOKEN: RateLimit = RateLimit {
        per_second: 20.0,
        burst: 40,
    };
    /// The default per-address limit for calls that fail authentication: 5/s, bursts of 20.
    pub const UNAUTHENTICATED: RateLimit = RateLimit {
        per_second: 5.0,
        burst: 20,
    };
}

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A set of buckets keyed by `K`.
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Copy> Limiter<K> {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is available.
    pub(crate) fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        // A poisoned lock only means another request panicked mid-update; the map is still
        // a valid map of buckets.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_key() {
        let l = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(1, t0).is_ok());
        }
        let wait = l.check(1, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key is unaffected.
        assert!(l.check(2, t0).is_ok());
        // 100 ms later one token is back, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check(1, t1).is_ok());
        assert!(l.check(1, t1).is_err());
        // Long idle refills only to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.check(1, t2).is_ok());
        }
        assert!(l.check(1, t2).is_err());
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let l = Limiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let t0 = Instant::now();
        for k in 0..(PRUNE_ABOVE as u32 + 10) {
            let _ = l.check(k, t0);
        }
        let later = t0 + Duration::from_secs(5);
        let _ = l.check(u32::MAX, later);
        assert!(l.buckets.lock().unwrap().len() < 10);
    }
}
