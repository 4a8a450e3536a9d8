//! `SudoRunner` and `Privileged` against a fake `sudo` on a temp-dir PATH.
//!
//! The fake `sudo` appends its argv (one argument per line, then `--end--`) to `argv.log` next to
//! itself, checks it was called as `sudo -n -- /abs/path …`, and execs `fake-<tool>` from the
//! same directory. Each fake tool prints canned output and exits with the status in
//! `<tool>.status` (default 0).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use privileged::invocation::{self, GoldenImageSpec};
use privileged::{
    BlockDevice, Bridge, Cores, Error, FsUuid, Hostname, MemoryMib, Privileged, Runner, StorageId,
    SudoRunner, TemplateVolume, Vmid,
};

const SMART_JSON: &str = r#"{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"name":"/dev/sda","protocol":"ATA"},"model_name":"Samsung SSD 870 EVO 1TB","serial_number":"S6PUNX0T123456","smart_status":{"passed":true},"temperature":{"current":31},"power_on_time":{"hours":12345}}"#;
const SENSORS_JSON: &str = r#"{"coretemp-isa-0000":{"Adapter":"ISA adapter","Package id 0":{"temp1_input":45.000,"temp1_max":80.000}},"nvme-pci-0100":{"Adapter":"PCI adapter","Composite":{"temp1_input":38.850}}}"#;

struct FakeHost {
    dir: tempfile::TempDir,
}

fn write_script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

impl FakeHost {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost { dir };
        write_script(
            &host.path("sudo"),
            r#"dir=${0%/*}
for a in "$@"; do printf '%s\n' "$a" >> "$dir/argv.log"; done
printf -- '--end--\n' >> "$dir/argv.log"
[ "$1" = "-n" ] && [ "$2" = "--" ] || { echo "sudo: bad usage" >&2; exit 1; }
case "$3" in /*) ;; *) echo "sudo: not absolute" >&2; exit 1;; esac
tool=${3##*/}
shift 3
[ -x "$dir/fake-$tool" ] || { echo "sudo: a password is required" >&2; exit 1; }
exec "$dir/fake-$tool" "$@"
"#,
        );
        for (tool, output) in [
            ("smartctl", SMART_JSON),
            ("sensors", SENSORS_JSON),
            ("pct", ""),
            ("felhom-mount-helper", ""),
        ] {
            fs::write(host.path(&format!("{tool}.out")), output).unwrap();
            write_script(
                &host.path(&format!("fake-{tool}")),
                &format!(
                    r#"dir=${{0%/*}}
cat "$dir/{tool}.out"
[ -f "$dir/{tool}.err" ] && cat "$dir/{tool}.err" >&2
status=0
[ -f "$dir/{tool}.status" ] && status=$(cat "$dir/{tool}.status")
exit "$status"
"#
                ),
            );
        }
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runner(&self) -> SudoRunner {
        // The temp dir first, so its `sudo` wins; system dirs after it for `cat` and `sleep`.
        SudoRunner::with_path(format!("{}:/usr/bin:/bin", self.dir.path().display()))
            .with_term_grace(Duration::from_millis(500))
    }

    fn privileged(&self) -> Privileged<SudoRunner> {
        Privileged::new(self.runner())
    }

    fn set(&self, tool: &str, what: &str, content: &str) {
        fs::write(self.path(&format!("{tool}.{what}")), content).unwrap();
    }

    /// Every recorded sudo call, as argv lists.
    fn calls(&self) -> Vec<Vec<String>> {
        let log = fs::read_to_string(self.path("argv.log")).unwrap_or_default();
        let mut calls = vec![];
        let mut current = vec![];
        for line in log.lines() {
            if line == "--end--" {
                calls.push(std::mem::take(&mut current));
            } else {
                current.push(line.to_owned());
            }
        }
        calls
    }
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn smart_runs_the_pinned_argv_and_parses() {
    let host = FakeHost::new();
    let device = BlockDevice::parse("/dev/sda").unwrap();
    let reading = host.privileged().smart(&device).unwrap();
    assert_eq!(
        host.calls(),
        vec![argv(&[
            "-n",
            "--",
            "/usr/sbin/smartctl",
            "--json=c",
            "-a",
            "/dev/sda"
        ])]
    );
    assert_eq!(reading.device, "/dev/sda");
    assert_eq!(reading.model.as_deref(), Some("Samsung SSD 870 EVO 1TB"));
    assert_eq!(reading.serial.as_deref(), Some("S6PUNX0T123456"));
    assert_eq!(reading.health_passed, Some(true));
    assert_eq!(reading.temperature_c, Some(31));
    assert_eq!(reading.power_on_hours, Some(12345));
    assert_eq!(reading.status.bits(), 0);
}

