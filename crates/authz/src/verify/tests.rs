//! Unit tests of the verification order, with real ssh-keygen keys and signatures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use time::macros::datetime;

use super::*;
use crate::ports::MemoryLedger;

const NOW: OffsetDateTime = datetime!(2026-11-21 10:05:00 UTC);

/// Keys made by ssh-keygen in a temp dir.
pub(crate) struct Keys {
    dir: tempfile::TempDir,
    n: AtomicUsize,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
            n: AtomicUsize::new(0),
        }
    }

    /// Makes a key (`ed25519` or `ecdsa`) and returns its private key path.
    pub(crate) fn make(&self, name: &str, kind: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
            .arg(&path);
        if kind == "ecdsa" {
            cmd.args(["-b", "256"]);
        }
        assert!(cmd.stdin(Stdio::null()).status().unwrap().success());
        path
    }

    pub(crate) fn public(&self, key: &Path) -> String {
        std::fs::read_to_string(key.with_extension("pub")).unwrap()
    }

    /// `ssh-keygen -Y sign -n NAMESPACE` over `payload`, into a fresh file.
    pub(crate) fn sign(&self, key: &Path, payload: &[u8], namespace: &str) -> String {
        let i = self.n.fetch_add(1, Ordering::SeqCst);
        let msg = self.dir.path().join(format!("payload-{i}"));
        std::fs::write(&msg, payload).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(key)
            .arg(&msg)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(msg.with_extension("sig"))
            .or_else(|_| std::fs::read_to_string(format!("{}.sig", msg.display())))
            .unwrap()
    }
}

