//! `GET` and `DELETE /nodes/{node}/storage/{storage}/prunebackups` (pve-storage
//! `API2/Storage/PruneBackups.pm`): a synchronous dry run that marks each backup `keep`,
//! `remove` or `protected`, and a `prunebackups` task that removes the `remove` ones.
//!
//! The marking follows pve-storage's `prune_mark_backup_group` (`Storage.pm`), as summarised
//! in `reference/storage-backup-notes.md` §2.8: backups sorted newest first; for each option in
//! the order last, hourly, daily, weekly (ISO week), monthly, yearly with count N, walk the
//! backups not yet marked and keep the newest of each period not already covered by an earlier
//! option, until N new periods are kept; the others of a kept period are marked remove; whatever
//! is still unmarked at the end is removed. Protected backups are never removed. Periods are
//! computed in UTC (PVE uses the node's local time; the simulator's clock is UTC throughout).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::envelope::{ApiError, Reply};
use crate::server::{check_node, Call};
use crate::state::State;
use crate::tasks::Work;
use crate::vzdump::civil;

/// The options, in the order PVE applies them.
const OPTIONS: [&str; 6] = [
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
];

/// Parsed `prune-backups`: the count of each option in [`OPTIONS`] order; `None` = keep all.
/// The text is checked by the schema crate's registered `prune-backups` format (the same check
/// request parameters pass), so its errors are PVE's.
fn parse(text: &str) -> Result<Option<[u64; 6]>, ApiError> {
    let fields = pve_schema::parse_property_string(&json!("prune-backups"), text)
        .map_err(|e| ApiError::param("prune-backups", format!("invalid format - {e}")))?;
    let keep_all = fields.get("keep-all").map(String::as_str) == Some("1");
    let mut counts = [0u64; 6];
    for (slot, option) in OPTIONS.iter().enumerate() {
        counts[slot] = fields
            .get(*option)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    Ok((!keep_all && counts.iter().any(|&n| n > 0)).then_some(counts))
}

/// The period of `ctime` for option `slot` of [`OPTIONS`].
fn period(slot: usize, ctime: i64) -> String {
    let (y, mo, d, h, _, _) = civil(ctime);
    match slot {
        0 => ctime.to_string(),
        1 => format!("{y}/{mo:02}/{d:02}/{h:02}"),
        2 => format!("{y}/{mo:02}/{d:02}"),
        3 => {
            let (wy, w) = iso_week(ctime);
            format!("{wy}/{w:02}")
        }
        4 => format!("{y}/{mo:02}"),
        _ => format!("{y}"),
    }
}

/// ISO 8601 week-year and week of `epoch` (UTC): the week of a day is the week of its
/// Thursday.
fn iso_week(epoch: i64) -> (i64, i64) {
    let days = epoch.div_euclid(86_400);
    // 1970-01-01 was a Thursday: Monday = 0.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (year, month, day, ..) = civil(thursday * 86_400);
    let ordinal = day_of_year(year, month, day);
    (year, (ordinal - 1) / 7 + 1)
}

fn day_of_year(year: i64, month: u32, day: u32) -> i64 {
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let extra = i64::from(leap && month > 2);
    BEFORE[(month as usize).saturating_sub(1).min(11)] + extra + i64::from(day)
}

/// One backup being marked.
#[derive(Debug, Clone)]
struct Entry {
    volid: String,
    ctime: i64,
    vmid: u32,
    mark: Option<&'static str>,
}

/// Marks `entries` (any order) by `counts`; returns them newest first.
fn mark(mut entries: Vec<Entry>, counts: &[u64; 6]) -> Vec<Entry> {
    entries.sort_by(|a, b| b.ctime.cmp(&a.ctime).then(b.volid.cmp(&a.volid)));
    for (slot, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let covered: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.mark == Some("keep"))
            .map(|e| period(slot, e.ctime))
            .collect();
        let mut kept = BTreeSet::new();
        for e in entries.iter_mut().filter(|e| e.mark.is_none()) {
            let p = period(slot, e.ctime);
            if covered.contains(&p) {
                continue;
            }
            if kept.contains(&p) {
                e.mark = Some("remove");
            } else if (kept.len() as u64) < count {
                kept.insert(p);
                e.mark = Some("keep");
            } else {
                break;
            }
        }
    }
    for e in &mut entries {
        e.mark.get_or_insert("remove");
    }
    entries
}

