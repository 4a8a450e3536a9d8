//! Plan: desired state against actual state → per-guest ops (sequences of steps). Pure: no
//! I/O, `now`-free; the engine decides what runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pve::SnapshotName;
use serde_json::json;

use crate::actual::Actual;
use crate::desired::{DesiredState, PowerState};
use crate::normalize;
use crate::ports::{Condition, GuestConfig};

/// One step of an op on one guest: one mutating Proxmox call and, for task calls, the wait
/// for its task. Every guest mutation of the agent is one of these, run by [`crate::Executor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start the guest.
    Start,
    /// Clean shutdown (hard stop after PVE's timeout).
    Shutdown,
    /// Hard stop.
    Stop,
    /// Set allowlisted options (canonical values), conditional on `digest`.
    SetConfig {
        /// Keys and values to set.
        changes: BTreeMap<String, String>,
        /// The config digest the change was planned against.
        digest: Option<String>,
    },
    /// Destroy the guest (needs a [`crate::DestroyAuthority`]).
    Destroy,
    /// Take a snapshot.
    Snapshot {
        /// Its name.
        name: SnapshotName,
        /// Its description (who took it).
        description: String,
    },
    /// Delete a snapshot.
    DeleteSnapshot {
        /// Its name.
        name: SnapshotName,
    },
    /// Roll back to a snapshot; a guest that ran before is started again (the executor reads
    /// its state in its turn, just before the intent).
    Rollback {
        /// The snapshot.
        name: SnapshotName,
    },
    /// Back the guest up with vzdump.
    Vzdump {
        /// The PVE storage id of the target.
        storage: String,
    },
    /// Remove the guest's backups on `storage` that `keep` does not cover (the agent's own
    /// retention; backups themselves never prune, DESIGN.md §4.8).
    Prune {
        /// The PVE storage id.
        storage: String,
        /// What to keep.
        keep: pve::Retention,
    },
    /// Write the agent's identity line into the guest's description (a config PUT conditional
    /// on the digest of the config read just before; DESIGN.md §4.6). The text of the
    /// description is kept.
    MarkIdentity {
        /// The identity ([`crate::normalize::new_identity`]).
        identity: String,
    },
}

/// How long a snapshot, rollback or delete may take before the executor stops waiting.
const SNAPSHOT_TASK_LIMIT: Duration = Duration::from_secs(30 * 60);
/// How long a vzdump may take (a large guest to a slow target takes hours).
const BACKUP_TASK_LIMIT: Duration = Duration::from_secs(12 * 3600);
/// How long any other task may take (a destroy of a large volume or a 60 s shutdown fit).
const TASK_LIMIT: Duration = Duration::from_secs(15 * 60);

