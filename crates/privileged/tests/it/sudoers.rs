//! `packaging/sudoers.d/felhom-agent` against the argv the crate builds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use privileged::invocation::{self, GoldenImageSpec, Invocation};
use privileged::{
    BlockDevice, Bridge, Cores, FsUuid, Hostname, MemoryMib, Program, StorageId, TemplateVolume,
    Vmid,
};
use proptest::prelude::*;
use regex::Regex;

fn sudoers_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../packaging/sudoers.d/felhom-agent")
}

/// One `Cmnd_Alias NAME = /path ARGS` line.
struct Rule {
    path: String,
    args: Regex,
}

/// Translates the POSIX ERE subset the sudoers file may use into a Rust regex, refusing
/// anything whose meaning differs between the two (so the test cannot pass on a regex sudo reads
/// differently): backslash escapes other than of punctuation, backslashes inside brackets
/// (literal in POSIX, an escape in Rust), and POSIX classes like `[[:alpha:]]` are rejected.
fn translate_ere(ere: &str) -> Result<Regex, String> {
    if !(ere.starts_with('^') && ere.ends_with('$')) {
        return Err(format!("not anchored: {ere}"));
    }
    if ere.contains('#') {
        return Err(format!("'#' starts a comment in sudoers: {ere}"));
    }
    if ere[..ere.len() - 1].contains('$') {
        return Err(format!("sudoers ends a regex at the first '$': {ere}"));
    }
    let mut in_bracket = false;
    let mut chars = ere.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if chars.peek() == Some(&':') => return Err(format!("POSIX class in {ere}")),
            '[' => in_bracket = true,
            ']' if in_bracket => in_bracket = false,
            '\\' if in_bracket => return Err(format!("backslash inside brackets: {ere}")),
            '\\' => match chars.next() {
                Some(next) if next.is_ascii_punctuation() => {}
                _ => return Err(format!("escape means something else in POSIX ERE: {ere}")),
            },
            _ => {}
        }
    }
    Regex::new(ere).map_err(|err| err.to_string())
}

fn load_rules() -> (BTreeMap<String, Rule>, Vec<String>) {
    let text = std::fs::read_to_string(sudoers_path()).expect("sudoers file");
    let mut rules = BTreeMap::new();
    let mut granted = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continuation lines are not supported: {line}"
        );
        if let Some(rest) = line.strip_prefix("Cmnd_Alias ") {
            let (name, spec) = rest.split_once(" = ").expect("Cmnd_Alias NAME = …");
            let (path, args) = spec.split_once(' ').expect("every rule pins its arguments");
            rules.insert(
                name.to_owned(),
                Rule {
                    path: path.to_owned(),
                    args: translate_ere(args).unwrap(),
                },
            );
        } else if let Some(rest) = line.strip_prefix("felhom-agent ALL=(root) NOPASSWD: ") {
            granted.extend(rest.split(", ").map(str::to_owned));
        }
    }
    (rules, granted)
}

/// Whether sudo would allow `program args…` under the shipped rules.
fn allowed(program: &str, args: &[String]) -> bool {
    let (rules, granted) = load_rules();
    let joined = args.join(" ");
    granted.iter().any(|name| {
        let rule = &rules[name];
        rule.path == program && rule.args.is_match(&joined)
    })
}

