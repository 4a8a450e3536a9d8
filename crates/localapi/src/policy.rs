//! Backup policies and the pure "is a backup due?" decision behind `GET /backup/due`.
//!
//! The policy comes from the `backup` section of desired state v1 (docs/local-api.md proposes
//! its shape; [`BackupSection`] parses it). Times are UTC: a host's local zone is not in the
//! desired state, and the controller only needs a yes/no and a next time.
//!
//! Interval schedules (`hourly`, `daily`, `weekly`) count from the end of the last successful
//! backup, so a late backup does not cause two in a row. `HH:MM` is a daily slot: a backup is
//! due once the slot has passed and no backup succeeded since.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pve::Vmid;
use serde::{Deserialize, Serialize};

use crate::ports::{BackupState, BackupStatus};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

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

/// pve-storage-id, as `PVE::JSONSchema::parse_storage_id` checks it:
/// `^[a-z][a-z0-9\-_.]*[a-z0-9]$`, case-insensitive.
fn storage_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let b = s.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
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

/// Why a backup is or is not due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DueReason {
    /// The guest has no backup policy.
    NoPolicy,
    /// A backup is queued or running.
    InProgress,
    /// No backup ever succeeded.
    NeverBackedUp,
    /// The interval since the last success has elapsed.
    IntervalElapsed,
    /// Today's (or yesterday's) slot passed without a backup.
    SlotPassed,
    /// Not yet.
    NotYet,
}

/// The answer of `GET /backup/due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Quiesce and `POST /backup` now.
    pub due: bool,
    /// When the next backup is (or was) due; `None` without a policy.
    pub next_at: Option<SystemTime>,
    /// Why.
    pub reason: DueReason,
}

/// Whether `policy` wants a backup at `now`, given the end of the last successful backup.
pub fn is_due(policy: &BackupPolicy, last_success: Option<SystemTime>, now: SystemTime) -> Due {
    let now_s = epoch_secs(now);
    let Some(last) = last_success else {
        return Due {
            due: true,
            next_at: Some(now),
            reason: DueReason::NeverBackedUp,
        };
    };
    let last_s = epoch_secs(last);
    let (next_s, reason_if_due) = match policy.schedule {
        Schedule::Hourly => (last_s + HOUR, DueReason::IntervalElapsed),
        Schedule::Daily => (last_s + DAY, DueReason::IntervalElapsed),
        Schedule::Weekly => (last_s + 7 * DAY, DueReason::IntervalElapsed),
        Schedule::DailyAt { hour, minute } => {
            let offset = u64::from(hour) * HOUR + u64::from(minute) * 60;
            let today_slot = now_s - now_s % DAY + offset;
            let latest_slot = if today_slot <= now_s {
                today_slot
            } else {
                today_slot.saturating_sub(DAY)
            };
            if last_s < latest_slot {
                (latest_slot, DueReason::SlotPassed)
            } else {
                (latest_slot + DAY, DueReason::SlotPassed)
            }
        }
    };
    let due = now_s >= next_s;
    Due {
        due,
        next_at: Some(UNIX_EPOCH + Duration::from_secs(next_s)),
        reason: if due {
            reason_if_due
        } else {
            DueReason::NotYet
        },
    }
}

/// [`is_due`] for a guest: no policy means never due, a queued or running backup means not
/// due now (the controller would only queue a second one).
pub fn backup_due(policy: Option<&BackupPolicy>, status: &BackupStatus, now: SystemTime) -> Due {
    let Some(policy) = policy else {
        return Due {
            due: false,
            next_at: None,
            reason: DueReason::NoPolicy,
        };
    };
    let mut due = is_due(policy, status.last_success_at, now);
    if matches!(status.state, BackupState::Queued | BackupState::Running) {
        due.due = false;
        due.reason = DueReason::InProgress;
    }
    due
}

