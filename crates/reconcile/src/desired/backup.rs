//! The `backup` section of desired state v1 (docs/desired-state-v1.md, docs/local-api.md):
//! `{"guests":{"101":{"schedule":"daily","target":"backup-usb","keep_last":7}}}`, parsed with
//! the rest of the document so an invalid section rejects the whole document at intake (the
//! last accepted one stays in force), like an invalid guest does. Who reads it: the local API's
//! `GET /backup/due` and `POST /backup` today, the backup scheduler later.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pve::Vmid;
use serde::{Deserialize, Serialize};

/// When backups of a guest are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One hour after the last success.
    Hourly,
    /// One day after the last success.
    Daily,
    /// Seven days after the last success.
    Weekly,
    /// Every day at this UTC time (`"02:30"`).
    DailyAt {
        /// 0..=23
        hour: u8,
        /// 0..=59
        minute: u8,
    },
}

/// A schedule string that is none of `hourly`, `daily`, `weekly`, `HH:MM`.
#[derive(Debug, thiserror::Error)]
#[error("schedule {given:?} is not hourly, daily, weekly or HH:MM (UTC)")]
pub struct BadSchedule {
    /// What was given.
    pub given: String,
}

impl FromStr for Schedule {
    type Err = BadSchedule;

    fn from_str(s: &str) -> Result<Self, BadSchedule> {
        let bad = || BadSchedule {
            given: s.to_owned(),
        };
        match s {
            "hourly" => return Ok(Schedule::Hourly),
            "daily" => return Ok(Schedule::Daily),
            "weekly" => return Ok(Schedule::Weekly),
            _ => {}
        }
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let two_digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(Schedule::DailyAt { hour, minute })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Hourly => f.write_str("hourly"),
            Schedule::Daily => f.write_str("daily"),
            Schedule::Weekly => f.write_str("weekly"),
            Schedule::DailyAt { hour, minute } => write!(f, "{hour:02}:{minute:02}"),
        }
    }
}

impl TryFrom<String> for Schedule {
    type Error = BadSchedule;
    fn try_from(s: String) -> Result<Self, BadSchedule> {
        s.parse()
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.to_string()
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One guest's backup policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// When backups are due.
    pub schedule: Schedule,
    /// PVE storage id of the vzdump target (a `vzdump-target` or `pbs-offsite` storage).
    #[serde(deserialize_with = "storage_id")]
    pub target: String,
    /// How many backups of this guest to keep on the target (vzdump `prune-backups keep-last`).
    pub keep_last: u32,
}

impl BackupPolicy {
    /// What the agent prunes this guest's backups on the target down to after each backup:
    /// the newest `keep_last`, and the newest of each of the last `keep_last` periods of the
    /// schedule (hours, days, weeks). The period half is what keeps a compromised controller
    /// from rotating pre-compromise backups out: however many backups it asks for (at most one
    /// an hour), they share their periods, and older periods stay kept for `keep_last` of them.
    /// `keep_last: 0` means keep everything (nothing is pruned).
    pub fn retention(&self) -> pve::Retention {
        let n = self.keep_last;
        let mut keep = pve::Retention {
            last: n,
            ..pve::Retention::default()
        };
        match self.schedule {
            Schedule::Hourly => keep.hourly = n,
            Schedule::Daily | Schedule::DailyAt { .. } => keep.daily = n,
            Schedule::Weekly => keep.weekly = n,
        }
        keep
    }
}

/// pve-storage-id, as `PVE::JSONSchema::parse_storage_id` checks it:
/// `^[a-z][a-z0-9\-_.]*[a-z0-9]$`, case-insensitive.
/// The one check, also used for the `storage` section's target ids ([`super::storage`]).
pub(crate) fn is_storage_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn storage_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if is_storage_id(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "target {s:?} is not a proxmox storage id"
        )))
    }
}

/// The `backup` section of desired state v1: `{"guests":{"101":{…policy…}}}`. A guest without
/// an entry has no scheduled backups (a controller may still ask for one with `POST /backup`,
/// which then needs a target: see docs/local-api.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawSection")]
pub struct BackupSection {
    /// Policy per guest.
    #[serde(serialize_with = "guests_by_string")]
    pub guests: BTreeMap<Vmid, BackupPolicy>,
}

impl BackupSection {
    /// The policy of `vmid`, if any.
    pub fn policy_for(&self, vmid: Vmid) -> Option<&BackupPolicy> {
        self.guests.get(&vmid)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    guests: BTreeMap<String, BackupPolicy>,
}

impl TryFrom<RawSection> for BackupSection {
    type Error = String;

