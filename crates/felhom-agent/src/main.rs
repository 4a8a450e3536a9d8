//! The `felhom-agent` binary: parses the command line and maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use felhom_agent::{cli, config};

/// Exit status for a configuration or usage error (clap uses 2 for usage errors too).
const EXIT_CONFIG: u8 = 2;
/// Exit status for any other failure.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, "a: b: c".
            eprintln!("felhom-agent: {err:#}");
            if err.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}