#[test]
fn smart_information_bits_are_not_errors() {
    let host = FakeHost::new();
    host.set("smartctl", "status", "192"); // bits 6 and 7: error logs have entries
    let reading = host
        .privileged()
        .smart(&BlockDevice::parse("/dev/nvme0n1").unwrap())
        .unwrap();
    assert!(reading.status.error_log_has_errors());
    assert!(reading.status.self_test_log_has_errors());
    assert_eq!(reading.health_passed, Some(true));
}

#[test]
fn smart_fatal_bits_are_errors_with_stderr() {
    let host = FakeHost::new();
    host.set("smartctl", "status", "2");
    host.set(
        "smartctl",
        "err",
        "Smartctl open device: /dev/sdb failed: No such device\n",
    );
    let err = host
        .privileged()
        .smart(&BlockDevice::parse("/dev/sdb").unwrap())
        .unwrap_err();
    match &err {
        Error::NonZeroExit {
            program,
            code,
            stderr_tail,
        } => {
            assert_eq!(*program, "smartctl");
            assert_eq!(*code, Some(2));
            assert!(stderr_tail.contains("No such device"), "{stderr_tail}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().starts_with("smartctl exited with status 2"),
        "{err}"
    );
}

#[test]
fn sensors_are_parsed() {
    let host = FakeHost::new();
    let readings = host.privileged().sensors().unwrap();
    assert_eq!(
        host.calls(),
        vec![argv(&["-n", "--", "/usr/bin/sensors", "-j"])]
    );
    assert_eq!(
        readings.chips["coretemp-isa-0000"].temperatures_c["Package id 0"],
        45.0
    );
    assert_eq!(
        readings.chips["nvme-pci-0100"].temperatures_c["Composite"],
        38.85
    );
}

#[test]
fn sensors_garbage_is_a_parse_error() {
    let host = FakeHost::new();
    host.set("sensors", "out", "No sensors found!\n");
    let err = host.privileged().sensors().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Parse {
                program: "sensors",
                ..
            }
        ),
        "{err:?}"
    );
}

