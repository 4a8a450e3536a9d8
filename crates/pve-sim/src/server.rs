//! The HTTP front: routing, request parsing, token auth, schema permission checks and
//! parameter validation, dispatch to the simulated endpoints, the envelope, and the request
//! log. The order of checks follows pve-manager `HTTPServer.pm` `auth_handler` and
//! `rest_handler`: 401, then 501 (unknown method), then 400 for conflicting path values,
//! then 403 (schema permissions), then 400 (parameter validation), then the handler.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State as AxState;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::routing::any;
use axum::Router;
use serde_json::{Map, Value};

use crate::envelope::{ApiError, Reply};
use crate::{
    control, lxc, node, perms, prune, request, snapshot, storage, storage_cfg, task_api, vzdump,
    Sim,
};

/// Largest accepted body (pve-http-server `AnyEvent.pm:54`).
const MAX_BODY: usize = 512 * 1024;

/// The router: `/api2/json/...` and the `/_sim/...` test controls.
pub fn app(sim: Sim) -> Router {
    Router::new()
        .route("/api2/json/{*rest}", any(api))
        .merge(control::routes())
        .with_state(sim)
}

/// One authenticated API call, after parsing, permission check and validation.
pub struct Call<'a> {
    /// The simulator.
    pub sim: &'a Sim,
    /// Authenticated id (`user@realm!tokenid`, or `root@pam` for `/_sim/pct/create`).
    pub user: String,
    /// Merged parameters (path, body, query).
    pub params: Map<String, Value>,
}

impl Call<'_> {
    /// A parameter as text.
    pub fn str(&self, key: &str) -> Option<String> {
        self.params.get(key).and_then(request::value_text)
    }

    /// A boolean parameter (`false` when absent).
    pub fn flag(&self, key: &str) -> bool {
        self.params
            .get(key)
            .and_then(pve_schema::parse_boolean)
            .unwrap_or(false)
    }

    /// An integer parameter.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.str(key)
            .and_then(|s| s.trim_start_matches('+').parse().ok())
    }

    /// The `vmid` parameter (validated by the schema before any handler runs).
    pub fn vmid(&self) -> Result<u32, ApiError> {
        self.int("vmid")
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| ApiError::param("vmid", "property is missing and it is not optional"))
    }

    /// Whether the caller is the real `root@pam` (never true for a token).
    pub fn is_root(&self) -> bool {
        self.user == "root@pam"
    }
}

async fn api(AxState(sim): AxState<Sim>, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let raw_path = req
        .uri()
        .path()
        .trim_start_matches("/api2/json")
        .to_string();
    let path = percent_encoding::percent_decode_str(&raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), MAX_BODY)
        .await
        .unwrap_or_default();

    let disposition = sim.controls().before_response(method.as_str(), &path).await;
    let drop_after = disposition == control::Disposition::DropAfter;
    if let Some(resp) =
        control::injected_fault(&sim, &method, &path, &query, &headers, &body, drop_after)
    {
        if drop_after {
            tracing::info!(%method, %path, "dropping connection after an injected fault");
            control::drop_connection();
        }
        return resp;
    }

    let mut logged_params = Value::Null;
    let (result, returns_errors) = handle(
        &sim,
        &method,
        &path,
        &query,
        &headers,
        &body,
        &mut logged_params,
    )
    .await;
    let (status, body_json) = match &result {
        Ok(reply) => (StatusCode::OK, Some(reply.body())),
        Err(err) => (err.status(), err.body()),
    };
    if let Err(ApiError::Unauthorized(_)) = &result {
        tokio::time::sleep(Duration::from_millis(sim.auth_fail_delay_ms())).await;
    }
    sim.controls().log_request(control::LoggedRequest {
        method: method.to_string(),
        path: path.clone(),
        params: logged_params,
        status: status.as_u16(),
        body: body_json,
        schema_errors: returns_errors,
        dropped_after: drop_after,
    });
    tracing::debug!(%method, %path, status = status.as_u16(), "api request");
    if drop_after {
        // Processed and logged like any request; only the answer is withheld.
        tracing::info!(%method, %path, status = status.as_u16(), "dropping connection after processing");
        control::drop_connection();
    }
    match result {
        Ok(reply) => reply.into_response(),
        Err(err) => err.into_response(),
    }
}

