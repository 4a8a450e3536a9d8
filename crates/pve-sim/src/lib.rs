//! `felhom-pve-sim`: a faithful Proxmox VE 9.1 API simulator for tests and the demo.
//!
//! It owns one simulated node with LXC containers, storages, volumes, backups, tasks and the
//! access-control model (users, API tokens, roles, ACLs), serves them under `/api2/json` with
//! PVE's envelope, status codes, messages and permission rules, validates every request (and
//! its own responses) against the official schema (`pve-schema`), and offers test controls
//! under `/_sim/`. It never talks to a real Proxmox host and never runs a process.
//!
//! Start reading at [`server::app`] (routing, auth, validation, envelope), then
//! [`tasks`] (the two-phase worker engine) and [`lxc`] (the container endpoints).

pub mod acl;
pub mod activation;
pub mod auth;
pub mod conf;
pub mod control;
pub mod create;
pub mod ctperm;
pub mod envelope;
pub mod lxc;
pub mod node;
pub mod perms;
pub mod prune;
pub mod request;
pub mod roles;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod storage_cfg;
pub mod task_api;
pub mod tasks;
pub mod tls;
pub mod usb;
pub mod vzdump;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use server::app;
pub use state::{State, Store};

use crate::control::Controls;
use crate::tasks::Work;

/// Errors while opening the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Loading or saving the state failed.
    #[error("state store failed")]
    Store(#[from] state::StoreError),
    /// No randomness for token secrets.
    #[error("no randomness for token secrets")]
    Random(#[from] getrandom::Error),
}

/// `err` and its sources, `: `-joined, for control answers.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Options of a simulator instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// State directory (created if missing).
    pub state_dir: PathBuf,
    /// Node name.
    pub node: String,
    /// Containers to seed on first start.
    pub guests: u32,
    /// Base task duration in milliseconds.
    pub task_ms: u64,
    /// Delay before a 401 answer in milliseconds.
    pub auth_fail_delay_ms: u64,
}

/// A running simulator: shared state plus runtime knobs. Cheap to clone.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    store: Store,
    task_ms: AtomicU64,
    auth_fail_delay_ms: AtomicU64,
    controls: Controls,
}

impl Sim {
    /// Load the state from `opts.state_dir`, or seed a fresh one (and save it).
    pub fn open(opts: &Options) -> Result<Sim, SimError> {
        std::fs::create_dir_all(&opts.state_dir).map_err(|source| state::StoreError::Io {
            path: opts.state_dir.clone(),
            source,
        })?;
        let store = Store::new(&opts.state_dir);
        let state = match store.load()? {
            Some(state) => state,
            None => {
                let state = State::seed(&opts.node, opts.guests, tasks::now())?;
                store.save(&state)?;
                state
            }
        };
        Ok(Sim {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                store,
                task_ms: AtomicU64::new(opts.task_ms),
                auth_fail_delay_ms: AtomicU64::new(opts.auth_fail_delay_ms),
                controls: Controls::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough data for a test double.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Change the state and save it.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.lock();
        let result = f(&mut guard);
        if let Err(err) = self.inner.store.save(&guard) {
            tracing::error!(error = %err, "cannot save state");
        }
        result
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.inner.store.dir()
    }

    /// The node name.
    pub fn node(&self) -> String {
        self.with_state(|st| st.node.clone())
    }

    /// Base task duration in milliseconds.
    pub fn task_ms(&self) -> u64 {
        self.inner.task_ms.load(Ordering::Relaxed)
    }

    /// Set the base task duration.
    pub fn set_task_ms(&self, ms: u64) {
        self.inner.task_ms.store(ms, Ordering::Relaxed);
    }

    /// Delay before 401 answers.
    pub fn auth_fail_delay_ms(&self) -> u64 {
        self.inner.auth_fail_delay_ms.load(Ordering::Relaxed)
    }

    /// Set the delay before 401 answers.
    pub fn set_auth_fail_delay_ms(&self, ms: u64) {
        self.inner.auth_fail_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Fault injection and the request log.
    pub fn controls(&self) -> &Controls {
        &self.inner.controls
    }

    /// Duration of a task type: creation, restore and backup take twice the base duration.
    fn duration_ms(&self, kind: &str) -> u64 {
        let base = self.task_ms();
        match kind {
            "vzcreate" | "vzrestore" | "vzdump" => base * 2,
            _ => base,
        }
    }

    /// Start a task on a locked state and schedule its end. Returns the UPID.
    pub fn start_task(
        &self,
        st: &mut State,
        kind: &str,
        id: &str,
        user: &str,
        work: Work,
    ) -> String {
        let upid = st.start_task(
            kind,
            id,
            user,
            work,
            self.duration_ms(kind),
            tasks::now_ms(),
        );
        if let Some(task) = st.tasks.iter().find(|t| t.upid == upid && t.running()) {
            self.schedule(upid.clone(), task.end_at_ms);
        }
        upid
    }

    fn schedule(&self, upid: String, end_at_ms: i64) {
        let sim = self.clone();
        tokio::spawn(async move {
            let wait = (end_at_ms - tasks::now_ms()).max(0) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            sim.mutate(|st| st.finish_task(&upid, tasks::now()));
            tracing::debug!(%upid, "task finished");
        });
    }

    /// Schedule the end of every task that was running when the state was saved (a PVE
    /// worker survives a pveproxy restart). Must run inside a tokio runtime.
    pub fn resume_tasks(&self) {
        let running: Vec<(String, i64)> = self.with_state(|st| {
            st.tasks
                .iter()
                .filter(|t| t.running())
                .map(|t| (t.upid.clone(), t.end_at_ms))
                .collect()
        });
        for (upid, end_at_ms) in running {
            tracing::info!(%upid, "resuming task");
            self.schedule(upid, end_at_ms);
        }
    }
}
