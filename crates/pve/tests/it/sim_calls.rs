//! Typed calls end to end against the simulator, each asserting its real effect, each test
//! ending with the schema audit of everything it sent and received.

use std::collections::BTreeMap;

use pve::{
    property_value, ConfigUpdate, CreateLxc, DestroyOptions, Error, NewStorage, ResourceType,
    RestoreLxc, Retention, Secret, SnapshotName, StorageKind, TaskListQuery, TaskOutcome,
    TaskState, Vmid, VzdumpMode, VzdumpOutcome, VzdumpRequest,
};
use serde_json::json;

use crate::sim_env::{logged, Env};

const TEMPLATE: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";

fn vmid(id: u32) -> Vmid {
    Vmid::new(id).unwrap()
}

fn mac(net: &str) -> String {
    property_value(net, "hwaddr")
        .unwrap_or_else(|| panic!("no hwaddr in {net}"))
        .to_owned()
}

#[tokio::test]
async fn node_cluster_and_hardware_reads() {
    let env = Env::start(3, 100);
    let v = env.agent.version().await.unwrap();
    assert!(v.version.starts_with("9.1"), "{v:?}");

    let all = env.agent.cluster_resources(None).await.unwrap();
    let vms = env
        .agent
        .cluster_resources(Some(ResourceType::Vm))
        .await
        .unwrap();
    let mut ids: Vec<u64> = vms.iter().filter_map(|r| r.vmid).collect();
    ids.sort();
    assert_eq!(ids, vec![100, 101, 102]);
    assert!(vms.iter().all(|r| r.resource_type == "lxc"), "{vms:?}");
    assert_eq!(
        vms.iter()
            .find(|r| r.vmid == Some(100))
            .unwrap()
            .status
            .as_deref(),
        Some("running")
    );
    let storages = env
        .agent
        .cluster_resources(Some(ResourceType::Storage))
        .await
        .unwrap();
    assert!(storages.iter().all(|r| r.resource_type == "storage"));
    let names: Vec<&str> = storages
        .iter()
        .filter_map(|r| r.storage.as_deref())
        .collect();
    assert!(
        names.contains(&"local") && names.contains(&"local-lvm"),
        "{names:?}"
    );
    assert!(all.len() > vms.len() + storages.len() - 1, "{all:?}");
    assert!(all.iter().any(|r| r.resource_type == "node"));

    let status = env.agent.node_status().await.unwrap();
    assert_eq!(status.loadavg.len(), 3);
    assert!(status.memory.total.unwrap() > 0);
    assert!(status.pveversion.unwrap().starts_with("pve-manager/9.1"));

    let list = env.agent.list_lxc().await.unwrap();
    assert_eq!(list.len(), 3);
    let ct = env.agent.lxc_status(vmid(101)).await.unwrap();
    assert_eq!(ct.vmid, vmid(101));
    assert_eq!(ct.name.as_deref(), Some("ct101"));
    assert!(!ct.is_running());
    assert!(env.agent.lxc_status(vmid(102)).await.unwrap().is_running());

    let disks = env.agent.list_disks(false).await.unwrap();
    assert!(!disks.is_empty());
    assert!(disks.iter().all(|d| d.devpath.starts_with("/dev/")));
    assert!(disks.iter().any(|d| d.health.is_some()));
    let smart = env.agent.disk_smart(&disks[0].devpath).await.unwrap();
    assert!(!smart.health.is_empty());
    assert_eq!(env.agent.list_disks(true).await.unwrap().len(), disks.len());

    // USB needs Sys.Modify: the agent's role lacks it by design, root's token has it.
    let err = env.agent.usb_devices().await.unwrap_err();
    match &err {
        Error::Forbidden {
            acl_path,
            privilege,
            ..
        } => {
            assert_eq!(acl_path.as_deref(), Some("/"));
            assert_eq!(privilege.as_deref(), Some("Sys.Modify"));
        }
        other => panic!("{other:?}"),
    }
    let usb = env.root.usb_devices().await.unwrap();
    assert!(!usb.is_empty());
    env.control("usb", json!({"present": false})).await;
    assert_eq!(env.root.usb_devices().await.unwrap().len(), usb.len() - 1);

    let perms = env.agent.permissions(Some("/")).await.unwrap();
    assert!(pve::missing_privileges(&perms, "/").is_empty());
    assert!(!perms.has("/", "Sys.Modify"));
    let root_perms = env.root.permissions(Some("/")).await.unwrap();
    assert!(root_perms.has("/", "Sys.Modify"));
    env.audit().await;
}

