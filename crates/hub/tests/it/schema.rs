use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hub::{HostReport, PollLoop, PollOptions};
use serde_json::{json, Value};

use crate::against_sim::{AuditSource, Sim};

fn schema(name: &str) -> PathBuf {
    testkit::workspace_root().join("docs/schemas").join(name)
}

/// Validates `doc` against `schema_file` with Python's jsonschema; `Ok(false)` = skipped.
fn validate(schema_file: &str, doc: &Value) -> Result<bool, String> {
    let Some(py) = testkit::python_with(&["jsonschema"]).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("doc.json");
    std::fs::write(&doc_path, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = Command::new(py)
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[1])); d=json.load(open(sys.argv[2]))\n\
             jsonschema.Draft202012Validator.check_schema(s)\n\
             errs=sorted(jsonschema.Draft202012Validator(s).iter_errors(d), key=str)\n\
             [print(list(e.absolute_path), e.message) for e in errs]\n\
             sys.exit(1 if errs else 0)",
        ])
        .arg(schema(schema_file))
        .arg(&doc_path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn full_report() -> HostReport {
    let mut r: HostReport = serde_json::from_value(json!({
        "v": 1, "host_id": "pve-01", "sent_at": "2026-01-01T00:00:00Z",
        "desired": {"received_generation": 3, "applied_generation": 2, "rejected": {"generation": 1, "reason": "older"}},
        "agent": {"healthy": true, "last_fetch_age_s": 4, "consecutive_failures": 0, "last_error": null, "poll_interval_s": 30},
        "host": {"cpu_percent": 12.5, "cpu_count": 8, "load": [0.1, 0.2, 0.3], "uptime_s": 100,
                 "memory": {"total_bytes": 10, "available_bytes": 4, "used_bytes": 6},
                 "swap": {"total_bytes": 0, "free_bytes": 0},
                 "filesystems": [{"path": "/", "total_bytes": 10, "free_bytes": 5, "available_bytes": 4}],
                 "smart": [{"device": "/dev/sda", "passed": true, "temperature_c": 31, "power_on_hours": 9, "age_s": 60, "error": null}],
                 "pve": {"pve_version": "pve-manager/9.1.1", "kernel": "6.8", "cpu": 0.1},
                 "errors": [{"collector": "statvfs:/x", "message": "statvfs /x failed"}]},
        "guests": [{"vmid": 101, "kind": "lxc", "name": "a", "status": "running", "managed": true, "lock": null, "template": false,
                    "spec": {"cores": 2.0, "memory_bytes": 1, "disk_bytes": 2}, "usage": {"cpu": 0.1, "memory_bytes": 1, "disk_bytes": 1, "uptime_s": 5}}],
        "storage_targets": [{"id": "usb1", "kind": "usb", "durable_id": "uuid", "class": "slow", "role": "vzdump-target", "state": "attached", "reachable": true, "total_bytes": 1, "available_bytes": 1}],
        "last_backups": [{"target": "usb1", "vmid": 101, "finished_at": "2026-01-01T00:00:00Z", "outcome": "ok", "size_bytes": 5, "error": null}],
        "last_restore_test": {"vmid": 101, "finished_at": "2026-01-01T00:00:00Z", "outcome": "passed", "detail": null},
        "cloudflared": {"address": "127.0.0.1:20241", "ready": true, "ready_connections": 4, "error": null},
        "versions": {"agent": "0.1.0", "protocol": 1, "controllers": [{"vmid": 101, "version": "1.2"}]},
        "audit": {"entries": [], "omitted": {"from_seq": 1, "to_seq": 2, "count": 2}},
        "pending_signature": [{"vmid": 101, "action": "guest.destroy", "step": "destroy 101", "generation": 3, "since": "2026-01-01T00:00:00Z"}],
        "op_outcomes": [{"op_id": "op-1", "outcome": "rejected", "reason": "replay", "at": "2026-01-01T00:00:00Z"}],
        "reconcile_errors": [{"vmid": 102, "error": "task failed", "since": "2026-01-01T00:00:00Z", "attempts": 3}]
    })).unwrap();
    r.audit
        .entries
        .push(crate::against_sim::AuditSource::default().entry(5));
    r
}

impl AuditSource {
    fn entry(&self, seq: u64) -> hub::AuditEntry {
        hub::AuditEntry {
            seq,
            at: 1,
            kind: "k".into(),
            actor: Some("a".into()),
            action: None,
            target: None,
            op_id: None,
            outcome: "accepted".into(),
            reason: None,
            detail: None,
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
        }
    }
}

#[tokio::test]
async fn real_messages_match_the_published_schemas() {
    // Every section filled, and an empty one, as the agent serializes them.
    let full = serde_json::to_value(full_report()).unwrap();
    let empty = serde_json::to_value(HostReport::empty("h1", "0.1.0")).unwrap();
    for doc in [&full, &empty] {
        match validate("hub-report.schema.json", doc) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => panic!("report does not match its schema:\n{e}"),
        }
    }
    // A report the loop really sent, and what the reference hub really answered.
    let sim = Sim::start().await;
    sim.admin(
        reqwest::Method::PUT,
        "/admin/hosts/h1/desired",
        Some(json!({"v": 1, "generation": 2, "guests": []})),
    )
    .await;
    sim.admin(
        reqwest::Method::POST,
        "/admin/hosts/h1/ops",
        Some(json!({"payload": "e30=", "signature": "s"})),
    )
    .await;
    sim.admin(reqwest::Method::PUT, "/admin/hosts/h1/config", Some(json!({"poll_interval_s": 60, "jitter_s": 10, "update_window": {"start": "02:00", "duration_min": 90}}))).await;
    let (mut lp, _h) = PollLoop::new(
        sim.client(&sim.hub.info.api_key, false),
        AuditSource {
            entries: 2,
            ..Default::default()
        },
        PollOptions::new("h1", Duration::from_secs(30)),
    );
    assert!(lp.run_once().await.is_ok());
    let sent = sim
        .admin(reqwest::Method::GET, "/admin/hosts/h1/report", None)
        .await;
    validate("hub-report.schema.json", &sent).unwrap();
    let directive: Value = sim
        .http
        .get(format!("{}/api/v1/hosts/h1/desired", sim.hub.info.url))
        .bearer_auth(&sim.hub.info.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    validate("hub-directive.schema.json", &directive).unwrap();
    let ack: Value = sim
        .http
        .post(format!("{}/api/v1/hosts/h1/report", sim.hub.info.url))
        .bearer_auth(&sim.hub.info.api_key)
        .json(&sent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    validate("hub-report-ack.schema.json", &ack).unwrap();

    // The schemas are not vacuous: broken documents fail.
    let mut bad = full.clone();
    bad["guests"][0]["vmid"] = json!("101");
    assert!(validate("hub-report.schema.json", &bad).is_err());
    let mut bad = full.clone();
    bad.as_object_mut().unwrap().remove("storage_targets");
    assert!(validate("hub-report.schema.json", &bad).is_err());
    let mut bad = directive.clone();
    bad["v"] = json!(2);
    assert!(validate("hub-directive.schema.json", &bad).is_err());
    let mut bad = directive;
    bad["config"]["update_window"]["start"] = json!("2am");
    assert!(validate("hub-directive.schema.json", &bad).is_err());
}
