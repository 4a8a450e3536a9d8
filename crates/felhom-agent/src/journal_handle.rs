//! The journal's one owner in the agent (issue 10 item 5): the daemon opens its connection once
//! and hands out [`JournalHandle`]s; nothing else holds the connection or its lock.
//!
//! Every journal write is an fsynced transaction (`synchronous=FULL`) and can take tens of
//! milliseconds on a busy disk. The daemon's runtime has two async workers, and the engine's
//! [`reconcile::Store`] port and the local API's token store are synchronous (`&self`) traits
//! called from async code: run there directly, a commit (or the wait for the lock while another
//! caller commits) would hold a worker, and every local-API request queued on that worker
//! would stall behind it. [`JournalHandle::with`] therefore runs the closure — the wait for the
//! lock included — in [`tokio::task::block_in_place`]: the worker's other tasks move to another
//! thread first, so a commit never stalls async work queued behind it.
//!
//! Decision: keep the ports synchronous and move the blocking here, rather than making
//! `reconcile::Store` async or putting the journal on a thread of its own behind a channel.
//! Each port call is one transaction whose result the caller needs before its next side effect
//! (journal before act), so an async port would only add a hop per call, and the engine's
//! closures that read and then write in one go (a destroy's release and the settling of its
//! pending op) would have to be split. A dedicated thread behind a synchronous port would still
//! block the calling worker while waiting for its answer. `block_in_place` gives the same
//! isolation with neither cost. On a current-thread runtime (the one-shot CLI commands, where
//! no other request is queued) the closure runs in place, since `block_in_place` is not
//! available there.
//!
//! Reads on the local API's request path (token lookups on every call, backup status, the
//! backup policy) take [`JournalHandle::read`]: a read-only connection of their own when the
//! handle has one ([`JournalHandle::with_reader`]), run in place. Under WAL a reader never waits
//! for the writer's commit, so a request that only reads neither queues behind the engine's
//! fsyncs nor pays for `block_in_place`; on the writer's connection it did both (the real-mode
//! local-API benchmark's read p99 was 14.8 ms before this, see bench/README.md).
//!
//! The local API's audit writer keeps its own connection on a thread of its own (queued,
//! never waited for). Read-only connections (the hub report's audit tail, `plan`, `audit`)
//! do not contend with the writer under WAL.

use std::sync::{Arc, Mutex, PoisonError};

use journal::Journal;
use tokio::runtime::{Handle, RuntimeFlavor};

/// A handle to the agent's journal connection. Cheap to clone; every clone reaches the same
/// connection, one caller at a time.
#[derive(Clone)]
pub struct JournalHandle {
    journal: Arc<Mutex<Journal>>,
    /// A read-only connection for [`JournalHandle::read`].
    reader: Option<Arc<Mutex<Journal>>>,
}

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHandle").finish_non_exhaustive()
    }
}

impl JournalHandle {
    /// Takes ownership of the open journal.
    pub fn new(journal: Journal) -> Self {
        JournalHandle {
            journal: Arc::new(Mutex::new(journal)),
            reader: None,
        }
    }

    /// The same handle, with `reader` (a read-only connection to the same journal) for
    /// [`JournalHandle::read`].
    pub fn with_reader(mut self, reader: Journal) -> Self {
        self.reader = Some(Arc::new(Mutex::new(reader)));
        self
    }

    /// Runs the read `f` on the read-only connection, in place (see the module docs); on the
    /// writer's connection through [`JournalHandle::with`] when there is none.
    pub fn read<T>(&self, f: impl FnOnce(&Journal) -> T) -> T {
        match &self.reader {
            Some(reader) => {
                let journal = reader.lock().unwrap_or_else(PoisonError::into_inner);
                f(&journal)
            }
            None => self.with(|j| f(j)),
        }
    }

    /// Runs `f` with the journal, off the async workers (see the module docs). Keep `f` to
    /// journal calls: the lock is held for all of it.
    pub fn with<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> T {
        let run = || {
            // Every write is one transaction, so a panic while the lock was held cannot have
            // left SQLite half-written: the journal stays usable.
            let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut journal)
        };
        off_worker(run)
    }
}

/// Runs blocking work `f` so that it holds no async worker of a multi-thread runtime: in
/// [`tokio::task::block_in_place`] there, in place elsewhere (a current-thread runtime, where
/// `block_in_place` panics, or no runtime at all).
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use reconcile::Store;

    use super::*;
    use crate::journal_port::JournalStore;

    /// A slow commit (here: another thread holding the journal for 1.5 s) while a request on
    /// the runtime's only worker needs the journal: an unrelated task must keep running. With
    /// the lock taken on the worker itself, the worker blocks and the ticker does not tick.
    #[test]
    fn a_slow_journal_commit_does_not_stall_other_tasks_on_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let handle = JournalHandle::new(Journal::open(dir.path()).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = {
            let handle = handle.clone();
            std::thread::spawn(move || {
                handle.with(|_| {
                    held_tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(1500));
                })
            })
        };
        held_rx.recv().unwrap();
        // Spawned first, so polled first on the one worker: the engine's store port and the
        // local API's token store both wait for the journal.
        let store = JournalStore::new(handle.clone());
        let waiter = rt.spawn(async move { store.guests().map(|g| g.len()) });
        let ticks = Arc::new(AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(1000));
        let during = ticks.load(Ordering::Relaxed);
        holder.join().unwrap();
        assert_eq!(rt.block_on(waiter).unwrap().unwrap(), 0);
        ticker.abort();
        assert!(
            during >= 10,
            "an unrelated task ticked {during} times in 1 s while the journal was busy"
        );
    }

    #[test]
    fn outside_a_multi_thread_runtime_the_work_runs_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let handle = JournalHandle::new(Journal::open(dir.path()).unwrap());
        assert!(handle.with(|j| j.guests()).unwrap().is_empty());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let n = rt.block_on(async { handle.with(|j| j.guests()).unwrap().len() });
        assert_eq!(n, 0);
    }
}
