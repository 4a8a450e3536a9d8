//! Test controls under `/_sim/` (unauthenticated, for loopback test use only): fault
//! injection (delays, dropped connections, injected 501/59x answers), task timing, storage
//! backends (reachability, latency), removable filesystems (`/_sim/usb`, see [`crate::usb`]),
//! volume content tags and archive contents, ACLs and roles, the request log, the
//! certificate, and `pct create` as root on the host. Documented in the crate README.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::acl::{normalize_path, AclEntry};
use crate::envelope::{ApiError, Reply};
use crate::server::Call;
use crate::{lxc, request, tasks, usb, Sim};

/// How many request-log entries are kept.
const LOG_CAP: usize = 10_000;

/// A fault rule: applies to requests whose path (without `/api2/json`) starts with `prefix`.
#[derive(Debug, Clone)]
struct Rule {
    prefix: String,
    remaining: u64,
    ms: u64,
    /// Drop rules only: close the connection after the request was processed instead of
    /// before.
    after: bool,
    /// Only requests with this HTTP method (upper case); `None`: any. Lets a test drop the
    /// `POST …/snapshot` without also dropping the `GET …/snapshot` list read before it.
    method: Option<String>,
}

/// What the front must do with a request once the delay and drop rules have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a drop-after rule has been consumed and must be honoured"]
pub enum Disposition {
    /// Process the request and send the answer.
    Answer,
    /// Process the request (the handler runs, state changes, tasks start), log it, then close
    /// the connection without sending the answer: the client cannot tell whether PVE acted.
    DropAfter,
}

/// An injected error answer (`/_sim/fault`) for requests whose path starts with `prefix`.
#[derive(Debug, Clone)]
struct StatusFault {
    prefix: String,
    remaining: u64,
    status: u16,
    message: Option<String>,
}

/// Statuses `/_sim/fault` can inject: 501 (PVE's "not implemented") and the AnyEvent::HTTP
/// pseudo-statuses pveproxy passes through when it cannot forward a call
/// (pve-http-server `AnyEvent.pm:856-880`).
const FAULT_STATUSES: [u16; 5] = [501, 595, 596, 597, 599];

/// AnyEvent::HTTP's meaning of each pseudo-status, used when a rule gives no message.
fn default_fault_message(status: u16) -> &'static str {
    match status {
        595 => "Errors during connection establishment, proxy handshake: Connection refused",
        596 => "Errors during TLS negotiation, request sending or header processing",
        597 => "Errors during body receiving or processing",
        _ => "Other, usually nonretryable, errors (garbled URL etc.)",
    }
}

/// One entry of the request log.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without `/api2/json`, percent-decoded.
    pub path: String,
    /// Parameters as received (query merged over body).
    pub params: Value,
    /// HTTP status.
    pub status: u16,
    /// Response body (`None` for empty bodies).
    pub body: Option<Value>,
    /// `validate_returns` violations of a 200 answer.
    pub schema_errors: Option<Value>,
    /// Whether the answer was never sent because a `/_sim/drop` rule with `after` closed the
    /// connection once the request had been processed.
    pub dropped_after: bool,
}

/// Runtime fault injection and the request log (not persisted).
#[derive(Default)]
pub struct Controls {
    delays: Mutex<Vec<Rule>>,
    drops: Mutex<Vec<Rule>>,
    faults: Mutex<Vec<StatusFault>>,
    log: Mutex<VecDeque<Value>>,
    seq: AtomicU64,
    usb_unplugged: AtomicBool,
}

/// Payload used to unwind a connection task so hyper closes the socket without answering.
struct DropConnection;

/// Close the current connection without an HTTP response: unwinds the connection task
/// (`resume_unwind` skips the panic hook, so nothing is printed), and hyper drops the socket.
/// State changed by a handler before this call stays changed, and task workers are not
/// tied to the connection, which is what makes a drop after processing ambiguous for the
/// client.
pub fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new(DropConnection))
}

