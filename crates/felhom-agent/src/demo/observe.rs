//! What the demo reads back: the agent's report as the hub stored it (the fields the narration
//! needs; unknown fields are ignored, as the protocol asks of readers), the checks that decide
//! whether a step has happened, and the wait that polls until it has or a timeout says what was
//! last seen.

use std::future::Future;
use std::time::{Duration, Instant};

use std::ops::Deref;

use hub::{GuestReport, HostReport, OpOutcome, OpOutcomeKind, PendingSignature};
use serde::Deserialize;

use super::narrate::Narrator;
use super::scenario::Wanted;

/// Bytes per MiB (PVE's `memory` is MiB, the report's `memory_bytes` bytes).
pub const MIB: u64 = 1024 * 1024;

/// The agent's report as the hub stored it (`hub::HostReport`, docs/hub-protocol.md), with the
/// lookups the narration needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Report(pub HostReport);

impl Deref for Report {
    type Target = HostReport;

    fn deref(&self) -> &HostReport {
        &self.0
    }
}

/// The wire word of an op outcome (`done`, `failed`, `rejected`).
pub fn outcome_word(kind: OpOutcomeKind) -> &'static str {
    match kind {
        OpOutcomeKind::Done => "done",
        OpOutcomeKind::Failed => "failed",
        OpOutcomeKind::Rejected => "rejected",
    }
}

impl Report {
    /// The guest `vmid`, if the node has it.
    pub fn guest(&self, vmid: u64) -> Option<&GuestReport> {
        self.guests.iter().find(|g| g.vmid == vmid)
    }

    /// The held step for `vmid`, if any.
    pub fn pending(&self, vmid: u64) -> Option<&PendingSignature> {
        self.pending_signature.iter().find(|p| p.vmid == Some(vmid))
    }

    /// The outcome of `op_id`, once reported.
    pub fn outcome(&self, op_id: &str) -> Option<&OpOutcome> {
        self.op_outcomes.iter().find(|o| o.op_id == op_id)
    }

    /// What still differs between the report and `wanted` (power state, memory), `None` when
    /// the guest is as desired. The description is not in reports; the demo reads it from the
    /// simulator.
    pub fn mismatch(&self, wanted: &Wanted) -> Option<String> {
        let Some(guest) = self.guest(wanted.vmid) else {
            return Some(format!("guest {} is absent", wanted.vmid));
        };
        if guest.status != wanted.state {
            return Some(format!(
                "guest {} is {}, wanted {}",
                wanted.vmid, guest.status, wanted.state
            ));
        }
        if let Some(mib) = wanted.memory_mib {
            if guest.spec.memory_bytes != Some(mib * MIB) {
                let has = guest
                    .spec
                    .memory_bytes
                    .map_or("unknown".to_owned(), |b| format!("{} MiB", b / MIB));
                return Some(format!(
                    "guest {} has memory {has}, wanted {mib} MiB",
                    wanted.vmid
                ));
            }
        }
        if !guest.managed {
            return Some(format!("guest {} is not managed yet", wanted.vmid));
        }
        None
    }

    /// One line of what the report says about `vmids`: generations, power states, held steps
    /// and errors. Shown while waiting, and in a timeout's message.
    pub fn summary(&self, vmids: &[u64]) -> String {
        let generation = |g: Option<u64>| g.map_or("-".to_owned(), |g| g.to_string());
        let mut parts = vec![format!(
            "generation received {}, applied {}",
            generation(self.desired.received_generation),
            generation(self.desired.applied_generation)
        )];
        let guests: Vec<String> = vmids
            .iter()
            .map(|&v| match self.guest(v) {
                Some(g) => format!("{v} {}", g.status),
                None => format!("{v} absent"),
            })
            .collect();
        parts.push(format!("guests {}", guests.join(", ")));
        if !self.pending_signature.is_empty() {
            let held: Vec<String> = self
                .pending_signature
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p.action,
                        p.vmid.map_or("-".into(), |v| v.to_string())
                    )
                })
                .collect();
            parts.push(format!("held {}", held.join(", ")));
        }
        for e in &self.reconcile_errors {
            parts.push(format!(
                "error on {} ({}x): {}",
                e.vmid, e.attempts, e.error
            ));
        }
        if let Some(err) = &self.agent.last_error {
            parts.push(format!("hub exchange error: {err}"));
        }
        parts.join("; ")
    }
}

