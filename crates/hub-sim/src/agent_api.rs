//! The agent-facing API: hub protocol v1 (`docs/hub-protocol.md`).
//!
//! `GET /api/v1/hosts/{host}/desired` (conditional on `If-None-Match`) and
//! `POST /api/v1/hosts/{host}/report` (optionally gzip). Every authenticated request is a
//! check-in for the dead-man's switch; injected faults apply after authentication.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hub::{Ack, Directive, HostReport, ReportAck, MAX_REPORT_BYTES, PROTOCOL_VERSION};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::state::{now_ms, HubState, RequestRecord};

/// Largest request body accepted on the wire (gzip or not) before decoding.
const MAX_WIRE_BODY: usize = 2 * MAX_REPORT_BYTES;

/// The agent API router.
pub fn agent_app(state: HubState) -> Router {
    Router::new()
        .route("/api/v1/hosts/{host}/desired", get(get_desired))
        .route("/api/v1/hosts/{host}/report", post(post_report))
        .layer(DefaultBodyLimit::max(MAX_WIRE_BODY))
        .with_state(state)
}

/// A JSON error body `{"error":{"code","message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

pub(crate) fn valid_host(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Authenticates, validates the host id, records the check-in and applies status faults.
fn admit(state: &HubState, headers: &HeaderMap, host: &str) -> Result<(), Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = presented.is_some_and(|k| ct_eq(k.as_bytes(), state.api_key().as_bytes()));
    if !ok {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong api key",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"felhom-hub\""),
        );
        return Err(resp);
    }
    if !valid_host(host) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad-host",
            "host id must be 1-64 of A-Z a-z 0-9 . _ -",
        ));
    }
    {
        let mut store = state.store();
        let now = now_ms();
        store.host(host, now).last_seen_ms = Some(now);
        if let Err(e) = store.save() {
            warn!(error = %e, "cannot save hub state");
        }
    }
    let mut faults = state.faults();
    if let Some(f) = faults.status.as_mut() {
        let code = f.code;
        f.count = f.count.saturating_sub(1);
        if f.count == 0 {
            faults.status = None;
        }
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(error(status, "injected", "fault injected by /admin/faults"));
    }
    Ok(())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn record(
    state: &HubState,
    method: Method,
    host: &str,
    path: String,
    headers: &HeaderMap,
    status: StatusCode,
    body_bytes: usize,
) {
    state.log_request(RequestRecord {
        at_ms: now_ms(),
        method: method.to_string(),
        path,
        host: host.to_owned(),
        status: status.as_u16(),
        if_none_match: header_str(headers, header::IF_NONE_MATCH),
        content_encoding: header_str(headers, header::CONTENT_ENCODING),
        body_bytes,
    });
}

async fn get_desired(
    State(state): State<HubState>,
    Path(host): Path<String>,
    headers: HeaderMap,
) -> Response {
    let resp = desired_response(&state, &host, &headers);
    record(
        &state,
        Method::GET,
        &host,
        format!("/api/v1/hosts/{host}/desired"),
        &headers,
        resp.status(),
        0,
    );
    resp
}

fn desired_response(state: &HubState, host: &str, headers: &HeaderMap) -> Response {
    if let Err(resp) = admit(state, headers, host) {
        return resp;
    }
    {
        let mut faults = state.faults();
        if faults.garbage > 0 {
            faults.garbage -= 1;
            // Starts like a directive, then breaks off: a truncated answer from a broken proxy.
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"v\":1,\"generation\":99,\"desired\":{\"gue",
            )
                .into_response();
        }
    }
    let directive = {
        let mut store = state.store();
        let rec = store.host(host, now_ms());
        Directive {
            v: PROTOCOL_VERSION,
            generation: rec.generation,
            desired: rec.desired.clone(),
            ops: rec.ops.iter().map(|o| o.wire.clone()).collect(),
            config: rec.config.clone(),
            ack: Ack {
                audit_seq: rec.audit_seq,
            },
        }
    };
    let etag = etag_of(&directive);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let body = match serde_json::to_vec(&directive) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if gzip_ok && body.len() > 1024 {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CONTENT_ENCODING, "gzip".to_owned()),
                (header::ETAG, etag),
            ],
            hub::gzip_bytes(&body),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

/// The ETag covers what the agent acts on: generation, desired state, ops and config. The
/// `ack` field is informational in the directive (the report answer carries it), so a new
/// acknowledgement alone does not defeat the conditional GET.
fn etag_of(d: &Directive) -> String {
    let basis = serde_json::json!([d.generation, d.desired, d.ops, d.config]);
    let digest = Sha256::digest(basis.to_string().as_bytes());
    format!("\"{}\"", &hex::encode(digest)[..32])
}

async fn post_report(
    State(state): State<HubState>,
    Path(host): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = report_response(&state, &host, &headers, &body);
    record(
        &state,
        Method::POST,
        &host,
        format!("/api/v1/hosts/{host}/report"),
        &headers,
        resp.status(),
        body.len(),
    );
    resp
}

fn report_response(state: &HubState, host: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Err(resp) = admit(state, headers, host) {
        return resp;
    }
    let encoding = header_str(headers, header::CONTENT_ENCODING).unwrap_or_default();
    let json = match encoding.trim() {
        "" | "identity" => body.to_vec(),
        e if e.eq_ignore_ascii_case("gzip") => match hub::gunzip_bounded(body, MAX_REPORT_BYTES) {
            Ok(j) => j,
            Err(hub::GunzipError::TooLarge) => return too_large(),
            Err(hub::GunzipError::Corrupt(reason)) => {
                return error(StatusCode::BAD_REQUEST, "bad-gzip", reason)
            }
        },
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad-encoding",
                format!("content-encoding {other:?} is not supported"),
            )
        }
    };
    if json.len() > MAX_REPORT_BYTES {
        return too_large();
    }
    let raw: serde_json::Value = match serde_json::from_slice(&json) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-json", e.to_string()),
    };
    let report: HostReport = match serde_json::from_value(raw.clone()) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-report",
                e.to_string(),
            )
        }
    };
    if report.v != PROTOCOL_VERSION {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-version",
            format!("report is v{}, this hub speaks v1", report.v),
        );
    }
    if report.host_id != host {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "host-mismatch",
            format!(
                "report is for {:?}, the path names {host:?}",
                report.host_id
            ),
        );
    }
    let audit_seq = {
        let mut store = state.store();
        let rec = store.host(host, now_ms());
        rec.reports += 1;
        for o in &report.op_outcomes {
            rec.record_outcome(&o.op_id, serde_json::to_value(o).unwrap_or_default());
        }
        if let Some(gap) = &report.audit.omitted {
            rec.audit_gaps
                .push(serde_json::to_value(gap).unwrap_or_default());
        }
        let seq = rec.record_audit(&report.audit.entries);
        rec.last_report = Some(raw);
        if let Err(e) = store.save() {
            warn!(error = %e, "cannot save hub state");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                "cannot store the report",
            );
        }
        seq
    };
    info!(
        host,
        guests = report.guests.len(),
        audit_seq,
        "report stored"
    );
    Json(ReportAck {
        v: PROTOCOL_VERSION,
        ack: Ack { audit_seq },
    })
    .into_response()
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("a report is at most {MAX_REPORT_BYTES} bytes of JSON"),
    )
}
