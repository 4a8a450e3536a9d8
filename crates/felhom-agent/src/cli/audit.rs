//! `felhom-agent audit verify|tail --config FILE`: the audit log's hash chain and its end.
//! Opens the journal read-only: never creates, migrates or writes it.
//!
//! `verify` prints `audit chain intact: N entries, head HASH` and exits 0, or names the first
//! broken entry and exits [`EXIT_BROKEN`].

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Exit status of `audit verify` when the chain is broken.
pub const EXIT_BROKEN: i32 = 4;

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole hash chain.
    Verify,
    /// Print the last entries, oldest first, one JSON object per line.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
    },
}

/// Runs `audit`.
pub fn execute(config_path: Option<&Path>, args: AuditArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    let journal =
        journal::Journal::open_read_only(&config.state_dir).context("cannot open the journal")?;
    match args.command {
        AuditCommand::Verify => {
            let check = journal.audit_verify()?;
            match check.first_broken {
                None => {
                    println!(
                        "audit chain intact: {} entries, head {}",
                        check.entries, check.head
                    );
                    Ok(())
                }
                Some(broken) => {
                    println!(
                        "audit chain broken at entry {}: {}",
                        broken.seq, broken.problem
                    );
                    std::process::exit(EXIT_BROKEN);
                }
            }
        }
        AuditCommand::Tail { lines } => {
            for e in journal.audit_tail(lines)? {
                let line = serde_json::json!({
                    "seq": e.seq, "at": e.entry.at, "kind": e.entry.kind, "actor": e.entry.actor,
                    "action": e.entry.action, "target": e.entry.target, "op_id": e.entry.op_id,
                    "outcome": e.entry.outcome, "reason": e.entry.reason, "detail": e.entry.detail,
                    "hash": e.hash,
                });
                println!("{line}");
            }
            Ok(())
        }
    }
}
