//! Every `pve::Error` variant the client can meet, produced by the real simulator over HTTPS,
//! plus the inputs the client refuses before sending anything.

use std::time::Duration;

use pve::{
    ConfigUpdate, Error, Fingerprint, NewStorage, SnapshotName, StorageKind, TaskOutcome, TaskRef,
    Vmid, WaitOptions,
};
use serde_json::json;
use tokio::sync::watch;

use crate::sim_env::{logged, Env};

fn vmid(id: u32) -> Vmid {
    Vmid::new(id).unwrap()
}

fn upid(task: TaskRef) -> pve::Upid {
    task.upid().cloned().expect("a task")
}

#[tokio::test]
async fn pins_right_wrong_and_malformed() {
    let env = Env::start(0, 100);
    // The right pin works.
    let v = env.agent.version().await.unwrap();
    assert_eq!(v.release.as_deref(), Some("9.1"));

    // Another pin: refused during the handshake, naming both fingerprints.
    env.clear_requests().await;
    let wrong = Fingerprint::from_der(b"some other certificate");
    let client = env.client(&env.sim.info.token, wrong);
    let err = client.version().await.unwrap_err();
    match &err {
        Error::PinMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, env.fingerprint());
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&wrong.to_string()), "{text}");
    assert!(text.contains(&env.sim.info.fingerprint), "{text}");
    assert!(!err.is_retryable());
    // The request never reached the API.
    assert!(env.requests().await.is_empty());

    // Malformed pins never make a client.
    for bad in [
        "",
        "AA:BB",
        &env.sim.info.fingerprint.replace(':', ""),
        &env.sim.info.fingerprint[3..],
        &format!("{}:00", env.sim.info.fingerprint),
        &env.sim
            .info
            .fingerprint
            .replacen(&env.sim.info.fingerprint[..2], "ZZ", 1),
    ] {
        let e = bad.parse::<Fingerprint>().unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    what: "fingerprint",
                    ..
                }
            ),
            "{bad:?}: {e:?}"
        );
    }
    // Lower case is the same pin.
    let lower: Fingerprint = env.sim.info.fingerprint.to_lowercase().parse().unwrap();
    assert_eq!(lower, env.fingerprint());
}

#[tokio::test]
async fn connect_error_when_nothing_listens_is_retryable() {
    let mut env = Env::start(0, 100);
    env.agent.version().await.unwrap();
    env.sim.kill9();
    // A fresh client: the agent's pooled connection may still look alive for a moment, and a
    // request written into it is a transport error (it may have been sent), not a connect one.
    let fresh = env.client(&env.sim.info.token, env.fingerprint());
    let err = fresh.version().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.status(), None);
}

