//! `felhom-agent demo`: no configuration needed; starts the Proxmox VE simulator on loopback and
//! shows the agent's foundation at work (see [`crate::demo`]).

use clap::Args;

/// Arguments of `demo`.
#[derive(Debug, Args, Default)]
pub struct DemoArgs {
    /// Containers the simulator starts with.
    #[arg(long, default_value_t = 3)]
    pub guests: u32,
    /// Duration of each simulated Proxmox task, milliseconds.
    #[arg(long, default_value_t = 400)]
    pub task_ms: u64,
}

/// Runs the demo until it has shown everything, or until Ctrl-C.
pub fn execute(args: DemoArgs) -> anyhow::Result<()> {
    crate::proxmox::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            res = crate::demo::run(args.guests, args.task_ms) => res,
            _ = tokio::signal::ctrl_c() => {
                // The simulator is a child process killed when its handle drops; the temp
                // directories go with their handles too.
                println!("\ninterrupted: stopping the simulator");
                Ok(())
            }
        }
    })
}
