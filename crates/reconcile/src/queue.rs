//! Per-guest serialization with a global cap.
//!
//! Every mutation of a guest (reconcile steps, signed jobs, later the local API) runs through
//! [`GuestQueues::run`]: one FIFO queue per vmid (tokio's `Mutex` is fair), bounded — a full
//! queue fails at once with [`Busy`] ("guest 101 busy, retry") instead of blocking — and a
//! global semaphore across guests.
//!
//! The default cap is [`DEFAULT_PARALLEL`] = 3: pvedaemon runs 3 worker processes, so more
//! concurrent API mutations than that only queue inside PVE, and each guest config change
//! takes a flock with a 10 s timeout (`PVE::AbstractConfig::lock_config`), so piling up
//! requests risks "got timeout" failures that a client cannot tell from real errors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Guests mutated in parallel by default (see the module docs).
pub const DEFAULT_PARALLEL: usize = 3;
/// Ops that may wait for one guest before [`Busy`].
pub const DEFAULT_QUEUE_DEPTH: usize = 16;

/// The guest's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest {vmid} busy, retry")]
pub struct Busy {
    /// The guest.
    pub vmid: u32,
}

struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    queued: AtomicUsize,
}

/// The per-guest queues and the global cap. Cheap to clone.
#[derive(Clone)]
pub struct GuestQueues {
    global: Arc<Semaphore>,
    slots: Arc<Mutex<HashMap<u32, Arc<Slot>>>>,
    depth: usize,
}

impl std::fmt::Debug for GuestQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestQueues")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

