//! The narrated demo behind `felhom-agent demo`: one command, no configuration. It starts the
//! Proxmox VE simulator, the reference hub and the agent daemon (this executable, `run
//! --config`) on loopback, then tells the story of the agent at work, every fact read back
//! from a real report or API answer:
//!
//! 1. the three processes, an operator key from `ssh-keygen` in the operators file;
//! 2. the hub publishes generation 1 adopting guests 100–102; the report shows them converged;
//! 3. generation 2 drops guest 102: the destroy is held for an operator signature;
//! 4. the operator signs `guest.destroy` for 102; the hub relays it; the agent executes it;
//! 5. the agent is frozen (SIGSTOP): the hub's dead-man's switch alerts; resumed, it clears.
//!
//! The demo talks to the agent only through the hub (desired state and signed ops in through
//! the admin API, the agent's state out of `GET /admin/hosts/{host}/report`), and looks at the
//! simulator directly only to show the world as it is. Secrets (tokens, the hub key) go to 0600
//! files and are never printed. Every child is killed and the temp dir removed when the demo
//! ends or is interrupted (drop order: agent, hub, simulator, then the directory).
//!
//! Start reading at [`run`]; the steps are in [`steps`], the report reader in [`observe`].

mod agent;
mod narrate;
mod observe;
mod scenario;
mod setup;
mod steps;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use narrate::Narrator;

/// Fewest guests the story needs (100, 101 and 102).
pub const MIN_GUESTS: u32 = 3;

/// What `felhom-agent demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Containers the simulator starts with (at least [`MIN_GUESTS`]).
    pub guests: u32,
    /// Duration of each simulated Proxmox task, milliseconds.
    pub task_ms: u64,
    /// No pauses between steps (tests).
    pub fast: bool,
}

/// Waits and pacing.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    /// Pause after each step so a human can read it.
    pub beat: Duration,
    /// How often reports and alerts are looked at.
    pub look_every: Duration,
    /// Poll interval the hub hands the agent (the agent's minimum is 5 s).
    pub hub_poll_s: u64,
    /// The hub's dead-man's switch deadline: above one poll interval plus a cycle.
    pub deadline_s: u64,
    /// Upper bound for one step to show up in the reports.
    pub step_timeout: Duration,
}

impl Timing {
    fn new(fast: bool) -> Timing {
        Timing {
            beat: if fast {
                Duration::ZERO
            } else {
                Duration::from_millis(1500)
            },
            look_every: Duration::from_millis(250),
            hub_poll_s: 5,
            deadline_s: 8,
            step_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs the whole demo once. Dropping the future (Ctrl-C) stops every child and removes the
/// temp dir; on an error the temp dir is kept for its logs and named.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.guests >= MIN_GUESTS,
        "--guests must be at least {MIN_GUESTS} (the story uses guests 100, 101 and 102)"
    );
    let n = Narrator::new();
    let work = tempfile::Builder::new()
        .prefix("felhom-demo-")
        .tempdir()
        .context("cannot create the demo directory")?;
    let result = story(&n, &opts, work.path()).await;
    match result {
        Ok(()) => {
            let shown = work.path().display().to_string();
            work.close()
                .with_context(|| format!("cannot remove {shown}"))?;
            n.say(format!(
                "stopped the agent, the hub and the simulator; removed {shown}"
            ));
            Ok(())
        }
        Err(err) => {
            let kept = work.keep();
            eprintln!(
                "felhom-demo: logs kept in {} (agent.log, hub.log, pve-sim.log)",
                kept.display()
            );
            Err(err)
        }
    }
}

async fn story(n: &Narrator, opts: &DemoOptions, dir: &Path) -> anyhow::Result<()> {
    let timing = Timing::new(opts.fast);
    let mut stage = steps::start(n, opts, &timing, dir).await?;
    stage.beat().await;
    stage.hold_adoption().await?;
    stage.beat().await;
    stage.converge().await?;
    stage.beat().await;
    stage.hold_destroy().await?;
    stage.beat().await;
    stage.signed_destroy().await?;
    stage.beat().await;
    stage.controller_backup().await?;
    stage.beat().await;
    stage.dead_mans_switch().await?;
    n.heading("8. done");
    n.say(stage.audit_summary().await?);
    n.say(format!("the whole story took {:.1}s", n.elapsed_s()));
    stage.stop();
    Ok(())
}
