//! Actual state: the node's guests from one list read, and a cache of each guest's normalized
//! config keyed by the desired config it was read for.
//!
//! Steady state costs one `/cluster/resources` read per cycle. A config is read only when the
//! guest's desired config changed since it was last read (or there is no entry, or the agent
//! just mutated the guest), plus at most one round-robin drift check per cycle, so requests per
//! cycle stay constant whatever the guest count (pve-api-notes §2.2 on the list's ~10 s lag is
//! handled by the engine, which re-reads `status/current` for guests it just acted on).

use std::collections::{BTreeMap, HashMap};

use crate::ports::{GuestConfig, GuestState};

/// The node's guests, by vmid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actual {
    /// Guests on this node.
    pub guests: BTreeMap<u32, GuestState>,
}

/// A cached config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedConfig {
    /// The config as read.
    pub config: GuestConfig,
    /// [`crate::desired::DesiredGuest::config_hash`] of the desired config at the time.
    pub read_for: u64,
}

/// Per-guest config cache with a round-robin drift cursor.
#[derive(Debug, Default)]
pub struct ConfigCache {
    entries: HashMap<u32, CachedConfig>,
    cursor: u32,
}

impl ConfigCache {
    /// Whether the guest's config must be read before planning against `desired_hash`.
    pub fn needs_read(&self, vmid: u32, desired_hash: u64) -> bool {
        self.entries
            .get(&vmid)
            .is_none_or(|e| e.read_for != desired_hash)
    }

    /// Stores a fresh read.
    pub fn insert(&mut self, vmid: u32, config: GuestConfig, read_for: u64) {
        self.entries.insert(vmid, CachedConfig { config, read_for });
    }

    /// Forgets a guest (the agent mutated it, or it is gone).
    pub fn invalidate(&mut self, vmid: u32) {
        self.entries.remove(&vmid);
    }

    /// The cached config.
    pub fn get(&self, vmid: u32) -> Option<&GuestConfig> {
        self.entries.get(&vmid).map(|e| &e.config)
    }

    /// The `read_for` of an entry.
    pub fn read_for(&self, vmid: u32) -> Option<u64> {
        self.entries.get(&vmid).map(|e| e.read_for)
    }

    /// The next cached guest after the cursor among `candidates` (sorted), for one drift check.
    pub fn next_drift_check(&mut self, candidates: &[u32]) -> Option<u32> {
        let cached: Vec<u32> = candidates
            .iter()
            .copied()
            .filter(|v| self.entries.contains_key(v))
            .collect();
        let next = cached
            .iter()
            .copied()
            .find(|v| *v > self.cursor)
            .or_else(|| cached.first().copied())?;
        self.cursor = next;
        Some(next)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuestConfig {
        GuestConfig {
            digest: Some("d".into()),
            values: BTreeMap::new(),
            identity: None,
        }
    }

    #[test]
    fn reads_only_when_the_desired_config_changed() {
        let mut cache = ConfigCache::default();
        assert!(cache.needs_read(101, 7));
        cache.insert(101, cfg(), 7);
        assert!(!cache.needs_read(101, 7));
        assert!(cache.needs_read(101, 8));
        cache.invalidate(101);
        assert!(cache.needs_read(101, 7));
    }

    #[test]
    fn drift_checks_go_round_robin() {
        let mut cache = ConfigCache::default();
        for v in [101, 102, 103] {
            cache.insert(v, cfg(), 0);
        }
        let all = [100, 101, 102, 103];
        let seen: Vec<u32> = (0..4)
            .filter_map(|_| cache.next_drift_check(&all))
            .collect();
        assert_eq!(seen, vec![101, 102, 103, 101]);
    }
}