fn epoch_secs(t: SystemTime) -> u64 {
    // Before 1970 only with a broken clock; treat it as the epoch.
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn policy(schedule: &str) -> BackupPolicy {
        BackupPolicy {
            schedule: schedule.parse().unwrap(),
            target: "backup-usb".into(),
            keep_last: 7,
        }
    }

    // 2026-01-10 00:00:00 UTC
    const DAY0: u64 = 1_768_003_200;

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
    fn never_backed_up_is_due_now() {
        let now = at(DAY0 + 5);
        let due = is_due(&policy("weekly"), None, now);
        assert_eq!(
            due,
            Due {
                due: true,
                next_at: Some(now),
                reason: DueReason::NeverBackedUp
            }
        );
    }

    #[test]
    fn interval_counts_from_the_last_success() {
        let last = at(DAY0 + 100);
        let p = policy("hourly");
        let before = is_due(&p, Some(last), at(DAY0 + 100 + HOUR - 1));
        assert!(!before.due);
        assert_eq!(before.reason, DueReason::NotYet);
        assert_eq!(before.next_at, Some(at(DAY0 + 100 + HOUR)));
        let after = is_due(&p, Some(last), at(DAY0 + 100 + HOUR));
        assert!(after.due);
        assert_eq!(after.reason, DueReason::IntervalElapsed);
        assert!(!is_due(&policy("daily"), Some(last), at(DAY0 + DAY + 99)).due);
        assert!(is_due(&policy("weekly"), Some(last), at(DAY0 + 7 * DAY + 100)).due);
    }

    #[test]
    fn daily_slot_is_due_once_after_it_passes() {
        let p = policy("02:30");
        let slot = DAY0 + 2 * HOUR + 30 * 60;
        // Last success yesterday evening; before today's slot nothing is due.
        let last = at(DAY0 - 2 * HOUR);
        let early = is_due(&p, Some(last), at(slot - 1));
        assert!(!early.due, "{early:?}");
        assert_eq!(early.next_at, Some(at(slot)));
        // After the slot it is due, and stays due until a backup succeeds.
        let late = is_due(&p, Some(last), at(slot + 3 * HOUR));
        assert!(late.due);
        assert_eq!(late.reason, DueReason::SlotPassed);
        assert_eq!(late.next_at, Some(at(slot)));
        // A success after the slot satisfies it until tomorrow's slot.
        let done = is_due(&p, Some(at(slot + 60)), at(slot + 3 * HOUR));
        assert!(!done.due);
        assert_eq!(done.next_at, Some(at(slot + DAY)));
    }

    #[test]
    fn daily_slot_before_todays_slot_looks_at_yesterdays() {
        let p = policy("23:00");
        // 01:00 today; yesterday's 23:00 slot passed, last success two days ago.
        let now = at(DAY0 + HOUR);
        let due = is_due(&p, Some(at(DAY0 - 2 * DAY)), now);
        assert!(due.due);
        assert_eq!(due.next_at, Some(at(DAY0 - HOUR)));
    }

    #[test]
    fn guest_level_rules() {
        let now = at(DAY0);
        let none = backup_due(None, &BackupStatus::never(), now);
        assert_eq!(
            (none.due, none.reason, none.next_at),
            (false, DueReason::NoPolicy, None)
        );
        let mut running = BackupStatus::never();
        running.state = BackupState::Running;
        let p = policy("daily");
        let busy = backup_due(Some(&p), &running, now);
        assert_eq!((busy.due, busy.reason), (false, DueReason::InProgress));
        assert!(backup_due(Some(&p), &BackupStatus::never(), now).due);
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
        // The next time is never before the last success, and "due" agrees with next_at.
        #[test]
        fn due_agrees_with_next_at(
            sched in prop_oneof![Just("hourly".to_string()), Just("daily".to_string()),
                Just("weekly".to_string()), (0u8..24, 0u8..60).prop_map(|(h, m)| format!("{h:02}:{m:02}"))],
            last in DAY0..DAY0 + 30 * DAY,
            gap in 0u64..10 * DAY,
        ) {
            let p = policy(&sched);
            let now = at(last + gap);
            let due = is_due(&p, Some(at(last)), now);
            let next = due.next_at.unwrap();
            prop_assert_eq!(due.due, next <= now);
            if !due.due {
                prop_assert!(next > at(last));
            }
        }

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
