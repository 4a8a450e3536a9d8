//! The transport: one pinned HTTPS connection pool, the `{"data":…}` envelope, error mapping.
//!
//! Typed endpoints live in the domain modules (`lxc.rs`, `storage.rs`, …) as `impl Client`
//! blocks; they all funnel through [`Client::call`] here, so every PVE quirk of the envelope and
//! of error answers is handled exactly once.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::debug;

use crate::error::{classify, Error, ErrorAnswer, Result};
use crate::task::TaskRef;
use crate::tls::{find_pin_mismatch, is_tls_failure, pinned_client_config, Fingerprint};
use crate::token::ApiToken;

/// Answers larger than this are refused as malformed (PVE's biggest, a full task log or a
/// large content listing, stays far below it).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Where and how to reach one PVE node's API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base, `https://host:8006` (a trailing `/` or `/api2/json` is tolerated).
    pub base_url: String,
    /// This host's node name, used in `/nodes/{node}/…` paths.
    pub node: String,
    /// The API token.
    pub token: ApiToken,
    /// SHA-256 of the API's leaf certificate.
    pub fingerprint: Fingerprint,
    /// Limit for establishing a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Limit for one whole request, answer included.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with default timeouts (connect 5 s, request 60 s).
    pub fn new(
        base_url: impl Into<String>,
        node: impl Into<String>,
        token: ApiToken,
        fingerprint: Fingerprint,
    ) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            node: node.into(),
            token,
            fingerprint,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A Proxmox VE API client for one node. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://host:8006/api2/json`
    api_base: String,
    node: String,
    auth: HeaderValue,
    fingerprint: Fingerprint,
    request_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.api_base)
            .field("node", &self.inner.node)
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client. Nothing is sent yet; the pin is enforced on every new connection.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let base = config.base_url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/api2/json").unwrap_or(base);
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| Error::invalid("base url", format!("{base:?}: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(Error::invalid(
                "base url",
                format!("{base:?}: the proxmox api is only spoken over https"),
            ));
        }
        if parsed.host_str().is_none() || parsed.query().is_some() {
            return Err(Error::invalid(
                "base url",
                format!("{base:?}: expected https://host:port"),
            ));
        }
        if !valid_node_name(&config.node) {
            return Err(Error::invalid(
                "node",
                format!("{:?} is not a valid node name", config.node),
            ));
        }
        let tls = pinned_client_config(config.fingerprint)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::invalid("http client", e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_base: format!("{base}/api2/json"),
                node: config.node,
                auth: config.token.header_value()?,
                fingerprint: config.fingerprint,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// This host's node name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The pinned fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// `/api2/json` below the configured base.
    pub fn api_base(&self) -> &str {
        &self.inner.api_base
    }

    /// Sends one request and decodes `data`. GET/DELETE parameters go in the query string;
    /// POST/PUT parameters as an `application/json` body (booleans already 0/1, see [`Params`]).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Params,
    ) -> Result<T> {
        let data = self.call_value(method.clone(), path, params).await?;
        decode_data(method_name(&method), path, data)
    }

    /// Like [`Client::call`] for endpoints that return a UPID or `null`.
    pub(crate) async fn call_task(
        &self,
        method: Method,
        path: &str,
        params: Params,
    ) -> Result<TaskRef> {
        let m = method_name(&method);
        let data = self.call_value(method, path, params).await?;
        decode_task_ref(m, path, &data)
    }

    pub(crate) async fn call_value(
        &self,
        method: Method,
        path: &str,
        params: Params,
    ) -> Result<Value> {
        let m = method_name(&method);
        let url = format!("{}{}", self.inner.api_base, path);
        let mut req = self
            .inner
            .http
            .request(method.clone(), &url)
            .header(AUTHORIZATION, self.inner.auth.clone());
        if method == Method::GET || method == Method::DELETE {
            // PVE takes GET/DELETE parameters only in the query string (AnyEvent.pm:1655-1709).
            if !params.0.is_empty() {
                req = req.query(&params.to_query());
            }
        } else {
            req = req.json(&params.0);
        }
        let resp = req.send().await.map_err(|e| self.send_error(m, path, e))?;
        let status = resp.status().as_u16();
        // PVE repeats the message's first line as the reason phrase; for 401 and the proxy
        // pseudo-statuses the body is empty and the phrase is all there is (AnyEvent.pm:1060-1064).
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| resp.status().canonical_reason().map(str::to_owned))
            .unwrap_or_default();
        let body = read_body(resp, m, path, self.inner.request_timeout).await?;
        debug!(method = m, path, status, bytes = body.len(), "pve answered");
        decode_answer(m, path, status, &reason, &body)
    }

    fn send_error(&self, method: &'static str, path: &str, e: reqwest::Error) -> Error {
        let url = self.inner.api_base.clone();
        if let Some((expected, actual)) = find_pin_mismatch(&e) {
            return Error::PinMismatch {
                url,
                expected,
                actual,
            };
        }
        if is_tls_failure(&e) {
            return Error::Tls { url, source: e };
        }
        if e.is_connect() {
            return Error::Connect { url, source: e };
        }
        if e.is_timeout() {
            return Error::Timeout {
                method,
                path: path.to_owned(),
                timeout: self.inner.request_timeout,
            };
        }
        Error::Transport {
            method,
            path: path.to_owned(),
            source: e,
        }
    }
}

