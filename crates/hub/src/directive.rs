//! The down message: `GET /api/v1/hosts/{host_id}/desired` answers with a [`Directive`] —
//! the desired state (opaque here; the reconcile crate owns its model), the queued signed ops
//! (wire form, opaque here; `authz` verifies them), the hub's polling config and its audit
//! acknowledgement.
//!
//! [`Directive::parse`] is the only way in from the network: it checks what this crate can
//! check without knowing the models (version, shapes, the generation inside the desired state
//! equal to the one outside, config bounds), so a garbled answer never reaches the engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::Ack;
use crate::PROTOCOL_VERSION;

/// Shortest poll interval the agent accepts from the hub.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Longest poll interval the agent accepts from the hub.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// One answer of the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directive {
    /// Protocol version, always 1.
    pub v: u32,
    /// Generation of `desired` (0 when there is none).
    pub generation: u64,
    /// Desired state v1 (DESIGN §4.2a), or `null` when the hub has none for this host.
    pub desired: Option<serde_json::Value>,
    /// Signed ops in wire form (`{"payload","signature"}`), each queued until its outcome is
    /// reported. The same op comes again on every poll until then: consumers dedupe by op id.
    pub ops: Vec<serde_json::Value>,
    /// Polling configuration.
    pub config: HubDirectedConfig,
    /// Audit acknowledgement as of this answer.
    pub ack: Ack,
}

/// Configuration the hub sets for this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubDirectedConfig {
    /// Seconds between polls (clamped to 5..=3600).
    pub poll_interval_s: u64,
    /// Up to this many seconds of random delay added to each poll.
    pub jitter_s: u64,
    /// When self-updates may run; `null` = any time. Consumed by the self-update capability.
    pub update_window: Option<UpdateWindow>,
}

/// A daily maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateWindow {
    /// Start, `HH:MM` in UTC.
    pub start: String,
    /// Length, minutes (1..=1440).
    pub duration_min: u32,
}

impl Default for HubDirectedConfig {
    fn default() -> Self {
        HubDirectedConfig {
            poll_interval_s: 30,
            jitter_s: 5,
            update_window: None,
        }
    }
}

impl HubDirectedConfig {
    /// The poll interval, clamped to [`MIN_POLL_INTERVAL`]..=[`MAX_POLL_INTERVAL`].
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_s).clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
    }

    /// The jitter, at most the poll interval.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs(self.jitter_s).min(self.poll_interval())
    }
}

impl Directive {
    /// Parses and checks a directive. The error text says what was wrong, for the log and
    /// the report; the caller keeps its last good directive.
    pub fn parse(body: &[u8]) -> Result<Directive, DirectiveProblem> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| DirectiveProblem::Garbage(e.to_string()))?;
        let v = value
            .get("v")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| DirectiveProblem::Garbage("no protocol version \"v\"".into()))?;
        if v != u64::from(PROTOCOL_VERSION) {
            return Err(DirectiveProblem::Version(v));
        }
        let d: Directive =
            serde_json::from_value(value).map_err(|e| DirectiveProblem::Garbage(e.to_string()))?;
        d.check().map_err(DirectiveProblem::Garbage)?;
        Ok(d)
    }

    fn check(&self) -> Result<(), String> {
        match &self.desired {
            None if self.generation != 0 => {
                return Err(format!(
                    "generation {} without a desired state",
                    self.generation
                ))
            }
            None => {}
            Some(doc) => {
                if !doc.is_object() {
                    return Err("desired state is not a JSON object".into());
                }
                let inner = doc.get("generation").and_then(serde_json::Value::as_u64);
                if inner != Some(self.generation) {
                    return Err(format!(
                        "desired state carries generation {inner:?}, the envelope says {}",
                        self.generation
                    ));
                }
            }
        }
        if let Some(i) = self.ops.iter().position(|op| !op.is_object()) {
            return Err(format!("signed op {i} is not a JSON object"));
        }
        if let Some(w) = &self.config.update_window {
            if !valid_hhmm(&w.start) || !(1..=1440).contains(&w.duration_min) {
                return Err(format!(
                    "update window {:?} for {} min is not HH:MM for 1..=1440 min",
                    w.start, w.duration_min
                ));
            }
        }
        Ok(())
    }
}

