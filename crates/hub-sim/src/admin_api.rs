//! The admin API, on its own listener (`admin_url`) so that `POST /admin/down` can take the
//! agent listener away while tests keep control. No authentication: this is a reference hub
//! for tests and the demo, bound to loopback, not a production hub.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use hub::HubDirectedConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::agent_api::{error, valid_host};
use crate::state::{now_ms, rfc3339_ms, Faults, HubState};
use crate::store::QueuedOp;

/// The admin router.
pub fn admin_app(state: HubState) -> Router {
    Router::new()
        .route("/admin/hosts", get(list_hosts))
        .route(
            "/admin/hosts/{host}/desired",
            put(put_desired).get(get_desired),
        )
        .route("/admin/hosts/{host}/ops", post(post_op).get(get_ops))
        .route("/admin/hosts/{host}/report", get(get_report))
        .route("/admin/hosts/{host}/audit", get(get_audit))
        .route("/admin/hosts/{host}/config", put(put_config))
        .route("/admin/alerts", get(alerts))
        .route(
            "/admin/faults",
            post(post_faults).get(get_faults).delete(clear_faults),
        )
        .route("/admin/down", post(post_down))
        .route("/admin/requests", get(requests))
        .with_state(state)
}

fn check_host(host: &str) -> Result<(), Response> {
    if valid_host(host) {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "bad-host",
            "host id must be 1-64 of A-Z a-z 0-9 . _ -",
        ))
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad-json", e.to_string()))
}

fn saved(store: &crate::store::Store) -> Result<(), Response> {
    store
        .save()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))
}

/// `PUT /admin/hosts/{host}/desired`: any JSON object with an unsigned `generation`. The hub
/// does not judge it (a compromised hub would not either): the agent does.
async fn put_desired(
    State(state): State<HubState>,
    Path(host): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = check_host(&host) {
        return r;
    }
    let doc = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(generation) = doc.get("generation").and_then(Value::as_u64) else {
        return error(
            StatusCode::BAD_REQUEST,
            "no-generation",
            "desired state needs an unsigned \"generation\"",
        );
    };
    if !doc.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "not-object",
            "desired state must be a JSON object",
        );
    }
    let mut store = state.store();
    let rec = store.host(&host, now_ms());
    rec.desired = Some(doc);
    rec.generation = generation;
    if let Err(r) = saved(&store) {
        return r;
    }
    info!(host, generation, "desired state set");
    Json(json!({"host": host, "generation": generation})).into_response()
}

async fn get_desired(State(state): State<HubState>, Path(host): Path<String>) -> Response {
    let store = state.store();
    match store.data.hosts.get(&host).and_then(|r| r.desired.clone()) {
        Some(d) => Json(d).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "none",
            "no desired state for this host",
        ),
    }
}

/// `POST /admin/hosts/{host}/ops`: a signed op in wire form, queued until its outcome.
async fn post_op(State(state): State<HubState>, Path(host): Path<String>, body: Bytes) -> Response {
    if let Err(r) = check_host(&host) {
        return r;
    }
    let wire = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !wire.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "not-object",
            "a signed op is a JSON object",
        );
    }
    let op_id = op_id_of(&wire, &body);
    let mut store = state.store();
    let rec = store.host(&host, now_ms());
    rec.ops.retain(|o| o.op_id != op_id);
    rec.ops.push(QueuedOp {
        op_id: op_id.clone(),
        wire,
        queued_ms: now_ms(),
    });
    let queued = rec.ops.len();
    if let Err(r) = saved(&store) {
        return r;
    }
    info!(host, op_id, "signed op queued");
    Json(json!({"op_id": op_id, "queued": queued})).into_response()
}

/// The op id from the base64 payload, if it decodes to JSON with one; otherwise a digest of
/// the document (the hub relays opaque blobs and must not depend on their contents).
fn op_id_of(wire: &Value, raw: &[u8]) -> String {
    wire.get("payload")
        .and_then(Value::as_str)
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|p| p.get("op_id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(raw))))
}

async fn get_ops(State(state): State<HubState>, Path(host): Path<String>) -> Response {
    let store = state.store();
    let Some(rec) = store.data.hosts.get(&host) else {
        return Json(json!({"queued": [], "outcomes": []})).into_response();
    };
    let queued: Vec<Value> = rec
        .ops
        .iter()
        .map(|o| json!({"op_id": o.op_id, "queued_at": rfc3339_ms(o.queued_ms), "wire": o.wire}))
        .collect();
    Json(json!({"queued": queued, "outcomes": rec.outcomes})).into_response()
}

async fn get_report(State(state): State<HubState>, Path(host): Path<String>) -> Response {
    let store = state.store();
    match store
        .data
        .hosts
        .get(&host)
        .and_then(|r| r.last_report.clone())
    {
        Some(r) => Json(r).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "none",
            "no report from this host yet",
        ),
    }
}

