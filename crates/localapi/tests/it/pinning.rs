//! The fingerprint `felhom-agent localapi fingerprint` prints is what a controller pins.

use reqwest::StatusCode;

use crate::support::{pinned_client, Harness};

#[tokio::test]
async fn a_client_pinning_the_printed_fingerprint_connects() {
    let h = Harness::start().await;
    // What the CLI prints is the `AA:BB:…` form; parse it back like a controller would.
    let printed = h.fingerprint.to_string();
    assert_eq!(printed.len(), 32 * 3 - 1);
    let client = pinned_client(printed.parse().unwrap());
    let resp = client
        .get(h.url("/backup/status"))
        .bearer_auth(h.t101.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn a_client_pinning_another_fingerprint_is_refused() {
    let h = Harness::start().await;
    // Another agent's certificate: a real, different fingerprint.
    let other_state = tempfile::tempdir().unwrap();
    let other = localapi::fingerprint(other_state.path(), &[]).unwrap();
    assert_ne!(other, h.fingerprint);
    let client = pinned_client(other);
    let err = client
        .get(h.url("/backup/status"))
        .bearer_auth(h.t101.expose())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // The token never crossed: no request reached the server.
    assert!(h.audit.events().is_empty());
    assert!(h.guests.calls().is_empty());
    h.stop().await;
}
