use serde_json::json;

use pve::{ApiToken, Client, ClientConfig, Error, Fingerprint};

use crate::fake::{self, Answer};

fn version() -> Answer {
    Answer::data(json!({"version": "9.1.3", "release": "9.1", "repoid": "ee7bad0a"}))
}

#[tokio::test]
async fn right_pin_connects_and_sends_the_token() {
    let fake = fake::serve(|_| version()).await;
    let v = fake.client().version().await.unwrap();
    assert_eq!(v.version, "9.1.3");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api2/json/version");
    assert_eq!(
        seen[0].headers["authorization"].to_str().unwrap(),
        format!("PVEAPIToken={}", fake::TOKEN)
    );
    assert!(seen[0].headers.get("cookie").is_none());
}

#[tokio::test]
async fn wrong_pin_names_expected_and_actual() {
    let fake = fake::serve(|_| version()).await;
    let wrong = Fingerprint::from_der(b"some other certificate");
    let err = fake.client_with_pin(wrong).version().await.unwrap_err();
    match &err {
        Error::PinMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, fake.fingerprint);
        }
        other => panic!("expected PinMismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&wrong.to_string()), "{text}");
    assert!(text.contains(&fake.fingerprint.to_string()), "{text}");
    assert!(!err.is_retryable());
    assert!(fake.seen().is_empty(), "nothing may reach the server");
}

/// The server presents the pinned certificate but cannot sign with its key: the handshake
/// signature check must reject it (a verifier that only compares fingerprints would accept).
#[tokio::test]
async fn impostor_with_pinned_cert_but_other_key_is_rejected() {
    let real = fake::new_cert();
    let other = fake::new_cert();
    let impostor = fake::serve_with(&real, &other.key_pkcs8, |_| version()).await;
    assert_eq!(
        impostor.fingerprint,
        Fingerprint::from_der(real.der.as_ref())
    );
    let err = impostor.client().version().await.unwrap_err();
    assert!(
        matches!(err, Error::Tls { .. }),
        "expected Tls, got {err:?}"
    );
    assert!(!err.is_retryable());
    assert!(impostor.seen().is_empty());

    // Control: the same certificate with its own key is accepted.
    let genuine = fake::serve_with(&real, &real.key_pkcs8, |_| version()).await;
    genuine.client().version().await.unwrap();
}

#[tokio::test]
async fn malformed_pin_is_a_parse_error() {
    let err = "AA:BB:CC".parse::<Fingerprint>().unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            what: "fingerprint",
            ..
        }
    ));
    assert!(err.to_string().contains("got 3 part"), "{err}");
}

#[tokio::test]
async fn connections_are_reused() {
    let fake = fake::serve(|_| version()).await;
    let client = fake.client();
    for _ in 0..3 {
        client.version().await.unwrap();
    }
    let peers: Vec<_> = fake.seen().iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

#[tokio::test]
async fn refused_connection_is_retryable_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let token: ApiToken = fake::TOKEN.parse().unwrap();
    let client = Client::new(ClientConfig::new(
        format!("https://127.0.0.1:{port}"),
        "pve1",
        token,
        Fingerprint::from_der(b"x"),
    ))
    .unwrap();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn plain_http_and_bad_node_are_refused() {
    let token: ApiToken = fake::TOKEN.parse().unwrap();
    let fp = Fingerprint::from_der(b"x");
    let e = Client::new(ClientConfig::new(
        "http://127.0.0.1:8006",
        "pve1",
        token.clone(),
        fp,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("only spoken over https"), "{e}");
    let e = Client::new(ClientConfig::new(
        "https://127.0.0.1:8006",
        "pve/1",
        token.clone(),
        fp,
    ))
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { what: "node", .. }));
    let c = Client::new(ClientConfig::new(
        "https://h:8006/api2/json/",
        "pve1",
        token,
        fp,
    ))
    .unwrap();
    assert_eq!(c.api_base(), "https://h:8006/api2/json");
    assert!(!format!("{c:?}").contains("0b1c2d3e"));
}
