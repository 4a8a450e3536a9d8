//! [`Privileged`]: the three operations, each one validated argv run through a [`Runner`].

use std::path::PathBuf;

use crate::args::{BlockDevice, FsUuid};
use crate::invocation::{self, GoldenImageSpec, Invocation};
use crate::runner::{tail, Output, Runner, SudoRunner};
use crate::sensors::{self, SensorReadings};
use crate::smart::{self, SmartReading};
use crate::Error;

/// How much of stderr an error keeps.
const STDERR_TAIL: usize = 512;

/// The agent's only way to act as root.
#[derive(Debug, Clone)]
pub struct Privileged<R = SudoRunner> {
    runner: R,
}

impl Privileged<SudoRunner> {
    /// Uses `sudo` from this process's PATH.
    pub fn system() -> Self {
        Privileged::new(SudoRunner::new())
    }
}

impl<R: Runner> Privileged<R> {
    /// Wraps a runner.
    pub fn new(runner: R) -> Self {
        Privileged { runner }
    }

    /// Operation 1: creates the golden-image build container with `keyctl=1,nesting=1`.
    ///
    /// Needs root because PVE lets only `root@pam` set `keyctl` (an API token never is
    /// `root@pam`; pve-container `src/PVE/LXC.pm:1655-1756`, pve-api-notes.md §1.6).
    pub fn create_golden_image(&self, spec: &GoldenImageSpec) -> Result<(), Error> {
        let inv = invocation::golden_image_create(spec);
        self.run_checked(&inv)?;
        tracing::info!(vmid = spec.vmid.get(), "golden image container created");
        Ok(())
    }

    /// Operation 2a: mounts the USB filesystem `uuid` at `/srv/felhom/mounts/<uuid>` as a
    /// transient systemd mount unit, through the mount helper, and returns the mount point. The
    /// call returns once the unit is queued. A refusal of the helper (not USB, already mounted,
    /// …) is an [`Error::NonZeroExit`] whose exit code and stderr line say which check failed.
    pub fn mount_by_uuid(&self, uuid: &FsUuid) -> Result<PathBuf, Error> {
        self.run_checked(&invocation::mount(uuid))?;
        tracing::info!(uuid = uuid.as_str(), "mount unit queued");
        Ok(invocation::mount_point(uuid))
    }

    /// Operation 2b: stops the mount unit at `/srv/felhom/mounts/<uuid>`, through the helper.
    pub fn unmount_by_uuid(&self, uuid: &FsUuid) -> Result<(), Error> {
        self.run_checked(&invocation::unmount(uuid))?;
        tracing::info!(uuid = uuid.as_str(), "filesystem unmounted");
        Ok(())
    }

    /// Operation 3a: reads SMART data of one disk (raw device access needs root, and ATA
    /// pass-through needs CAP_SYS_RAWIO).
    pub fn smart(&self, device: &BlockDevice) -> Result<SmartReading, Error> {
        let out = self.runner.run(&invocation::smart(device))?;
        let code = out.code.ok_or_else(|| Error::NonZeroExit {
            program: "smartctl",
            code: None,
            stderr_tail: tail(&out.stderr, STDERR_TAIL),
        })?;
        smart::parse(
            device.as_str(),
            code,
            &out.stdout,
            tail(&out.stderr, STDERR_TAIL),
        )
    }

    /// Operation 3b: reads all temperature sensors.
    pub fn sensors(&self) -> Result<SensorReadings, Error> {
        let out = self.run_checked(&invocation::sensors())?;
        sensors::parse(&out.stdout)
    }

    fn run_checked(&self, inv: &Invocation) -> Result<Output, Error> {
        let out = self.runner.run(inv)?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(Error::NonZeroExit {
                program: inv.program().name(),
                code: out.code,
                stderr_tail: tail(&out.stderr, STDERR_TAIL),
            })
        }
    }
}
