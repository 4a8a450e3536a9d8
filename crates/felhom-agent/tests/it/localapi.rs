//! The local API wired to the real journal, the reconcile engine's queues and a real simulator:
//! tokens minted and revoked by the real `felhom-agent localapi` binary, a server started by
//! `localapi_wiring::start` in-process, a client pinning the fingerprint the CLI printed.
//!
//! Guests of the simulator: 100 (running; snapshot, backup policy to `local`, rollback),
//! 102 (running; another controller), 101 (stopped; destroyed behind the agent's back).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journal::{Journal, OpKind, OpStatus};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{Sim, SimOptions};

use crate::{agent, run, valid_config, Fixture};

/// Collects log output of the test's tasks.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub(crate) fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    run(agent()
        .arg("localapi")
        .args(args)
        .arg("--config")
        .arg(config))
}

/// Mints a token with the CLI; returns (id, token) from its last line.
pub(crate) fn mint(config: &Path, vmid: u32) -> (String, String) {
    let (code, out, err) = cli(config, &["token", "--vmid", &vmid.to_string()]);
    assert_eq!(code, 0, "{err}");
    let token = out.lines().last().unwrap().trim().to_owned();
    assert!(token.starts_with("fla_") && token.len() == 85, "{out}");
    assert!(!err.contains(&token), "token on stderr");
    // The line before names the id, which is the token's public part.
    let id = token[4..20].to_owned();
    assert!(out.contains(&id));
    (id, token)
}

