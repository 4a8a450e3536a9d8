//! vzdump, backup listing, restore semantics and root-only feature flags.

use serde_json::{json, Value};

use crate::harness::{start, state_dir, upid, Sim};

const TEMPLATE: &str = "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst";

async fn backup(sim: &Sim, vmid: &str) -> String {
    let id = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/vzdump",
            &[
                ("vmid", vmid),
                ("storage", "local"),
                ("compress", "zstd"),
                ("notes-template", "{{guestname}} ({{vmid}})"),
            ],
        )
        .await,
    );
    assert!(id.contains(&format!(":vzdump:{vmid}:")), "{id}");
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let log = sim
        .agent(
            "GET",
            &format!("/nodes/pve/tasks/{id}/log"),
            &[("limit", "0")],
        )
        .await;
    let text: Vec<String> = log
        .data()
        .as_array()
        .expect("log")
        .iter()
        .map(|l| l["t"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        text.iter()
            .any(|l| l.starts_with("INFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|l| l == &format!("INFO: Finished Backup of VM {vmid} (00:00:01)")),
        "{text:?}"
    );
    let content = sim
        .agent(
            "GET",
            "/nodes/pve/storage/local/content",
            &[("content", "backup"), ("vmid", vmid)],
        )
        .await;
    let items = content.data().as_array().expect("items").clone();
    let item = items.last().expect("one backup");
    assert_eq!(item["subtype"], json!("lxc"));
    assert_eq!(item["format"], json!("tar.zst"));
    let volid = item["volid"].as_str().expect("volid").to_string();
    assert!(
        volid.starts_with(&format!("local:backup/vzdump-lxc-{vmid}-"))
            && volid.ends_with(".tar.zst"),
        "{volid}"
    );
    volid
}

fn hwaddr(cfg: &Value) -> String {
    let net0 = cfg["net0"].as_str().expect("net0");
    net0.split(',')
        .find_map(|p| p.strip_prefix("hwaddr="))
        .expect("hwaddr")
        .to_string()
}

#[tokio::test]
async fn vzdump_then_restore_keeps_or_regenerates_mac() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--guests", "2", "--task-ms", "50"]);
    sim.agent(
        "PUT",
        "/nodes/pve/lxc/101/config",
        &[("hostname", "web"), ("memory", "768")],
    )
    .await;
    let original = sim
        .agent("GET", "/nodes/pve/lxc/101/config", &[])
        .await
        .data()
        .clone();
    let volid = backup(&sim, "101").await;
    let content = sim
        .agent(
            "GET",
            "/nodes/pve/storage/local/content",
            &[("content", "backup")],
        )
        .await;
    assert_eq!(content.data()[0]["notes"], json!("web (101)"));

    // Restore over an existing CT needs force.
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "101"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("storage", "local-lvm"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.json["message"].clone()),
        (500, json!("CT 101 already exists on node 'pve'\n"))
    );
    let id = upid(
        &sim.agent(
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
        .await,
    );
    assert!(id.contains(":vzrestore:101:"), "{id}");
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let restored = sim
        .agent("GET", "/nodes/pve/lxc/101/config", &[])
        .await
        .data()
        .clone();
    assert_eq!(restored["hostname"], json!("web"));
    assert_eq!(restored["memory"], json!(768));
    assert_eq!(
        hwaddr(&restored),
        hwaddr(&original),
        "MAC kept without unique"
    );

    // A copy with unique=1 gets a new MAC; explicit parameters win over the archive.
    let id = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "120"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("unique", "1"),
                ("storage", "local-lvm"),
                ("hostname", "copy"),
            ],
        )
        .await,
    );
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let copy = sim
        .agent("GET", "/nodes/pve/lxc/120/config", &[])
        .await
        .data()
        .clone();
    assert_ne!(hwaddr(&copy), hwaddr(&original));
    assert_eq!(copy["hostname"], json!("copy"));
    assert_eq!(copy["memory"], json!(768));
    assert!(
        copy["rootfs"]
            .as_str()
            .is_some_and(|r| r.starts_with("local-lvm:vm-120-disk-")),
        "{copy}"
    );

    // A running target cannot be overwritten.
    let s = upid(
        &sim.agent("POST", "/nodes/pve/lxc/120/status/start", &[])
            .await,
    );
    sim.wait_task(&s).await;
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "120"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("force", "1"),
                ("storage", "local-lvm"),
            ],
        )
        .await;
    assert_eq!(
        r.json["message"],
        json!("can't overwrite running container\n")
    );
    // vzdump of a guest that is not on this node answers "OK".
    let r = sim
        .agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "4242"), ("storage", "local")],
        )
        .await;
    assert_eq!(r.data(), &json!("OK"));
    sim.assert_no_schema_errors().await;
}