async fn get_audit(State(state): State<HubState>, Path(host): Path<String>) -> Response {
    let store = state.store();
    let Some(rec) = store.data.hosts.get(&host) else {
        return error(StatusCode::NOT_FOUND, "none", "unknown host");
    };
    Json(json!({"audit_seq": rec.audit_seq, "entries": rec.audit, "gaps": rec.audit_gaps}))
        .into_response()
}

async fn put_config(
    State(state): State<HubState>,
    Path(host): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = check_host(&host) {
        return r;
    }
    let config: HubDirectedConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-config", e.to_string()),
    };
    let mut store = state.store();
    store.host(&host, now_ms()).config = config.clone();
    if let Err(r) = saved(&store) {
        return r;
    }
    Json(config).into_response()
}

async fn list_hosts(State(state): State<HubState>) -> Response {
    let store = state.store();
    let hosts: Vec<Value> = store
        .data
        .hosts
        .iter()
        .map(|(id, r)| {
            json!({
                "host_id": id,
                "generation": r.generation,
                "queued_ops": r.ops.len(),
                "reports": r.reports,
                "last_seen": r.last_seen_ms.map(rfc3339_ms),
                "audit_seq": r.audit_seq,
            })
        })
        .collect();
    Json(json!({"hosts": hosts})).into_response()
}

/// `GET /admin/alerts`: the dead-man's switch. A host is overdue when its last check-in (or,
/// if it never checked in, its registration) is older than the deadline.
async fn alerts(State(state): State<HubState>) -> Response {
    let now = now_ms();
    let deadline_ms = state.deadline().as_millis() as u64;
    let store = state.store();
    let alerts: Vec<Value> = store
        .data
        .hosts
        .iter()
        .filter_map(|(id, r)| {
            let since = r.last_seen_ms.unwrap_or(r.registered_ms);
            let silent = now.saturating_sub(since);
            (silent > deadline_ms).then(|| {
                json!({
                    "host_id": id,
                    "kind": "missed-check-in",
                    "last_seen": r.last_seen_ms.map(rfc3339_ms),
                    "silent_s": silent as f64 / 1000.0,
                    "deadline_s": deadline_ms as f64 / 1000.0,
                })
            })
        })
        .collect();
    Json(json!({"deadline_s": deadline_ms as f64 / 1000.0, "alerts": alerts})).into_response()
}

async fn post_faults(State(state): State<HubState>, body: Bytes) -> Response {
    let add: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-faults", e.to_string()),
    };
    let mut faults = state.faults();
    faults.garbage += add.garbage;
    if add.status.is_some() {
        faults.status = add.status;
    }
    Json(faults.clone()).into_response()
}

async fn get_faults(State(state): State<HubState>) -> Response {
    Json(state.faults().clone()).into_response()
}

async fn clear_faults(State(state): State<HubState>) -> Response {
    *state.faults() = Faults::default();
    Json(Faults::default()).into_response()
}

#[derive(Deserialize)]
struct Down {
    ms: u64,
}

/// `POST /admin/down {"ms": N}`: closes the agent listener for N ms (connections refused),
/// then listens again on the same port.
async fn post_down(State(state): State<HubState>, body: Bytes) -> Response {
    let down: Down = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-down", e.to_string()),
    };
    match &state.inner.down_tx {
        Some(tx) if tx.send(Duration::from_millis(down.ms)).is_ok() => {
            info!(ms = down.ms, "agent listener going down");
            Json(json!({"down_ms": down.ms})).into_response()
        }
        _ => error(
            StatusCode::CONFLICT,
            "no-listener",
            "this hub has no agent listener to take down",
        ),
    }
}

#[derive(Deserialize)]
struct RequestsQuery {
    host: Option<String>,
}

async fn requests(State(state): State<HubState>, Query(q): Query<RequestsQuery>) -> Response {
    let list: Vec<_> = state
        .requests()
        .into_iter()
        .filter(|r| q.host.as_deref().is_none_or(|h| h == r.host))
        .collect();
    Json(json!({"requests": list})).into_response()
}
