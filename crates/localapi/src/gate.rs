//! The gate every request passes before a handler runs, and the audit record after it.
//!
//! In order: authenticate the bearer token (401; failures are rate-limited per client address),
//! check the token's guest still exists (else revoke its tokens, 401), charge the token's rate
//! limit (429), refuse any query parameter (400 `unexpected_parameter`), read the body within
//! the size limit (413) and the body timeout (408), refuse any body field the route does not
//! take (400 `unexpected_parameter`), then run the handler within its time bound (504). Every
//! call, refused or not, ends in exactly one [`AuditEvent`].
//!
//! The parsing of what the client sent (the bearer header, the query, the body) is in
//! [`crate::request`], pure; this module is the I/O and the order. Nothing here logs the
//! Authorization header, the token or raw client bytes.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::ports::AuditEvent;
use crate::reply::{ApiError, Code, Outcome};
use crate::request;
use crate::routes::{AppState, Caller, ROUTES};
use crate::token;

/// `"POST /snapshot"` for a route, `"other"` for anything else (no client bytes in labels).
fn route_label(method: &Method, path: &str) -> &'static str {
    const LABELS: [&str; 7] = [
        "GET /storage",
        "POST /snapshot",
        "POST /rollback",
        "POST /backup",
        "GET /backup/due",
        "GET /backup/status",
        "GET /restore-test/status",
    ];
    ROUTES
        .iter()
        .zip(LABELS)
        .find(|((m, p), _)| *m == method.as_str() && *p == path)
        .map(|(_, label)| label)
        .unwrap_or("other")
}

/// The middleware.
pub(crate) async fn gate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_label(req.method(), req.uri().path());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let span = tracing::info_span!(
        "local_api",
        route,
        token_id = tracing::field::Empty,
        vmid = tracing::field::Empty
    );
    async move {
        let mut caller = None;
        let mut reached = false;
        let resp = match admit(&app, route, peer, req, &mut caller).await {
            Ok(req) => {
                reached = true;
                let bound = if route == "POST /snapshot" {
                    app.limits.snapshot_wait
                } else {
                    app.limits.request_timeout
                };
                match tokio::time::timeout(bound, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => ApiError::new(Code::Timeout, "operation outlasted its bound")
                        .into_response(),
                }
            }
            Err(err) => err.into_response(),
        };
        finish(
            &app,
            route,
            peer,
            caller,
            reached && is_mutating(route),
            resp,
        )
    }
    .instrument(span)
    .await
}

async fn admit(
    app: &AppState,
    route: &'static str,
    peer: Option<IpAddr>,
    req: Request,
    caller_out: &mut Option<Caller>,
) -> Result<Request, ApiError> {
    let caller = authenticate(app, peer, req.headers()).await?;
    *caller_out = Some(caller);
    let span = tracing::Span::current();
    span.record("token_id", tracing::field::display(caller.token_id));
    span.record("vmid", caller.vmid.get());

    let now = app.ports.clock.monotonic();
    if let Err(wait) = app.per_token.check(caller.token_id, now) {
        return Err(ApiError::new(Code::RateLimited, "token rate limit").retry_after(wait));
    }

    if let Some(query) = req.uri().query().filter(|q| !q.is_empty()) {
        return Err(request::query_refusal(query));
    }

    let (mut parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, &app.limits).await?;
    request::check_body_fields(route, &bytes)?;
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn authenticate(
    app: &AppState,
    peer: Option<IpAddr>,
    // Headers, not the request: the body is not `Sync`, and this future must be `Send`.
    headers: &axum::http::HeaderMap,
) -> Result<Caller, ApiError> {
    let refuse = |detail: &str| -> ApiError {
        // Failed authentication is charged to the address, never to a claimed token id.
        if let Err(wait) = app.per_peer.check(peer, app.ports.clock.monotonic()) {
            return ApiError::new(Code::RateLimited, format!("{detail}; address rate limit"))
                .retry_after(wait);
        }
        ApiError::new(Code::Unauthorized, detail)
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(refuse("no authorization header"));
    };
    let Some(presented) = request::bearer(value) else {
        return Err(refuse("malformed bearer token"));
    };
    let tokens = app.ports.tokens.as_ref();
    let record = match token::verify(tokens, &presented) {
        Ok(Ok(record)) => record,
        Ok(Err(refusal)) => {
            return Err(refuse(&format!(
                "{} (token id {})",
                refusal.as_str(),
                presented.id
            )))
        }
        Err(err) => {
            tracing::error!(error = %crate::ErrorChain(&err), "token lookup failed");
            return Err(ApiError::new(Code::Internal, "token store failed"));
        }
    };
    let exists = app
        .ports
        .view
        .guest_exists(record.vmid)
        .await
        .map_err(|err| {
            tracing::error!(error = %crate::ErrorChain(&err), "guest lookup failed");
            ApiError::new(Code::Internal, "guest lookup failed")
        })?;
    if !exists {
        // A destroyed guest's tokens are dead for good, even if its vmid is reused later.
        let revoked = token::revoke_guest(tokens, app.ports.clock.as_ref(), record.vmid);
        if let Err(err) = &revoked {
            tracing::error!(error = %crate::ErrorChain(err), "revoking a destroyed guest's tokens failed");
        }
        return Err(refuse(&format!(
            "guest {} no longer exists; its tokens are revoked",
            record.vmid.get()
        )));
    }
    Ok(Caller {
        token_id: record.id,
        vmid: record.vmid,
    })
}

/// Reads the whole body, at most `body_max_bytes`, within `body_timeout`.
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    limits: &crate::routes::Limits,
) -> Result<Bytes, ApiError> {
    let max = limits.body_max_bytes;
    let declared = request::declared_length(headers);
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("declared body over {max} bytes"),
        ));
    }
    match tokio::time::timeout(limits.body_timeout, collect_limited(body, max)).await {
        Err(_) => Err(ApiError::client_timeout(format!(
            "body not received within {:?}",
            limits.body_timeout
        ))),
        Ok(Err(BodyError::TooLarge)) => Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("body over {max} bytes"),
        )),
        Ok(Err(BodyError::Read)) => Err(ApiError::new(Code::BadRequest, "body read failed")),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