async fn read_body(
    mut resp: reqwest::Response,
    method: &'static str,
    path: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(Error::Decode {
                        method,
                        path: path.to_owned(),
                        detail: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => {
                return Err(Error::Timeout {
                    method,
                    path: path.to_owned(),
                    timeout,
                })
            }
            Err(e) => {
                return Err(Error::Transport {
                    method,
                    path: path.to_owned(),
                    source: e,
                })
            }
        }
    }
}

/// How the client reads one answer of PVE, once the body is in memory: a 200 must be the
/// `{"data": …}` envelope (its `data` is returned), any other status becomes the classified
/// [`Error`] built from the body's `message`/`errors` or the reason phrase. Pure (no I/O), so
/// the fuzz target `pve_answer` feeds exactly what [`Client`] runs on every answer.
pub fn decode_answer(
    method: &'static str,
    path: &str,
    status: u16,
    reason: &str,
    body: &[u8],
) -> Result<Value> {
    if status == 200 {
        return decode_envelope(method, path, body);
    }
    Err(classify(method, path, error_answer(status, reason, body)))
}

/// The `data` of an answer as the typed value the endpoint returns (lenient where PVE is:
/// numbers as strings, 0/1 booleans); a shape mismatch is [`Error::Decode`].
pub fn decode_data<T: DeserializeOwned>(
    method: &'static str,
    path: &str,
    data: Value,
) -> Result<T> {
    serde_json::from_value(data).map_err(|e| Error::Decode {
        method,
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The `data` of a mutating call's answer: `null` (done synchronously) or a UPID string.
pub fn decode_task_ref(method: &'static str, path: &str, data: &Value) -> Result<TaskRef> {
    TaskRef::from_data(data).ok_or_else(|| Error::Decode {
        method,
        path: path.to_owned(),
        detail: format!("expected a UPID or null, got {}", short(&data.to_string())),
    })
}

fn decode_envelope(method: &'static str, path: &str, body: &[u8]) -> Result<Value> {
    let decode = |detail: String| Error::Decode {
        method,
        path: path.to_owned(),
        detail,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        decode(format!(
            "not json ({e}): {}",
            short(&String::from_utf8_lossy(body))
        ))
    })?;
    match value {
        Value::Object(mut obj) => obj
            .remove("data")
            .ok_or_else(|| decode("no \"data\" member in the answer".to_owned())),
        other => Err(decode(format!(
            "expected {{\"data\":…}}, got {}",
            short(&other.to_string())
        ))),
    }
}

fn error_answer(status: u16, reason: &str, body: &[u8]) -> ErrorAnswer {
    let mut answer = ErrorAnswer {
        status,
        message: reason.to_owned(),
        errors: Default::default(),
    };
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
        if let Some(Value::String(m)) = obj.get("message") {
            if !m.trim().is_empty() {
                answer.message = m.clone();
            }
        }
        if let Some(Value::Object(errors)) = obj.get("errors") {
            for (k, v) in errors {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                answer.errors.insert(k.clone(), text);
            }
        }
    } else if answer.message.trim().is_empty() && !body.is_empty() {
        // 501/506 come as plain text.
        answer.message = short(&String::from_utf8_lossy(body));
    }
    answer
}

fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(crate) fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// pve-node format: `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`
pub(crate) fn valid_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Everything but RFC 3986 unreserved characters is escaped: volids carry ':' and '/', UPIDs
/// ':' '@' '!', and each must stay one path component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Joins path components, percent-encoding each: `api_path(&["nodes", n, "lxc"])`.
pub(crate) fn api_path(components: &[&str]) -> String {
    let mut out = String::new();
    for c in components {
        out.push('/');
        out.extend(utf8_percent_encode(c, COMPONENT));
    }
    out
}

/// Request parameters, encoded the way PVE wants them: booleans as `0`/`1` (PVE rejects
/// `"true"`, pve-common `JSONSchema.pm:1243-1262`), integers as JSON numbers, the rest as strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Params(pub(crate) Map<String, Value>);

impl Params {
    pub(crate) fn new() -> Self {
        Params::default()
    }
    pub(crate) fn str(mut self, k: &str, v: impl Into<String>) -> Self {
        self.0.insert(k.to_owned(), Value::String(v.into()));
        self
    }
    pub(crate) fn int(mut self, k: &str, v: i64) -> Self {
        self.0.insert(k.to_owned(), Value::from(v));
        self
    }
    pub(crate) fn bool(mut self, k: &str, v: bool) -> Self {
        self.0.insert(k.to_owned(), Value::from(u8::from(v)));
        self
    }
    pub(crate) fn opt_str(self, k: &str, v: Option<impl Into<String>>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }
    pub(crate) fn opt_int(self, k: &str, v: Option<i64>) -> Self {
        match v {
            Some(v) => self.int(k, v),
            None => self,
        }
    }
    pub(crate) fn opt_bool(self, k: &str, v: Option<bool>) -> Self {
        match v {
            Some(v) => self.bool(k, v),
            None => self,
        }
    }
    pub(crate) fn value(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.to_owned(), normalize(v));
        self
    }
    fn to_query(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

/// JSON booleans become 0/1 so nothing typed as `bool` by a caller reaches PVE as `true`.
pub(crate) fn normalize(v: Value) -> Value {
    match v {
        Value::Bool(b) => Value::from(u8::from(b)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_escaped() {
        assert_eq!(
            api_path(&[
                "nodes",
                "pve1",
                "storage",
                "local",
                "content",
                "local:backup/vzdump-lxc-101.tar.zst"
            ]),
            "/nodes/pve1/storage/local/content/local%3Abackup%2Fvzdump-lxc-101.tar.zst"
        );
        assert_eq!(
            api_path(&["nodes", "pve1", "tasks", "UPID:pve1:0001:0002:0003:vzstart:101:a@pve!t:", "status"]),
            "/nodes/pve1/tasks/UPID%3Apve1%3A0001%3A0002%3A0003%3Avzstart%3A101%3Aa%40pve%21t%3A/status"
        );
        assert_eq!(api_path(&["a b", "../x"]), "/a%20b/..%2Fx");
    }

    #[test]
    fn params_encode_booleans_as_integers() {
        let p = Params::new()
            .bool("force", true)
            .bool("purge", false)
            .int("cores", 2)
            .str("hostname", "web")
            .value("onboot", Value::Bool(true));
        assert_eq!(
            Value::Object(p.0.clone()).to_string(),
            r#"{"force":1,"purge":0,"cores":2,"hostname":"web","onboot":1}"#
        );
        assert_eq!(
            p.to_query(),
            vec![
                ("force".into(), "1".into()),
                ("purge".into(), "0".into()),
                ("cores".into(), "2".into()),
                ("hostname".into(), "web".into()),
                ("onboot".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn envelope_decoding() {
        assert_eq!(
            decode_envelope("GET", "/v", br#"{"data":{"a":1}}"#).unwrap()["a"],
            1
        );
        assert_eq!(
            decode_envelope("GET", "/v", br#"{"data":null}"#).unwrap(),
            Value::Null
        );
        let e = decode_envelope("GET", "/version", b"<html>oops</html>").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("GET /version: malformed answer: not json"),
            "{s}"
        );
        assert!(s.contains("<html>oops"), "{s}");
        let e = decode_envelope("GET", "/version", br#"{"version":"9"}"#).unwrap_err();
        assert!(e.to_string().contains("no \"data\""), "{e}");
        let e = decode_envelope("GET", "/version", br#"[1,2]"#).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }));
    }

    #[test]
    fn error_answers_use_body_or_reason() {
        let a = error_answer(401, "Authentication failed!", b"");
        assert_eq!(a.message, "Authentication failed!");
        let a = error_answer(
            400,
            "Parameter verification failed.",
            br#"{"data":null,"message":"Parameter verification failed.\n","errors":{"vmid":"value must have a minimum value of 100"}}"#,
        );
        assert_eq!(a.errors["vmid"], "value must have a minimum value of 100");
        let a = error_answer(501, "Not Implemented", b"");
        assert_eq!(a.message, "Not Implemented");
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("pve1"));
        assert!(valid_node_name("a-b"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name("a/b"));
        assert!(!valid_node_name(""));
    }
}