/// Decrements the queued count however the future ends (also when it is dropped).
struct Queued(Arc<Slot>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GuestQueues {
    /// `parallel` guests at once, at most `depth` ops queued per guest.
    pub fn new(parallel: usize, depth: usize) -> Self {
        GuestQueues {
            global: Arc::new(Semaphore::new(parallel.max(1))),
            slots: Arc::new(Mutex::new(HashMap::new())),
            depth: depth.max(1),
        }
    }

    fn slot(&self, vmid: u32) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(vmid)
            .or_insert_with(|| {
                Arc::new(Slot {
                    lock: Arc::new(tokio::sync::Mutex::new(())),
                    queued: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Runs `work` when it is this guest's turn and a global slot is free.
    pub async fn run<F: Future>(&self, vmid: u32, work: F) -> Result<F::Output, Busy> {
        Ok(self.reserve(vmid)?.run(work).await)
    }

    /// Takes a place in `vmid`'s queue now, or fails at once with [`Busy`] when it is full.
    /// The place counts against the depth until the [`Reservation`] is run or dropped, so a
    /// caller can answer "busy" synchronously and run the work in a task of its own.
    pub fn reserve(&self, vmid: u32) -> Result<Reservation, Busy> {
        let slot = self.slot(vmid);
        if slot.queued.fetch_add(1, Ordering::SeqCst) >= self.depth {
            slot.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy { vmid });
        }
        Ok(Reservation {
            global: self.global.clone(),
            queued: Queued(slot),
        })
    }

    /// Takes `vmid`'s turn now, ahead of everything not yet running, or `None` when something
    /// holds it. Crash recovery claims the turn of every guest with an unfinished op before the
    /// engine hands out its handle, so nothing new runs on such a guest before its interrupted
    /// op is settled. (A [`Reservation`] only counts against the depth; its turn comes in the
    /// order its `run` is first polled.)
    pub fn claim(&self, vmid: u32) -> Option<Turn> {
        let slot = self.slot(vmid);
        let guard = slot.lock.clone().try_lock_owned().ok()?;
        slot.queued.fetch_add(1, Ordering::SeqCst);
        Some(Turn {
            global: self.global.clone(),
            _guard: guard,
            _queued: Queued(slot),
        })
    }

    /// Whether nothing runs or waits for this guest.
    pub fn is_idle(&self, vmid: u32) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .get(&vmid)
            .is_none_or(|s| s.queued.load(Ordering::SeqCst) == 0)
    }
}

/// A place in one guest's queue, from [`GuestQueues::reserve`].
pub struct Reservation {
    global: Arc<Semaphore>,
    queued: Queued,
}

/// A guest's turn, held from [`GuestQueues::claim`] until the work it runs ends (or it is
/// dropped).
pub struct Turn {
    global: Arc<Semaphore>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _queued: Queued,
}

impl Turn {
    /// Waits for a global slot, then runs `work` with the guest's turn held.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        let _permit = self.global.acquire().await.ok();
        work.await
    }
}

impl Reservation {
    /// Waits for the guest's turn and a global slot, then runs `work`.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        let _turn = self.queued.0.lock.lock().await;
        // The semaphore is never closed; if it were, running unthrottled is the lesser evil.
        let _permit = self.global.acquire().await.ok();
        work.await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_guest_is_serial_and_guests_run_in_parallel_up_to_the_cap() {
        let q = GuestQueues::new(2, 16);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, vmid) in [101u32, 101, 101, 102, 103, 104].into_iter().enumerate() {
            let (q, running, peak, log) = (q.clone(), running.clone(), peak.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                q.run(vmid, async {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    log.lock().unwrap().push((vmid, i, "in"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    log.lock().unwrap().push((vmid, i, "out"));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        // Guest 101's three ops never overlap and keep their order.
        let ours: Vec<(usize, &str)> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(v, _, _)| *v == 101)
            .map(|(_, i, e)| (*i, *e))
            .collect();
        assert_eq!(
            ours,
            vec![
                (0, "in"),
                (0, "out"),
                (1, "in"),
                (1, "out"),
                (2, "in"),
                (2, "out")
            ]
        );
        assert!(q.is_idle(101));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_fails_fast() {
        let q = GuestQueues::new(3, 2);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let q1 = q.clone();
        let first = tokio::spawn(async move { q1.run(101, async { rx.await.ok() }).await });
        tokio::task::yield_now().await;
        let q2 = q.clone();
        let second = tokio::spawn(async move { q2.run(101, async {}).await });
        tokio::task::yield_now().await;
        let err = q.run(101, async {}).await.unwrap_err();
        assert_eq!(err.to_string(), "guest 101 busy, retry");
        // Another guest is not affected.
        assert!(q.run(102, async { 5 }).await.is_ok());
        tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert!(q.run(101, async {}).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claimed_turn_goes_before_everything_queued_after_it() {
        let q = GuestQueues::new(3, 16);
        let turn = q.claim(101).expect("nobody holds 101");
        assert!(q.claim(101).is_none(), "a turn is claimed once");
        assert!(!q.is_idle(101));
        let log = Arc::new(Mutex::new(Vec::new()));
        let later = {
            let (q, log) = (q.clone(), log.clone());
            tokio::spawn(async move {
                q.run(101, async move { log.lock().unwrap().push("later") })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(log.lock().unwrap().is_empty(), "ran past a claimed turn");
        let first = log.clone();
        turn.run(async move { first.lock().unwrap().push("recovery") })
            .await;
        later.await.unwrap().unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["recovery", "later"]);
        assert!(q.is_idle(101));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_holds_its_place_until_run_or_dropped() {
        let q = GuestQueues::new(3, 1);
        let held = q.reserve(101).expect("a place");
        assert!(!q.is_idle(101));
        assert_eq!(q.reserve(101).err(), Some(Busy { vmid: 101 }));
        assert_eq!(q.run(101, async {}).await.err(), Some(Busy { vmid: 101 }));
        drop(held);
        assert!(q.is_idle(101));
        let again = q.reserve(101).expect("the place is free again");
        assert_eq!(again.run(async { 7 }).await, 7);
        assert!(q.is_idle(101));
    }
}
