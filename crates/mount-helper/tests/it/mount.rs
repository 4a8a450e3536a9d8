//! `mount <UUID>`: the exact argv when every check passes, and one refusal per check. Every
//! refusal asserts its exit code and that the runner was never called.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use mount_helper::{execute, Error, FsUuid, Request};

use crate::tree::*;

fn mount(host: &FakeHost, uuid: &str) -> (Result<(), Error>, Recorder) {
    let recorder = Recorder::new();
    let request = Request::Mount(FsUuid::parse(uuid).unwrap());
    (execute(&request, &host.paths, &recorder), recorder)
}

/// Asserts a refusal with `code` and that nothing ran; returns the error's message.
fn refused(host: &FakeHost, uuid: &str, code: u8) -> String {
    let (result, recorder) = mount(host, uuid);
    let err = result.expect_err("the mount was not refused");
    assert_eq!(err.exit_code(), code, "{err}");
    assert!(recorder.calls().is_empty(), "ran {:?}", recorder.calls());
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    message
}

fn expected_argv(host: &FakeHost, uuid: &str) -> Vec<String> {
    vec![
        "/usr/bin/systemd-mount".to_owned(),
        "--no-block".to_owned(),
        "--collect".to_owned(),
        "--options=nosuid,nodev,noexec".to_owned(),
        host.link_text(uuid),
        host.mount_point_text(uuid),
    ]
}

#[test]
fn usb_partition_is_mounted_with_the_pinned_argv() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    let (result, recorder) = mount(&host, UUID);
    result.unwrap();
    assert_eq!(recorder.calls(), vec![expected_argv(&host, UUID)]);
}

#[test]
fn usb_whole_disk_filesystem_and_vfat_serial_are_mounted() {
    let host = FakeHost::with_usb_stick();
    host.link(VFAT, "../../sdb");
    let (result, recorder) = mount(&host, VFAT);
    result.unwrap();
    assert_eq!(recorder.calls(), vec![expected_argv(&host, VFAT)]);
}

#[test]
fn an_existing_empty_mount_point_directory_is_fine() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::create_dir(host.paths.mount_root.join(UUID)).unwrap();
    let (result, _) = mount(&host, UUID);
    result.unwrap();
}

#[test]
fn check_reports_the_device_and_bus() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    let checked =
        mount_helper::check_mountable(&host.paths, &FsUuid::parse(UUID).unwrap()).unwrap();
    assert_eq!(checked.name, "sdb1");
    assert_eq!(checked.usb_bus, "usb2");
    assert_eq!(
        checked.dev,
        mount_helper::DevNum {
            major: 8,
            minor: 17
        }
    );
}

#[test]
fn missing_link_is_refused() {
    let host = FakeHost::with_usb_stick();
    let message = refused(&host, UUID, 4);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn a_link_for_another_uuid_does_not_help() {
    // The device of UUID B cannot be mounted under A's name: the link is looked up by A.
    let host = FakeHost::with_usb_stick();
    host.link(VFAT, "../../sdb1");
    refused(&host, UUID, 4);
}

#[test]
fn dangling_link_is_not_a_block_device() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdz9");
    let message = refused(&host, UUID, 5);
    assert!(message.contains("dangling"), "{message}");
}

