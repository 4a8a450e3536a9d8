//! Connection slots: a cap per listener, a cap per client address, and eviction of
//! connections still in their TLS handshake when the listener is full.
//!
//! Why: 300 idle TCP connections from one guest once held all 256 shared slots for the 5 s
//! handshake timeout, over and over, and every other guest's controller was locked out. Now
//! one address holds at most `max_connections_per_peer` slots, and when the listener is full a
//! new connection takes the slot of one that has not finished its handshake (from the address
//! holding the most slots, oldest first): a connection that has done nothing yet is the
//! cheapest to lose, and a flood of them is exactly what fills the table. Established
//! connections are never evicted; with none handshaking, the new connection is closed.
//!
//! An evicted connection's slot is handed over at once, so the open count can exceed the cap
//! by the evictions still unwinding (each is one handshake future seeing its signal).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address already holds its share.
    PeerFull,
    /// The listener is full and every connection has finished its handshake.
    ListenerFull,
}

#[derive(Debug)]
struct Live {
    peer: IpAddr,
    /// Present while the connection is in its TLS handshake.
    evict: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    by_peer: HashMap<IpAddr, usize>,
    /// Every connection holding a slot, by admission order (so the oldest of an address is
    /// evicted first). An evicted one leaves at once; its `Slot` then finds nothing to free.
    live: BTreeMap<u64, Live>,
    next: u64,
    refused: u64,
    evicted: u64,
    last_report: Option<Instant>,
}

/// The slots of one listener.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    per_peer: usize,
    table: Mutex<Table>,
}

