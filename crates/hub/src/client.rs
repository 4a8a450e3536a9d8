//! The HTTPS client of hub protocol v1: one conditional `GET …/desired`, one `POST …/report`.
//!
//! TLS uses the system trust store (`rustls-native-certs`, ring provider), or, when a pin is
//! configured, the strict SHA-256 leaf pin of the `pve` crate instead (no CA check at all:
//! a pinned hub may use a self-signed certificate). Plain `http://` is accepted only for a
//! loopback hub (tests, the demo, the reference hub), because the API key would otherwise
//! travel in clear text. Redirects are not followed: the key must not be replayed elsewhere.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
};
use reqwest::StatusCode;
use tracing::debug;

use crate::directive::{Directive, DirectiveProblem};
use crate::encode::{gunzip_bounded, EncodedReport};
use crate::poll::{Fetched, HubApi};
use crate::report::ReportAck;
use crate::{Error, PROTOCOL_VERSION};

/// Largest directive accepted, bytes after decompression (a desired state for 1,000 guests
/// is a few hundred KiB).
pub const MAX_DIRECTIVE_BYTES: usize = 8 * 1024 * 1024;
/// Largest report acknowledgement accepted, bytes.
const MAX_ACK_BYTES: usize = 64 * 1024;

/// How to reach the hub.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL (`https://hub.example/` or `https://hub.example/prefix/`); the protocol's
    /// paths (`api/v1/…`) are joined below it.
    pub url: url::Url,
    /// This host's id (`[A-Za-z0-9._-]{1,64}`).
    pub host_id: String,
    /// The Bearer key.
    pub api_key: pve::Secret,
    /// Optional SHA-256 pin of the hub's leaf certificate; replaces the CA check.
    pub pin: Option<pve::Fingerprint>,
    /// TCP + TLS connect limit.
    pub connect_timeout: Duration,
    /// Whole-request limit.
    pub request_timeout: Duration,
    /// Send reports gzip-compressed (`Content-Encoding: gzip`).
    pub gzip_reports: bool,
}

impl ClientOptions {
    /// Options with the defaults: no pin, 5 s connect, 30 s request, gzip on.
    pub fn new(url: url::Url, host_id: impl Into<String>, api_key: pve::Secret) -> Self {
        ClientOptions {
            url,
            host_id: host_id.into(),
            api_key,
            pin: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            gzip_reports: true,
        }
    }
}

/// A hub client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    desired_url: url::Url,
    report_url: url::Url,
    api_key: pve::Secret,
    gzip: bool,
}

