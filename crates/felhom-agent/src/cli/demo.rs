//! `felhom-agent demo`: no configuration needed; starts the Proxmox VE simulator, the reference
//! hub and the agent daemon on loopback and narrates the agent at work (see [`crate::demo`]).

use clap::Args;

use crate::demo::{DemoOptions, MIN_GUESTS};

/// Task duration with `--fast` unless `--task-ms` is given.
const FAST_TASK_MS: u64 = 50;
/// Task duration otherwise.
const TASK_MS: u64 = 400;

/// Arguments of `demo`.
#[derive(Debug, Args, Default)]
pub struct DemoArgs {
    /// Containers the simulator starts with (at least 3: the story uses 100, 101 and 102).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(i64::from(MIN_GUESTS)..=200))]
    pub guests: u32,
    /// Duration of each simulated Proxmox task, milliseconds [default: 400, 50 with --fast].
    #[arg(long)]
    pub task_ms: Option<u64>,
    /// No pauses between the steps, quick simulated tasks (for tests).
    #[arg(long)]
    pub fast: bool,
}

/// Runs the demo until it has shown everything, or until Ctrl-C: then every child process is
/// stopped and the temp dir removed before it returns.
pub fn execute(args: DemoArgs) -> anyhow::Result<()> {
    crate::proxmox::install_crypto_provider();
    let opts = DemoOptions {
        guests: args.guests,
        task_ms: args
            .task_ms
            .unwrap_or(if args.fast { FAST_TASK_MS } else { TASK_MS }),
        fast: args.fast,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut demo = Box::pin(crate::demo::run(opts));
        tokio::select! {
            res = &mut demo => res,
            _ = tokio::signal::ctrl_c() => {
                println!("\ninterrupted: stopping the agent, the hub and the simulator");
                // The demo future owns every child and the temp dir; dropping it stops the
                // agent (SIGTERM, then SIGKILL), kills the hub and the simulator, and removes
                // the directory, in that order.
                drop(demo);
                println!("stopped; temp files removed");
                Ok(())
            }
        }
    })
}
