//! Crash points for the crash tests, compiled only into debug builds.
//!
//! `FELHOM_CRASHPOINT=after-intent:2` (not `FELHOM_AGENT_*`: the config overlay owns that prefix) makes the second time the agent passes the
//! `after-intent` boundary print `CRASHPOINT after-intent` on stderr and stop the whole process
//! with SIGSTOP, so the test can deliver a real SIGKILL at exactly that boundary. Boundaries:
//! `after-intent` (intent journaled, before the POST), `after-post` (POST returned, UPID not
//! journaled), `after-upid` (UPID journaled, task running), `after-step` (step done, before the
//! next). Release builds compile this to nothing.

/// The environment variable.
pub const CRASHPOINT_ENV: &str = "FELHOM_CRASHPOINT";

/// Passes the boundary `name`.
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(CRASHPOINT_ENV).ok()?;
        let (name, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
        Some((name.to_owned(), n.parse().ok()?))
    });
    let Some((wanted, nth)) = target else {
        return;
    };
    if wanted != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        eprintln!("CRASHPOINT {name}");
        // SAFETY: raise(2) with a valid signal number has no memory-safety preconditions.
        // SIGSTOP freezes every thread at once, so nothing runs past the boundary until the
        // test's SIGKILL arrives.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Passes the boundary `name` (release builds: nothing).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
