//! The command line: one file per subcommand, each calling the same library code as the daemon.
//! The lead adds `selftest`, `plan`, `op`, `audit`, `localapi` and `demo` here as they land.

pub mod check_config;
pub mod demo;
pub mod op;
pub mod run;
pub mod selftest;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};

/// felhom-agent: the felhom host agent for Proxmox VE.
#[derive(Debug, Parser)]
#[command(name = "felhom-agent", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (JSON); see CONFIG.md.
    #[arg(long, global = true, env = "FELHOM_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default). For now it only loads the configuration, sets up logging
    /// and waits for SIGTERM/SIGINT; the reconcile, hub and local-API loops come in a later issue.
    Run(run::RunArgs),
    /// Validate the configuration and print it as JSON with secrets redacted.
    CheckConfig(check_config::CheckConfigArgs),
    /// Health checks against Proxmox: `read` (read-only) or `task --vmid N` (reversible
    /// snapshot -> rollback -> delete on one guest).
    Selftest(selftest::SelftestArgs),
    /// Start the Proxmox VE simulator on loopback and show the agent at work; no configuration
    /// needed.
    Demo(demo::DemoArgs),
    /// Operator-signed operations: `new`, `sign`, `wrap` (operator side) and `verify` (host
    /// side); see docs/operator-signing.md.
    Op(op::OpArgs),
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run::execute(cli.config.as_deref(), run::RunArgs::default()),
        Some(Command::Run(args)) => run::execute(cli.config.as_deref(), args),
        Some(Command::CheckConfig(args)) => check_config::execute(cli.config.as_deref(), args),
        Some(Command::Selftest(args)) => selftest::execute(cli.config.as_deref(), args),
        Some(Command::Demo(args)) => demo::execute(args),
        Some(Command::Op(args)) => op::execute(args),
    }
}

/// Loads the configuration named on the command line (or by `FELHOM_AGENT_CONFIG`) with this
/// process's environment as the overlay.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let path = path.ok_or(ConfigError::NoPath)?;
    config::load(path, std::env::vars_os())
}