fn take_rule(rules: &Mutex<Vec<Rule>>, method: &str, path: &str) -> Option<Rule> {
    let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
    let idx = rules.iter().position(|r| {
        path.starts_with(&r.prefix) && r.method.as_deref().is_none_or(|m| m == method)
    })?;
    let rule = rules[idx].clone();
    rules[idx].remaining -= 1;
    if rules[idx].remaining == 0 {
        rules.remove(idx);
    }
    Some(rule)
}

impl Controls {
    /// Apply delay and drop rules to a request for `path`, before it is processed. A drop
    /// (without `after`) unwinds the connection task here, so the request never reaches a
    /// handler; a drop with `after` is returned as [`Disposition::DropAfter`] for the caller
    /// to honour with [`drop_connection`] once the request has been processed and logged.
    ///
    /// Before and after drops share one list, so rules for the same path apply in the order
    /// they were added.
    pub async fn before_response(&self, method: &str, path: &str) -> Disposition {
        if let Some(rule) = take_rule(&self.delays, method, path) {
            tokio::time::sleep(Duration::from_millis(rule.ms)).await;
        }
        match take_rule(&self.drops, method, path) {
            Some(rule) if rule.after => Disposition::DropAfter,
            Some(_) => {
                tracing::info!(path, "dropping connection before processing");
                drop_connection()
            }
            None => Disposition::Answer,
        }
    }

    /// Append to the request log.
    pub fn log_request(&self, entry: LoggedRequest) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(json!({
            "seq": seq,
            "time": tasks::now_ms() as f64 / 1000.0,
            "method": entry.method,
            "path": entry.path,
            "params": entry.params,
            "status": entry.status,
            "response": entry.body,
            "schema_errors": entry.schema_errors,
            "dropped_after": entry.dropped_after,
        }));
    }

    /// Whether the simulated USB disk is unplugged.
    pub fn usb_unplugged(&self) -> bool {
        self.usb_unplugged.load(Ordering::Relaxed)
    }
}

/// The injected answer for an API request, if a `/_sim/fault` rule matches its path (which
/// consumes one use of the rule); the request is logged like any other.
///
/// Only authenticated requests are affected, because pveproxy checks the token before it
/// forwards a call (pve-manager `HTTPServer.pm:85-93`, `AnyEvent.pm:734-888`): a request with
/// a bad token still gets its 401 and leaves the rule armed. 595/596/597/599 have an empty body
/// and the message as the reason phrase (AnyEvent::HTTP pseudo-statuses passed through,
/// `AnyEvent.pm:856-880`); 501 is PVE's JSON `{"data":null,"message":"Method '…' not
/// implemented"}` (`HTTPServer.pm:148-151`). `dropped_after` is only recorded in the log:
/// the caller closes the connection instead of sending the answer.
pub fn injected_fault(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    dropped_after: bool,
) -> Option<Response<Body>> {
    if !matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return None;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    sim.with_state(|st| crate::auth::authenticate(&st.access, auth))
        .ok()?;
    let fault = {
        let mut faults = sim
            .controls()
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let idx = faults.iter().position(|f| path.starts_with(&f.prefix))?;
        let fault = faults[idx].clone();
        faults[idx].remaining -= 1;
        if faults[idx].remaining == 0 {
            faults.remove(idx);
        }
        fault
    };
    let (resp, logged_body) = if fault.status == 501 {
        let message = fault
            .message
            .unwrap_or_else(|| format!("Method '{method} {path}' not implemented"));
        let err = ApiError::NotImplemented(message);
        let logged = err.body();
        (err.into_response(), logged)
    } else {
        let message = fault
            .message
            .unwrap_or_else(|| default_fault_message(fault.status).to_string());
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(message.into_bytes()) {
            resp.extensions_mut().insert(reason);
        }
        (resp, None)
    };
    tracing::info!(%method, path, status = fault.status, "injecting fault");
    sim.controls().log_request(LoggedRequest {
        method: method.to_string(),
        path: path.to_string(),
        params: received_params(method, query, headers, body),
        status: fault.status,
        body: logged_body,
        schema_errors: None,
        dropped_after,
    });
    Some(resp)
}

