//! Cross-check against the reference checker: every case is validated by
//! `python3 reference/pve_schema.py check METHOD PATH JSON` and by this crate; both must agree on
//! validity, on the error keys and on the error texts (and on the notes about unchecked formats).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Map, Value};

/// (method, concrete path, parameters as JSON). Key order matters where several messages land on
/// one key; the same text goes to both checkers.
const CASES: &[(&str, &str, &str)] = &[
    // --- POST /nodes/{node}/lxc: create and restore
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst","storage":"local-lvm"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":"101","ostemplate":"local:vztmpl/x.tar.zst","hostname":"web-01.example.com","cores":2,"memory":"512","swap":0}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":99,"ostemplate":"local:vztmpl/x.tar.zst"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":"abc","ostemplate":"local:vztmpl/x.tar.zst"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":true,"ostemplate":"local:vztmpl/x.tar.zst"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":1000000000,"ostemplate":"x"}"#,
    ),
    ("POST", "/nodes/pve/lxc", r#"{"vmid":101}"#),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"pbs1:backup/ct/101/2026-05-01T10:00:00Z","unique":1}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"pbs1:backup/ct/101/2026-05-01T10:00:00Z","restore":1,"unique":1,"force":1,"storage":"local-lvm"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=192.168.1.10/24,gw=192.168.1.1,firewall=1,tag=10,type=veth"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto,firewall=yes,link_down=off"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"bridge=vmbr0,ip=dhcp"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,mtu=10,hwaddr=01:00:5E:00:00:01,ip=1.2.3.4"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,name=eth1"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,speed=10"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"eth0"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,bridge="}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net31":"name=eth31","net32":"name=eth32"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth0,tag=4095,gw=300.1.1.1,trunks=10;20"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","net0":"name=eth 0,ip6=fe80::1","net1":"name=eth1,ip=10.0.0.1/33,rate=1.5x"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","rootfs":"local-lvm:8"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","rootfs":"local-lvm:8,size=8GB"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","rootfs":"volume=local:8,mountoptions=noatime;nodev,acl=on"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","rootfs":"local:8,mountoptions=bogus,quota=2"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","mp0":"local-lvm:4,mp=/data,backup=0","mp255":"local:1,mp=/x"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","mp0":"local-lvm:4","mp256":"local:1,mp=/y"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","mp1":"local-lvm:4,mp=/data/../etc","mp2":"../x,mp=/y"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","features":"nesting=1,keyctl=on,mount=nfs;cifs"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","features":"nesting=maybe,mount=nfs!"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","hostname":"-bad","onboot":"true","cores":0,"swap":-1,"password":"abc"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","tags":"web;prod,db","cpulimit":"1.5","arch":"amd64","unprivileged":1}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","tags":"ok;b$d","cpulimit":"abc","arch":"x86","foo":"bar"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","nameserver":"1.1.1.1","dev0":"/dev/ttyUSB0,mode=0660","unused0":"local:vm-101-disk-1"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","node":"other"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","node":"pve","pool":"bad pool!","ssh-public-keys":"ssh-ed25519 AAAA x"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","cpuunits":1.5,"memory":16.0,"tty":7,"bwlimit":"10.5"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc",
        r#"{"vmid":101,"ostemplate":"x","start":[1],"description":{"a":1}}"#,
    ),
    // --- PUT /nodes/{node}/lxc/{vmid}/config
    ("PUT", "/nodes/pve/lxc/101/config", r#"{"onboot":"true"}"#),
    ("PUT", "/nodes/pve/lxc/101/config", r#"{"onboot":"1"}"#),
    ("PUT", "/nodes/pve/lxc/101/config", r#"{"onboot":1}"#),
    ("PUT", "/nodes/pve/lxc/101/config", r#"{"onboot":true}"#),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"onboot":2,"protection":"yes"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"delete":"swap,mp1;net0 unused0"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"delete":"swap,Mp1"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"digest":"0123456789abcdef0123456789abcdef012345678","cores":4}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"digest":"8a9b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b","revert":"net0","description":"line1\nline2"}"#,
    ),
    ("PUT", "/nodes/pve/lxc/101/config", r#"{"vmid":102}"#),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"vmid":101,"node":"pve"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/config",
        r#"{"net0":"name=eth0,bridge=vmbr0,firewall=true","features":"nesting=1","memory":1024}"#,
    ),
    ("PUT", "/nodes/pve/lxc/99/config", r#"{"cores":"2"}"#),
    ("PUT", "/nodes/p_ve/lxc/101/config", r#"{}"#),
    // --- snapshots
    (
        "POST",
        "/nodes/pve/lxc/101/snapshot",
        r#"{"snapname":"pre-update_1","description":"before apt upgrade"}"#,
    ),
    ("POST", "/nodes/pve/lxc/101/snapshot", r#"{"snapname":"x"}"#),
    (
        "POST",
        "/nodes/pve/lxc/101/snapshot",
        r#"{"snapname":"Upper"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc/101/snapshot",
        r#"{"snapname":"current"}"#,
    ),
    (
        "POST",
        "/nodes/pve/lxc/101/snapshot",
        r#"{"snapname":"a234567890123456789012345678901234567890x"}"#,
    ),
    ("POST", "/nodes/pve/lxc/101/snapshot", r#"{}"#),
    (
        "POST",
        "/nodes/pve/lxc/101/snapshot/pre1/rollback",
        r#"{"start":1}"#,
    ),
    (
        "DELETE",
        "/nodes/pve/lxc/101/snapshot/pre1",
        r#"{"force":"1"}"#,
    ),
    ("DELETE", "/nodes/pve/lxc/101/snapshot/1bad", r#"{}"#),
    // --- resize
    (
        "PUT",
        "/nodes/pve/lxc/101/resize",
        r#"{"disk":"rootfs","size":"+2G"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/resize",
        r#"{"disk":"mp0","size":"2.5G","digest":"abc"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/resize",
        r#"{"disk":"rootfs","size":"2GB"}"#,
    ),
    (
        "PUT",
        "/nodes/pve/lxc/101/resize",
        r#"{"disk":"mp20","size":"-1G"}"#,
    ),
    // --- vzdump
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101","storage":"pbs1","mode":"snapshot","compress":"zstd","notes-template":"{{guestname}}","protected":1}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101","notes-template":"{{guestname}}","protected":1}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101,102 103","compress":1,"remove":0}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101,abc","mode":"fast"}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101","storage":"b","prune-backups":"keep-last=3,keep-daily=7"}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101","prune-backups":"keep-all=1,keep-last=3"}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"vmid":"101","prune-backups":"keep-last=-1,keep-all=maybe"}"#,
    ),
    (
        "POST",
        "/nodes/pve/vzdump",
        r#"{"all":1,"exclude":"100","mailto":"ops@example.com","protected":"1","storage":"usb1","job-id":"a b"}"#,
    ),
    // --- storage create
    (
        "POST",
        "/storage",
        r#"{"storage":"backup-usb","type":"dir","path":"/mnt/usb","content":"backup,rootdir","is_mountpoint":"yes","prune-backups":"keep-last=7"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"backup-usb","type":"dir","path":"/mnt/usb","content":"backup,vm"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"nfs1","type":"nfs","server":"10.0.0.5","export":"/export/pve","content":"backup","options":"vers=4.2"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"cifs1","type":"cifs","server":"nas.lan","share":"backup","username":"u","password":"p","smbversion":"3.0","domain":"WORKGROUP"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"cifs1","type":"cifs","server":"nas.lan","share":"backup","smbversion":"4"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"pbs1","type":"pbs","server":"pbs.example.com","datastore":"store1","username":"backup@pbs!agent","password":"secret","fingerprint":"AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99","encryption-key":"autogen","namespace":"hosts/h1"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"pbs1","type":"pbs","server":"pbs.example.com","datastore":"store1","fingerprint":"AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88"}"#,
    ),
    (
        "POST",
        "/storage",
        r#"{"storage":"a","type":"foo","port":0,"disable":"no"}"#,
    ),
    // --- tasks
    (
        "GET",
        "/nodes/pve/tasks",
        r#"{"limit":"50","start":0,"source":"all","vmid":"101","errors":"1","typefilter":"vzdump","userfilter":"felhom@pve"}"#,
    ),
    (
        "GET",
        "/nodes/pve/tasks",
        r#"{"source":"running","limit":-1,"since":"yesterday"}"#,
    ),
    (
        "GET",
        "/nodes/pve/tasks",
        r#"{"statusfilter":"ok,error","until":1714557600}"#,
    ),
    (
        "GET",
        "/nodes/pve/tasks/UPID:pve:00001234:00005678:6650A1B2:vzdump:101:felhom@pve!agent:/log",
        r#"{"start":0,"limit":500}"#,
    ),
    (
        "GET",
        "/nodes/pve/tasks/UPID:pve:00001234:00005678:6650A1B2:vzdump:101:felhom@pve!agent:/status",
        r#"{"upid":"UPID:other"}"#,
    ),
    // --- access, resources, status, storage content
    (
        "GET",
        "/access/permissions",
        r#"{"path":"/vms/101","userid":"felhom@pve!agent"}"#,
    ),
    ("GET", "/access/permissions", r#"{}"#),
    ("GET", "/access/permissions", r#"{"path":["/"],"extra":1}"#),
    ("GET", "/cluster/resources", r#"{"type":"vm"}"#),
    ("GET", "/cluster/resources", r#"{"type":"lxc"}"#),
    (
        "POST",
        "/nodes/pve/lxc/101/status/start",
        r#"{"skiplock":1,"debug":0}"#,
    ),
    (
        "DELETE",
        "/nodes/pve/lxc/101",
        r#"{"purge":1,"destroy-unreferenced-disks":1,"force":"yes"}"#,
    ),
    (
        "GET",
        "/nodes/pve/storage/local/content/local:backup/vzdump-lxc-101-2026_05_01-10_00_00.tar.zst",
        r#"{}"#,
    ),
    (
        "GET",
        "/nodes/pve/storage/local/content",
        r#"{"content":"backup","vmid":101}"#,
    ),
    (
        "PUT",
        "/nodes/pve/storage/pbs1/content/pbs1:backup/ct/101/2026-05-01T10:00:00Z",
        r#"{"protected":1,"notes":"x"}"#,
    ),
];

fn checker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../reference/pve_schema.py")
}

/// What the reference checker said: `None` when valid, else the errors; plus its notes.
struct Verdict {
    errors: Option<BTreeMap<String, String>>,
    notes: Vec<String>,
}

fn run_python(method: &str, path: &str, json: &str) -> Verdict {
    let out = Command::new("python3")
        .arg(checker())
        .args(["check", method, path, json])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{method} {path}: checker exited {code:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut notes = Vec::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(note) = line.strip_prefix("note: ") {
            notes.push(note.to_owned());
        } else if let Some(cont) = line.strip_prefix("    ") {
            let key = current.as_ref().expect("continuation after a key line");
            let msg = errors.get_mut(key).expect("key exists");
            msg.push('\n');
            msg.push_str(cont);
        } else if let Some(entry) = line.strip_prefix("  ") {
            let (key, msg) = entry.split_once(": ").expect("key: message");
            errors.insert(key.to_owned(), msg.to_owned());
            current = Some(key.to_owned());
        }
    }
    notes.sort();
    Verdict {
        errors: (code == Some(1)).then_some(errors),
        notes,
    }
}

fn python_available() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required for the cross-check in CI"
        );
        eprintln!("note: python3 not found, skipping the cross-check against pve_schema.py");
    }
    ok
}

#[test]
fn agrees_with_reference_checker() {
    if !python_available() {
        return;
    }
    assert!(CASES.len() >= 60);
    let schema = pve_schema::embedded();
    let (mut valid, mut invalid) = (0, 0);
    // The checker starts a fresh interpreter per case; run a few at a time.
    let verdicts: Vec<Verdict> = std::thread::scope(|s| {
        let handles: Vec<_> = CASES
            .chunks(CASES.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(m, p, j)| run_python(m, p, j))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checker thread"))
            .collect()
    });
    for ((method, path, json), expected) in CASES.iter().zip(verdicts) {
        let params: Map<String, Value> = serde_json::from_str(json).expect("case is a JSON object");
        let ep = schema
            .find(method, path)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let report = ep.check_params(&params);
        let ours: BTreeMap<String, String> = report
            .errors
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.trim_end_matches('\n').to_owned()))
            .collect();
        match &expected.errors {
            None => {
                valid += 1;
                assert!(
                    ours.is_empty(),
                    "{method} {path} {json}: python says valid, we say {ours:#?}"
                );
            }
            Some(theirs) => {
                invalid += 1;
                assert_eq!(&ours, theirs, "{method} {path} {json}");
            }
        }
        let mut notes = report.notes.clone();
        notes.sort();
        assert_eq!(notes, expected.notes, "{method} {path} {json}: notes");
    }
    // The corpus exercises both outcomes substantially.
    assert!(
        valid >= 20 && invalid >= 30,
        "valid={valid} invalid={invalid}"
    );
}