/// The marked backups of `vmid` (or all guests) on `storage`.
fn marked(st: &State, storage: &str, vmid: Option<u32>, counts: &[u64; 6]) -> Vec<Entry> {
    let prefix = format!("{storage}:");
    let mut groups: std::collections::BTreeMap<u32, Vec<Entry>> = Default::default();
    let mut protected = Vec::new();
    for (volid, v) in st.volumes.iter().filter(|(id, _)| id.starts_with(&prefix)) {
        let Some(owner) = v.vmid.filter(|_| v.content == "backup") else {
            continue;
        };
        if vmid.is_some_and(|want| want != owner) || v.subtype.as_deref() != Some("lxc") {
            continue;
        }
        let entry = Entry {
            volid: volid.clone(),
            ctime: v.ctime,
            vmid: owner,
            mark: None,
        };
        if v.protected {
            protected.push(Entry {
                mark: Some("protected"),
                ..entry
            });
        } else {
            groups.entry(owner).or_default().push(entry);
        }
    }
    let mut out: Vec<Entry> = groups
        .into_values()
        .flat_map(|group| mark(group, counts))
        .collect();
    out.extend(protected);
    out
}

/// The parameters both methods take: storage, retention (the request's, else the
/// storage's), vmid. Checks `type` is lxc or absent (the simulator has no QEMU guests).
fn request(call: &Call, st: &State) -> Result<(String, [u64; 6], Option<u32>), ApiError> {
    let id = call.str("storage").unwrap_or_default();
    let s = st
        .storages
        .get(&id)
        .ok_or_else(|| ApiError::Fail(format!("storage '{id}' does not exist\n")))?;
    // Listing the backups activates the storage (`prune_backups` lists its volumes).
    crate::activation::activate(st, &id).map_err(|e| ApiError::Fail(format!("{e}\n")))?;
    let text = match call.str("prune-backups") {
        Some(t) => t,
        None => s.props.get("prune-backups").cloned().ok_or_else(|| {
            ApiError::Fail(format!(
                "no prune-backups options configured for storage '{id}'\n"
            ))
        })?,
    };
    // keep-all (or nothing): nothing is removed.
    let counts = parse(&text)?.unwrap_or([0; 6]);
    let vmid = call.int("vmid").and_then(|v| u32::try_from(v).ok());
    Ok((id, counts, vmid))
}

/// `GET …/prunebackups`: the dry run.
pub fn dry_run(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    call.sim.with_state(|st| {
        let (id, counts, vmid) = request(call, st)?;
        st.access
            .check_any(
                &call.user,
                &format!("/storage/{id}"),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
            )
            .map_err(ApiError::Forbidden)?;
        let keep_all = counts.iter().all(|&n| n == 0);
        let items: Vec<Value> = marked(st, &id, vmid, &counts)
            .into_iter()
            .map(|e| {
                let mark = if keep_all && e.mark != Some("protected") {
                    "keep"
                } else {
                    e.mark.unwrap_or("keep")
                };
                json!({"volid": e.volid, "ctime": e.ctime, "mark": mark, "type": "lxc", "vmid": e.vmid})
            })
            .collect();
        Ok(Reply::data(Value::Array(items)))
    })
}

