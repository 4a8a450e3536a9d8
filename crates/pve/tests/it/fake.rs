use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::Value;

use pve::{ApiToken, Client, ClientConfig, Fingerprint};

pub const TOKEN: &str = "felhom-agent@pve!agent=0b1c2d3e-aaaa-bbbb-cccc-1234567890ab";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    pub peer: SocketAddr,
}

/// What the fake answers.
pub struct Answer {
    pub status: u16,
    pub reason: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn data(v: Value) -> Self {
        Answer {
            status: 200,
            reason: None,
            body: serde_json::json!({ "data": v }).to_string().into_bytes(),
        }
    }
    pub fn error(status: u16, reason: &'static str, body: &str) -> Self {
        Answer {
            status,
            reason: Some(reason),
            body: body.as_bytes().to_vec(),
        }
    }
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

struct FakeState {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
}

pub struct Fake {
    pub url: String,
    pub fingerprint: Fingerprint,
    state: Arc<FakeState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Fake {
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn client(&self) -> Client {
        self.client_with_pin(self.fingerprint)
    }

    pub fn client_with_pin(&self, pin: Fingerprint) -> Client {
        let token: ApiToken = TOKEN.parse().unwrap();
        Client::new(ClientConfig::new(&self.url, "pve1", token, pin)).unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A self-signed certificate and its PKCS#8 key.
pub struct TestCert {
    pub der: CertificateDer<'static>,
    pub key_pkcs8: Vec<u8>,
}

pub fn new_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    TestCert {
        der: ck.cert.der().clone(),
        key_pkcs8: ck.signing_key.serialize_der(),
    }
}

/// Serves `script` over TLS presenting `cert` and signing handshakes with `signing_key_pkcs8`
/// (normally the certificate's own key; another key makes an impostor).
pub async fn serve_with(
    cert: &TestCert,
    signing_key_pkcs8: &[u8],
    script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> Fake {
    let provider = Arc::new(ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            signing_key_pkcs8.to_vec(),
        )))
        .unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.der.clone()], key));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));

    let state = Arc::new(FakeState {
        script: Box::new(script),
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls)
        .unwrap()
        .handle(handle.clone());
    tokio::spawn(async move {
        let _ = server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await;
    });
    Fake {
        url: format!("https://{addr}"),
        fingerprint: Fingerprint::from_der(cert.der.as_ref()),
        state,
        handle,
    }
}

pub async fn serve(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Fake {
    let cert = new_cert();
    let key = cert.key_pkcs8.clone();
    serve_with(&cert, &key, script).await
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        peer,
    };
    let answer = (state.script)(&seen);
    state.seen.lock().unwrap().push(seen);
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    if let Some(reason) = answer.reason {
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).unwrap());
    }
    resp
}