pub(crate) fn pinned(fingerprint: pve::Fingerprint) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(pve::pinned_client_config(fingerprint).unwrap())
        .https_only(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn snapshots(client: &pve::Client, vmid: u32) -> Vec<String> {
    client
        .list_snapshots(pve::Vmid::new(vmid).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn all_audit(state: &Path) -> Vec<journal::AuditEntry> {
    Journal::open_read_only(state)
        .unwrap()
        .audit_tail(100_000)
        .unwrap()
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn local_api_end_to_end_against_the_simulator() {
    let fx = Fixture::new();
    let sim = Sim::start(
        SimOptions::default()
            .guests(3)
            .task_ms(40)
            .log_to(fx.path("sim.log")),
    )
    .unwrap();
    let state: PathBuf = fx.path("state");
    let mut config = valid_config();
    config.as_object_mut().unwrap().remove("hub");
    config["state_dir"] = json!(state);
    config["operators_file"] = json!(fx.path("operators.json"));
    config["proxmox"] = json!({
        "url": sim.info.url, "node": sim.info.node, "token": sim.info.token,
        "fingerprint": sim.info.fingerprint,
    });
    config["desired"] = json!({"file": fx.path("desired.json")});
    config["local_api"] = json!({"listen": ["127.0.0.1:0"]});
    config["log"] = json!({"level": "info", "format": "json"});
    let config_path = fx.config(&config);

    // The fingerprint first: the CLI creates the identity before the daemon ever ran.
    let (code, out, err) = cli(&config_path, &["fingerprint"]);
    assert_eq!(code, 0, "{err}");
    let fingerprint: pve::Fingerprint = out.trim().parse().unwrap();
    let (_, again, _) = cli(&config_path, &["fingerprint"]);
    assert_eq!(again, out, "the fingerprint is stable");

    // A token for a guest the agent does not manage yet is refused.
    let (code, out, err) = cli(&config_path, &["token", "--vmid", "100"]);
    assert_ne!(code, 0);
    assert!(err.contains("not managed"), "{err}");
    assert!(!out.contains("fla_"));

    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    felhom_agent::proxmox::install_crypto_provider();

    let loaded = felhom_agent::config::load(&config_path, Vec::new()).unwrap();
    let root = sim.client(true).unwrap();
    let mut secrets: Vec<String> = Vec::new();

    rt.block_on(async {
        // Guests adopted as a signed guest.adopt leaves them; then the daemon's wiring:
        // journal, engine, and the local API on the engine's handle.
        crate::adopt_async(&sim, &state, &[100, 101, 102]).await;
        let journal = felhom_agent::journal_handle::JournalHandle::new(Journal::open(&state).unwrap());
        let client = felhom_agent::proxmox::client(&loaded.proxmox).unwrap();
        let token_user = sim.info.token.split_once('=').unwrap().0.to_owned();
        let px = Arc::new(felhom_agent::pve_port::PveProxmox::new(
            client.clone(),
            token_user,
        ));
        let (mut engine, _status) =
            reconcile::Engine::new(
                px,
                Arc::new(felhom_agent::journal_port::JournalStore::new(journal.clone())),
                reconcile::EngineConfig::default(),
            )
                .unwrap();
        let desired = json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"running"},{"vmid":101,"state":"stopped"},
            {"vmid":102,"state":"running"}],
            "backup":{"guests":{"100":{"schedule":"daily","target":"local","keep_last":3}}}});
        let ingest = engine
            .ingest(&reconcile::DesiredInput {
                bytes: desired.to_string().into_bytes().into(),
                source: "test".into(),
            })
            .unwrap();
        assert_eq!(ingest, reconcile::Ingest::Accepted { generation: 1 });
        let running = felhom_agent::localapi_wiring::start(
            &loaded,
            journal.clone(),
            engine.handle(),
            client,
        )
        .await
        .unwrap()
        .expect("local_api.listen is set");
        let port = running.local_addrs()[0].port();
        let api = Api {
            client: pinned(fingerprint),
            base: format!("https://127.0.0.1:{port}"),
        };

        // Tokens minted by the real binary while the server runs.
        let (id100, t100) = mint(&config_path, 100);
        let (id102, t102) = mint(&config_path, 102);
        let (_id101, t101) = mint(&config_path, 101);
        secrets.extend([t100.clone(), t102.clone(), t101.clone()]);

        // A client pinning another fingerprint never gets an answer.
        let other: pve::Fingerprint = crate::FINGERPRINT.parse().unwrap();
        let refused = pinned(other)
            .get(format!("{}/backup/status", api.base))
            .send()
            .await;
        assert!(refused.is_err(), "a wrong pin connected");

        let (s, v) = api.call(Method::GET, "/backup/status", &t100, None).await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("none")),
            "{v}"
        );
        let (s, v) = api.call(Method::GET, "/backup/due", &t100, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            (v["due"].as_bool(), v["reason"].as_str()),
            (Some(true), Some("never_backed_up"))
        );
        let (_, v) = api.call(Method::GET, "/backup/due", &t102, None).await;
        assert_eq!(v["reason"], "no_policy");
        let (s, v) = api.call(Method::GET, "/storage", &t100, None).await;
        assert_eq!((s, v), (StatusCode::OK, json!({"mounts": []})));
        let (_, v) = api
            .call(Method::GET, "/restore-test/status", &t100, None)
            .await;
        assert_eq!(v["state"], "never");

        // POST /snapshot answers when the snapshot exists on the guest, and only on that one.
        let (s, v) = api
            .call(
                Method::POST,
                "/snapshot",
                &t100,
                Some(json!({"name":"pre-deploy"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let snap_op = v["op_id"].as_str().unwrap().to_owned();
        assert!(snapshots(&root, 100)
            .await
            .contains(&"pre-deploy".to_owned()));
        assert!(!snapshots(&root, 102)
            .await
            .contains(&"pre-deploy".to_owned()));
        // Journaled as an op like any other, run by the one executor.
        let op = journal.with(|j| j.op(&snap_op)).unwrap().unwrap();
        assert_eq!(
            (op.vmid, op.kind, op.state),
            (100, OpKind::LocalApi, OpStatus::Succeeded)
        );
        assert_eq!(op.steps[0].kind, "snapshot");
        assert!(op.steps[0].upid.is_some());
        let (s, _) = api
            .call(
                Method::POST,
                "/snapshot",
                &t100,
                Some(json!({"name":"pre-deploy"})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);

        // Guest 102's token touches guest 102 only, and cannot even name another guest.
        let (s, _) = api
            .call(
                Method::POST,
                "/snapshot",
                &t102,
                Some(json!({"name":"mine"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert!(snapshots(&root, 102).await.contains(&"mine".to_owned()));
        assert!(!snapshots(&root, 100).await.contains(&"mine".to_owned()));
        let (s, _) = api
            .call(
                Method::POST,
                "/rollback",
                &t102,
                Some(json!({"name":"pre-deploy"})),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "rollback to another guest's snapshot"
        );
        let (s, _) = api
            .call(
                Method::POST,
                "/snapshot",
                &t102,
                Some(json!({"name":"x1","vmid":100})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // No policy, no target: a client error with a stable code (issue 11 item 10), and
        // nothing is queued or posted.
        let vzdumps = sim.requests("POST", "/vzdump").await.unwrap();
        let (s, v) = api.call(Method::POST, "/backup", &t102, None).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(
            v,
            json!({"error": "no_backup_policy", "message": "no backup policy for this guest"})
        );
        assert_eq!(sim.requests("POST", "/vzdump").await.unwrap(), vzdumps);

        // Older backups an operator made by hand: four of guest 100, one of guest 101.
        for guest in [100, 100, 100, 100, 101] {
            let mut req = pve::VzdumpRequest::new(pve::Vmid::new(guest).unwrap(), "local");
            req.remove = Some(false);
            let pve::VzdumpOutcome::Task(upid) = root.vzdump(&req).await.unwrap() else {
                panic!("no vzdump task");
            };
            root.wait_task(&upid, pve::WaitOptions::new(Duration::from_secs(30)))
                .await
                .unwrap();
        }

        let older: Vec<String> = root
            .storage_content("local", Some("backup"), Some(pve::Vmid::new(100).unwrap()))
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.volid)
            .collect();
        assert_eq!(older.len(), 4);

        // POST /backup is queued, runs vzdump to the policy's target, and shows in the status.
        let (s, v) = api.call(Method::POST, "/backup", &t100, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let backup_op = v["op_id"].as_str().unwrap().to_owned();
        let mut last = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let (_, v) = api.call(Method::GET, "/backup/status", &t100, None).await;
            last = v;
            if last["state"] == "succeeded" || last["state"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(last["state"], "succeeded", "{last}");
        assert_eq!(last["op_id"], backup_op.as_str());
        assert!(last["last_success_at"].is_string());
        // The backup counts once its vzdump is done; the op ends after its prune.
        eventually("the backup op's prune", || {
            let op = Journal::open_read_only(&state).ok()?.op(&backup_op).ok()??;
            (op.state == journal::OpStatus::Succeeded).then_some(())
        })
        .await;
        let content = root
            .storage_content("local", Some("backup"), Some(pve::Vmid::new(100).unwrap()))
            .await
            .unwrap();
        // Then the op pruned guest 100's backups on the target by the agent's retention for
        // the daily keep_last=3 policy (keep-last=3,keep-daily=3: all are from today, so 3
        // stay), in a `prunebackups` task of the agent's token; guest 101's are untouched.
        assert_eq!(content.len(), 3, "{content:?}");
        let other = root
            .storage_content("local", Some("backup"), Some(pve::Vmid::new(101).unwrap()))
            .await
            .unwrap();
        assert_eq!(other.len(), 1, "another guest's backup was pruned");
        let log = sim.control("GET", "/_sim/requests", None).await.unwrap();
        let prune = log
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["method"] == "DELETE" && r["path"].as_str().unwrap().ends_with("/prunebackups")
            })
            .cloned()
            .expect("a prunebackups DELETE");
        assert_eq!(prune["params"]["prune-backups"], "keep-last=3,keep-daily=3", "{prune}");
        assert_eq!(prune["params"]["vmid"], "100", "{prune}");
        assert!(
            content.iter().any(|c| !older.contains(&c.volid)),
            "the new backup was pruned: {content:?}"
        );
        let (_, v) = api.call(Method::GET, "/backup/due", &t100, None).await;
        assert_eq!(
            (v["due"].as_bool(), v["reason"].as_str()),
            (Some(false), Some("not_yet"))
        );
        // The vzdump ran with remove=0: a backup never prunes the ones before it (issue 11
        // item 8: under keep-last=N a controller rotated every older backup out in N calls).
        let log = sim.control("GET", "/_sim/requests", None).await.unwrap();
        let vzdump = log
            .as_array()
            .unwrap()
            .iter()
            .rfind(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/vzdump"))
            .cloned()
            .unwrap();
        assert_eq!(vzdump["params"]["remove"], json!(0), "{vzdump}");
        // And a second one right away is not due by the daily policy: refused, nothing posted.
        let vzdumps = sim.requests("POST", "/vzdump").await.unwrap();
        let (s, v) = api.call(Method::POST, "/backup", &t100, None).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::CONFLICT, Some("backup_not_due")),
            "{v}"
        );
        assert_eq!(sim.requests("POST", "/vzdump").await.unwrap(), vzdumps);

        // POST /rollback goes through the engine's queue for guest 100: while another op holds
        // the guest (a backup submitted on the engine's handle, as the scheduler will, its POST
        // slowed by the simulator), it stays planned and Proxmox sees nothing of it.
        sim.control(
            "POST",
            "/_sim/delay",
            Some(json!({"ms": 1500, "count": 1, "path_prefix": format!("/nodes/{}/vzdump", sim.info.node)})),
        )
        .await
        .unwrap();
        let holder = engine
            .handle()
            .submit(
                reconcile::Origin::LocalApi,
                100,
                reconcile::GuestOp::Backup {
                    storage: "local".into(),
                    keep: None,
                },
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, v) = api
            .call(
                Method::POST,
                "/rollback",
                &t100,
                Some(json!({"name":"pre-deploy"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let rollback_op = v["op_id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting = journal.with(|j| j.op(&rollback_op)).unwrap().unwrap();
        assert_eq!(
            waiting.state,
            OpStatus::Planned,
            "ran past the guest's queue"
        );
        // A second backup while the first is open is a conflict, not a second vzdump.
        let (s, v) = api.call(Method::POST, "/backup", &t100, None).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        holder.finished().await.unwrap();
        // Then it rolls the guest back, starting it again (it ran).
        let done = eventually("the rollback", || {
            let op = journal.with(|j| j.op(&rollback_op)).unwrap()?;
            op.state.is_final().then_some(op)
        })
        .await;
        assert_eq!(done.state, OpStatus::Succeeded, "{:?}", done.error);
        let status = root.lxc_status(pve::Vmid::new(100).unwrap()).await.unwrap();
        assert!(status.is_running());

        // Every call is audited by token id, route, target and outcome.
        let entries = eventually("the audit of the snapshot", || {
            let all = all_audit(&state);
            all.iter()
                .any(|e| {
                    e.entry.kind == "local_api"
                        && e.entry.actor.as_deref() == Some(id100.as_str())
                        && e.entry.action.as_deref() == Some("POST /snapshot")
                        && e.entry.target.as_deref() == Some("vmid:100")
                        && e.entry.outcome == "ok"
                })
                .then_some(all)
        })
        .await;
        // The attempt to name guest 100 is recorded against 102's token, flagged.
        assert!(
            entries
                .iter()
                .any(|e| e.entry.actor.as_deref() == Some(id102.as_str())
                    && e.entry.target.as_deref() == Some("vmid:102")
                    && e.entry.outcome == "unexpected_parameter"
                    && e.entry.reason.as_deref() == Some("guest-id-attempt")),
            "{:#?}",
            entries
                .iter()
                .filter(|e| e.entry.actor.as_deref() == Some(id102.as_str()))
                .collect::<Vec<_>>()
        );

        // Rollback only to the guest's local-API snapshots (issue 11 item 9): one root made
        // exists on the guest, yet the controller cannot return to it, and nothing is posted.
        let keep: pve::SnapshotName = "operator-keep".parse().unwrap();
        let task = root
            .create_snapshot(pve::Vmid::new(102).unwrap(), &keep, None)
            .await
            .unwrap();
        if let Some(upid) = task.upid() {
            root.wait_task(upid, pve::WaitOptions::default())
                .await
                .unwrap();
        }
        let rollbacks = sim.requests("POST", "/rollback").await.unwrap();
        let (s, v) = api
            .call(
                Method::POST,
                "/rollback",
                &t102,
                Some(json!({"name":"operator-keep"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"], "rollback_not_allowed", "{v}");
        assert_eq!(sim.requests("POST", "/rollback").await.unwrap(), rollbacks);
        // Its own snapshot is allowed.
        let (s, v) = api
            .call(
                Method::POST,
                "/rollback",
                &t102,
                Some(json!({"name":"mine"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");

        // At most MAX_LOCAL_API_SNAPSHOTS local-API snapshots per guest (issue 11 item 8; one
        // token made 40 in a row): "mine" plus nine more, then a refusal that names the oldest
        // and posts nothing. Root's "operator-keep" does not count.
        let cap = felhom_agent::localapi_wiring::MAX_LOCAL_API_SNAPSHOTS;
        for i in 1..cap {
            let (s, v) = api
                .call(
                    Method::POST,
                    "/snapshot",
                    &t102,
                    Some(json!({"name": format!("s{i}")})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{i}: {v}");
        }
        let posted = sim.requests("POST", "/snapshot").await.unwrap();
        let (s, v) = api
            .call(
                Method::POST,
                "/snapshot",
                &t102,
                Some(json!({"name":"one-too-many"})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!((&v["error"], &v["oldest"]), (&json!("snapshot_limit"), &json!("mine")));
        assert_eq!(sim.requests("POST", "/snapshot").await.unwrap(), posted);
        assert!(!snapshots(&root, 102).await.contains(&"one-too-many".to_owned()));

        // Revoked: 401 at once; the other guest's token keeps working.
        let (code, out, err) = cli(&config_path, &["revoke", "--vmid", "100"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("revoked 1 token"), "{out}");
        let (s, _) = api.call(Method::GET, "/backup/status", &t100, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = api.call(Method::GET, "/backup/status", &t102, None).await;
        assert_eq!(s, StatusCode::OK);

        // A guest destroyed behind the agent's back: its token is refused and revoked.
        let task = root
            .destroy_lxc(pve::Vmid::new(101).unwrap(), pve::DestroyOptions::default())
            .await
            .unwrap();
        if let Some(upid) = task.upid() {
            root.wait_task(upid, pve::WaitOptions::default())
                .await
                .unwrap();
        }
        let (s, _) = api.call(Method::GET, "/backup/status", &t101, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        running.shutdown(Duration::from_secs(2)).await.unwrap();
    });

    // `tokens` lists ids and states, never a secret.
    let (code, out, err) = cli(&config_path, &["tokens"]);
    assert_eq!(code, 0, "{err}");
    let states: Vec<(u64, String)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["vmid"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (100, "revoked".to_owned()),
            (101, "revoked".to_owned()),
            (102, "active".to_owned())
        ]
    );

    // No token (or its secret half) in the audit table, the logs, or the CLI's other output.
    let audit_text: String = all_audit(&state)
        .iter()
        .map(|e| format!("{:?}", e.entry))
        .collect();
    let logs = capture.text();
    assert!(logs.contains("local api listening"), "the capture works");
    for token in &secrets {
        let secret = &token[21..];
        assert!(!audit_text.contains(secret), "a secret in the audit log");
        assert!(!logs.contains(secret), "a secret in the logs");
        assert!(!out.contains(secret), "a secret in `tokens`");
    }
}