/// The parameters of a request as received (query over body), for the log; `null` when they
/// cannot be parsed.
fn received_params(method: &Method, query: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let Ok(query) = request::parse_form(query.as_bytes()) else {
        return Value::Null;
    };
    if !matches!(*method, Method::POST | Method::PUT) {
        return Value::Object(query);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match request::parse_body(ct, body) {
        Ok(mut params) => {
            params.extend(query);
            Value::Object(params)
        }
        Err(_) => Value::Null,
    }
}

/// The `/_sim/` routes.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/fail-next", post(fail_next))
        .route("/_sim/delay", post(delay))
        .route("/_sim/drop", post(drop_responses))
        .route("/_sim/fault", post(fault))
        .route("/_sim/storage/{id}", post(storage_knob))
        .route("/_sim/task-ms", post(task_ms))
        .route("/_sim/auth-fail-delay", post(auth_fail_delay))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/tasks", get(task_times))
        .route("/_sim/acl", post(set_acl))
        .route("/_sim/role", post(set_role))
        .route("/_sim/unlock", post(unlock))
        .route("/_sim/usb", post(usb).get(usb_list))
        .route("/_sim/volume", get(volume_get).post(volume_set))
        .route("/_sim/archive", get(archive))
        .route("/_sim/pct/create", post(pct_create))
        .route("/_sim/cert", get(cert))
}

fn ok() -> Response<Body> {
    json_response(StatusCode::OK, json!({"ok": true}))
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn bad(msg: &str) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg}))
}

async fn body_json(req: Request<Body>) -> Result<Value, Response<Body>> {
    let bytes = to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|_| bad("unreadable body"))?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(&format!("invalid JSON: {e}")))
}

#[derive(Deserialize)]
struct FailNext {
    vmid: u32,
    exitstatus: String,
}

