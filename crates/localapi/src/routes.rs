//! The seven routes of DESIGN.md §4.4a, and [`app`], the router with the gate in front.
//!
//! Every handler receives the [`Caller`] the gate authenticated and acts on `caller.vmid` only:
//! no handler reads a guest id from the request, and the gate has already refused any request
//! carrying a parameter the route does not take.
//!
//! Long mutations: `POST /snapshot` answers when the snapshot exists (201), bounded by
//! [`Limits::snapshot_wait`] (then 504 `timeout`; the snapshot still completes), because the
//! controller's next step (deploy) must not start before it. `POST /rollback` and
//! `POST /backup` answer 202 with an `op_id` as soon as the op is journaled and queued: a
//! rollback stops the guest, and with it the controller waiting for the answer; a backup is
//! followed through `GET /backup/status` (seed §8).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use pve::{SnapshotName, Vmid};
use serde::Serialize;

use crate::gate;
use crate::policy::backup_due;
use crate::ports::{
    Audit, Clock, GuestMount, GuestOps, GuestView, OpError, PortError, TokenId, TokenStore,
};
use crate::ratelimit::{Limiter, RateLimit};
use crate::reply::{rfc3339, success, ApiError, Code};
use crate::request;
use crate::summary::Summariser;

/// The routes, as `(method, path)`. Anything else is 404 or 405.
pub const ROUTES: [(&str, &str); 7] = [
    ("GET", "/storage"),
    ("POST", "/snapshot"),
    ("POST", "/rollback"),
    ("POST", "/backup"),
    ("GET", "/backup/due"),
    ("GET", "/backup/status"),
    ("GET", "/restore-test/status"),
];

/// The implementations behind the server.
#[derive(Clone)]
pub struct Ports {
    /// Token storage.
    pub tokens: Arc<dyn TokenStore>,
    /// Mutations (the per-guest queue).
    pub ops: Arc<dyn GuestOps>,
    /// Read-only views.
    pub view: Arc<dyn GuestView>,
    /// Audit sink.
    pub audit: Arc<dyn Audit>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Hardening knobs. [`Limits::default`] is what the agent runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (bytes); more is 413.
    pub body_max_bytes: usize,
    /// Per-token rate limit.
    pub per_token: RateLimit,
    /// Per-address rate limit for calls that fail authentication.
    pub unauthenticated: RateLimit,
    /// TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Request line and headers must arrive within this (hyper's header read timeout).
    pub header_timeout: Duration,
    /// The body must arrive within this after the headers; else 408.
    pub body_timeout: Duration,
    /// Bound on a read route or a queued mutation's answer; else 504.
    pub request_timeout: Duration,
    /// Bound on `POST /snapshot` waiting for the snapshot; else 504.
    pub snapshot_wait: Duration,
    /// Open connections per listener. Past it, a connection still in its TLS handshake (from
    /// the address holding the most) is evicted for the new one; with none to evict, the new
    /// one is closed at once.
    pub max_connections: usize,
    /// Open connections per client address and listener; further ones are closed at once, so
    /// one guest cannot take the slots every controller shares.
    pub max_connections_per_peer: usize,
    /// Unauthenticated and rate-limited calls are counted per address over this interval and
    /// recorded as one summary entry (the first of each address in full).
    pub audit_summary_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_max_bytes: 4096,
            per_token: RateLimit::PER_TOKEN,
            unauthenticated: RateLimit::UNAUTHENTICATED,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            snapshot_wait: Duration::from_secs(120),
            max_connections: 256,
            max_connections_per_peer: 32,
            audit_summary_interval: Duration::from_secs(60),
        }
    }
}

/// Shared state of the router.
pub(crate) struct AppState {
    pub(crate) ports: Ports,
    pub(crate) limits: Limits,
    pub(crate) per_token: Limiter<TokenId>,
    pub(crate) per_peer: Limiter<Option<IpAddr>>,
    pub(crate) summary: Summariser,
}

impl AppState {
    pub(crate) fn new(ports: Ports, limits: Limits) -> Arc<Self> {
        Arc::new(AppState {
            per_token: Limiter::new(limits.per_token),
            per_peer: Limiter::new(limits.unauthenticated),
            summary: Summariser::default(),
            ports,
            limits,
        })
    }

    /// Ends the summary interval: hands each peer's summary to the audit sink.
    pub(crate) fn flush_summaries(&self) {
        for summary in self.summary.drain(self.ports.clock.now()) {
            tracing::warn!(
                peer = ?summary.peer,
                other_addresses = summary.other_addresses,
                calls = summary.calls,
                by_outcome = ?summary.by_outcome,
                "local api refused calls from one address, summarised"
            );
            self.ports.audit.summary(summary);
        }
    }
}

/// The authenticated caller, put into the request by the gate.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The token used.
    pub token_id: TokenId,
    /// The token's guest: the only guest this request can touch.
    pub vmid: Vmid,
}

/// The router with the gate in front; serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (the gate rate-limits failed
/// authentication per client address). Testable without a socket.
///
/// Summaries of refused calls are flushed by [`crate::start`]'s timer; a router built here
/// alone records each peer's first refusal and counts the rest.
pub fn app(ports: Ports, limits: Limits) -> Router {
    router(AppState::new(ports, limits))
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/storage", get(storage))
        .route("/snapshot", post(snapshot))
        .route("/rollback", post(rollback))
        .route("/backup", post(backup))
        .route("/backup/due", get(backup_due_route))
        .route("/backup/status", get(backup_status))
        .route("/restore-test/status", get(restore_test_status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ))
        .with_state(state)
}