#[tokio::test]
async fn power_cycle_and_task_queries() {
    let env = Env::start(2, 80);
    let id = vmid(101);
    env.wait_ok(env.agent.start_lxc(id).await).await;
    assert!(env.agent.lxc_status(id).await.unwrap().is_running());
    env.wait_ok(env.agent.shutdown_lxc(id, Some(30), true).await)
        .await;
    assert!(!env.agent.lxc_status(id).await.unwrap().is_running());
    env.wait_ok(env.agent.start_lxc(id).await).await;
    env.wait_ok(env.agent.reboot_lxc(id, None).await).await;
    assert!(env.agent.lxc_status(id).await.unwrap().is_running());
    env.wait_ok(env.agent.stop_lxc(id).await).await;
    assert!(!env.agent.lxc_status(id).await.unwrap().is_running());
    // Reboot of a stopped guest is refused synchronously.
    let err = env.agent.reboot_lxc(id, None).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 500, .. }), "{err:?}");

    // Task list: newest first, filtered by guest.
    let tasks = env
        .agent
        .list_tasks(&TaskListQuery {
            vmid: Some(id),
            ..TaskListQuery::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = tasks
        .iter()
        .filter_map(|t| t.task_type.as_deref())
        .collect();
    assert_eq!(
        kinds,
        ["vzstop", "vzreboot", "vzstart", "vzshutdown", "vzstart"]
    );
    assert!(tasks.iter().all(|t| t.id.as_deref() == Some("101")));
    assert!(tasks.iter().all(|t| t.status.as_deref() == Some("OK")));
    let other = env
        .agent
        .list_tasks(&TaskListQuery {
            vmid: Some(vmid(100)),
            ..TaskListQuery::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");

    // source=active shows a running task, the archive does not.
    env.control("task-ms", json!({"ms": 1500})).await;
    let running = env.agent.start_lxc(id).await.unwrap();
    let running = running.upid().unwrap().clone();
    let active = env
        .agent
        .list_tasks(&TaskListQuery {
            source: Some("active".into()),
            ..TaskListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        active.iter().map(|t| &t.upid).collect::<Vec<_>>(),
        vec![&running]
    );
    let archive = env
        .agent
        .list_tasks(&TaskListQuery::default())
        .await
        .unwrap();
    assert!(archive.iter().all(|t| t.upid != running));
    let status = env.agent.task_status(&running).await.unwrap();
    assert_eq!(status.status, TaskState::Running);
    assert_eq!(status.task_type.as_deref(), Some("vzstart"));
    assert_eq!(status.user.as_deref(), Some("felhom-agent@pve"));
    assert_eq!(status.tokenid.as_deref(), Some("agent"));

    // Status and log of a finished task.
    let done = tasks[0].upid.clone();
    let status = env.agent.task_status(&done).await.unwrap();
    assert_eq!(status.status, TaskState::Stopped);
    assert_eq!(status.exitstatus.as_deref(), Some("OK"));
    let log = env.agent.task_log(&done, 0, 0).await.unwrap();
    assert_eq!(log.last().map(|l| l.t.as_str()), Some("TASK OK"));
    assert_eq!(log[0].n, 1);
    let tail = env.agent.task_log_tail(&done, 1).await.unwrap();
    assert_eq!(tail, vec!["TASK OK".to_owned()]);
    let first = env.agent.task_log(&done, 0, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    env.audit().await;
}

#[tokio::test]
async fn config_read_update_description_and_hwaddr() {
    let env = Env::start(2, 100);
    let id = vmid(101);
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("ct101"));
    assert_eq!(cfg.memory, Some(512));
    let current = env.agent.lxc_config_current(id).await.unwrap();
    assert_eq!(current.digest, cfg.digest);
    let mac0 = mac(cfg.net(0).unwrap());

    // An update conditional on the digest just read.
    let digest = cfg.digest.clone().unwrap();
    let task = env
        .agent
        .update_lxc_config(
            id,
            ConfigUpdate::new()
                .hostname("web1")
                .memory(768)
                .onboot(true)
                .tags("prod;web")
                .description("first line\nsecond line\n")
                .digest(digest),
        )
        .await
        .unwrap();
    assert_eq!(task, pve::TaskRef::Sync);
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("web1"));
    assert_eq!(cfg.memory, Some(768));
    assert_eq!(cfg.onboot, Some(true));
    // PVE reads the description back with a trailing newline; the client drops it.
    assert_eq!(cfg.description.as_deref(), Some("first line\nsecond line"));
    let (_, raw) = env
        .raw(&env.sim.info.token, "GET", "/nodes/pve/lxc/101/config", &[])
        .await;
    assert_eq!(raw["data"]["description"], "first line\nsecond line\n");

    // Deleting an option.
    env.agent
        .update_lxc_config(id, ConfigUpdate::new().delete("onboot"))
        .await
        .unwrap();
    assert_eq!(env.agent.lxc_config(id).await.unwrap().onboot, None);

    // net0 without hwaddr: the client re-adds the current MAC (and the digest it read).
    env.clear_requests().await;
    env.agent
        .update_lxc_config(
            id,
            ConfigUpdate::new().net(0, "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1"),
        )
        .await
        .unwrap();
    let cfg = env.agent.lxc_config(id).await.unwrap();
    let net0 = cfg.net(0).unwrap();
    assert_eq!(mac(net0), mac0);
    assert_eq!(property_value(net0, "ip"), Some("10.0.0.5/24"));
    let log = env.requests().await;
    let put = logged(&log, "PUT", "/nodes/pve/lxc/101/config");
    assert_eq!(put.len(), 1);
    let sent = put[0]["params"]["net0"].as_str().unwrap();
    assert_eq!(
        property_value(sent, "hwaddr"),
        Some(mac0.as_str()),
        "{sent}"
    );
    assert!(
        put[0]["params"]["digest"].is_string(),
        "{}",
        put[0]["params"]
    );

    // The same change sent raw (without the client's care): PVE mints a new MAC.
    let (status, body) = env
        .raw(
            &env.sim.info.token,
            "PUT",
            "/nodes/pve/lxc/101/config",
            &[("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.6/24,gw=10.0.0.1")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_ne!(mac(cfg.net(0).unwrap()), mac0);
    env.audit().await;
}

#[tokio::test]
async fn create_resize_snapshots_destroy() {
    let env = Env::start(1, 80);
    let id = vmid(200);
    let mut create = CreateLxc::new(id, TEMPLATE, "local-lvm");
    create.hostname = Some("fresh".into());
    create.memory = Some(1024);
    create.cores = Some(2);
    create.unprivileged = Some(true);
    create.description = Some("made by the e2e test\n".into());
    create
        .nets
        .insert(0, "name=eth0,bridge=vmbr0,ip=dhcp".into());
    // With a mount point PVE needs rootfs too ("mount points configured, but 'rootfs' not
    // set - aborting", for create as for restore).
    create.rootfs = Some("local-lvm:4".into());
    create
        .mount_points
        .insert(0, "local-lvm:2,mp=/data,backup=0".into());
    env.wait_ok(env.agent.create_lxc(&create).await).await;
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("fresh"));
    assert_eq!((cfg.memory, cfg.cores), (Some(1024), Some(2)));
    assert_eq!(cfg.description.as_deref(), Some("made by the e2e test"));
    let rootfs = cfg.rootfs.clone().unwrap();
    assert!(rootfs.starts_with("local-lvm:vm-200-disk-"), "{rootfs}");
    assert_eq!(property_value(&rootfs, "size"), Some("4G"));
    assert!(property_value(cfg.net(0).unwrap(), "hwaddr").is_some());
    assert_eq!(cfg.mount_points().len(), 1);
    assert!(!env.agent.lxc_status(id).await.unwrap().is_running());
    // The same vmid again is refused synchronously.
    let err = env.agent.create_lxc(&create).await.unwrap_err();
    match &err {
        Error::Api { message, .. } => assert_eq!(message, "CT 200 already exists on node 'pve'"),
        other => panic!("{other:?}"),
    }

    env.wait_ok(env.agent.resize_lxc(id, "rootfs", "+1G", None).await)
        .await;
    let digest = env.agent.lxc_config(id).await.unwrap().digest;
    env.wait_ok(
        env.agent
            .resize_lxc(id, "mp0", "3G", digest.as_deref())
            .await,
    )
    .await;
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_eq!(
        property_value(cfg.rootfs.as_deref().unwrap(), "size"),
        Some("5G")
    );
    assert_eq!(property_value(cfg.mount_points()[&0], "size"), Some("3G"));

    // Snapshots: create, list, change, rollback, delete.
    let snap: SnapshotName = "pre-change".parse().unwrap();
    env.wait_ok(
        env.agent
            .create_snapshot(id, &snap, Some("before the memory change"))
            .await,
    )
    .await;
    let snaps = env.agent.list_snapshots(id).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name, "pre-change");
    assert_eq!(
        snaps[0].description.as_deref(),
        Some("before the memory change")
    );
    assert!(snaps[0].snaptime.is_some());
    env.agent
        .update_lxc_config(id, ConfigUpdate::new().memory(2048))
        .await
        .unwrap();
    assert_eq!(env.agent.lxc_config(id).await.unwrap().memory, Some(2048));
    env.wait_ok(env.agent.rollback_snapshot(id, &snap, false).await)
        .await;
    let cfg = env.agent.lxc_config(id).await.unwrap();
    assert_eq!(cfg.memory, Some(1024));
    assert_eq!(cfg.parent.as_deref(), Some("pre-change"));
    // A second snapshot, then delete both.
    let snap2: SnapshotName = "second".parse().unwrap();
    env.wait_ok(env.agent.create_snapshot(id, &snap2, None).await)
        .await;
    let mut names: Vec<String> = env
        .agent
        .list_snapshots(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, ["pre-change", "second"]);
    env.wait_ok(env.agent.delete_snapshot(id, &snap2, false).await)
        .await;
    env.wait_ok(env.agent.delete_snapshot(id, &snap, false).await)
        .await;
    assert!(env.agent.list_snapshots(id).await.unwrap().is_empty());
    // Deleting a snapshot that is gone fails inside the task.
    let task = env.agent.delete_snapshot(id, &snap, false).await.unwrap();
    let err = env.wait(task).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { exitstatus, .. } if exitstatus.contains("does not exist")),
        "{err:?}"
    );

    // Destroy with purge: the guest and its volumes are gone.
    let options = DestroyOptions {
        purge: true,
        destroy_unreferenced_disks: true,
        force: false,
    };
    env.wait_ok(env.agent.destroy_lxc(id, options).await).await;
    let err = env.agent.lxc_status(id).await.unwrap_err();
    assert!(matches!(err, Error::NoSuchGuest { .. }), "{err:?}");
    assert!(env
        .agent
        .list_lxc()
        .await
        .unwrap()
        .iter()
        .all(|c| c.vmid != id));
    let volumes = env
        .agent
        .storage_content("local-lvm", None, Some(id))
        .await
        .unwrap();
    assert!(volumes.is_empty(), "{volumes:?}");
    env.audit().await;
}

#[tokio::test]
async fn backup_restore_and_volume_delete() {
    let env = Env::start(2, 80);
    let src = vmid(101);
    let src_mac = mac(env.agent.lxc_config(src).await.unwrap().net(0).unwrap());
    let mut req = VzdumpRequest::new(src, "local");
    req.mode = Some(VzdumpMode::Snapshot);
    req.compress = Some("zstd".into());
    req.notes_template = Some("{{guestname}} on {{node}}".into());
    req.protected = Some(true);
    let upid = match env.agent.vzdump(&req).await.unwrap() {
        VzdumpOutcome::Task(upid) => upid,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        env.wait(pve::TaskRef::Task(upid)).await.unwrap(),
        TaskOutcome::Ok
    );
    let backups = env
        .agent
        .storage_content("local", Some("backup"), Some(src))
        .await
        .unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let archive = backups[0].volid.clone();
    assert!(
        archive.starts_with("local:backup/vzdump-lxc-101-"),
        "{archive}"
    );
    assert!(archive.ends_with(".tar.zst"), "{archive}");
    assert_eq!(backups[0].notes.as_deref(), Some("ct101 on pve"));
    assert_eq!(backups[0].protected, Some(true));
    assert_eq!(backups[0].vmid, Some(101));
    assert_eq!(backups[0].subtype.as_deref(), Some("lxc"));

    // A guest that is not on this node: PVE answers "OK", nothing is backed up.
    let none = env
        .agent
        .vzdump(&VzdumpRequest::new(vmid(999), "local"))
        .await
        .unwrap();
    assert_eq!(none, VzdumpOutcome::NotOnThisNode);

    // WARNINGS: 2 is a successful backup.
    env.control(
        "fail-next",
        json!({"vmid": 100, "exitstatus": "WARNINGS: 2"}),
    )
    .await;
    let warned = match env
        .agent
        .vzdump(&VzdumpRequest::new(vmid(100), "local"))
        .await
        .unwrap()
    {
        VzdumpOutcome::Task(upid) => upid,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        env.wait(pve::TaskRef::Task(warned)).await.unwrap(),
        TaskOutcome::Warnings(2)
    );

    // Restore to a new vmid keeps the MAC; with unique it changes.
    let mut restore = RestoreLxc::new(vmid(300), &archive, "local-lvm");
    restore
        .overrides
        .insert("hostname".into(), json!("restored"));
    env.wait_ok(env.agent.restore_lxc(&restore).await).await;
    let cfg = env.agent.lxc_config(vmid(300)).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("restored"));
    assert_eq!(mac(cfg.net(0).unwrap()), src_mac);
    assert!(cfg.rootfs.unwrap().starts_with("local-lvm:vm-300-disk-"));

    let mut unique = RestoreLxc::new(vmid(301), &archive, "local-lvm");
    unique.unique = true;
    env.wait_ok(env.agent.restore_lxc(&unique).await).await;
    let cfg = env.agent.lxc_config(vmid(301)).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("ct101"));
    assert_ne!(mac(cfg.net(0).unwrap()), src_mac);

    // Over an existing guest: refused without force, done with it.
    env.agent
        .update_lxc_config(vmid(300), ConfigUpdate::new().memory(2048))
        .await
        .unwrap();
    let over = RestoreLxc::new(vmid(300), &archive, "local-lvm");
    let err = env.agent.restore_lxc(&over).await.unwrap_err();
    match &err {
        Error::Api { message, .. } => assert_eq!(message, "CT 300 already exists on node 'pve'"),
        other => panic!("{other:?}"),
    }
    let mut forced = over.clone();
    forced.force = true;
    env.wait_ok(env.agent.restore_lxc(&forced).await).await;
    let cfg = env.agent.lxc_config(vmid(300)).await.unwrap();
    assert_eq!(cfg.memory, Some(512));
    assert_eq!(cfg.hostname.as_deref(), Some("ct101"));

    // The protected backup cannot be deleted; an unprotected one can (its volid carries ':'
    // and '/', so it must travel as one percent-encoded path component).
    let task = env.agent.delete_volume("local", &archive).await.unwrap();
    let err = env.wait(task).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { exitstatus, .. } if exitstatus.contains("protected")),
        "{err:?}"
    );
    let mut plain = VzdumpRequest::new(vmid(300), "local");
    plain.mode = Some(VzdumpMode::Stop);
    let VzdumpOutcome::Task(upid) = env.agent.vzdump(&plain).await.unwrap() else {
        panic!("no task");
    };
    env.wait(pve::TaskRef::Task(upid)).await.unwrap();
    let plain_backups = env
        .agent
        .storage_content("local", Some("backup"), Some(vmid(300)))
        .await
        .unwrap();
    assert_eq!(plain_backups.len(), 1);
    let volid = plain_backups[0].volid.clone();
    env.wait_ok(env.agent.delete_volume("local", &volid).await)
        .await;
    let left: Vec<String> = env
        .agent
        .storage_content("local", Some("backup"), None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.volid)
        .collect();
    assert!(!left.contains(&volid), "{left:?}");
    assert!(left.contains(&archive), "{left:?}");
    let log = env.audit().await;
    let path = format!("/nodes/pve/storage/local/content/{volid}");
    assert_eq!(logged(&log, "DELETE", &path)[0]["status"], 200);
}