impl Step {
    /// The journal word.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::Shutdown => "shutdown",
            Step::Stop => "stop",
            Step::SetConfig { .. } => "set_config",
            Step::Destroy => "destroy",
            Step::Snapshot { .. } => "snapshot",
            Step::DeleteSnapshot { .. } => "delete_snapshot",
            Step::Rollback { .. } => "rollback",
            Step::Vzdump { .. } => "vzdump",
            Step::Prune { .. } => "prune",
            Step::MarkIdentity { .. } => "mark_identity",
        }
    }

    /// PVE's task type (the UPID's type field), `None` for the synchronous config PUT.
    pub fn task_type(&self) -> Option<&'static str> {
        Step::task_type_of(self.kind())
    }

    /// The task type of a journal word (PVE's names: pve-container's `vzstart`, `vzsnapshot`,
    /// `vzrollback`, `vzdelsnapshot`; pve-manager's `vzdump`, whose UPID id is the vmid when
    /// one guest is dumped; pve-storage's `prunebackups`, whose id is `<vmid>@<storage>`).
    pub fn task_type_of(kind: &str) -> Option<&'static str> {
        match kind {
            "start" => Some("vzstart"),
            "shutdown" => Some("vzshutdown"),
            "stop" => Some("vzstop"),
            "destroy" => Some("vzdestroy"),
            "snapshot" => Some("vzsnapshot"),
            "delete_snapshot" => Some("vzdelsnapshot"),
            "rollback" => Some("vzrollback"),
            "vzdump" => Some("vzdump"),
            "prune" => Some("prunebackups"),
            _ => None,
        }
    }

    /// How long the executor (and recovery) waits for the task of a step of this kind.
    pub fn wait_limit_of(kind: &str) -> Duration {
        match kind {
            "snapshot" | "delete_snapshot" | "rollback" => SNAPSHOT_TASK_LIMIT,
            "vzdump" => BACKUP_TASK_LIMIT,
            _ => TASK_LIMIT,
        }
    }

    /// Parameters as JSON, for the journal.
    pub fn params_json(&self) -> String {
        match self {
            Step::SetConfig { changes, digest } => {
                json!({ "changes": changes, "digest": digest }).to_string()
            }
            Step::Snapshot { name, .. }
            | Step::DeleteSnapshot { name }
            | Step::Rollback { name } => json!({ "name": name.as_str() }).to_string(),
            Step::Vzdump { storage } => json!({ "storage": storage }).to_string(),
            Step::Prune { storage, keep } => {
                json!({ "storage": storage, "keep": keep.to_property() }).to_string()
            }
            Step::MarkIdentity { identity } => json!({ "identity": identity }).to_string(),
            _ => "{}".to_owned(),
        }
    }

    /// A short description, e.g. `set_config hostname,memory` or `snapshot pre-deploy`.
    pub fn describe(&self) -> String {
        match self {
            Step::SetConfig { changes, .. } => format!(
                "set_config {}",
                changes.keys().cloned().collect::<Vec<_>>().join(",")
            ),
            Step::Snapshot { name, .. }
            | Step::DeleteSnapshot { name }
            | Step::Rollback { name } => format!("{} {name}", self.kind()),
            Step::Vzdump { storage } => format!("vzdump to {storage}"),
            Step::Prune { storage, keep } => format!("prune on {storage} ({})", keep.to_property()),
            other => other.kind().to_owned(),
        }
    }
}

/// The steps planned for one guest, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlan {
    /// The guest.
    pub vmid: u32,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Why, for humans.
    pub reason: String,
}

/// Something the plan reports but does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// On the node, never managed: reported, never touched.
    Unmanaged {
        /// Guest id.
        vmid: u32,
    },
    /// In the desired state and on the node, but not managed: never touched until an operator
    /// signs its adoption (`guest.adopt`, DESIGN.md §4.6).
    NeedsAdoption {
        /// Guest id.
        vmid: u32,
    },
    /// In the desired state but not on the node (provisioning arrives later).
    Missing {
        /// Guest id.
        vmid: u32,
    },
    /// Locked (backup, snapshot, …): planned again when the lock is gone.
    Locked {
        /// Guest id.
        vmid: u32,
        /// The lock.
        lock: String,
    },
    /// Neither running nor stopped (e.g. a transitional state).
    OddStatus {
        /// Guest id.
        vmid: u32,
        /// The status.
        status: String,
    },
    /// The config could not be read this cycle; config changes wait.
    ConfigUnknown {
        /// Guest id.
        vmid: u32,
    },
}

/// The plan of one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ops, one per guest that needs something.
    pub ops: Vec<GuestPlan>,
    /// Reported conditions.
    pub notes: Vec<Note>,
}

