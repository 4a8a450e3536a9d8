//! `felhom-agent localapi fingerprint|token|revoke|tokens --config FILE`: bootstrapping the
//! in-guest controllers (docs/local-api.md).
//!
//! - `fingerprint`: the SHA-256 of the local API's certificate, `AA:BB:…` (creates the key and
//!   certificate in `state_dir/localapi` if the daemon never ran).
//! - `token --vmid N [--rotate]`: mints a token for guest N and prints it as the last line, the
//!   only place it is ever shown; `--rotate` also revokes the guest's other tokens.
//! - `revoke --vmid N | --id ID`: revokes all of a guest's tokens, or one by id.
//! - `tokens`: every token as one JSON line (id, vmid, state, times; never a secret).
//!
//! They open the journal the daemon uses (SQLite serializes the two writers), so a token
//! minted or revoked here takes effect on the daemon's next request.

use std::path::Path;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use localapi::{SystemClock, TokenId, TokenState, TokenStore};
use pve::Vmid;

use crate::localapi_wiring::JournalTokens;

/// Arguments of `localapi`.
#[derive(Debug, Args)]
pub struct LocalapiArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LocalapiCommand,
}

/// The `localapi` subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalapiCommand {
    /// Print the SHA-256 of the local API certificate (what a controller pins).
    Fingerprint,
    /// Mint a token for one guest; the token is the last line printed.
    Token {
        /// The guest (it must be managed by this agent).
        #[arg(long)]
        vmid: u32,
        /// Also revoke every other token of the guest (after a compromise).
        #[arg(long)]
        rotate: bool,
    },
    /// Revoke every token of a guest, or one token by id.
    #[command(group(ArgGroup::new("which").required(true).args(["vmid", "id"])))]
    Revoke {
        /// Revoke all of this guest's tokens.
        #[arg(long)]
        vmid: Option<u32>,
        /// Revoke this token (its public id).
        #[arg(long)]
        id: Option<String>,
    },
    /// List every token (ids and guests, never secrets), one JSON object per line.
    Tokens,
}

fn vmid(n: u32) -> anyhow::Result<Vmid> {
    Vmid::new(n).map_err(|e| anyhow::anyhow!("--vmid {n}: {e}"))
}

fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let dt = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    dt.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Runs `localapi`.
pub fn execute(config_path: Option<&Path>, args: LocalapiArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    if let LocalapiCommand::Fingerprint = args.command {
        let fp = localapi::fingerprint(&config.state_dir, &config.local_api.listen)
            .context("cannot load the local api certificate")?;
        println!("{fp}");
        return Ok(());
    }
    let journal = journal::Journal::open(&config.state_dir).context("cannot open the journal")?;
    let journal = crate::journal_handle::JournalHandle::new(journal);
    let store = JournalTokens::new(journal.clone(), "cli");
    match args.command {
        LocalapiCommand::Fingerprint => Ok(()),
        LocalapiCommand::Token { vmid: n, rotate } => {
            let v = vmid(n)?;
            // The server revokes a token whose guest is not managed on its first use, so
            // minting one would only hand out a dead token.
            let managed = journal
                .with(|j| j.guests())?
                .iter()
                .any(|g| g.vmid == n && g.managed);
            if !managed {
                bail!(
                    "guest {n} is not managed by this agent (no accepted desired state names it); \
                     a token for it would be revoked on first use"
                );
            }
            let minted = if rotate {
                let (minted, revoked) = localapi::rotate(&store, &SystemClock, v)?;
                println!("revoked {revoked} other token(s) of guest {n}");
                minted
            } else {
                localapi::mint(&store, &SystemClock, v)?
            };
            println!(
                "local api token for guest {n}, id {} (shown only this once):",
                minted.id
            );
            println!("{}", minted.expose());
            Ok(())
        }
        LocalapiCommand::Revoke { vmid: Some(n), .. } => {
            let count = localapi::revoke_guest(&store, &SystemClock, vmid(n)?)?;
            println!("revoked {count} token(s) of guest {n}");
            Ok(())
        }
        LocalapiCommand::Revoke { id: Some(id), .. } => {
            let parsed: TokenId = id.parse().map_err(|e| anyhow::anyhow!("--id: {e}"))?;
            if localapi::revoke(&store, &SystemClock, parsed)? {
                println!("revoked token {parsed}");
                Ok(())
            } else {
                bail!("no active token with id {parsed}")
            }
        }
        LocalapiCommand::Revoke { .. } => bail!("give --vmid or --id"),
        LocalapiCommand::Tokens => {
            for t in store.list()? {
                let line = serde_json::json!({
                    "id": t.id.to_string(),
                    "vmid": t.vmid.get(),
                    "state": match t.state {
                        TokenState::Active => "active",
                        TokenState::Revoked => "revoked",
                    },
                    "created_at": rfc3339(t.created_at),
                    "revoked_at": t.revoked_at.and_then(rfc3339),
                });
                println!("{line}");
            }
            Ok(())
        }
    }
}
