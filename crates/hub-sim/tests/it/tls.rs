//! `--tls` / `Options::tls`: the agent API over HTTPS with a pinned, restart-stable certificate,
//! checked with the same pinning verifier the agent uses (`pve::pinned_client_config`), so a
//! pass here means an agent configured with the printed fingerprint can talk to this hub.

use std::time::Duration;

use serde_json::Value;

use crate::{pinned, spawn_binary, TestHub};

async fn start_tls(dir: tempfile::TempDir, listen: Option<std::net::SocketAddr>) -> TestHub {
    let mut opts = hub_sim::Options::loopback(dir.path());
    opts.tls = true;
    if let Some(addr) = listen {
        opts.listen = addr;
    }
    let hub = hub_sim::start(opts).await.unwrap();
    let pin = hub
        .info
        .fingerprint
        .clone()
        .expect("a TLS hub announces its fingerprint");
    TestHub {
        hub,
        dir,
        http: pinned(&pin),
    }
}

fn assert_fingerprint_form(fp: &str) {
    let parts: Vec<&str> = fp.split(':').collect();
    assert_eq!(parts.len(), 32, "{fp}");
    assert!(
        parts.iter().all(|p| p.len() == 2
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))),
        "not upper-case AA:BB:… hex: {fp}"
    );
}

#[tokio::test]
async fn tls_serves_the_agent_api_to_a_pinned_client_with_a_stable_certificate() {
    let t = start_tls(tempfile::tempdir().unwrap(), None).await;
    let info = t.hub.info.clone();
    let pin = info.fingerprint.clone().unwrap();
    assert!(info.url.starts_with("https://127.0.0.1:"), "{}", info.url);
    assert!(info.admin_url.starts_with("http://127.0.0.1:"));
    assert_fingerprint_form(&pin);
    assert!(t.dir.path().join("tls").is_dir());

    // The pinned client gets through with the Bearer key; the admin API stays plain HTTP.
    assert_eq!(t.get_desired("h1", None).await.status(), 200);
    let (s, hosts) = t
        .admin_json(reqwest::Method::GET, "/admin/hosts", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 1);

    // A different pin is refused: the printed fingerprint is the served leaf's.
    let zeros = vec!["00"; 32].join(":");
    let err = pinned(&zeros)
        .get(t.agent("h1", "desired"))
        .header("authorization", t.key())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // Plain HTTP on the HTTPS port gets no answer.
    let plain = info.url.replacen("https://", "http://", 1);
    let res = crate::http()
        .get(format!("{plain}/api/v1/hosts/h1/desired"))
        .header("authorization", t.key())
        .send()
        .await;
    assert!(res.is_err(), "plain HTTP answered: {res:?}");

    // Restart on the same state and port: same certificate, key and URL, so an agent's pin
    // and configuration survive a hub restart.
    let agent_addr = t.hub.agent_addr;
    let TestHub { hub, dir, .. } = t;
    hub.shutdown().await;
    let t = start_tls(dir, Some(agent_addr)).await;
    assert_eq!(t.hub.info.fingerprint.as_deref(), Some(pin.as_str()));
    assert_eq!(t.hub.info.api_key, info.api_key);
    assert_eq!(t.hub.info.url, info.url);
    assert_eq!(t.fresh_get_desired("h1").await.unwrap().status(), 200);
    t.hub.shutdown().await;
}

#[tokio::test]
async fn plain_ready_line_has_no_fingerprint() {
    let t = TestHub::start(Duration::from_secs(90)).await;
    assert_eq!(t.hub.info.fingerprint, None);
    let line: Value = serde_json::to_value(&t.hub.info).unwrap();
    let mut keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["admin_url", "api_key", "url"]);
}

#[tokio::test]
async fn down_over_tls_refuses_connections_then_comes_back_on_the_same_port() {
    let t = start_tls(tempfile::tempdir().unwrap(), None).await;
    crate::admin::assert_down_then_back(&t).await;
    t.hub.shutdown().await;
}

#[tokio::test]
async fn binary_with_tls_prints_a_stable_fingerprint_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, info, line) = spawn_binary(dir.path(), &["--tls"]);
    let _ = (child.kill(), child.wait());
    assert!(info.url.starts_with("https://127.0.0.1:"), "{line}");
    assert!(info.admin_url.starts_with("http://127.0.0.1:"), "{line}");
    let pin = info
        .fingerprint
        .clone()
        .expect("fingerprint in the ready line");
    assert_fingerprint_form(&pin);

    // A second process on the same state (even after a kill -9) presents the same certificate.
    let (mut again, info2, _) = spawn_binary(dir.path(), &["--tls"]);
    assert_eq!(info2.fingerprint.as_deref(), Some(pin.as_str()));
    let status = pinned(&pin)
        .get(format!("{}/api/v1/hosts/h1/desired", info2.url))
        .bearer_auth(&info2.api_key)
        .send()
        .await
        .unwrap()
        .status();
    let _ = (again.kill(), again.wait());
    assert_eq!(status, 200);
}