/// Sample values for the pattern comparison: typical valid values of many schema patterns and
/// near misses (case, whitespace, trailing newline, NUL, Unicode).
const PATTERN_SAMPLES: &[&str] = &[
    "", "a", "abc", "ABC", "a b", "a\n", "1", "12", "+2G", "2.5G", "2GB", "-1G", "10.5T",
    "/dev/ttyUSB0", "/dev/usb/lp0", "/dev/parport1", "socket", "/var/tmp/pveupload-0a1b",
    "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99",
    "net0=1,net1=2", "a=1\0b=2", "a=1\u{1}", "pve2c-0123456789", " pve2c-0123456789 ",
    "noatime;nodev", "noatime;bogus", "nfs;cifs", "1:2", "12:30", "0644", "0844", "2026-05-01",
    "2026-05-01 10:00", "2026-05-01T10:00:00", "now", "https://x.example/a", "http://x", "ftp://x",
    "ceph.a-1", "mon.node1", "osd", "UPPER", "a-b_c.d", "12345678-1234-1234-1234-123456789abc", "0",
    "scsi0", "virtio15", "10/second", "0/minute", "abc;def", "web;prod", "tag:0a0b0c", "x:0a0b0c:0d0e0f",
    "pc-q35-8.1+pve0", "q35", "virt-9.0", "0000:01:00.0", "01:00.0", "gpu1", "1234:5678",
    "0x1234:0x5678", "1-2.3", "spice", "SPICE", "debian/bookworm:latest", "registry.example.com:5000/a/b:1",
    "acl;entry", "none", "login", "x y", "\u{e9}t\u{e9}", "\u{661}\u{662}", "a\tb", "!!", "user@pve",
    "user@pve!tok", "user@pve!", "+a=1,-b", "(x) y_z", "ab", "eth0", "vmbr0.10", "a=b, c=d", "10-20;30",
];

