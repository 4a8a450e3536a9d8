//! `felhom-agent check-config --config FILE`.

use std::path::Path;

use clap::Args;

/// Arguments of `check-config` (the file comes from the global `--config`).
#[derive(Debug, Args, Default)]
pub struct CheckConfigArgs {}

/// Validates and prints the effective configuration; secrets appear as `<redacted>` with their
/// source (inline, file path or credential name).
pub fn execute(config_path: Option<&Path>, _args: CheckConfigArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    let json = serde_json::to_string_pretty(&config)?;
    println!("{json}");
    Ok(())
}