fn payload(overrides: Value) -> Vec<u8> {
    let mut v = json!({
        "v": 1, "op_id": "op-20261121-0001", "nonce": "n0nce-n0nce-n0nce-01",
        "issued_at": "2026-11-21T10:00:00Z", "expires_at": "2026-11-21T10:15:00Z",
        "host_id": "host-1", "action": "guest.destroy", "target": {"vmid": 101}, "params": {}
    });
    for (k, val) in overrides.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

struct Setup {
    keys: Keys,
    alice: PathBuf,
    bob: PathBuf,
    mallory: PathBuf,
    operators: Operators,
}

fn setup() -> Setup {
    let keys = Keys::new();
    let alice = keys.make("alice", "ed25519");
    let bob = keys.make("bob", "ecdsa");
    let mallory = keys.make("mallory", "ed25519");
    let file = json!({"operators": [
        {"principal": "alice", "public_key": keys.public(&alice), "roles": ["operator"]},
        {"principal": "bob", "public_key": keys.public(&bob), "roles": ["support"]},
    ]});
    let operators = Operators::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
    Setup {
        keys,
        alice,
        bob,
        mallory,
        operators,
    }
}

fn run(
    s: &Setup,
    ledger: &mut MemoryLedger,
    payload: &[u8],
    sig: &str,
) -> Result<VerifiedOp, Reason> {
    let policy = Policy::new("host-1", NOW);
    let input = SignedInput::Parts {
        payload,
        signature: sig.as_bytes(),
    };
    match verify(input, &s.operators, &policy, ledger) {
        Ok(op) => Ok(op),
        Err(VerifyError::Rejected(r)) => Err(r.reason()),
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn accepts_ed25519_and_ecdsa_and_binds_action_and_target() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    let p = payload(json!({}));
    let op = run(&s, &mut ledger, &p, &s.keys.sign(&s.alice, &p, NAMESPACE)).unwrap();
    assert_eq!(op.signer(), "alice");
    assert!(op.authorizes(Action::GuestDestroy, &Target::Vmid(101)));
    assert!(!op.authorizes(Action::GuestDestroy, &Target::Vmid(102)));
    assert!(!op.authorizes(Action::BackupForce, &Target::Vmid(101)));
    // It may start until the moment verification itself would say `expired`, not after.
    let skew = Policy::new("host-1", NOW).clock_skew;
    assert_eq!(op.start_by(), op.expires_at() + skew);
    assert!(op.may_start(NOW));
    assert!(op.may_start(op.expires_at() + skew));
    assert!(!op.may_start(op.expires_at() + skew + time::Duration::seconds(1)));

    let p = payload(
        json!({"op_id": "op-20261121-0002", "nonce": "n0nce-n0nce-n0nce-02",
                           "action": "backup.force"}),
    );
    let op = run(&s, &mut ledger, &p, &s.keys.sign(&s.bob, &p, NAMESPACE)).unwrap();
    assert_eq!(op.signer(), "bob");
    assert!(op.authorizes(Action::BackupForce, &Target::Vmid(101)));
    assert!(!op.authorizes(Action::GuestDestroy, &Target::Vmid(101)));
    assert_eq!(ledger.events.len(), 2);
    assert!(ledger
        .events
        .iter()
        .all(|e| e.outcome == AuditOutcome::Accepted));
}

#[test]
fn every_reason_in_order() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    let good = payload(json!({}));
    let good_sig = s.keys.sign(&s.alice, &good, NAMESPACE);
    let signed = |p: &[u8]| s.keys.sign(&s.alice, p, NAMESPACE);

    // malformed: garbage signature; signed payload with an unknown field; lifetime too long.
    assert_eq!(
        run(&s, &mut ledger, &good, "nonsense").unwrap_err(),
        Reason::Malformed
    );
    let extra = payload(json!({"roles": ["operator"]}));
    assert_eq!(
        run(&s, &mut ledger, &extra, &signed(&extra)).unwrap_err(),
        Reason::Malformed
    );
    let long = payload(json!({"expires_at": "2026-11-23T10:00:00Z"}));
    assert_eq!(
        run(&s, &mut ledger, &long, &signed(&long)).unwrap_err(),
        Reason::Malformed
    );
    // unknown-key
    let by_mallory = s.keys.sign(&s.mallory, &good, NAMESPACE);
    assert_eq!(
        run(&s, &mut ledger, &good, &by_mallory).unwrap_err(),
        Reason::UnknownKey
    );
    // bad-signature: other namespace; other bytes; whitespace-changed payload.
    let git_ns = s.keys.sign(&s.alice, &good, "git");
    assert_eq!(
        run(&s, &mut ledger, &good, &git_ns).unwrap_err(),
        Reason::BadSignature
    );
    let other = payload(json!({"target": {"vmid": 102}}));
    assert_eq!(
        run(&s, &mut ledger, &other, &good_sig).unwrap_err(),
        Reason::BadSignature
    );
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&good).unwrap()).unwrap();
    assert_eq!(
        run(&s, &mut ledger, &pretty, &good_sig).unwrap_err(),
        Reason::BadSignature
    );
    // wrong-host
    let elsewhere = payload(json!({"host_id": "host-2"}));
    assert_eq!(
        run(&s, &mut ledger, &elsewhere, &signed(&elsewhere)).unwrap_err(),
        Reason::WrongHost
    );
    // not-yet-valid (beyond the 120 s skew) vs within the skew
    let future =
        payload(json!({"issued_at": "2026-11-21T10:07:01Z", "expires_at": "2026-11-21T10:20:00Z"}));
    assert_eq!(
        run(&s, &mut ledger, &future, &signed(&future)).unwrap_err(),
        Reason::NotYetValid
    );
    // expired (beyond the skew)
    let old =
        payload(json!({"issued_at": "2026-11-21T09:00:00Z", "expires_at": "2026-11-21T10:02:59Z"}));
    assert_eq!(
        run(&s, &mut ledger, &old, &signed(&old)).unwrap_err(),
        Reason::Expired
    );
    // role: bob (support) signs a destroy
    let bob_destroy = s.keys.sign(&s.bob, &good, NAMESPACE);
    assert_eq!(
        run(&s, &mut ledger, &good, &bob_destroy).unwrap_err(),
        Reason::Role
    );
    // accepted once, then replay
    run(&s, &mut ledger, &good, &good_sig).unwrap();
    assert_eq!(
        run(&s, &mut ledger, &good, &good_sig).unwrap_err(),
        Reason::Replay
    );

    let reasons: Vec<&str> = ledger.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "malformed",
            "malformed",
            "malformed",
            "unknown-key",
            "bad-signature",
            "bad-signature",
            "bad-signature",
            "wrong-host",
            "not-yet-valid",
            "expired",
            "role",
            "accepted",
            "replay-redelivery"
        ]
    );
    // The unknown key is named by fingerprint; the bad signature by principal only.
    assert!(ledger.events[3]
        .actor
        .as_deref()
        .unwrap()
        .starts_with("key SHA256:"));
    assert_eq!(ledger.events[4].actor.as_deref(), Some("alice"));
    assert_eq!(
        ledger.events[4].op_id, None,
        "fields are not trusted before the signature"
    );
}

