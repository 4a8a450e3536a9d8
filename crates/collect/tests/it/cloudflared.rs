use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use collect::CloudflaredProbe;

/// A fake cloudflared metrics server whose `/ready` answers with `status`.
async fn fake(status: Arc<AtomicU16>) -> String {
    let app = Router::new().route(
        "/ready",
        get(move || {
            let s = status.load(Ordering::SeqCst);
            async move {
                if s == 0 {
                    // Hang: the probe must time out.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let conns = if s == 200 { 4 } else { 0 };
                (
                    StatusCode::from_u16(s.max(200)).unwrap(),
                    format!(
                        "{{\"status\":{s},\"readyConnections\":{conns},\"connectorId\":\"abc\"}}"
                    ),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr.to_string()
}

#[tokio::test]
async fn ready_not_ready_refused_and_timeout() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = fake(status.clone()).await;
    let probe = CloudflaredProbe::new(&addr, Duration::from_millis(500)).unwrap();

    let h = probe.probe().await;
    assert!(h.ready, "{h:?}");
    assert_eq!(h.ready_connections, Some(4));
    assert_eq!(h.address, addr);
    assert_eq!(h.error, None);

    status.store(503, Ordering::SeqCst);
    let h = probe.probe().await;
    assert!(!h.ready);
    assert_eq!(h.ready_connections, Some(0));
    assert_eq!(h.error.as_deref(), Some("/ready answered 503"));

    status.store(0, Ordering::SeqCst);
    let h = probe.probe().await;
    assert!(!h.ready);
    assert_eq!(h.error.as_deref(), Some("timed out"));

    // Nothing listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = l.local_addr().unwrap().to_string();
    drop(l);
    let h = CloudflaredProbe::new(&free, Duration::from_millis(500))
        .unwrap()
        .probe()
        .await;
    assert!(!h.ready);
    assert_eq!(
        h.error.as_deref(),
        Some("connection refused or unreachable")
    );
}

#[test]
fn address_must_be_host_and_port() {
    for bad in ["", "127.0.0.1", "127.0.0.1:1/x", "a b:1"] {
        assert!(
            CloudflaredProbe::new(bad, Duration::from_secs(1)).is_err(),
            "{bad}"
        );
    }
}
