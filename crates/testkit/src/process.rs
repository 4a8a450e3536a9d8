//! Child processes of the kit: finding a workspace binary (building it when cargo is at hand),
//! reading the one JSON line a simulator prints when ready, and sending signals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// How long a simulator may take to print its ready line.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a child's stderr goes: appended to `log_file`, else inherited.
pub(crate) fn stderr_to(log_file: Option<&Path>) -> Result<Stdio> {
    Ok(match log_file {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Stdio::inherit(),
    })
}

/// Spawns `cmd` (stdout piped) and parses the first stdout line as `T`; the rest of stdout is
/// drained so the child never blocks on a full pipe. `what` names the child in errors. On any
/// failure the child is killed.
pub(crate) fn spawn_ready<T: serde::de::DeserializeOwned>(
    mut cmd: Command,
    what: &str,
) -> Result<(Child, T)> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        bail!("{what} stdout not captured");
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let res = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(res);
        let mut sink = String::new();
        while matches!(reader.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    });
    let line = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        Ok(Ok(_)) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} exited before printing its ready line")
        }
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).with_context(|| format!("reading the {what}'s ready line"));
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} printed no ready line within {READY_TIMEOUT:?}")
        }
    };
    match serde_json::from_str(line.trim()) {
        Ok(info) => Ok((child, info)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            // The line may carry secrets (tokens, keys): name its length, not its text.
            Err(e).with_context(|| {
                format!(
                    "parsing the {what}'s ready line ({} bytes)",
                    line.trim().len()
                )
            })
        }
    }
}

/// `kill -9` and reap `child`, if any.
pub(crate) fn kill9(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        // Child::kill sends SIGKILL on Unix (also to a stopped process).
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of a workspace binary: `$env_var`, else beside the running executable (`felhom-agent
/// demo` in `target/<profile>/`) or one level up (a test in `target/<profile>/deps/`); built
/// with `cargo build -p package --bin name` when missing and cargo is at hand (`cargo run` and
/// `cargo test` set `$CARGO`), in release mode when the running executable is a release build.
pub fn workspace_binary(name: &str, package: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let exe_dir = exe
        .parent()
        .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    let profile_dir = if exe_dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    };
    let candidate = profile_dir.join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        bail!(
            "{name} not found at {} (build it with `cargo build -p {package}`, or set {env_var})",
            candidate.display()
        );
    };
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-q", "-p", package, "--bin", name]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| format!("building {name}"))?;
    if !status.success() || !candidate.exists() {
        bail!("{name} not found at {}", candidate.display());
    }
    Ok(candidate)
}

/// A signal [`signal`] can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `SIGSTOP`: freeze the process (it cannot catch or ignore this).
    Stop,
    /// `SIGCONT`: let a stopped process run again.
    Cont,
    /// `SIGTERM`: ask the process to stop.
    Term,
    /// `SIGINT`: what Ctrl-C sends.
    Int,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
        }
    }
}

/// Sends `sig` to process `pid` (std's `Child` can only send SIGKILL).
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // A pid of 0 or -1 would signal a whole process group or every process we may signal.
    if pid <= 0 {
        bail!("refusing to signal pid {pid}");
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig.number()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending {sig:?} to pid {pid}"));
    }
    Ok(())
}

/// Whether process `pid` still exists (a zombie counts: it has not been reaped yet).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