async fn fail_next(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match serde_json::from_value::<FailNext>(v) {
        Ok(f) => {
            sim.mutate(|st| st.fail_next.insert(f.vmid, f.exitstatus));
            ok()
        }
        Err(e) => bad(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct FaultReq {
    #[serde(default)]
    ms: u64,
    #[serde(default = "one")]
    count: u64,
    #[serde(default)]
    path_prefix: String,
    /// `/_sim/drop` only (ignored by `/_sim/delay`).
    #[serde(default)]
    after: bool,
    /// Only requests with this method (`GET`, `POST`, …); absent: any.
    #[serde(default)]
    method: Option<String>,
}

fn one() -> u64 {
    1
}

async fn add_rule(list: &Mutex<Vec<Rule>>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match serde_json::from_value::<FaultReq>(v) {
        Ok(f) if f.count > 0 => {
            list.lock().unwrap_or_else(|e| e.into_inner()).push(Rule {
                prefix: f.path_prefix,
                remaining: f.count,
                ms: f.ms,
                after: f.after,
                method: f.method.map(|m| m.to_ascii_uppercase()),
            });
            ok()
        }
        Ok(_) => bad("count must be at least 1"),
        Err(e) => bad(&e.to_string()),
    }
}

async fn delay(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    add_rule(&sim.controls().delays, req).await
}

async fn drop_responses(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    add_rule(&sim.controls().drops, req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRuleReq {
    status: u16,
    #[serde(default)]
    message: Option<String>,
    #[serde(default = "one")]
    count: u64,
    #[serde(default)]
    path_prefix: String,
}

/// `POST /_sim/fault {"path_prefix":"/nodes/pve/status","status":596,"message":"…","count":1}`.
async fn fault(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = match serde_json::from_value::<FaultRuleReq>(v) {
        Ok(f) => f,
        Err(e) => return bad(&e.to_string()),
    };
    if !FAULT_STATUSES.contains(&f.status) {
        return bad("status must be one of 501, 595, 596, 597, 599");
    }
    if f.count == 0 {
        return bad("count must be at least 1");
    }
    if let Some(m) = &f.message {
        // 59x answers carry the message only in the reason phrase, so it must be one.
        if m.trim().is_empty() || hyper::ext::ReasonPhrase::try_from(m.as_bytes()).is_err() {
            return bad("message must be one line of printable text");
        }
    }
    sim.controls()
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(StatusFault {
            prefix: f.path_prefix,
            remaining: f.count,
            status: f.status,
            message: f.message,
        });
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageKnobReq {
    #[serde(default)]
    reachable: Option<bool>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    server_fingerprint: Option<String>,
    #[serde(default)]
    datastores: Option<Vec<String>>,
}

/// `POST /_sim/storage/{id} {"reachable":false,"latency_ms":10000,"server_fingerprint":"AA:…",
/// "datastores":["store1"]}`: the backend's knobs.
/// Either field may be left out (it keeps its value); the id need not exist yet, so a test
/// can make `POST /storage` meet an unreachable server.
async fn storage_knob(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let k =
        match serde_json::from_value::<StorageKnobReq>(v) {
            Ok(k)
                if k.reachable.is_some()
                    || k.latency_ms.is_some()
                    || k.server_fingerprint.is_some()
                    || k.datastores.is_some() =>
            {
                k
            }
            Ok(_) => return bad(
                "expected one of reachable (bool), latency_ms (N), server_fingerprint, datastores",
            ),
            Err(e) => return bad(&e.to_string()),
        };
    sim.mutate(|st| {
        let knob = st.storage_knobs.entry(id).or_default();
        if let Some(r) = k.reachable {
            knob.unreachable = !r;
        }
        if let Some(ms) = k.latency_ms {
            knob.latency_ms = ms;
        }
        if let Some(fp) = k.server_fingerprint {
            // An empty string clears the pin requirement.
            knob.server_fingerprint = Some(fp).filter(|f| !f.is_empty());
        }
        if let Some(list) = k.datastores {
            knob.datastores = Some(list);
        }
    });
    ok()
}

async fn task_ms(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    match body_json(req)
        .await
        .map(|v| v.get("ms").and_then(Value::as_u64))
    {
        Ok(Some(ms)) => {
            sim.set_task_ms(ms);
            ok()
        }
        Ok(None) => bad("expected {\"ms\": N}"),
        Err(r) => r,
    }
}

async fn auth_fail_delay(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    match body_json(req)
        .await
        .map(|v| v.get("ms").and_then(Value::as_u64))
    {
        Ok(Some(ms)) => {
            sim.set_auth_fail_delay_ms(ms);
            ok()
        }
        Ok(None) => bad("expected {\"ms\": N}"),
        Err(r) => r,
    }
}

async fn requests(AxState(sim): AxState<Sim>) -> Response<Body> {
    let log = sim.controls().log.lock().unwrap_or_else(|e| e.into_inner());
    json_response(StatusCode::OK, Value::Array(log.iter().cloned().collect()))
}

/// `GET /_sim/tasks`: every task with the epoch millisecond its worker ends (`end_at_ms`), so
/// a benchmark can measure how long after the real end a client notices it.
async fn task_times(AxState(sim): AxState<Sim>) -> Response<Body> {
    let tasks = sim.with_state(|st| {
        st.tasks
            .iter()
            .map(|t| {
                json!({
                    "upid": t.upid,
                    "type": t.kind,
                    "end_at_ms": t.end_at_ms,
                    "exitstatus": t.exitstatus,
                })
            })
            .collect::<Vec<_>>()
    });
    json_response(StatusCode::OK, Value::Array(tasks))
}

async fn clear_requests(AxState(sim): AxState<Sim>) -> Response<Body> {
    sim.controls()
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    ok()
}

#[derive(Deserialize)]
struct AclReq {
    path: String,
    ugid: String,
    roles: Vec<String>,
    #[serde(default = "one")]
    propagate: u64,
    #[serde(default)]
    delete: u64,
}

async fn set_acl(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let a = match serde_json::from_value::<AclReq>(v) {
        Ok(a) => a,
        Err(e) => return bad(&e.to_string()),
    };
    let result = sim.mutate(|st| {
        if !st.access.exists(&a.ugid) {
            return Err(format!("no such user or token '{}'", a.ugid));
        }
        for role in &a.roles {
            if crate::roles::builtin(role).is_none() && !st.access.custom_roles.contains_key(role) {
                return Err(format!("role '{role}' does not exist"));
            }
            st.access.set_acl(
                AclEntry {
                    path: normalize_path(&a.path),
                    ugid: a.ugid.clone(),
                    role: role.clone(),
                    propagate: a.propagate != 0,
                },
                a.delete != 0,
            );
        }
        Ok(())
    });
    match result {
        Ok(()) => ok(),
        Err(e) => bad(&e),
    }
}

#[derive(Deserialize)]
struct RoleReq {
    roleid: String,
    privs: Vec<String>,
}

async fn set_role(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let r = match serde_json::from_value::<RoleReq>(v) {
        Ok(r) => r,
        Err(e) => return bad(&e.to_string()),
    };
    if crate::roles::builtin(&r.roleid).is_some() {
        return bad("cannot redefine a built-in role");
    }
    if let Some(p) = r
        .privs
        .iter()
        .find(|p| !crate::roles::ALL_PRIVS.contains(&p.as_str()))
    {
        return bad(&format!("invalid privilege '{p}'"));
    }
    sim.mutate(|st| st.access.custom_roles.insert(r.roleid, r.privs));
    ok()
}

/// `pct unlock <vmid>` on the host.
async fn unlock(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(vmid) = v.get("vmid").and_then(Value::as_u64) else {
        return bad("expected {\"vmid\": N}");
    };
    let done = sim.mutate(|st| match st.guests.get_mut(&(vmid as u32)) {
        Some(g) => {
            g.conf.main.remove("lock");
            true
        }
        None => false,
    });
    if done {
        ok()
    } else {
        bad("no such guest")
    }
}

/// `POST /_sim/usb`: without `uuid`, `{"present":false}` only toggles the seeded USB disk
/// in `disks/list` and `hardware/usb`; with `uuid` it plugs or pulls a filesystem
/// ([`crate::usb`]).
async fn usb(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if v.get("uuid").is_some() {
        let r = match serde_json::from_value::<usb::UsbRequest>(v) {
            Ok(r) => r,
            Err(e) => return bad(&e.to_string()),
        };
        return match sim.mutate(|st| usb::apply(st, &r)) {
            Ok(()) => ok(),
            Err(e) => bad(&crate::error_chain(&e)),
        };
    }
    if let Some(k) = ["mount", "mounted", "device", "by_uuid_dir"]
        .iter()
        .find(|k| v.get(**k).is_some())
    {
        return bad(&format!("\"{k}\" needs a \"uuid\""));
    }
    match v.get("present").and_then(Value::as_bool) {
        Some(present) => {
            sim.controls()
                .usb_unplugged
                .store(!present, Ordering::Relaxed);
            ok()
        }
        None => bad("expected {\"present\": bool} or {\"uuid\": …, \"present\": bool, …}"),
    }
}

/// `GET /_sim/usb`: the simulated filesystems.
async fn usb_list(AxState(sim): AxState<Sim>) -> Response<Body> {
    let list = sim.with_state(|st| {
        st.filesystems
            .iter()
            .map(|(uuid, f)| {
                json!({
                    "uuid": uuid, "mount": f.mount, "device": f.device, "present": f.present,
                    "mounted": f.mounted, "by_uuid_dir": f.by_uuid_dir,
                })
            })
            .collect::<Vec<_>>()
    });
    json_response(StatusCode::OK, Value::Array(list))
}

#[derive(Deserialize)]
struct VolumeQuery {
    volid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeData {
    volid: String,
    data: Option<String>,
}

/// `GET /_sim/volume?volid=…`: a volume with its simulated file content tag.
async fn volume_get(
    AxState(sim): AxState<Sim>,
    axum::extract::Query(q): axum::extract::Query<VolumeQuery>,
) -> Response<Body> {
    let found = sim.with_state(|st| {
        st.volumes.get(&q.volid).map(|v| {
            json!({"volid": q.volid, "content": v.content, "size": v.size, "vmid": v.vmid, "data": v.data})
        })
    });
    match found {
        Some(v) => json_response(StatusCode::OK, v),
        None => json_response(StatusCode::NOT_FOUND, json!({"error": "no such volume"})),
    }
}

/// `POST /_sim/volume {"volid":"…","data":"tag"}`: write (or with `null` clear) the
/// simulated file content of a volume, as a process inside the guest would.
async fn volume_set(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let v = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = match serde_json::from_value::<VolumeData>(v) {
        Ok(d) => d,
        Err(e) => return bad(&e.to_string()),
    };
    let found = sim.mutate(|st| match st.volumes.get_mut(&d.volid) {
        Some(v) if v.content != "backup" => {
            v.data = d.data;
            true
        }
        _ => false,
    });
    if found {
        ok()
    } else {
        bad("no such disk volume")
    }
}

/// `GET /_sim/archive?volid=…`: what a backup archive holds, as `tar tf` on the host would
/// show it: the guest config and the mount points whose files are inside, with their data
/// tags (`backup=0` and bind mount points are not there).
async fn archive(
    AxState(sim): AxState<Sim>,
    axum::extract::Query(q): axum::extract::Query<VolumeQuery>,
) -> Response<Body> {
    let found = sim.with_state(|st| {
        st.volumes
            .get(&q.volid)
            .filter(|v| v.content == "backup")
            .map(|v| {
                json!({
                    "volid": q.volid,
                    "config": v.archive.as_ref().map(|c| c.render()),
                    "mounts": v.archived_mounts.iter().map(|m| json!({"key": m.key, "mp": m.mp, "data": m.data})).collect::<Vec<_>>(),
                })
            })
    });
    match found {
        Some(v) => json_response(StatusCode::OK, v),
        None => json_response(StatusCode::NOT_FOUND, json!({"error": "no such backup"})),
    }
}

/// `pct create` run as root on the host: the same parameters as `POST /nodes/{node}/lxc`,
/// validated by the same schema, executed as `root@pam` (so `features: keyctl=1` is allowed).
async fn pct_create(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = match to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return bad("unreadable body"),
    };
    let mut params: Map<String, Value> =
        match request::parse_body(ct.as_deref().or(Some("application/json")), &bytes) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    params
        .entry("node")
        .or_insert_with(|| Value::String(sim.node()));
    let path = format!(
        "/nodes/{}/lxc",
        request::value_text(&params["node"]).unwrap_or_default()
    );
    let result = match pve_schema::embedded().find("POST", &path) {
        Ok(endpoint) => match endpoint.validate_params(&params) {
            Ok(()) => lxc::create(&Call {
                sim: &sim,
                user: "root@pam".into(),
                params,
            }),
            Err(errors) => Err(ApiError::Param(errors.0)),
        },
        Err(_) => Err(ApiError::NotImplemented(format!(
            "Method 'POST {path}' not implemented"
        ))),
    };
    match result {
        Ok(reply) => Reply::into_response(reply),
        Err(e) => e.into_response(),
    }
}

async fn cert(AxState(sim): AxState<Sim>) -> Response<Body> {
    match std::fs::read(sim.state_dir().join(crate::tls::CERT_FILE)) {
        Ok(pem) => {
            let mut resp = Response::new(Body::from(pem));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        Err(_) => json_response(StatusCode::NOT_FOUND, json!({"error": "no certificate"})),
    }
}
