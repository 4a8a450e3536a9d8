//! systemd integration: `sd_notify` datagrams (`READY=1`, `STATUS=…`, `WATCHDOG=1`,
//! `STOPPING=1`) and a watchdog that is fed only while the daemon's loops make progress.
//!
//! `Restart=always` alone cannot catch a wedged loop: the process is alive and answers nothing.
//! So every long-running loop owns a [`Heartbeat`] it beats once per iteration, and
//! [`Watchdog::run`] sends `WATCHDOG=1` (at half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
//! recommends) only when every heartbeat moved within its allowed stall time. A loop stuck on a
//! lock or an endless await stops the pings, and systemd kills and restarts the service.
//!
//! The protocol is small enough to speak directly (sd_notify(3)): one datagram per message to
//! the `AF_UNIX` socket named by `$NOTIFY_SOCKET`, a filesystem path or, with a leading `@`, an
//! abstract name. Without `$NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same
//! outside systemd.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where notifications go: the socket from `$NOTIFY_SOCKET`, or nowhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC`/`$WATCHDOG_PID` through [`watchdog_interval`]).
    pub fn from_env() -> Self {
        Notifier::for_socket(std::env::var_os("NOTIFY_SOCKET").map(|s| s.into_encoded_bytes()))
    }

    /// A notifier for an explicit socket address (`None`: disabled). A leading `@` names an
    /// abstract socket.
    pub fn for_socket(addr: Option<Vec<u8>>) -> Self {
        let target = addr
            .filter(|a| !a.is_empty())
            .map(|a| match a.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(PathBuf::from(String::from_utf8_lossy(&a).into_owned())),
            });
        Notifier { target }
    }

    /// Whether a notification socket is configured.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (several `KEY=value` lines); a no-op without a socket.
    pub fn notify(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        // Never block the caller (often an async runtime thread): if the receiver's queue is
        // full, this notification is dropped with an error instead of freezing the daemon.
        socket.set_nonblocking(true)?;
        match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        Ok(())
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=…`: what `systemctl status` shows.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }
}

/// A status line must not contain a newline (it would start another assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The interval at which to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, if the watchdog is
/// enabled for this process (`$WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// One loop's progress counter. Cheap to clone and to beat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    name: &'static str,
    beats: Arc<AtomicU64>,
    stall: Duration,
}

impl Heartbeat {
    /// Records one iteration of the loop.
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// The loop's name, for the log line that says which loop is wedged.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The heartbeats of every loop, and when each last moved.
#[derive(Debug, Default, Clone)]
pub struct Liveness {
    loops: Arc<Mutex<Vec<Watched>>>,
}

#[derive(Debug)]
struct Watched {
    heartbeat: Heartbeat,
    last_count: u64,
    last_moved: Instant,
}

impl Liveness {
    /// Registers a loop that must beat at least once per `stall` (its longest legitimate
    /// iteration, e.g. the poll interval plus the longest request).
    pub fn register(&self, name: &'static str, stall: Duration, now: Instant) -> Heartbeat {
        let heartbeat = Heartbeat {
            name,
            beats: Arc::new(AtomicU64::new(0)),
            stall,
        };
        self.lock().push(Watched {
            heartbeat: heartbeat.clone(),
            last_count: 0,
            last_moved: now,
        });
        heartbeat
    }

    /// The loops that have not beaten within their stall time at `now` (empty: all alive).
    pub fn wedged(&self, now: Instant) -> Vec<&'static str> {
        let mut loops = self.lock();
        let mut wedged = Vec::new();
        for w in loops.iter_mut() {
            let count = w.heartbeat.beats.load(Ordering::Relaxed);
            if count != w.last_count {
                w.last_count = count;
                w.last_moved = now;
            } else if now.duration_since(w.last_moved) > w.heartbeat.stall {
                wedged.push(w.heartbeat.name);
            }
        }
        wedged
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        // A panic while holding this lock cannot leave the Vec inconsistent (plain pushes and
        // field updates), so a poisoned lock is still usable.
        self.loops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Feeds systemd's watchdog while every registered loop makes progress.
#[derive(Debug, Clone)]
pub struct Watchdog {
    notifier: Notifier,
    liveness: Liveness,
    interval: Duration,
}

impl Watchdog {
    /// A watchdog pinging every `interval` through `notifier`.
    pub fn new(notifier: Notifier, liveness: Liveness, interval: Duration) -> Self {
        Watchdog {
            notifier,
            liveness,
            interval,
        }
    }

    /// Runs until `shutdown` resolves. Each tick sends `WATCHDOG=1` if no loop is wedged;
    /// otherwise it logs the wedged loops and sends nothing, so systemd restarts the service
    /// once `WatchdogSec` passes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            let wedged = self.liveness.wedged(Instant::now());
            if wedged.is_empty() {
                if let Err(e) = self.notifier.watchdog() {
                    tracing::warn!(error = %e, "cannot notify the systemd watchdog");
                }
            } else {
                tracing::error!(loops = ?wedged, "loop made no progress; not feeding the watchdog");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let notifier = Notifier::for_socket(Some(path.as_os_str().as_encoded_bytes().to_vec()));
        (dir, sock, notifier)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_reach_a_real_socket() {
        let (_dir, sock, n) = receiver();
        n.ready("converged: 3 guests\nsecond line").unwrap();
        assert_eq!(
            recv(&sock),
            "READY=1\nSTATUS=converged: 3 guests second line"
        );
        n.status("polling").unwrap();
        assert_eq!(recv(&sock), "STATUS=polling");
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.stopping().unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn abstract_socket_names_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("felhom-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = Notifier::for_socket(Some(format!("@{name}").into_bytes()));
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::for_socket(None);
        assert!(!n.enabled());
        n.ready("x").unwrap();
    }

    #[test]
    fn a_loop_that_stops_beating_is_reported_wedged() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let a = live.register("hub", Duration::from_secs(10), t0);
        let b = live.register("reconcile", Duration::from_secs(10), t0);
        a.beat();
        b.beat();
        assert!(live.wedged(t0 + Duration::from_secs(5)).is_empty());
        a.beat();
        // b has not moved since t0+5 s; at t0+16 s it is 11 s stale.
        assert_eq!(live.wedged(t0 + Duration::from_secs(16)), vec!["reconcile"]);
        b.beat();
        assert!(live.wedged(t0 + Duration::from_secs(17)).is_empty());
    }

    #[tokio::test]
    async fn watchdog_pings_only_while_loops_progress() {
        let (_dir, sock, n) = receiver();
        sock.set_nonblocking(true).unwrap();
        let live = Liveness::default();
        let hb = live.register("reconcile", Duration::from_millis(150), Instant::now());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let dog = Watchdog::new(n, live, Duration::from_millis(20));
        let task = tokio::spawn(dog.run(async {
            let _ = stop_rx.await;
        }));
        // Alive: beat for 300 ms, pings arrive.
        for _ in 0..15 {
            hb.beat();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut alive = 0;
        let mut buf = [0u8; 64];
        while sock.recv(&mut buf).is_ok() {
            alive += 1;
        }
        assert!(alive >= 5, "only {alive} pings while alive");
        // Wedged: no beats. After the stall time has passed, pings stop.
        tokio::time::sleep(Duration::from_millis(250)).await;
        while sock.recv(&mut buf).is_ok() {}
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut wedged = 0;
        while sock.recv(&mut buf).is_ok() {
            wedged += 1;
        }
        assert_eq!(wedged, 0, "watchdog fed while the loop was wedged");
        let _ = stop_tx.send(());
        task.await.unwrap();
    }
}
