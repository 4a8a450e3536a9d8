//! What clients see: stable error codes with generic messages, and success replies. The detail
//! of a failure goes to the log and the audit event (carried as a response extension to the
//! gate), never to the client.

use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The stable error codes of the local API (`{"error": CODE, "message": …}`).
///
/// There is no `forbidden`: the token decides the guest, so no request can ask for something
/// of another guest that would need refusing; naming one is `unexpected_parameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 401: no token, a malformed, unknown or revoked one, or its guest is gone.
    Unauthorized,
    /// 400: the body is not the JSON the route takes, or a snapshot name breaks PVE's rule.
    BadRequest,
    /// 400: a query parameter or body field the route does not take (a guest id, typically).
    UnexpectedParameter,
    /// 404: no such route, or no such snapshot of this guest.
    NotFound,
    /// 405: the route exists with another method.
    MethodNotAllowed,
    /// 409: the snapshot exists already, or a backup is already queued.
    Conflict,
    /// 409: `POST /backup` when none is due and the last one is recent; see `Retry-After`.
    BackupNotDue,
    /// 409: the guest holds as many local-API snapshots as it may; the answer names the oldest.
    SnapshotLimit,
    /// 403: `POST /rollback` to a snapshot of this guest that was not made through the local API.
    RollbackNotAllowed,
    /// 409: `POST /backup` for a guest the desired state gives no backup policy (so no target).
    NoBackupPolicy,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 429: this token's (or address's) rate limit; see `Retry-After`.
    RateLimited,
    /// 503: the guest's queue is full or the guest is locked; see `Retry-After`.
    Busy,
    /// 408 (the client sent too slowly) or 504 (the operation outlasted its bound).
    Timeout,
    /// 500: something on the agent's side failed.
    Internal,
}

impl Code {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::BadRequest => "bad_request",
            Code::UnexpectedParameter => "unexpected_parameter",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Conflict => "conflict",
            Code::NoBackupPolicy => "no_backup_policy",
            Code::RollbackNotAllowed => "rollback_not_allowed",
            Code::SnapshotLimit => "snapshot_limit",
            Code::BackupNotDue => "backup_not_due",
            Code::PayloadTooLarge => "payload_too_large",
            Code::RateLimited => "rate_limited",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
            Code::Internal => "internal",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Code::Unauthorized => "missing or invalid token",
            Code::BadRequest => "malformed request",
            Code::UnexpectedParameter => "the request carries a parameter this route does not take",
            Code::NotFound => "not found",
            Code::MethodNotAllowed => "method not allowed",
            Code::Conflict => "already exists",
            Code::NoBackupPolicy => "no backup policy for this guest",
            Code::RollbackNotAllowed => "rollback only to snapshots made through the local api",
            Code::BackupNotDue => "no backup is due yet, retry later",
            Code::SnapshotLimit => {
                "this guest holds as many local api snapshots as it may; an operator must delete one"
            }
            Code::PayloadTooLarge => "request body too large",
            Code::RateLimited => "too many requests, retry later",
            Code::Busy => "the guest is busy, retry later",
            Code::Timeout => "request took too long",
            Code::Internal => "internal error",
        }
    }
}

/// A refused or failed request: a stable [`Code`] for the client, a detail for the log and
/// audit only.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) code: Code,
    pub(crate) status: StatusCode,
    /// For the log and audit only.
    pub(crate) detail: String,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) guest_id_attempt: bool,
    /// Named in the body (`snapshot_limit`).
    pub(crate) oldest: Option<String>,
}

impl ApiError {
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        let status = match code {
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::BadRequest | Code::UnexpectedParameter => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Conflict | Code::NoBackupPolicy | Code::SnapshotLimit | Code::BackupNotDue => {
                StatusCode::CONFLICT
            }
            Code::RollbackNotAllowed => StatusCode::FORBIDDEN,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            code,
            status,
            detail: detail.into(),
            retry_after: None,
            guest_id_attempt: false,
            oldest: None,
        }
    }

    /// 408: the client did not send its request in time.
    pub(crate) fn client_timeout(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ApiError::new(Code::Timeout, detail)
        }
    }

    /// The code the client sees.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The detail, for the log and the audit event only.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether the request tried to name a guest (flagged in the audit event).
    pub fn is_guest_id_attempt(&self) -> bool {
        self.guest_id_attempt
    }

    pub(crate) fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub(crate) fn oldest(mut self, name: String) -> Self {
        self.oldest = Some(name);
        self
    }

    pub(crate) fn guest_id_attempt(mut self, yes: bool) -> Self {
        self.guest_id_attempt = yes;
        self
    }
}

/// How a call ended, attached to the response for the gate's audit record.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) code: &'static str,
    pub(crate) detail: Option<String>,
    pub(crate) guest_id_attempt: bool,
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: &'static str,
    /// `snapshot_limit`: the oldest local-API snapshot of the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.as_str(),
            message: self.code.message(),
            oldest: self.oldest,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, at least 1 (RFC 9110 delay-seconds).
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp.extensions_mut().insert(Outcome {
            code: self.code.as_str(),
            detail: Some(self.detail),
            guest_id_attempt: self.guest_id_attempt,
        });
        resp
    }
}

/// A success: `status` with a JSON body; audited as `ok` (2xx other than 202) or `accepted`.
pub(crate) fn success(status: StatusCode, body: impl Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    let code = if status == StatusCode::ACCEPTED {
        "accepted"
    } else {
        "ok"
    };
    resp.extensions_mut().insert(Outcome {
        code,
        detail: None,
        guest_id_attempt: false,
    });
    resp
}

/// RFC 3339 in UTC, whole seconds (`2026-01-10T02:30:00Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::from(t));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "invalid-time".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn error_body_is_generic_and_detail_stays_inside() {
        let resp = ApiError::new(Code::NotFound, "snapshot secret-name of 101").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let outcome = resp.extensions().get::<Outcome>().unwrap();
        assert_eq!(outcome.code, "not_found");
        assert_eq!(
            outcome.detail.as_deref(),
            Some("snapshot secret-name of 101")
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let resp = ApiError::new(Code::RateLimited, "x")
            .retry_after(Duration::from_millis(50))
            .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = ApiError::new(Code::Busy, "x")
            .retry_after(Duration::from_millis(2500))
            .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn times_are_utc_whole_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_768_012_200_750);
        assert_eq!(rfc3339(t), "2026-01-10T02:30:00Z");
    }
}