/// Everything between the raw request and the reply; also returns the response-schema
/// violations of a 200 answer.
async fn handle(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    logged_params: &mut Value,
) -> (Result<Reply, ApiError>, Option<Value>) {
    // Other methods are refused before authentication (pve-http-server AnyEvent.pm:1455-1456).
    if !matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return (
            Err(ApiError::NotImplemented(format!(
                "method '{method}' not available\n"
            ))),
            None,
        );
    }
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match sim.with_state(|st| crate::auth::authenticate(&st.access, auth_header)) {
        Ok(user) => user,
        Err(err) => return (Err(err), None),
    };
    let not_implemented =
        || ApiError::NotImplemented(format!("Method '{method} {path}' not implemented"));
    let schema = pve_schema::embedded();
    let endpoint = match schema.find(method.as_str(), path) {
        Ok(e) => e,
        Err(_) => return (Err(not_implemented()), None),
    };
    if !endpoint.allowtoken() {
        return (
            Err(ApiError::Forbidden(format!(
                "URI '{path}' not available with API token, need proper ticket.\n"
            ))),
            None,
        );
    }
    let mut params = match request::parse_form(query.as_bytes()) {
        Ok(q) => q,
        Err(e) => return (Err(e), None),
    };
    if matches!(*method, Method::POST | Method::PUT) {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match request::parse_body(ct, body) {
            Ok(mut body_params) => {
                // The query string wins over the body.
                body_params.extend(params);
                params = body_params;
            }
            Err(e) => return (Err(e), None),
        }
    }
    *logged_params = Value::Object(params.clone());
    let params = match request::merge_path(params, &endpoint.path_params) {
        Ok(p) => p,
        Err(e) => return (Err(e), None),
    };
    let perm_result =
        sim.with_state(|st| perms::check_api(&st.access, endpoint.permissions(), &user, &params));
    if let Err(e) = perm_result {
        return (Err(e), None);
    }
    if let Err(errors) = endpoint.validate_params(&params) {
        return (Err(ApiError::Param(errors.0)), None);
    }
    let call = Call { sim, user, params };
    let result = dispatch(&call, method.as_str(), endpoint.template).await;
    let result = match result {
        Some(r) => r,
        None => return (Err(not_implemented()), None),
    };
    let returns_errors = match &result {
        Ok(reply) => endpoint
            .validate_returns(&reply.data)
            .err()
            .map(|e| serde_json::to_value(e.0).unwrap_or(Value::Null)),
        Err(_) => None,
    };
    (result, returns_errors)
}

/// Route a validated call to its handler; `None` for schema methods the simulator does not
/// simulate (answered with 501 like an unknown method).
pub async fn dispatch(
    call: &Call<'_>,
    method: &str,
    template: &str,
) -> Option<Result<Reply, ApiError>> {
    let result = match (method, template) {
        ("GET", "/version") => node::version(call),
        ("GET", "/nodes") => node::list_nodes(call),
        ("GET", "/nodes/{node}/status") => node::status(call),
        ("GET", "/cluster/resources") => node::cluster_resources(call),
        ("GET", "/nodes/{node}/disks/list") => node::disks_list(call),
        ("GET", "/nodes/{node}/disks/smart") => node::disks_smart(call),
        ("GET", "/nodes/{node}/hardware/usb") => node::hardware_usb(call),
        ("GET", "/access/permissions") => perms::get_permissions(call),
        ("GET", "/nodes/{node}/lxc") => lxc::list(call),
        ("POST", "/nodes/{node}/lxc") => lxc::create(call),
        ("DELETE", "/nodes/{node}/lxc/{vmid}") => lxc::destroy(call),
        ("GET", "/nodes/{node}/lxc/{vmid}/status/current") => lxc::status_current(call),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/start") => lxc::power(call, "vzstart"),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/stop") => lxc::power(call, "vzstop"),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown") => lxc::power(call, "vzshutdown"),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot") => lxc::power(call, "vzreboot"),
        ("GET", "/nodes/{node}/lxc/{vmid}/config") => lxc::get_config(call),
        ("PUT", "/nodes/{node}/lxc/{vmid}/config") => lxc::put_config(call),
        ("PUT", "/nodes/{node}/lxc/{vmid}/resize") => lxc::resize(call),
        ("GET", "/nodes/{node}/lxc/{vmid}/snapshot") => snapshot::list(call),
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot") => snapshot::create(call),
        ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}") => snapshot::delete(call),
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback") => {
            snapshot::rollback(call)
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config") => {
            snapshot::get_config(call)
        }
        ("POST", "/nodes/{node}/vzdump") => vzdump::run(call),
        ("GET", "/nodes/{node}/vzdump/extractconfig") => vzdump::extract_config(call),
        ("GET", "/nodes/{node}/storage") => return Some(storage::node_list(call).await),
        ("GET", "/nodes/{node}/storage/{storage}/status") => {
            return Some(storage::status(call).await)
        }
        ("GET", "/nodes/{node}/storage/{storage}/content") => {
            return Some(storage::content(call).await)
        }
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => {
            return Some(storage::delete_volume(call).await)
        }
        ("GET", "/nodes/{node}/storage/{storage}/prunebackups") => prune::dry_run(call),
        ("DELETE", "/nodes/{node}/storage/{storage}/prunebackups") => prune::prune(call),
        ("GET", "/storage") => storage_cfg::cfg_list(call),
        ("POST", "/storage") => storage_cfg::cfg_create(call),
        ("GET", "/storage/{storage}") => storage_cfg::cfg_get(call),
        ("PUT", "/storage/{storage}") => storage_cfg::cfg_update(call),
        ("DELETE", "/storage/{storage}") => storage_cfg::cfg_delete(call),
        ("GET", "/nodes/{node}/tasks") => task_api::list(call),
        ("GET", "/nodes/{node}/tasks/{upid}/status") => task_api::status(call),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => task_api::log(call),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => task_api::stop(call),
        _ => return None,
    };
    Some(result)
}

/// Check that `{node}` names this node. PVE would try to proxy to an unknown node and fail
/// the hostname lookup (pve-cluster `Cluster.pm:811-829`).
pub fn check_node(call: &Call) -> Result<(), ApiError> {
    let node = call.str("node").unwrap_or_default();
    let ours = call.sim.node();
    if node == ours {
        Ok(())
    } else {
        Err(ApiError::Fail(format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known\n")))
    }
}
