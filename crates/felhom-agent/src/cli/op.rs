//! `felhom-agent op new|sign|wrap|verify`: the operator's signing tools and the host-side check
//! (DESIGN.md §4.4; workflow in docs/operator-signing.md).
//!
//! `op verify` prints the accepted op as JSON on stdout and exits 0, or prints exactly
//! `rejected: REASON` on stdout (one of the eight DESIGN words), a detail line on stderr, and
//! exits [`EXIT_REJECTED`]. Operational failures (unreadable file, unusable state directory)
//! exit 1 with `felhom-agent: …` on stderr like every other command. It records the nonce and an
//! audit entry in the journal under `--state`, so a second run of the same op is `replay`.
//!
//! The journal is adapted to `authz`'s ports by [`crate::ledger::JournalLedger`].

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use authz::{Operators, Policy, SignedInput, VerifyError};
use clap::{Args, Subcommand};

use crate::ledger::JournalLedger;

/// Exit status of `op verify` when the op is rejected.
pub const EXIT_REJECTED: i32 = 3;

/// Arguments of `op`.
#[derive(Debug, Args)]
pub struct OpArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OpCommand,
}

/// The `op` subcommands.
#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// Build a payload to sign (prints it on stdout; redirect it to a file).
    New(NewArgs),
    /// Sign a payload file with an OpenSSH key file or through ssh-agent.
    Sign(SignArgs),
    /// Wrap payload + signature into the wire form the hub relays (prints it).
    Wrap(WrapArgs),
    /// Verify a signed op as this host would, and record it (nonce, audit) under --state.
    Verify(VerifyArgs),
}

/// Arguments of `op new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The action, e.g. guest.destroy.
    #[arg(long)]
    pub action: String,
    /// The target: vmid:N, storage:ID or host.
    #[arg(long)]
    pub target: String,
    /// How long the signature stays valid: 90s, 15m, 2h, 1d.
    #[arg(long, default_value = "15m")]
    pub ttl: String,
    /// The host the op is for (its config `host_id`).
    #[arg(long)]
    pub host_id: String,
    /// Action parameters as a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Use this op id instead of a generated one.
    #[arg(long)]
    pub op_id: Option<String>,
}

/// Arguments of `op sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// An unencrypted OpenSSH private key, or a public key (KEY.pub) to sign with through
    /// ssh-agent (`SSH_AUTH_SOCK`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Sign through ssh-agent (`SSH_AUTH_SOCK`); with --key FILE.pub to choose the key.
    #[arg(long)]
    pub agent: bool,
    /// The payload file (signed byte for byte).
    #[arg(long, value_name = "FILE")]
    pub payload: PathBuf,
    /// Where to write the armored signature.
    #[arg(long, value_name = "SIGFILE")]
    pub out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `op wrap`.
#[derive(Debug, Args)]
pub struct WrapArgs {
    /// The payload file.
    #[arg(long, value_name = "FILE")]
    pub payload: PathBuf,
    /// The armored signature file.
    #[arg(long, value_name = "FILE")]
    pub signature: PathBuf,
}

/// Arguments of `op verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The operators file (JSON).
    #[arg(long, value_name = "FILE")]
    pub operators: PathBuf,
    /// This host's id.
    #[arg(long)]
    pub host_id: String,
    /// The payload file.
    #[arg(
        long,
        value_name = "FILE",
        requires = "signature",
        conflicts_with = "wire"
    )]
    pub payload: Option<PathBuf>,
    /// The armored signature file.
    #[arg(
        long,
        value_name = "FILE",
        requires = "payload",
        conflicts_with = "wire"
    )]
    pub signature: Option<PathBuf>,
    /// The wire form instead of --payload/--signature.
    #[arg(long, value_name = "FILE")]
    pub wire: Option<PathBuf>,
    /// State directory holding the journal database.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Clock-skew allowance, seconds.
    #[arg(long, default_value_t = authz::DEFAULT_CLOCK_SKEW.as_secs())]
    pub clock_skew_s: u64,
    /// Longest accepted lifetime (expires_at - issued_at), seconds.
    #[arg(long, default_value_t = authz::DEFAULT_MAX_LIFETIME.as_secs())]
    pub max_lifetime_s: u64,
}

