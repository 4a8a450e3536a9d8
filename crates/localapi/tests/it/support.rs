//! A real local API server over TLS on loopback, with the in-memory fakes behind it, and a
//! pinned reqwest client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use localapi::fakes::{FakeGuest, FakeGuests, MemoryAudit, MemoryTokenStore};
use localapi::{
    GuestMount, Identity, Limits, MintedToken, Ports, Running, StorageClass, SystemClock,
};
use pve::{Fingerprint, SnapshotName, Vmid};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub fn vmid(n: u32) -> Vmid {
    Vmid::new(n).unwrap()
}

pub fn snap(s: &str) -> SnapshotName {
    s.parse().unwrap()
}

/// Limits with short timeouts so the slow-client tests finish quickly.
pub fn test_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        handshake_timeout: Duration::from_secs(2),
        // Every test client is 127.0.0.1, and some open dozens of connections at once; the
        // per-address cap has tests of its own (limits.rs).
        max_connections_per_peer: 128,
        ..Limits::default()
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub guests: FakeGuests,
    pub tokens: Arc<MemoryTokenStore>,
    pub audit: Arc<MemoryAudit>,
    /// Tokens of guests 101, 102 and 103.
    pub t101: MintedToken,
    pub t102: MintedToken,
    pub t103: MintedToken,
    pub client: reqwest::Client,
    pub tls: Arc<rustls::ClientConfig>,
    running: Option<Running>,
    _state: tempfile::TempDir,
}

impl Harness {
    /// Gives `guest` a daily backup policy (`POST /backup` needs one: it names the target).
    pub fn give_backup_policy(&self, guest: u32) {
        let mut g = self.guests.guest(vmid(guest)).expect("a harness guest");
        g.policy = Some(localapi::BackupPolicy {
            schedule: localapi::Schedule::Daily,
            target: "backup-usb".into(),
            keep_last: 7,
        });
        self.guests.add(vmid(guest), g);
    }

    pub async fn start() -> Harness {
        Harness::with_limits(test_limits()).await
    }

    pub async fn with_limits(limits: Limits) -> Harness {
        let state = tempfile::tempdir().unwrap();
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        let identity = Identity::load_or_create(state.path(), &listen).unwrap();
        let fingerprint = localapi::fingerprint(state.path(), &listen).unwrap();
        assert_eq!(fingerprint, identity.fingerprint());

        let clock = Arc::new(SystemClock);
        let guests = FakeGuests::new(clock.clone());
        for (id, mounts) in [(101, 1), (102, 2), (103, 0)] {
            let mut g = FakeGuest::default();
            for i in 0..mounts {
                g.mounts.push(GuestMount {
                    path: format!("/mnt/vol{i}"),
                    class: if i == 0 {
                        StorageClass::Fast
                    } else {
                        StorageClass::Slow
                    },
                    backup: i == 0,
                });
            }
            g.snapshots.push(snap(&format!("base{id}")));
            guests.add(vmid(id), g);
        }
        let tokens = Arc::new(MemoryTokenStore::default());
        let audit = Arc::new(MemoryAudit::default());
        let t101 = localapi::mint(tokens.as_ref(), clock.as_ref(), vmid(101)).unwrap();
        let t102 = localapi::mint(tokens.as_ref(), clock.as_ref(), vmid(102)).unwrap();
        let t103 = localapi::mint(tokens.as_ref(), clock.as_ref(), vmid(103)).unwrap();
        let ports = Ports {
            tokens: tokens.clone(),
            ops: Arc::new(guests.clone()),
            view: Arc::new(guests.clone()),
            audit: audit.clone(),
            clock,
        };
        let running = localapi::start(&listen, identity.server_config().unwrap(), ports, limits)
            .await
            .unwrap();
        let addr = running.local_addrs()[0];
        let tls = Arc::new(pve::pinned_client_config(fingerprint).unwrap());
        let client = pinned_client(fingerprint);
        Harness {
            addr,
            fingerprint,
            guests,
            tokens,
            audit,
            t101,
            t102,
            t103,
            client,
            tls,
            running: Some(running),
            _state: state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// Sends a request with `token` (raw header value after `Bearer `) and an optional body;
    /// returns the status and the JSON body (Null if not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Stops the server; its last summaries are then in `audit`.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(1)).await.unwrap();
        }
    }

    /// A pinned client whose connections come from `local` (any 127.0.0.0/8 address on
    /// Linux): another guest, as far as the server's per-address limits can tell.
    pub fn client_from(&self, local: [u8; 4]) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(pve::pinned_client_config(self.fingerprint).unwrap())
            .https_only(true)
            .local_address(std::net::IpAddr::from(local))
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }
}

pub fn pinned_client(fingerprint: Fingerprint) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(fingerprint).unwrap())
        .https_only(true)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A raw TLS connection to the server, for what reqwest will not send (trickled bytes,
/// chunked oversize bodies).
pub async fn raw_tls(h: &Harness) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(h.tls.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads until the server closes or `limit` passes; returns what arrived and whether the
/// server closed the connection (false: `limit` passed with the connection still open).
pub async fn read_until_close<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Err(_) => break false,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