/// What one look found.
pub enum Look<T> {
    /// The awaited thing happened.
    Done(T),
    /// Not yet; this is what was seen (narrated when it changes).
    Seen(String),
}

/// Looks every `every` until `look` answers [`Look::Done`], narrating each new [`Look::Seen`]
/// line; after `timeout` fails with `what` and the last thing seen. An error from `look` ends
/// the wait at once.
pub async fn wait_until<T, F, Fut>(
    n: &Narrator,
    what: &str,
    timeout: Duration,
    every: Duration,
    mut look: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Look<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match look().await? {
            Look::Done(t) => return Ok(t),
            Look::Seen(seen) => {
                if seen != last {
                    n.say(format!("  … {seen}"));
                    last = seen;
                }
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {}s waiting for {what}; last seen: {}",
                timeout.as_secs(),
                if last.is_empty() { "nothing" } else { &last }
            );
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as the agent's own types serialize it, through JSON as the hub stores it.
    fn report() -> Report {
        let mut r = HostReport::empty("h", "0.2.0");
        r.sent_at = "2026-01-01T00:00:00Z".into();
        r.desired.received_generation = Some(2);
        r.desired.applied_generation = Some(1);
        r.guests.push(GuestReport {
            vmid: 100,
            kind: "lxc".into(),
            name: Some("ct100".into()),
            status: "running".into(),
            managed: true,
            lock: None,
            template: false,
            spec: hub::GuestSpec {
                cores: Some(1.0),
                memory_bytes: Some(512 * MIB),
                disk_bytes: None,
            },
            usage: hub::GuestUsage::default(),
        });
        r.pending_signature.push(PendingSignature {
            vmid: Some(102),
            action: "guest.destroy".into(),
            step: "destroy 102".into(),
            generation: Some(2),
            since: "2026-01-01T00:00:00Z".into(),
        });
        r.op_outcomes.push(OpOutcome {
            op_id: "op-1".into(),
            outcome: OpOutcomeKind::Done,
            reason: None,
            at: "2026-01-01T00:00:01Z".into(),
        });
        let mut json = serde_json::to_value(&r).unwrap();
        // Later v1 agents may add fields; readers ignore them.
        json["future_field"] = serde_json::json!({"ignored": true});
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_real_report_shape_parses_and_unknown_fields_are_ignored() {
        let r = report();
        assert_eq!(r.guest(100).map(|g| g.status.as_str()), Some("running"));
        assert!(r.guest(101).is_none());
        assert_eq!(
            r.pending(102).map(|p| p.action.as_str()),
            Some("guest.destroy")
        );
        assert_eq!(
            r.outcome("op-1").map(|o| outcome_word(o.outcome)),
            Some("done")
        );
    }

    #[test]
    fn summary_names_generations_guests_and_held_steps() {
        assert_eq!(
            report().summary(&[100, 102]),
            "generation received 2, applied 1; guests 100 running, 102 absent; held guest.destroy 102"
        );
    }

    #[test]
    fn mismatch_names_power_state_memory_and_adoption() {
        let r = report();
        let mut wanted = Wanted {
            vmid: 100,
            state: "running",
            memory_mib: Some(512),
            description: None,
        };
        assert_eq!(r.mismatch(&wanted), None);
        wanted.memory_mib = Some(1024);
        assert_eq!(
            r.mismatch(&wanted).as_deref(),
            Some("guest 100 has memory 512 MiB, wanted 1024 MiB")
        );
        wanted.state = "stopped";
        assert_eq!(
            r.mismatch(&wanted).as_deref(),
            Some("guest 100 is running, wanted stopped")
        );
        wanted.vmid = 101;
        assert_eq!(r.mismatch(&wanted).as_deref(), Some("guest 101 is absent"));
        let mut unmanaged = r.clone();
        unmanaged.0.guests[0].managed = false;
        let wanted = Wanted {
            vmid: 100,
            state: "running",
            memory_mib: None,
            description: None,
        };
        assert_eq!(
            unmanaged.mismatch(&wanted).as_deref(),
            Some("guest 100 is not managed yet")
        );
    }

    #[tokio::test]
    async fn wait_until_times_out_naming_what_was_last_seen() {
        let n = Narrator::new();
        let err = wait_until::<(), _, _>(
            &n,
            "the thing",
            Duration::from_millis(30),
            Duration::from_millis(10),
            || async { Ok(Look::Seen("still nothing".into())) },
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 0s waiting for the thing; last seen: still nothing"
        );
    }
}
