//! The agent under demonstration: this very executable, started as `felhom-agent run --config
//! FILE` in its own process, its log in the demo's temp dir. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use testkit::Signal;

/// How long the agent gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running `felhom-agent run`.
pub struct AgentProcess {
    /// Behind a lock so that a liveness check needs only `&self` (it runs inside the demo's
    /// wait closures, beside other shared borrows).
    child: Mutex<Option<Child>>,
    pid: u32,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts `felhom-agent run --config CONFIG`. Variables that would change its
    /// configuration or where it logs (`FELHOM_AGENT_*`, systemd's credentials, journal and
    /// notify sockets) are removed, so the demo runs the same whatever the caller's environment.
    pub fn start(config: &Path, log: PathBuf) -> anyhow::Result<AgentProcess> {
        let exe = std::env::current_exe().context("cannot locate the running executable")?;
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(exe);
        cmd.arg("run").arg("--config").arg(config);
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("FELHOM_AGENT_")
                || matches!(
                    name.as_ref(),
                    "CREDENTIALS_DIRECTORY"
                        | "JOURNAL_STREAM"
                        | "NOTIFY_SOCKET"
                        | "WATCHDOG_USEC"
                        | "WATCHDOG_PID"
                )
            {
                cmd.env_remove(&key);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start felhom-agent run")?;
        Ok(AgentProcess {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails if the agent has exited (the last lines of its log say why). A paused agent is
    /// alive.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(child) = guard.as_mut() else {
            anyhow::bail!("the agent was stopped");
        };
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the agent exited ({status}); its log ends with:\n{}",
                log_tail(&self.log, 8)
            );
        }
        Ok(())
    }

    /// Freezes the agent (SIGSTOP): to the hub it looks like a hung or unplugged box.
    pub fn pause(&self) -> anyhow::Result<()> {
        testkit::signal(self.pid(), Signal::Stop)
    }

    /// Lets it run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        testkit::signal(self.pid(), Signal::Cont)
    }

    /// SIGCONT + SIGTERM, up to [`STOP_GRACE`] to stop cleanly, then SIGKILL. Reaps it.
    pub fn stop(&mut self) {
        let taken = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut child) = taken else {
            return;
        };
        let pid = child.id();
        // A paused agent cannot act on SIGTERM until it is resumed.
        let _ = testkit::signal(pid, Signal::Cont);
        if testkit::signal(pid, Signal::Term).is_ok() {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file, indented (secrets never reach the agent's log).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