#[test]
fn link_outside_dev_is_not_a_block_device() {
    let host = FakeHost::with_usb_stick();
    fs::create_dir_all(host.path("etc")).unwrap();
    fs::write(host.path("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    host.link(UUID, &host.path("etc/passwd").display().to_string());
    let message = refused(&host, UUID, 5);
    assert!(message.contains("not to a device node"), "{message}");
    // Into a subdirectory of /dev (e.g. /dev/mapper/x, /dev/shm/x) is not a node either.
    let host = FakeHost::with_usb_stick();
    fs::create_dir_all(host.path("dev/shm")).unwrap();
    fs::write(host.path("dev/shm/sdb1"), "").unwrap();
    host.link(UUID, "../../shm/sdb1");
    refused(&host, UUID, 5);
}

#[test]
fn node_the_kernel_does_not_know_is_not_a_block_device() {
    let host = FakeHost::with_usb_stick();
    fs::write(host.path("dev/fakedisk"), "").unwrap();
    host.link(UUID, "../../fakedisk");
    let message = refused(&host, UUID, 5);
    assert!(message.contains("no block device fakedisk"), "{message}");
}

#[test]
fn sysfs_entry_without_dev_number_is_not_a_block_device() {
    let host = FakeHost::with_usb_stick();
    fs::write(
        host.path("sys/devices").join(USB_PART).join("dev"),
        "garbage\n",
    )
    .unwrap();
    host.link(UUID, "../../sdb1");
    let message = refused(&host, UUID, 5);
    assert!(message.contains("not major:minor"), "{message}");

    let host = FakeHost::with_usb_stick();
    fs::remove_file(host.path("sys/devices").join(USB_PART).join("dev")).unwrap();
    host.link(UUID, "../../sdb1");
    refused(&host, UUID, 5);
}

#[test]
fn sata_disk_is_not_usb() {
    let host = FakeHost::with_usb_stick();
    host.bus("pci0000:00/0000:00:17.0", "pci");
    host.block("sda1", SATA_PART, "8:1");
    host.link(UUID, "../../sda1");
    let message = refused(&host, UUID, 6);
    assert!(message.contains("sda1 is not a USB device"), "{message}");
}

#[test]
fn nvme_drive_is_not_usb() {
    let host = FakeHost::with_usb_stick();
    host.block("nvme0n1p3", NVME_PART, "259:3");
    host.link(UUID, "../../nvme0n1p3");
    refused(&host, UUID, 6);
}

#[test]
fn device_mapper_volume_is_not_usb() {
    // An LVM-thin volume: another guest's disk on an LVM-thin host.
    let host = FakeHost::with_usb_stick();
    host.block("dm-3", DM, "252:3");
    host.link(UUID, "../../dm-3");
    refused(&host, UUID, 6);
}

#[test]
fn a_usb_like_directory_name_without_the_usb_subsystem_is_not_usb() {
    let host = FakeHost::new();
    host.bus("pci0000:00/0000:00:1f.0/usb3", "pci");
    host.block(
        "sdc1",
        "pci0000:00/0000:00:1f.0/usb3/block/sdc/sdc1",
        "8:33",
    );
    host.link(UUID, "../../sdc1");
    refused(&host, UUID, 6);
    // ... and a missing subsystem link is no evidence either.
    let host = FakeHost::new();
    host.block("sdc1", "platform/usb4/block/sdc/sdc1", "8:33");
    host.link(UUID, "../../sdc1");
    refused(&host, UUID, 6);
}

#[test]
fn class_entry_pointing_outside_sys_devices_is_not_usb() {
    let host = FakeHost::with_usb_stick();
    // A class entry that is a plain directory, not a link into /sys/devices.
    let dir = host.paths.sys_class_block.join("sdx1");
    fs::create_dir_all(dir.join("usb2")).unwrap();
    fs::write(dir.join("dev"), "8:97\n").unwrap();
    fs::write(host.path("dev/sdx1"), "").unwrap();
    host.link(UUID, "../../sdx1");
    refused(&host, UUID, 6);
}

#[test]
fn device_with_holders_is_refused() {
    // A USB disk that is an LVM physical volume or a LUKS container in use.
    let host = FakeHost::with_usb_stick();
    let holders = host.path("sys/devices").join(USB_PART).join("holders");
    symlink(
        "../../../../../../../../../../virtual/block/dm-0",
        holders.join("dm-0"),
    )
    .unwrap();
    host.link(UUID, "../../sdb1");
    let message = refused(&host, UUID, 9);
    assert!(message.contains("in use by dm-0"), "{message}");
}

#[test]
fn device_mounted_elsewhere_is_refused() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    host.mounted("90 22 8:17 / /media/stick rw,relatime shared:40 - ext4 /dev/sdb1 rw");
    let message = refused(&host, UUID, 7);
    assert!(
        message.contains("already mounted at /media/stick"),
        "{message}"
    );
}

#[test]
fn device_mounted_is_found_by_number_whatever_the_source() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    host.mounted("90 22 8:17 / /mnt rw - ext4 /dev/root rw");
    refused(&host, UUID, 7);
}

#[test]
fn btrfs_device_mounted_is_found_by_source() {
    // btrfs reports an anonymous device number (0:N) in field 3.
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    host.mounted("91 22 0:45 / /srv/x rw,relatime - btrfs /dev/sdb1 rw");
    refused(&host, UUID, 7);

    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    let line = format!(
        "91 22 0:45 / /srv/x rw,relatime - btrfs {} rw",
        host.link_text(UUID)
    );
    host.mounted(&line);
    refused(&host, UUID, 7);
}

#[test]
fn mount_point_in_use_is_refused() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    let line = format!(
        "92 22 0:50 / {} rw - tmpfs tmpfs rw",
        host.mount_point_text(UUID)
    );
    host.mounted(&line);
    let message = refused(&host, UUID, 8);
    assert!(message.contains("already a mount point"), "{message}");
}

#[test]
fn malformed_mount_table_fails_closed() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    host.mounted("this is not a mountinfo line");
    let message = refused(&host, UUID, 11);
    assert!(message.contains("line 4"), "{message}");
}

#[test]
fn unreadable_mount_table_fails_closed() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::remove_file(&host.paths.mountinfo).unwrap();
    refused(&host, UUID, 11);
}

#[test]
fn symlinked_mount_point_is_refused() {
    // A symlink at <root>/<uuid> would redirect the mount (to /etc, say).
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::create_dir_all(host.path("etc")).unwrap();
    symlink(host.path("etc"), host.paths.mount_root.join(UUID)).unwrap();
    let message = refused(&host, UUID, 10);
    assert!(message.contains("not a directory"), "{message}");
}

#[test]
fn mount_point_that_is_a_file_is_refused() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::write(host.paths.mount_root.join(UUID), "").unwrap();
    refused(&host, UUID, 10);
}

#[test]
fn writable_or_symlinked_or_missing_mount_root_is_refused() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::set_permissions(&host.paths.mount_root, fs::Permissions::from_mode(0o777)).unwrap();
    let message = refused(&host, UUID, 10);
    assert!(message.contains("writable by group or others"), "{message}");

    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::remove_dir(&host.paths.mount_root).unwrap();
    fs::create_dir_all(host.path("elsewhere")).unwrap();
    symlink(host.path("elsewhere"), &host.paths.mount_root).unwrap();
    refused(&host, UUID, 10);

    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    fs::remove_dir(&host.paths.mount_root).unwrap();
    let message = refused(&host, UUID, 10);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn failing_systemd_mount_is_an_error_after_the_checks() {
    let host = FakeHost::with_usb_stick();
    host.link(UUID, "../../sdb1");
    let recorder = Recorder::answering(Outcome::Exit(Some(1)));
    let request = Request::Mount(FsUuid::parse(UUID).unwrap());
    let err = execute(&request, &host.paths, &recorder).unwrap_err();
    assert_eq!(err.exit_code(), 13);
    assert_eq!(
        err.to_string(),
        "/usr/bin/systemd-mount exited with status 1"
    );
    assert_eq!(recorder.calls().len(), 1);
}
