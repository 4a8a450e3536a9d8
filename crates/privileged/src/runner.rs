//! Running an [`Invocation`] as root through `sudo -n`, with a time limit.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::invocation::Invocation;
use crate::Error;

/// How a finished command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when the process was killed by a signal.
    pub code: Option<i32>,
    /// Captured stdout (at most [`MAX_CAPTURE`] bytes).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most [`MAX_CAPTURE`] bytes).
    pub stderr: Vec<u8>,
}

/// Largest amount of stdout or stderr kept per command; the rest is read and dropped so the
/// child never blocks on a full pipe. smartctl's JSON for one disk is ~20 KiB.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;

/// How a command is executed as root. The production implementation is [`SudoRunner`]; tests
/// use the same runner with a PATH holding a fake `sudo`.
pub trait Runner {
    /// Runs the invocation to completion or until its timeout. A non-zero exit is an `Ok`
    /// [`Output`]: what it means depends on the tool (smartctl's status is a bit mask).
    fn run(&self, invocation: &Invocation) -> Result<Output, Error>;
}

/// Runs `sudo -n -- /abs/path args…`, finding `sudo` on a PATH.
///
/// `-n` makes sudo fail instead of prompting when the sudoers rule does not match; `--` ends
/// sudo's options. The environment is cleared except for `PATH` and `LC_ALL=C`, so nothing from
/// the agent's environment reaches the root command (sudo's `env_reset` would drop it anyway).
#[derive(Debug, Clone)]
pub struct SudoRunner {
    path: OsString,
    grace: Duration,
}

/// Time between SIGTERM and SIGKILL when a command overruns.
const TERM_GRACE: Duration = Duration::from_secs(5);

impl SudoRunner {
    /// A runner that looks `sudo` up on this process's PATH (or `/usr/bin:/bin` if unset).
    pub fn new() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        SudoRunner::with_path(path)
    }

    /// A runner that looks `sudo` up on `path` only (tests put a fake `sudo` there).
    pub fn with_path(path: impl Into<OsString>) -> Self {
        SudoRunner {
            path: path.into(),
            grace: TERM_GRACE,
        }
    }

    /// Replaces the SIGTERM → SIGKILL grace period.
    pub fn with_term_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

impl Default for SudoRunner {
    fn default() -> Self {
        SudoRunner::new()
    }
}

impl Runner for SudoRunner {
    fn run(&self, invocation: &Invocation) -> Result<Output, Error> {
        let program = invocation.program();
        let mut child = Command::new("sudo")
            .arg("-n")
            .arg("--")
            .arg(program.path())
            .args(invocation.args())
            .env_clear()
            // std looks the program up on the PATH set here, not on the parent's.
            .env("PATH", &self.path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.name(),
                source,
            })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());

        let deadline = Instant::now() + invocation.timeout();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    terminate(&mut child, self.grace);
                    tracing::warn!(
                        program = program.name(),
                        timeout_ms = invocation.timeout().as_millis() as u64,
                        "privileged command timed out"
                    );
                    return Err(Error::Timeout {
                        program: program.name(),
                        timeout: invocation.timeout(),
                    });
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(source) => {
                    terminate(&mut child, self.grace);
                    return Err(Error::Wait {
                        program: program.name(),
                        source,
                    });
                }
            }
        };
        // The readers end when the pipe closes; a grandchild that inherited the pipe could hold
        // it open, so do not wait for them forever.
        let collect = |rx: mpsc::Receiver<Vec<u8>>| {
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
        };
        Ok(Output {
            code: status.code(),
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }
}

/// Reads a pipe to its end on a thread, keeping at most [`MAX_CAPTURE`] bytes.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_CAPTURE.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// SIGTERM, then SIGKILL after `grace`. sudo relays SIGTERM to the command it runs as root; it
/// cannot relay SIGKILL, so SIGKILL alone would orphan the root process.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped (try_wait returned None),
        // so the pid cannot have been recycled.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `max` bytes of `stderr` as text, starting on a line boundary when possible.
pub(crate) fn tail(stderr: &[u8], max: usize) -> String {
    let start = stderr.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = if start > 0 {
        text.split_once('\n')
            .map_or(text.as_ref(), |(_, rest)| rest)
    } else {
        text.as_ref()
    };
    text.trim().replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tail_keeps_the_end_on_a_line_boundary() {
        let stderr = b"first line\nsecond line\nthird line\n";
        assert_eq!(tail(stderr, 1000), "first line | second line | third line");
        assert_eq!(tail(stderr, 15), "third line");
    }
}