#[test]
fn patterns_agree_with_python_re() {
    if !python_available() {
        return;
    }
    let tree: Value = serde_json::from_str(pve_schema::EMBEDDED_JSON).expect("schema is JSON");
    let mut patterns: Vec<&str> = pve_schema::patterns(&tree);
    patterns.sort_unstable();
    patterns.dedup();
    let input = serde_json::json!({"patterns": patterns, "samples": PATTERN_SAMPLES});
    let script = r#"
import json, re, sys
sys.path.insert(0, sys.argv[1])
import pve_schema as ps
data = json.load(sys.stdin)
out = []
for p in data["patterns"]:
    rx = re.compile(ps.perl_regex_to_python(p))
    out.append([rx.fullmatch(s) is not None for s in data["samples"]])
json.dump(out, sys.stdout)
"#;
    let dir = checker().parent().expect("reference dir").to_path_buf();
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write input");
    }
    let out = child.wait_with_output().expect("python finished");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Vec<bool>> = serde_json::from_slice(&out.stdout).expect("JSON result");
    let mut matched = 0;
    for (p, row) in patterns.iter().zip(&expected) {
        for (sample, want) in PATTERN_SAMPLES.iter().zip(row) {
            let schema = serde_json::json!({"type": "string", "pattern": p});
            let got = pve_schema::check_value(&schema, &Value::from(*sample)).is_ok();
            assert_eq!(got, *want, "pattern {p:?} on {sample:?}");
            matched += usize::from(got);
        }
    }
    assert!(
        matched > 100,
        "samples should match many patterns, matched {matched}"
    );
}
