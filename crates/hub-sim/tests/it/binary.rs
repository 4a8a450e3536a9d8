use std::process::Command;

use crate::spawn_binary;

#[tokio::test]
async fn prints_one_ready_line_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, info, line) = spawn_binary(dir.path(), &["--deadline-s", "5"]);
    assert!(info.url.starts_with("http://127.0.0.1:"));
    // Without --tls the ready line is what it always was: no fingerprint key at all.
    assert!(!line.contains("fingerprint"), "{line}");
    assert!(info.admin_url.starts_with("http://127.0.0.1:"));
    assert_ne!(info.url, info.admin_url);
    let http = crate::http();
    let v: serde_json::Value = http
        .get(format!("{}/admin/alerts", info.admin_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["deadline_s"], 5.0);
    let status = http
        .get(format!("{}/api/v1/hosts/h1/desired", info.url))
        .bearer_auth(&info.api_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // SIGTERM ends it cleanly.
    unsafe_free_sigterm(child.id());
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    // The key is stable across restarts on the same state.
    let (mut again, info2, _) = spawn_binary(dir.path(), &[]);
    assert_eq!(info2.api_key, info.api_key);
    let _ = again.kill();
    let _ = again.wait();
}

fn unsafe_free_sigterm(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
