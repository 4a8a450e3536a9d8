//! Parsers for the four `/proc` files the host report needs, and the CPU-usage arithmetic
//! between two `/proc/stat` samples. Plain parsing: these formats have been stable for
//! decades (proc(5)); every number is checked, nothing unwraps file contents.

use std::path::{Path, PathBuf};

use crate::CollectError;

/// Aggregate CPU times from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// All time (user + nice + system + idle + iowait + irq + softirq + steal).
    pub total: u64,
    /// Idle + iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// Busy percentage (0–100) between `earlier` and `self`; `None` when no time passed or
    /// the counters went backwards (a reboot between samples cannot happen in one process,
    /// but a fixture can).
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        if total == 0 || idle > total {
            return None;
        }
        Some(((total - idle) as f64 * 100.0 / total as f64 * 10.0).round() / 10.0)
    }
}

/// What `/proc/stat` gives: aggregate times and the online CPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatSample {
    /// Aggregate times.
    pub cpu: CpuTimes,
    /// `cpuN` lines.
    pub cpu_count: u32,
}

/// Parses `/proc/stat`.
pub fn parse_stat(text: &str) -> Result<StatSample, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty")?;
    let mut fields = first.split_ascii_whitespace();
    if fields.next() != Some("cpu") {
        return Err("first line is not the aggregate \"cpu\" line".into());
    }
    let nums: Vec<u64> = fields
        .take(8)
        .map(|f| {
            f.parse::<u64>()
                .map_err(|e| format!("cpu field {f:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if nums.len() < 4 {
        return Err(format!(
            "cpu line has {} fields, need at least 4",
            nums.len()
        ));
    }
    // guest and guest_nice (fields 9, 10) are already counted in user and nice.
    let total = nums
        .iter()
        .try_fold(0u64, |a, n| a.checked_add(*n))
        .ok_or("cpu times overflow")?;
    let idle = nums[3] + nums.get(4).copied().unwrap_or(0);
    let cpu_count = lines
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count() as u32;
    Ok(StatSample {
        cpu: CpuTimes { total, idle },
        cpu_count,
    })
}

/// `/proc/meminfo` values the report needs, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub mem_total: u64,
    /// `MemAvailable`.
    pub mem_available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

/// Parses `/proc/meminfo` (values in kB, as the kernel writes them).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let get = |key: &str| -> Result<u64, String> {
        let rest = text
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .ok_or_else(|| format!("no {key}"))?
            .trim();
        let (num, unit) = rest.split_once(' ').unwrap_or((rest, ""));
        let n: u64 = num.parse().map_err(|e| format!("{key} {num:?}: {e}"))?;
        match unit.trim() {
            "kB" => n
                .checked_mul(1024)
                .ok_or_else(|| format!("{key} overflows")),
            "" => Ok(n),
            other => Err(format!("{key} has unit {other:?}")),
        }
    };
    Ok(MemInfo {
        mem_total: get("MemTotal")?,
        mem_available: get("MemAvailable")?,
        swap_total: get("SwapTotal")?,
        swap_free: get("SwapFree")?,
    })
}

/// Parses `/proc/loadavg`: the three averages.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], String> {
    let mut it = text.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for slot in &mut out {
        let f = it.next().ok_or("fewer than three load averages")?;
        let v: f64 = f.parse().map_err(|e| format!("load {f:?}: {e}"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("load {f:?} out of range"));
        }
        *slot = v;
    }
    Ok(out)
}

/// Parses `/proc/uptime`: whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, String> {
    let f = text.split_ascii_whitespace().next().ok_or("empty")?;
    let v: f64 = f.parse().map_err(|e| format!("uptime {f:?}: {e}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("uptime {f:?} out of range"));
    }
    Ok(v as u64)
}

/// Where the proc files are: `/proc` in production, a fixture directory in tests.
#[derive(Debug, Clone)]
pub struct ProcRoot(PathBuf);

impl ProcRoot {
    /// The real `/proc`.
    pub fn system() -> Self {
        ProcRoot(PathBuf::from("/proc"))
    }

    /// Another directory with the same file names.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        ProcRoot(dir.into())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Reads and parses one file.
    pub fn read<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, CollectError> {
        let path = self.0.join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| CollectError::Read {
            path: path.clone(),
            source,
        })?;
        parse(&text).map_err(|reason| CollectError::Parse { path, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n\
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
cpu1 1335897 15220 437560 13508290 3427 0 2347 0 26284 0\n\
intr 1462898 0 0\nctxt 115315133\nbtime 1700000000\n";

    #[test]
    fn stat_totals_and_cpu_count() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.cpu_count, 2);
        assert_eq!(
            s.cpu.total,
            10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195
        );
        assert_eq!(s.cpu.idle, 46828483 + 16683);
    }

    #[test]
    fn busy_percent_between_samples() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1200,
            idle: 950,
        };
        assert_eq!(b.busy_percent_since(&a), Some(25.0));
        assert_eq!(a.busy_percent_since(&a), None);
        assert_eq!(a.busy_percent_since(&b), None);
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       16307800 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\nSwapTotal: 2048 kB\nSwapFree: 1024 kB\nHugePages_Total: 0\n",
        )
        .unwrap();
        assert_eq!(m.mem_total, 16307800 * 1024);
        assert_eq!(m.mem_available, 12000000 * 1024);
        assert_eq!((m.swap_total, m.swap_free), (2048 * 1024, 1024 * 1024));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        for bad in ["", "intr 1\n", "cpu a b c d\n", "cpu 1 2\n"] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
        assert!(parse_meminfo("MemTotal: x kB\n").is_err());
        assert!(parse_meminfo(
            "MemTotal: 1 MB\nMemAvailable: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB"
        )
        .is_err());
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_err());
        // A key without its colon is absent, not an index past the end of the line.
        assert!(parse_meminfo("MemTotal\nMemAvailable\nSwapTotal\nSwapFree").is_err());
        assert!(parse_loadavg("0.1 0.2").is_err());
        assert!(parse_loadavg("0.1 -1 0.3 1/2 3").is_err());
        assert!(parse_loadavg("NaN 1 1").is_err());
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("inf 1").is_err());
    }

    #[test]
    fn loadavg_and_uptime() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/1234 5678\n").unwrap(),
            [0.52, 0.58, 0.59]
        );
        assert_eq!(parse_uptime("12345.67 54321.00\n").unwrap(), 12345);
    }
}
