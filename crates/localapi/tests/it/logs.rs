//! No token or secret ever appears in a log line, whatever the client sends.

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;

use crate::support::{vmid, Harness};

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the server's tasks run on this thread, under this subscriber.
#[tokio::test]
async fn no_token_in_any_log_line() {
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::start().await;
    let t1 = h.t101.expose().to_owned();
    let t2 = h.t102.expose().to_owned();
    let t3 = h.t103.expose().to_owned();
    let forged = format!("{}{}", &t1[..21], "c".repeat(64));
    h.call(Method::GET, "/backup/status", Some(&t1), None).await;
    h.call(Method::GET, "/backup/status", Some(&forged), None)
        .await;
    h.call(Method::GET, "/backup/status", Some(&t1[..40]), None)
        .await;
    // A controller pasting tokens into parameters and names.
    h.call(Method::GET, &format!("/storage?{t2}=1"), Some(&t1), None)
        .await;
    h.call(Method::GET, &format!("/storage?vmid={t2}"), Some(&t1), None)
        .await;
    let body = serde_json::json!({ "name": t2, t3.clone(): 1 }).to_string();
    h.call(Method::POST, "/snapshot", Some(&t1), Some(&body))
        .await;
    let body = serde_json::json!({ "name": t2 }).to_string();
    h.call(Method::POST, "/snapshot", Some(&t1), Some(&body))
        .await;
    h.call(
        Method::POST,
        "/rollback",
        Some(&t1),
        Some(r#"{"name":"nosuch"}"#),
    )
    .await;
    h.guests.destroy(vmid(103));
    h.call(Method::GET, "/storage", Some(&t3), None).await;
    let rotated = localapi::rotate(h.tokens.as_ref(), &localapi::SystemClock, vmid(101))
        .unwrap()
        .0;
    h.call(Method::GET, "/storage", Some(rotated.expose()), None)
        .await;
    let events = h.audit.events();
    h.stop().await;

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    // The test means something only if the refusals were logged.
    assert!(logs.contains("local api call refused"), "{logs}");
    assert!(
        logs.contains("local api call tried to name a guest"),
        "{logs}"
    );
    assert!(logs.contains("local api token rotated"), "{logs}");
    for secret in [&t1, &t2, &t3, &forged, &rotated.expose().to_owned()] {
        let secret_part = &secret[21..];
        assert!(!logs.contains(secret_part), "secret in logs:\n{logs}");
        // Even a prefix of the secret (a truncated token) must not show.
        assert!(
            !logs.contains(&secret_part[..16]),
            "secret prefix in logs:\n{logs}"
        );
    }
    // The audit events carry ids, never secrets.
    let audit = format!("{events:?}");
    for secret in [&t1, &t2, &t3, &forged] {
        assert!(!audit.contains(&secret[21..37]), "{audit}");
    }
}
