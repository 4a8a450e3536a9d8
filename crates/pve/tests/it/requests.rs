use std::sync::{Arc, Mutex};

use serde_json::json;

use pve::{
    ConfigUpdate, DestroyOptions, SnapshotName, TaskRef, Vmid, VzdumpOutcome, VzdumpRequest,
};

use crate::fake::{self, Answer};

const UPID: &str = "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:felhom-agent@pve!agent:";
const MAC: &str = "BC:24:11:AA:BB:CC";

fn vmid() -> Vmid {
    Vmid::new(101).unwrap()
}

/// A fake guest config; PUTs are answered `null` (PVE's config update is synchronous).
async fn config_fake() -> crate::fake::Fake {
    fake::serve(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/api2/json/nodes/pve1/lxc/101/config") => Answer::data(json!({
            "digest": "d1d1", "hostname": "web1", "description": "managed by felhom\n",
            "cores": 1, "memory": 512, "onboot": 1,
            "net0": format!("name=eth0,bridge=vmbr0,hwaddr={MAC},ip=dhcp,type=veth"),
        })),
        ("PUT", "/api2/json/nodes/pve1/lxc/101/config") => Answer::data(json!(null)),
        _ => Answer::data(json!(UPID)),
    })
    .await
}

#[tokio::test]
async fn description_newline_is_stripped_on_read() {
    let fake = config_fake().await;
    let cfg = fake.client().lxc_config(vmid()).await.unwrap();
    assert_eq!(cfg.description.as_deref(), Some("managed by felhom"));
    assert_eq!(cfg.onboot, Some(true));
    assert_eq!(cfg.digest.as_deref(), Some("d1d1"));
    let cfg = fake.client().lxc_config_current(vmid()).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("web1"));
    assert_eq!(fake.seen()[1].query.as_deref(), Some("current=1"));
}

#[tokio::test]
async fn net_update_resends_hwaddr_with_the_read_digest() {
    let fake = config_fake().await;
    let update = ConfigUpdate::new()
        .net(0, "name=eth0,bridge=vmbr1,ip=dhcp,type=veth")
        .net(1, "name=eth1,bridge=vmbr0,ip=dhcp,type=veth")
        .onboot(false)
        .delete("mp1");
    let r = fake
        .client()
        .update_lxc_config(vmid(), update)
        .await
        .unwrap();
    assert_eq!(r, TaskRef::Sync);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "one config read, one update");
    let put = &seen[1];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.headers["content-type"], "application/json");
    assert_eq!(
        put.body,
        json!({
            "net0": format!("name=eth0,bridge=vmbr1,ip=dhcp,type=veth,hwaddr={MAC}"),
            "net1": "name=eth1,bridge=vmbr0,ip=dhcp,type=veth",
            "onboot": 0,
            "delete": "mp1",
            "digest": "d1d1",
        })
    );
}

#[tokio::test]
async fn caller_digest_wins_and_plain_updates_skip_the_read() {
    let fake = config_fake().await;
    let client = fake.client();
    client
        .update_lxc_config(
            vmid(),
            ConfigUpdate::new()
                .net(0, "name=eth0,bridge=vmbr0")
                .digest("mine"),
        )
        .await
        .unwrap();
    client
        .update_lxc_config(vmid(), ConfigUpdate::new().description("hello").cores(2))
        .await
        .unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].body["digest"], "mine");
    assert_eq!(
        seen[1].body["net0"],
        format!("name=eth0,bridge=vmbr0,hwaddr={MAC}")
    );
    assert_eq!(seen[2].method, "PUT");
    assert_eq!(seen[2].body, json!({"cores": 2, "description": "hello"}));
}