fn allows(inv: &Invocation) -> bool {
    allowed(inv.program().path(), inv.args())
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

fn uuid() -> FsUuid {
    FsUuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap()
}

fn with_arg(inv: &Invocation, index: usize, value: &str) -> Vec<String> {
    let mut args = inv.args().to_vec();
    args[index] = value.to_owned();
    args
}

#[test]
fn every_alias_is_granted_and_every_program_has_a_rule() {
    let (rules, granted) = load_rules();
    let mut names: Vec<&String> = rules.keys().collect();
    names.sort();
    let mut granted_sorted: Vec<&String> = granted.iter().collect();
    granted_sorted.sort();
    assert_eq!(names, granted_sorted);
    for program in Program::ALL {
        assert!(
            rules.values().any(|r| r.path == program.path()),
            "no rule for {}",
            program.path()
        );
    }
    // One rule per program, except the mount helper's two (mount, unmount); nothing else.
    for (name, rule) in &rules {
        assert!(
            Program::ALL.iter().any(|p| p.path() == rule.path),
            "{name} names a program the crate never runs: {}",
            rule.path
        );
    }
    assert_eq!(rules.len(), Program::ALL.len() + 1);
}

#[test]
fn valid_invocations_are_allowed() {
    let vfat = FsUuid::parse("1A2B-3C4D").unwrap();
    for inv in [
        invocation::golden_image_create(&spec()),
        invocation::mount(&uuid()),
        invocation::unmount(&uuid()),
        invocation::mount(&vfat),
        invocation::unmount(&vfat),
        invocation::smart(&BlockDevice::parse("/dev/sda").unwrap()),
        invocation::smart(&BlockDevice::parse("/dev/sdab").unwrap()),
        invocation::smart(&BlockDevice::parse("/dev/nvme0n1").unwrap()),
        invocation::sensors(),
    ] {
        assert!(
            allows(&inv),
            "refused: {} {:?}",
            inv.program().path(),
            inv.args()
        );
    }
}

#[test]
fn crafted_pct_argv_is_refused() {
    let inv = invocation::golden_image_create(&spec());
    let mut extra = inv.args().to_vec();
    extra.extend([
        "--hookscript".to_owned(),
        "local:snippets/evil.sh".to_owned(),
    ]);
    assert!(!allowed("/usr/sbin/pct", &extra), "appended --hookscript");

    let mut prefixed = vec!["--hookscript".to_owned(), "x".to_owned()];
    prefixed.extend(inv.args().iter().cloned());
    assert!(!allowed("/usr/sbin/pct", &prefixed));

    for (index, value) in [
        (0, "destroy"),
        (1, "99"),
        (2, "local:vztmpl/../../../etc/shadow.tar.gz"),
        (2, "local:vztmpl/sub/dir.tar.gz"),
        (4, "local --force"),
        (6, "host --hookscript x"),
        (8, "keyctl=1,nesting=1,mount=nfs"),
        (10, "0"),
        (
            16,
            "name=eth0,bridge=vmbr0,ip=dhcp,hwaddr=00:11:22:33:44:55",
        ),
    ] {
        assert!(
            !allowed("/usr/sbin/pct", &with_arg(&inv, index, value)),
            "arg {index} = {value:?} was allowed"
        );
    }
    // The same argv under another program is not allowed.
    assert!(!allowed("/usr/sbin/qm", inv.args()));
    assert!(!allowed("/usr/bin/pct", inv.args()));
}

const HELPER: &str = "/usr/libexec/felhom-agent/felhom-mount-helper";

#[test]
fn mount_helper_argv_is_exactly_verb_and_uuid() {
    assert_eq!(privileged::MOUNT_HELPER, HELPER);
    let mount = invocation::mount(&uuid());
    let unmount = invocation::unmount(&uuid());
    assert_eq!(mount.program().path(), HELPER);
    assert_eq!(mount.args(), ["mount", uuid().as_str()]);
    assert_eq!(unmount.args(), ["unmount", uuid().as_str()]);
}

#[test]
fn crafted_mount_argv_is_refused() {
    let mount = invocation::mount(&uuid());
    for (index, value) in [
        (0, "Mount"),
        (0, "remount"),
        (0, "--mount"),
        (0, "umount"),
        (1, "3F2504E0-4F89-11D3-9A0C-0305E82C3301"),
        (1, "1a2b-3c4d"),
        (1, "../../etc"),
        (1, "/dev/sda1"),
        (1, "/dev/disk/by-uuid/3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
        (1, "3f2504e0-4f89-11d3-9a0c-0305e82c3301 /etc"),
        (1, "3f2504e0-4f89-11d3-9a0c-0305e82c3301/../../etc"),
        (1, "--options=exec"),
        (1, ""),
    ] {
        assert!(
            !allowed(HELPER, &with_arg(&mount, index, value)),
            "arg {index} = {value:?} was allowed"
        );
    }
    let unmount = invocation::unmount(&uuid());
    for value in ["/", "/srv/felhom/mounts/x", "../x", "1A2B-3C4D /"] {
        assert!(!allowed(HELPER, &with_arg(&unmount, 1, value)), "{value}");
    }
    for inv in [&mount, &unmount] {
        // Appended, prefixed, doubled or missing arguments.
        let mut extra = inv.args().to_vec();
        extra.push("/srv/felhom/mounts/1A2B-3C4D".to_owned());
        assert!(!allowed(HELPER, &extra), "{extra:?}");
        let mut doubled = inv.args().to_vec();
        doubled.push(uuid().to_string());
        assert!(!allowed(HELPER, &doubled), "{doubled:?}");
        let mut prefixed = vec!["--".to_owned()];
        prefixed.extend(inv.args().iter().cloned());
        assert!(!allowed(HELPER, &prefixed), "{prefixed:?}");
        assert!(!allowed(HELPER, &inv.args()[..1]));
        assert!(!allowed(HELPER, &inv.args()[1..]));
        // The helper's argv under another path.
        assert!(!allowed("/usr/bin/felhom-mount-helper", inv.args()));
        assert!(!allowed("/usr/bin/systemd-mount", inv.args()));
    }
    assert!(!allowed(HELPER, &[]));
}

/// Issue 11 item 11: the old rule let the agent run systemd-mount on any by-uuid device, and
/// device A onto mount point B. None of its argv is allowed any more.
#[test]
fn regression_direct_systemd_mount_is_no_longer_allowed() {
    let a = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    let b = "1A2B-3C4D";
    let old_mount = |device: &str, point: &str| -> Vec<String> {
        [
            "--no-block",
            "--collect",
            "--options=nosuid,nodev",
            &format!("/dev/disk/by-uuid/{device}"),
            &format!("/srv/felhom/mounts/{point}"),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for argv in [old_mount(a, a), old_mount(a, b), old_mount(b, a)] {
        assert!(!allowed("/usr/bin/systemd-mount", &argv), "{argv:?}");
        assert!(!allowed(HELPER, &argv), "{argv:?}");
    }
    let old_umount = vec![format!("/srv/felhom/mounts/{a}")];
    assert!(!allowed("/usr/bin/systemd-umount", &old_umount));
    assert!(!allowed(HELPER, &old_umount));
    let (rules, _) = load_rules();
    assert!(
        rules
            .values()
            .all(|r| r.path != "/usr/bin/systemd-mount" && r.path != "/usr/bin/systemd-umount"),
        "a rule still names systemd-mount or systemd-umount"
    );
}

#[test]
fn crafted_smart_and_sensors_argv_is_refused() {
    let smart = invocation::smart(&BlockDevice::parse("/dev/sda").unwrap());
    for value in [
        "/dev/sda1",
        "/dev/mapper/pve-root",
        "/dev/../dev/sda",
        "/etc/shadow",
        "/dev/nvme0n1p1",
    ] {
        assert!(
            !allowed("/usr/sbin/smartctl", &with_arg(&smart, 2, value)),
            "{value} was allowed"
        );
    }
    let mut extra = smart.args().to_vec();
    extra.extend(["-s".to_owned(), "off".to_owned()]);
    assert!(!allowed("/usr/sbin/smartctl", &extra));
    assert!(!allowed("/usr/sbin/smartctl", &with_arg(&smart, 1, "-t")));

    assert!(!allowed(
        "/usr/bin/sensors",
        &["-j".to_owned(), "-s".to_owned()]
    ));
    assert!(!allowed("/usr/bin/sensors", &["-s".to_owned()]));
    assert!(!allowed("/usr/bin/sensors", &[]));
}

#[test]
fn translation_refuses_constructs_posix_reads_differently() {
    for bad in [r"^\d+$", r"^[\w]+$", r"^[[:alpha:]]+$", r"^a$b$"] {
        assert!(translate_ere(bad).is_err(), "{bad} was accepted");
    }
}

proptest! {
    #[test]
    fn any_valid_golden_spec_is_allowed(
        vmid in 100u32..=999_999_999,
        storage in "[a-z][a-z0-9._-]{0,10}[a-z0-9]",
        name in "[a-z0-9][a-z0-9._+-]{0,30}",
        ext in prop::sample::select(vec![".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]),
        hostname in "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?",
        memory in 64u32..=1_048_576,
        cores in 1u32..=512,
        bridge in "[a-z][a-z0-9_.-]{0,14}",
    ) {
        let spec = GoldenImageSpec {
            vmid: Vmid::new(vmid).unwrap(),
            ostemplate: TemplateVolume::parse(&format!("{storage}:vztmpl/{name}{ext}")).unwrap(),
            storage: StorageId::parse(&storage).unwrap(),
            hostname: Hostname::parse(&hostname).unwrap(),
            memory: MemoryMib::new(memory).unwrap(),
            cores: Cores::new(cores).unwrap(),
            bridge: Bridge::parse(&bridge).unwrap(),
        };
        prop_assert!(allows(&invocation::golden_image_create(&spec)));
    }

    #[test]
    fn any_string_the_hostname_type_accepts_is_allowed(s in "\\PC{0,70}") {
        if let Ok(hostname) = Hostname::parse(&s) {
            let spec = GoldenImageSpec { hostname, ..spec() };
            prop_assert!(allows(&invocation::golden_image_create(&spec)));
        }
    }

    #[test]
    fn any_uuid_the_type_accepts_is_allowed(s in "[0-9a-fA-F-]{9,36}") {
        if let Ok(uuid) = FsUuid::parse(&s) {
            prop_assert!(allows(&invocation::mount(&uuid)));
            prop_assert!(allows(&invocation::unmount(&uuid)));
        }
    }

    #[test]
    fn any_device_the_type_accepts_is_allowed(s in "/dev/(sd[a-z]{1,4}|nvme[0-9]{1,4}n[0-9]{1,4}|[a-z0-9/.]{1,8})") {
        if let Ok(device) = BlockDevice::parse(&s) {
            prop_assert!(allows(&invocation::smart(&device)));
        }
    }
}

fn find_visudo() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("visudo"))
        .find(|candidate| candidate.is_file())
}

#[test]
fn visudo_accepts_the_file() {
    let Some(visudo) = find_visudo() else {
        if std::env::var_os("CI").is_some() {
            panic!("visudo is not installed but CI is set: install the sudo package");
        }
        eprintln!("skipped: visudo not installed (apt-get install sudo); CI fails instead");
        return;
    };
    let out = Command::new(visudo)
        .arg("-cf")
        .arg(sudoers_path())
        .output()
        .expect("run visudo");
    assert!(
        out.status.success(),
        "visudo -cf refused the file:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