#[tokio::test]
async fn keyctl_is_root_only_but_survives_a_token_restore() {
    let dir = state_dir();
    let sim = start(dir.path(), &["--task-ms", "50"]);
    let params = [
        ("vmid", "130"),
        ("ostemplate", TEMPLATE),
        ("storage", "local-lvm"),
        ("features", "nesting=1,keyctl=1"),
        ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
    ];
    let r = sim.agent("POST", "/nodes/pve/lxc", &params).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json["message"],
        json!("Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)\n")
    );
    // Root's token is not root@pam either.
    assert_eq!(
        sim.root("POST", "/nodes/pve/lxc", &params).await.status,
        403
    );
    // nesting alone is fine for the agent.
    let nest = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "131"),
                ("ostemplate", TEMPLATE),
                ("storage", "local-lvm"),
                ("features", "nesting=1"),
            ],
        )
        .await,
    );
    assert_eq!(sim.wait_task(&nest).await["exitstatus"], json!("OK"));

    // `pct create` as root on the host may set keyctl.
    let body: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let r = sim.control("pct/create", Value::Object(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.data().as_str().expect("upid").to_string();
    assert!(id.contains(":vzcreate:130:root@pam:"), "{id}");
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let cfg = sim.agent("GET", "/nodes/pve/lxc/130/config", &[]).await;
    assert_eq!(cfg.data()["features"], json!("nesting=1,keyctl=1"));
    assert_eq!(cfg.data()["hostname"], json!("CT130"));
    assert_eq!(
        cfg.data()["rootfs"],
        json!("local-lvm:vm-130-disk-0,size=4G")
    );

    // Back up and restore with the agent token: keyctl comes from the archive and stays.
    let volid = backup(&sim, "130").await;
    let id = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/lxc",
            &[
                ("vmid", "130"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("force", "1"),
                ("storage", "local-lvm"),
            ],
        )
        .await,
    );
    assert_eq!(sim.wait_task(&id).await["exitstatus"], json!("OK"));
    let cfg = sim.agent("GET", "/nodes/pve/lxc/130/config", &[]).await;
    assert_eq!(cfg.data()["features"], json!("nesting=1,keyctl=1"));

    // Protected backups cannot be deleted; the task says why.
    let p = upid(
        &sim.agent(
            "POST",
            "/nodes/pve/vzdump",
            &[("vmid", "130"), ("storage", "local"), ("protected", "1")],
        )
        .await,
    );
    assert_eq!(sim.wait_task(&p).await["exitstatus"], json!("OK"));
    let content = sim
        .agent(
            "GET",
            "/nodes/pve/storage/local/content",
            &[("content", "backup")],
        )
        .await;
    let protected = content
        .data()
        .as_array()
        .and_then(|a| a.iter().find(|i| i["protected"] == json!(1)))
        .and_then(|i| i["volid"].as_str())
        .expect("protected backup")
        .to_string();
    let del = upid(
        &sim.agent(
            "DELETE",
            &format!("/nodes/pve/storage/local/content/{protected}"),
            &[],
        )
        .await,
    );
    let status = sim.wait_task(&del).await;
    assert!(
        status["exitstatus"]
            .as_str()
            .is_some_and(|s| s.starts_with("cannot remove protected archive '")),
        "{status}"
    );
    sim.assert_no_schema_errors().await;
}