impl HubClient {
    /// Builds the client; checks the URL scheme, the host id and the TLS setup.
    pub fn new(opts: ClientOptions) -> Result<Self, Error> {
        check_host_id(&opts.host_id)?;
        let https = match opts.url.scheme() {
            "https" => true,
            "http" if is_loopback(&opts.url) => false,
            "http" => {
                return Err(Error::InsecureUrl {
                    url: opts.url.to_string(),
                })
            }
            other => {
                return Err(Error::InvalidOption {
                    key: "hub.url",
                    reason: format!("scheme {other:?} is neither https nor http"),
                })
            }
        };
        if opts.pin.is_some() && !https {
            return Err(Error::InvalidOption {
                key: "hub.fingerprint",
                reason: "a certificate pin needs an https url".into(),
            });
        }
        let tls = tls_config(https, opts.pin)?;
        // No proxy from the environment: a stray HTTP_PROXY would receive the Bearer key in
        // clear for a loopback http hub, and nothing in the agent's config asks for one.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("felhom-agent-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Tls {
                reason: e.to_string(),
            })?;
        let mut base = opts.url.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let join = |tail: &str| {
            base.join(&format!("api/v1/hosts/{}/{tail}", opts.host_id))
                .map_err(|e| Error::InvalidOption {
                    key: "hub.url",
                    reason: e.to_string(),
                })
        };
        Ok(HubClient {
            http,
            desired_url: join("desired")?,
            report_url: join("report")?,
            api_key: opts.api_key,
            gzip: opts.gzip_reports,
        })
    }

    /// Whether reports should be gzipped.
    pub fn gzip_reports(&self) -> bool {
        self.gzip
    }

    /// `GET …/desired`, conditional on `etag` (`If-None-Match`).
    pub async fn fetch_directive(&self, etag: Option<&str>) -> Result<Fetched, Error> {
        let url = self.desired_url.as_str();
        let mut req = self
            .http
            .get(self.desired_url.clone())
            .bearer_auth(self.api_key.expose())
            .header(ACCEPT, "application/json")
            .header(ACCEPT_ENCODING, "gzip");
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let resp = req.send().await.map_err(|source| Error::Transport {
            url: url.to_owned(),
            source,
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_bounded(resp, url, MAX_DIRECTIVE_BYTES, "directive").await?;
        read_directive_answer(status, &headers, body, url, etag.is_some())
    }

    /// `POST …/report` with an encoded report.
    pub async fn post_report(&self, report: &EncodedReport) -> Result<ReportAck, Error> {
        let url = self.report_url.as_str();
        let mut req = self
            .http
            .post(self.report_url.clone())
            .bearer_auth(self.api_key.expose())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json");
        if report.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = req
            .body(report.body.clone())
            .send()
            .await
            .map_err(|source| Error::Transport {
                url: url.to_owned(),
                source,
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_bounded(resp, url, MAX_ACK_BYTES, "report ack").await?;
        read_ack_answer(status, &headers, body, url)
    }
}

/// How [`HubClient::fetch_directive`] reads the hub's answer once the body is in memory
/// (already bounded to [`MAX_DIRECTIVE_BYTES`]): 304 only to a `conditional` request, any
/// status but 200 an error, `Content-Encoding` gzip or identity (gunzipped within the bound),
/// then [`Directive::parse`] and the `ETag`. Pure, so the fuzz target `hub_answer` feeds
/// exactly what the client runs.
pub fn read_directive_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: Vec<u8>,
    url: &str,
    conditional: bool,
) -> Result<Fetched, Error> {
    if status == StatusCode::NOT_MODIFIED {
        if !conditional {
            return Err(garbage("directive", url, "304 to an unconditional request"));
        }
        debug!("directive not modified");
        return Ok(Fetched::NotModified);
    }
    if status != StatusCode::OK {
        return Err(status_error(status, url, &body));
    }
    let body = decode_body(headers, body, url, MAX_DIRECTIVE_BYTES, "directive")?;
    let directive = Directive::parse(&body).map_err(|p| match p {
        DirectiveProblem::Garbage(reason) => garbage("directive", url, &reason),
        DirectiveProblem::Version(version) => Error::UnsupportedVersion {
            url: url.to_owned(),
            version,
        },
    })?;
    let etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Fetched::Changed { directive, etag })
}

/// How [`HubClient::post_report`] reads the hub's acknowledgement once the body is in memory
/// (bounded to 64 KiB): status 200, gzip or identity, a v1 [`ReportAck`]. Pure, like
/// [`read_directive_answer`].
pub fn read_ack_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: Vec<u8>,
    url: &str,
) -> Result<ReportAck, Error> {
    if status != StatusCode::OK {
        return Err(status_error(status, url, &body));
    }
    let body = decode_body(headers, body, url, MAX_ACK_BYTES, "report ack")?;
    let ack: ReportAck =
        serde_json::from_slice(&body).map_err(|e| garbage("report ack", url, &e.to_string()))?;
    if ack.v != PROTOCOL_VERSION {
        return Err(Error::UnsupportedVersion {
            url: url.to_owned(),
            version: u64::from(ack.v),
        });
    }
    Ok(ack)
}

impl HubApi for HubClient {
    async fn fetch_directive(&self, etag: Option<&str>) -> Result<Fetched, Error> {
        HubClient::fetch_directive(self, etag).await
    }

