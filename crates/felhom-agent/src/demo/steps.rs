//! The seven steps of the story. Each acts through the hub (or the local API, or, for the operator, with the
//! operator's tools), then waits until the agent's report at the hub shows the effect, and
//! narrates the facts it read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hub::OpOutcomeKind;
use pve::{LxcStatus, Vmid};
use serde_json::json;
use testkit::{Hub, HubOptions, Sim, SimOptions};

use super::agent::{log_tail, AgentProcess};
use super::narrate::Narrator;
use super::observe::{outcome_word, wait_until, Look, Report, MIB};
use super::scenario::{self, Wanted, BACKED_UP, DROPPED, KEEP_LAST, RESIZED};
use super::setup::{self, OperatorKey, HOST_ID, OPERATOR};
use super::{DemoOptions, Timing};

/// Everything the story runs on. Fields drop in declaration order: the agent stops first,
/// then the hub, then the simulator.
pub(crate) struct Stage<'a> {
    /// The agent daemon.
    pub agent: AgentProcess,
    hub: Hub,
    /// Owned so that it lives exactly as long as the stage (killed on drop).
    sim: Sim,
    /// The simulator seen with its root token, to show the node as it really is.
    pve: pve::Client,
    n: &'a Narrator,
    timing: Timing,
    key: OperatorKey,
    /// The node's guests before the hub said anything.
    before: BTreeMap<u64, LxcStatus>,
    /// The agent's configuration file (the CLI commands of the story read it).
    config: std::path::PathBuf,
    /// The agent's state directory.
    state_dir: std::path::PathBuf,
    /// Where the agent serves the local API.
    local_api: std::net::SocketAddr,
}

/// Step 1: the simulator, the hub, the operator key, the agent, and its first check-in.
pub(crate) async fn start<'a>(
    n: &'a Narrator,
    opts: &DemoOptions,
    timing: &Timing,
    dir: &Path,
) -> anyhow::Result<Stage<'a>> {
    n.heading("1. a Proxmox VE node, the reference hub and the agent, on loopback");
    let sim = tokio::task::spawn_blocking({
        let sim_opts = SimOptions::default()
            .guests(opts.guests)
            .task_ms(opts.task_ms)
            .log_to(dir.join("pve-sim.log"));
        move || Sim::start(sim_opts)
    })
    .await??;
    let pve = sim.client(true)?;
    let before = guests(&pve).await?;
    n.say(format!(
        "simulator (felhom-pve-sim, pid {}): PVE 9.1 API at {}/api2/json, node {:?}\n\
         {} containers: {}",
        sim.pid().unwrap_or(0),
        sim.info.url,
        sim.info.node,
        before.len(),
        power_states(&before)
    ));

    let hub = tokio::task::spawn_blocking({
        let hub_opts = HubOptions::default()
            .deadline_s(timing.deadline_s)
            .log_to(dir.join("hub.log"));
        move || Hub::start(hub_opts)
    })
    .await??;
    let config =
        json!({"poll_interval_s": timing.hub_poll_s, "jitter_s": 0, "update_window": null});
    hub.put_config(HOST_ID, &config).await?;
    n.say(format!(
        "reference hub (felhom-hub-sim, pid {}): agent API {}, admin API {}\n\
         host {HOST_ID:?} polls every {}s; dead-man's switch after {}s of silence",
        hub.pid().unwrap_or(0),
        hub.info.url,
        hub.info.admin_url,
        timing.hub_poll_s,
        timing.deadline_s
    ));

    let mut key = setup::operator_key(dir)?;
    let operators = setup::operators_file(dir, &mut key)?;
    n.say(format!(
        "operator key: ssh-keygen -t ed25519 -> {} ({})\n\
         listed in {} as {OPERATOR:?}, role operator",
        key.private.display(),
        key.fingerprint,
        operators.display()
    ));

    // A free loopback port for the local API, known before the agent binds it.
    let local_api = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = setup::config(dir, &sim, &hub, &operators, local_api)?;
    // Checked the way the agent will load it, so a mistake here is named before it starts.
    crate::config::load(&config, std::iter::empty())
        .context("the demo wrote an invalid configuration")?;
    let agent = AgentProcess::start(&config, dir.join("agent.log"))?;
    n.say(format!(
        "agent (felhom-agent run --config {}, pid {})\n\
         Proxmox token and hub key in 0600 files, the simulator's certificate pinned\n\
         work dir {} (logs; removed at exit)",
        config.display(),
        agent.pid(),
        dir.display()
    ));

    let stage = Stage {
        agent,
        hub,
        sim,
        pve,
        n,
        timing: timing.clone(),
        key,
        before,
        config: config.clone(),
        state_dir: dir.join("state"),
        local_api,
    };
    let first = stage
        .wait_report("the agent's first report at the hub", |r| {
            Look::Done(r.clone())
        })
        .await?;
    let managed = first.guests.iter().filter(|g| g.managed).count();
    n.say(format!(
        "agent checked in: report of {}, {} guests on the node, {managed} managed, polling every {}s",
        first.sent_at,
        first.guests.len(),
        first.agent.poll_interval_s
    ));
    Ok(stage)
}

