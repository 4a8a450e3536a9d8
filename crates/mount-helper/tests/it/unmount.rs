//! `unmount <UUID>`: only the UUID's shape is checked; the argv is fixed.

use mount_helper::{execute, FsUuid, Request};

use crate::tree::*;

#[test]
fn unmount_runs_systemd_umount_on_the_uuid_mount_point() {
    // No device, no link: unmounting a pulled disk must still work.
    let host = FakeHost::new();
    let recorder = Recorder::new();
    let request = Request::Unmount(FsUuid::parse(VFAT).unwrap());
    execute(&request, &host.paths, &recorder).unwrap();
    assert_eq!(
        recorder.calls(),
        vec![vec![
            "/usr/bin/systemd-umount".to_owned(),
            host.mount_point_text(VFAT)
        ]]
    );
}

#[test]
fn unmount_failures_have_their_codes() {
    let host = FakeHost::new();
    let request = Request::Unmount(FsUuid::parse(UUID).unwrap());
    for (outcome, code, text) in [
        (
            Outcome::Exit(Some(1)),
            13,
            "/usr/bin/systemd-umount exited with status 1",
        ),
        (
            Outcome::Exit(None),
            13,
            "/usr/bin/systemd-umount exited with a signal",
        ),
        (
            Outcome::CannotStart,
            12,
            "cannot start /usr/bin/systemd-umount",
        ),
    ] {
        let err = execute(&request, &host.paths, &Recorder::answering(outcome)).unwrap_err();
        assert_eq!(err.exit_code(), code);
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn system_paths_give_the_fixed_argv() {
    let uuid = FsUuid::parse(UUID).unwrap();
    let argv = mount_helper::unmount_argv(&mount_helper::Paths::system(), &uuid);
    assert_eq!(argv.program, "/usr/bin/systemd-umount");
    assert_eq!(
        argv.args,
        vec![std::ffi::OsString::from(format!(
            "/srv/felhom/mounts/{UUID}"
        ))]
    );
}
