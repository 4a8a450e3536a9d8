//! Jittered exponential backoff, capped at the poll interval, and the small random source
//! behind every jitter (seedable, so tests on paused time are deterministic).

use std::time::Duration;

/// No delay is ever shorter than this: the loop cannot spin, whatever the configuration.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// Failure backoff: the n-th failure in a row waits a uniformly random time in
/// `[d/2, d]` with `d = min(cap, base·2ⁿ⁻¹)` ("equal jitter": never zero, spread so a fleet
/// that lost the hub together does not come back together). balena uses
/// `min(poll, 15 s·2ⁿ)` (peer-systems-notes §1).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base`.
    pub fn new(base: Duration) -> Self {
        Backoff {
            base: base.max(MIN_DELAY),
            failures: 0,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait, at most `cap`.
    pub fn next_delay(&mut self, cap: Duration, rng: &mut Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self
            .base
            .saturating_mul(1u32 << (self.failures - 1).min(20));
        let d = exp.min(cap).max(MIN_DELAY);
        let half = d / 2;
        (half + rng.below(d - half)).max(MIN_DELAY)
    }
}

/// splitmix64: small, fast, good enough for jitter (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the OS (falls back to the clock if the OS source fails).
    pub fn from_entropy() -> Self {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            b = (t.as_nanos() as u64).to_le_bytes();
        }
        Rng(u64::from_le_bytes(b))
    }

    /// A fixed seed (tests).
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max]` at millisecond resolution.
    pub fn below(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis() as u64;
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.next_u64() % (ms + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_stays_in_the_equal_jitter_band_under_the_cap() {
        let cap = Duration::from_secs(30);
        let mut rng = Rng::seeded(7);
        for _ in 0..200 {
            let mut b = Backoff::new(Duration::from_secs(1));
            for n in 1..=12u32 {
                let d = b.next_delay(cap, &mut rng);
                let full = Duration::from_secs(1u64 << (n - 1)).min(cap);
                assert!(d >= full / 2 && d <= full, "n={n} d={d:?} full={full:?}");
            }
            assert_eq!(b.failures(), 12);
            b.reset();
            assert!(b.next_delay(cap, &mut rng) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn never_below_the_floor_even_with_a_zero_cap() {
        let mut rng = Rng::seeded(1);
        let mut b = Backoff::new(Duration::ZERO);
        for _ in 0..100 {
            assert!(b.next_delay(Duration::ZERO, &mut rng) >= MIN_DELAY);
        }
    }

    #[test]
    fn below_is_bounded_and_spread() {
        let mut rng = Rng::seeded(3);
        let max = Duration::from_secs(10);
        let xs: Vec<_> = (0..1000).map(|_| rng.below(max)).collect();
        assert!(xs.iter().all(|x| *x <= max));
        assert!(xs.iter().any(|x| *x < Duration::from_secs(2)));
        assert!(xs.iter().any(|x| *x > Duration::from_secs(8)));
        assert_eq!(rng.below(Duration::ZERO), Duration::ZERO);
    }
}