impl Stage<'_> {
    /// The pause between steps.
    pub async fn beat(&self) {
        tokio::time::sleep(self.timing.beat).await;
    }

    /// Stops the agent (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        self.agent.stop();
    }

    /// Step 2: generation 1 names 100–102; naming does not make them managed, so each waits
    /// for a signed adoption and the node is left as it was.
    pub async fn hold_adoption(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading("2. the hub publishes desired state generation 1");
        let wanted = scenario::generation_1();
        self.publish(1, &wanted).await?;
        for w in &wanted {
            n.say(format!("  wants {}", describe(w)));
        }
        let vmids: Vec<u64> = wanted.iter().map(|w| w.vmid).collect();
        let held = self
            .wait_report("the adoption of guests 100-102 held for a signature", |r| {
                let held: Vec<u64> = vmids
                    .iter()
                    .copied()
                    .filter(|v| r.pending(*v).is_some_and(|p| p.action == "guest.adopt"))
                    .collect();
                if r.desired.received_generation >= Some(1) && held.len() == vmids.len() {
                    Look::Done(held)
                } else {
                    Look::Seen(r.summary(&vmids))
                }
            })
            .await?;
        let now = guests(&self.pve).await?;
        let unchanged = vmids
            .iter()
            .all(|v| now.get(v).map(|g| &g.status) == self.before.get(v).map(|g| &g.status));
        anyhow::ensure!(unchanged, "a guest changed before its adoption was signed");
        let held: Vec<String> = held.iter().map(u64::to_string).collect();
        n.say(format!(
            "held: guest.adopt of guests {} needs an operator signature
             (naming a guest does not make it the agent's; the simulator still shows {})",
            held.join(", "),
            power_states(&now)
        ));
        Ok(())
    }

    /// Step 3: the operator signs `guest.adopt` for 100–102; wait until the report shows them
    /// managed and as desired.
    pub async fn converge(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading("3. the operator signs guest.adopt for guests 100-102");
        let wanted = scenario::generation_1();
        let vmids: Vec<u64> = wanted.iter().map(|w| w.vmid).collect();
        let mut ids = Vec::new();
        for vmid in &vmids {
            let op = scenario::sign(authz::Action::GuestAdopt, HOST_ID, *vmid, &self.key.private)?;
            self.hub.post_op(HOST_ID, &op.wire).await?;
            ids.push(op.op_id);
        }
        n.say(format!(
            "felhom-agent op new --action guest.adopt --target vmid:N ... | op sign | op wrap, \
             one per guest, posted to the hub: {}",
            ids.join(", ")
        ));
        let pve = &self.pve;
        let report = self
            .wait_for("generation 1 applied and guests 100-102 converged", {
                let wanted = &wanted;
                let vmids = &vmids;
                move |r: Report| async move {
                    if r.desired.applied_generation < Some(1) {
                        return Ok(Look::Seen(r.summary(vmids)));
                    }
                    if let Some(m) = wanted.iter().find_map(|w| r.mismatch(w)) {
                        return Ok(Look::Seen(format!("{}; {m}", r.summary(vmids))));
                    }
                    let config = pve.lxc_config(vmid(RESIZED)?).await?;
                    // The agent keeps its identity line below the hub's text.
                    let description = config
                        .description
                        .as_deref()
                        .map(|d| reconcile::normalize::split_identity(d).0);
                    if description.as_deref() != Some(scenario::RESIZED_DESCRIPTION) {
                        return Ok(Look::Seen(format!(
                            "{}; guest {RESIZED} description not set yet",
                            r.summary(vmids)
                        )));
                    }
                    Ok(Look::Done((r, description)))
                }
            })
            .await?;
        let (report, description) = report;
        n.say(format!(
            "converged: the report of {} shows generation {} applied",
            report.sent_at,
            report.desired.applied_generation.unwrap_or(0)
        ));
        for w in &wanted {
            let Some(g) = report.guest(w.vmid) else {
                continue;
            };
            let was = self.before.get(&w.vmid);
            let mut line = format!(
                "  guest {} {}: {} (was {})",
                w.vmid,
                g.name.as_deref().unwrap_or("?"),
                g.status,
                was.map_or("absent", |b| b.status.as_str())
            );
            if let Some(bytes) = g.spec.memory_bytes {
                line.push_str(&format!(", memory {} MiB", bytes / MIB));
                if let Some(old) = was.and_then(|b| b.maxmem) {
                    if old != bytes {
                        line.push_str(&format!(" (was {} MiB)", old / MIB));
                    }
                }
            }
            if w.vmid == RESIZED {
                if let Some(d) = &description {
                    line.push_str(&format!(", description {d:?}"));
                }
            }
            line.push_str(if g.managed {
                ", managed"
            } else {
                ", unmanaged"
            });
            n.say(line);
        }
        let others: Vec<String> = report
            .guests
            .iter()
            .filter(|g| !vmids.contains(&g.vmid))
            .map(|g| {
                format!(
                    "{} ({})",
                    g.vmid,
                    if g.managed { "managed" } else { "unmanaged" }
                )
            })
            .collect();
        if !others.is_empty() {
            n.say(format!(
                "  not in the desired state, never touched: {}",
                others.join(", ")
            ));
        }
        Ok(())
    }

    /// Step 4: generation 2 drops 102; the destroy is held for a signature and 102 stays.
    pub async fn hold_destroy(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading("4. the hub publishes generation 2, without guest 102");
        self.publish(2, &scenario::generation_2()).await?;
        let vmids = [DROPPED];
        let pending = self
            .wait_report("the destroy of guest 102 held for a signature", |r| match r
                .pending(DROPPED)
            {
                Some(p)
                    if r.desired.received_generation >= Some(2) && p.action == "guest.destroy" =>
                {
                    Look::Done(p.clone())
                }
                _ => Look::Seen(r.summary(&vmids)),
            })
            .await?;
        let still = guests(&self.pve).await?;
        let status = still.get(&DROPPED).map_or("absent", |g| g.status.as_str());
        n.say(format!(
            "held: {} of guest {DROPPED} needs an operator signature\n\
             (step {:?}, generation {}, pending since {})",
            pending.action,
            pending.step,
            pending.generation.map_or("-".into(), |g| g.to_string()),
            pending.since
        ));
        anyhow::ensure!(
            still.contains_key(&DROPPED),
            "guest {DROPPED} is gone from the simulator without a signature"
        );
        n.say(format!(
            "the simulator still has guest {DROPPED} ({status}): nothing destroyed without a signature"
        ));
        Ok(())
    }

    /// Step 5: the operator signs `guest.destroy` for 102; the hub relays it; the agent runs it.
    pub async fn signed_destroy(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading("5. the operator signs guest.destroy for guest 102");
        let op = scenario::sign(
            authz::Action::GuestDestroy,
            HOST_ID,
            DROPPED,
            &self.key.private,
        )?;
        n.say(format!(
            "felhom-agent op new --action guest.destroy --target vmid:{DROPPED} --host-id {HOST_ID} --ttl 15m\n\
             | op sign --key {} | op wrap  ->  {}",
            self.key.private.display(),
            op.op_id
        ));
        let queued = self.hub.post_op(HOST_ID, &op.wire).await?;
        n.say(format!(
            "posted to the hub: op {} queued ({} in the queue for {HOST_ID})",
            queued["op_id"].as_str().unwrap_or("?"),
            queued["queued"]
        ));
        let vmids = [DROPPED];
        let pve = &self.pve;
        let op_id = op.op_id.as_str();
        let (outcome, left) = self
            .wait_for(
                "the signed op's outcome and guest 102 gone",
                move |r: Report| async move {
                    let Some(o) = r.outcome(op_id) else {
                        return Ok(Look::Seen(r.summary(&vmids)));
                    };
                    if o.outcome != OpOutcomeKind::Done {
                        anyhow::bail!(
                            "the agent reports the signed op {}: {}",
                            outcome_word(o.outcome),
                            o.reason.as_deref().unwrap_or("no reason given")
                        );
                    }
                    let left = guests(pve).await?;
                    if left.contains_key(&DROPPED) || r.pending(DROPPED).is_some() {
                        return Ok(Look::Seen(format!(
                            "{}; op {op_id} {}",
                            r.summary(&vmids),
                            outcome_word(o.outcome)
                        )));
                    }
                    Ok(Look::Done((o.clone(), left)))
                },
            )
            .await?;
        n.say(format!(
            "signed op {} {}: verified (signer {OPERATOR}, key {}) and executed",
            outcome.op_id,
            outcome_word(outcome.outcome),
            self.key.fingerprint
        ));
        let remaining: Vec<String> = left.keys().map(u64::to_string).collect();
        n.say(format!(
            "guest {DROPPED} is gone from the simulator; guests now {}",
            remaining.join(", ")
        ));
        Ok(())
    }

    /// Step 6: freeze the agent until the hub alerts, then let it run and see the alert clear.
    /// Step 6: guest 100's controller asks for a backup through the local API; the agent
    /// runs vzdump without pruning, then prunes by its own retention for the guest's policy.
    pub async fn controller_backup(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading(&format!(
            "6. guest {BACKED_UP}'s controller asks for a backup through the local API"
        ));
        let guest = vmid(BACKED_UP)?;
        for _ in 0..3 {
            self.sim.backup_by_hand(BACKED_UP as u32, "local").await?;
        }
        let before = self.backups(guest).await?;
        n.say(format!(
            "guest {BACKED_UP} has {} older backups on storage local, made by hand with vzdump; \
             its policy in the desired state: daily to local, keep_last {KEEP_LAST}",
            before.len()
        ));
        let token = self.mint_token(BACKED_UP)?;
        n.say(format!(
            "felhom-agent localapi token --vmid {BACKED_UP}: the controller's bearer token \
             (shown once by the CLI; not printed here)"
        ));
        let fingerprint = localapi::fingerprint(&self.state_dir, &[self.local_api])?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(pve::pinned_client_config(fingerprint)?)
            .https_only(true)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let base = format!("https://{}", self.local_api);
        let resp = client
            .post(format!("{base}/backup"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        anyhow::ensure!(
            status == reqwest::StatusCode::ACCEPTED,
            "POST /backup answered {status}: {body}"
        );
        n.say(format!(
            "POST {base}/backup (certificate pinned) -> {status}, op {}",
            body["op_id"].as_str().unwrap_or("?")
        ));
        let before = &before;
        let after = wait_until(
            n,
            "the backup and the agent's prune",
            self.timing.step_timeout,
            self.timing.look_every,
            move || async move {
                let now = self.backups(guest).await?;
                let new = now.iter().filter(|v| !before.contains(v)).count();
                Ok(if new == 1 && now.len() as u64 == KEEP_LAST {
                    Look::Done(now)
                } else {
                    Look::Seen(format!("{} backups, {new} new", now.len()))
                })
            },
        )
        .await?;
        n.say(format!(
            "vzdump ran with remove=0 (a backup never prunes), then the agent pruned by its own \
             retention (keep-last={KEEP_LAST},keep-daily={KEEP_LAST}): guest {BACKED_UP} now has \
             {} backups on local: {}",
            after.len(),
            after.join(", ")
        ));
        let status: serde_json::Value = client
            .get(format!("{base}/backup/status"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        n.say(format!(
            "GET /backup/status -> {}, last success {}",
            status["state"].as_str().unwrap_or("?"),
            status["last_success_at"].as_str().unwrap_or("never")
        ));
        Ok(())
    }

    /// The guest's backup volume ids on `local`, oldest first.
    async fn backups(&self, guest: Vmid) -> anyhow::Result<Vec<String>> {
        let mut v: Vec<String> = self
            .pve
            .storage_content("local", Some("backup"), Some(guest))
            .await?
            .into_iter()
            .map(|c| c.volid)
            .collect();
        v.sort();
        Ok(v)
    }

    /// `felhom-agent localapi token --vmid N --config C`: the token is the last line.
    fn mint_token(&self, guest: u64) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("cannot locate the running executable")?;
        let out = std::process::Command::new(exe)
            .args([
                "localapi",
                "token",
                "--vmid",
                &guest.to_string(),
                "--config",
            ])
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run felhom-agent localapi token")?;
        anyhow::ensure!(
            out.status.success(),
            "felhom-agent localapi token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)?
            .lines()
            .last()
            .map(|l| l.trim().to_owned())
            .filter(|t| t.starts_with("fla_"))
            .context("felhom-agent localapi token printed no token")
    }

    pub async fn dead_mans_switch(&self) -> anyhow::Result<()> {
        let n = self.n;
        n.heading("7. the dead-man's switch");
        let before = self.report().await?.context("the hub has no report")?;
        self.agent.pause()?;
        n.say(format!(
            "agent paused (SIGSTOP to pid {}): it looks hung to the hub",
            self.agent.pid()
        ));
        let timeout = Duration::from_secs(self.timing.deadline_s + 2 * self.timing.hub_poll_s + 10);
        let hub = &self.hub;
        let alert = wait_until(
            n,
            "the hub's missed-check-in alert",
            timeout,
            self.timing.look_every,
            move || async move {
                let alerts = hub.alerts().await?;
                Ok(match host_alert(&alerts) {
                    Some(a) => Look::Done(a),
                    None => Look::Seen("no alert yet".into()),
                })
            },
        )
        .await?;
        n.say(format!(
            "hub alert: {} {} (silent {:.1}s > deadline {}s, last seen {})",
            alert["host_id"].as_str().unwrap_or("?"),
            alert["kind"].as_str().unwrap_or("?"),
            alert["silent_s"].as_f64().unwrap_or(0.0),
            alert["deadline_s"],
            alert["last_seen"].as_str().unwrap_or("never")
        ));
        self.agent.resume()?;
        n.say(format!(
            "agent resumed (SIGCONT to pid {})",
            self.agent.pid()
        ));
        let timeout = Duration::from_secs(2 * self.timing.hub_poll_s + 10);
        wait_until(
            n,
            "the alert to clear",
            timeout,
            self.timing.look_every,
            move || async move {
                let alerts = hub.alerts().await?;
                Ok(match host_alert(&alerts) {
                    Some(a) => Look::Seen(format!("still alerted, silent {}s", a["silent_s"])),
                    None => Look::Done(()),
                })
            },
        )
        .await?;
        n.say("alert cleared: the agent checked in again");
        let report = self
            .wait_report("a fresh report after the pause", |r| {
                if r.sent_at != before.sent_at {
                    Look::Done(r.clone())
                } else {
                    Look::Seen(format!("latest report still from {}", r.sent_at))
                }
            })
            .await?;
        n.say(format!(
            "reporting again: report of {} (the last before the pause was {}), agent healthy: {}",
            report.sent_at, before.sent_at, report.agent.healthy
        ));
        Ok(())
    }

    /// What the hub holds of the agent's hash-chained audit log, one line: the entry count, the
    /// highest sequence stored, and the entries by kind and outcome.
    pub async fn audit_summary(&self) -> anyhow::Result<String> {
        let audit = self
            .hub
            .admin("GET", &format!("/admin/hosts/{HOST_ID}/audit"), None)
            .await?
            .context("the hub has no audit entries for the host")?;
        let entries = audit["entries"].as_array().cloned().unwrap_or_default();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for e in &entries {
            let kind = format!(
                "{} {}",
                e["kind"].as_str().unwrap_or("?"),
                e["outcome"].as_str().unwrap_or("?")
            );
            *kinds.entry(kind).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, c)| format!("{k} x{c}")).collect();
        let lines: Vec<String> = kinds
            .chunks(4)
            .map(|c| format!("  {}", c.join(", ")))
            .collect();
        Ok(format!(
            "the hub holds {} audit entries of the agent's hash-chained log (up to seq {}):\n{}",
            entries.len(),
            audit["audit_seq"],
            lines.join("\n")
        ))
    }

    /// Publishes a desired state at the hub.
    async fn publish(&self, generation: u64, wanted: &[Wanted]) -> anyhow::Result<()> {
        let doc = scenario::desired_document(generation, wanted);
        self.hub.put_desired(HOST_ID, &doc).await?;
        Ok(())
    }

    /// The agent's latest report as the hub stored it.
    async fn report(&self) -> anyhow::Result<Option<Report>> {
        match self.hub.report(HOST_ID).await? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .context("the hub holds a report the demo cannot read"),
        }
    }

    /// Waits until `check` finds what it looks for in the latest report.
    async fn wait_report<T>(
        &self,
        what: &str,
        check: impl Fn(&Report) -> Look<T>,
    ) -> anyhow::Result<T> {
        let check = &check;
        self.wait_for(what, move |r: Report| async move { Ok(check(&r)) })
            .await
    }

    /// Waits until `look` (given each new report) answers done; fails early when the agent
    /// dies, and on timeout names the last thing seen and the end of the agent's log.
    async fn wait_for<T, F, Fut>(&self, what: &str, look: F) -> anyhow::Result<T>
    where
        F: Fn(Report) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Look<T>>>,
    {
        let look = &look;
        let result = wait_until(
            self.n,
            what,
            self.timing.step_timeout,
            self.timing.look_every,
            move || async move {
                self.agent.check_alive()?;
                match self.report().await? {
                    None => Ok(Look::Seen("no report at the hub yet".into())),
                    Some(r) => look(r).await,
                }
            },
        )
        .await;
        result.map_err(|e| {
            e.context(format!(
                "the agent's log ends with:\n{}",
                log_tail(&self.agent.log, 12)
            ))
        })
    }
}

/// The node's containers by vmid.
async fn guests(pve: &pve::Client) -> anyhow::Result<BTreeMap<u64, LxcStatus>> {
    let list = pve
        .list_lxc()
        .await
        .context("listing the simulator's guests")?;
    Ok(list
        .into_iter()
        .map(|g| (u64::from(g.vmid.get()), g))
        .collect())
}

fn vmid(v: u64) -> anyhow::Result<Vmid> {
    Ok(Vmid::new(u32::try_from(v)?)?)
}

/// `100 running, 101 stopped, …`
fn power_states(guests: &BTreeMap<u64, LxcStatus>) -> String {
    guests
        .iter()
        .map(|(v, g)| format!("{v} {}", g.status))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `guest 101 running, memory 1024 MiB, description "…"`
fn describe(w: &Wanted) -> String {
    let mut s = format!("guest {} {}", w.vmid, w.state);
    if let Some(m) = w.memory_mib {
        s.push_str(&format!(", memory {m} MiB"));
    }
    if let Some(d) = w.description {
        s.push_str(&format!(", description {d:?}"));
    }
    s
}

/// The demo host's entry in `GET /admin/alerts`.
fn host_alert(alerts: &serde_json::Value) -> Option<serde_json::Value> {
    alerts["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["host_id"] == HOST_ID)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_alert_finds_only_this_host() {
        let alerts = json!({"deadline_s": 8.0, "alerts": [
            {"host_id": "other", "kind": "missed-check-in"},
            {"host_id": HOST_ID, "kind": "missed-check-in", "silent_s": 9.5}
        ]});
        assert_eq!(host_alert(&alerts).unwrap()["silent_s"], 9.5);
        assert!(host_alert(&json!({"deadline_s": 8.0, "alerts": []})).is_none());
    }

    #[test]
    fn describe_names_what_the_hub_wants() {
        assert_eq!(
            describe(&scenario::generation_1()[1]),
            "guest 101 running, memory 1024 MiB, description \"resized by the hub (felhom demo)\""
        );
    }
}
