//! The provisioning path of seed §9 end to end: the golden image is created through the
//! `privileged` fence (`sudo -n -- /usr/sbin/pct create … --features keyctl=1,nesting=1`, with
//! fake `sudo` and `pct` executables on PATH that run the create as root@pam on the simulator),
//! the agent's token may not set `keyctl` itself (403), and a token restore of the golden
//! image's backup keeps `keyctl` — which is why the agent provisions by restore.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use privileged::{
    Bridge, Cores, GoldenImageSpec, Hostname, MemoryMib, Privileged, StorageId, SudoRunner,
    TemplateVolume, Vmid as PrivVmid,
};
use pve::{CreateLxc, RestoreLxc, TaskRef, Vmid, VzdumpOutcome, VzdumpRequest, WaitOptions};
use testkit::{Sim, SimOptions};

const TEMPLATE: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write fake");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A directory with `sudo` (drops `-n --`, runs the named tool from this directory; the
/// privileged runner's PATH is only this directory, so no external commands) and a `pct` that
/// forwards `create` to the simulator as root.
fn fake_bin(sim: &Sim, python: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_exe(
        &dir.path().join("sudo"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = -n ] && shift\n[ \"$1\" = -- ] && shift\n\
             tool=\"${{1##*/}}\"; shift\nexec \"{}/$tool\" \"$@\"\n",
            dir.path().display()
        ),
    );
    let script =
        std::fs::read_to_string(testkit::workspace_root().join("tests/fakes/pct_via_sim.py"))
            .expect("read fake pct");
    let script = script
        .replacen(
            "#!/usr/bin/env python3",
            &format!("#!{}", python.display()),
            1,
        )
        .replace("@SIM_URL@", &sim.info.url)
        .replace("@SIM_CA@", &sim.ca_path().display().to_string());
    write_exe(&dir.path().join("pct"), &script);
    dir
}

async fn wait(client: &pve::Client, task: TaskRef) {
    if let TaskRef::Task(upid) = task {
        client
            .wait_task(&upid, WaitOptions::new(Duration::from_secs(30)))
            .await
            .expect("task ok");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn golden_image_via_privileged_then_token_restore_keeps_keyctl() {
    let Some(python) = testkit::python_with(&["requests"]).expect("python") else {
        return;
    };
    let sim = Sim::start(SimOptions::default().guests(1).task_ms(50)).expect("simulator");
    let bin = fake_bin(&sim, &python);
    let client = sim.client(false).expect("client");

    // 1. Root, through the fence: the golden image with keyctl.
    let spec = GoldenImageSpec {
        vmid: PrivVmid::new(9000).expect("vmid"),
        ostemplate: TemplateVolume::parse(TEMPLATE).expect("template"),
        storage: StorageId::parse("local-lvm").expect("storage"),
        hostname: Hostname::parse("golden").expect("hostname"),
        memory: MemoryMib::new(512).expect("memory"),
        cores: Cores::new(1).expect("cores"),
        bridge: Bridge::parse("vmbr0").expect("bridge"),
    };
    let privileged = Privileged::new(SudoRunner::with_path(bin.path().as_os_str()));
    tokio::task::spawn_blocking(move || privileged.create_golden_image(&spec))
        .await
        .expect("join")
        .expect("golden image created through sudo + pct");
    let golden = Vmid::new(9000).expect("vmid");
    let config = client.lxc_config(golden).await.expect("golden config");
    let features = config.other.get("features").cloned().unwrap_or_default();
    assert!(
        features.contains("keyctl=1") && features.contains("nesting=1"),
        "{features}"
    );

    // 2. The agent's token may not do that itself (root-only feature flag).
    let mut create = CreateLxc::new(Vmid::new(9001).expect("vmid"), TEMPLATE, "local-lvm");
    create.features = Some("keyctl=1,nesting=1".into());
    match client.create_lxc(&create).await {
        Err(pve::Error::Forbidden { message, .. }) => {
            assert!(message.contains("root@pam"), "{message}")
        }
        other => panic!("expected 403 for keyctl with a token, got {other:?}"),
    }

    // 3. Back up the golden image and restore it with the token: keyctl survives.
    let upid = match client
        .vzdump(&VzdumpRequest::new(golden, "local"))
        .await
        .expect("vzdump")
    {
        VzdumpOutcome::Task(upid) => upid,
        VzdumpOutcome::NotOnThisNode => panic!("golden image not on this node"),
    };
    wait(&client, TaskRef::Task(upid)).await;
    let archive = client
        .storage_content("local", Some("backup"), Some(golden))
        .await
        .expect("content")
        .into_iter()
        .map(|c| c.volid)
        .max()
        .expect("an archive");
    let guest = Vmid::new(120).expect("vmid");
    let restore = RestoreLxc::new(guest, archive, "local-lvm");
    wait(
        &client,
        client.restore_lxc(&restore).await.expect("token restore"),
    )
    .await;
    let restored = client.lxc_config(guest).await.expect("restored config");
    let features = restored.other.get("features").cloned().unwrap_or_default();
    assert!(
        features.contains("keyctl=1"),
        "restore by token dropped keyctl: {features}"
    );
}
