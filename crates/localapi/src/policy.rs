//! The pure "is a backup due?" decision behind `GET /backup/due`.
//!
//! The policy comes from the `backup` section of desired state v1, which the desired-state
//! model parses and validates with the rest of the document (`reconcile::desired::backup`).
//! Times are UTC: a host's local zone is not in the desired state, and the controller only
//! needs a yes/no and a next time.
//!
//! Interval schedules (`hourly`, `daily`, `weekly`) count from the end of the last successful
//! backup, so a late backup does not cause two in a row. `HH:MM` is a daily slot: a backup is
//! due once the slot has passed and no backup succeeded since.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use reconcile::desired::backup::{BackupPolicy, BackupSection, Schedule};
use serde::Serialize;

use crate::ports::{BackupState, BackupStatus};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

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
    }
}
