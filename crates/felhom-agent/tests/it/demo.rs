//! `felhom-agent demo --fast` end to end: the real simulator, reference hub and agent daemon
//! as processes. The story's key lines must appear (each one is printed only after the demo
//! read the fact from a report, the hub or the simulator), no secret may be printed, and every
//! child and the temp dir must be gone afterwards — also after Ctrl-C.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{process_exists, signal, Signal};

use crate::{agent, run};

/// The demo command, with the simulator and hub binaries located (and built if missing) by
/// this test process, where cargo's environment is available.
fn demo() -> Command {
    let sim = testkit::sim_binary().expect("felhom-pve-sim");
    let hub = testkit::hub_binary().expect("felhom-hub-sim");
    let mut cmd = agent();
    cmd.env("FELHOM_PVE_SIM", sim)
        .env("FELHOM_HUB_SIM", hub)
        .args(["demo", "--fast"]);
    cmd
}

/// Every distinct `pid N` the narration names (simulator, hub, agent).
fn pids(out: &str) -> Vec<u32> {
    let set: BTreeSet<u32> = out
        .split("pid ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    set.into_iter().collect()
}

/// The work dir the narration names.
fn work_dir(out: &str) -> PathBuf {
    let rest = out
        .split("work dir ")
        .nth(1)
        .unwrap_or_else(|| panic!("no work dir in:\n{out}"));
    PathBuf::from(rest.split_whitespace().next().unwrap())
}

/// Waits up to 10 s for every pid to be gone.
fn assert_gone(pids: &[u32], out: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| process_exists(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| process_exists(p))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}\n{out}");
}

/// Nothing secret-shaped in the output: the Proxmox tokens, the hub key, the private key.
fn assert_no_secrets(out: &str) {
    for secret in [
        "felhom-agent@pve!",
        "root@pam!",
        "hubsim-",
        "PRIVATE KEY",
        "fla_",
    ] {
        assert!(!out.contains(secret), "{secret:?} printed:\n{out}");
    }
}

#[test]
fn demo_tells_the_story_from_real_reports_and_cleans_up() {
    let (code, out, err) = run(&mut demo());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for expected in [
        "3 containers: 100 running, 101 stopped, 102 running",
        "agent checked in: report of",
        // 2: naming guests does not adopt them; the adoption is held for a signature.
        "held: guest.adopt of guests 100, 101, 102 needs an operator signature",
        "the simulator still shows 100 running, 101 stopped, 102 running",
        // 3: signed adoptions, then converged, per guest, from the report (and the description from the simulator).
        "shows generation 1 applied",
        "guest 100 ct100: running (was running), memory 512 MiB, managed",
        "guest 101 ct101: running (was stopped), memory 1024 MiB (was 512 MiB), \
         description \"resized by the hub (felhom demo)\", managed",
        "guest 102 ct102: stopped (was running), memory 512 MiB, managed",
        // 4: held for a signature, guest still there.
        "held: guest.destroy of guest 102 needs an operator signature",
        "the simulator still has guest 102 (stopped)",
        // 5: the signed op executed, the guest gone.
        " done: verified (signer demo-operator, key SHA256:",
        "guest 102 is gone from the simulator; guests now 100, 101",
        // 6: a controller's backup through the local API, pruned by the agent's retention.
        "guest 100 has 3 older backups on storage local",
        "/backup (certificate pinned) -> 202 Accepted, op la-backup-100-",
        "guest 100 now has 2 backups on local",
        "GET /backup/status -> succeeded",
        // 7: the dead-man's switch raised and cleared.
        "hub alert: demo-host missed-check-in (silent ",
        "alert cleared: the agent checked in again",
        "reporting again: report of ",
        "== 8. done",
        "audit entries of the agent's hash-chained log",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The outcome line names the op id the operator created and posted.
    let op_id = out
        .split("op wrap  ->  ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no op id in:\n{out}"));
    assert!(
        out.contains(&format!("signed op {op_id} done")),
        "op {op_id} not reported done:\n{out}"
    );
    assert_no_secrets(&out);
    assert_no_secrets(&err);
    let dir = work_dir(&out);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let pids = pids(&out);
    assert_eq!(pids.len(), 3, "simulator, hub and agent pids in:\n{out}");
    assert_gone(&pids, &out);
}

#[test]
fn ctrl_c_stops_every_child_and_removes_the_temp_dir() {
    let mut child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(stdout).lines();
    // Interrupt once the agent has checked in: all three children are running then.
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.contains("agent checked in") {
            break;
        }
    }
    assert!(out.contains("agent checked in"), "{out}");
    let pids = pids(&out);
    assert_eq!(pids.len(), 3, "{out}");
    assert!(pids.iter().all(|&p| process_exists(p)), "{out}");
    let dir = work_dir(&out);
    assert!(dir.exists());

    signal(child.id(), Signal::Int).unwrap();
    for line in lines {
        out.push_str(&line.unwrap());
        out.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains("interrupted: stopping the agent, the hub and the simulator"));
    assert!(out.contains("stopped; temp files removed"), "{out}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_gone(&pids, &out);
    assert_no_secrets(&out);
}