/// `DELETE …/prunebackups`: a `prunebackups` task (id `<vmid>@<storage>`, or `<storage>`)
/// removing what the dry run marks `remove`.
pub fn prune(call: &Call) -> Result<Reply, ApiError> {
    check_node(call)?;
    let user = call.user.clone();
    let upid = call.sim.mutate(|st| {
        let (id, counts, vmid) = request(call, st)?;
        crate::storage::check_backup_removal(st, &call.user, &id, vmid)?;
        let victims: Vec<String> = if counts.iter().all(|&n| n == 0) {
            Vec::new()
        } else {
            marked(st, &id, vmid, &counts)
                .into_iter()
                .filter(|e| e.mark == Some("remove"))
                .map(|e| e.volid)
                .collect()
        };
        let task_id = match vmid {
            Some(v) => format!("{v}@{id}"),
            None => id.clone(),
        };
        Ok::<_, ApiError>(call.sim.start_task(
            st,
            "prunebackups",
            &task_id,
            &user,
            Work::Prune { vmid, victims },
        ))
    })?;
    Ok(Reply::data(json!(upid)))
}

/// Worker of `prunebackups`: `removing backup '<volid>'` per victim (pve-storage logs that
/// line before each removal). A victim that is gone already is skipped.
pub fn finish(st: &mut State, victims: &[String], log: &mut Vec<String>) -> Result<(), String> {
    for volid in victims {
        if st.volumes.get(volid).is_some_and(|v| !v.protected) {
            log.push(format!("removing backup '{volid}'"));
            st.volumes.remove(volid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(ctimes: &[i64]) -> Vec<Entry> {
        ctimes
            .iter()
            .enumerate()
            .map(|(i, &ctime)| Entry {
                volid: format!("local:backup/b{i}"),
                ctime,
                vmid: 101,
                mark: None,
            })
            .collect()
    }

    fn marks(out: &[Entry]) -> Vec<(i64, &'static str)> {
        out.iter()
            .map(|e| (e.ctime, e.mark.unwrap_or("-")))
            .collect()
    }

    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;

    #[test]
    fn keep_last_keeps_the_newest() {
        let out = mark(entries(&[10, 30, 20, 40]), &[2, 0, 0, 0, 0, 0]);
        assert_eq!(
            marks(&out),
            [(40, "keep"), (30, "keep"), (20, "remove"), (10, "remove")]
        );
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day_and_last_counts_first() {
        // Day 3 has three backups an hour apart (a controller's extra ones), days 1 and 2 one.
        let d = 20_000 * DAY;
        let times = [
            d + DAY,
            d + 2 * DAY,
            d + 3 * DAY,
            d + 3 * DAY + HOUR,
            d + 3 * DAY + 2 * HOUR,
        ];
        let out = mark(entries(&times), &[1, 0, 3, 0, 0, 0]);
        assert_eq!(
            marks(&out),
            [
                // keep-last=1 takes the newest; keep-daily then sees day 3 covered.
                (d + 3 * DAY + 2 * HOUR, "keep"),
                (d + 3 * DAY + HOUR, "remove"),
                (d + 3 * DAY, "remove"),
                (d + 2 * DAY, "keep"),
                (d + DAY, "keep"),
            ]
        );
    }

    #[test]
    fn iso_weeks_cross_the_year() {
        // 2021-01-03 (a Sunday) is in week 53 of 2020; 2021-01-04 starts week 1 of 2021.
        assert_eq!(iso_week(1_609_632_000), (2020, 53));
        assert_eq!(iso_week(1_609_718_400), (2021, 1));
        // 2026-12-04 is a Friday in week 49.
        assert_eq!(iso_week(1_796_342_400), (2026, 49));
    }

    #[test]
    fn retention_text_is_parsed_like_pve() {
        assert_eq!(
            parse("keep-last=3,keep-daily=7").unwrap(),
            Some([3, 0, 7, 0, 0, 0])
        );
        assert_eq!(parse("keep-all=1").unwrap(), None);
        assert_eq!(parse("keep-last=0").unwrap(), None);
        for bad in [
            "keep-all=1,keep-last=2",
            "keep-often=1",
            "keep-last=x",
            "keep-last",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
