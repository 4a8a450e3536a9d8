use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn prints_one_ready_line_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_felhom-hub-sim"))
        .args(["--state", dir.path().to_str().unwrap(), "--deadline-s", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: hub_sim::ReadyInfo = serde_json::from_str(line.trim()).unwrap();
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
    let mut again = Command::new(env!("CARGO_BIN_EXE_felhom-hub-sim"))
        .args(["--state", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(again.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info2: hub_sim::ReadyInfo = serde_json::from_str(line.trim()).unwrap();
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