fn spec() -> GoldenImageSpec {
    GoldenImageSpec {
        vmid: Vmid::new(9000).unwrap(),
        ostemplate: TemplateVolume::parse("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
            .unwrap(),
        storage: StorageId::parse("local-lvm").unwrap(),
        hostname: Hostname::parse("golden-debian12").unwrap(),
        memory: MemoryMib::new(2048).unwrap(),
        cores: Cores::new(2).unwrap(),
        bridge: Bridge::parse("vmbr0").unwrap(),
    }
}

#[test]
fn golden_image_create_argv_is_exact() {
    let host = FakeHost::new();
    host.privileged().create_golden_image(&spec()).unwrap();
    assert_eq!(
        host.calls(),
        vec![argv(&[
            "-n",
            "--",
            "/usr/sbin/pct",
            "create",
            "9000",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "--storage",
            "local-lvm",
            "--hostname",
            "golden-debian12",
            "--features",
            "keyctl=1,nesting=1",
            "--unprivileged",
            "1",
            "--memory",
            "2048",
            "--cores",
            "2",
            "--net0",
            "name=eth0,bridge=vmbr0,ip=dhcp",
        ])]
    );
}

#[test]
fn golden_image_failure_names_pct_and_stderr() {
    let host = FakeHost::new();
    host.set("pct", "status", "255");
    host.set(
        "pct",
        "err",
        "unable to create CT 9000 - CT 9000 already exists on node 'pve'\n",
    );
    let err = host.privileged().create_golden_image(&spec()).unwrap_err();
    assert!(
        matches!(&err, Error::NonZeroExit { program: "pct", code: Some(255), stderr_tail } if stderr_tail.contains("already exists")),
        "{err:?}"
    );
}

#[test]
fn mount_and_unmount_by_uuid() {
    let host = FakeHost::new();
    let uuid = FsUuid::parse("1A2B-3C4D").unwrap();
    let point = host.privileged().mount_by_uuid(&uuid).unwrap();
    assert_eq!(point, PathBuf::from("/srv/felhom/mounts/1A2B-3C4D"));
    host.privileged().unmount_by_uuid(&uuid).unwrap();
    assert_eq!(
        host.calls(),
        vec![
            argv(&[
                "-n",
                "--",
                "/usr/libexec/felhom-agent/felhom-mount-helper",
                "mount",
                "1A2B-3C4D",
            ]),
            argv(&[
                "-n",
                "--",
                "/usr/libexec/felhom-agent/felhom-mount-helper",
                "unmount",
                "1A2B-3C4D",
            ]),
        ]
    );
}

#[test]
fn sudo_refusal_is_a_non_zero_exit() {
    let host = FakeHost::new();
    fs::remove_file(host.path("fake-felhom-mount-helper")).unwrap();
    let err = host
        .privileged()
        .unmount_by_uuid(&FsUuid::parse("1A2B-3C4D").unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonZeroExit { program: "felhom-mount-helper", code: Some(1), stderr_tail } if stderr_tail.contains("password is required")),
        "{err:?}"
    );
}

#[test]
fn mount_helper_refusal_keeps_its_code_and_reason() {
    let host = FakeHost::new();
    host.set("felhom-mount-helper", "status", "6");
    host.set(
        "felhom-mount-helper",
        "err",
        "felhom-mount-helper: sda1 is not a USB device (its sysfs path /sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1 has no usb bus)\n",
    );
    let err = host
        .privileged()
        .mount_by_uuid(&FsUuid::parse("1A2B-3C4D").unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonZeroExit { program: "felhom-mount-helper", code: Some(6), stderr_tail } if stderr_tail.contains("is not a USB device")),
        "{err:?}"
    );
}

#[test]
fn timeout_terminates_the_command() {
    let host = FakeHost::new();
    // Traps SIGTERM (relayed by a real sudo) and records that it got it.
    write_script(
        &host.path("fake-sensors"),
        r#"dir=${0%/*}
trap 'echo term > "$dir/terminated"; kill $child 2>/dev/null; exit 143' TERM
sleep 30 &
child=$!
wait $child
"#,
    );
    let inv = invocation::sensors().with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = host.runner().run(&inv).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { program: "sensors", timeout } if timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(
        fs::read_to_string(host.path("terminated"))
            .unwrap_or_default()
            .trim(),
        "term",
        "the command did not get SIGTERM"
    );
}

#[test]
fn timeout_escalates_to_sigkill() {
    let host = FakeHost::new();
    // Ignores SIGTERM: only SIGKILL after the grace period ends it.
    write_script(&host.path("fake-sensors"), "trap '' TERM\nexec sleep 30\n");
    let inv = invocation::sensors().with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = host.runner().run(&inv).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn missing_sudo_is_a_spawn_error() {
    let empty = tempfile::tempdir().unwrap();
    let runner = SudoRunner::with_path(empty.path());
    let err = Privileged::new(runner).sensors().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Spawn {
                program: "sensors",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "cannot start sudo for sensors");
}
