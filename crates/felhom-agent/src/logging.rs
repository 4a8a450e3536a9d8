//! Logging setup: journald when running under systemd with the journal, stderr otherwise.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

/// Where log lines went, for the first log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The systemd journal, with structured fields.
    Journald,
    /// stderr as text lines.
    StderrText,
    /// stderr as JSON lines.
    StderrJson,
}

/// Installs the global subscriber. The filter is `RUST_LOG` when set (it allows per-module
/// directives while debugging), else `log.level`.
///
/// Journald is used when `JOURNAL_STREAM` names our stderr (systemd sets it for services whose
/// output goes to the journal) and the journald socket accepts a connection;
/// `tracing_journald::layer()` fails without a socket (containers, CI), and then stderr is used.
pub fn init(config: &LogConfig) -> anyhow::Result<Sink> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.level)?,
    };
    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let (layer, sink): (Box<dyn Layer<Registry> + Send + Sync>, Sink) =
        match (journald, config.format) {
            (Some(journald), _) => (journald.boxed(), Sink::Journald),
            (None, LogFormat::Json) => (
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .boxed(),
                Sink::StderrJson,
            ),
            (None, LogFormat::Text) => (
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .boxed(),
                Sink::StderrText,
            ),
        };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()?;
    Ok(sink)
}

/// `JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected; it only means "stderr is
/// the journal" if it matches stderr (systemd.exec(5)), not merely because it was inherited.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        Err(_) => false,
    }
}