#[tokio::test]
async fn unauthorized_wrong_secret() {
    let env = Env::start(0, 100);
    let (id, secret) = env.sim.info.token.rsplit_once('=').unwrap();
    let client = env.client(
        &format!("{id}=00000000-0000-0000-0000-000000000000"),
        env.fingerprint(),
    );
    let err = client.version().await.unwrap_err();
    match &err {
        Error::Unauthorized { message, path, .. } => {
            assert_eq!(message, "Authentication failed!");
            assert_eq!(path, "/version");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(401));
    // The secret is nowhere in the error.
    assert!(!format!("{err:?}{err}").contains(secret));
    let log = env.requests().await;
    assert_eq!(logged(&log, "GET", "/version")[0]["status"], 401);
}

#[tokio::test]
async fn forbidden_names_acl_path_and_privilege() {
    let env = Env::start(3, 100);
    let perms = env.agent.permissions(None).await.unwrap();
    assert!(pve::missing_privileges(&perms, "/").is_empty());
    let perms = env.agent.permissions(Some("/vms/101")).await.unwrap();
    assert!(pve::missing_privileges(&perms, "/vms/101").is_empty());

    env.control("role", json!({"roleid": "Viewer", "privs": ["VM.Audit"]}))
        .await;
    env.control(
        "acl",
        json!({"path": "/vms/101", "ugid": "felhom-agent@pve!agent", "roles": ["Viewer"], "propagate": 1}),
    )
    .await;
    let err = env.agent.start_lxc(vmid(101)).await.unwrap_err();
    match &err {
        Error::Forbidden {
            acl_path,
            privilege,
            method,
            path,
            message,
        } => {
            assert_eq!(acl_path.as_deref(), Some("/vms/101"));
            assert_eq!(privilege.as_deref(), Some("VM.PowerMgmt"));
            assert_eq!(*method, "POST");
            assert_eq!(path, "/nodes/pve/lxc/101/status/start");
            assert_eq!(message, "Permission check failed (/vms/101, VM.PowerMgmt)");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    // The guest did not start.
    assert!(!env.agent.lxc_status(vmid(101)).await.unwrap().is_running());

    let perms = env.agent.permissions(Some("/vms/101")).await.unwrap();
    let missing = pve::missing_privileges(&perms, "/vms/101");
    assert!(missing.contains(&"VM.PowerMgmt"), "{missing:?}");
    assert!(!missing.contains(&"VM.Audit"), "{missing:?}");
    // Other guests keep the full role.
    let perms = env.agent.permissions(Some("/vms/102")).await.unwrap();
    assert!(pve::missing_privileges(&perms, "/vms/102").is_empty());
    env.audit().await;
}

#[tokio::test]
async fn invalid_parameters_carry_per_parameter_errors() {
    let env = Env::start(2, 100);
    let before = env.agent.lxc_config(vmid(101)).await.unwrap();
    // The client passes option values through; PVE's schema rejects these two.
    let err = env
        .agent
        .update_lxc_config(
            vmid(101),
            ConfigUpdate::new()
                .set_int("cores", 0)
                .set("onboot", "true"),
        )
        .await
        .unwrap_err();
    match &err {
        Error::InvalidParameters {
            errors, message, ..
        } => {
            assert_eq!(message, "Parameter verification failed.");
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(errors["cores"].contains("minimum value of 1"), "{errors:?}");
            assert!(
                errors["onboot"].contains("type check ('boolean') failed - got 'true'"),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("cores:") && text.contains("onboot:"),
        "{text}"
    );
    let after = env.agent.lxc_config(vmid(101)).await.unwrap();
    assert_eq!(before.digest, after.digest);

    // A storage with a content type PVE does not know.
    let mut s = NewStorage::new(
        "bad1",
        StorageKind::Dir {
            path: "/mnt/bad".into(),
        },
    );
    s.content = Some("backup,movies".into());
    let err = env.agent.create_storage(&s).await.unwrap_err();
    match &err {
        Error::InvalidParameters { errors, .. } => {
            assert!(errors.contains_key("content"), "{errors:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(env.agent.storage_config("bad1").await.is_err());

    let log = env.audit().await;
    assert_eq!(
        logged(&log, "PUT", "/nodes/pve/lxc/101/config")[0]["status"],
        400
    );
    assert_eq!(logged(&log, "POST", "/storage")[0]["status"], 400);
}

#[tokio::test]
async fn locked_by_a_running_snapshot() {
    let env = Env::start(2, 1500);
    let name: SnapshotName = "pre-upgrade".parse().unwrap();
    let task = env
        .agent
        .create_snapshot(vmid(101), &name, None)
        .await
        .unwrap();
    let err = env
        .agent
        .update_lxc_config(vmid(101), ConfigUpdate::new().cores(2))
        .await
        .unwrap_err();
    assert_eq!(err.lock(), Some("snapshot"), "{err:?}");
    assert!(matches!(err, Error::Locked { .. }));
    assert_eq!(err.status(), Some(500));
    assert!(!err.is_retryable());
    assert_eq!(env.wait(task).await.unwrap(), TaskOutcome::Ok);
    // Once the snapshot is done the same update goes through.
    env.agent
        .update_lxc_config(vmid(101), ConfigUpdate::new().cores(2))
        .await
        .unwrap();
    assert_eq!(
        env.agent.lxc_config(vmid(101)).await.unwrap().cores,
        Some(2)
    );
    env.audit().await;
}

#[tokio::test]
async fn no_such_guest_digest_mismatch_and_plain_500() {
    let env = Env::start(2, 100);
    let err = env.agent.lxc_status(vmid(4242)).await.unwrap_err();
    match &err {
        Error::NoSuchGuest {
            node, vmid, path, ..
        } => {
            assert_eq!((node.as_str(), vmid.as_str()), ("pve", "4242"));
            assert_eq!(path, "/nodes/pve/lxc/4242/status/current");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());

    // Digest: a stale one is refused and nothing changes.
    let cfg = env.agent.lxc_config(vmid(101)).await.unwrap();
    let stale = cfg.digest.clone().unwrap();
    env.agent
        .update_lxc_config(vmid(101), ConfigUpdate::new().memory(1024).digest(&stale))
        .await
        .unwrap();
    let err = env
        .agent
        .update_lxc_config(vmid(101), ConfigUpdate::new().memory(2048).digest(&stale))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(
        env.agent.lxc_config(vmid(101)).await.unwrap().memory,
        Some(1024)
    );

    // 100 is seeded running: starting it again is a handler `die`.
    let err = env.agent.start_lxc(vmid(100)).await.unwrap_err();
    match &err {
        Error::Api {
            status, message, ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(message, "CT 100 already running");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    env.audit().await;
}

#[tokio::test]
async fn injected_not_implemented_and_proxy_errors() {
    let env = Env::start(0, 100);
    env.control(
        "fault",
        json!({"path_prefix": "/nodes/pve/status", "status": 501}),
    )
    .await;
    let err = env.agent.node_status().await.unwrap_err();
    match &err {
        Error::NotImplemented { message, .. } => {
            assert_eq!(message, "Method 'GET /nodes/pve/status' not implemented")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());

    for (status, retryable) in [(595u16, true), (596, false)] {
        let message = format!("proxy to pve2 failed ({status})");
        env.control(
            "fault",
            json!({"path_prefix": "/nodes/pve/status", "status": status, "message": message}),
        )
        .await;
        let err = env.agent.node_status().await.unwrap_err();
        match &err {
            Error::Proxy {
                status: s,
                message: m,
                ..
            } => {
                assert_eq!(*s, status);
                assert_eq!(m, &message);
            }
            other => panic!("{other:?}"),
        }
        assert!(!matches!(
            err,
            Error::PinMismatch { .. } | Error::Tls { .. }
        ));
        assert_eq!(err.is_retryable(), retryable, "{status}");
        assert_eq!(err.status(), Some(status));
    }
    // Rules are used up: the next call works.
    assert!(env.agent.node_status().await.unwrap().uptime.is_some());
    env.audit().await;
}

#[tokio::test]
async fn timeouts_and_dropped_connections() {
    let env = Env::start(0, 100);
    let token = env.sim.info.token.parse().unwrap();
    let mut config = pve::ClientConfig::new(
        &env.sim.info.url,
        &env.sim.info.node,
        token,
        env.fingerprint(),
    );
    config.request_timeout = Duration::from_millis(300);
    let client = pve::Client::new(config).unwrap();
    env.control("delay", json!({"path_prefix": "/version", "ms": 1500}))
        .await;
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(!err.is_retryable());
    env.control("drop", json!({"path_prefix": "/version"}))
        .await;
    let err = env.agent.version().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn task_failed_carries_the_log_tail() {
    let env = Env::start(3, 100);
    env.control(
        "fail-next",
        json!({"vmid": 101, "exitstatus": "startup for container '101' failed"}),
    )
    .await;
    let task = env.agent.start_lxc(vmid(101)).await.unwrap();
    let err = env.wait(task.clone()).await.unwrap_err();
    match &err {
        Error::TaskFailed {
            upid,
            exitstatus,
            log_tail,
        } => {
            assert_eq!(Some(upid), task.upid());
            assert_eq!(exitstatus, "startup for container '101' failed");
            assert_eq!(
                log_tail.last().map(String::as_str),
                Some("TASK ERROR: startup for container '101' failed")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(!env.agent.lxc_status(vmid(101)).await.unwrap().is_running());

    // WARNINGS: N is success.
    env.control(
        "fail-next",
        json!({"vmid": 101, "exitstatus": "WARNINGS: 2"}),
    )
    .await;
    let task = env.agent.start_lxc(vmid(101)).await.unwrap();
    assert_eq!(env.wait(task).await.unwrap(), TaskOutcome::Warnings(2));
    assert!(env.agent.lxc_status(vmid(101)).await.unwrap().is_running());
    env.audit().await;
}

#[tokio::test]
async fn task_timeout_and_cancelled_wait_leave_the_task_running() {
    let env = Env::start(3, 2000);
    let task = upid(env.agent.stop_lxc(vmid(100)).await.unwrap());
    let err = env
        .agent
        .wait_task(&task, WaitOptions::new(Duration::from_millis(250)))
        .await
        .unwrap_err();
    match &err {
        Error::TaskTimeout { upid, waited } => {
            assert_eq!(upid, &task);
            assert!(*waited >= Duration::from_millis(250), "{waited:?}");
            assert!(*waited < Duration::from_millis(1500), "{waited:?}");
        }
        other => panic!("{other:?}"),
    }

    let (tx, rx) = watch::channel(false);
    let waiter = {
        let client = env.agent.clone();
        let task = task.clone();
        tokio::spawn(async move {
            client
                .wait_task(
                    &task,
                    WaitOptions::new(Duration::from_secs(30)).cancel_on(rx),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(true).unwrap();
    let err = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::TaskWaitCancelled { upid } if *upid == task),
        "{err:?}"
    );
    // The task kept running and can be waited for again.
    let status = env.agent.task_status(&task).await.unwrap();
    assert_eq!(status.status, pve::TaskState::Running);
    let outcome = env
        .agent
        .wait_task(&task, WaitOptions::new(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Ok);
    assert!(!env.agent.lxc_status(vmid(100)).await.unwrap().is_running());
    env.audit().await;
}

#[tokio::test]
async fn wait_task_retries_through_proxy_errors() {
    let env = Env::start(3, 400);
    let task = upid(env.agent.start_lxc(vmid(101)).await.unwrap());
    env.control(
        "fault",
        json!({"path_prefix": "/nodes/pve/tasks/", "status": 595, "count": 3}),
    )
    .await;
    let outcome = env
        .agent
        .wait_task(&task, WaitOptions::new(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Ok);
    let log = env.audit().await;
    let polls = log
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/status")));
    let statuses: Vec<u64> = polls.filter_map(|e| e["status"].as_u64()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 595).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200));
}

#[tokio::test]
async fn bad_input_is_refused_before_sending() {
    let env = Env::start(2, 100);
    env.clear_requests().await;
    let long = "a".repeat(41);
    for bad in ["x", "1abc", "current", "vzdump", long.as_str(), "a.b"] {
        let e = bad.parse::<SnapshotName>().unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    what: "snapshot name",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
    assert!("a".repeat(40).parse::<SnapshotName>().is_ok());
    // Sizes PVE's pattern rejects and disks that are not rootfs/mpN.
    let e = env
        .agent
        .resize_lxc(vmid(101), "rootfs", "2GB", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { what: "size", .. }),
        "{e:?}"
    );
    let e = env
        .agent
        .resize_lxc(vmid(101), "net0", "+1G", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { what: "disk", .. }),
        "{e:?}"
    );
    let e = env.agent.disk_smart("sda").await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { what: "disk", .. }),
        "{e:?}"
    );
    let e = env
        .agent
        .update_lxc_config(vmid(101), ConfigUpdate::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let e = env
        .agent
        .delete_volume("local", "backup/vzdump-lxc-101.tar")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(Vmid::new(99).is_err());
    // Nothing reached the simulator.
    let log = env.requests().await;
    assert!(log.is_empty(), "{log:#?}");

    // What the client refuses, PVE refuses too (sent raw, bypassing the client).
    let token = env.sim.info.token.clone();
    for bad in ["x", "1abc", long.as_str()] {
        let (status, body) = env
            .raw(
                &token,
                "POST",
                "/nodes/pve/lxc/101/snapshot",
                &[("snapname", bad)],
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["errors"]["snapname"].is_string(), "{body}");
    }
    let (status, body) = env
        .raw(
            &token,
            "POST",
            "/nodes/pve/lxc/101/snapshot",
            &[("snapname", "current")],
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("reserved name"),
        "{body}"
    );
    let (status, body) = env
        .raw(
            &token,
            "PUT",
            "/nodes/pve/lxc/101/resize",
            &[("disk", "rootfs"), ("size", "2GB")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"]["size"].is_string(), "{body}");
    assert!(env
        .agent
        .list_snapshots(vmid(101))
        .await
        .unwrap()
        .is_empty());
    env.audit().await;
}
