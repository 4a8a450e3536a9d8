//! [`HostCollector`]: CPU, memory, swap, load, uptime from the proc root, and `statvfs` of
//! the configured filesystems. A failing source leaves its fields `null` and adds a
//! [`hub::CollectorError`]; it never fails the whole report.

use std::path::{Path, PathBuf};

use hub::{CollectorError, FilesystemMetrics, HostMetrics, MemoryMetrics, SwapMetrics};

use crate::procfs::{parse_loadavg, parse_meminfo, parse_stat, parse_uptime, CpuTimes, ProcRoot};
use crate::CollectError;

/// Host metrics collector. Keeps the previous `/proc/stat` sample: CPU % is the busy share
/// between two calls (the first call reports `null`).
#[derive(Debug)]
pub struct HostCollector {
    root: ProcRoot,
    filesystems: Vec<PathBuf>,
    prev_cpu: Option<CpuTimes>,
}

impl HostCollector {
    /// A collector over `root` (use [`ProcRoot::system`]) reporting `filesystems`
    /// (e.g. `/`, `/var/lib/vz`, the state directory).
    pub fn new(root: ProcRoot, filesystems: Vec<PathBuf>) -> Self {
        HostCollector {
            root,
            filesystems,
            prev_cpu: None,
        }
    }

    /// One sample. Cheap (four small reads and a few `statvfs` calls).
    pub fn collect(&mut self) -> HostMetrics {
        let mut m = HostMetrics::default();
        let mut errors = Vec::new();
        let mut note = |collector: &str, e: CollectError| {
            errors.push(CollectorError {
                collector: collector.to_owned(),
                message: crate::error_chain(&e),
            });
        };
        match self.root.read("stat", parse_stat) {
            Ok(s) => {
                m.cpu_percent = self
                    .prev_cpu
                    .and_then(|prev| s.cpu.busy_percent_since(&prev));
                m.cpu_count = Some(s.cpu_count);
                self.prev_cpu = Some(s.cpu);
            }
            Err(e) => note("proc_stat", e),
        }
        match self.root.read("meminfo", parse_meminfo) {
            Ok(mi) => {
                m.memory = Some(MemoryMetrics {
                    total_bytes: mi.mem_total,
                    available_bytes: mi.mem_available,
                    used_bytes: mi.mem_total.saturating_sub(mi.mem_available),
                });
                m.swap = Some(SwapMetrics {
                    total_bytes: mi.swap_total,
                    free_bytes: mi.swap_free,
                });
            }
            Err(e) => note("meminfo", e),
        }
        match self.root.read("loadavg", parse_loadavg) {
            Ok(l) => m.load = Some(l),
            Err(e) => note("loadavg", e),
        }
        match self.root.read("uptime", parse_uptime) {
            Ok(u) => m.uptime_s = Some(u),
            Err(e) => note("uptime", e),
        }
        for path in &self.filesystems {
            match statvfs(path) {
                Ok(fs) => m.filesystems.push(fs),
                Err(e) => note(&format!("statvfs:{}", path.display()), e),
            }
        }
        m.errors = errors;
        m
    }
}

/// `statvfs(path)` in bytes.
pub fn statvfs(path: &Path) -> Result<FilesystemMetrics, CollectError> {
    let st = rustix::fs::statvfs(path).map_err(|errno| CollectError::Statvfs {
        path: path.to_owned(),
        source: errno.into(),
    })?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(FilesystemMetrics {
        path: path.display().to_string(),
        total_bytes: st.f_blocks.saturating_mul(frsize),
        free_bytes: st.f_bfree.saturating_mul(frsize),
        available_bytes: st.f_bavail.saturating_mul(frsize),
    })
}