type Handler = Result<Response, ApiError>;

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "wrong method for route")
}

fn port_failed(err: PortError) -> ApiError {
    tracing::error!(error = %crate::ErrorChain(&err), "local api port failed");
    ApiError::new(Code::Internal, err.to_string())
}

fn op_failed(err: OpError) -> ApiError {
    match err {
        OpError::Busy { retry_after, .. } => {
            ApiError::new(Code::Busy, err.to_string()).retry_after(retry_after)
        }
        OpError::Conflict { .. } => ApiError::new(Code::Conflict, err.to_string()),
        OpError::NoBackupPolicy { .. } => ApiError::new(Code::NoBackupPolicy, err.to_string()),
        OpError::BackupNotDue { retry_after, .. } => {
            ApiError::new(Code::BackupNotDue, err.to_string()).retry_after(retry_after)
        }
        OpError::SnapshotLimit { ref oldest, .. } => {
            let oldest = oldest.as_str().to_owned();
            ApiError::new(Code::SnapshotLimit, err.to_string()).oldest(oldest)
        }
        OpError::RollbackNotAllowed { .. } => {
            ApiError::new(Code::RollbackNotAllowed, err.to_string())
        }
        // The token's guest vanished between the gate's check and the op.
        OpError::GuestGone { .. } => ApiError::new(Code::Unauthorized, err.to_string()),
        OpError::Failed { .. } => {
            tracing::warn!(error = %err, "local api operation failed");
            ApiError::new(Code::Internal, err.to_string())
        }
        OpError::Port(port) => port_failed(port),
    }
}

#[derive(Serialize)]
struct StorageReply {
    mounts: Vec<GuestMount>,
}

async fn storage(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Handler {
    let mounts = app
        .ports
        .view
        .storage(caller.vmid)
        .await
        .map_err(port_failed)?;
    Ok(success(StatusCode::OK, StorageReply { mounts }))
}

#[derive(Serialize)]
struct SnapshotReply<'a> {
    name: &'a str,
    op_id: String,
}

async fn snapshot(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Handler {
    let name = request::snapshot_name(&body)?;
    let done = app
        .ports
        .ops
        .snapshot(caller.vmid, name.clone())
        .await
        .map_err(op_failed)?;
    Ok(success(
        StatusCode::CREATED,
        SnapshotReply {
            name: name.as_str(),
            op_id: done.op_id,
        },
    ))
}

#[derive(Serialize)]
struct QueuedReply {
    op_id: String,
    status: &'static str,
}

async fn rollback(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Handler {
    let name: SnapshotName = request::snapshot_name(&body)?;
    // Only to a snapshot of this guest: the list is the caller's own.
    let known = app
        .ports
        .ops
        .list_snapshots(caller.vmid)
        .await
        .map_err(port_failed)?;
    if !known.contains(&name) {
        return Err(ApiError::new(
            Code::NotFound,
            format!("guest {} has no snapshot {name}", caller.vmid.get()),
        ));
    }
    let accepted = app
        .ports
        .ops
        .rollback(caller.vmid, name)
        .await
        .map_err(op_failed)?;
    Ok(success(
        StatusCode::ACCEPTED,
        QueuedReply {
            op_id: accepted.op_id,
            status: "queued",
        },
    ))
}

async fn backup(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Handler {
    request::empty_object(&body)?;
    let accepted = app.ports.ops.backup(caller.vmid).await.map_err(op_failed)?;
    Ok(success(
        StatusCode::ACCEPTED,
        QueuedReply {
            op_id: accepted.op_id,
            status: "queued",
        },
    ))
}

#[derive(Serialize)]
struct DueReply {
    due: bool,
    reason: crate::policy::DueReason,
    next_at: Option<String>,
    schedule: Option<String>,
}

async fn backup_due_route(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Handler {
    let view = &app.ports.view;
    let policy = view.backup_policy(caller.vmid).await.map_err(port_failed)?;
    let status = view.backup_status(caller.vmid).await.map_err(port_failed)?;
    let due = backup_due(policy.as_ref(), &status, app.ports.clock.now());
    Ok(success(
        StatusCode::OK,
        DueReply {
            due: due.due,
            reason: due.reason,
            next_at: due.next_at.map(rfc3339),
            schedule: policy.map(|p| p.schedule.to_string()),
        },
    ))
}

#[derive(Serialize)]
struct BackupStatusReply {
    state: crate::ports::BackupState,
    op_id: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    last_success_at: Option<String>,
}

async fn backup_status(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Handler {
    let s = app
        .ports
        .view
        .backup_status(caller.vmid)
        .await
        .map_err(port_failed)?;
    Ok(success(
        StatusCode::OK,
        BackupStatusReply {
            state: s.state,
            op_id: s.op_id,
            started_at: s.started_at.map(rfc3339),
            finished_at: s.finished_at.map(rfc3339),
            last_success_at: s.last_success_at.map(rfc3339),
        },
    ))
}

#[derive(Serialize)]
struct RestoreTestReply {
    state: crate::ports::RestoreTestState,
    last_run_at: Option<String>,
    last_pass_at: Option<String>,
}

async fn restore_test_status(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Handler {
    let s = app
        .ports
        .view
        .restore_test_status(caller.vmid)
        .await
        .map_err(port_failed)?;
    Ok(success(
        StatusCode::OK,
        RestoreTestReply {
            state: s.state,
            last_run_at: s.last_run_at.map(rfc3339),
            last_pass_at: s.last_pass_at.map(rfc3339),
        },
    ))
}
