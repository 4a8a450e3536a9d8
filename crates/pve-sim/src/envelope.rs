//! PVE's response envelope: `{"data":…}` on success, `{"data":null,"message":…}` on errors,
//! the HTTP reason phrase set to the first message line (pve-http-server
//! `AnyEvent.pm:1060-1064`), empty bodies for 401.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

/// A handler result that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400 "Parameter verification failed." with per-parameter errors.
    Param(BTreeMap<String, String>),
    /// 403 with the full message ("Permission check failed (...)\n").
    Forbidden(String),
    /// 500: a handler `die` (the message usually ends in "\n").
    Fail(String),
    /// 501 "Method 'GET /x' not implemented".
    NotImplemented(String),
    /// 401 with an empty body; the reason phrase.
    Unauthorized(&'static str),
}

impl ApiError {
    /// 400 with one parameter error.
    pub fn param(key: &str, msg: impl Into<String>) -> ApiError {
        ApiError::Param(BTreeMap::from([(key.to_string(), msg.into())]))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Param(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Fail(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// The message (`None` for 401, which has no body).
    pub fn message(&self) -> Option<String> {
        match self {
            ApiError::Param(_) => Some("Parameter verification failed.\n".to_string()),
            ApiError::Forbidden(m) | ApiError::Fail(m) | ApiError::NotImplemented(m) => {
                Some(m.clone())
            }
            ApiError::Unauthorized(_) => None,
        }
    }

    /// The JSON body (`None` for 401).
    pub fn body(&self) -> Option<Value> {
        let message = self.message()?;
        let mut body = json!({"data": null, "message": message});
        if let ApiError::Param(errors) = self {
            body["errors"] = json!(errors);
        }
        Some(body)
    }

    /// The full HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let reason = match &self {
            ApiError::Unauthorized(reason) => Some(reason.to_string()),
            other => other.message(),
        };
        let body = self.body().map(|b| b.to_string()).unwrap_or_default();
        let mut resp = Response::new(Body::from(body.clone()));
        *resp.status_mut() = self.status();
        if !body.is_empty() {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=UTF-8"),
            );
        }
        if let Some(reason) = reason {
            set_reason(&mut resp, &reason);
        }
        resp
    }
}

impl From<String> for ApiError {
    /// A handler `die` → 500.
    fn from(msg: String) -> ApiError {
        ApiError::Fail(msg)
    }
}

/// A successful result: `data` plus the optional `total` of list methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The `data` member.
    pub data: Value,
    /// The `total` member (task list, task log).
    pub total: Option<u64>,
}

impl Reply {
    /// `{"data": data}`.
    pub fn data(data: Value) -> Reply {
        Reply { data, total: None }
    }

    /// `{"data": null}` for `returns: null` methods.
    pub fn null() -> Reply {
        Reply::data(Value::Null)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("data".into(), self.data.clone());
        if let Some(total) = self.total {
            body.insert("total".into(), json!(total));
        }
        Value::Object(body)
    }

    /// The HTTP 200 response.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(self.body().to_string()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        resp
    }
}

/// Set the HTTP/1 reason phrase to the first line of `message` when hyper accepts it.
fn set_reason(resp: &mut Response<Body>, message: &str) {
    let first = message.lines().next().unwrap_or("").trim_end();
    if first.is_empty() {
        return;
    }
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(first.as_bytes().to_vec()) {
        resp.extensions_mut().insert(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_pve_shape() {
        let e = ApiError::param("vmid", "value must have a minimum value of 100");
        assert_eq!(
            e.body(),
            Some(
                json!({"data":null,"message":"Parameter verification failed.\n","errors":{"vmid":"value must have a minimum value of 100"}})
            )
        );
        let resp = ApiError::Fail("CT is locked (snapshot)\n".into()).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes().to_vec()),
            Some(b"CT is locked (snapshot)".to_vec())
        );
        assert_eq!(ApiError::Unauthorized("No ticket").body(), None);
    }

    #[test]
    fn reply_carries_total() {
        let r = Reply {
            data: json!([1]),
            total: Some(1),
        };
        assert_eq!(r.body(), json!({"data":[1],"total":1}));
    }
}
