//! cloudflared health: `GET http://ADDR/ready` on its metrics server (peer-systems-notes §16).
//! 200 with `{"status":200,"readyConnections":N}` means at least one edge connection; 503,
//! connection refused or a timeout means not ready. `/healthcheck` is not used: it answers
//! "OK" whenever the process runs, tunnel or not. Start cloudflared with an explicit
//! `--metrics 127.0.0.1:PORT` so the address is known.

use std::sync::Arc;
use std::time::Duration;

use hub::CloudflaredHealth;
use serde::Deserialize;

use crate::CollectError;

/// Largest `/ready` body read.
const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ready {
    ready_connections: Option<u32>,
}

/// A probe of one cloudflared metrics server.
#[derive(Debug, Clone)]
pub struct CloudflaredProbe {
    address: String,
    url: String,
    http: reqwest::Client,
}

impl CloudflaredProbe {
    /// A probe of `address` (`host:port`; loopback in practice) with a short `timeout`.
    pub fn new(address: &str, timeout: Duration) -> Result<Self, CollectError> {
        let setup = |reason: String| CollectError::ProbeSetup {
            address: address.to_owned(),
            reason,
        };
        let url = format!("http://{address}/ready");
        let parsed = url::Url::parse(&url).map_err(|e| setup(e.to_string()))?;
        if parsed.path() != "/ready" || parsed.port().is_none() {
            return Err(setup("expected host:port".into()));
        }
        // Plain http only; reqwest still wants a TLS backend to build (deps-notes gotcha 1).
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        // cloudflared's metrics server is local: never route the probe through a proxy from
        // the environment (it would answer for cloudflared, or not at all).
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(CloudflaredProbe {
            address: address.to_owned(),
            url,
            http,
        })
    }

    /// Probes once. Never fails: problems become `ready: false` with the reason.
    pub async fn probe(&self) -> CloudflaredHealth {
        let mut health = CloudflaredHealth {
            address: self.address.clone(),
            ready: false,
            ready_connections: None,
            error: None,
        };
        let mut resp = match self.http.get(&self.url).send().await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "connection refused or unreachable".to_owned()
                } else {
                    crate::error_chain(&e)
                };
                health.error = Some(why);
                return health;
            }
        };
        let status = resp.status();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            if body.len() + chunk.len() > MAX_BODY {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        health.ready_connections = serde_json::from_slice::<Ready>(&body)
            .ok()
            .and_then(|r| r.ready_connections);
        if status.as_u16() == 200 {
            health.ready = true;
        } else {
            health.error = Some(format!("/ready answered {}", status.as_u16()));
        }
        health
    }
}