/// Plans `desired` against `actual`. `configs` holds the (normalized) configs known for
/// guests; `managed` the guests this agent manages (journal provenance).
pub fn plan(
    desired: Option<&DesiredState>,
    actual: &Actual,
    configs: &dyn Fn(u32) -> Option<GuestConfig>,
    managed: &BTreeSet<u32>,
) -> Plan {
    let mut out = Plan::default();
    let empty = BTreeMap::new();
    let wanted = desired.map_or(&empty, |d| &d.guests);
    for (vmid, guest) in &actual.guests {
        let vmid = *vmid;
        let Some(want) = wanted.get(&vmid) else {
            if managed.contains(&vmid) {
                if desired.is_some() {
                    out.ops.push(GuestPlan {
                        vmid,
                        steps: vec![Step::Destroy],
                        reason: "managed guest absent from the desired state".to_owned(),
                    });
                }
            } else {
                out.notes.push(Note::Unmanaged { vmid });
            }
            continue;
        };
        if !managed.contains(&vmid) {
            // Naming a guest does not make it the agent's (DESIGN.md §4.6).
            out.notes.push(Note::NeedsAdoption { vmid });
            continue;
        }
        if let Some(lock) = &guest.lock {
            out.notes.push(Note::Locked {
                vmid,
                lock: lock.clone(),
            });
            continue;
        }
        let running = match &guest.status {
            Condition::Running => true,
            Condition::Stopped => false,
            Condition::Other(other) => {
                out.notes.push(Note::OddStatus {
                    vmid,
                    status: other.clone(),
                });
                continue;
            }
        };
        let mut changes = BTreeMap::new();
        let mut digest = None;
        if !want.config.is_empty() {
            match configs(vmid) {
                Some(cfg) => {
                    for (key, value) in &want.config {
                        if normalize::differs(key, value, cfg.values.get(key).map(String::as_str)) {
                            changes.insert(key.clone(), value.clone());
                        }
                    }
                    digest = cfg.digest.clone();
                }
                None => out.notes.push(Note::ConfigUnknown { vmid }),
            }
        }
        let set = (!changes.is_empty()).then(|| Step::SetConfig {
            changes,
            digest: digest.clone(),
        });
        let mut steps = Vec::new();
        let mut why = Vec::new();
        match (want.state, running) {
            (PowerState::Running, false) => {
                // Config first: the guest starts with what it should have.
                steps.extend(set);
                steps.push(Step::Start);
                why.push("should run");
            }
            (PowerState::Stopped, true) => {
                // Shutdown first: stopping is what was asked for; config then applies cold.
                steps.push(Step::Shutdown);
                steps.extend(set);
                why.push("should be stopped");
            }
            _ => steps.extend(set),
        }
        if steps.iter().any(|s| matches!(s, Step::SetConfig { .. })) {
            why.push("config differs");
        }
        if !steps.is_empty() {
            out.ops.push(GuestPlan {
                vmid,
                steps,
                reason: why.join(", "),
            });
        }
    }
    for vmid in wanted.keys() {
        if !actual.guests.contains_key(vmid) {
            out.notes.push(Note::Missing { vmid: *vmid });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::GuestState;
    use proptest::prelude::*;
    use serde_json::json;

    fn desired(v: serde_json::Value) -> DesiredState {
        crate::desired::parse(v.to_string().as_bytes()).unwrap()
    }

    fn guest(vmid: u32, status: &str) -> GuestState {
        GuestState {
            vmid,
            status: Condition::from_pve(status),
            lock: None,
            name: None,
        }
    }

    fn actual(guests: &[GuestState]) -> Actual {
        Actual {
            guests: guests.iter().map(|g| (g.vmid, g.clone())).collect(),
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> GuestConfig {
        GuestConfig {
            digest: Some("dig".into()),
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), normalize::canonical_actual(k, v)))
                .collect(),
            identity: None,
        }
    }

    #[test]
    fn multi_step_and_benign_plans() {
        let d = desired(json!({"v":1,"generation":2,"guests":[
            {"vmid":100,"state":"stopped","config":{"hostname":"new"}},
            {"vmid":101,"state":"running","config":{"memory":1024}},
            {"vmid":102,"state":"running"},
            {"vmid":105,"state":"stopped","config":{"memory":16}},
            {"vmid":109,"state":"running"}]}));
        let a = actual(&[
            guest(105, "running"),
            guest(100, "running"),
            guest(101, "stopped"),
            guest(102, "running"),
            guest(103, "running"),
            guest(104, "stopped"),
        ]);
        let managed: BTreeSet<u32> = [100, 101, 102, 104, 109].into();
        let configs = |v: u32| match v {
            100 => Some(cfg(&[("hostname", "old")])),
            101 => Some(cfg(&[("memory", "512")])),
            _ => None,
        };
        let p = plan(Some(&d), &a, &configs, &managed);
        let steps: BTreeMap<u32, Vec<String>> = p
            .ops
            .iter()
            .map(|o| (o.vmid, o.steps.iter().map(Step::describe).collect()))
            .collect();
        assert_eq!(steps[&100], vec!["shutdown", "set_config hostname"]);
        assert_eq!(steps[&101], vec!["set_config memory", "start"]);
        assert!(!steps.contains_key(&102));
        assert_eq!(steps[&104], vec!["destroy"]);
        assert!(p.notes.contains(&Note::Unmanaged { vmid: 103 }));
        assert!(p.notes.contains(&Note::Missing { vmid: 109 }));
        // Named, on the node, not managed: not touched, waits for a signed adoption.
        assert!(!steps.contains_key(&105));
        assert!(p.notes.contains(&Note::NeedsAdoption { vmid: 105 }));
        // Set-config is conditional on the digest it was planned against.
        assert!(
            matches!(&p.ops[0].steps[1], Step::SetConfig { digest: Some(d), .. } if d == "dig")
        );
    }

    #[test]
    fn locked_guests_wait_and_unknown_configs_are_reported() {
        let d = desired(json!({"v":1,"generation":1,"guests":[
            {"vmid":100,"state":"stopped"},{"vmid":101,"state":"running","config":{"cores":2}}]}));
        let mut g = guest(100, "running");
        g.lock = Some("backup".into());
        let a = actual(&[g, guest(101, "running")]);
        let p = plan(Some(&d), &a, &|_| None, &[100, 101].into());
        assert!(p.ops.is_empty());
        assert!(p.notes.contains(&Note::Locked {
            vmid: 100,
            lock: "backup".into()
        }));
        assert!(p.notes.contains(&Note::ConfigUnknown { vmid: 101 }));
    }

    proptest! {
        /// A guest whose actual config is the desired one re-encoded (PVE's spellings, its
        /// property order, its hwaddr) yields no step.
        #[test]
        fn a_config_compared_to_itself_yields_no_step(
            mem in 16u32..65536, cores in 1u32..16, onboot in any::<bool>(),
            desc in "[a-z]{0,10}", bridge in "vmbr[0-9]", running in any::<bool>(),
            mac in "[0-9A-F]{2}(:[0-9A-F]{2}){5}",
        ) {
            let d = desired(json!({"v":1,"generation":1,"guests":[{"vmid":100,
                "state": if running { "running" } else { "stopped" },
                "config":{"memory":mem,"cores":cores.to_string(),"onboot":onboot,"description":desc,
                          "net0":format!("name=eth0,bridge={bridge},ip=dhcp,firewall=1")}}]}));
            let a = actual(&[guest(100, if running { "running" } else { "stopped" })]);
            let mem_s = mem.to_string();
            let cores_s = cores.to_string();
            let desc_nl = format!("{desc}\n");
            let net = format!("ip=dhcp,type=veth,hwaddr={mac},firewall=1,bridge={bridge},name=eth0");
            let c = cfg(&[("memory", &mem_s), ("cores", &cores_s),
                ("onboot", if onboot { "1" } else { "0" }), ("description", &desc_nl), ("net0", &net)]);
            let p = plan(Some(&d), &a, &|_| Some(c.clone()), &[100].into());
            prop_assert!(p.ops.is_empty(), "{:?}", p.ops);
        }
    }
}
