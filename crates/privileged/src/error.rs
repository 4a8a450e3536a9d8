//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong running a privileged operation.
///
/// `Display` is one lower-case line and never repeats the source; the program is the tool's short
/// name (`pct`, `smartctl`, …), never the full argv, so a log line cannot leak more than that.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument failed validation before anything was spawned.
    #[error("invalid {argument} {value:?}: {reason}")]
    InvalidArgument {
        /// Which argument (`vmid`, `fs uuid`, `block device`, …).
        argument: &'static str,
        /// The rejected value, cut to 64 characters.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `sudo` could not be started (not installed, not on PATH, not executable).
    #[error("cannot start sudo for {program}")]
    Spawn {
        /// The tool that was to run.
        program: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the process or reading its output failed.
    #[error("cannot collect the result of {program}")]
    Wait {
        /// The tool that ran.
        program: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The command (or sudo refusing it) exited unsuccessfully.
    #[error("{program} exited with {}: {stderr_tail}", exit_text(*code))]
    NonZeroExit {
        /// The tool that ran.
        program: &'static str,
        /// Exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// The last lines of stderr (at most 512 bytes), for the log.
        stderr_tail: String,
    },
    /// The command did not finish in time and was terminated.
    #[error("{program} did not finish within {timeout:?} and was terminated")]
    Timeout {
        /// The tool that ran.
        program: &'static str,
        /// The limit that expired.
        timeout: Duration,
    },
    /// The command succeeded but its output is not what we expect.
    #[error("cannot parse the output of {program}: {reason}")]
    Parse {
        /// The tool that ran.
        program: &'static str,
        /// What did not fit.
        reason: String,
    },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("status {code}"),
        None => "a signal".to_owned(),
    }
}

impl Error {
    /// Builds [`Error::InvalidArgument`], cutting the value so a hostile input cannot flood a log.
    pub(crate) fn invalid(argument: &'static str, value: &str, reason: &'static str) -> Self {
        Error::InvalidArgument {
            argument,
            value: value.chars().take(64).collect(),
            reason,
        }
    }
}