    fn try_from(raw: RawSection) -> Result<Self, String> {
        let mut guests = BTreeMap::new();
        for (key, policy) in raw.guests {
            let vmid: Vmid = key
                .parse()
                .map_err(|_| format!("backup.guests key {key:?} is not a vmid"))?;
            guests.insert(vmid, policy);
        }
        Ok(BackupSection { guests })
    }
}

fn guests_by_string<S: serde::Serializer>(
    guests: &BTreeMap<Vmid, BackupPolicy>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(guests.iter().map(|(k, v)| (k.get().to_string(), v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schedule_parses_its_forms_and_nothing_else() {
        for ok in ["hourly", "daily", "weekly", "00:00", "02:30", "23:59"] {
            let s: Schedule = ok.parse().unwrap();
            assert_eq!(s.to_string(), ok);
        }
        for bad in [
            "", "Daily", "24:00", "12:60", "2:30", "02:3", "02:30:00", "0a:00", " 02:30", "-1:00",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retention_keeps_the_last_and_the_schedules_periods() {
        let policy = |schedule, keep_last| BackupPolicy {
            schedule,
            target: "local".into(),
            keep_last,
        };
        assert_eq!(
            policy(Schedule::Daily, 7).retention().to_property(),
            "keep-last=7,keep-daily=7"
        );
        assert_eq!(
            policy(
                Schedule::DailyAt {
                    hour: 2,
                    minute: 30
                },
                3
            )
            .retention()
            .to_property(),
            "keep-last=3,keep-daily=3"
        );
        assert_eq!(
            policy(Schedule::Hourly, 48).retention().to_property(),
            "keep-last=48,keep-hourly=48"
        );
        assert_eq!(
            policy(Schedule::Weekly, 4).retention().to_property(),
            "keep-last=4,keep-weekly=4"
        );
        assert!(policy(Schedule::Daily, 0).retention().is_empty());
    }

    #[test]
    fn section_parses_and_rejects() {
        let s: BackupSection = serde_json::from_str(
            r#"{"guests":{"101":{"schedule":"02:30","target":"backup-usb","keep_last":7}}}"#,
        )
        .unwrap();
        let p = s.policy_for(Vmid::new(101).unwrap()).unwrap();
        assert_eq!(
            p.schedule,
            Schedule::DailyAt {
                hour: 2,
                minute: 30
            }
        );
        assert!(s.policy_for(Vmid::new(102).unwrap()).is_none());
        let back = serde_json::to_string(&s).unwrap();
        assert_eq!(
            back,
            r#"{"guests":{"101":{"schedule":"02:30","target":"backup-usb","keep_last":7}}}"#
        );
        for bad in [
            r#"{"guests":{"abc":{"schedule":"daily","target":"x1","keep_last":1}}}"#,
            r#"{"guests":{"99":{"schedule":"daily","target":"x1","keep_last":1}}}"#,
            r#"{"guests":{"101":{"schedule":"daily","target":"../etc","keep_last":1}}}"#,
            r#"{"guests":{"101":{"schedule":"daily","target":"x1","keep_last":1,"extra":1}}}"#,
            r#"{"guests":{"101":{"schedule":"often","target":"x1","keep_last":1}}}"#,
            r#"{"guests":{},"default":{}}"#,
        ] {
            assert!(serde_json::from_str::<BackupSection>(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        // The schedule and backup-section parsers never panic (issue 19; the fuzz target
        // `desired` feeds the section through the daemon's parser), and what parses renders
        // and parses back unchanged.
        #[test]
        fn schedule_never_panics_and_round_trips(s in "\\PC{0,8}|[0-9:]{0,6}|hourly|daily|weekly") {
            if let Ok(sched) = s.parse::<Schedule>() {
                prop_assert_eq!(sched.to_string().parse::<Schedule>().unwrap(), sched);
            }
        }

        #[test]
        fn section_never_panics_and_round_trips(
            key in "[0-9]{1,10}|\\PC{0,6}",
            schedule in "hourly|[0-9]{2}:[0-9]{2}|\\PC{0,6}",
            target in "[a-z][a-z0-9._-]{0,8}|\\PC{0,8}",
            keep_last in any::<i64>(),
            extra in prop::option::of("[a-z]{1,6}"),
        ) {
            let mut policy = serde_json::json!({"schedule": schedule, "target": target, "keep_last": keep_last});
            if let Some(extra) = extra {
                policy[extra] = 1.into();
            }
            let doc = serde_json::json!({"guests": {key: policy}});
            if let Ok(section) = serde_json::from_value::<BackupSection>(doc) {
                let back: BackupSection = serde_json::from_value(serde_json::to_value(&section).unwrap()).unwrap();
                prop_assert_eq!(back, section);
            }
        }
    }
}
