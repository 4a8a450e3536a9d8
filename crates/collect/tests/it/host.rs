use std::path::{Path, PathBuf};

use collect::{HostCollector, ProcRoot};

fn write_fixture(dir: &Path, stat_user: u64, stat_idle: u64) {
    std::fs::write(
        dir.join("stat"),
        format!("cpu  {stat_user} 0 0 {stat_idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\ncpu2 1 0 0 1 0 0 0 0 0 0\nintr 5\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("meminfo"),
        "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\nSwapTotal:       1000 kB\nSwapFree:         500 kB\n",
    )
    .unwrap();
    std::fs::write(dir.join("loadavg"), "1.50 0.75 0.25 2/300 4000\n").unwrap();
    std::fs::write(dir.join("uptime"), "86400.55 100.00\n").unwrap();
}

#[test]
fn fixture_proc_and_statvfs_fill_the_report() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), 100, 900);
    let fs_path: PathBuf = dir.path().to_owned();
    let mut c = HostCollector::new(ProcRoot::at(dir.path()), vec![fs_path.clone()]);
    let first = c.collect();
    assert_eq!(first.cpu_percent, None, "no previous sample");
    assert_eq!(first.cpu_count, Some(3));
    let mem = first.memory.clone().unwrap();
    assert_eq!(mem.total_bytes, 8_000_000 * 1024);
    assert_eq!(mem.used_bytes, 2_000_000 * 1024);
    assert_eq!(first.swap.clone().unwrap().free_bytes, 500 * 1024);
    assert_eq!(first.load, Some([1.5, 0.75, 0.25]));
    assert_eq!(first.uptime_s, Some(86400));
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let fs = &first.filesystems[0];
    assert_eq!(fs.path, fs_path.display().to_string());
    assert!(
        fs.total_bytes > 0
            && fs.available_bytes <= fs.free_bytes
            && fs.free_bytes <= fs.total_bytes
    );

    // 300 more busy ticks out of 400 more ticks: 75 %.
    write_fixture(dir.path(), 400, 1000);
    assert_eq!(c.collect().cpu_percent, Some(75.0));
}

#[test]
fn broken_sources_become_nulls_and_errors_not_a_failed_report() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), 1, 1);
    std::fs::write(dir.path().join("meminfo"), "garbage\n").unwrap();
    std::fs::remove_file(dir.path().join("loadavg")).unwrap();
    let mut c = HostCollector::new(
        ProcRoot::at(dir.path()),
        vec![PathBuf::from("/definitely/not/here")],
    );
    let m = c.collect();
    assert!(m.memory.is_none() && m.load.is_none() && m.filesystems.is_empty());
    assert_eq!(m.uptime_s, Some(86400));
    let names: Vec<&str> = m.errors.iter().map(|e| e.collector.as_str()).collect();
    assert_eq!(
        names,
        vec!["meminfo", "loadavg", "statvfs:/definitely/not/here"]
    );
    assert!(
        m.errors[0].message.contains("no MemTotal"),
        "{}",
        m.errors[0].message
    );
    assert!(
        m.errors[2].message.contains("No such file"),
        "{}",
        m.errors[2].message
    );
}

#[test]
fn the_real_proc_parses() {
    let mut c = HostCollector::new(ProcRoot::system(), vec![PathBuf::from("/")]);
    let m = c.collect();
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert!(m.cpu_count.unwrap() >= 1);
    assert!(m.memory.unwrap().total_bytes > 0);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let p = c.collect().cpu_percent;
    assert!(p.is_none_or(|p| (0.0..=100.0).contains(&p)), "{p:?}");
}
