//! Shared state of a running reference hub: the persistent [`Store`], the test faults, the
//! request log and the channel that takes the agent listener down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::Store;
use crate::HubSimError;

/// Agent requests kept in the log.
const MAX_LOG: usize = 2000;

/// Faults injected into the agent API (`POST /admin/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Answer the next n directive fetches with `200` and a body that is not a directive.
    #[serde(default)]
    pub garbage: u32,
    /// Answer the next `count` agent requests with this HTTP status.
    #[serde(default)]
    pub status: Option<StatusFault>,
}

/// A status-code fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFault {
    /// The status (e.g. 500, 503, 403).
    pub code: u16,
    /// How many requests.
    pub count: u32,
}

/// One agent request, as the hub saw it (`GET /admin/requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Unix ms.
    pub at_ms: u64,
    /// `GET` / `POST`.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Host id from the path.
    pub host: String,
    /// Status answered.
    pub status: u16,
    /// `If-None-Match` sent.
    pub if_none_match: Option<String>,
    /// `Content-Encoding` sent.
    pub content_encoding: Option<String>,
    /// Request body size as received.
    pub body_bytes: usize,
}

/// Cheap to clone; one per running hub.
#[derive(Clone)]
pub struct HubState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) requests: Mutex<VecDeque<RequestRecord>>,
    pub(crate) deadline: Duration,
    pub(crate) api_key: String,
    pub(crate) down_tx: Option<mpsc::UnboundedSender<Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements; a panicked handler must not wedge the hub.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HubState {
    /// Opens the state under `dir`. `down_tx` receives `POST /admin/down` requests (absent for
    /// router-only tests).
    pub fn open(
        dir: &std::path::Path,
        deadline: Duration,
        down_tx: Option<mpsc::UnboundedSender<Duration>>,
    ) -> Result<HubState, HubSimError> {
        let store = Store::open(dir)?;
        let api_key = store.data.api_key.clone();
        Ok(HubState {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                faults: Mutex::new(Faults::default()),
                requests: Mutex::new(VecDeque::new()),
                deadline,
                api_key,
                down_tx,
            }),
        })
    }

    /// The agents' Bearer key.
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// The dead-man's-switch window.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.store)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.inner.faults)
    }

    pub(crate) fn log_request(&self, rec: RequestRecord) {
        let mut log = lock(&self.inner.requests);
        log.push_back(rec);
        while log.len() > MAX_LOG {
            log.pop_front();
        }
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.requests).iter().cloned().collect()
    }
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix ms as RFC 3339 UTC.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
