//! Noisy refusals summarised per peer and interval, so a flood costs the audit log one entry
//! per address per interval instead of one per call.
//!
//! Why: a guest with no token at all, 16 threads for 15 s, made 77,479 calls that were each
//! refused (401, or 429 once the address limit applied). One audit row each was ~700 fsynced
//! rows a second (about 16 GB a day), and the writer fell so far behind that 64,953 records were
//! dropped, some of them possibly ones that mattered.
//!
//! What is summarised: calls refused as `unauthorized` or `rate_limited`, and nothing else.
//! Those tell the operator one thing (this address is hammering the API) however many there
//! are. Every call that authenticated and was not rate limited keeps an entry of its own: a
//! mutation, a read, a guest-id attempt, a malformed body.
//!
//! How: the first noisy call of a peer in an interval is recorded as it is (the operator sees
//! the flood begin, with its detail); the rest are counted by route and outcome, and at the end
//! of the interval one [`CallSummary`] per peer says how many there were. A peer that stays
//! quiet for a whole interval starts fresh. At most [`MAX_PEERS`] addresses are tallied at
//! once; calls from any further address are counted under "other addresses" (peer `None`), so
//! a guest cycling through source addresses cannot grow the table.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::ports::{AuditEvent, CallSummary};

/// Addresses tallied separately in one interval.
pub(crate) const MAX_PEERS: usize = 1024;

/// Outcomes a flood produces, summarised instead of recorded one by one.
fn is_noisy(outcome: &str) -> bool {
    matches!(outcome, "unauthorized" | "rate_limited")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Peer(Option<IpAddr>),
    /// Past [`MAX_PEERS`].
    Other,
}

#[derive(Debug)]
struct Tally {
    since: SystemTime,
    /// Calls counted after the first, which was recorded as it was.
    counted: u64,
    by_outcome: BTreeMap<&'static str, u64>,
    by_route: BTreeMap<String, u64>,
}

/// The tallies of the current interval.
#[derive(Debug, Default)]
pub(crate) struct Summariser {
    tallies: Mutex<HashMap<Key, Tally>>,
}

impl Summariser {
    /// What to record for `event` now: the event itself, or nothing when it was counted into
    /// its peer's tally.
    pub(crate) fn admit(&self, event: AuditEvent) -> Option<AuditEvent> {
        if event.mutation || event.guest_id_attempt || !is_noisy(event.outcome) {
            return Some(event);
        }
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = Key::Peer(event.peer);
        if !tallies.contains_key(&key) && tallies.len() >= MAX_PEERS {
            key = Key::Other;
        }
        let fresh = !tallies.contains_key(&key);
        let tally = tallies.entry(key).or_insert_with(|| Tally {
            since: event.at,
            counted: 0,
            by_outcome: BTreeMap::new(),
            by_route: BTreeMap::new(),
        });
        // The first call of a peer is recorded as it is; the first of "other addresses" is
        // counted like the rest, since its own address is not what the summary names.
        if fresh && key != Key::Other {
            return Some(event);
        }
        tally.counted += 1;
        *tally.by_outcome.entry(event.outcome).or_default() += 1;
        *tally.by_route.entry(event.route).or_default() += 1;
        None
    }

    /// Ends the interval: one summary per peer that had calls counted, oldest tally first;
    /// every tally is cleared.
    pub(crate) fn drain(&self, now: SystemTime) -> Vec<CallSummary> {
        let drained: Vec<(Key, Tally)> = {
            let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
            tallies.drain().collect()
        };
        let mut summaries: Vec<CallSummary> = drained
            .into_iter()
            .filter(|(_, t)| t.counted > 0)
            .map(|(key, t)| CallSummary {
                at: now,
                since: t.since,
                peer: match key {
                    Key::Peer(peer) => peer,
                    Key::Other => None,
                },
                other_addresses: key == Key::Other,
                calls: t.counted,
                by_outcome: t.by_outcome.into_iter().collect(),
                by_route: t.by_route.into_iter().collect(),
            })
            .collect();
        summaries.sort_by_key(|s| (s.since, s.peer));
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn event(peer: u8, outcome: &'static str, at: u64) -> AuditEvent {
        AuditEvent {
            at: UNIX_EPOCH + Duration::from_secs(at),
            token_id: None,
            vmid: None,
            route: "GET /backup/status".into(),
            status: if outcome == "rate_limited" { 429 } else { 401 },
            outcome,
            detail: Some("no authorization header".into()),
            guest_id_attempt: false,
            mutation: false,
            peer: Some(IpAddr::from([10, 0, 0, peer])),
        }
    }

    #[test]
    fn the_first_refusal_passes_the_rest_are_counted_per_peer() {
        let s = Summariser::default();
        assert!(s.admit(event(1, "unauthorized", 10)).is_some());
        for i in 0..99 {
            let outcome = if i < 50 {
                "unauthorized"
            } else {
                "rate_limited"
            };
            assert!(s.admit(event(1, outcome, 11)).is_none());
        }
        assert!(s.admit(event(2, "unauthorized", 12)).is_some());
        let summaries = s.drain(UNIX_EPOCH + Duration::from_secs(70));
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        let one = &summaries[0];
        assert_eq!(one.peer, Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(one.calls, 99);
        assert_eq!(
            one.by_outcome,
            vec![("rate_limited", 49), ("unauthorized", 50)]
        );
        assert_eq!(one.by_route, vec![("GET /backup/status".to_owned(), 99)]);
        assert_eq!(one.since, UNIX_EPOCH + Duration::from_secs(10));
        // A new interval: the next refusal is recorded again.
        assert!(s.admit(event(1, "unauthorized", 80)).is_some());
        assert!(s.drain(UNIX_EPOCH + Duration::from_secs(130)).is_empty());
    }

    #[test]
    fn mutations_guest_id_attempts_and_other_refusals_are_never_summarised() {
        let s = Summariser::default();
        assert!(s.admit(event(1, "unauthorized", 10)).is_some());
        let mut mutation = event(1, "rate_limited", 11);
        mutation.mutation = true;
        let mut probe = event(1, "unauthorized", 11);
        probe.guest_id_attempt = true;
        let bad = event(1, "bad_request", 11);
        for e in [mutation, probe, bad] {
            assert!(s.admit(e.clone()).is_some(), "{e:?}");
        }
        assert!(s.drain(UNIX_EPOCH).is_empty());
    }

    #[test]
    fn addresses_past_the_cap_share_one_tally() {
        let s = Summariser::default();
        for i in 0..MAX_PEERS {
            let mut e = event(0, "unauthorized", 1);
            e.peer = Some(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]));
            assert!(s.admit(e).is_some());
        }
        for i in 0..500u32 {
            let mut e = event(0, "unauthorized", 2);
            e.peer = Some(IpAddr::from([10, 2, (i / 256) as u8, (i % 256) as u8]));
            assert!(
                s.admit(e).is_none(),
                "address past the cap recorded one by one"
            );
        }
        let summaries = s.drain(UNIX_EPOCH);
        assert_eq!(summaries.len(), 1);
        assert!(summaries[0].other_addresses);
        assert_eq!((summaries[0].peer, summaries[0].calls), (None, 500));
        assert_eq!(s.tallies.lock().unwrap().len(), 0);
    }
}