    async fn post_report(&self, report: &EncodedReport) -> Result<ReportAck, Error> {
        HubClient::post_report(self, report).await
    }

    fn gzip_reports(&self) -> bool {
        self.gzip
    }
}

fn tls_config(https: bool, pin: Option<pve::Fingerprint>) -> Result<rustls::ClientConfig, Error> {
    if let Some(pin) = pin {
        return pve::pinned_client_config(pin).map_err(|e| Error::Tls {
            reason: e.to_string(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "no certificates found".to_owned(), ToString::to_string);
            return Err(Error::Tls {
                reason: format!("system trust store is empty: {why}"),
            });
        }
    }
    // An http-only client still needs a TLS backend for reqwest to build; it has no roots and
    // is never used for TLS (the scheme was checked above).
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| Error::Tls {
            reason: e.to_string(),
        })
}

fn check_host_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            key: "host_id",
            reason: "must be 1-64 of A-Z a-z 0-9 . _ -".into(),
        })
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

async fn read_bounded(
    mut resp: reqwest::Response,
    url: &str,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|source| Error::Transport {
            url: url.to_owned(),
            source,
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > limit {
            return Err(Error::TooLarge { what, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn decode_body(
    headers: &HeaderMap,
    body: Vec<u8>,
    url: &str,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, Error> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding.trim() {
        "identity" | "" => Ok(body),
        e if e.eq_ignore_ascii_case("gzip") => gunzip_bounded(&body, limit).map_err(|e| match e {
            crate::encode::GunzipError::TooLarge => Error::TooLarge { what, limit },
            crate::encode::GunzipError::Corrupt(reason) => garbage(what, url, &reason),
        }),
        other => Err(garbage(
            what,
            url,
            &format!("unsupported content-encoding {other:?}"),
        )),
    }
}

fn status_error(status: StatusCode, url: &str, body: &[u8]) -> Error {
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            url: url.to_owned(),
        },
        StatusCode::FORBIDDEN => Error::Forbidden {
            url: url.to_owned(),
        },
        _ => {
            let text = String::from_utf8_lossy(body);
            let message: String = text.chars().take(200).collect();
            Error::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                message,
            }
        }
    }
}

fn garbage(what: &'static str, url: &str, reason: &str) -> Error {
    Error::Garbage {
        what,
        url: url.to_owned(),
        reason: reason.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str, host: &str) -> ClientOptions {
        ClientOptions::new(url.parse().unwrap(), host, pve::Secret::new("k"))
    }

    #[test]
    fn http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:1/",
            "http://localhost:8/x",
            "http://[::1]:9",
        ] {
            HubClient::new(opts(ok, "h1")).unwrap();
        }
        let err = HubClient::new(opts("http://hub.example/", "h1")).unwrap_err();
        assert!(matches!(err, Error::InsecureUrl { .. }), "{err}");
        let err = HubClient::new(opts("ftp://127.0.0.1/", "h1")).unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    }

    #[test]
    fn paths_are_versioned_and_keep_a_prefix() {
        let c = HubClient::new(opts("http://127.0.0.1:1/prefix", "pve-01")).unwrap();
        assert_eq!(
            c.desired_url.as_str(),
            "http://127.0.0.1:1/prefix/api/v1/hosts/pve-01/desired"
        );
        assert_eq!(
            c.report_url.as_str(),
            "http://127.0.0.1:1/prefix/api/v1/hosts/pve-01/report"
        );
    }

    #[test]
    fn host_id_cannot_escape_the_path() {
        for bad in ["", "..", "a/b", "a?b", "a b", &"x".repeat(65)] {
            assert!(
                HubClient::new(opts("http://127.0.0.1:1/", bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_key_never_in_debug() {
        let c = HubClient::new(opts("http://127.0.0.1:1/", "h1")).unwrap();
        assert!(!format!("{c:?}").contains("Secret(\"k\")"));
        assert!(format!("{c:?}").contains("redacted"));
    }
}
