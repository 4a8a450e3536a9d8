//! Running systemd-mount and systemd-umount: the argv, and the [`Runner`] seam.

use std::ffi::OsString;
use std::io;
use std::process::{Command, Stdio};

use crate::check::Checked;
use crate::paths::Paths;
use crate::uuid::FsUuid;

/// `/usr/bin/systemd-mount` (systemd, Debian 12/13).
pub const SYSTEMD_MOUNT: &str = "/usr/bin/systemd-mount";
/// `/usr/bin/systemd-umount`.
pub const SYSTEMD_UMOUNT: &str = "/usr/bin/systemd-umount";
/// The only environment the tools get: a fixed PATH (sudo's `env_reset` already dropped the
/// agent's; the helper drops sudo's too).
pub const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The options every mount gets. A customer's USB disk is data, never code: no setuid binaries,
/// no device nodes, no executables.
pub const MOUNT_OPTIONS: &str = "--options=nosuid,nodev,noexec";

/// One command line: an absolute program path and its arguments, no shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// The absolute path of the tool.
    pub program: &'static str,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// `systemd-mount --no-block --collect --options=nosuid,nodev,noexec <link> <mount point>`.
///
/// `--no-block` returns once the unit is queued (the agent watches the mount point);
/// `--collect` lets systemd drop the unit when it fails, so a pulled disk leaves no failed unit.
/// The device is the by-uuid link that was checked and the mount point is derived from the same
/// UUID, so device A onto mount point B cannot be expressed.
pub fn mount_argv(checked: &Checked) -> Argv {
    Argv {
        program: SYSTEMD_MOUNT,
        args: vec![
            "--no-block".into(),
            "--collect".into(),
            MOUNT_OPTIONS.into(),
            checked.link.clone().into(),
            checked.mount_point.clone().into(),
        ],
    }
}

/// `systemd-umount <mount root>/<uuid>`.
pub fn unmount_argv(paths: &Paths, uuid: &FsUuid) -> Argv {
    Argv {
        program: SYSTEMD_UMOUNT,
        args: vec![paths.mount_point(uuid).into()],
    }
}

/// How the helper runs a tool. The binary uses [`SystemRunner`]; tests record the argv.
pub trait Runner {
    /// Runs the command to completion with stdout and stderr passed through; returns its exit
    /// code (`None` when a signal ended it).
    fn run(&self, argv: &Argv) -> io::Result<Option<i32>>;
}

/// Runs the tool directly (no shell) with a cleared environment and stdin from `/dev/null`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, argv: &Argv) -> io::Result<Option<i32>> {
        let status = Command::new(argv.program)
            .args(&argv.args)
            .env_clear()
            .env("PATH", TOOL_PATH)
            .current_dir("/")
            .stdin(Stdio::null())
            .status()?;
        Ok(status.code())
    }
}