#[test]
fn skew_and_lifetime_follow_the_policy() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    // Issued 100 s in the future: inside the default skew.
    let p =
        payload(json!({"issued_at": "2026-11-21T10:06:40Z", "expires_at": "2026-11-21T10:20:00Z"}));
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    run(&s, &mut ledger, &p, &sig).unwrap();
    // With a 60 s skew the same shape is not yet valid.
    let p = payload(
        json!({"op_id": "op-20261121-0009", "nonce": "n0nce-n0nce-n0nce-09",
                           "issued_at": "2026-11-21T10:06:40Z", "expires_at": "2026-11-21T10:20:00Z"}),
    );
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    let mut policy = Policy::new("host-1", NOW);
    policy.clock_skew = std::time::Duration::from_secs(60);
    let input = SignedInput::Parts {
        payload: &p,
        signature: sig.as_bytes(),
    };
    match verify(input, &s.operators, &policy, &mut ledger) {
        Err(VerifyError::Rejected(r)) => assert_eq!(r.reason(), Reason::NotYetValid),
        other => panic!("{other:?}"),
    }
    // Max lifetime 10 minutes: a 15-minute op is malformed.
    policy.clock_skew = crate::DEFAULT_CLOCK_SKEW;
    policy.max_lifetime = std::time::Duration::from_secs(600);
    let p = payload(json!({"op_id": "op-20261121-0010", "nonce": "n0nce-n0nce-n0nce-10"}));
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    let input = SignedInput::Parts {
        payload: &p,
        signature: sig.as_bytes(),
    };
    match verify(input, &s.operators, &policy, &mut ledger) {
        Err(VerifyError::Rejected(r)) => {
            assert_eq!(r.reason(), Reason::Malformed);
            assert!(r.detail().contains("lifetime"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn replay_kinds_are_told_apart_and_redelivery_returns_the_outcome() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    let p = payload(json!({}));
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    run(&s, &mut ledger, &p, &sig).unwrap();
    ledger.finish(
        "op-20261121-0001",
        crate::RecordedState::Succeeded,
        Some(r#"{"ok":true}"#),
    );
    let policy = Policy::new("host-1", NOW);
    let input = SignedInput::Parts {
        payload: &p,
        signature: sig.as_bytes(),
    };
    match verify(input, &s.operators, &policy, &mut ledger) {
        Err(VerifyError::Rejected(r)) => {
            assert_eq!(r.to_string(), "rejected: replay");
            assert_eq!(r.audit_reason(), "replay-redelivery");
            let recorded = r.redelivery().unwrap();
            assert_eq!(recorded.state, crate::RecordedState::Succeeded);
            assert_eq!(recorded.outcome.as_deref(), Some(r#"{"ok":true}"#));
        }
        other => panic!("{other:?}"),
    }
    // Same op id, different payload (retargeted): replay-op-id.
    let retarget = payload(json!({"nonce": "n0nce-n0nce-n0nce-77", "target": {"vmid": 102}}));
    assert_eq!(
        run(
            &s,
            &mut ledger,
            &retarget,
            &s.keys.sign(&s.alice, &retarget, NAMESPACE)
        )
        .unwrap_err(),
        Reason::Replay
    );
    // New op id, reused nonce: replay-nonce.
    let reuse = payload(json!({"op_id": "op-20261121-0003"}));
    assert_eq!(
        run(
            &s,
            &mut ledger,
            &reuse,
            &s.keys.sign(&s.alice, &reuse, NAMESPACE)
        )
        .unwrap_err(),
        Reason::Replay
    );
    let tail: Vec<&str> = ledger
        .events
        .iter()
        .rev()
        .take(2)
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(tail, ["replay-nonce", "replay-op-id"]);
}

#[test]
fn a_failing_store_never_accepts() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    ledger.fail_next = true;
    let p = payload(json!({}));
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    let input = SignedInput::Parts {
        payload: &p,
        signature: sig.as_bytes(),
    };
    let policy = Policy::new("host-1", NOW);
    assert!(matches!(
        verify(input, &s.operators, &policy, &mut ledger),
        Err(VerifyError::Ledger(_))
    ));
    assert!(ledger.events.is_empty());
    // The op was not recorded, so it is accepted once the store works.
    assert!(verify(input, &s.operators, &policy, &mut ledger).is_ok());
}

#[test]
fn wire_form_round_trip_and_audit_never_holds_signature_bytes() {
    let s = setup();
    let mut ledger = MemoryLedger::default();
    let p = payload(json!({}));
    let sig = s.keys.sign(&s.alice, &p, NAMESPACE);
    let wire = crate::wire::wrap(&p, &sig);
    let policy = Policy::new("host-1", NOW);
    let op = verify(
        SignedInput::Wire(wire.as_bytes()),
        &s.operators,
        &policy,
        &mut ledger,
    )
    .unwrap();
    assert_eq!(op.to_json()["target"], json!({"vmid": 101}));
    // A bad signature's audit record holds no base64 of the signature or the key.
    let bad = sig.replace("AAAAQ", "AAAAR");
    let _ = verify(
        SignedInput::Parts {
            payload: &p,
            signature: bad.as_bytes(),
        },
        &s.operators,
        &policy,
        &mut ledger,
    );
    let body: String = sig.lines().filter(|l| !l.starts_with("-----")).collect();
    let key_b64 = s
        .keys
        .public(&s.alice)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    for e in &ledger.events {
        let text = format!("{e:?}");
        for chunk in body.as_bytes().chunks(16) {
            assert!(
                !text.contains(std::str::from_utf8(chunk).unwrap()),
                "{text}"
            );
        }
        assert!(!text.contains(&key_b64[20..40]), "{text}");
    }
}

/// Signs like a FIDO authenticator would for an `sk-ssh-ed25519@openssh.com` key: the
/// ed25519 signature covers SHA-256(application) ‖ flags ‖ counter ‖ SHA-256(SSHSIG blob)
/// (OpenSSH PROTOCOL.u2f). No hardware here, so a software ed25519 key plays the token.
fn sk_signature(private: &ssh_key::PrivateKey, payload: &[u8], flags: u8) -> (String, String) {
    let keypair = private.key_data().ed25519().unwrap();
    fn raw_sign<K: ssh_key::SigningKey>(key: &K, data: &[u8]) -> Vec<u8> {
        key.try_sign(data).unwrap().as_bytes().to_vec()
    }
    let application = "ssh:";
    let counter = 7u32.to_be_bytes();
    let blob = crate::sign::signed_data(payload).unwrap();
    let mut data = Sha256::digest(application.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter);
    data.extend_from_slice(&Sha256::digest(&blob));
    let mut sig = raw_sign(private, &data);
    sig.push(flags);
    sig.extend_from_slice(&counter);
    let public = ssh_key::public::KeyData::SkEd25519(ssh_key::public::SkEd25519::new(
        keypair.public,
        application,
    ));
    let signature = ssh_key::Signature::new(ssh_key::Algorithm::SkEd25519, sig).unwrap();
    let sshsig =
        ssh_key::SshSig::new(public.clone(), NAMESPACE, HashAlg::Sha512, signature).unwrap();
    let openssh = ssh_key::PublicKey::new(public, "token")
        .to_openssh()
        .unwrap();
    (sshsig.to_pem(ssh_key::LineEnding::LF).unwrap(), openssh)
}

#[test]
fn fido_sk_ed25519_needs_user_presence() {
    let keys = Keys::new();
    let path = keys.make("token", "ed25519");
    let private = ssh_key::PrivateKey::read_openssh_file(&path).unwrap();
    let keypair = &private;
    let p = payload(json!({}));
    let (touched, openssh) = sk_signature(keypair, &p, 0x01);
    let file =
        json!({"operators": [{"principal": "sam", "public_key": openssh, "roles": ["operator"]}]});
    let operators = Operators::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
    let policy = Policy::new("host-1", NOW);
    let mut ledger = MemoryLedger::default();
    let (untouched, _) = sk_signature(keypair, &p, 0x00);
    match verify(
        SignedInput::Parts {
            payload: &p,
            signature: untouched.as_bytes(),
        },
        &operators,
        &policy,
        &mut ledger,
    ) {
        Err(VerifyError::Rejected(r)) => {
            assert_eq!(r.reason(), Reason::BadSignature);
            assert!(r.detail().contains("user presence"));
        }
        other => panic!("{other:?}"),
    }
    // Flipping the flag after signing breaks the signature itself.
    let (mut forged, _) = sk_signature(keypair, &p, 0x00);
    let sig = crate::parse_armored(forged.as_bytes()).unwrap();
    let mut bytes = sig.signature_bytes().to_vec();
    let at = bytes.len() - 5;
    bytes[at] = 0x01;
    let resigned = ssh_key::SshSig::new(
        sig.public_key().clone(),
        NAMESPACE,
        HashAlg::Sha512,
        ssh_key::Signature::new(ssh_key::Algorithm::SkEd25519, bytes).unwrap(),
    )
    .unwrap();
    forged = resigned.to_pem(ssh_key::LineEnding::LF).unwrap();
    match verify(
        SignedInput::Parts {
            payload: &p,
            signature: forged.as_bytes(),
        },
        &operators,
        &policy,
        &mut ledger,
    ) {
        Err(VerifyError::Rejected(r)) => assert_eq!(r.reason(), Reason::BadSignature),
        other => panic!("{other:?}"),
    }
    let op = verify(
        SignedInput::Parts {
            payload: &p,
            signature: touched.as_bytes(),
        },
        &operators,
        &policy,
        &mut ledger,
    )
    .unwrap();
    assert_eq!(op.signer(), "sam");
}
