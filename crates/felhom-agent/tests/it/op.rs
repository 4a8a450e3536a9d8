//! `op new|sign|wrap|verify` as processes, with real `ssh-keygen` keys and signatures and a
//! real `ssh-agent`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{agent, run, Fixture};

const HOST: &str = "host-1";

/// A temp dir with operator keys, an operators file and a state dir.
struct Ops {
    fx: Fixture,
    n: std::cell::Cell<usize>,
}

impl Ops {
    fn new() -> Ops {
        let ops = Ops {
            fx: Fixture::new(),
            n: std::cell::Cell::new(0),
        };
        ops.keygen("alice", "ed25519");
        ops.keygen("carol", "ecdsa");
        ops.keygen("bob", "ed25519");
        ops.keygen("mallory", "ed25519");
        let file = json!({"operators": [
            {"principal": "alice", "public_key": ops.public("alice"), "roles": ["operator"]},
            {"principal": "carol", "public_key": ops.public("carol"), "roles": ["operator"]},
            {"principal": "bob", "public_key": ops.public("bob"), "roles": ["support"]},
        ]});
        ops.fx.write("operators.json", &file.to_string(), 0o644);
        ops
    }

    fn fresh(&self, stem: &str) -> PathBuf {
        let i = self.n.get();
        self.n.set(i + 1);
        self.fx.path(&format!("{stem}-{i}"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.fx.path(name)
    }

    fn keygen(&self, name: &str, kind: &str) {
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
            .arg(self.key(name));
        if kind == "ecdsa" {
            cmd.args(["-b", "256"]);
        }
        assert!(cmd.stdin(Stdio::null()).status().unwrap().success());
    }

    fn public(&self, name: &str) -> String {
        std::fs::read_to_string(self.fx.path(&format!("{name}.pub")))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `op new` → payload file.
    fn new_payload(&self, action: &str, target: &str, extra: &[&str]) -> PathBuf {
        let (code, stdout, stderr) = run(agent()
            .args([
                "op",
                "new",
                "--action",
                action,
                "--target",
                target,
                "--host-id",
                HOST,
            ])
            .args(extra));
        assert_eq!(code, 0, "{stderr}");
        let path = self.fresh("payload");
        std::fs::write(&path, stdout).unwrap();
        path
    }

    /// A payload written by hand (for times and shapes `op new` never makes).
    fn raw_payload(&self, overrides: Value) -> PathBuf {
        let mut v = json!({
            "v": 1, "op_id": format!("op-raw-{:08}", self.n.get()), "nonce": format!("nonce-raw-{:016}", self.n.get()),
            "issued_at": now_offset(-60), "expires_at": now_offset(600),
            "host_id": HOST, "action": "guest.destroy", "target": {"vmid": 101}, "params": {}
        });
        for (k, val) in overrides.as_object().unwrap() {
            v[k] = val.clone();
        }
        let path = self.fresh("payload");
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        path
    }

    /// `ssh-keygen -Y sign` (prompts before overwriting, so the path is always fresh).
    fn keygen_sign(&self, key: &str, payload: &Path, namespace: &str) -> PathBuf {
        let copy = self.fresh("tosign");
        std::fs::copy(payload, &copy).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(self.key(key))
            .arg(&copy)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(format!("{}.sig", copy.display()))
    }

    /// `op sign --key`.
    fn our_sign(&self, key: &str, payload: &Path) -> PathBuf {
        let out = self.fresh("sig");
        let (code, _, stderr) = run(agent()
            .args(["op", "sign", "--key"])
            .arg(self.key(key))
            .arg("--payload")
            .arg(payload)
            .arg("--out")
            .arg(&out));
        assert_eq!(code, 0, "{stderr}");
        out
    }

    fn verify_cmd(&self, payload: &Path, sig: &Path) -> Command {
        let mut cmd = agent();
        cmd.args(["op", "verify", "--operators"])
            .arg(self.fx.path("operators.json"))
            .args(["--host-id", HOST, "--state"])
            .arg(self.fx.path("state"))
            .arg("--payload")
            .arg(payload)
            .arg("--signature")
            .arg(sig);
        cmd
    }

    /// Runs `op verify`; returns `Ok(json)` or `Err(REASON)`.
    fn verify(&self, payload: &Path, sig: &Path) -> Result<Value, String> {
        outcome(run(&mut self.verify_cmd(payload, sig)))
    }

    fn journal(&self) -> journal::Journal {
        journal::Journal::open(&self.fx.path("state")).unwrap()
    }
}

fn outcome((code, stdout, stderr): (i32, String, String)) -> Result<Value, String> {
    match code {
        0 => Ok(serde_json::from_str(&stdout).unwrap()),
        3 => {
            let word = stdout
                .trim()
                .strip_prefix("rejected: ")
                .unwrap_or_else(|| panic!("{stdout}"));
            assert_eq!(stdout.lines().count(), 1, "{stdout}");
            Err(word.to_owned())
        }
        other => panic!("exit {other}: {stdout} {stderr}"),
    }
}

fn now_offset(seconds: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn ssh_keygen_signatures_verify_and_bind_action_and_target() {
    let ops = Ops::new();
    for key in ["alice", "carol"] {
        let payload = ops.new_payload(
            "guest.destroy",
            "vmid:101",
            &["--params", r#"{"purge":true}"#],
        );
        let op = ops
            .verify(&payload, &ops.keygen_sign(key, &payload, "felhom-op"))
            .unwrap();
        assert_eq!(op["signer"], key);
        assert_eq!(op["action"], "guest.destroy");
        assert_eq!(op["target"], json!({"vmid": 101}));
        assert_eq!(op["params"], json!({"purge": true}));
        assert!(op["key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:"));
    }
}

#[test]
fn our_signatures_verify_with_ssh_keygen_and_with_us() {
    let ops = Ops::new();
    for key in ["alice", "carol"] {
        let payload = ops.new_payload("backup.force", "host", &[]);
        let sig = ops.our_sign(key, &payload);
        let signers = ops.fresh("allowed_signers");
        std::fs::write(&signers, format!("{key} {}\n", ops.public(key))).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&signers)
            .args(["-I", key, "-n", "felhom-op", "-s"])
            .arg(&sig)
            .stdin(std::fs::File::open(&payload).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Good \"felhom-op\" signature"));
        assert_eq!(ops.verify(&payload, &sig).unwrap()["signer"], key);
    }
}

#[test]
fn every_rejection_reason() {
    let ops = Ops::new();
    let good = ops.new_payload("guest.destroy", "vmid:101", &[]);
    let good_sig = ops.keygen_sign("alice", &good, "felhom-op");
    let garbage = ops.fresh("garbage");
    std::fs::write(
        &garbage,
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    )
    .unwrap();
    let pretty = ops.fresh("pretty");
    let v: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    std::fs::write(&pretty, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let unknown_field = ops.raw_payload(json!({"roles": ["operator"]}));
    let wrong_v = ops.raw_payload(json!({"v": 2}));
    let bad_time = ops.raw_payload(json!({"issued_at": "yesterday"}));
    let other_host = ops.raw_payload(json!({"host_id": "host-2"}));
    let future =
        ops.raw_payload(json!({"issued_at": now_offset(600), "expires_at": now_offset(1200)}));
    let expired =
        ops.raw_payload(json!({"issued_at": now_offset(-1200), "expires_at": now_offset(-600)}));
    let too_long =
        ops.raw_payload(json!({"issued_at": now_offset(-60), "expires_at": now_offset(3 * 86400)}));
    let cases: Vec<(&str, PathBuf, PathBuf)> = vec![
        ("malformed", good.clone(), garbage),
        (
            "malformed",
            unknown_field.clone(),
            ops.keygen_sign("alice", &unknown_field, "felhom-op"),
        ),
        (
            "malformed",
            wrong_v.clone(),
            ops.keygen_sign("alice", &wrong_v, "felhom-op"),
        ),
        (
            "malformed",
            bad_time.clone(),
            ops.keygen_sign("alice", &bad_time, "felhom-op"),
        ),
        (
            "malformed",
            too_long.clone(),
            ops.keygen_sign("alice", &too_long, "felhom-op"),
        ),
        (
            "unknown-key",
            good.clone(),
            ops.keygen_sign("mallory", &good, "felhom-op"),
        ),
        (
            "bad-signature",
            good.clone(),
            ops.keygen_sign("alice", &good, "file"),
        ),
        ("bad-signature", pretty, good_sig.clone()),
        (
            "wrong-host",
            other_host.clone(),
            ops.keygen_sign("alice", &other_host, "felhom-op"),
        ),
        (
            "not-yet-valid",
            future.clone(),
            ops.keygen_sign("alice", &future, "felhom-op"),
        ),
        (
            "expired",
            expired.clone(),
            ops.keygen_sign("alice", &expired, "felhom-op"),
        ),
        (
            "role",
            good.clone(),
            ops.keygen_sign("bob", &good, "felhom-op"),
        ),
    ];
    for (want, payload, sig) in &cases {
        assert_eq!(
            ops.verify(payload, sig).unwrap_err(),
            *want,
            "{}",
            payload.display()
        );
    }
    ops.verify(&good, &good_sig).unwrap();
    assert_eq!(ops.verify(&good, &good_sig).unwrap_err(), "replay");
    // Support may sign its two actions.
    let backup = ops.new_payload("restore_test.run", "vmid:101", &[]);
    ops.verify(&backup, &ops.keygen_sign("bob", &backup, "felhom-op"))
        .unwrap();

    // The audit chain holds every outcome and verifies; tampering is named by entry.
    let j = ops.journal();
    let check = j.audit_verify().unwrap();
    assert_eq!(check.entries as usize, cases.len() + 3);
    assert_eq!(check.first_broken, None);
    let tail = j.audit_tail(3).unwrap();
    assert_eq!(tail[0].entry.outcome, "accepted");
    assert_eq!(tail[1].entry.reason.as_deref(), Some("replay-redelivery"));
    drop(j);
    let db = ops.fx.path("state").join(journal::DB_FILE_NAME);
    let status = Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TRIGGER audit_no_update; UPDATE audit SET outcome = 'accepted' WHERE seq = 6;")
        .status()
        .unwrap();
    assert!(status.success());
    let broken = ops.journal().audit_verify().unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 6);
}

#[test]
fn replay_across_process_restart_and_wire_form() {
    let ops = Ops::new();
    let payload = ops.new_payload("storage.detach", "storage:usb-1", &["--ttl", "5m"]);
    let sig = ops.our_sign("alice", &payload);
    let (code, wire, _) = run(agent()
        .args(["op", "wrap", "--payload"])
        .arg(&payload)
        .arg("--signature")
        .arg(&sig));
    assert_eq!(code, 0);
    let wire_file = ops.fresh("wire");
    std::fs::write(&wire_file, &wire).unwrap();
    let parsed: Value = serde_json::from_str(&wire).unwrap();
    assert!(parsed["signature"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN SSH SIGNATURE-----"));
    let verify_wire = || {
        let mut cmd = agent();
        cmd.args(["op", "verify", "--operators"])
            .arg(ops.fx.path("operators.json"))
            .args(["--host-id", HOST, "--state"])
            .arg(ops.fx.path("state"))
            .arg("--wire")
            .arg(&wire_file);
        outcome(run(&mut cmd))
    };
    // First process accepts; a second, separate process sees the durable record.
    assert_eq!(
        verify_wire().unwrap()["target"],
        json!({"storage": "usb-1"})
    );
    assert_eq!(verify_wire().unwrap_err(), "replay");
    assert_eq!(ops.verify(&payload, &sig).unwrap_err(), "replay");
    // Same op id, retargeted payload: replay (op-id conflict), recorded distinctly.
    let text = std::fs::read_to_string(&payload)
        .unwrap()
        .replace("usb-1", "usb-2");
    let retarget = ops.fresh("payload");
    std::fs::write(&retarget, text).unwrap();
    assert_eq!(
        ops.verify(&retarget, &ops.our_sign("alice", &retarget))
            .unwrap_err(),
        "replay"
    );
    let reasons: Vec<String> = ops
        .journal()
        .audit_tail(4)
        .unwrap()
        .into_iter()
        .map(|e| e.entry.reason.unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "accepted",
            "replay-redelivery",
            "replay-redelivery",
            "replay-op-id"
        ]
    );
}

#[test]
fn sign_through_a_real_ssh_agent() {
    let ops = Ops::new();
    let socket = ops.fx.path("agent.sock");
    let mut agent_proc = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let add = |key: &str| {
        let status = Command::new("ssh-add")
            .arg(ops.key(key))
            .env("SSH_AUTH_SOCK", &socket)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    add("carol");
    let payload = ops.new_payload("guest.restore", "vmid:105", &[]);
    // Only one key loaded: --agent picks it.
    let out = ops.fresh("sig");
    let (code, _, stderr) = run(agent()
        .env("SSH_AUTH_SOCK", &socket)
        .args(["op", "sign", "--agent", "--payload"])
        .arg(&payload)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ops.verify(&payload, &out).unwrap()["signer"], "carol");
    // Two keys loaded: --key KEY.pub chooses.
    add("alice");
    let payload = ops.new_payload("guest.restore", "vmid:105", &[]);
    let out = ops.fresh("sig");
    let (code, _, stderr) = run(agent()
        .env("SSH_AUTH_SOCK", &socket)
        .args(["op", "sign", "--key"])
        .arg(ops.fx.path("alice.pub"))
        .arg("--payload")
        .arg(&payload)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ops.verify(&payload, &out).unwrap()["signer"], "alice");
    let (code, _, stderr) = run(agent()
        .env("SSH_AUTH_SOCK", &socket)
        .args(["op", "sign", "--agent", "--payload"])
        .arg(&payload)
        .arg("--out")
        .arg(ops.fresh("sig")));
    assert_ne!(code, 0);
    assert!(stderr.contains("choose one with --key"), "{stderr}");
    let _ = agent_proc.kill();
    let _ = agent_proc.wait();
}

#[test]
fn sign_refuses_to_overwrite_and_encrypted_keys_and_never_prints_secrets() {
    let ops = Ops::new();
    let payload = ops.new_payload("backup.force", "vmid:101", &[]);
    let sig = ops.our_sign("alice", &payload);
    let before = std::fs::read(&sig).unwrap();
    let sign = |extra: &[&str]| {
        run(agent()
            .args(["op", "sign", "--key"])
            .arg(ops.key("alice"))
            .arg("--payload")
            .arg(&payload)
            .arg("--out")
            .arg(&sig)
            .args(extra))
    };
    let (code, stdout, stderr) = sign(&[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&sig).unwrap(), before);
    let (code, _, _) = sign(&["--force"]);
    assert_eq!(code, 0);
    // ed25519 signatures are deterministic: same bytes again.
    assert_eq!(std::fs::read(&sig).unwrap(), before);
    let private = std::fs::read_to_string(ops.key("alice")).unwrap();
    for line in private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!stdout.contains(line) && !stderr.contains(line));
    }

    // Encrypted key: a clear pointer to ssh-agent.
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(ops.key("locked"))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, stderr) = run(agent()
        .args(["op", "sign", "--key"])
        .arg(ops.key("locked"))
        .arg("--payload")
        .arg(&payload)
        .arg("--out")
        .arg(ops.fresh("sig")));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("encrypted") && stderr.contains("ssh-agent"),
        "{stderr}"
    );

    // A tampered signature: the rejection output carries no signature or key bytes.
    let text = std::fs::read_to_string(&sig).unwrap();
    let tampered = ops.fresh("sig");
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut last = body.last().unwrap().to_string();
    let flip = if last.starts_with('A') { "B" } else { "A" };
    last.replace_range(0..1, flip);
    let mut lines: Vec<String> = body.iter().map(|s| s.to_string()).collect();
    let n = lines.len();
    lines[n - 1] = last;
    std::fs::write(
        &tampered,
        format!(
            "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&mut ops.verify_cmd(&payload, &tampered));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "rejected: bad-signature");
    let key_b64 = ops
        .public("alice")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    for chunk in body.iter().flat_map(|l| l.as_bytes().chunks(12)) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(
            !stderr.contains(chunk) && !stdout.contains(chunk),
            "{stderr}"
        );
    }
    assert!(!stderr.contains(&key_b64[..30]), "{stderr}");
}
