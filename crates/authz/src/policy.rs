//! The verifier's local policy: who this host is, what time it is, and how much slack to give.

use std::time::Duration;

use time::OffsetDateTime;

/// Default allowance for clocks that disagree: an op is valid from `issued_at - skew` to
/// `expires_at + skew`. Two minutes covers NTP-synced hosts and a laptop that drifted a little.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Default longest `expires_at - issued_at` accepted: one day. An authorization that lives
/// longer is a standing grant, not a one-shot, and is refused as `malformed`.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Inputs of a verification that come from this host, never from the payload.
#[derive(Debug, Clone)]
pub struct Policy {
    /// This host's id (config `host_id`); the payload's `host_id` must equal it exactly.
    pub host_id: String,
    /// Clock-skew allowance.
    pub clock_skew: Duration,
    /// Longest accepted lifetime.
    pub max_lifetime: Duration,
    /// The time the decision is made at.
    pub now: OffsetDateTime,
}

impl Policy {
    /// A policy with the default skew and lifetime.
    pub fn new(host_id: impl Into<String>, now: OffsetDateTime) -> Policy {
        Policy {
            host_id: host_id.into(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            now,
        }
    }
}
