//! The real binary: argv handling, the one-line stderr message and the exit codes. Only inputs
//! that are refused before anything runs are used here; the binary reads the real host's fixed
//! paths.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_felhom-mount-helper"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.stdout.is_empty());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(args: &[&str], code: i32, starts: &str) {
    let (status, stderr) = run(args);
    assert_eq!(status, Some(code), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(starts), "{args:?}: {stderr}");
}

const U: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

#[test]
fn missing_and_extra_arguments_are_usage_errors() {
    for args in [
        &[][..],
        &["mount"][..],
        &["unmount"][..],
        &[U][..],
        &["mount", U, "extra"][..],
        &["mount", U, U][..],
        &["unmount", U, "/"][..],
        &["--help"][..],
        &["mount", "--", U][..],
    ] {
        assert_refused(args, 2, "felhom-mount-helper: usage: ");
    }
}

#[test]
fn unknown_verb_is_a_usage_error() {
    for verb in ["umount", "MOUNT", "remount", "-m"] {
        assert_refused(&[verb, U], 2, "felhom-mount-helper: usage: ");
    }
}

#[test]
fn malformed_uuid_is_refused_before_anything_runs() {
    for uuid in [
        "",
        "../../etc",
        "/dev/sda1",
        "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
        "1a2b-3c4d",
        "--options=exec",
        "1A2B-3C4D /",
    ] {
        assert_refused(&["mount", uuid], 3, "felhom-mount-helper: invalid fs uuid");
        assert_refused(
            &["unmount", uuid],
            3,
            "felhom-mount-helper: invalid fs uuid",
        );
    }
}

#[test]
fn unknown_uuid_on_this_machine_is_link_missing() {
    // The test machine has no filesystem with this UUID, so the helper stops at check 1.
    let uuid = "00000000-0000-4000-8000-00000000f00d";
    assert_refused(
        &["mount", uuid],
        4,
        "felhom-mount-helper: no filesystem with this uuid: /dev/disk/by-uuid/",
    );
}
