//! Storage targets: the config endpoints with PVE's errors, `is_mountpoint` on a simulated
//! USB filesystem (`/_sim/usb`), unreachable targets, mount points in backups and restores,
//! snapshot refusal and mount point resize.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{start, state_dir, upid, Resp, Sim};

const UUID: &str = "7c0f3c3e-9f1a-4d5b-8a61-2f4b1c9d0e11";
const NOT_MOUNTED: &str = "unable to activate storage 'usb1' - directory is expected to be a mount point but is not mounted: '/mnt/usb1'";

fn err(r: &Resp) -> (u16, Value) {
    (r.status, r.json["message"].clone())
}

async fn plug(sim: &Sim, by_uuid: &Path, present: bool) {
    let r = sim
        .control(
            "usb",
            json!({"uuid": UUID, "present": present, "mount": "/mnt/usb1", "by_uuid_dir": by_uuid}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn create_usb_storage(sim: &Sim) -> Resp {
    sim.agent(
        "POST",
        "/storage",
        &[
            ("storage", "usb1"),
            ("type", "dir"),
            ("path", "/mnt/usb1"),
            ("is_mountpoint", "yes"),
            ("content", "backup,rootdir"),
        ],
    )
    .await
}

async fn status(sim: &Sim, id: &str) -> Value {
    let r = sim
        .agent("GET", &format!("/nodes/pve/storage/{id}/status"), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.data().clone()
}

async fn listed(sim: &Sim, id: &str) -> Value {
    let r = sim.agent("GET", "/nodes/pve/storage", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
        .as_array()
        .and_then(|a| a.iter().find(|s| s["storage"] == json!(id)).cloned())
        .unwrap_or_else(|| panic!("{id} not listed: {}", r.text))
}

async fn wait_exit(sim: &Sim, r: &Resp) -> String {
    let id = upid(r);
    sim.wait_task(&id).await["exitstatus"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn storage_types_with_pve_config_errors() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let create = |form: Vec<(&'static str, &'static str)>| {
        let sim = &sim;
        async move { sim.agent("POST", "/storage", &form).await }
    };
    // Required options are checked by the plugin, after the (all-optional) schema: 500.
    for (form, key) in [
        (vec![("storage", "d1"), ("type", "dir")], "path"),
        (
            vec![("storage", "n1"), ("type", "nfs"), ("server", "10.0.0.9")],
            "export",
        ),
        (
            vec![("storage", "c1"), ("type", "cifs"), ("server", "nas")],
            "share",
        ),
        (
            vec![("storage", "p1"), ("type", "pbs"), ("server", "10.0.0.10")],
            "datastore",
        ),
    ] {
        assert_eq!(
            err(&create(form).await),
            (
                500,
                json!(format!("missing value for required option '{key}'\n"))
            )
        );
    }
    let r = create(vec![
        ("storage", "d1"),
        ("type", "dir"),
        ("path", "/mnt/d1"),
        ("share", "x"),
    ])
    .await;
    assert_eq!(err(&r), (500, json!("unexpected property 'share'\n")));
    // A password is only a secret for CIFS and PBS; for dir it is an unknown option.
    let r = create(vec![
        ("storage", "d1"),
        ("type", "dir"),
        ("path", "/mnt/d1"),
        ("password", "pw"),
    ])
    .await;
    assert_eq!(err(&r), (500, json!("unexpected property 'password'\n")));
    let r = create(vec![
        ("storage", "d1"),
        ("type", "dir"),
        ("path", "/mnt/d:1"),
    ])
    .await;
    assert_eq!(
        err(&r),
        (500, json!("illegal path for directory storage: /mnt/d:1\n"))
    );

    let r = create(vec![
        ("storage", "d1"),
        ("type", "dir"),
        ("path", "/mnt/d1/"),
        ("content", "backup"),
    ])
    .await;
    assert_eq!(r.data(), &json!({"storage": "d1", "type": "dir"}));
    let r = create(vec![
        ("storage", "n1"),
        ("type", "nfs"),
        ("server", "10.0.0.9"),
        ("export", "/export/bk"),
        ("content", "backup"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = create(vec![
        ("storage", "c1"),
        ("type", "cifs"),
        ("server", "nas"),
        ("share", "backup"),
        ("username", "felhom"),
        ("password", "cifs-secret-1"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = create(vec![
        ("storage", "p1"),
        ("type", "pbs"),
        ("server", "10.0.0.10"),
        ("datastore", "store1"),
        ("username", "felhom@pbs!host1"),
        ("password", "pbs-secret-1"),
        (
            "fingerprint",
            "82:b6:2a:7c:e1:55:0d:9a:3f:6e:11:c4:8b:22:d0:4e:5a:91:0c:7d:e3:68:4f:b2:19:a5:c0:3e:77:d1:8f:20",
        ),
    ])
    .await;
    // PBS's add hook always returns a config object (empty without an encryption key).
    assert_eq!(
        r.data(),
        &json!({"storage": "p1", "type": "pbs", "config": {}})
    );

    let cfg = sim.agent("GET", "/storage/d1", &[]).await;
    assert_eq!(cfg.data()["path"], json!("/mnt/d1"), "canonical path");
    let cfg = sim.agent("GET", "/storage/n1", &[]).await;
    assert_eq!(cfg.data()["path"], json!("/mnt/pve/n1"));
    assert_eq!(cfg.data()["shared"], json!(1));
    let all = sim.agent("GET", "/storage", &[]).await.text;
    assert!(
        !all.contains("cifs-secret-1") && !all.contains("pbs-secret-1"),
        "{all}"
    );

    let r = create(vec![
        ("storage", "d1"),
        ("type", "dir"),
        ("path", "/mnt/d1"),
    ])
    .await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("create storage failed: storage ID 'd1' already defined\n")
        )
    );
    let r = sim
        .agent("PUT", "/storage/n1", &[("server", "10.0.0.8")])
        .await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("update storage failed: can't change value of fixed parameter 'server'\n")
        )
    );
    let r = sim
        .agent("PUT", "/storage/n1", &[("delete", "export")])
        .await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("update storage failed: unable to delete required option 'export'\n")
        )
    );
    let r = sim
        .agent("PUT", "/storage/n1", &[("options", "vers=4.2")])
        .await;
    assert_eq!(r.data(), &json!({"storage": "n1", "type": "nfs"}));
    let r = sim.agent("PUT", "/storage/nope", &[("disable", "1")]).await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("update storage failed: storage 'nope' does not exist\n")
        )
    );
    let r = sim.agent("DELETE", "/storage/nope", &[]).await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("delete storage failed: storage 'nope' does not exist\n")
        )
    );
    assert_eq!(sim.agent("DELETE", "/storage/c1", &[]).await.status, 200);
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn is_mountpoint_storage_follows_the_usb_filesystem() {
    let dir = state_dir();
    let by_uuid = dir.path().join("by-uuid");
    let link = by_uuid.join(UUID);
    let sim = start(
        dir.path().join("state").as_path(),
        &["--guests", "2", "--task-ms", "50"],
    );

    // Not mounted: the create activates the storage and fails, nothing is written.
    let r = create_usb_storage(&sim).await;
    assert_eq!(
        err(&r),
        (
            500,
            json!(format!("create storage failed: {NOT_MOUNTED}\n"))
        )
    );
    assert_eq!(sim.agent("GET", "/storage/usb1", &[]).await.status, 500);

    plug(&sim, &by_uuid, true).await;
    assert_eq!(
        std::fs::read_link(&link).expect("by-uuid link"),
        Path::new("../../sdb1")
    );
    assert_eq!(create_usb_storage(&sim).await.status, 200);
    let s = status(&sim, "usb1").await;
    assert_eq!(
        (s["active"].clone(), s["enabled"].clone()),
        (json!(1), json!(1))
    );
    assert!(s["total"].as_u64().is_some_and(|t| t > 0), "{s}");
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "101"), ("storage", "usb1")],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");

    // Pulled: the link goes, the mount goes, status still answers 200 with active 0.
    plug(&sim, &by_uuid, false).await;
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    let s = status(&sim, "usb1").await;
    assert_eq!(
        s,
        json!({"type": "dir", "content": "backup,rootdir", "shared": 0, "enabled": 1, "active": 0, "total": 0, "used": 0, "avail": 0})
    );
    let l = listed(&sim, "usb1").await;
    assert_eq!(l["active"], json!(0));
    assert!(l.get("used_fraction").is_none(), "{l}");
    let r = sim
        .agent("GET", "/nodes/pve/storage/usb1/content", &[])
        .await;
    assert_eq!(err(&r), (500, json!(format!("{NOT_MOUNTED}\n"))));
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "101"), ("storage", "usb1")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(
        sim.wait_task(&id).await["exitstatus"],
        json!(format!("could not activate storage 'usb1': {NOT_MOUNTED}"))
    );
    assert_eq!(
        sim.task_log(&id).await,
        vec![format!(
            "TASK ERROR: could not activate storage 'usb1': {NOT_MOUNTED}"
        )]
    );
    // A new volume on it: PUT config collects the error per option (400).
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[("mp0", "usb1:2,mp=/mnt/bulk")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json["errors"]["mp0"],
        json!(format!(
            "unable to apply pending change mp0 : {NOT_MOUNTED}\n"
        ))
    );
    // The seeded USB disk is gone from the disk list too.
    let disks = sim.agent("GET", "/nodes/pve/disks/list", &[]).await.text;
    assert!(!disks.contains("/dev/sdb"), "{disks}");

    // Replugged without mounting: the link is back, the storage stays inactive until the
    // agent mounts it again.
    let r = sim
        .control(
            "usb",
            json!({"uuid": UUID, "present": true, "mounted": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(std::fs::read_link(&link).is_ok(), "link restored");
    assert_eq!(status(&sim, "usb1").await["active"], json!(0));
    let r = sim
        .control(
            "usb",
            json!({"uuid": UUID, "present": true, "mounted": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status(&sim, "usb1").await["active"], json!(1));
    let fs = sim.control_get("usb").await;
    assert_eq!(fs.json[0]["uuid"], json!(UUID));
    assert_eq!(fs.json[0]["mounted"], json!(true));

    // `is_mountpoint` as a path: the storage lives below the mount point.
    let r = sim
        .agent(
            "POST",
            "/storage",
            &[
                ("storage", "usb1-sub"),
                ("type", "dir"),
                ("path", "/mnt/usb1/pve"),
                ("is_mountpoint", "/mnt/usb1"),
                ("content", "backup"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    plug(&sim, &by_uuid, false).await;
    assert_eq!(status(&sim, "usb1-sub").await["active"], json!(0));
    let r = sim
        .agent("GET", "/nodes/pve/storage/usb1-sub/content", &[])
        .await;
    assert_eq!(
        err(&r),
        (500, json!("unable to activate storage 'usb1-sub' - directory is expected to be a mount point but is not mounted: '/mnt/usb1'\n"))
    );
    // Bad control requests are refused with a reason.
    let r = sim
        .control("usb", json!({"uuid": "../x", "present": true}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = sim
        .control("usb", json!({"present": false, "mount": "/mnt/usb1"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn unreachable_targets_answer_active_0_and_latency_delays_status_reads() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "1", "--task-ms", "50"]);
    let r = sim
        .agent(
            "POST",
            "/storage",
            &[
                ("storage", "nfs1"),
                ("type", "nfs"),
                ("server", "10.0.0.9"),
                ("export", "/export/bk"),
                ("content", "backup"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .control("storage/nfs1", json!({"reachable": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = status(&sim, "nfs1").await;
    assert_eq!(
        (
            s["active"].clone(),
            s["enabled"].clone(),
            s["total"].clone()
        ),
        (json!(0), json!(1), json!(0))
    );
    assert_eq!(listed(&sim, "nfs1").await["active"], json!(0));
    let r = sim
        .agent("GET", "/nodes/pve/storage/nfs1/content", &[])
        .await;
    assert_eq!(err(&r), (500, json!("storage 'nfs1' is not online\n")));
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "nfs1")],
        )
        .await;
    assert_eq!(
        wait_exit(&sim, &r).await,
        "could not activate storage 'nfs1': storage 'nfs1' is not online"
    );
    // An unknown id is the only status error.
    let r = sim
        .agent("GET", "/nodes/pve/storage/nope/status", &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["errors"], json!({"storage": "No such storage."}));

    // A knob set before the storage exists: PVE activates a new storage while creating it.
    let r = sim
        .control("storage/pbs1", json!({"reachable": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "POST",
            "/storage",
            &[
                ("storage", "pbs1"),
                ("type", "pbs"),
                ("server", "10.0.0.10"),
                ("datastore", "store1"),
            ],
        )
        .await;
    assert_eq!(
        err(&r),
        (500, json!("create storage failed: pbs1: error fetching datastores - 500 Can't connect to 10.0.0.10:8007 (Connection timed out)\n"))
    );

    // Latency: every status read on the node visits nfs1 and waits for it, even one about
    // another storage.
    let r = sim
        .control("storage/nfs1", json!({"latency_ms": 700}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = Instant::now();
    assert_eq!(status(&sim, "local").await["active"], json!(1));
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    listed(&sim, "local").await;
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // Back online: the latency knob stays, the storage is active again.
    sim.control("storage/nfs1", json!({"reachable": true, "latency_ms": 0}))
        .await;
    assert_eq!(status(&sim, "nfs1").await["active"], json!(1));
    let r = sim.control("storage/nfs1", json!({"latency": 5})).await;
    assert_eq!(r.status, 400, "unknown knob field: {}", r.text);
    sim.assert_no_schema_errors().await;
}

async fn data_of(sim: &Sim, cfg: &Value, key: &str) -> Value {
    let volid = cfg[key]
        .as_str()
        .and_then(|v| v.split(',').next())
        .unwrap_or_else(|| panic!("{key} in {cfg}"));
    let r = sim.control_get(&format!("volume?volid={volid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["data"].clone()
}

async fn set_data(sim: &Sim, cfg: &Value, key: &str, data: &str) {
    let volid = cfg[key]
        .as_str()
        .and_then(|v| v.split(',').next())
        .unwrap_or_else(|| panic!("{key} in {cfg}"));
    let r = sim
        .control("volume", json!({"volid": volid, "data": data}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn mount_points_without_backup_flag_stay_out_of_archive_and_restore_empty() {
    let dir = state_dir();
    let sim = start(
        dir.path().join("state").as_path(),
        &["--guests", "2", "--task-ms", "50"],
    );
    plug(&sim, &dir.path().join("by-uuid"), true).await;
    assert_eq!(create_usb_storage(&sim).await.status, 200);
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[
                ("mp0", "local-lvm:1,mp=/srv/db,backup=1"),
                ("mp1", "usb1:2,mp=/mnt/bulk"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cfg = sim
        .agent("GET", "/nodes/pve/lxc/101/config", &[])
        .await
        .data()
        .clone();
    for (key, data) in [("rootfs", "os-v1"), ("mp0", "db-v1"), ("mp1", "bulk-v1")] {
        set_data(&sim, &cfg, key, data).await;
    }

    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "101"), ("storage", "local"), ("compress", "zstd")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let log = sim.task_log(&id).await;
    for line in [
        "INFO: including mount point rootfs ('/') in backup",
        "INFO: including mount point mp0 ('/srv/db') in backup",
        "INFO: excluding volume mount point mp1 ('/mnt/bulk') from backup (disabled)",
    ] {
        assert!(log.iter().any(|l| l == line), "{line} missing in {log:#?}");
    }
    let content = sim
        .agent(
            "GET",
            "/nodes/pve/storage/local/content",
            &[("content", "backup"), ("vmid", "101")],
        )
        .await;
    let volid = content.data()[0]["volid"]
        .as_str()
        .expect("backup")
        .to_string();
    let archive = sim.control_get(&format!("archive?volid={volid}")).await;
    assert_eq!(archive.status, 200, "{}", archive.text);
    assert_eq!(
        archive.json["mounts"],
        json!([
            {"key": "rootfs", "mp": "/", "data": "os-v1"},
            {"key": "mp0", "mp": "/srv/db", "data": "db-v1"},
        ])
    );
    let config = archive.json["config"].as_str().expect("config");
    assert!(config.contains("mp1: usb1:"), "{config}");
    // The API's view of the same archive: the backed-up pct.conf with its backup flags.
    let extracted = sim
        .agent(
            "GET",
            "/nodes/pve/vzdump/extractconfig",
            &[("volume", &volid)],
        )
        .await;
    assert_eq!(extracted.status, 200, "{}", extracted.text);
    assert_eq!(extracted.data(), &json!(config));
    assert!(config.contains("mp=/srv/db,backup=1"), "{config}");

    // Storage-only restore: every volume mount point comes back on `storage`, the excluded
    // one at full size but empty; its options (no backup flag) are kept.
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "101"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("force", "1"),
                ("storage", "local-lvm"),
            ],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");
    let restored = sim
        .agent("GET", "/nodes/pve/lxc/101/config", &[])
        .await
        .data()
        .clone();
    let mp1 = restored["mp1"].as_str().expect("mp1");
    assert!(
        mp1.starts_with("local-lvm:vm-101-disk-")
            && mp1.contains("mp=/mnt/bulk")
            && mp1.contains("size=2G"),
        "{mp1}"
    );
    assert!(!mp1.contains("backup="), "{mp1}");
    assert!(restored["mp0"]
        .as_str()
        .is_some_and(|v| v.contains("backup=1")));
    assert_eq!(data_of(&sim, &restored, "rootfs").await, json!("os-v1"));
    assert_eq!(data_of(&sim, &restored, "mp0").await, json!("db-v1"));
    assert_eq!(data_of(&sim, &restored, "mp1").await, Value::Null);

    // Mount points without rootfs are refused before any task.
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "150"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("storage", "local-lvm"),
                ("mp0", "local-lvm:1,mp=/srv/db,backup=1"),
            ],
        )
        .await;
    assert_eq!(
        err(&r),
        (
            500,
            json!("mount points configured, but 'rootfs' not set - aborting\n")
        )
    );
    // Restoring onto an unplugged target fails synchronously with the activation error.
    plug(&sim, &dir.path().join("by-uuid"), false).await;
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "150"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("storage", "usb1"),
            ],
        )
        .await;
    assert_eq!(err(&r), (500, json!(format!("{NOT_MOUNTED}\n"))));
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn snapshot_refused_while_a_volume_sits_on_dir_storage() {
    let dir = state_dir();
    let sim = start(
        dir.path().join("state").as_path(),
        &["--guests", "2", "--task-ms", "50"],
    );
    plug(&sim, &dir.path().join("by-uuid"), true).await;
    assert_eq!(create_usb_storage(&sim).await.status, 200);
    // A backup=0 bulk volume on the USB dir storage still blocks snapshots.
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[("mp0", "usb1:1,mp=/mnt/bulk,backup=0")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/101/snapshot",
            &[("snapname", "pre-deploy")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(
        sim.wait_task(&id).await["exitstatus"],
        json!("snapshot feature is not available")
    );
    let cfg = sim.agent("GET", "/nodes/pve/lxc/101/config", &[]).await;
    assert!(cfg.data().get("lock").is_none(), "{}", cfg.text);
    let snaps = sim.agent("GET", "/nodes/pve/lxc/101/snapshot", &[]).await;
    assert_eq!(
        snaps.data().as_array().map(Vec::len),
        Some(1),
        "only current"
    );

    // vzdump only needs the backed-up volumes to snapshot: a running CT with a backup=1
    // volume on dir storage falls back to suspend mode.
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/100/config",
            &[("mp0", "usb1:1,mp=/srv/data,backup=1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "local")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let log = sim.task_log(&id).await;
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line} missing in {log:#?}"))
    };
    assert!(
        at("INFO: mode failure - some volumes do not support snapshots")
            < at("INFO: backup mode: suspend")
    );

    // Moving the bulk volume off the guest (it becomes unused0) makes snapshots possible.
    let r = sim
        .agent("PUT", "/nodes/pve/lxc/101/config", &[("delete", "mp0")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/101/snapshot",
            &[("snapname", "pre-deploy")],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");
    // A volume added after the snapshot survives a rollback as unusedN.
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[("mp1", "local-lvm:1,mp=/srv/new,backup=1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cfg = sim.agent("GET", "/nodes/pve/lxc/101/config", &[]).await;
    let added = cfg.data()["mp1"]
        .as_str()
        .and_then(|v| v.split(',').next())
        .expect("mp1")
        .to_string();
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc/101/snapshot/pre-deploy/rollback",
            &[],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");
    let cfg = sim.agent("GET", "/nodes/pve/lxc/101/config", &[]).await;
    assert!(cfg.data().get("mp1").is_none(), "{}", cfg.text);
    let unused: Vec<&Value> = cfg
        .data()
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.starts_with("unused"))
                .map(|(_, v)| v)
                .collect()
        })
        .unwrap_or_default();
    assert!(unused.contains(&&json!(added)), "{}", cfg.text);
}

#[tokio::test]
async fn mount_points_grow_but_never_shrink() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "50"]);
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[("mp0", "local-lvm:2,mp=/srv/db,backup=1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/resize",
            &[("disk", "mp0"), ("size", "+1G")],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");
    let cfg = sim.agent("GET", "/nodes/pve/lxc/101/config", &[]).await;
    assert!(
        cfg.data()["mp0"]
            .as_str()
            .is_some_and(|v| v.ends_with("mp=/srv/db,backup=1,size=3G")),
        "{}",
        cfg.text
    );
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/resize",
            &[("disk", "mp0"), ("size", "1G")],
        )
        .await;
    assert_eq!(err(&r), (500, json!("unable to shrink disk size\n")));

    // On a file-based storage volumes are raw files, size 0 a directory (subvol).
    let r = sim
        .agent(
            "POST",
            "/storage",
            &[
                ("storage", "bulk"),
                ("type", "dir"),
                ("path", "/srv/bulk"),
                ("content", "rootdir"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sim
        .agent(
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[
                ("mp1", "bulk:2,mp=/mnt/a,backup=0"),
                ("mp2", "bulk:0,mp=/mnt/b,backup=0"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cfg = sim.agent("GET", "/nodes/pve/lxc/101/config", &[]).await;
    assert_eq!(
        cfg.data()["mp1"],
        json!("bulk:101/vm-101-disk-0.raw,mp=/mnt/a,backup=0,size=2G")
    );
    assert_eq!(
        cfg.data()["mp2"],
        json!("bulk:101/subvol-101-disk-1.subvol,mp=/mnt/b,backup=0,size=0T")
    );
    let content = sim
        .agent("GET", "/nodes/pve/storage/bulk/content", &[])
        .await;
    let formats: Vec<Value> = content
        .data()
        .as_array()
        .map(|a| a.iter().map(|v| v["format"].clone()).collect())
        .unwrap_or_default();
    // Sorted by volid: `subvol-…` before `vm-…`.
    assert_eq!(formats, [json!("subvol"), json!("raw")]);
}

#[tokio::test]
async fn pulled_disk_blocks_start_and_backups_of_volumes_on_it() {
    let dir = state_dir();
    let by_uuid = dir.path().join("by-uuid");
    let sim = start(
        dir.path().join("state").as_path(),
        &["--guests", "3", "--task-ms", "50"],
    );
    plug(&sim, &by_uuid, true).await;
    assert_eq!(create_usb_storage(&sim).await.status, 200);
    // 101: bulk on the disk, not backed up; 102 (running): data on the disk, backed up.
    for (vmid, mp0) in [
        ("101", "usb1:1,mp=/mnt/bulk,backup=0"),
        ("102", "usb1:1,mp=/srv/data,backup=1"),
    ] {
        let r = sim
            .agent(
                "PUT",
                &format!("/nodes/pve/lxc/{vmid}/config"),
                &[("mp0", mp0)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    plug(&sim, &by_uuid, false).await;

    let r = sim
        .agent("POST", "/nodes/pve/lxc/101/status/start", &[])
        .await;
    assert_eq!(wait_exit(&sim, &r).await, NOT_MOUNTED);

    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "101,102"), ("storage", "local")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("job errors"));
    let log = sim.task_log(&id).await;
    assert!(
        log.contains(&format!("ERROR: Backup of VM 102 failed - {NOT_MOUNTED}")),
        "{log:#?}"
    );
    assert!(
        log.contains(&"INFO: Finished Backup of VM 101 (00:00:01)".to_string()),
        "an excluded mount point on the pulled disk does not matter: {log:#?}"
    );
    let cfg = sim.agent("GET", "/nodes/pve/lxc/102/config", &[]).await;
    assert!(cfg.data().get("lock").is_none(), "{}", cfg.text);
}

#[tokio::test]
async fn backups_to_pbs_are_named_by_pbs_and_carry_the_key_fingerprint() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "1", "--task-ms", "50"]);
    let r = sim
        .agent(
            "POST",
            "/storage",
            &[
                ("storage", "pbs1"),
                ("type", "pbs"),
                ("server", "10.0.0.10"),
                ("datastore", "store1"),
                ("username", "felhom@pbs!host1"),
                ("password", "pbs-secret-2"),
                ("encryption-key", "autogen"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.data()["config"]["encryption-key"].is_string(),
        "{}",
        r.text
    );
    let fp = sim.agent("GET", "/storage/pbs1", &[]).await.data()["encryption-key"].clone();
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "pbs1"), ("compress", "zstd")],
        )
        .await;
    let id = upid(&r);
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let log = sim.task_log(&id).await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("INFO: creating Proxmox Backup Server archive 'ct/100/")),
        "{log:#?}"
    );
    let items = sim
        .agent(
            "GET",
            "/nodes/pve/storage/pbs1/content",
            &[("content", "backup")],
        )
        .await;
    let item = items.data()[0].clone();
    let volid = item["volid"].as_str().expect("volid").to_string();
    let time = volid
        .strip_prefix("pbs1:backup/ct/100/")
        .unwrap_or_else(|| panic!("{volid}"));
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{volid}"
    );
    assert_eq!(item["format"], json!("pbs-ct"));
    assert_eq!(item["encrypted"], fp);
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "170"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("storage", "local-lvm"),
            ],
        )
        .await;
    assert_eq!(wait_exit(&sim, &r).await, "OK");
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn pbs_storage_needs_the_server_pin_and_an_existing_datastore() {
    let dir = state_dir();
    let sim = start(dir.path(), &[]);
    let server_fp =
        "82:b6:2a:7c:e1:55:0d:9a:3f:6e:11:c4:8b:22:d0:4e:5a:91:0c:7d:e3:68:4f:b2:19:a5:c0:3e:77:d1:8f:20";
    let r = sim
        .control(
            "storage/pbs1",
            json!({"server_fingerprint": server_fp, "datastores": ["store1"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let create = |datastore: &'static str, fingerprint: Option<&'static str>| {
        let sim = &sim;
        async move {
            let mut form = vec![
                ("storage", "pbs1"),
                ("type", "pbs"),
                ("server", "10.0.0.10"),
                ("datastore", datastore),
                ("username", "felhom@pbs!host1"),
                ("password", "pbs-secret-3"),
            ];
            if let Some(fp) = fingerprint {
                form.push(("fingerprint", fp));
            }
            sim.agent("POST", "/storage", &form).await
        }
    };
    let r = create("store1", None).await;
    assert_eq!(
        err(&r),
        (500, json!(format!("create storage failed: pbs1: error fetching datastores - fingerprint '{}' not verified, abort!\n", server_fp.to_ascii_uppercase())))
    );
    let r = create("store9", Some(server_fp)).await;
    assert_eq!(
        err(&r),
        (500, json!("create storage failed: pbs1: Cannot find datastore 'store9', check permissions and existence!\n"))
    );
    let r = create("store1", Some(server_fp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A renewed server certificate: the storage goes inactive, the status still answers.
    let r = sim
        .control(
            "storage/pbs1",
            json!({"server_fingerprint": "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status(&sim, "pbs1").await["active"], json!(0));
    let r = sim
        .agent("GET", "/nodes/pve/storage/pbs1/content", &[])
        .await;
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("pbs1: error fetching datastores - fingerprint 'AA:BB:")),
        "{}",
        r.text
    );
}