/// Refusals and evictions are logged at most this often, as counts, so a flood of
/// connections does not become a flood of log lines.
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl Slots {
    pub(crate) fn new(max: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Slots {
            max: max.max(1),
            per_peer: per_peer.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer`, evicting a handshaking one if the listener is full.
    /// The [`Slot`] is held for the connection's life; `Evicted` resolves if it is evicted
    /// before [`Slot::established`].
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Slot, Evicted), Refusal> {
        let mut t = self.table();
        let held = t.by_peer.get(&peer).copied().unwrap_or(0);
        let refused = if held >= self.per_peer {
            Some(Refusal::PeerFull)
        } else if t.open >= self.max && !evict_one(&mut t) {
            Some(Refusal::ListenerFull)
        } else {
            None
        };
        if let Some(refusal) = refused {
            t.refused += 1;
            report(&mut t, Some(refusal));
            return Err(refusal);
        }
        report(&mut t, None);
        let seq = t.next;
        t.next += 1;
        t.open += 1;
        *t.by_peer.entry(peer).or_default() += 1;
        let (tx, rx) = oneshot::channel();
        t.live.insert(
            seq,
            Live {
                peer,
                evict: Some(tx),
            },
        );
        Ok((
            Slot {
                slots: Arc::clone(self),
                seq,
                peer,
            },
            Evicted(rx),
        ))
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let t = self.table();
        (
            t.open,
            t.live.values().filter(|l| l.evict.is_some()).count(),
            t.by_peer.values().copied().sum(),
        )
    }
}

/// Signals the handshaking connection of the address holding the most slots (oldest first)
/// to close, and frees its slot now. False when nothing is handshaking.
fn evict_one(t: &mut Table) -> bool {
    let victim = t
        .live
        .iter()
        .filter(|(_, l)| l.evict.is_some())
        .map(|(&seq, l)| (seq, t.by_peer.get(&l.peer).copied().unwrap_or(0)))
        // Most slots first; among equals the lowest (oldest) sequence.
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(seq, _)| seq);
    let Some(live) = victim.and_then(|seq| t.live.remove(&seq)) else {
        return false;
    };
    release(t, live.peer);
    t.evicted += 1;
    if let Some(evict) = live.evict {
        // The connection may have gone already; then there is nothing to signal.
        let _ = evict.send(());
    }
    true
}

fn release(t: &mut Table, peer: IpAddr) {
    t.open = t.open.saturating_sub(1);
    if let Some(n) = t.by_peer.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            t.by_peer.remove(&peer);
        }
    }
}

fn report(t: &mut Table, refusal: Option<Refusal>) {
    if t.refused == 0 && t.evicted == 0 {
        return;
    }
    let now = Instant::now();
    if t.last_report
        .is_some_and(|at| now.duration_since(at) < REPORT_EVERY)
    {
        return;
    }
    t.last_report = Some(now);
    tracing::warn!(
        refused = t.refused,
        evicted_in_handshake = t.evicted,
        open = t.open,
        last_refusal = ?refusal,
        "local api connection limits reached"
    );
    t.refused = 0;
    t.evicted = 0;
}

/// A connection's hold on its slot; dropping it frees the slot (unless an eviction already
/// did).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    seq: u64,
    peer: IpAddr,
}

impl Slot {
    /// The TLS handshake finished: the connection can no longer be evicted.
    pub(crate) fn established(&self) {
        if let Some(live) = self.slots.table().live.get_mut(&self.seq) {
            live.evict = None;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.table();
        // Absent: evicted, and its slot was freed then.
        if t.live.remove(&self.seq).is_some() {
            release(&mut t, self.peer);
        }
    }
}

/// Resolves when the connection is evicted.
#[derive(Debug)]
pub(crate) struct Evicted(oneshot::Receiver<()>);

impl Evicted {
    /// Waits for the eviction signal.
    pub(crate) async fn wait(self) {
        // A dropped sender (the slot left the table without a signal) is not an eviction.
        if self.0.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let slots = Slots::new(8, 3);
        let held: Vec<_> = (0..3).map(|_| slots.admit(ip(1)).unwrap()).collect();
        assert_eq!(slots.admit(ip(1)).unwrap_err(), Refusal::PeerFull);
        // Another address is unaffected.
        let other = slots.admit(ip(2)).unwrap();
        drop(held);
        assert_eq!(slots.counts(), (1, 1, 1));
        assert!(slots.admit(ip(1)).is_ok());
        drop(other);
    }

    #[test]
    fn a_full_listener_evicts_a_handshake_of_the_busiest_address_oldest_first() {
        let slots = Slots::new(4, 4);
        let (a1, ea1) = slots.admit(ip(1)).unwrap();
        let (a2, _ea2) = slots.admit(ip(1)).unwrap();
        let (a3, _ea3) = slots.admit(ip(1)).unwrap();
        let (b1, mut eb1) = slots.admit(ip(2)).unwrap();
        let (c1, _ec1) = slots.admit(ip(3)).unwrap();
        // ip(1) held the most; its oldest connection was signalled and its slot freed.
        let mut ea1 = ea1.0;
        assert!(ea1.try_recv().is_ok(), "oldest of the busiest not evicted");
        assert!(eb1.0.try_recv().is_err(), "the quiet address was evicted");
        assert_eq!(slots.counts(), (4, 4, 4));
        // Dropping the evicted slot later frees nothing twice.
        drop(a1);
        assert_eq!(slots.counts(), (4, 4, 4));
        drop((a2, a3, b1, c1));
        assert_eq!(slots.counts(), (0, 0, 0));
    }

    #[test]
    fn established_connections_are_never_evicted() {
        let slots = Slots::new(2, 2);
        let (a, mut ea) = slots.admit(ip(1)).unwrap();
        let (b, mut eb) = slots.admit(ip(1)).unwrap();
        a.established();
        b.established();
        assert_eq!(slots.admit(ip(2)).unwrap_err(), Refusal::ListenerFull);
        assert!(ea.0.try_recv().is_err() && eb.0.try_recv().is_err());
        drop(a);
        let (_c, _) = slots.admit(ip(2)).unwrap();
        assert_eq!(slots.counts(), (2, 1, 2));
        drop(b);
    }
}