/// Prune by retention (pve-storage `PruneBackups.pm`): the dry run marks, the `prunebackups`
/// task (id `<vmid>@<storage>`) removes only this guest's unprotected `remove` backups.
#[tokio::test]
async fn prune_backups_by_retention() {
    let env = Env::start(2, 20);
    let (a, b) = (vmid(100), vmid(101));
    let mut made = Vec::new();
    for (guest, protected) in [(a, true), (a, false), (a, false), (a, false), (b, false)] {
        let mut req = VzdumpRequest::new(guest, "local");
        req.remove = Some(false);
        req.protected = Some(protected);
        let VzdumpOutcome::Task(upid) = env.agent.vzdump(&req).await.unwrap() else {
            panic!("no task");
        };
        env.wait(pve::TaskRef::Task(upid)).await.unwrap();
        made.push(guest);
    }
    let keep = Retention {
        last: 2,
        ..Retention::default()
    };
    let marks = env.agent.prune_dry_run("local", a, &keep).await.unwrap();
    let count = |m: &str| marks.iter().filter(|x| x.mark == m).count();
    assert_eq!(
        (count("keep"), count("remove"), count("protected")),
        (2, 1, 1),
        "{marks:?}"
    );
    let victim = marks
        .iter()
        .find(|m| m.mark == "remove")
        .unwrap()
        .volid
        .clone();
    let newest = marks
        .iter()
        .filter(|m| m.mark == "keep")
        .map(|m| m.ctime)
        .min();
    assert!(newest > marks.iter().find(|m| m.mark == "remove").map(|m| m.ctime));

    let task = env.agent.prune_backups("local", a, &keep).await.unwrap();
    let upid = task.upid().cloned().expect("a task");
    assert_eq!((upid.task_type(), upid.id()), ("prunebackups", "100@local"));
    env.wait_ok(Ok(task)).await;
    let log = env.agent.task_log_tail(&upid, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|l| l == &format!("removing backup '{victim}'")),
        "{log:?}"
    );
    let left = |guest| {
        let agent = env.agent.clone();
        async move {
            agent
                .storage_content("local", Some("backup"), Some(guest))
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(left(a).await, 3, "two kept and the protected one");
    assert_eq!(left(b).await, 1, "another guest's backups are untouched");

    // An empty retention is never sent; a bad one is PVE's 400.
    assert!(env
        .agent
        .prune_backups("local", a, &Retention::default())
        .await
        .is_err());
    env.audit().await;
}

#[tokio::test]
async fn storage_status_content_and_config_crud() {
    let env = Env::start(1, 80);
    let node = env.agent.list_node_storage(None).await.unwrap();
    let ids: Vec<&str> = node.iter().filter_map(|s| s.storage.as_deref()).collect();
    assert!(
        ids.contains(&"local") && ids.contains(&"local-lvm"),
        "{ids:?}"
    );
    let rootdir = env.agent.list_node_storage(Some("rootdir")).await.unwrap();
    assert!(rootdir
        .iter()
        .all(|s| s.content.as_deref().unwrap().contains("rootdir")));
    assert!(rootdir
        .iter()
        .all(|s| s.storage.as_deref() != Some("local")));
    let local = env.agent.storage_status("local").await.unwrap();
    assert_eq!(local.active, Some(true));
    assert!(local.total.unwrap() > 0 && local.avail.unwrap() <= local.total.unwrap());
    let templates = env
        .agent
        .storage_content("local", Some("vztmpl"), None)
        .await
        .unwrap();
    assert!(
        templates.iter().any(|c| c.volid == TEMPLATE),
        "{templates:?}"
    );
    let disks = env
        .agent
        .storage_content("local-lvm", None, Some(vmid(100)))
        .await
        .unwrap();
    assert_eq!(disks.len(), 1, "{disks:?}");

    let secrets = ["cifs-pass-4711", "pbs-token-secret-4711"];
    let mut dir = NewStorage::new(
        "e2e-dir",
        StorageKind::Dir {
            path: "/mnt/e2e".into(),
        },
    );
    dir.content = Some("backup,iso".into());
    let mut nfs = NewStorage::new(
        "e2e-nfs",
        StorageKind::Nfs {
            server: "10.0.0.9".into(),
            export: "/export/backup".into(),
            options: Some("vers=4.2".into()),
        },
    );
    nfs.content = Some("backup".into());
    nfs.prune_backups = Some("keep-last=3,keep-daily=7".into());
    let cifs = NewStorage::new(
        "e2e-cifs",
        StorageKind::Cifs {
            server: "nas.lan".into(),
            share: "backup".into(),
            username: Some("felhom".into()),
            password: Some(Secret::new(secrets[0])),
            domain: Some("WORKGROUP".into()),
            subdir: None,
        },
    );
    let pbs = NewStorage::new(
        "e2e-pbs",
        StorageKind::Pbs {
            server: "10.0.0.10".into(),
            datastore: "store1".into(),
            username: "backup@pbs!pve".into(),
            password: Secret::new(secrets[1]),
            fingerprint: Some(env.fingerprint()),
            namespace: Some("host1".into()),
            port: None,
            encryption_key: Some(Secret::new("autogen")),
        },
    );
    for s in [&dir, &nfs, &cifs, &pbs] {
        let created = env.agent.create_storage(s).await.unwrap();
        assert_eq!(created.storage, s.id);
        // Only autogen returns a key, once.
        assert_eq!(
            created.encryption_key.is_some(),
            s.id == "e2e-pbs",
            "{}",
            s.id
        );
        if let Some(key) = created.encryption_key {
            assert!(
                key.expose().contains("kdf") || key.expose().starts_with('{'),
                "key shape"
            );
        }
    }
    let err = env.agent.create_storage(&dir).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 500, .. }), "{err:?}");

    let all = env.agent.list_storage_config(None).await.unwrap();
    for id in ["e2e-dir", "e2e-nfs", "e2e-cifs", "e2e-pbs"] {
        assert!(all.iter().any(|s| s.storage == id), "{id}");
    }
    let only_nfs = env.agent.list_storage_config(Some("nfs")).await.unwrap();
    assert_eq!(
        only_nfs
            .iter()
            .map(|s| s.storage.as_str())
            .collect::<Vec<_>>(),
        ["e2e-nfs"]
    );
    let nfs_cfg = env.agent.storage_config("e2e-nfs").await.unwrap();
    assert_eq!(nfs_cfg.storage_type, "nfs");
    assert_eq!(nfs_cfg.options["server"], "10.0.0.9");
    assert_eq!(nfs_cfg.options["path"], "/mnt/pve/e2e-nfs");
    let cifs_cfg = env.agent.storage_config("e2e-cifs").await.unwrap();
    assert!(!cifs_cfg.options.contains_key("password"), "{cifs_cfg:?}");
    let pbs_cfg = env.agent.storage_config("e2e-pbs").await.unwrap();
    assert!(!pbs_cfg.options.contains_key("password"), "{pbs_cfg:?}");
    assert_eq!(pbs_cfg.options["datastore"], "store1");
    // No secret in any answer the simulator logged.
    let answers: String = env
        .requests()
        .await
        .iter()
        .filter(|e| e["method"] == "GET")
        .map(|e| e["response"].to_string())
        .collect();
    for secret in secrets {
        assert!(!answers.contains(secret), "{secret} echoed back");
    }

    // Update: set and delete options.
    let mut set = BTreeMap::new();
    set.insert("options".to_owned(), json!("vers=4.1"));
    set.insert("disable".to_owned(), json!(true));
    env.agent
        .update_storage("e2e-nfs", &set, &["prune-backups"])
        .await
        .unwrap();
    let nfs_cfg = env.agent.storage_config("e2e-nfs").await.unwrap();
    assert_eq!(nfs_cfg.options["options"], "vers=4.1");
    // PVE answers the parsed storage.cfg: booleans are numbers.
    let disable = &nfs_cfg.options["disable"];
    assert_eq!(disable, &json!(1), "{disable}");
    assert!(
        !nfs_cfg.options.contains_key("prune-backups"),
        "{nfs_cfg:?}"
    );

    for id in ["e2e-dir", "e2e-nfs", "e2e-cifs", "e2e-pbs"] {
        env.agent.delete_storage(id).await.unwrap();
        let err = env.agent.storage_config(id).await.unwrap_err();
        assert!(matches!(err, Error::Api { status: 500, .. }), "{err:?}");
    }
    let left = env.agent.list_storage_config(None).await.unwrap();
    assert!(left.iter().all(|s| !s.storage.starts_with("e2e-")));
    // The booleans went out as 0/1.
    let log = env.audit().await;
    let put = logged(&log, "PUT", "/storage/e2e-nfs");
    assert_eq!(put[0]["params"]["disable"], json!(1));
}