/// Why a directive was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveProblem {
    /// Not the v1 shape.
    Garbage(String),
    /// Another protocol version.
    Version(u64),
}

fn valid_hhmm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && s[..2]
            .parse::<u8>()
            .is_ok_and(|h| h < 24 && b[0].is_ascii_digit())
        && s[3..]
            .parse::<u8>()
            .is_ok_and(|m| m < 60 && b[3].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_body() -> serde_json::Value {
        serde_json::json!({
            "v": 1, "generation": 3,
            "desired": {"v": 1, "generation": 3, "guests": []},
            "ops": [{"payload": "e30=", "signature": "x"}],
            "config": {"poll_interval_s": 30, "jitter_s": 5, "update_window": {"start": "03:30", "duration_min": 60}},
            "ack": {"audit_seq": 7}
        })
    }

    #[test]
    fn parses_a_good_directive() {
        let d = Directive::parse(ok_body().to_string().as_bytes()).unwrap();
        assert_eq!(d.generation, 3);
        assert_eq!(d.ack.audit_seq, 7);
        assert_eq!(d.ops.len(), 1);
    }

    #[test]
    fn refuses_what_it_can_check() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("mismatch", Box::new(|b| b["generation"] = 4.into())),
            ("not object", Box::new(|b| b["desired"] = "x".into())),
            (
                "null with gen",
                Box::new(|b| b["desired"] = serde_json::Value::Null),
            ),
            ("op", Box::new(|b| b["ops"] = serde_json::json!(["x"]))),
            (
                "window",
                Box::new(|b| b["config"]["update_window"]["start"] = "25:00".into()),
            ),
            (
                "window len",
                Box::new(|b| b["config"]["update_window"]["duration_min"] = 0.into()),
            ),
            (
                "no config",
                Box::new(|b| {
                    b.as_object_mut().unwrap().remove("config");
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut b = ok_body();
            mutate(&mut b);
            let err = Directive::parse(b.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(err, DirectiveProblem::Garbage(_)),
                "{name}: {err:?}"
            );
        }
        assert_eq!(
            Directive::parse(b"{\"v\":2}").unwrap_err(),
            DirectiveProblem::Version(2)
        );
        assert!(matches!(
            Directive::parse(b"<html>").unwrap_err(),
            DirectiveProblem::Garbage(_)
        ));
    }

    /// Fuzz target `hub_directive` (2026-12-03): a 64-digit number inside `desired` parsed to
    /// one f64, serialized, and parsed back to another, so a directive was not equal to its
    /// own re-serialization. Fixed by serde_json's `float_roundtrip` (workspace Cargo.toml).
    #[test]
    fn regression_long_float_survives_a_round_trip() {
        let mut body = ok_body();
        let long: serde_json::Value = serde_json::from_str(
            "1666666646666666666666666666666666666666666666666666666666666666",
        )
        .unwrap();
        body["desired"]["v"] = long;
        let d = Directive::parse(body.to_string().as_bytes()).unwrap();
        let again = Directive::parse(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(again, d);
        let text = r#"{"v":1,"generation":3,"desired":{"v":1666666646666666666666666666666666666666666666666666666666666666,"generation":3,"guests":[]},"ops":[],"config":{"poll_interval_s":30,"jitter_s":5,"update_window":null},"ack":{"audit_seq":7}}"#;
        let d = Directive::parse(text.as_bytes()).unwrap();
        let again = Directive::parse(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn poll_interval_is_clamped() {
        let mut c = HubDirectedConfig {
            poll_interval_s: 0,
            jitter_s: 100,
            update_window: None,
        };
        assert_eq!(c.poll_interval(), MIN_POLL_INTERVAL);
        assert_eq!(c.jitter(), MIN_POLL_INTERVAL);
        c.poll_interval_s = 1_000_000;
        assert_eq!(c.poll_interval(), MAX_POLL_INTERVAL);
    }

    #[test]
    fn hhmm() {
        assert!(valid_hhmm("00:00") && valid_hhmm("23:59"));
        for bad in ["24:00", "1:00", "12:60", "+1:00", "12-00", "ab:cd"] {
            assert!(!valid_hhmm(bad), "{bad}");
        }
    }
}