enum BodyError {
    TooLarge,
    Read,
}

async fn collect_limited(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(Bytes::from(buf)),
            Some(Err(_)) => return Err(BodyError::Read),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max {
                        return Err(BodyError::TooLarge);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Routes whose handler asks for a guest mutation.
fn is_mutating(route: &str) -> bool {
    matches!(route, "POST /snapshot" | "POST /rollback" | "POST /backup")
}

fn finish(
    app: &AppState,
    route: &'static str,
    peer: Option<IpAddr>,
    caller: Option<Caller>,
    mutation: bool,
    mut resp: Response,
) -> Response {
    let status = resp.status();
    let outcome = resp
        .extensions_mut()
        .remove::<Outcome>()
        .unwrap_or(Outcome {
            // Only hyper/axum's own answers lack an outcome (none expected); audit them by status.
            code: if status.is_success() { "ok" } else { "other" },
            detail: None,
            guest_id_attempt: false,
        });
    let event = AuditEvent {
        at: app.ports.clock.now(),
        token_id: caller.map(|c| c.token_id),
        vmid: caller.map(|c| c.vmid),
        route: route.to_owned(),
        status: status.as_u16(),
        outcome: outcome.code,
        detail: outcome.detail,
        guest_id_attempt: outcome.guest_id_attempt,
        peer,
        mutation,
    };
    // A summarised call is neither audited nor logged one by one: a flood writes one line and
    // one entry per address and interval, not one per call.
    if let Some(event) = app.summary.admit(event) {
        log(&event);
        app.ports.audit.record(event);
    }
    resp
}

fn log(event: &AuditEvent) {
    let (status, outcome) = (event.status, event.outcome);
    let detail = event.detail.as_deref().unwrap_or("");
    if event.guest_id_attempt {
        tracing::warn!(
            status,
            outcome,
            detail,
            "local api call tried to name a guest"
        );
    } else if (500..600).contains(&status) {
        tracing::warn!(status, outcome, detail, "local api call failed");
    } else if (400..500).contains(&status) {
        tracing::info!(status, outcome, detail, "local api call refused");
    } else {
        tracing::debug!(status, outcome, "local api call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_label() {
        for (m, p) in ROUTES {
            let method: Method = m.parse().unwrap();
            assert_eq!(route_label(&method, p), format!("{m} {p}"));
        }
    }

    #[test]
    fn labels_are_fixed_strings() {
        assert_eq!(
            route_label(&Method::GET, "/backup/status"),
            "GET /backup/status"
        );
        assert_eq!(route_label(&Method::POST, "/backup/status"), "other");
        assert_eq!(route_label(&Method::GET, "/backup/status/"), "other");
        assert_eq!(route_label(&Method::GET, "/../storage"), "other");
    }
}