/// Runs `op`.
pub fn execute(args: OpArgs) -> anyhow::Result<()> {
    match args.command {
        OpCommand::New(a) => new(a),
        OpCommand::Sign(a) => sign(a),
        OpCommand::Wrap(a) => wrap(a),
        OpCommand::Verify(a) => verify(a),
    }
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    let action = authz::Action::parse(&args.action).with_context(|| {
        let names: Vec<&str> = authz::Action::ALL.iter().map(|a| a.as_str()).collect();
        format!(
            "--action {:?}: expected one of {}",
            args.action,
            names.join(", ")
        )
    })?;
    let target = authz::Target::parse_cli(&args.target).context("--target")?;
    let ttl = authz::draft::parse_ttl(&args.ttl).context("--ttl")?;
    let params: serde_json::Value =
        serde_json::from_str(&args.params).context("--params is not JSON")?;
    let serde_json::Value::Object(params) = params else {
        bail!("--params must be a JSON object");
    };
    let draft = authz::draft::Draft {
        action,
        target,
        host_id: args.host_id,
        ttl,
        params,
        op_id: args.op_id,
    };
    let payload = authz::draft::build(&draft, time::OffsetDateTime::now_utc())
        .context("building the payload")?;
    std::io::stdout().write_all(&payload)?;
    Ok(())
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let payload = read_limited(&args.payload, authz::envelope::MAX_PAYLOAD)?;
    if payload.len() > authz::envelope::MAX_PAYLOAD {
        bail!(
            "{}: payload is over the {}-byte limit the agent accepts",
            args.payload.display(),
            authz::envelope::MAX_PAYLOAD
        );
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    let socket = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    let armored = match (&args.key, args.agent) {
        (Some(key), false) if is_private_key(key)? => {
            authz::sign::sign_with_key_file(key, &payload)?
        }
        (key, _) => {
            let Some(socket) = socket else {
                bail!("signing through ssh-agent needs SSH_AUTH_SOCK (or pass a private key file with --key)");
            };
            let public = match key {
                Some(path) => Some(authz::agent::read_public_key(&public_key_path(path))?),
                None => None,
            };
            authz::agent::sign_with_agent(&socket, public.as_ref(), &payload)?
        }
    };
    write_out(&args.out, armored.as_bytes(), args.force)?;
    eprintln!("signature written to {}", args.out.display());
    Ok(())
}

/// Whether the file holds an OpenSSH private key (as opposed to a public key).
fn is_private_key(path: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 64];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let n = file.read(&mut head)?;
    Ok(head[..n].starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----"))
}

/// `--agent --key id_ed25519` means its `.pub`.
fn public_key_path(path: &Path) -> PathBuf {
    match is_private_key(path) {
        Ok(true) => {
            let mut p = path.as_os_str().to_owned();
            p.push(".pub");
            PathBuf::from(p)
        }
        _ => path.to_owned(),
    }
}

fn write_out(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o644);
    if force {
        options.create(true).truncate(true);
    } else {
        // create_new: never overwrite, even if the file appeared since the check above.
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn wrap(args: WrapArgs) -> anyhow::Result<()> {
    let payload = read_limited(&args.payload, authz::envelope::MAX_PAYLOAD)?;
    let signature = read_limited(&args.signature, authz::armor::MAX_ARMORED_SIGNATURE)?;
    authz::parse_armored(&signature).context("--signature")?;
    let signature = String::from_utf8(signature).context("--signature is not text")?;
    println!("{}", authz::wire::wrap(&payload, &signature));
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let operators = Operators::load(&args.operators)?;
    let policy = Policy {
        host_id: args.host_id.clone(),
        clock_skew: Duration::from_secs(args.clock_skew_s),
        max_lifetime: Duration::from_secs(args.max_lifetime_s),
        now: time::OffsetDateTime::now_utc(),
    };
    // Read one byte past each limit so an oversized input is rejected (and audited) as
    // malformed rather than silently truncated.
    let (first, second) = match (&args.wire, &args.payload, &args.signature) {
        (Some(wire), None, None) => (read_limited(wire, authz::wire::MAX_WIRE)?, None),
        (None, Some(payload), Some(signature)) => (
            read_limited(payload, authz::envelope::MAX_PAYLOAD)?,
            Some(read_limited(
                signature,
                authz::armor::MAX_ARMORED_SIGNATURE,
            )?),
        ),
        _ => bail!("op verify needs --payload FILE --signature FILE, or --wire FILE"),
    };
    let input = match &second {
        None => SignedInput::Wire(&first),
        Some(signature) => SignedInput::Parts {
            payload: &first,
            signature,
        },
    };
    let mut journal = journal::Journal::open(&args.state)?;
    let result = authz::verify(input, &operators, &policy, &mut JournalLedger(&mut journal));
    drop(journal);
    match result {
        Ok(op) => {
            println!("{}", serde_json::to_string_pretty(&op.to_json())?);
            Ok(())
        }
        Err(VerifyError::Rejected(rejection)) => {
            println!("{rejection}");
            eprintln!("felhom-agent: {}", rejection.detail());
            if let Some(recorded) = rejection.redelivery() {
                eprintln!(
                    "felhom-agent: recorded state {}, outcome {}",
                    recorded.state,
                    recorded.outcome.as_deref().unwrap_or("none yet")
                );
            }
            std::process::exit(EXIT_REJECTED);
        }
        Err(err @ VerifyError::Ledger(_)) => Err(err.into()),
    }
}

/// Reads at most `limit + 1` bytes.
fn read_limited(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}