#[tokio::test]
async fn mutating_calls_return_upids_and_encode_parameters() {
    let fake = config_fake().await;
    let client = fake.client();
    let snap: SnapshotName = "pre-upgrade".parse().unwrap();
    for r in [
        client.start_lxc(vmid()).await.unwrap(),
        client.shutdown_lxc(vmid(), Some(30), true).await.unwrap(),
        client
            .create_snapshot(vmid(), &snap, Some("before"))
            .await
            .unwrap(),
        client.rollback_snapshot(vmid(), &snap, true).await.unwrap(),
        client.delete_snapshot(vmid(), &snap, false).await.unwrap(),
        client
            .destroy_lxc(
                vmid(),
                DestroyOptions {
                    purge: true,
                    destroy_unreferenced_disks: true,
                    force: false,
                },
            )
            .await
            .unwrap(),
        client.resize_lxc(vmid(), "mp0", "+2G", None).await.unwrap(),
        client
            .delete_volume(
                "local",
                "local:backup/vzdump-lxc-101-2026_05_01-10_00_00.tar.zst",
            )
            .await
            .unwrap(),
    ] {
        assert_eq!(r.upid().map(|u| u.as_str()), Some(UPID));
    }
    let seen = fake.seen();
    let line = |i: usize| format!("{} {}", seen[i].method, seen[i].path);
    assert_eq!(line(0), "POST /api2/json/nodes/pve1/lxc/101/status/start");
    assert_eq!(seen[1].body, json!({"timeout": 30, "forceStop": 1}));
    assert_eq!(
        seen[2].body,
        json!({"snapname": "pre-upgrade", "description": "before"})
    );
    assert_eq!(
        line(3),
        "POST /api2/json/nodes/pve1/lxc/101/snapshot/pre-upgrade/rollback"
    );
    assert_eq!(seen[3].body, json!({"start": 1}));
    assert_eq!(
        line(4),
        "DELETE /api2/json/nodes/pve1/lxc/101/snapshot/pre-upgrade"
    );
    assert_eq!(
        seen[4].body,
        serde_json::Value::Null,
        "DELETE carries no body"
    );
    assert_eq!(line(5), "DELETE /api2/json/nodes/pve1/lxc/101");
    let q = seen[5].query.clone().unwrap();
    assert!(
        q.contains("purge=1") && q.contains("destroy-unreferenced-disks=1") && !q.contains("force"),
        "{q}"
    );
    assert_eq!(line(6), "PUT /api2/json/nodes/pve1/lxc/101/resize");
    assert_eq!(
        line(7),
        "DELETE /api2/json/nodes/pve1/storage/local/content/local%3Abackup%2Fvzdump-lxc-101-2026_05_01-10_00_00.tar.zst"
    );
}

#[tokio::test]
async fn client_side_validation_sends_nothing() {
    let fake = config_fake().await;
    let client = fake.client();
    assert!(client.resize_lxc(vmid(), "mp0", "2GB", None).await.is_err());
    assert!(client
        .resize_lxc(vmid(), "disk0", "2G", None)
        .await
        .is_err());
    assert!(client
        .update_lxc_config(vmid(), ConfigUpdate::new())
        .await
        .is_err());
    assert!(client.disk_smart("sda; reboot").await.is_err());
    assert!(client.delete_volume("local", "no-prefix").await.is_err());
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn vzdump_ok_means_not_on_this_node() {
    let answer = Arc::new(Mutex::new(json!("OK")));
    let a = answer.clone();
    let fake = fake::serve(move |_| Answer::data(a.lock().unwrap().clone())).await;
    let client = fake.client();
    let req = VzdumpRequest::new(vmid(), "pbs1");
    assert_eq!(
        client.vzdump(&req).await.unwrap(),
        VzdumpOutcome::NotOnThisNode
    );
    *answer.lock().unwrap() = json!(UPID);
    assert_eq!(
        client.vzdump(&req).await.unwrap(),
        VzdumpOutcome::Task(UPID.parse().unwrap())
    );
    *answer.lock().unwrap() = json!(null);
    assert!(client.vzdump(&req).await.is_err());
    assert_eq!(
        fake.seen()[0].body,
        json!({"vmid": "101", "storage": "pbs1"})
    );
}

#[tokio::test]
async fn permissions_and_missing_privileges() {
    let fake = fake::serve(|_| {
        Answer::data(json!({"/": {"VM.Audit": 1, "Sys.Audit": 1, "Datastore.Audit": "1"}}))
    })
    .await;
    let map = fake.client().permissions(Some("/")).await.unwrap();
    let missing = pve::missing_privileges(&map, "/");
    assert_eq!(missing.len(), 13);
    assert!(!missing.contains(&"VM.Audit"));
    assert!(missing.contains(&"VM.Backup"));
    assert_eq!(fake.seen()[0].query.as_deref(), Some("path=%2F"));
}
