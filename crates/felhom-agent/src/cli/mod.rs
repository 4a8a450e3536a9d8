//! The command line: one file per subcommand, each calling the same library code as the daemon.
//! `demo` exists only with the `demo` feature (on by default, off in the Debian package).

pub mod audit;
pub mod check_config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod localapi;
pub mod op;
pub mod plan;
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
    /// Run the daemon (the default) until SIGTERM or SIGINT; SIGHUP reloads the configuration.
    ///
    /// The daemon runs the reconcile engine, fed by the hub loop (when `hub` is configured) and
    /// by the local desired file and signed-ops directory (`desired.file`, `desired.ops_dir`);
    /// the per-guest local API (when `local_api.listen` is set); and systemd readiness, status
    /// and a watchdog fed only while the loops make progress. A reload with an invalid file is
    /// logged and the running configuration kept.
    Run(run::RunArgs),
    /// Validate the configuration and print it as JSON with secrets redacted.
    CheckConfig(check_config::CheckConfigArgs),
    /// Health checks against Proxmox: `read` (read-only) or `task --vmid N` (reversible
    /// snapshot -> rollback -> delete on one guest).
    Selftest(selftest::SelftestArgs),
    /// Start the Proxmox VE simulator on loopback and show the agent at work; no configuration
    /// needed.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Operator-signed operations: `new`, `sign`, `wrap` (operator side) and `verify` (host
    /// side); see docs/operator-signing.md.
    Op(op::OpArgs),
    /// Print the reconcile plan against the current desired state, each step benign or
    /// needs-signature; changes nothing.
    Plan(plan::PlanArgs),
    /// The audit log: `verify` its hash chain, or `tail` its last entries.
    Audit(audit::AuditArgs),
    /// The per-guest local API: `fingerprint` of its certificate, `token --vmid N` to mint a
    /// controller token, `revoke`, `tokens`; see docs/local-api.md.
    Localapi(localapi::LocalapiArgs),
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run::execute(cli.config.as_deref(), run::RunArgs::default()),
        Some(Command::Run(args)) => run::execute(cli.config.as_deref(), args),
        Some(Command::CheckConfig(args)) => check_config::execute(cli.config.as_deref(), args),
        Some(Command::Selftest(args)) => selftest::execute(cli.config.as_deref(), args),
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => demo::execute(args),
        Some(Command::Op(args)) => op::execute(args),
        Some(Command::Plan(args)) => plan::execute(cli.config.as_deref(), args),
        Some(Command::Audit(args)) => audit::execute(cli.config.as_deref(), args),
        Some(Command::Localapi(args)) => localapi::execute(cli.config.as_deref(), args),
    }
}

/// Loads the configuration named on the command line (or by `FELHOM_AGENT_CONFIG`) with this
/// process's environment as the overlay.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let path = path.ok_or(ConfigError::NoPath)?;
    config::load(path, std::env::vars_os())
}
